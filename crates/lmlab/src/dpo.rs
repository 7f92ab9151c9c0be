//! `lmlab dpo`: moving an SFT model toward the preferred replies of preference pairs (DPO, IPO
//! or SimPO), with the SFT model as the frozen reference.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::ProgressBar;
use lmlab_train::dpo::{train_dpo, DpoLoss, DpoOptions, DpoSettings};

use crate::preference::{defaults, pair_training, print_accuracy, print_pairs, print_run, PairArgs, Stage};
use crate::train_flags::LoraFlags;

#[derive(Args)]
pub struct DpoArgs {
    /// The SFT model: the policy starts from it, and it is the frozen reference. An lmlab
    /// checkpoint, or (with --lora-rank) a Hugging Face folder or GGUF file too.
    #[arg(long)]
    policy: PathBuf,
    #[command(flatten)]
    pairs: PairArgs,
    /// β: how far the policy may move from the reference (sigmoid, ipo); SimPO's reward scale.
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// sigmoid: −log σ(β·h), h the log-ratio margin (DPO); ipo: (h − 1/(2β))²; simpo:
    /// length-normalised, with a margin γ and no reference.
    #[arg(long, value_enum, default_value = "sigmoid")]
    loss: LossArg,
    /// SimPO's target margin γ.
    #[arg(long, default_value_t = 0.5)]
    gamma: f64,
    /// (LoRA: adapters on the frozen SFT model instead of every weight.)
    #[command(flatten)]
    lora: LoraFlags,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LossArg {
    Sigmoid,
    Ipo,
    Simpo,
}

pub fn run(a: DpoArgs) -> Result<()> {
    let adapters = a.lora.lora_rank.is_some();
    // Log every step: the margin and accuracy are what shows DPO working.
    let lr = if adapters { 1e-3 } else { 1e-4 };
    let run = pair_training(&a.policy, &a.pairs, Stage::Dpo, defaults(lr, 1), !adapters)?;
    let lora = a.lora.config(run.model_cfg.activation)?;
    let loss = match a.loss {
        LossArg::Sigmoid => DpoLoss::Sigmoid,
        LossArg::Ipo => DpoLoss::Ipo,
        LossArg::Simpo => DpoLoss::Simpo,
    };
    let opts = DpoOptions { run, settings: DpoSettings { loss, beta: a.beta, gamma: a.gamma }, lora };
    let bar = ProgressBar::hidden();
    let report = train_dpo(opts, |event| crate::pretrain::draw(&bar, event))?;
    bar.finish_and_clear();
    if a.pairs.json {
        return crate::print_json(&report);
    }
    print_pairs(report.train_pairs, report.held_out_pairs, &report.rendering);
    print_run(&report.run);
    if let Some(last) = report.run.steps.last() {
        let field = |k: &str| last.extra.get(k).and_then(|v| v.as_f64()).map_or("-".into(), |v| format!("{v:.4}"));
        println!("last step: implicit reward margin {}, chosen over rejected {}", field("margin"), field("accuracy"));
    }
    println!("held-out pairs with log π(chosen) > log π(rejected), and with a positive implicit reward margin:");
    print_accuracy(&[
        ("SFT", &report.reference_prefers_chosen),
        ("DPO", &report.policy_prefers_chosen),
        ("margin > 0", &report.implicit_reward_accuracy),
    ]);
    println!("checkpoint: {}\nmetrics:    {}", report.run.checkpoint.display(), report.run.metrics.display());
    Ok(())
}
