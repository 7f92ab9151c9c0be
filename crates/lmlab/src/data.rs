//! `lmlab data prepare`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use lmlab_data::pipeline::PipelineConfig;
use lmlab_data::prepare::{prepare, PrepareOptions};
use lmlab_data::urlfilter::UrlBlocklist;
use lmlab_tokenizer::Tokenizer;

#[derive(Subcommand)]
pub enum DataCmd {
    /// Crawl or corpus to token shards: extraction, language ID, URL blocklist, quality filters,
    /// dedup, PII scrubbing; writes shards, manifest.json, rejected.jsonl.gz and data-card.md.
    Prepare(PrepareArgs),
}

#[derive(Args)]
pub struct PrepareArgs {
    /// WARC/WET (.warc, .warc.gz), JSONL (.jsonl, .gz, .zst), text files, or folders of them.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output folder, e.g. runs/NAME/data.
    #[arg(long)]
    out: PathBuf,
    /// Stage settings (TOML; see lmlab_data::pipeline::PipelineConfig). Defaults: FineWeb's thresholds.
    #[arg(long)]
    config: Option<PathBuf>,
    /// File of blocked domains and `word:` entries.
    #[arg(long)]
    blocklist: Option<PathBuf>,
    /// Process part i of n of the input files (i/n), e.g. for a Slurm array.
    #[arg(long, value_parser = parse_part)]
    shard: Option<(usize, usize)>,
    /// Tokens per shard file.
    #[arg(long, default_value_t = 50_000_000)]
    shard_tokens: usize,
}

fn parse_part(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected i/n"))?;
    let (i, n) = (i.trim().parse().map_err(|e| format!("{i:?}: {e}"))?, n.trim().parse().map_err(|e| format!("{n:?}: {e}"))?);
    if n == 0 || i >= n {
        return Err(format!("{s:?}: need 0 <= i < n"));
    }
    Ok((i, n))
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Prepare(a) => {
            let tok = Tokenizer::from_file(&a.tokenizer)?;
            let config = match &a.config {
                Some(p) => PipelineConfig::from_file(p)?,
                None => PipelineConfig::standard(),
            };
            let blocklist = a.blocklist.as_deref().map(UrlBlocklist::from_file).transpose()?.unwrap_or_default();
            let opts = PrepareOptions { inputs: a.input, out: a.out.clone(), config, blocklist, shard_tokens: a.shard_tokens, part: a.shard };
            let t0 = Instant::now();
            let m = prepare(&opts, &tok, |what| eprintln!("reading {what}"))?;
            let secs = t0.elapsed().as_secs_f64();
            let bytes: u64 = m.inputs.iter().map(|i| i.bytes).sum();
            println!(
                "{} documents read, {} kept, {} tokens in {} shards; {} input errors; {:.1} MB/s, {:.0} documents/s",
                m.counts.documents,
                m.documents_kept,
                m.total_tokens,
                m.shards.len(),
                m.errors_total,
                bytes as f64 / 1e6 / secs,
                m.counts.documents as f64 / secs
            );
            for (stage, rules) in &m.counts.removed {
                for (rule, n) in rules {
                    println!("  removed by {stage}/{rule}: {n}");
                }
            }
            println!("wrote {}/{{manifest.json, data-card.md, rejected.jsonl.gz, shard-*.bin}}", a.out.display());
        }
    }
    Ok(())
}
