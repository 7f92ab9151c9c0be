//! `lmlab tokenizer train | encode | decode | stats`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lmlab_data::corpus::training_files;
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
    /// Text files to learn merges from; also crawls (WARC/WET/ARC), JSON Lines and JSON arrays
    /// of records (web pages as their extracted main text), and folders of any of these.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// The JSON field(s) holding a record's text: strings, or arrays of strings (repeat the flag
    /// or separate by commas; several fields are joined by line breaks).
    #[arg(long, value_delimiter = ',', default_value = "text")]
    text_field: Vec<String>,
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
            let corpus = training_files(&a.input, &a.out, &a.text_field, |e| {
                eprintln!("warning: {} at byte {}: {} (skipped)", e.file.display(), e.offset, e.message)
            })?;
            if let Some(c) = &corpus.counts {
                eprintln!(
                    "read {} documents ({:.1} MB of text) from {} crawl/JSONL file(s); {} records had no text",
                    c.documents,
                    c.bytes as f64 / 1e6,
                    c.files,
                    c.without_text
                );
            }
            let files = corpus.files.clone();
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
