//! What `lmlab reward train` and `lmlab dpo` share: the training flags, loading the starting model
//! and the preference files into a run, and printing accuracy tables.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use lmlab_infer::{LoadOptions, Model};
use lmlab_model::CausalLm;
use lmlab_train::pairs::{AccuracyReport, PairTraining, RenderStats};
use lmlab_train::{Preset, TrainConfig};

use crate::train_flags::{stage_defaults, TrainFlags};

#[derive(Args)]
pub struct PairArgs {
    /// Preference files, split by entity into training and held-out pairs: the world's
    /// preferences.jsonl, or hh-rlhf {"chosen", "rejected"} transcripts; JSONL or a JSON array,
    /// .gz too.
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Preference files only evaluated, held out whole (hh-rlhf's test split, say).
    #[arg(long, num_args = 1..)]
    eval_data: Vec<PathBuf>,
    /// Checkpoint folder, e.g. runs/N/rm or runs/N/dpo (metrics.jsonl goes beside it).
    #[arg(long)]
    out: PathBuf,
    /// A preset whose [reward] (reward train) or [dpo] (dpo) table sets the training; without
    /// that table, the defaults. Flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// (--batch-size: pairs per micro-batch, each scored on both replies; --seq-len: longer
    /// sequences lose the start of their prompt; --val-fraction: pairs held out, whole entities.)
    #[command(flatten)]
    train: TrainFlags,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Training defaults for a stage: 300 steps from `lr`, decaying to a tenth, no weight decay,
/// a tenth of the pairs held out.
pub fn defaults(lr: f64, log_every: u64) -> TrainConfig {
    stage_defaults(lr, log_every, 0.1)
}

fn train_config(a: &PairArgs, stage: Stage, defaults: TrainConfig) -> Result<TrainConfig> {
    let cfg = match &a.config {
        Some(path) => {
            let preset = Preset::from_file(path)?;
            let table = match stage {
                Stage::Reward => preset.reward,
                Stage::Dpo => preset.dpo,
            };
            match table {
                Some(table) => table.over(defaults).with_context(|| format!("in config {}", path.display()))?,
                None => defaults,
            }
        }
        None => defaults,
    };
    Ok(a.train.apply(cfg))
}

/// Which stage's table of a preset (`--config`) sets the training.
#[derive(Clone, Copy)]
pub enum Stage {
    Reward,
    Dpo,
}

/// Loads the starting model (dense) and the preference files into a run. `full` (every weight
/// trains) needs an lmlab model, whose checkpoint format keeps its tokenizer.
pub fn pair_training(start: &Path, a: &PairArgs, stage: Stage, defaults: TrainConfig, full: bool) -> Result<PairTraining> {
    let dev = Device::Cpu;
    let model = Model::load(start, &LoadOptions { dense: true, ..Default::default() }, &dev)?;
    if full && model.format() != "lmlab" {
        bail!("training every weight writes an lmlab checkpoint, which would lose this {} model's own tokenizer setup; start from an lmlab model (or, for DPO, train adapters with --lora-rank)", model.format());
    }
    let template =
        model.chat_template().cloned().with_context(|| format!("{} has no chat template to render the pairs with", start.display()))?;
    let gpt = model.as_gpt().context("the model has no dense tensor path")?;
    let pairs = lmlab_data::preference::read_preferences(&a.data)?;
    if pairs.without_entity > 0 {
        eprintln!("{} world pairs name no entity (safety pairs, or a world generated before pairs named one): each is held out with the pairs of its prompt", pairs.without_entity);
    }
    let eval_pairs = lmlab_data::preference::read_preferences(&a.eval_data)?.pairs;
    let tokenizer_json = (model.format() == "lmlab").then(|| lmlab_infer::tokenizer_file(start)).transpose()?;
    Ok(PairTraining {
        base: start.canonicalize().with_context(|| format!("resolving {}", start.display()))?,
        model_cfg: model.config().clone(),
        base_weights: gpt.named_weights()?,
        tokenizer: model.tokenizer().clone(),
        template,
        tokenizer_json,
        pairs: pairs.pairs,
        eval_pairs,
        train: train_config(a, stage, defaults)?,
        out: a.out.clone(),
        resume: a.train.resume,
        stop_after: a.train.stop_after,
        stop: crate::sft::stop_on_ctrl_c()?,
        device: dev,
    })
}

/// The pairs line of a report.
pub fn print_pairs(train: usize, held_out: usize, r: &RenderStats) {
    println!(
        "{} pairs: {train} to train on, {held_out} held out (whole entities); {} with their prompt cut to fit, {} skipped as too long",
        r.pairs, r.truncated, r.skipped_long
    );
}

/// The run line of a report.
pub fn print_run(r: &lmlab_train::trainer::TrainReport) {
    println!(
        "{} at step {}/{}: train loss {}, eval loss {}",
        if r.interrupted { "stopped" } else { "finished" },
        r.final_step,
        r.max_steps,
        r.steps.last().map_or("-".into(), |s| format!("{:.4}", s.loss)),
        r.last_eval_loss.map_or("-".into(), |l| format!("{l:.4}")),
    );
}

/// Accuracy tables side by side, one column per (title, report), one row per reason.
pub fn print_accuracy(columns: &[(&str, &AccuracyReport)]) {
    let Some((_, first)) = columns.first() else { return };
    let titles: String = columns.iter().map(|(t, _)| format!("  {t:>12}")).collect();
    println!("  {:<24} {:>6}{titles}", "reason", "pairs");
    let cell = |a: Option<&lmlab_train::pairs::Accuracy>| a.map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a.accuracy));
    for (reason, acc) in &first.by_reason {
        let cells: String = columns.iter().map(|(_, r)| format!("  {:>12}", cell(r.by_reason.get(reason)))).collect();
        println!("  {reason:<24} {:>6}{cells}", acc.pairs);
    }
    let cells: String = columns.iter().map(|(_, r)| format!("  {:>12}", cell(Some(&r.all)))).collect();
    println!("  {:<24} {:>6}{cells}", "all", first.all.pairs);
}
