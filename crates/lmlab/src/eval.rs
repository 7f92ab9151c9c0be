//! `lmlab eval qa`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lmlab_eval::consistency::{self, run_consistency, ConsistencyOptions};
use lmlab_eval::ppl::{score, PplStats};
use lmlab_eval::qa::{markdown, run_qa, QaOptions};
use lmlab_model::CausalLm;

use crate::generate::load_model;

#[derive(Subcommand)]
pub enum EvalCmd {
    /// Ask the built-in world's questions; grade each answer correct, wrong (hallucinated) or
    /// abstained, by how often the fact appeared in the crawl, by set and by language.
    Qa(QaArgs),
    /// The same questions sampled at several temperatures: agreement, distinct answers and
    /// semantic entropy by fact frequency, and hallucination detection from the model alone
    /// (AUROC of three signals against the grader).
    Consistency(ConsistencyArgs),
    /// Perplexity and bits per byte on held-out text files (bits per byte compare models with
    /// different tokenizers fairly).
    Ppl(PplArgs),
}

#[derive(Args)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    qa: QaArgs,
    /// Temperatures to sample at (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.3, 0.7, 1.0, 1.5])]
    temperatures: Vec<f64>,
    /// The temperature whose samples the detectors read.
    #[arg(long, default_value_t = 1.0)]
    detect_temperature: f64,
}

#[derive(Args)]
pub struct PplArgs {
    /// An lmlab model folder, a GGUF file, or a Hugging Face folder.
    #[arg(long)]
    model: PathBuf,
    /// Plain-text files.
    #[arg(long, num_args = 1.., required = true)]
    data: Vec<PathBuf>,
    /// Tokens per window (default: the model's context length).
    #[arg(long)]
    window: Option<usize>,
    /// Score at most this many tokens of each file.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// tokenizer.json (default: the model's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct QaArgs {
    /// An lmlab model folder, a GGUF file, or a Hugging Face folder.
    #[arg(long)]
    model: PathBuf,
    /// Question files from a world's eval/ folder (facts.jsonl, nonexistent.jsonl, paraphrase.jsonl).
    #[arg(long, num_args = 1.., required = true)]
    questions: Vec<PathBuf>,
    /// The world's kb.jsonl (default: beside the eval/ folder of the first question file).
    #[arg(long)]
    kb: Option<PathBuf>,
    /// Answers per question (per temperature for `consistency`: at least 2).
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// 0 = greedy (`qa` only).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Ask through the model's chat template instead of the few-shot prefix.
    #[arg(long)]
    chat: bool,
    /// At most N questions of each file, spread evenly over it.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 24)]
    max_tokens: usize,
    /// Questions decoded together.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// tokenizer.json (default: the model's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Write qa.json (every answer) and qa.md here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl QaArgs {
    fn options(&self) -> QaOptions {
        QaOptions {
            questions: self.questions.clone(),
            kb: self.kb.clone(),
            samples: self.samples,
            temperature: self.temperature,
            chat: self.chat,
            limit: self.limit,
            max_tokens: self.max_tokens,
            batch: self.batch,
            seed: self.seed,
        }
    }
}

/// Moves `bar` to `done` of `total`.
pub(crate) fn advance(bar: &ProgressBar, done: usize, total: usize) {
    bar.set_length(total as u64);
    bar.set_position(done as u64);
}

/// A progress bar over `what`.
pub(crate) fn bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {what} [{{elapsed_precise}}<{{eta_precise}}]"))
            .expect("valid template"),
    );
    bar
}

/// Writes `name`.json and `name`.md into `out`.
fn write_outputs(out: &std::path::Path, name: &str, json: &impl serde::Serialize, md: &str) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(json)?)?;
    std::fs::write(out.join(format!("{name}.md")), md)?;
    eprintln!("wrote {name}.json and {name}.md in {}", out.display());
    Ok(())
}

pub fn run(cmd: EvalCmd) -> Result<()> {
    match cmd {
        EvalCmd::Consistency(a) => {
            let model = load_model(&a.qa.model, a.qa.tokenizer.as_deref())?;
            let opts = ConsistencyOptions { qa: a.qa.options(), temperatures: a.temperatures, detect_temperature: a.detect_temperature };
            anyhow::ensure!(
                opts.temperatures.contains(&opts.detect_temperature),
                "--detect-temperature {} is not one of --temperatures",
                opts.detect_temperature
            );
            let bar = bar("sampling rounds");
            let report = run_consistency(&model, &opts, |done, total| advance(&bar, done, total))?;
            bar.finish_and_clear();
            let md = consistency::markdown(&report);
            if let Some(out) = &a.qa.out {
                write_outputs(out, "consistency", &report, &md)?;
                let png = out.join("consistency.png");
                match consistency::plot(&report, &png) {
                    Ok(()) => eprintln!("wrote {}", png.display()),
                    Err(e) => eprintln!("no plot: {e:#}"),
                }
            }
            if a.qa.json {
                return crate::print_json(&report);
            }
            print!("{md}");
            Ok(())
        }
        EvalCmd::Qa(a) => {
            let model = load_model(&a.model, a.tokenizer.as_deref())?;
            let opts = a.options();
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} questions [{elapsed_precise}<{eta_precise}] {per_sec}")
                    .expect("valid template"),
            );
            let report = run_qa(&model, &opts, |done, total| advance(&bar, done, total))?;
            bar.finish_and_clear();
            let md = markdown(&report);
            if let Some(out) = &a.out {
                write_outputs(out, "qa", &report, &md)?;
            }
            if a.json {
                return crate::print_json(&report);
            }
            print!("{md}");
            Ok(())
        }
        EvalCmd::Ppl(a) => {
            let model = load_model(&a.model, a.tokenizer.as_deref())?;
            let tok = model.tokenizer();
            let window = a.window.unwrap_or(model.context_length());
            let bytes_of = |id: u32| tok.decode_bytes(&[id]).map_or(0, |b| b.len());
            let mut total = PplStats::default();
            let mut rows = Vec::new();
            for f in &a.data {
                let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let mut ids = tok.encode_bytes(&text)?;
                ids.truncate(a.max_tokens.unwrap_or(usize::MAX));
                let s = score(&model, &ids, window, bytes_of).with_context(|| format!("scoring {}", f.display()))?;
                total.add(s);
                rows.push(serde_json::json!({"file": f, "tokens": s.tokens, "bytes": s.bytes, "perplexity": s.perplexity(), "bits_per_byte": s.bits_per_byte()}));
            }
            if a.json {
                return crate::print_json(
                    &serde_json::json!({"files": rows, "tokens": total.tokens, "bytes": total.bytes, "perplexity": total.perplexity(), "bits_per_byte": total.bits_per_byte(), "window": window}),
                );
            }
            for r in &rows {
                println!(
                    "{}: {} tokens, {} bytes: perplexity {:.2}, {:.4} bits/byte",
                    r["file"].as_str().unwrap_or_default(),
                    r["tokens"],
                    r["bytes"],
                    r["perplexity"].as_f64().unwrap_or(f64::NAN),
                    r["bits_per_byte"].as_f64().unwrap_or(f64::NAN)
                );
            }
            println!(
                "all: {} tokens in windows of {window}: perplexity {:.2}, {:.4} bits/byte",
                total.tokens,
                total.perplexity(),
                total.bits_per_byte()
            );
            Ok(())
        }
    }
}
