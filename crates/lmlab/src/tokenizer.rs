//! `lmlab tokenizer train | encode | decode | stats`.

use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lmlab_data::input::{self, Format, InputItem};
use lmlab_data::pipeline::{Filters, PipelineConfig};
use lmlab_data::urlfilter::UrlBlocklist;
use lmlab_tokenizer::{stats, train, Tokenizer, TrainOptions};

#[derive(Subcommand)]
pub enum TokenizerCmd {
    /// Train a byte-level BPE with lmlab's special tokens.
    Train(TrainArgs),
    /// Encode bytes (a --text, a --file, or standard input) to token ids.
    Encode(EncodeArgs),
    /// Decode token ids back to the exact bytes, written to standard output.
    Decode(DecodeArgs),
    /// Characters per token and tokens per word/character, per file and per script.
    Stats(StatsArgs),
}

#[derive(Args)]
pub struct TrainArgs {
    /// Text files to learn merges from; also crawls (WARC/WET/ARC) and JSONL, as `data
    /// prepare` reads them (web pages as their extracted main text), and folders of any of these.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Total vocabulary size (special and byte tokens included).
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    /// Merge only pairs seen at least this often.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct EncodeArgs {
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long, conflicts_with = "file")]
    text: Option<String>,
    #[arg(long)]
    file: Option<PathBuf>,
    /// Print {"ids": [...], "tokens": [...]} instead of space-separated ids.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DecodeArgs {
    #[arg(long)]
    tokenizer: PathBuf,
    /// Token ids (or read whitespace-separated ids from standard input when none are given).
    ids: Vec<u32>,
}

#[derive(Args)]
pub struct StatsArgs {
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: TokenizerCmd) -> Result<()> {
    match cmd {
        TokenizerCmd::Train(a) => {
            let (files, _corpus) = training_files(&a.input, &a.out)?;
            let tok = train(&TrainOptions {
                files: files.clone(),
                vocab_size: a.vocab_size,
                min_frequency: a.min_frequency,
                show_progress: std::io::stderr().is_terminal(),
            })?;
            tok.save(&a.out)?;
            eprintln!("trained a byte-level BPE of {} tokens on {} file(s); written to {}", tok.vocab_size(), files.len(), a.out.display());
        }
        TokenizerCmd::Encode(a) => {
            let tok = Tokenizer::from_file(&a.tokenizer)?;
            let bytes = match (&a.text, &a.file) {
                (Some(t), _) => t.as_bytes().to_vec(),
                (None, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
                (None, None) => {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf)?;
                    buf
                }
            };
            let ids = tok.encode_bytes(&bytes)?;
            if a.json {
                let tokens: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap_or_default()).collect();
                crate::print_json(&serde_json::json!({"ids": ids, "tokens": tokens}))?;
            } else {
                println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
            }
        }
        TokenizerCmd::Decode(a) => {
            let tok = Tokenizer::from_file(&a.tokenizer)?;
            let ids = if a.ids.is_empty() {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s.split_whitespace()
                    .map(|w| w.parse::<u32>().with_context(|| format!("{w:?} is not a token id")))
                    .collect::<Result<Vec<_>>>()?
            } else {
                a.ids
            };
            std::io::stdout().write_all(&tok.decode_bytes(&ids)?)?;
        }
        TokenizerCmd::Stats(a) => {
            let tok = Tokenizer::from_file(&a.tokenizer)?;
            let rows = a.files.iter().map(|f| stats::measure_file(&tok, f)).collect::<Result<Vec<_>>>()?;
            if a.json {
                crate::print_json(&rows)?;
            } else {
                print!("{}", stats::render_table(&rows));
            }
        }
    }
    Ok(())
}

/// The files the trainer reads. Plain text goes as it is; crawls and JSONL (the documents `data
/// prepare` reads) are turned into their documents' text, web pages through the same main-text
/// extractor, written to one temporary file beside `out` that is removed when the returned
/// handle drops.
fn training_files(inputs: &[PathBuf], out: &Path) -> Result<(Vec<PathBuf>, Option<tempfile::NamedTempFile>)> {
    let (mut files, documents): (Vec<PathBuf>, Vec<PathBuf>) =
        input::expand(inputs)?.into_iter().partition(|f| input::format_of(f) == Format::Text);
    if documents.is_empty() {
        return Ok((files, None));
    }
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut corpus = tempfile::Builder::new()
        .prefix(".tokenizer-corpus-")
        .suffix(".txt")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let filters = Filters::new(PipelineConfig::standard(), UrlBlocklist::default());
    let (mut docs, mut bytes, mut without_text) = (0usize, 0usize, 0usize);
    {
        let mut w = BufWriter::new(corpus.as_file_mut());
        for file in &documents {
            for item in input::read_file(file) {
                match item {
                    InputItem::Doc(doc) => match filters.main_text(&doc) {
                        Ok(text) if !text.trim().is_empty() => {
                            w.write_all(text.as_bytes())?;
                            w.write_all(b"\n\n")?;
                            docs += 1;
                            bytes += text.len();
                        }
                        _ => without_text += 1,
                    },
                    InputItem::Error(e) => {
                        eprintln!("warning: {} at byte {}: {} (skipped)", e.file.display(), e.offset, e.message);
                        without_text += 1;
                    }
                }
            }
        }
        w.flush()?;
    }
    if docs == 0 {
        anyhow::bail!("no text found in the {} crawl/JSONL file(s) given ({without_text} records without text)", documents.len());
    }
    eprintln!(
        "read {docs} documents ({:.1} MB of text) from {} crawl/JSONL file(s); {without_text} records had no text",
        bytes as f64 / 1e6,
        documents.len()
    );
    files.push(corpus.path().to_path_buf());
    Ok((files, Some(corpus)))
}
