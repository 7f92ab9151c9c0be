//! Unlearning: making a fine-tuned model forget a set of sequences (a forget set) while keeping
//! what it knows of the rest (a retain set), as TOFU (Maini et al. 2024) measures it.
//!
//! Every sequence is a [`Rendered`]: a conversation whose assistant tokens are marked, or a
//! document whose every token after the first is ([`render_document`]). A sequence's
//! log-probability log π(y|x) is the sum of log p over its marked tokens
//! ([`crate::dpo::sequence_logprobs`]). The methods ([`UnlearnMethod`]):
//!
//! - **ga**, gradient ascent: minimise the forget set's mean log p per marked token (raise its
//!   loss), nothing else. Unbounded: the longer it runs, the more it damages everything.
//! - **gd**, gradient difference: ga plus the retain set's ordinary loss, weighted.
//! - **npo**, negative preference optimisation (Zhang et al. 2024): with r = log π(y|x) −
//!   log π_ref(y|x) per forget sequence, minimise (2/β)·mean log(1 + e^{β·r}) — DPO with only a
//!   rejected reply. Its gradient is ga's weighted by 2σ(β·r), which falls as a sequence
//!   becomes unlikely, so it slows down instead of running away; as β → 0 it is ga. The reference
//!   is the model before unlearning; its log-probabilities of the forget set are computed once,
//!   before the first step. With a retain set it also adds the retain loss (NPO+RT).
//!
//! [`SequenceTraining`] with no forget set is plain fine-tuning on the retain set (documents
//! and conversations alike): the experiment's "learn" phase and its retain-only model.
//!
//! What it does not do: choose what to forget, or judge whether forgetting worked (that is
//! `lmlab experiment unlearning`, in lmlab-eval).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_model::{Gpt, GptConfig, Mode};
use lmlab_tokenizer::Tokenizer;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::DataSummary;
use crate::dpo::sequence_logprobs;
use crate::reward::softplus;
use crate::sft::{batch_indices, Rendered};
use crate::trainer::{Objective, TrainEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlearnMethod {
    Ga,
    Gd,
    Npo,
}

impl UnlearnMethod {
    pub const ALL: [UnlearnMethod; 3] = [UnlearnMethod::Ga, UnlearnMethod::Gd, UnlearnMethod::Npo];

    pub fn name(self) -> &'static str {
        match self {
            UnlearnMethod::Ga => "ga",
            UnlearnMethod::Gd => "gd",
            UnlearnMethod::Npo => "npo",
        }
    }
}

impl std::str::FromStr for UnlearnMethod {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ga" => UnlearnMethod::Ga,
            "gd" => UnlearnMethod::Gd,
            "npo" => UnlearnMethod::Npo,
            _ => bail!("unknown unlearning method {s:?} (ga, gd or npo)"),
        })
    }
}

/// How to treat the forget set, and how much the retain set's loss weighs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UnlearnSettings {
    pub method: UnlearnMethod,
    /// NPO's β: small is close to gradient ascent, large stops sooner.
    pub beta: f64,
    /// The retain loss's weight (gd, and npo when there is a retain set).
    pub retain_weight: f64,
}

/// A document as a sequence to train on: beginning-of-text, its tokens, end-of-text (where the
/// tokenizer has them), every token after the first learned.
pub fn render_document(text: &str, tok: &Tokenizer) -> Result<Rendered> {
    let special = tok.special();
    let mut ids: Vec<u32> = special.bos.into_iter().collect();
    ids.extend(tok.encode(text)?);
    ids.extend(special.eos);
    if ids.len() < 2 {
        bail!("the document {:?} is too short to learn from", text.chars().take(40).collect::<String>());
    }
    let mut learn = vec![1.0; ids.len()];
    learn[0] = 0.0;
    Ok(Rendered { ids, learn })
}

/// NPO's loss: (2/β)·mean softplus(β·(π − ref)) over a batch of sequence log-probabilities.
pub fn npo_loss(policy: &Tensor, reference: &Tensor, beta: f64) -> Result<Tensor> {
    Ok((softplus(&((policy - reference)? * beta)?)?.mean_all()? * (2.0 / beta))?)
}

/// Σ log p over the marked tokens of sequences `idx` of `set` [B], and how many tokens that is.
fn scored(model: &Gpt, set: &[Rendered], idx: &[usize], mode: &mut Mode) -> Result<(Tensor, f64)> {
    let seqs: Vec<&Rendered> = idx.iter().map(|&i| &set[i]).collect();
    let tokens: f64 = seqs.iter().map(|r| r.learned_tokens() as f64).sum();
    Ok((sequence_logprobs(model, &seqs, mode)?, tokens.max(1.0)))
}

/// Running sums of one step's per-token losses on each set, for its metrics line.
#[derive(Default)]
struct StepNll {
    forget: (f64, f64),
    retain: (f64, f64),
}

/// Fine-tuning on sequences, with a forget set pushed away: see the module's documentation.
pub struct SequenceTraining {
    pub forget: Vec<Rendered>,
    pub retain: Vec<Rendered>,
    /// None: no forget term (plain fine-tuning on `retain`).
    pub settings: Option<UnlearnSettings>,
    /// log π_ref of every forget sequence (NPO).
    pub reference: Vec<f32>,
    pub summary: DataSummary,
    step: RefCell<StepNll>,
}

impl SequenceTraining {
    /// Plain fine-tuning on `sequences`.
    pub fn learn(sequences: Vec<Rendered>, summary: DataSummary) -> Self {
        Self { forget: Vec::new(), retain: sequences, settings: None, reference: Vec::new(), summary, step: RefCell::default() }
    }

    /// Unlearning `forget` (the reference numbers as [`reference_logprobs`] gives them), keeping
    /// `retain` where the method uses it.
    pub fn unlearn(
        forget: Vec<Rendered>,
        retain: Vec<Rendered>,
        settings: UnlearnSettings,
        reference: Vec<f32>,
        summary: DataSummary,
    ) -> Self {
        Self { forget, retain, settings: Some(settings), reference, summary, step: RefCell::default() }
    }

    fn retain_weight(&self) -> f64 {
        match self.settings {
            None => 1.0,
            Some(s) if s.method == UnlearnMethod::Ga => 0.0,
            Some(s) => s.retain_weight,
        }
    }

    /// The forget term of a batch and its per-token loss (detached, for the metrics).
    fn forget_term(&self, model: &Gpt, s: &UnlearnSettings, idx: &[usize], mode: &mut Mode) -> Result<(Tensor, f64)> {
        let (lp, tokens) = scored(model, &self.forget, idx, mode)?;
        let nll = -lp.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? / tokens;
        let term = match s.method {
            UnlearnMethod::Ga | UnlearnMethod::Gd => (lp.sum_all()? / tokens)?,
            UnlearnMethod::Npo => {
                let reference = Tensor::new(idx.iter().map(|&i| self.reference[i]).collect::<Vec<f32>>(), model.device())?;
                npo_loss(&lp, &reference, s.beta)?
            }
        };
        Ok((term, nll))
    }
}

impl Objective for SequenceTraining {
    fn train_loss(&self, model: &Gpt, cfg: &TrainConfig, step: u64, micro: u64, dropout: &mut ChaCha8Rng) -> Result<Tensor> {
        // Unlearning trains without dropout, as NPO's reference was scored: at step 0, r = 0.
        let mut mode = match self.settings {
            None => Mode { grad: true, dropout: Some(dropout), capture: None, packing: None },
            Some(_) => Mode::training_without_dropout(),
        };
        let mut loss: Option<Tensor> = None;
        let mut stats = self.step.borrow_mut();
        if let Some(s) = &self.settings {
            let idx = batch_indices(self.forget.len(), cfg, step, micro);
            let (term, nll) = self.forget_term(model, s, &idx, &mut mode)?;
            stats.forget = (stats.forget.0 + nll, stats.forget.1 + 1.0);
            loss = Some(term);
        }
        let weight = self.retain_weight();
        if weight > 0.0 && !self.retain.is_empty() {
            let idx = batch_indices(self.retain.len(), cfg, step, micro);
            let (lp, tokens) = scored(model, &self.retain, &idx, &mut mode)?;
            let nll = (lp.sum_all()? / (-tokens))?;
            stats.retain = (stats.retain.0 + nll.to_dtype(DType::F64)?.to_scalar::<f64>()?, stats.retain.1 + 1.0);
            let term = (nll * weight)?;
            loss = Some(match loss {
                Some(l) => (l + term)?,
                None => term,
            });
        }
        loss.context("nothing to train on: no forget set and no retain set")
    }

    fn eval_loss(&self, _model: &Gpt, _cfg: &TrainConfig) -> Result<f64> {
        bail!("unlearning has no held-out set")
    }

    fn has_eval(&self, _cfg: &TrainConfig) -> bool {
        false
    }

    fn summary(&self) -> &DataSummary {
        &self.summary
    }

    fn tokens_per_step(&self, cfg: &TrainConfig) -> u64 {
        let mean = |set: &[Rendered]| set.iter().map(|r| r.ids.len()).sum::<usize>() / set.len().max(1);
        let sets = usize::from(self.settings.is_some()) * mean(&self.forget) + usize::from(self.retain_weight() > 0.0) * mean(&self.retain);
        (cfg.batch_size * cfg.grad_accum * sets) as u64
    }

    /// The step's mean per-token loss on the forget set and on the retain set.
    fn take_step_metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        let s = std::mem::take(&mut *self.step.borrow_mut());
        let mut out = serde_json::Map::new();
        for (name, (sum, n)) in [("forget_nll", s.forget), ("retain_nll", s.retain)] {
            if n > 0.0 {
                out.insert(name.into(), serde_json::json!(sum / n));
            }
        }
        out
    }
}

/// log π of every sequence of `set` under `model`, `batch` at a time, without gradients.
pub fn reference_logprobs(model: &Gpt, set: &[Rendered], batch: usize) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(set.len());
    for start in (0..set.len()).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch.max(1)).min(set.len())).collect();
        out.extend(scored(model, set, &idx, &mut Mode::inference())?.0.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// A run: the starting model's parts, the sets, the method (None: fine-tune on `retain`), and
/// how to train. Every weight trains.
pub struct UnlearnOptions {
    pub model_cfg: GptConfig,
    pub weights: HashMap<String, Tensor>,
    /// Copied into every checkpoint.
    pub tokenizer_json: Option<PathBuf>,
    pub forget: Vec<Rendered>,
    pub retain: Vec<Rendered>,
    pub settings: Option<UnlearnSettings>,
    pub train: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub stop_after: Option<u64>,
    pub stop: Arc<AtomicBool>,
    pub device: Device,
}

/// `r` cut to the first `max_len` tokens.
fn clipped(mut r: Rendered, max_len: usize) -> Rendered {
    r.ids.truncate(max_len);
    r.learn.truncate(max_len);
    r
}

/// Unlearns (or fine-tunes) as `opts` says, handing each training event to `on_event`.
pub fn train_unlearn(opts: UnlearnOptions, on_event: impl FnMut(&TrainEvent)) -> Result<crate::trainer::TrainReport> {
    use crate::checkpoint::{self, Extras};
    use crate::trainer::{Progress, RunSpec, Trainer};

    if let Some(s) = &opts.settings {
        if opts.forget.is_empty() {
            bail!("the forget set is empty");
        }
        if s.method == UnlearnMethod::Gd && opts.retain.is_empty() {
            bail!("gd (gradient difference) needs a retain set");
        }
        if s.method == UnlearnMethod::Npo && !(s.beta > 0.0 && s.beta.is_finite()) {
            bail!("beta must be a positive number, not {}", s.beta);
        }
    } else if opts.retain.is_empty() {
        bail!("nothing to fine-tune on");
    }
    let loaded = if opts.resume {
        Some(checkpoint::load(&opts.out, &opts.device).with_context(|| format!("resuming {}", opts.out.display()))?)
    } else {
        None
    };
    let cfg = match &loaded {
        Some(l) => TrainConfig { max_steps: l.state.train.max_steps.max(opts.train.max_steps), ..l.state.train.clone() },
        None => opts.train.clone(),
    };
    cfg.validate()?;
    // A sequence of n tokens trains on n − 1 positions, which must fit the context.
    let max_len = opts.model_cfg.context_length + 1;
    let forget: Vec<Rendered> = opts.forget.into_iter().map(|r| clipped(r, max_len)).collect();
    let retain: Vec<Rendered> = opts.retain.into_iter().map(|r| clipped(r, max_len)).collect();
    let count = |set: &[Rendered]| set.iter().map(|r| r.ids.len()).sum::<usize>();
    let summary = DataSummary {
        files: vec![format!("{} forget and {} retain sequences", forget.len(), retain.len())],
        total_tokens: count(&forget) + count(&retain),
        train_tokens: count(&forget) + count(&retain),
        val_tokens: 0,
    };
    let objective = match opts.settings {
        None => SequenceTraining::learn(retain, summary),
        Some(s) => {
            // The reference is the model before unlearning, which a resumed run still has: its
            // numbers are recomputed from the same weights, bit for bit.
            let reference = if s.method == UnlearnMethod::Npo {
                let before = lmlab_model::checkpoint::frozen_from_tensors(&opts.model_cfg, opts.weights.clone(), DType::F32, &opts.device)?;
                reference_logprobs(&before, &forget, cfg.batch_size)?
            } else {
                Vec::new()
            };
            SequenceTraining::unlearn(forget, retain, s, reference, summary)
        }
    };
    let weights = loaded.as_ref().map_or_else(|| opts.weights.clone(), |l| l.weights.clone());
    let (model, params) = lmlab_model::checkpoint::trainable_from_tensors(&opts.model_cfg, weights, DType::F32, &opts.device)?;
    let mut opt = crate::optim::AdamW::new(&params, cfg.adamw())?;
    let mut progress = Progress::fresh();
    if let Some(l) = loaded {
        opt.load_state(l.optimizer, l.state.step)?;
        progress = Progress::resumed(&l.state);
    }
    let spec = RunSpec {
        out: &opts.out,
        stage: if opts.settings.is_some() { "unlearn" } else { "finetune" },
        resume: opts.resume,
        stop_after: opts.stop_after,
        stop: opts.stop.clone(),
        device: opts.device.clone(),
        extras: Extras { tokenizer_json: opts.tokenizer_json.as_deref(), adapter: None, tensor_files: &[] },
    };
    Trainer::new(spec, opts.model_cfg.clone(), cfg, &objective, &model, params).run(opt, progress, on_event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn npo_loss_matches_hand_computed_values() {
        // r = (−2, 0, 1), β = 0.5: (2/β)·mean ln(1 + e^{βr}) = 4·mean(ln(1+e^{−1}), ln 2, ln(1+e^{0.5})).
        let want = 4.0 * ((1.0 + (-1.0f64).exp()).ln() + 2f64.ln() + (1.0 + 0.5f64.exp()).ln()) / 3.0;
        let got = npo_loss(&t(&[-12.0, -5.0, -3.0]), &t(&[-10.0, -5.0, -4.0]), 0.5).unwrap().to_scalar::<f32>().unwrap();
        assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");
        // At the reference (r = 0) it is (2/β)·ln 2 whatever the log-probabilities.
        let at_ref = npo_loss(&t(&[-7.0, -1.0]), &t(&[-7.0, -1.0]), 0.1).unwrap().to_scalar::<f32>().unwrap();
        assert!((f64::from(at_ref) - 20.0 * 2f64.ln()).abs() < 1e-4);
    }

    #[test]
    fn npo_gradient_is_gradient_ascent_weighted_by_two_sigmoid() {
        // d/dπ of (2/β)·softplus(β(π − ref)) = 2σ(β(π − ref)): 1 at the reference, smaller as
        // π falls below it, and that weight → 1 for every π as β → 0 (gradient ascent).
        let grad = |pi: f32, beta: f64| {
            let v = candle_core::Var::new(&[pi], &Device::Cpu).unwrap();
            let loss = npo_loss(v.as_tensor(), &t(&[-5.0]), beta).unwrap();
            loss.backward().unwrap().get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap()[0]
        };
        assert!((grad(-5.0, 0.5) - 1.0).abs() < 1e-6);
        let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert!((f64::from(grad(-9.0, 0.5)) - 2.0 * sigma(0.5 * -4.0)).abs() < 1e-6);
        assert!(grad(-9.0, 0.5) < grad(-6.0, 0.5));
        assert!((grad(-9.0, 1e-4) - 1.0).abs() < 1e-3);
    }
}
