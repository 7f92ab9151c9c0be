//! `lmlab bench data`: `data prepare` throughput on a generated crawl, and datatrove's on the
//! same WARC files (bench/datatrove_pipeline.py) for the per-core ratio.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lmlab_eval::bench_data::{bench_tokenizer, crawl, run_datatrove, run_prepare, DataRun};

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

pub fn run(a: DataArgs) -> Result<()> {
    let cache = match a.cache {
        Some(c) => c,
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --cache")?).join(".cache/lmlab-bench/data"),
    };
    let files = crawl(&cache, a.mb, |m| eprintln!("{m}"))?;
    let tok = bench_tokenizer(&cache)?;
    let threads = a.threads.unwrap_or_else(rayon::current_num_threads);
    eprintln!("lmlab data prepare: {} files, {threads} threads ...", files.len());
    let main = run_prepare(&files, &tok, cache.join("out-lmlab"), threads)?;
    let mut compare = None;
    if a.datatrove_files > 0 {
        let subset = &files[..a.datatrove_files.min(files.len())];
        eprintln!("lmlab on {} file(s), 1 thread ...", subset.len());
        let ours = run_prepare(subset, &tok, cache.join("out-lmlab-1"), 1)?;
        eprintln!("datatrove on the same file(s), 1 worker (minutes) ...");
        let theirs = run_datatrove(&a.datatrove_script, subset, &cache.join("tokenizer.json"), &cache.join("out-datatrove"))?;
        compare = Some((ours, theirs));
    }
    let per_cpu = |ours: &DataRun, theirs: &serde_json::Value| theirs["cpu_seconds"].as_f64().map(|c| c / ours.cpu_seconds);
    let per_wall = |ours: &DataRun, theirs: &serde_json::Value| theirs["seconds"].as_f64().map(|s| s / ours.seconds);
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
