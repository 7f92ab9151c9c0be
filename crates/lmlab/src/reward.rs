//! `lmlab reward train|score|eval`: a reward model learned from preference pairs, and its scores.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Subcommand;
use indicatif::ProgressBar;
use lmlab_infer::{LoadOptions, Model};
use lmlab_model::{CausalLm, Gpt, Mode};
use lmlab_tokenizer::chat::{ChatTemplate, Message};
use lmlab_tokenizer::Tokenizer;
use lmlab_train::pairs::{render_pairs, render_reply, AccuracyReport, RenderStats, TokenPair};
use lmlab_train::reward::{read_head, rewards, score_pairs, train_reward_model};

use crate::preference::{defaults, pair_training, print_accuracy, print_pairs, print_run, PairArgs, Stage};

#[derive(Subcommand)]
pub enum RewardCmd {
    /// Train a reward model (Bradley–Terry) on preference pairs, starting from a base or SFT
    /// model; report its held-out accuracy per reason.
    Train {
        /// The starting model: an lmlab checkpoint (runs/N/base or runs/N/sft).
        #[arg(long)]
        base: PathBuf,
        #[command(flatten)]
        pairs: PairArgs,
    },
    /// The reward of one or more responses to a prompt.
    Score {
        /// The reward model's folder (what `reward train` wrote).
        #[arg(long)]
        model: PathBuf,
        /// The user's turn.
        #[arg(long)]
        prompt: String,
        #[arg(long, required = true, num_args = 1..)]
        response: Vec<String>,
    },
    /// Accuracy of a reward model on every pair of preference files, per reason.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Pairs scored at a time.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Also write every pair's two rewards here, a JSON line each: its `source` (file:line),
        /// `reason`, `group`, `chosen` and `rejected` scores.
        #[arg(long)]
        scores: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: RewardCmd) -> Result<()> {
    match cmd {
        RewardCmd::Train { base, pairs } => train(&base, &pairs),
        RewardCmd::Score { model, prompt, response } => score(&model, &prompt, &response),
        RewardCmd::Eval { model, data, batch_size, scores, json } => eval(&model, &data, batch_size, scores.as_deref(), json),
    }
}

fn train(base: &Path, a: &PairArgs) -> Result<()> {
    let opts = pair_training(base, a, Stage::Reward, defaults(3e-4, 10), true)?;
    let bar = ProgressBar::hidden();
    let report = train_reward_model(opts, |event| crate::pretrain::draw(&bar, event))?;
    bar.finish_and_clear();
    if a.json {
        return crate::print_json(&report);
    }
    print_pairs(report.train_pairs, report.held_out_pairs, &report.rendering);
    print_run(&report.run);
    println!("held-out accuracy (the chosen reply scored higher):");
    print_accuracy(&[("reward model", &report.held_out)]);
    println!("checkpoint: {}\nmetrics:    {}", report.run.checkpoint.display(), report.run.metrics.display());
    Ok(())
}

/// A reward model loaded for scoring: the network, its head, tokenizer and template.
struct Loaded {
    model: Model,
    head: candle_core::Tensor,
    template: ChatTemplate,
}

impl Loaded {
    fn open(dir: &Path) -> Result<Self> {
        let model = Model::load(dir, &LoadOptions::default(), &Device::Cpu)?;
        let head = read_head(dir, &Device::Cpu)?;
        let template = model.chat_template().cloned().with_context(|| format!("{} has no chat template", dir.display()))?;
        Ok(Self { model, head, template })
    }

    fn gpt(&self) -> Result<&Gpt> {
        self.model.as_gpt().context("the reward model has no dense tensor path")
    }

    fn tokenizer(&self) -> &Tokenizer {
        self.model.tokenizer()
    }
}

fn score(dir: &Path, prompt: &str, responses: &[String]) -> Result<()> {
    let rm = Loaded::open(dir)?;
    let prompt = [Message::new("user", prompt)];
    let seqs = responses.iter().map(|r| Ok(render_reply(&prompt, r, &rm.template, rm.tokenizer())?.ids)).collect::<Result<Vec<_>>>()?;
    let context = rm.model.config().context_length;
    if let Some(long) = seqs.iter().find(|s| s.len() > context) {
        anyhow::bail!("a prompt and response of {} tokens exceed the model's context of {context}", long.len());
    }
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let scores: Vec<f32> = rewards(rm.gpt()?, &rm.head, &refs, &mut Mode::inference())?.to_vec1()?;
    for (s, r) in scores.iter().zip(responses) {
        println!("{s:.4}\t{r}");
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct EvalReport {
    rendering: RenderStats,
    accuracy: AccuracyReport,
}

fn eval(dir: &Path, data: &[PathBuf], batch_size: usize, scores_out: Option<&Path>, json: bool) -> Result<()> {
    let rm = Loaded::open(dir)?;
    let pairs = lmlab_data::preference::read_preferences(data)?.pairs;
    let (pairs, rendering) = render_pairs(&pairs, &rm.template, rm.tokenizer(), rm.model.config().context_length)?;
    let scores = score_pairs(rm.gpt()?, &rm.head, &pairs, batch_size)?;
    if let Some(out) = scores_out {
        write_scores(out, &pairs, &scores)?;
    }
    let report = EvalReport { rendering, accuracy: AccuracyReport::new(&pairs, &scores) };
    if json {
        return crate::print_json(&report);
    }
    let r = &report.rendering;
    println!("{} pairs; {} with their prompt cut to fit, {} skipped as too long", r.pairs, r.truncated, r.skipped_long);
    print_accuracy(&[("reward model", &report.accuracy)]);
    Ok(())
}

/// One JSON line per scored pair, written whole or not at all.
fn write_scores(out: &Path, pairs: &[TokenPair], scores: &[(f32, f32)]) -> Result<()> {
    let mut text = String::new();
    for (p, &(chosen, rejected)) in pairs.iter().zip(scores) {
        let line = serde_json::json!({
            "source": p.source, "reason": p.reason, "group": p.group, "chosen": chosen, "rejected": rejected,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    lmlab_model::checkpoint::write_atomic(out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))
}
