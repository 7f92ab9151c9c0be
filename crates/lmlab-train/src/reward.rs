//! The reward model: a Transformer with a scalar head that scores a reply to a prompt, trained on
//! preference pairs with the Bradley–Terry loss −log σ(r_chosen − r_rejected).
//!
//! The network starts from a base (or SFT) model's weights; the head is a new [1, d_model]
//! linear layer, [`HEAD`], initialised to zero, so every reward starts at 0 and the first loss is
//! exactly ln 2. The score of a prompt and reply is the head applied to the final hidden state of
//! the reply's end-of-turn token, the last token of the rendered sequence
//! ([`crate::pairs::render_reply`]); in a right-padded batch that is each row's last real token
//! ([`lmlab_model::Gpt::last_hidden`]), so padding changes no reward.
//!
//! A checkpoint is an ordinary lmlab checkpoint whose `model.safetensors` also holds
//! `reward_head.weight`: it loads as a language model anywhere (the head is ignored), and
//! [`read_head`] takes the head from it for scoring.
//!
//! What it does not do: LoRA (the whole model trains), or use rewards (RLHF is another stage).

use std::cell::RefCell;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use lmlab_model::checkpoint::{load_safetensors, WEIGHTS_FILE};
use lmlab_model::{Gpt, GptConfig, Mode, ParamSet, RightPadded};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::DataSummary;
use crate::pairs::{
    both_sides, optimizer, prepare, settings, tokens_per_step, AccuracyReport, PairTraining, RenderStats, StepStats, TokenPair,
};
use crate::sft::batch_indices;
use crate::trainer::{Objective, TrainEvent};

/// The scalar head's name in `model.safetensors`.
pub const HEAD: &str = "reward_head.weight";

/// The token id padding fills right-padded batches with (never read).
const PAD: u32 = 0;

/// The rewards [B] of token sequences: the head on each one's last hidden state.
pub fn rewards(model: &Gpt, head: &Tensor, seqs: &[&[u32]], mode: &mut Mode) -> Result<Tensor> {
    let batch = RightPadded::new(seqs, PAD, model.device())?;
    let h = model.last_hidden(&batch, mode)?;
    Ok(h.broadcast_mul(head)?.sum(1)?)
}

/// Softplus log(1 + eˣ), written to neither overflow nor lose small values: max(x, 0) +
/// log(1 + e^−|x|). −log σ(z) = softplus(−z).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok((x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?)
}

/// The Bradley–Terry loss: the mean over pairs of −log σ(r_chosen − r_rejected).
pub fn bradley_terry_loss(chosen: &Tensor, rejected: &Tensor) -> Result<Tensor> {
    Ok(softplus(&(rejected - chosen)?)?.mean_all()?)
}

/// The rewards of each pair's (chosen, rejected) replies.
pub fn score_pairs(model: &Gpt, head: &Tensor, pairs: &[TokenPair], batch_size: usize) -> Result<Vec<(f32, f32)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let refs: Vec<&TokenPair> = chunk.iter().collect();
        let seqs: Vec<&[u32]> = both_sides(&refs).iter().map(|r| r.ids.as_slice()).collect();
        let r: Vec<f32> = rewards(model, head, &seqs, &mut Mode::inference())?.to_vec1()?;
        out.extend(r[..chunk.len()].iter().copied().zip(r[chunk.len()..].iter().copied()));
    }
    Ok(out)
}

/// A reward model to train: the network from `weights` and the head from `weights[HEAD]`, or
/// zeros when it has none; every parameter trainable, the head last.
pub fn trainable(cfg: &GptConfig, mut weights: std::collections::HashMap<String, Tensor>, dev: &Device) -> Result<(Gpt, Tensor, ParamSet)> {
    let head = match weights.remove(HEAD) {
        Some(h) if h.dims() == [1, cfg.d_model] => h.to_dtype(DType::F32)?,
        Some(h) => bail!("{HEAD} has shape {:?}, the model needs [1, {}]", h.dims(), cfg.d_model),
        None => Tensor::zeros((1, cfg.d_model), DType::F32, dev)?,
    };
    let (model, mut params) = lmlab_model::checkpoint::trainable_from_tensors(cfg, weights, DType::F32, dev)?;
    let head = Var::from_tensor(&head)?;
    params.params.push((HEAD.to_string(), head.clone()));
    Ok((model, head.as_tensor().clone(), params))
}

/// The head of the reward model saved in `dir` (its `model.safetensors`).
pub fn read_head(dir: &Path, dev: &Device) -> Result<Tensor> {
    let path = dir.join(WEIGHTS_FILE);
    let mut weights = load_safetensors(&path, dev)?;
    weights.remove(HEAD).with_context(|| format!("{} has no {HEAD}: {} is not a reward model", path.display(), dir.display()))
}

/// The reward model's objective: pairs drawn by a per-epoch seeded permutation, each scored on
/// both replies in one right-padded batch.
pub struct RewardPairs {
    pub train: Vec<TokenPair>,
    pub held_out: Vec<TokenPair>,
    pub head: Tensor,
    pub summary: DataSummary,
    step_stats: RefCell<StepStats>,
}

impl RewardPairs {
    pub fn new(train: Vec<TokenPair>, held_out: Vec<TokenPair>, head: Tensor, summary: DataSummary) -> Self {
        Self { train, held_out, head, summary, step_stats: RefCell::default() }
    }

    /// The Bradley–Terry loss of `pairs` and their reward margins r_chosen − r_rejected.
    fn loss(&self, model: &Gpt, pairs: &[&TokenPair], mode: &mut Mode) -> Result<(Tensor, Tensor)> {
        let seqs: Vec<&[u32]> = both_sides(pairs).iter().map(|r| r.ids.as_slice()).collect();
        let r = rewards(model, &self.head, &seqs, mode)?;
        let (chosen, rejected) = (r.narrow(0, 0, pairs.len())?, r.narrow(0, pairs.len(), pairs.len())?);
        Ok((bradley_terry_loss(&chosen, &rejected)?, (chosen - rejected)?.detach()))
    }
}

impl Objective for RewardPairs {
    fn train_loss(&self, model: &Gpt, cfg: &TrainConfig, step: u64, micro: u64, dropout: &mut ChaCha8Rng) -> Result<Tensor> {
        let pairs: Vec<&TokenPair> = batch_indices(self.train.len(), cfg, step, micro).into_iter().map(|i| &self.train[i]).collect();
        let (loss, margins) = self.loss(model, &pairs, &mut Mode { grad: true, dropout: Some(dropout), capture: None, packing: None })?;
        self.step_stats.borrow_mut().add(&margins)?;
        Ok(loss)
    }

    /// The mean loss over the held-out pairs of the first `eval_batches` batches.
    fn eval_loss(&self, model: &Gpt, cfg: &TrainConfig) -> Result<f64> {
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in self.held_out.chunks(cfg.batch_size).take(cfg.eval_batches.max(1)) {
            let pairs: Vec<&TokenPair> = chunk.iter().collect();
            let (loss, _) = self.loss(model, &pairs, &mut Mode::inference())?;
            sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * chunk.len() as f64;
            count += chunk.len();
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

/// What a reward-model run did.
#[derive(Debug, Clone, Serialize)]
pub struct RewardReport {
    pub run: crate::trainer::TrainReport,
    pub rendering: RenderStats,
    pub train_pairs: usize,
    pub held_out_pairs: usize,
    /// Share of held-out pairs whose chosen reply the trained model scores higher, by reason.
    pub held_out: AccuracyReport,
}

/// Trains a reward model as `opts` says, handing each training event to `on_event`.
pub fn train_reward_model(opts: PairTraining, on_event: impl FnMut(&TrainEvent)) -> Result<RewardReport> {
    use crate::checkpoint::Extras;
    use crate::trainer::{RunSpec, Trainer};

    let (loaded, cfg) = settings(&opts)?;
    let data = prepare(&opts, &cfg, cfg.seq_len)?;
    let weights = loaded.as_ref().map_or_else(|| opts.base_weights.clone(), |l| l.weights.clone());
    let (model, head, params) = trainable(&opts.model_cfg, weights, &opts.device)?;
    let (opt, progress) = optimizer(&params, &cfg, loaded.as_ref())?;
    let (train_pairs, held_out_pairs) = (data.train.len(), data.held_out.len());
    let objective = RewardPairs::new(data.train, data.held_out, head.clone(), data.summary);
    let spec = RunSpec {
        out: &opts.out,
        stage: "reward",
        resume: opts.resume,
        stop_after: opts.stop_after,
        stop: opts.stop.clone(),
        device: opts.device.clone(),
        extras: Extras { tokenizer_json: opts.tokenizer_json.as_deref(), adapter: None, tensor_files: &[] },
    };
    let run = Trainer::new(spec, opts.model_cfg.clone(), cfg.clone(), &objective, &model, params).run(opt, progress, on_event)?;
    let scores = score_pairs(&model, &head, &objective.held_out, cfg.batch_size)?;
    Ok(RewardReport {
        run,
        rendering: data.stats,
        train_pairs,
        held_out_pairs,
        held_out: AccuracyReport::new(&objective.held_out, &scores),
    })
}
