//! RLHF: training a policy (an SFT model) on rewards for its own samples, with PPO, GRPO or
//! RLOO, against a frozen reference model.
//!
//! One step:
//! 1. **Rollouts.** `batch_size` prompts (a permutation seeded per epoch, as SFT draws rows) are
//!    answered `group_size` times each by the current policy through the engine's batched decode
//!    ([`lmlab_infer::generate_batch`] on the training [`Gpt`] itself: it is a `CausalLm`, so no
//!    weights are copied). Sample seeds derive from (seed, step), so rollouts are reproducible and
//!    a resumed run draws what an uninterrupted one would.
//! 2. **Rewards** ([`reward`]): the reward model, the world's grader, or a weighted sum.
//! 3. **Scoring, without gradients**: the policy's log-probabilities of the sampled tokens
//!    (`logp_old`), the reference's (`logp_ref`), each token's entropy, and (PPO) the value
//!    estimates. Both models are scored in the same mode as the update, so at the first update
//!    every ratio is exactly 1 and the KL at step 0 is exactly 0.
//! 4. **Advantages**:
//!    - PPO: per-token rewards −β·(logp_old − logp_ref) (k1), plus the (optionally whitened)
//!      score on the last token; GAE(γ, λ) with the value estimates; advantages whitened.
//!    - GRPO: the group-normalised score of each response, on every one of its tokens; the KL
//!      is a k3 term β·KL in the loss instead of in the reward.
//!    - RLOO: the score minus β·Σ k1 of the response, minus the leave-one-out mean of its group.
//! 5. **Updates**: `epochs` passes over the rollouts in `minibatches` seeded minibatches, each an
//!    AdamW step on the clipped surrogate (+ the clipped value loss for PPO, + the k3 term for
//!    GRPO). One epoch of one minibatch makes GRPO and RLOO plain policy gradient (ratio 1).
//! 6. **Bookkeeping**: β's adaptive update, a `metrics.jsonl` line, the `--max-kl` guard (a step
//!    whose KL exceeds it saves a checkpoint and stops before updating), checkpoints.
//!
//! A checkpoint holds the policy (`model.safetensors`, loadable as any model: the value head
//! `value_head.weight` and a separate critic's `critic.*` tensors are ignored there), AdamW's
//! state, β and AdamW's update count (`rl_state.safetensors`); `--resume` continues bit for bit (tested). The
//! reference is the starting model, which the caller loads again.
//!
//! What it does not do: LoRA policies, dropout during RL, or a reward model that trains along.

pub mod loss;
pub mod math;
pub mod reward;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use lmlab_infer::{generate_batch, GenerateRequest, SamplingParams};
use lmlab_model::{Gpt, GptConfig, Mode, ParamSet, RightPadded};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::checkpoint::{self, Extras, SaveRequest, TrainerState};
use crate::config::TrainConfig;
use crate::data::DataSummary;
use crate::metrics::MetricsLog;
use crate::optim::{clip_global_norm, AdamW};
use crate::schedule::lr_at;
use math::{KlController, KlEstimator};
use reward::RewardFn;

/// The value head's name in a checkpoint.
pub const VALUE_HEAD: &str = "value_head.weight";
/// The prefix of a separate critic's tensors in a checkpoint.
pub const CRITIC_PREFIX: &str = "critic.";
/// β and the controller's settings in a checkpoint folder.
pub const STATE_FILE: &str = "rl_state.safetensors";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Ppo,
    Grpo,
    Rloo,
}

/// Where PPO's value estimates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Critic {
    /// A scalar head on the policy's own final hidden states (one network, shared trunk).
    Shared,
    /// A separate network with its own head, initialised from given weights (the reward
    /// model's, head included, when there is one).
    Separate,
}

/// The algorithm and its constants.
#[derive(Debug, Clone, Serialize)]
pub struct RlSettings {
    pub algo: Algo,
    /// Samples per prompt (GRPO and RLOO: at least 2).
    pub group_size: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub kl: KlController,
    pub gamma: f64,
    pub lambda: f64,
    pub clip_ratio: f64,
    pub clip_value: f64,
    pub vf_coef: f64,
    pub epochs: usize,
    pub minibatches: usize,
    /// PPO: whiten the step's scores (keeping their mean) before they enter the token rewards.
    pub whiten_rewards: bool,
    pub critic: Critic,
    /// Stop (with a checkpoint) when a step's mean KL per response exceeds this.
    pub max_kl: Option<f64>,
}

impl RlSettings {
    /// Defaults for `algo`: PPO one sample per prompt, 4 epochs of 2 minibatches, β 0.05 fixed;
    /// GRPO and RLOO groups of 4, one epoch of one minibatch.
    pub fn defaults(algo: Algo) -> Self {
        let ppo = algo == Algo::Ppo;
        Self {
            algo,
            group_size: if ppo { 1 } else { 4 },
            max_new_tokens: 24,
            temperature: 1.0,
            kl: KlController::fixed(0.05),
            gamma: 1.0,
            lambda: 0.95,
            clip_ratio: 0.2,
            clip_value: 0.2,
            vf_coef: 0.1,
            epochs: if ppo { 4 } else { 1 },
            minibatches: if ppo { 2 } else { 1 },
            whiten_rewards: false,
            critic: Critic::Shared,
            max_kl: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.algo != Algo::Ppo && self.group_size < 2 {
            bail!("{:?} compares the samples of a prompt: --group-size must be at least 2", self.algo);
        }
        anyhow::ensure!(
            self.group_size >= 1 && self.max_new_tokens >= 1 && self.epochs >= 1 && self.minibatches >= 1,
            "group size, max new tokens, epochs and minibatches must be positive"
        );
        anyhow::ensure!(self.temperature > 0.0, "RL samples from the policy itself: the temperature must be positive");
        anyhow::ensure!(self.kl.value >= 0.0 && self.clip_ratio > 0.0 && self.clip_value > 0.0, "β ≥ 0 and clip ranges > 0");
        Ok(())
    }
}

/// One sampled response.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Index into the run's prompts.
    pub prompt: usize,
    pub response: Vec<u32>,
    /// Ended with a stop token (not at the token limit or the context's end).
    pub finished: bool,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The training settings of an RL run: `steps` steps of `batch_size` prompts, the learning rate
/// decaying from `lr` to a tenth after a warmup of a tenth of the steps (at most 10), no weight
/// decay, a metrics line every step, a checkpoint every `save_every` steps (0: only at the end).
pub fn train_config(batch_size: usize, steps: u64, lr: f64, save_every: u64, seed: u64) -> TrainConfig {
    TrainConfig {
        batch_size,
        max_steps: steps,
        lr,
        min_lr: lr / 10.0,
        warmup_steps: (steps / 10).min(10),
        weight_decay: 0.0,
        save_every,
        log_every: 1,
        seed,
        ..TrainConfig::default()
    }
}

/// `n` samples for each prompt of `chosen` (indices into `prompts`) from `policy`, decoded
/// together through the engine's batched decode. Sample j of request r draws with seed
/// `seed + r·n + j`: the same seed gives the same rollouts.
#[allow(clippy::too_many_arguments)]
pub fn rollouts(
    policy: &Gpt,
    prompts: &[Vec<u32>],
    chosen: &[usize],
    n: usize,
    max_new_tokens: usize,
    temperature: f64,
    stop_ids: &[u32],
    seed: u64,
) -> Result<Vec<Rollout>> {
    let ctx = policy.config().context_length;
    let reqs: Vec<GenerateRequest> = chosen
        .iter()
        .enumerate()
        .map(|(r, &p)| {
            let sampling = SamplingParams { temperature, seed: seed.wrapping_add((r * n) as u64), ..Default::default() };
            let mut req = GenerateRequest::new(prompts[p].clone(), max_new_tokens.min(ctx.saturating_sub(prompts[p].len())), sampling);
            req.n = n;
            req.stop_ids = stop_ids.to_vec();
            req
        })
        .collect();
    let gens = generate_batch(policy, &reqs, |_, _, _| false)?;
    let mut out = Vec::with_capacity(chosen.len() * n);
    for (&p, g) in chosen.iter().zip(gens) {
        for s in g.samples {
            out.push(Rollout { prompt: p, finished: s.finish_reason == lmlab_infer::FinishReason::Stop, response: s.tokens });
        }
    }
    Ok(out)
}

/// The flat positions, targets and per-rollout token counts of a right-padded batch of
/// prompt + response sequences (inputs are each sequence without its last token).
fn batch(prompts: &[Vec<u32>], rolls: &[&Rollout], dev: &Device) -> Result<(RightPadded, Tensor, Tensor, Vec<usize>)> {
    let seqs: Vec<Vec<u32>> = rolls
        .iter()
        .map(|r| {
            let mut s = prompts[r.prompt].clone();
            s.extend_from_slice(&r.response);
            s.pop();
            s
        })
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let inputs = RightPadded::new(&refs, 0, dev)?;
    let width = inputs.ids.dim(1)?;
    let (mut at, mut targets, mut lens) = (Vec::new(), Vec::new(), Vec::new());
    for (b, r) in rolls.iter().enumerate() {
        let p = prompts[r.prompt].len();
        for (k, &tok) in r.response.iter().enumerate() {
            at.push((b * width + p - 1 + k) as u32);
            targets.push(tok);
        }
        lens.push(r.response.len());
    }
    Ok((inputs, Tensor::new(at, dev)?, Tensor::new(targets, dev)?, lens))
}

/// Log-probabilities, entropies and hidden states of the response tokens of `rolls` under
/// `model` (one forward pass), and each rollout's token count.
fn token_stats(model: &Gpt, prompts: &[Vec<u32>], rolls: &[&Rollout], mode: &mut Mode) -> Result<(Tensor, Tensor, Tensor, Vec<usize>)> {
    let (inputs, at, targets, lens) = batch(prompts, rolls, model.device())?;
    let (logp, entropy, hidden) = model.token_stats_at(&inputs.ids, &at, &targets, mode)?;
    Ok((logp, entropy, hidden, lens))
}

/// Values [N] of the response tokens: `head` [1, D] on hidden states [N, D].
fn values_of(hidden: &Tensor, head: &Tensor) -> Result<Tensor> {
    Ok(hidden.broadcast_mul(head)?.sum(1)?)
}

fn vec64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1()?)
}

/// Splits a flat per-token vector into per-rollout pieces.
fn split(flat: &[f64], lens: &[usize]) -> Vec<Vec<f64>> {
    let mut at = 0;
    lens.iter()
        .map(|&n| {
            let piece = flat[at..at + n].to_vec();
            at += n;
            piece
        })
        .collect()
}

/// A separate critic: its network and head.
struct CriticNet {
    model: Gpt,
    head: Tensor,
}

/// What an RL run trains: the policy, its value head or critic, and their parameters.
struct Nets {
    policy: Gpt,
    head: Option<Tensor>,
    critic: Option<CriticNet>,
    params: ParamSet,
}

/// Everything an RL run needs, loaded by the caller.
pub struct RlRun<'a> {
    pub model_cfg: GptConfig,
    /// The starting model (the SFT policy): the policy starts from it and it is the reference.
    pub policy_weights: HashMap<String, Tensor>,
    /// A separate critic's starting weights (with `reward_head.weight` as its head if present);
    /// only read with `Critic::Separate`. None: the policy's.
    pub critic_weights: Option<HashMap<String, Tensor>>,
    /// Prompt ids (chat-rendered, ending with the assistant's turn).
    pub prompts: Vec<Vec<u32>>,
    pub stop_ids: Vec<u32>,
    pub reward: &'a dyn RewardFn,
    pub settings: RlSettings,
    pub train: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub stop_after: Option<u64>,
    pub stop: Arc<AtomicBool>,
    pub tokenizer_json: Option<PathBuf>,
    pub device: Device,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RlReport {
    pub checkpoint: PathBuf,
    pub metrics: PathBuf,
    pub start_step: u64,
    pub final_step: u64,
    pub max_steps: u64,
    pub interrupted: bool,
    /// The `--max-kl` guard stopped the run.
    pub stopped_by_kl: bool,
    pub trainable_params: usize,
    /// Every metrics line of this invocation.
    pub steps: Vec<serde_json::Value>,
    pub settings: RlSettings,
}

fn build_nets(run: &RlRun, loaded: Option<HashMap<String, Tensor>>) -> Result<Nets> {
    let (cfg, dev) = (&run.model_cfg, &run.device);
    let d = cfg.d_model;
    let ppo = run.settings.algo == Algo::Ppo;
    let separate = ppo && run.settings.critic == Critic::Separate;
    let (mut policy_w, mut head_w, mut critic_w) = (HashMap::new(), None, HashMap::new());
    match loaded {
        Some(all) => {
            for (k, v) in all {
                if k == VALUE_HEAD {
                    head_w = Some(v);
                } else if let Some(rest) = k.strip_prefix(CRITIC_PREFIX) {
                    critic_w.insert(rest.to_string(), v);
                } else {
                    policy_w.insert(k, v);
                }
            }
        }
        None => {
            policy_w = run.policy_weights.clone();
            policy_w.remove(crate::reward::HEAD);
            policy_w.remove(VALUE_HEAD);
            if separate {
                critic_w = run.critic_weights.clone().unwrap_or_else(|| run.policy_weights.clone());
                head_w = critic_w.remove(crate::reward::HEAD);
            }
        }
    }
    let (policy, mut params) = lmlab_model::checkpoint::trainable_from_tensors(cfg, policy_w, DType::F32, dev)?;
    let mut head = None;
    let mut critic = None;
    if ppo {
        let h = match head_w {
            Some(h) if h.dims() == [1, d] => h.to_dtype(DType::F32)?,
            Some(h) => bail!("the value head has shape {:?}, the model needs [1, {d}]", h.dims()),
            None => Tensor::zeros((1, d), DType::F32, dev)?,
        };
        let var = Var::from_tensor(&h)?;
        if separate {
            let (model, cparams) = lmlab_model::checkpoint::trainable_from_tensors(cfg, critic_w, DType::F32, dev)
                .context("the critic's weights (it must have the policy's shape)")?;
            params.params.extend(cparams.params.into_iter().map(|(n, v)| (format!("{CRITIC_PREFIX}{n}"), v)));
            critic = Some(CriticNet { model, head: var.as_tensor().clone() });
        } else {
            head = Some(var.as_tensor().clone());
        }
        params.params.push((VALUE_HEAD.to_string(), var));
    }
    Ok(Nets { policy, head, critic, params })
}

/// Per-rollout numbers from the no-gradient pass.
struct Old {
    logp: Vec<Vec<f64>>,
    logp_ref: Vec<Vec<f64>>,
    entropy: Vec<Vec<f64>>,
    values: Vec<Vec<f64>>,
}

fn score_old(nets: &Nets, reference: &Gpt, prompts: &[Vec<u32>], rolls: &[Rollout], chunk: usize) -> Result<Old> {
    let mut old = Old { logp: Vec::new(), logp_ref: Vec::new(), entropy: Vec::new(), values: Vec::new() };
    for part in rolls.chunks(chunk.max(1)) {
        let refs: Vec<&Rollout> = part.iter().collect();
        let mut mode = Mode::training_without_dropout();
        let (logp, entropy, hidden, lens) = token_stats(&nets.policy, prompts, &refs, &mut mode)?;
        let (logp_ref, _, _, _) = token_stats(reference, prompts, &refs, &mut Mode::training_without_dropout())?;
        let values = match (&nets.head, &nets.critic) {
            (Some(h), _) => vec64(&values_of(&hidden, h)?)?,
            (None, Some(c)) => {
                let (_, _, ch, _) = token_stats(&c.model, prompts, &refs, &mut Mode::training_without_dropout())?;
                vec64(&values_of(&ch, &c.head)?)?
            }
            (None, None) => vec![0.0; lens.iter().sum()],
        };
        old.logp.extend(split(&vec64(&logp)?, &lens));
        old.logp_ref.extend(split(&vec64(&logp_ref)?, &lens));
        old.entropy.extend(split(&vec64(&entropy)?, &lens));
        old.values.extend(split(&values, &lens));
    }
    Ok(old)
}

fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// Advantages (and PPO's returns) per rollout token.
fn advantages(s: &RlSettings, beta: f64, scores: &[f64], old: &Old) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let kl_tokens: Vec<Vec<f64>> = old
        .logp
        .iter()
        .zip(&old.logp_ref)
        .map(|(p, r)| p.iter().zip(r).map(|(a, b)| math::kl_estimate(KlEstimator::K1, *a, *b)).collect())
        .collect();
    match s.algo {
        Algo::Ppo => {
            let scores = if s.whiten_rewards { math::whiten(scores, false) } else { scores.to_vec() };
            let (mut adv, mut ret) = (Vec::new(), Vec::new());
            for (i, kl) in kl_tokens.iter().enumerate() {
                let mut rewards: Vec<f64> = kl.iter().map(|k| -beta * k).collect();
                if let Some(last) = rewards.last_mut() {
                    *last += scores[i];
                }
                let (a, r) = math::gae(&rewards, &old.values[i], s.gamma, s.lambda);
                adv.push(a);
                ret.push(r);
            }
            let lens: Vec<usize> = adv.iter().map(Vec::len).collect();
            let flat: Vec<f64> = adv.concat();
            (split(&math::whiten(&flat, true), &lens), ret)
        }
        Algo::Grpo => {
            let a = math::group_normalise(scores, s.group_size);
            (old.logp.iter().zip(a).map(|(lp, x)| vec![x; lp.len()]).collect(), Vec::new())
        }
        Algo::Rloo => {
            let seq: Vec<f64> = scores.iter().zip(&kl_tokens).map(|(r, kl)| r - beta * kl.iter().sum::<f64>()).collect();
            let a = math::rloo_advantages(&seq, s.group_size);
            (old.logp.iter().zip(a).map(|(lp, x)| vec![x; lp.len()]).collect(), Vec::new())
        }
    }
}

/// Sums of one step's update statistics.
#[derive(Default)]
struct UpdateStats {
    updates: usize,
    clip_frac: f64,
    policy_loss: f64,
    value_loss: f64,
    grad_norm: f64,
}

/// One minibatch update; returns (clip fraction, policy loss, value loss, grad norm).
#[allow(clippy::too_many_arguments)]
fn update(
    nets: &Nets,
    opt: &mut AdamW,
    s: &RlSettings,
    beta: f64,
    grad_clip: f64,
    lr: f64,
    prompts: &[Vec<u32>],
    rolls: &[Rollout],
    idx: &[usize],
    old: &Old,
    adv: &[Vec<f64>],
    ret: &[Vec<f64>],
) -> Result<(f64, f64, f64, f64)> {
    let refs: Vec<&Rollout> = idx.iter().map(|&i| &rolls[i]).collect();
    let gather = |v: &[Vec<f64>]| idx.iter().flat_map(|&i| v[i].iter().copied()).collect::<Vec<f64>>();
    let (logp, _, hidden, _) = token_stats(&nets.policy, prompts, &refs, &mut Mode::training_without_dropout())?;
    let (pg, clip_frac) = loss::policy_loss(&logp, &gather(&old.logp), &gather(adv), s.clip_ratio)?;
    let mut total = pg.clone();
    let mut vl_value = 0.0;
    if s.algo == Algo::Ppo {
        let values = match (&nets.head, &nets.critic) {
            (Some(h), _) => values_of(&hidden, h)?,
            (None, Some(c)) => {
                let (_, _, ch, _) = token_stats(&c.model, prompts, &refs, &mut Mode::training_without_dropout())?;
                values_of(&ch, &c.head)?
            }
            (None, None) => bail!("PPO needs a value head"),
        };
        let vl = loss::value_loss(&values, &gather(&old.values), &gather(ret), s.clip_value)?;
        vl_value = f64::from(vl.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        total = (total + (vl * s.vf_coef)?)?;
    }
    if s.algo == Algo::Grpo && beta > 0.0 {
        total = (total + (loss::k3_penalty(&logp, &gather(&old.logp_ref))? * beta)?)?;
    }
    let loss_value = f64::from(total.to_dtype(DType::F32)?.to_scalar::<f32>()?);
    let mut grads = opt.collect_grads(&total.backward()?)?;
    let grad_norm = clip_global_norm(&mut grads, grad_clip)?;
    if !loss_value.is_finite() || !grad_norm.is_finite() {
        bail!("the loss ({loss_value}) or gradient norm ({grad_norm}) became non-finite (try a lower lr)");
    }
    opt.step(&grads, lr)?;
    Ok((clip_frac, f64::from(pg.to_dtype(DType::F32)?.to_scalar::<f32>()?), vl_value, grad_norm))
}

#[allow(clippy::too_many_arguments)]
fn save(
    run: &RlRun,
    cfg: &TrainConfig,
    nets: &Nets,
    opt: &AdamW,
    step: u64,
    kl: &KlController,
    elapsed: f64,
    summary: &DataSummary,
) -> Result<()> {
    let state = TrainerState {
        step,
        tokens_seen: 0,
        train: cfg.clone(),
        data: summary.clone(),
        last_train_loss: None,
        last_eval_loss: None,
        elapsed_secs: elapsed,
        lmlab_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // AdamW counts its own updates (several per RL step): its bias corrections need that count.
    let rl_state: HashMap<String, Tensor> = [
        ("kl_coef".to_string(), Tensor::new(&[kl.value], &run.device)?),
        ("optimizer_updates".to_string(), Tensor::new(&[opt.t as i64], &run.device)?),
    ]
    .into_iter()
    .collect();
    let files = [(STATE_FILE, rl_state)];
    checkpoint::save(
        &run.out,
        SaveRequest {
            model_config: &run.model_cfg,
            weights: nets.params.tensors(),
            optimizer: opt.state_tensors(),
            state: &state,
            extras: Extras { tokenizer_json: run.tokenizer_json.as_deref(), adapter: None, tensor_files: &files },
        },
    )
}

/// The β a checkpoint left off with, and AdamW's update count.
fn read_rl_state(dir: &Path, dev: &Device) -> Result<(f64, u64)> {
    let found = checkpoint::resolve(dir).with_context(|| format!("no checkpoint in {}", dir.display()))?;
    let mut t = lmlab_model::checkpoint::load_safetensors(&found.join(STATE_FILE), dev)?;
    let beta: Vec<f64> = t.remove("kl_coef").context("rl_state.safetensors has no kl_coef")?.to_vec1()?;
    let updates: Vec<i64> = t.remove("optimizer_updates").context("rl_state.safetensors has no optimizer_updates")?.to_vec1()?;
    Ok((beta.first().copied().context("an empty kl_coef")?, updates.first().copied().context("an empty update count")? as u64))
}

/// Runs RLHF as `run` says; `on_step` hears each metrics line.
pub fn train_rl(run: RlRun, mut on_step: impl FnMut(&serde_json::Value)) -> Result<RlReport> {
    let s = &run.settings;
    s.validate()?;
    if run.prompts.is_empty() {
        bail!("no prompts to train on");
    }
    let ctx = run.model_cfg.context_length;
    if let Some((i, p)) = run.prompts.iter().enumerate().find(|(_, p)| p.is_empty() || p.len() >= ctx) {
        bail!("prompt {i} has {} tokens; a prompt needs 1 to {} for the model's context of {ctx}", p.len(), ctx - 1);
    }
    let loaded = if run.resume {
        Some(checkpoint::load(&run.out, &run.device).with_context(|| format!("resuming {}", run.out.display()))?)
    } else {
        None
    };
    let cfg = match &loaded {
        Some(l) => TrainConfig { max_steps: l.state.train.max_steps.max(run.train.max_steps), ..l.state.train.clone() },
        None => run.train.clone(),
    };
    cfg.validate()?;
    let nets = build_nets(&run, loaded.as_ref().map(|l| l.weights.clone()))?;
    let reference = lmlab_model::checkpoint::frozen_from_tensors(
        &run.model_cfg,
        run.policy_weights
            .iter()
            .filter(|(k, _)| *k != crate::reward::HEAD && *k != VALUE_HEAD)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        DType::F32,
        &run.device,
    )?;
    let mut opt = AdamW::new(&nets.params, cfg.adamw())?;
    let mut kl = s.kl;
    let (mut step, mut elapsed_before) = (0, 0.0);
    if let Some(l) = &loaded {
        let (beta, updates) = read_rl_state(&run.out, &run.device)?;
        opt.load_state(l.optimizer.clone(), updates)?;
        step = l.state.step;
        elapsed_before = l.state.elapsed_secs;
        kl.value = beta;
    }
    if step >= cfg.max_steps {
        bail!("the checkpoint is already at step {step} of {}; raise max_steps to train further", cfg.max_steps);
    }
    let summary = DataSummary {
        files: vec![format!("{} RL prompts", run.prompts.len())],
        total_tokens: run.prompts.iter().map(Vec::len).sum(),
        train_tokens: run.prompts.iter().map(Vec::len).sum(),
        val_tokens: 0,
    };
    let start_step = step;
    let metrics = MetricsLog::open(&crate::trainer::metrics_path(&run.out), "rlhf", run.resume.then_some(start_step))?;
    let started = Instant::now();
    let mut lines = Vec::new();
    let (mut interrupted, mut stopped_by_kl) = (false, false);
    while step < cfg.max_steps {
        let step_start = Instant::now();
        let lr = lr_at(step, cfg.max_steps, cfg.warmup_steps, cfg.lr, cfg.min_lr);
        let chosen = crate::sft::batch_indices(run.prompts.len(), &cfg, step, 0);
        let seed = splitmix(cfg.seed ^ splitmix(step));
        let rolls = rollouts(&nets.policy, &run.prompts, &chosen, s.group_size, s.max_new_tokens, s.temperature, &run.stop_ids, seed)?;
        let gen_secs = step_start.elapsed().as_secs_f64();
        let gen_tokens: usize = rolls.iter().map(|r| r.response.len()).sum();
        let scored = run.reward.score(&run.prompts, &rolls)?;
        let scores: Vec<f64> = scored.iter().map(|x| x.value).collect();
        let mb = rolls.len().div_ceil(s.minibatches);
        let old = score_old(&nets, &reference, &run.prompts, &rolls, mb)?;
        let kl_per_response: Vec<f64> =
            old.logp.iter().zip(&old.logp_ref).map(|(p, r)| p.iter().zip(r).map(|(a, b)| a - b).sum::<f64>()).collect();
        let kl_mean = mean(kl_per_response.iter().copied());
        let mut line = serde_json::json!({
            "step": step + 1,
            "lr": lr,
            "reward": mean(scores.iter().copied()),
            "kl": kl_mean,
            "kl_k3": mean(old.logp.iter().zip(&old.logp_ref).map(|(p, r)| p.iter().zip(r).map(|(a, b)| math::kl_estimate(KlEstimator::K3, *a, *b)).sum::<f64>())),
            "kl_coef": kl.value,
            "entropy": mean(old.entropy.iter().flatten().copied()),
            "response_length": mean(rolls.iter().map(|r| r.response.len() as f64)),
            "finished": mean(rolls.iter().map(|r| if r.finished { 1.0 } else { 0.0 })),
            "rollout_tokens_per_sec": gen_tokens as f64 / gen_secs.max(1e-9),
        });
        let mut parts: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for sc in &scored {
            for (k, v) in &sc.parts {
                parts.entry(k.clone()).or_default().push(*v);
            }
        }
        for (k, v) in parts {
            line[k] = mean(v).into();
        }
        if s.max_kl.is_some_and(|m| kl_mean > m) {
            stopped_by_kl = true;
            line["stopped"] = format!("KL {kl_mean:.4} above --max-kl {}", s.max_kl.unwrap_or_default()).into();
            metrics.log(line.clone())?;
            on_step(&line);
            lines.push(line);
            save(&run, &cfg, &nets, &opt, step, &kl, elapsed_before + started.elapsed().as_secs_f64(), &summary)?;
            break;
        }
        let (adv, ret) = advantages(s, kl.value, &scores, &old);
        let mut st = UpdateStats::default();
        for epoch in 0..s.epochs {
            let mut order: Vec<usize> = (0..rolls.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(splitmix(seed ^ (epoch as u64 + 1))));
            for idx in order.chunks(mb) {
                let (cf, pl, vl, gn) =
                    update(&nets, &mut opt, s, kl.value, cfg.grad_clip, lr, &run.prompts, &rolls, idx, &old, &adv, &ret)?;
                st.updates += 1;
                st.clip_frac += cf;
                st.policy_loss += pl;
                st.value_loss += vl;
                st.grad_norm = gn;
            }
        }
        let u = st.updates.max(1) as f64;
        line["clip_frac"] = (st.clip_frac / u).into();
        line["policy_loss"] = (st.policy_loss / u).into();
        line["grad_norm"] = st.grad_norm.into();
        if s.algo == Algo::Ppo {
            line["value_loss"] = (st.value_loss / u).into();
            let (v, r): (Vec<f64>, Vec<f64>) = (old.values.concat(), ret.concat());
            line["explained_variance"] = math::explained_variance(&v, &r).into();
        }
        kl.update(kl_mean, rolls.len());
        step += 1;
        let secs = step_start.elapsed().as_secs_f64();
        line["step_secs"] = secs.into();
        line["tokens_per_sec"] =
            ((gen_tokens + rolls.iter().map(|r| run.prompts[r.prompt].len()).sum::<usize>()) as f64 / secs.max(1e-9)).into();
        line["elapsed_secs"] = (elapsed_before + started.elapsed().as_secs_f64()).into();
        if step.is_multiple_of(cfg.log_every.max(1)) || step == cfg.max_steps {
            metrics.log(line.clone())?;
        }
        on_step(&line);
        lines.push(line);
        let stop_requested = run.stop.load(Ordering::SeqCst);
        let stop_after = run.stop_after.is_some_and(|n| step - start_step >= n);
        if stop_requested || stop_after {
            interrupted = step < cfg.max_steps;
            save(&run, &cfg, &nets, &opt, step, &kl, elapsed_before + started.elapsed().as_secs_f64(), &summary)?;
            break;
        }
        if step == cfg.max_steps || (cfg.save_every > 0 && step.is_multiple_of(cfg.save_every)) {
            save(&run, &cfg, &nets, &opt, step, &kl, elapsed_before + started.elapsed().as_secs_f64(), &summary)?;
        }
    }
    Ok(RlReport {
        checkpoint: run.out.clone(),
        metrics: metrics.path().to_path_buf(),
        start_step,
        final_step: step,
        max_steps: cfg.max_steps,
        interrupted,
        stopped_by_kl,
        trainable_params: nets.params.num_elements(),
        steps: lines,
        settings: run.settings.clone(),
    })
}
