//! Direct preference optimisation: moving a policy (an SFT model) toward the chosen replies of
//! preference pairs without a reward model.
//!
//! A reply's log-probability log π(y|x) is the sum of log p over its learned tokens (content and
//! end of turn, see [`crate::pairs::render_reply`]). The reference model is the starting SFT
//! model, frozen; its log-probabilities of every pair's replies are computed once, before the
//! first step ([`reference_logprobs`]), kept in memory and written into every checkpoint
//! ([`REFERENCE_FILE`]), so a resumed run reads them instead of recomputing them from weights it
//! no longer has. With h = (π_c − ref_c) − (π_r − ref_r), the losses ([`DpoLoss`]) are:
//!
//! - **sigmoid** (DPO, Rafailov et al. 2023): −log σ(β·h);
//! - **ipo** (Azar et al. 2023): (h − 1/(2β))²;
//! - **simpo** (Meng et al. 2024): −log σ(β·(π_c/|y_c| − π_r/|y_r|) − γ), length-normalised with a
//!   margin γ and no reference at all.
//!
//! The implicit reward of a reply is β·(log π − log ref) (SimPO: β·log π/|y|); each step's
//! metrics line carries the mean margin between chosen and rejected and the share of pairs where
//! it is positive. The policy trains without dropout, as the reference was scored: at step 0
//! every implicit reward is 0, up to rounding.
//!
//! The whole model trains, or LoRA adapters on the frozen SFT model. What it does not do: sample
//! from the policy (DPO is offline: it learns from the pairs as given).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::load_safetensors;
use lmlab_model::{Gpt, Mode, RightPadded};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::DataSummary;
use crate::pairs::{
    both_sides, optimizer, prepare, settings, tokens_per_step, AccuracyReport, PairTraining, RenderStats, StepStats, TokenPair,
};
use crate::reward::softplus;
use crate::sft::{batch_indices, Rendered};
use crate::trainer::{Objective, TrainEvent};

/// The reference log-probabilities in a DPO checkpoint folder: `train.chosen`, `train.rejected`,
/// `held_out.chosen`, `held_out.rejected` (f32, one per pair, in the run's pair order) and
/// `fingerprint` (one i64: a hash of every pair's tokens, which a resumed run checks).
pub const REFERENCE_FILE: &str = "reference_logprobs.safetensors";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    Sigmoid,
    Ipo,
    Simpo,
}

/// The loss and its constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DpoSettings {
    pub loss: DpoLoss,
    /// β: how far the policy may move from the reference (sigmoid, ipo), or the reward scale
    /// (simpo).
    pub beta: f64,
    /// SimPO's target margin γ (unused by the others).
    pub gamma: f64,
}

/// Log-probabilities of a batch of pairs' chosen and rejected replies, each [B], and (SimPO) the
/// replies' lengths in tokens.
pub struct PairLogps<'a> {
    pub chosen: &'a Tensor,
    pub rejected: &'a Tensor,
    pub chosen_len: &'a Tensor,
    pub rejected_len: &'a Tensor,
}

/// The mean loss over the batch and each pair's implicit reward margin (detached).
pub fn dpo_loss(s: &DpoSettings, policy: &PairLogps, reference: &PairLogps) -> Result<(Tensor, Tensor)> {
    let log_ratio = |pi: &Tensor, r: &Tensor| pi - r;
    let (loss, margin) = match s.loss {
        DpoLoss::Sigmoid => {
            let h = ((log_ratio(policy.chosen, reference.chosen)? - log_ratio(policy.rejected, reference.rejected)?)? * s.beta)?;
            (softplus(&h.neg()?)?.mean_all()?, h)
        }
        DpoLoss::Ipo => {
            let h = (log_ratio(policy.chosen, reference.chosen)? - log_ratio(policy.rejected, reference.rejected)?)?;
            ((h.clone() - 1.0 / (2.0 * s.beta))?.sqr()?.mean_all()?, (h * s.beta)?)
        }
        DpoLoss::Simpo => {
            let per_token = |pi: &Tensor, len: &Tensor| pi / len;
            let h = ((per_token(policy.chosen, policy.chosen_len)? - per_token(policy.rejected, policy.rejected_len)?)? * s.beta)?;
            (softplus(&(h.clone() - s.gamma)?.neg()?)?.mean_all()?, h)
        }
    };
    Ok((loss, margin.detach()))
}

/// The token id padding fills right-padded batches with (weight 0: never counted).
const PAD: u32 = 0;

/// log π(reply | prompt) [B] of each sequence: the sum of log p over its learned tokens. Only
/// those positions are scored ([`Gpt::logprobs_at`]); a 0/1 matrix [B, N] sums each row's.
pub fn sequence_logprobs(model: &Gpt, seqs: &[&Rendered], mode: &mut Mode) -> Result<Tensor> {
    let dev = model.device();
    let inputs: Vec<&[u32]> = seqs.iter().map(|r| &r.ids[..r.ids.len() - 1]).collect();
    let inputs = RightPadded::new(&inputs, PAD, dev)?;
    let width = inputs.ids.dim(1)?;
    // Position t of row b predicts token t + 1, which is learned when learn[t + 1] is 1.
    let (mut at, mut targets, mut row_of) = (Vec::new(), Vec::new(), Vec::new());
    for (b, r) in seqs.iter().enumerate() {
        for t in (0..r.ids.len() - 1).filter(|&t| r.learn[t + 1] > 0.0) {
            at.push((b * width + t) as u32);
            targets.push(r.ids[t + 1]);
            row_of.push(b);
        }
    }
    let n = at.len();
    let logp = model.logprobs_at(&inputs.ids, &Tensor::new(at, dev)?, &Tensor::new(targets, dev)?, mode)?;
    let mut rows = vec![0f32; seqs.len() * n];
    row_of.iter().enumerate().for_each(|(i, &b)| rows[b * n + i] = 1.0);
    Ok(Tensor::from_vec(rows, (seqs.len(), n), dev)?.matmul(&logp.unsqueeze(1)?)?.squeeze(1)?)
}

/// The number of learned tokens of each sequence, as f32 [B] (SimPO's lengths).
fn reply_lengths(seqs: &[&Rendered], dev: &Device) -> Result<Tensor> {
    let lens: Vec<f32> = seqs.iter().map(|r| r.learn.iter().filter(|&&w| w > 0.0).count() as f32).collect();
    Ok(Tensor::new(lens, dev)?)
}

/// Log-probabilities of every pair's chosen and rejected replies under `model`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logps {
    pub chosen: Vec<f32>,
    pub rejected: Vec<f32>,
}

/// `model`'s log-probabilities of the replies of `pairs`, scored `batch_size` pairs at a time
/// without gradients. The same pairs and batch size give the same numbers, bit for bit.
pub fn reference_logprobs(model: &Gpt, pairs: &[TokenPair], batch_size: usize) -> Result<Logps> {
    let mut out = Logps { chosen: Vec::with_capacity(pairs.len()), rejected: Vec::with_capacity(pairs.len()) };
    for chunk in pairs.chunks(batch_size.max(1)) {
        let refs: Vec<&TokenPair> = chunk.iter().collect();
        let lp: Vec<f32> = sequence_logprobs(model, &both_sides(&refs), &mut Mode::inference())?.to_vec1()?;
        out.chosen.extend_from_slice(&lp[..chunk.len()]);
        out.rejected.extend_from_slice(&lp[chunk.len()..]);
    }
    Ok(out)
}

/// FNV-1a over every pair's tokens and learned marks, in order: what the reference numbers of a
/// checkpoint were computed on.
pub fn fingerprint(pairs: &[&[TokenPair]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |x: u32| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for p in pairs.iter().flat_map(|side| side.iter()) {
        for r in [&p.chosen, &p.rejected] {
            eat(r.ids.len() as u32);
            r.ids.iter().for_each(|&id| eat(id));
            r.learn.iter().for_each(|&w| eat(w.to_bits()));
        }
    }
    h
}

/// The reference numbers of the training and held-out pairs, and the pairs' fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceCache {
    pub train: Logps,
    pub held_out: Logps,
    pub fingerprint: u64,
}

impl ReferenceCache {
    /// The tensors of [`REFERENCE_FILE`].
    pub fn tensors(&self, dev: &Device) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (side, lp) in [("train", &self.train), ("held_out", &self.held_out)] {
            out.insert(format!("{side}.chosen"), Tensor::new(lp.chosen.as_slice(), dev)?);
            out.insert(format!("{side}.rejected"), Tensor::new(lp.rejected.as_slice(), dev)?);
        }
        out.insert("fingerprint".into(), Tensor::new(&[self.fingerprint as i64], dev)?);
        Ok(out)
    }

    /// Reads [`REFERENCE_FILE`] from checkpoint folder `dir`.
    pub fn read(dir: &Path, dev: &Device) -> Result<Self> {
        let path = dir.join(REFERENCE_FILE);
        let mut t = load_safetensors(&path, dev)?;
        let mut take = |name: &str| t.remove(name).with_context(|| format!("{} has no tensor {name:?}", path.display()));
        let mut side = |name: &str| -> Result<Logps> {
            Ok(Logps { chosen: take(&format!("{name}.chosen"))?.to_vec1()?, rejected: take(&format!("{name}.rejected"))?.to_vec1()? })
        };
        let (train, held_out) = (side("train")?, side("held_out")?);
        let fingerprint = take("fingerprint")?.to_vec1::<i64>()?.first().copied().context("an empty fingerprint")? as u64;
        Ok(Self { train, held_out, fingerprint })
    }
}

/// DPO's objective: pairs drawn by a per-epoch seeded permutation, both replies scored in one
/// right-padded batch, against the cached reference numbers.
pub struct PreferencePairs {
    pub train: Vec<TokenPair>,
    pub held_out: Vec<TokenPair>,
    pub reference: ReferenceCache,
    pub settings: DpoSettings,
    pub summary: DataSummary,
    step_stats: RefCell<StepStats>,
}

impl PreferencePairs {
    pub fn new(
        train: Vec<TokenPair>,
        held_out: Vec<TokenPair>,
        reference: ReferenceCache,
        settings: DpoSettings,
        summary: DataSummary,
    ) -> Self {
        Self { train, held_out, reference, settings, summary, step_stats: RefCell::default() }
    }

    /// The loss of pairs `idx` of `pairs` (whose reference numbers are `reference`), and margins.
    fn loss(&self, model: &Gpt, pairs: &[TokenPair], reference: &Logps, idx: &[usize], mode: &mut Mode) -> Result<(Tensor, Tensor)> {
        let dev = model.device();
        let batch: Vec<&TokenPair> = idx.iter().map(|&i| &pairs[i]).collect();
        let seqs = both_sides(&batch);
        let b = batch.len();
        let lp = sequence_logprobs(model, &seqs, mode)?;
        let lens = reply_lengths(&seqs, dev)?;
        let (pc, pr, lc, lr) = (lp.narrow(0, 0, b)?, lp.narrow(0, b, b)?, lens.narrow(0, 0, b)?, lens.narrow(0, b, b)?);
        let pick = |v: &[f32]| Tensor::new(idx.iter().map(|&i| v[i]).collect::<Vec<f32>>(), dev);
        let (rc, rr) = (pick(&reference.chosen)?, pick(&reference.rejected)?);
        let policy = PairLogps { chosen: &pc, rejected: &pr, chosen_len: &lc, rejected_len: &lr };
        let reference = PairLogps { chosen: &rc, rejected: &rr, chosen_len: &lc, rejected_len: &lr };
        dpo_loss(&self.settings, &policy, &reference)
    }
}

impl PreferencePairs {
    /// The implicit reward margin of every held-out pair under `model`.
    pub fn held_out_margins(&self, model: &Gpt, batch_size: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.held_out.len());
        for start in (0..self.held_out.len()).step_by(batch_size.max(1)) {
            let idx: Vec<usize> = (start..(start + batch_size.max(1)).min(self.held_out.len())).collect();
            let (_, margins) = self.loss(model, &self.held_out, &self.reference.held_out, &idx, &mut Mode::inference())?;
            out.extend(margins.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

impl Objective for PreferencePairs {
    fn train_loss(&self, model: &Gpt, cfg: &TrainConfig, step: u64, micro: u64, _dropout: &mut ChaCha8Rng) -> Result<Tensor> {
        let idx = batch_indices(self.train.len(), cfg, step, micro);
        let (loss, margins) = self.loss(model, &self.train, &self.reference.train, &idx, &mut Mode::training_without_dropout())?;
        self.step_stats.borrow_mut().add(&margins)?;
        Ok(loss)
    }

    /// The mean loss over the held-out pairs of the first `eval_batches` batches.
    fn eval_loss(&self, model: &Gpt, cfg: &TrainConfig) -> Result<f64> {
        let (mut sum, mut count) = (0.0, 0usize);
        let n = self.held_out.len().min(cfg.batch_size * cfg.eval_batches.max(1));
        for start in (0..n).step_by(cfg.batch_size) {
            let idx: Vec<usize> = (start..(start + cfg.batch_size).min(n)).collect();
            let (loss, _) = self.loss(model, &self.held_out, &self.reference.held_out, &idx, &mut Mode::inference())?;
            sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * idx.len() as f64;
            count += idx.len();
        }
        Ok(sum / count.max(1) as f64)
    }

    fn has_eval(&self, _cfg: &TrainConfig) -> bool {
        !self.held_out.is_empty()
    }

    fn summary(&self) -> &DataSummary {
        &self.summary
    }

    fn tokens_per_step(&self, cfg: &TrainConfig) -> u64 {
        tokens_per_step(&self.train, cfg)
    }

    fn take_step_metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        self.step_stats.borrow_mut().take()
    }
}

/// A DPO run: the pairs and model (`PairTraining`; its base is the SFT policy), the loss, and
/// LoRA adapters to train instead of every weight.
pub struct DpoOptions {
    pub run: PairTraining,
    pub settings: DpoSettings,
    pub lora: Option<lmlab_model::LoraConfig>,
}

/// What a DPO run did. The held-out figures compare raw log-probabilities: the share of pairs
/// whose chosen reply the model finds more likely than the rejected one.
#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    pub run: crate::trainer::TrainReport,
    pub settings: DpoSettings,
    pub rendering: RenderStats,
    pub train_pairs: usize,
    pub held_out_pairs: usize,
    pub trainable_params: usize,
    /// log ref(chosen) > log ref(rejected), held out: the SFT model before DPO.
    pub reference_prefers_chosen: AccuracyReport,
    /// log π(chosen) > log π(rejected), held out: the trained policy.
    pub policy_prefers_chosen: AccuracyReport,
    /// Held-out share of pairs with a positive implicit reward margin.
    pub implicit_reward_accuracy: AccuracyReport,
}

/// The policy to train: every weight, or LoRA adapters (fresh, or `resumed`) on a frozen base;
/// and its trainable parameters.
fn policy(opts: &DpoOptions, cfg: &TrainConfig, resumed: Option<HashMap<String, Tensor>>) -> Result<(Gpt, lmlab_model::ParamSet)> {
    let run = &opts.run;
    match &opts.lora {
        None => {
            let weights = resumed.unwrap_or_else(|| run.base_weights.clone());
            lmlab_model::checkpoint::trainable_from_tensors(&run.model_cfg, weights, DType::F32, &run.device)
        }
        Some(lora) => {
            let mut model =
                lmlab_model::checkpoint::frozen_from_tensors(&run.model_cfg, run.base_weights.clone(), DType::F32, &run.device)?;
            let (vb, collector) = lmlab_model::params::ParamBackend::var_builder(cfg.seed, resumed, DType::F32, &run.device);
            model.add_lora(lora, &vb)?;
            Ok((model, collector.finish()))
        }
    }
}

/// The reference numbers: read from the checkpoint when resuming (and checked against the pairs),
/// else computed with the SFT model.
fn reference(opts: &DpoOptions, prepared: &crate::pairs::PreparedPairs, cfg: &TrainConfig) -> Result<ReferenceCache> {
    let run = &opts.run;
    let fingerprint = fingerprint(&[&prepared.train, &prepared.held_out]);
    if run.resume {
        let dir = crate::checkpoint::resolve(&run.out).with_context(|| format!("no checkpoint in {}", run.out.display()))?;
        let cache = ReferenceCache::read(&dir, &run.device)?;
        if cache.fingerprint != fingerprint || cache.train.chosen.len() != prepared.train.len() {
            bail!(
                "the pairs differ from those {} was computed on (other data files, or another seq_len?)",
                dir.join(REFERENCE_FILE).display()
            );
        }
        return Ok(cache);
    }
    let sft = lmlab_model::checkpoint::frozen_from_tensors(&run.model_cfg, run.base_weights.clone(), DType::F32, &run.device)?;
    Ok(ReferenceCache {
        train: reference_logprobs(&sft, &prepared.train, cfg.batch_size)?,
        held_out: reference_logprobs(&sft, &prepared.held_out, cfg.batch_size)?,
        fingerprint,
    })
}

/// Trains a policy with DPO (or IPO, SimPO) as `opts` says, handing each training event to
/// `on_event`.
pub fn train_dpo(opts: DpoOptions, mut on_event: impl FnMut(&TrainEvent)) -> Result<DpoReport> {
    use crate::checkpoint::{AdapterInfo, Extras};
    use crate::trainer::{RunSpec, Trainer};

    if !(opts.settings.beta > 0.0 && opts.settings.beta.is_finite()) {
        bail!("beta must be a positive number, not {}", opts.settings.beta);
    }
    let run = &opts.run;
    let (loaded, cfg) = settings(run)?;
    // Inputs are the sequence without its last token: sequences of seq_len + 1 tokens fill a row.
    let data = prepare(run, &cfg, cfg.seq_len + 1)?;
    if !run.resume {
        let n = data.train.len() + data.held_out.len();
        on_event(&TrainEvent::Note(format!("scoring the {n} pairs' replies with the reference (SFT) model, once")));
    }
    let cache = reference(&opts, &data, &cfg)?;
    let (model, params) = policy(&opts, &cfg, loaded.as_ref().map(|l| l.weights.clone()))?;
    let (opt, progress) = optimizer(&params, &cfg, loaded.as_ref())?;
    let trainable_params = params.num_elements();
    let (train_pairs, held_out_pairs) = (data.train.len(), data.held_out.len());
    let tensor_files = [(REFERENCE_FILE, cache.tensors(&run.device)?)];
    let objective = PreferencePairs::new(data.train, data.held_out, cache, opts.settings, data.summary);
    let adapter = opts.lora.clone().map(|lora| AdapterInfo { base: run.base.clone(), lora });
    let spec = RunSpec {
        out: &run.out,
        stage: "dpo",
        resume: run.resume,
        stop_after: run.stop_after,
        stop: run.stop.clone(),
        device: run.device.clone(),
        extras: Extras { tokenizer_json: run.tokenizer_json.as_deref(), adapter: adapter.as_ref(), tensor_files: &tensor_files },
    };
    let report = Trainer::new(spec, run.model_cfg.clone(), cfg.clone(), &objective, &model, params).run(opt, progress, on_event)?;
    let held = &objective.held_out;
    let reference = &objective.reference.held_out;
    let trained = reference_logprobs(&model, held, cfg.batch_size)?;
    let pairs_of = |lp: &Logps| lp.chosen.iter().copied().zip(lp.rejected.iter().copied()).collect::<Vec<_>>();
    let margins: Vec<(f32, f32)> = objective.held_out_margins(&model, cfg.batch_size)?.into_iter().map(|m| (m, 0.0)).collect();
    Ok(DpoReport {
        run: report,
        settings: opts.settings,
        rendering: data.stats,
        train_pairs,
        held_out_pairs,
        trainable_params,
        reference_prefers_chosen: AccuracyReport::new(held, &pairs_of(reference)),
        policy_prefers_chosen: AccuracyReport::new(held, &pairs_of(&trained)),
        implicit_reward_accuracy: AccuracyReport::new(held, &margins),
    })
}
