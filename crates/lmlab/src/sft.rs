//! `lmlab sft` (instruction tuning, full or LoRA) and `lmlab lora merge`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use lmlab_infer::{LoadOptions, Model};
use lmlab_model::CausalLm;
use lmlab_train::sft::{fine_tune, LongConversations, SftOptions};

use crate::train_flags::{stage_defaults, LoraFlags, TrainFlags};
use lmlab_train::{Preset, TrainConfig};

#[derive(Args)]
pub struct SftArgs {
    /// The base model: an lmlab checkpoint (runs/N/base), a Hugging Face folder or a GGUF file
    /// (dequantized; LoRA only for these two).
    #[arg(long)]
    base: PathBuf,
    /// Conversation files: the world's sft.jsonl, OpenAI {"messages"}, ShareGPT
    /// {"conversations"}, Alpaca, self-instruct seed tasks or BELLE; JSONL or a JSON array, .gz too.
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Checkpoint folder, e.g. runs/N/sft (adapters only, with --lora-rank).
    #[arg(long)]
    out: PathBuf,
    /// A preset whose [sft] table sets the training (its [model] table is ignored: the shape
    /// is the base's); without one, the defaults. Flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// (--seq-len: positions per row; conversations longer than this count as too long.)
    #[command(flatten)]
    train: TrainFlags,
    #[command(flatten)]
    lora: LoraFlags,
    /// One conversation per row, padded, instead of packing several into each row.
    #[arg(long)]
    no_packing: bool,
    /// Conversations longer than the context: skip them, or keep their beginning.
    #[arg(long, value_enum, default_value = "skip")]
    long: LongArg,
    /// R-Tuning: ask this model (the base, few-shot) every fact question of the world's
    /// sft.jsonl first; where it answers wrong or abstains, the target becomes "I don't know".
    /// The relabelled set is written beside --out as sft-rtuning.jsonl.
    #[arg(long)]
    abstain_from_model: Option<PathBuf>,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LongArg {
    Skip,
    Truncate,
}

#[derive(Subcommand)]
pub enum LoraCmd {
    /// Merge a folder of LoRA adapters into its base and write a full lmlab checkpoint.
    Merge {
        /// The adapter folder `lmlab sft --lora-rank` wrote.
        #[arg(long)]
        adapter: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Fine-tuning defaults: a short run at a lower learning rate than pretraining, no weight decay.
fn sft_defaults(lora: bool) -> TrainConfig {
    stage_defaults(if lora { 3e-3 } else { 1e-3 }, TrainConfig::default().log_every, 0.02)
}

fn train_config(a: &SftArgs) -> Result<TrainConfig> {
    let defaults = sft_defaults(a.lora.lora_rank.is_some());
    let cfg = match &a.config {
        Some(path) => match Preset::from_file(path)?.sft {
            Some(table) => table.over(defaults).with_context(|| format!("in config {}", path.display()))?,
            None => defaults,
        },
        None => defaults,
    };
    Ok(a.train.apply(cfg))
}

pub fn run(a: SftArgs) -> Result<()> {
    let dev = Device::Cpu;
    let base = Model::load(&a.base, &LoadOptions { dense: true, ..Default::default() }, &dev)?;
    let lora = a.lora.config(base.config().activation)?;
    if lora.is_none() && base.format() != "lmlab" {
        bail!("a full fine-tune writes an lmlab checkpoint, which would lose this {} model's own tokenizer setup; train adapters with --lora-rank instead", base.format());
    }
    let template =
        base.chat_template().cloned().with_context(|| format!("{} has no chat template to render conversations with", a.base.display()))?;
    let gpt = base.as_gpt().context("the base model has no dense tensor path")?;
    let data = match &a.abstain_from_model {
        Some(m) => vec![relabel_by_knowledge(m, &a.data, &a.out)?],
        None => a.data.clone(),
    };
    let mut conversations = Vec::new();
    for file in &data {
        for c in lmlab_data::chat::read_conversations(file)? {
            conversations.push((c.source, c.messages));
        }
    }
    let tokenizer_json = (base.format() == "lmlab").then(|| lmlab_infer::tokenizer_file(&a.base)).transpose()?;
    let options = SftOptions {
        base: a.base.canonicalize().with_context(|| format!("resolving {}", a.base.display()))?,
        model_cfg: base.config().clone(),
        base_weights: gpt.named_weights()?,
        tokenizer: base.tokenizer().clone(),
        template,
        tokenizer_json,
        conversations,
        train: train_config(&a)?,
        lora,
        packed: !a.no_packing,
        long: match a.long {
            LongArg::Skip => LongConversations::Skip,
            LongArg::Truncate => LongConversations::Truncate,
        },
        out: a.out.clone(),
        resume: a.train.resume,
        stop_after: a.train.stop_after,
        stop: stop_on_ctrl_c()?,
        device: dev,
    };
    drop(base);
    let bar = ProgressBar::hidden();
    let report = fine_tune(options, |event| crate::pretrain::draw(&bar, event))?;
    bar.finish_and_clear();
    if a.json {
        return crate::print_json(&report);
    }
    let p = &report.packing;
    println!(
        "{} conversations ({} held out) in {} rows, {:.0}% filled; {} skipped as too long, {} truncated, {} dropped with nothing left to learn",
        p.conversations + report.held_out_conversations,
        report.held_out_conversations,
        p.rows,
        100.0 * p.fill,
        p.skipped_long,
        p.truncated,
        p.nothing_to_learn
    );
    println!(
        "trainable parameters: {} of {} ({:.2}%); optimizer state {:.1} MB",
        report.trainable_params,
        report.total_params,
        100.0 * report.trainable_params as f64 / report.total_params.max(1) as f64,
        report.optimizer_bytes as f64 / 1e6
    );
    let r = &report.run;
    println!(
        "{} at step {}/{}: {:.0} tokens/s, train loss {}, eval loss {}",
        if r.interrupted { "stopped" } else { "finished" },
        r.final_step,
        r.max_steps,
        r.tokens_per_sec,
        r.steps.last().map_or("-".into(), |s| format!("{:.4}", s.loss)),
        r.last_eval_loss.map_or("-".into(), |l| format!("{l:.4}")),
    );
    println!("checkpoint: {}\nmetrics:    {}", r.checkpoint.display(), r.metrics.display());
    Ok(())
}

/// A flag that Ctrl-C sets (finish the step, write a checkpoint); a second Ctrl-C exits.
pub fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    use std::sync::atomic::Ordering;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort)");
    })?;
    Ok(stop)
}

pub fn run_lora(cmd: LoraCmd) -> Result<()> {
    match cmd {
        LoraCmd::Merge { adapter, out } => {
            let model = Model::load(&adapter, &LoadOptions::default(), &Device::Cpu)?;
            lmlab_infer::save_merged(&model, &out)?;
            println!("merged {} into a full checkpoint: {}", adapter.display(), out.display());
            Ok(())
        }
    }
}

/// R-Tuning's relabelling of the world's SFT files by what `model` knows; returns the file of
/// relabelled examples it wrote beside `out`.
fn relabel_by_knowledge(model: &std::path::Path, data: &[PathBuf], out: &std::path::Path) -> Result<PathBuf> {
    use lmlab_world::tasks::SftExample;
    let mut examples: Vec<SftExample> = Vec::new();
    for file in data {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            examples.push(serde_json::from_str(line).with_context(|| {
                format!("{}:{}: --abstain-from-model needs the world's sft.jsonl records (with their facts)", file.display(), i + 1)
            })?);
        }
    }
    let world = data[0].parent().context("the SFT file has no folder")?;
    let grader = lmlab_world::grade::Grader::from_kb_file(&world.join("kb.jsonl"))?;
    let judge = Model::load(model, &LoadOptions::default(), &Device::Cpu)?;
    let bar = crate::eval::bar("questions asked of the base model");
    let (examples, stats) = lmlab_eval::rtuning::relabel(&judge, examples, grader, |done, total| crate::eval::advance(&bar, done, total))?;
    bar.finish_and_clear();
    eprintln!(
        "R-Tuning: {} fact questions asked; {} answered correctly (kept), {} became \"I don't know\"; {} other examples unchanged",
        stats.asked, stats.known, stats.to_abstain, stats.untouched
    );
    let path = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).join("sft-rtuning.jsonl");
    std::fs::create_dir_all(path.parent().expect("a folder"))?;
    let mut text = String::new();
    for ex in &examples {
        text.push_str(&serde_json::to_string(ex)?);
        text.push('\n');
    }
    lmlab_model::checkpoint::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}
