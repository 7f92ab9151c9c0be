//! `lmlab unlearn`: make an lmlab model forget a set of conversations or documents by gradient
//! ascent, gradient difference or NPO, keeping a retain set where the method uses one.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use indicatif::ProgressBar;
use lmlab_eval::unlearning::{read_examples, unlearn_model, UnlearnRun};
use lmlab_train::unlearn::{UnlearnMethod, UnlearnSettings};

use crate::train_flags::{stage_defaults, TrainFlags};

#[derive(Args)]
pub struct UnlearnArgs {
    /// The model to unlearn from: an lmlab checkpoint (runs/N/sft).
    #[arg(long)]
    model: PathBuf,
    /// What to forget: JSON Lines of conversations (any shape `lmlab sft` reads; their
    /// assistant turns are forgotten) or documents ({"text": …}, every token).
    #[arg(long, required = true, num_args = 1..)]
    forget: Vec<PathBuf>,
    /// What to keep (same formats): gd trains on it; npo adds its loss when given (NPO+RT).
    #[arg(long, num_args = 1..)]
    retain: Vec<PathBuf>,
    /// ga: gradient ascent on the forget set; gd: ga plus the retain set's loss; npo: negative
    /// preference optimisation against the model before unlearning.
    #[arg(long, value_enum)]
    method: MethodArg,
    /// NPO's β (small: close to gradient ascent; large: stops sooner).
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// The retain loss's weight.
    #[arg(long, default_value_t = 1.0)]
    retain_weight: f64,
    /// Checkpoint folder, e.g. runs/N/unlearned.
    #[arg(long)]
    out: PathBuf,
    /// (--batch-size: forget and retain sequences per micro-batch, each.)
    #[command(flatten)]
    train: TrainFlags,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Ga,
    Gd,
    Npo,
}

pub fn run(a: UnlearnArgs) -> Result<()> {
    let method = match a.method {
        MethodArg::Ga => UnlearnMethod::Ga,
        MethodArg::Gd => UnlearnMethod::Gd,
        MethodArg::Npo => UnlearnMethod::Npo,
    };
    if method == UnlearnMethod::Ga && !a.retain.is_empty() {
        bail!("ga (gradient ascent) uses no retain set: use gd, or npo, to keep one");
    }
    let read = |files: &[PathBuf]| -> Result<Vec<_>> { Ok(files.iter().map(|f| read_examples(f)).collect::<Result<Vec<_>>>()?.concat()) };
    // A short run at a low rate: unlearning pushes the model away from what it knows, and the
    // longer it runs the more it takes with it. Every step is logged.
    let mut train = stage_defaults(1e-4, 1, 0.0);
    (train.max_steps, train.warmup_steps, train.save_every, train.eval_every, train.batch_size) = (40, 0, 20, 0, 8);
    let run = UnlearnRun {
        model: a.model.clone(),
        forget: read(&a.forget)?,
        retain: read(&a.retain)?,
        settings: Some(UnlearnSettings { method, beta: a.beta, retain_weight: a.retain_weight }),
        train: a.train.apply(train),
        out: a.out.clone(),
        resume: a.train.resume,
        stop_after: a.train.stop_after,
        stop: crate::sft::stop_on_ctrl_c()?,
    };
    let bar = ProgressBar::hidden();
    let report = unlearn_model(run, |event| crate::pretrain::draw(&bar, event))?;
    bar.finish_and_clear();
    if a.json {
        return crate::print_json(&report);
    }
    let field = |s: Option<&lmlab_train::trainer::StepRecord>, k: &str| {
        s.and_then(|s| s.extra.get(k)).and_then(|v| v.as_f64()).map_or("-".into(), |v| format!("{v:.3}"))
    };
    let (first, last) = (report.steps.first(), report.steps.last());
    println!(
        "{} at step {}/{}: forget loss per token {} → {}, retain loss per token {} → {}",
        if report.interrupted { "stopped" } else { "finished" },
        report.final_step,
        report.max_steps,
        field(first, "forget_nll"),
        field(last, "forget_nll"),
        field(first, "retain_nll"),
        field(last, "retain_nll"),
    );
    println!("checkpoint: {}\nmetrics:    {}", report.checkpoint.display(), report.metrics.display());
    Ok(())
}
