//! `lmlab pretrain`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lmlab_train::{pretrain_with, Preset, PretrainOptions, TrainEvent};

#[derive(Args)]
pub struct PretrainArgs {
    /// Preset with [model] and [train] tables (configs/tiny.toml, ...).
    #[arg(long)]
    config: PathBuf,
    /// Text files, token shards (*.bin) or folders of either.
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Checkpoint folder, e.g. runs/NAME/base.
    #[arg(long)]
    out: PathBuf,
    /// tokenizer.json (default: tokenizer.json in the run folder, the parent of --out).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Continue from the checkpoint in --out exactly where it stopped.
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    max_steps: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// f32, or bf16 (mixed precision: bf16 matmuls, f32 weights and optimiser state).
    #[arg(long)]
    precision: Option<lmlab_model::fused::Precision>,
    /// Write a checkpoint and stop after this many steps (resume later with --resume).
    #[arg(long)]
    stop_after: Option<u64>,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
}

fn default_tokenizer(out: &Path) -> Option<PathBuf> {
    let run = out.parent()?;
    let p = run.join("tokenizer.json");
    p.is_file().then_some(p)
}

pub fn run(a: PretrainArgs) -> Result<()> {
    let mut preset = Preset::from_file(&a.config)?;
    if let Some(v) = a.max_steps {
        preset.train.max_steps = v;
    }
    if let Some(v) = a.seed {
        preset.train.seed = v;
    }
    if let Some(v) = a.batch_size {
        preset.train.batch_size = v;
    }
    if let Some(v) = a.precision {
        preset.train.precision = v;
    }
    if let Some(v) = a.lr {
        preset.train.lr = v;
        preset.train.min_lr = preset.train.min_lr.min(v);
    }
    let tokenizer = a.tokenizer.clone().or_else(|| default_tokenizer(&a.out));
    let stop = crate::sft::stop_on_ctrl_c()?;
    let options = PretrainOptions {
        preset,
        data: a.data,
        tokenizer,
        out: a.out,
        resume: a.resume,
        stop_after: a.stop_after,
        stop,
        device: Device::Cpu,
        dtype: DType::F32,
    };
    let bar = ProgressBar::hidden();
    let report = pretrain_with(options, |event| draw(&bar, event))?;
    bar.finish_and_clear();
    if a.json {
        return crate::print_json(&report);
    }
    let last = report.steps.last();
    println!(
        "{} at step {}/{}: {} parameters, {} tokens seen, {:.0} tokens/s, train loss {}, eval loss {}",
        if report.interrupted { "stopped" } else { "finished" },
        report.final_step,
        report.max_steps,
        report.params,
        report.tokens_seen,
        report.tokens_per_sec,
        last.map_or("-".into(), |r| format!("{:.4}", r.loss)),
        report.last_eval_loss.map_or("-".into(), |l| format!("{l:.4}")),
    );
    println!("checkpoint: {}\nmetrics:    {}", report.checkpoint.display(), report.metrics.display());
    Ok(())
}

/// The run's events on a progress bar (on a terminal) or as log lines.
pub(crate) fn draw(bar: &ProgressBar, event: &TrainEvent) {
    let say = |msg: String| if bar.is_hidden() { eprintln!("{msg}") } else { bar.println(msg) };
    match event {
        TrainEvent::Start { start_step, max_steps, params, train_tokens, val_tokens, tokens_per_step } => {
            eprintln!("model: {params} parameters; data: {train_tokens} train / {val_tokens} held-out tokens; {tokens_per_step} tokens per step; steps {start_step}..{max_steps}");
            if std::io::stderr().is_terminal() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(*max_steps);
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}")
                        .expect("valid template"),
                );
                bar.set_position(*start_step);
            }
        }
        TrainEvent::Step { step, loss, lr, tokens_per_sec } => {
            bar.set_position(*step);
            bar.set_message(format!("loss {loss:.4} lr {lr:.2e} {tokens_per_sec:.0} tok/s"));
        }
        TrainEvent::Eval { step, train_loss, eval_loss } => {
            say(format!("step {step}: train loss {train_loss:.4}, eval loss {eval_loss:.4}"))
        }
        TrainEvent::Note(msg) => say(msg.clone()),
    }
}
