//! Preference pairs as token sequences, and what the reward model and DPO share to train on them.
//!
//! Each reply of a pair is rendered with the model's chat template as the pair's prompt followed
//! by one assistant turn ([`render_reply`]), through [`crate::sft::render`]. The sequence ends
//! with the reply's end-of-turn token, so its last token is where a reward model reads its score,
//! and `learn` marks the reply's tokens (content and end of turn), whose log-probabilities DPO
//! sums; earlier assistant turns of an hh-rlhf prompt are context and are not marked.
//!
//! A sequence longer than the limit loses the start of its prompt ([`fit`]); a pair whose reply
//! does not fit even so is skipped and counted. Pairs are split by group (the world's entity,
//! hh-rlhf's first human turn) before rendering, so no held-out pair's entity is trained on.
//!
//! What it does not do: read files (lmlab-data's `preference` module does) or compute losses
//! ([`crate::reward`], [`crate::dpo`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use lmlab_data::preference::{split_by_group, PreferencePair};
use lmlab_model::GptConfig;
use lmlab_tokenizer::chat::{ChatTemplate, Message};
use lmlab_tokenizer::Tokenizer;
use serde::Serialize;

use crate::checkpoint::{self, Loaded};
use crate::config::TrainConfig;
use crate::data::DataSummary;
use crate::optim::AdamW;
use crate::sft::{end_of_turn, render, Rendered};
use crate::trainer::Progress;

/// A pair as token sequences, each ending with its reply's end of turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPair {
    pub chosen: Rendered,
    pub rejected: Rendered,
    pub reason: String,
    pub group: String,
    pub source: String,
}

impl TokenPair {
    fn tokens(&self) -> usize {
        self.chosen.ids.len() + self.rejected.ids.len()
    }
}

/// Renders `prompt` followed by the assistant's `reply` and keeps it through the reply's end of
/// turn, with `learn` on the reply's tokens only.
pub fn render_reply(prompt: &[Message], reply: &str, template: &ChatTemplate, tok: &Tokenizer) -> Result<Rendered> {
    let mut messages = prompt.to_vec();
    messages.push(Message::new("assistant", reply));
    let mut r = render(&messages, template, &end_of_turn(template), tok)?;
    let end = r.learn.iter().rposition(|&w| w > 0.0).context("the reply rendered to no tokens")? + 1;
    // The reply is the last run of learned tokens; earlier runs are the prompt's assistant turns.
    let start = r.learn[..end].iter().rposition(|&w| w == 0.0).map_or(0, |i| i + 1);
    r.ids.truncate(end);
    r.learn.truncate(end);
    r.learn[..start].fill(0.0);
    Ok(r)
}

/// `r` cut to at most `max_len` tokens by dropping the start of its prompt (and whether it was
/// cut); `None` when that would leave no prompt token before the reply.
pub fn fit(r: Rendered, max_len: usize) -> Option<(Rendered, bool)> {
    let n = r.ids.len();
    if n <= max_len {
        return Some((r, false));
    }
    let cut = n - max_len;
    let reply_start = r.learn.iter().position(|&w| w > 0.0)?;
    if reply_start <= cut {
        return None;
    }
    Some((Rendered { ids: r.ids[cut..].to_vec(), learn: r.learn[cut..].to_vec() }, true))
}

/// What rendering did to the pairs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RenderStats {
    pub pairs: usize,
    /// Pairs kept with the start of their prompt cut off.
    pub truncated: usize,
    /// Pairs whose reply does not fit the context even without its prompt.
    pub skipped_long: usize,
}

/// Renders every pair, each sequence at most `max_len` tokens (see [`fit`]).
pub fn render_pairs(
    pairs: &[PreferencePair],
    template: &ChatTemplate,
    tok: &Tokenizer,
    max_len: usize,
) -> Result<(Vec<TokenPair>, RenderStats)> {
    let mut stats = RenderStats { pairs: pairs.len(), ..Default::default() };
    let mut out = Vec::with_capacity(pairs.len());
    for p in pairs {
        let side =
            |reply: &str| render_reply(&p.prompt, reply, template, tok).with_context(|| format!("rendering the pair at {}", p.source));
        let (Some((chosen, cut_c)), Some((rejected, cut_r))) = (fit(side(&p.chosen)?, max_len), fit(side(&p.rejected)?, max_len)) else {
            stats.skipped_long += 1;
            continue;
        };
        stats.truncated += usize::from(cut_c || cut_r);
        out.push(TokenPair { chosen, rejected, reason: p.reason.clone(), group: p.group.clone(), source: p.source.clone() });
    }
    Ok((out, stats))
}

/// The chosen sequences of `pairs`, then their rejected ones: one padded batch scores both.
pub fn both_sides<'a>(pairs: &[&'a TokenPair]) -> Vec<&'a Rendered> {
    pairs.iter().map(|p| &p.chosen).chain(pairs.iter().map(|p| &p.rejected)).collect()
}

/// Accuracy on one kind of pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Accuracy {
    pub pairs: usize,
    /// Pairs where the chosen reply scored strictly higher (a tie counts as wrong).
    pub correct: usize,
    pub accuracy: f64,
}

impl Accuracy {
    fn add(&mut self, right: bool) {
        self.pairs += 1;
        self.correct += usize::from(right);
        self.accuracy = self.correct as f64 / self.pairs as f64;
    }
}

/// Accuracy over all pairs and per reason, from each pair's (chosen, rejected) scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccuracyReport {
    pub all: Accuracy,
    pub by_reason: std::collections::BTreeMap<String, Accuracy>,
}

impl AccuracyReport {
    pub fn new(pairs: &[TokenPair], scores: &[(f32, f32)]) -> Self {
        let mut report = Self::default();
        for (p, &(c, r)) in pairs.iter().zip(scores) {
            report.all.add(c > r);
            report.by_reason.entry(p.reason.clone()).or_default().add(c > r);
        }
        report
    }
}

/// Running sums of a training step's pair statistics, for its metrics line.
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    pairs: usize,
    correct: usize,
    margin_sum: f64,
}

impl StepStats {
    /// Adds a micro-batch's margins (chosen's score minus rejected's, per pair).
    pub fn add(&mut self, margins: &Tensor) -> Result<()> {
        let m: Vec<f32> = margins.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        self.pairs += m.len();
        self.correct += m.iter().filter(|&&x| x > 0.0).count();
        self.margin_sum += m.iter().map(|&x| f64::from(x)).sum::<f64>();
        Ok(())
    }

    /// `{"margin": mean margin, "accuracy": share of positive margins}`, and a fresh start.
    pub fn take(&mut self) -> serde_json::Map<String, serde_json::Value> {
        let s = std::mem::take(self);
        let mut out = serde_json::Map::new();
        if s.pairs > 0 {
            out.insert("margin".into(), (s.margin_sum / s.pairs as f64).into());
            out.insert("accuracy".into(), (s.correct as f64 / s.pairs as f64).into());
        }
        out
    }
}

/// A run on preference pairs (reward model or DPO): the starting model's parts, loaded by the
/// caller from any format, the pairs, and how to train.
pub struct PairTraining {
    /// The starting model as the user named it (recorded beside LoRA adapters).
    pub base: PathBuf,
    pub model_cfg: GptConfig,
    /// The starting model's dense weights under lmlab names.
    pub base_weights: std::collections::HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// Copied into every checkpoint.
    pub tokenizer_json: Option<PathBuf>,
    /// Pairs split by group into training and held-out sets.
    pub pairs: Vec<PreferencePair>,
    /// Pairs only evaluated (hh-rlhf's test split, say), added to the held-out set.
    pub eval_pairs: Vec<PreferencePair>,
    pub train: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub stop_after: Option<u64>,
    pub stop: Arc<AtomicBool>,
    pub device: Device,
}

/// The checkpoint to resume from (when resuming) and the run's settings: a resumed run keeps the
/// checkpoint's (only `max_steps` may grow), as pretraining and SFT do. `seq_len` is resolved to
/// the row length (0: the context).
pub fn settings(opts: &PairTraining) -> Result<(Option<Loaded>, TrainConfig)> {
    let loaded = if opts.resume {
        Some(checkpoint::load(&opts.out, &opts.device).with_context(|| format!("resuming {}", opts.out.display()))?)
    } else {
        None
    };
    let mut cfg = match &loaded {
        Some(l) => TrainConfig { max_steps: l.state.train.max_steps.max(opts.train.max_steps), ..l.state.train.clone() },
        None => opts.train.clone(),
    };
    cfg.validate()?;
    let context = opts.model_cfg.context_length;
    if cfg.seq_len > context {
        bail!("seq_len {} exceeds the model's context length {context}", cfg.seq_len);
    }
    if cfg.seq_len == 0 {
        cfg.seq_len = context;
    }
    Ok((loaded, cfg))
}

/// The pairs of a run, rendered: training and held-out, and what rendering did.
pub struct PreparedPairs {
    pub train: Vec<TokenPair>,
    pub held_out: Vec<TokenPair>,
    pub stats: RenderStats,
    pub summary: DataSummary,
}

/// Splits `opts.pairs` by group (the held-out share is `cfg.val_fraction`), adds the eval-only
/// pairs to the held-out side, and renders both with sequences of at most `max_len` tokens.
pub fn prepare(opts: &PairTraining, cfg: &TrainConfig, max_len: usize) -> Result<PreparedPairs> {
    let (train, mut held) = split_by_group(opts.pairs.clone(), cfg.val_fraction, cfg.seed);
    held.extend(opts.eval_pairs.iter().cloned());
    let (train, mut stats) = render_pairs(&train, &opts.template, &opts.tokenizer, max_len)?;
    let (held_out, held_stats) = render_pairs(&held, &opts.template, &opts.tokenizer, max_len)?;
    stats.pairs += held_stats.pairs;
    stats.truncated += held_stats.truncated;
    stats.skipped_long += held_stats.skipped_long;
    if train.is_empty() {
        bail!("no training pairs ({} pairs read, {} too long for {max_len} tokens)", opts.pairs.len(), stats.skipped_long);
    }
    let tokens = |ps: &[TokenPair]| ps.iter().map(TokenPair::tokens).sum::<usize>();
    let summary = DataSummary {
        files: vec![format!("{} preference pairs", opts.pairs.len() + opts.eval_pairs.len())],
        total_tokens: tokens(&train) + tokens(&held_out),
        train_tokens: tokens(&train),
        val_tokens: tokens(&held_out),
    };
    Ok(PreparedPairs { train, held_out, stats, summary })
}

/// Token positions per optimizer step: pairs per step times the mean tokens of a pair.
pub fn tokens_per_step(train: &[TokenPair], cfg: &TrainConfig) -> u64 {
    let mean = train.iter().map(TokenPair::tokens).sum::<usize>() as f64 / train.len().max(1) as f64;
    ((cfg.batch_size * cfg.grad_accum) as f64 * mean).round() as u64
}

/// AdamW over `params`, and where the run stands: fresh, or restored from `loaded`.
pub fn optimizer(params: &lmlab_model::ParamSet, cfg: &TrainConfig, loaded: Option<&Loaded>) -> Result<(AdamW, Progress)> {
    let mut opt = AdamW::new(params, cfg.adamw())?;
    let mut progress = Progress::fresh();
    if let Some(l) = loaded {
        opt.load_state(l.optimizer.clone(), l.state.step)?;
        progress = Progress::resumed(&l.state);
    }
    Ok((opt, progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_the_prompt_and_never_the_reply() {
        let r = Rendered { ids: (0..10).collect(), learn: [0.0; 6].into_iter().chain([1.0; 4]).collect() };
        assert_eq!(fit(r.clone(), 10), Some((r.clone(), false)));
        let (cut, was_cut) = fit(r.clone(), 7).unwrap();
        assert!(was_cut);
        assert_eq!(cut.ids, (3..10).collect::<Vec<u32>>());
        assert_eq!(cut.learn, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        // One prompt token must stay before the reply.
        assert!(fit(r.clone(), 5).is_some());
        assert_eq!(fit(r, 4), None);
    }

    #[test]
    fn step_stats_average_and_reset() {
        let mut s = StepStats::default();
        s.add(&Tensor::new(&[1.0f32, -0.5], &Device::Cpu).unwrap()).unwrap();
        s.add(&Tensor::new(&[0.5f32, 0.0], &Device::Cpu).unwrap()).unwrap();
        let m = s.take();
        assert_eq!(m["margin"], 0.25);
        assert_eq!(m["accuracy"], 0.5);
        assert!(s.take().is_empty());
    }
}
