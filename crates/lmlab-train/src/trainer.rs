//! The training loop every stage shares (pretraining, SFT, LoRA): accumulated gradients,
//! clipping, the AdamW step on the trainable parameters, held-out evaluation, `metrics.jsonl`,
//! atomic checkpoints and clean stops.
//!
//! A stage supplies an [`Objective`]: its batches and its loss. Batches must be a pure function
//! of (seed, step, micro-step), so that a checkpoint (weights, AdamW moments, step) is all a
//! resumed run needs to continue bit for bit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_model::params::ParamSet;
use lmlab_model::{ops, Gpt, GptConfig};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::checkpoint::{self, SaveRequest, TrainerState};
use crate::config::TrainConfig;
use crate::data::DataSummary;
use crate::metrics::MetricsLog;
use crate::optim::{clip_global_norm, AdamW};
use crate::schedule::lr_at;

/// What a stage trains on and how its loss is computed.
pub trait Objective {
    /// Mean loss of micro-batch `micro` of optimizer step `step`, in training mode with dropout
    /// drawn from `dropout`; the batch must depend on nothing but (cfg.seed, step, micro).
    fn train_loss(&self, model: &Gpt, cfg: &TrainConfig, step: u64, micro: u64, dropout: &mut ChaCha8Rng) -> Result<Tensor>;
    /// Mean held-out loss.
    fn eval_loss(&self, model: &Gpt, cfg: &TrainConfig) -> Result<f64>;
    /// Whether there is held-out data to evaluate on.
    fn has_eval(&self, cfg: &TrainConfig) -> bool;
    fn summary(&self) -> &DataSummary;
    /// Token positions one optimizer step trains on (for tokens/s).
    fn tokens_per_step(&self, cfg: &TrainConfig) -> u64;
    /// Fields of its own for the metrics line of the step just taken (DPO: the implicit reward
    /// margin and the chosen-over-rejected accuracy), gathered while `train_loss` ran on the
    /// step's micro-batches. The trainer calls it once after each optimizer step; the objective
    /// hands over what it gathered and starts the next step empty. None by default.
    fn take_step_metrics(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

/// What a run reports as it goes; the caller may draw a progress bar (the CLI does) or log them.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Before the first step of this invocation. `params` counts the trainable parameters.
    Start { start_step: u64, max_steps: u64, params: usize, train_tokens: usize, val_tokens: usize, tokens_per_step: u64 },
    /// After each optimizer step: its loss, learning rate, and tokens/s since the last logged step.
    Step { step: u64, loss: f64, lr: f64, tokens_per_sec: f64 },
    /// A held-out evaluation after `step`.
    Eval { step: u64, train_loss: f64, eval_loss: f64 },
    /// Something the user should read: a warning, or where a stopped run left its checkpoint.
    Note(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// The objective's own fields for this step ([`Objective::take_step_metrics`]).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What a finished (or stopped) invocation did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub checkpoint: PathBuf,
    pub metrics: PathBuf,
    pub start_step: u64,
    pub final_step: u64,
    pub max_steps: u64,
    /// Trainable parameters.
    pub params: usize,
    pub tokens_seen: u64,
    pub tokens_per_sec: f64,
    pub last_eval_loss: Option<f64>,
    /// Stopped early by a stop request (Ctrl-C) or `stop_after`.
    pub interrupted: bool,
    /// Every step of this invocation.
    pub steps: Vec<StepRecord>,
}

/// The metrics file of the run that holds checkpoint folder `out`.
pub fn metrics_path(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("metrics.jsonl"),
        _ => PathBuf::from("metrics.jsonl"),
    }
}

/// Gradient accumulation over `k` micro-batches: `micro_loss(i)` is the mean loss of micro-batch
/// i; each is scaled by 1/k and their gradients summed, so k micro-batches of B sequences give the
/// gradients of one batch of k·B (a test checks this). Returns the mean loss and the gradients.
pub fn accumulate_grads(opt: &AdamW, k: usize, mut micro_loss: impl FnMut(u64) -> Result<Tensor>) -> Result<(f64, Vec<Tensor>)> {
    anyhow::ensure!(k > 0, "gradient accumulation needs at least one micro-batch");
    let mut loss_sum = 0.0;
    let mut grads: Option<Vec<Tensor>> = None;
    for micro in 0..k as u64 {
        let loss = micro_loss(micro)?;
        loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let scaled = (loss / k as f64)?;
        let g = opt.collect_grads(&scaled.backward()?)?;
        grads = Some(match grads {
            None => g,
            Some(acc) => acc.iter().zip(&g).map(|(a, b)| a + b).collect::<candle_core::Result<_>>()?,
        });
    }
    Ok((loss_sum / k as f64, grads.expect("k >= 1")))
}

/// Where a run stands between steps: what a checkpoint records.
pub struct Progress {
    pub step: u64,
    pub tokens_seen: u64,
    /// Training seconds of earlier invocations (from the checkpoint).
    pub elapsed_before: f64,
    pub last_loss: Option<f64>,
    pub last_eval: Option<f64>,
}

impl Progress {
    pub fn fresh() -> Self {
        Self { step: 0, tokens_seen: 0, elapsed_before: 0.0, last_loss: None, last_eval: None }
    }

    /// Where the checkpoint `state` left off.
    pub fn resumed(state: &TrainerState) -> Self {
        Self {
            step: state.step,
            tokens_seen: state.tokens_seen,
            elapsed_before: state.elapsed_secs,
            last_loss: None,
            last_eval: state.last_eval_loss,
        }
    }
}

/// Where a run writes and when it stops.
pub struct RunSpec<'a> {
    /// Checkpoint folder; metrics.jsonl goes in its parent.
    pub out: &'a Path,
    /// The `stage` field of this run's metrics lines ("pretrain", "sft").
    pub stage: &'static str,
    pub resume: bool,
    /// Stop (with a checkpoint) after this many steps in this invocation.
    pub stop_after: Option<u64>,
    /// Set by a signal handler to request a clean stop.
    pub stop: Arc<AtomicBool>,
    pub device: Device,
    /// Files copied or written into every checkpoint beside the weights.
    pub extras: checkpoint::Extras<'a>,
}

/// Everything a training step reads, fixed for the run.
pub struct Trainer<'a> {
    pub spec: RunSpec<'a>,
    pub model_cfg: GptConfig,
    pub train_cfg: TrainConfig,
    pub objective: &'a dyn Objective,
    pub model: &'a Gpt,
    /// The parameters the optimizer updates and checkpoints hold (all of them, or only adapters).
    pub params: ParamSet,
    started: Instant,
}

impl<'a> Trainer<'a> {
    pub fn new(
        spec: RunSpec<'a>,
        model_cfg: GptConfig,
        train_cfg: TrainConfig,
        objective: &'a dyn Objective,
        model: &'a Gpt,
        params: ParamSet,
    ) -> Self {
        Self { spec, model_cfg, train_cfg, objective, model, params, started: Instant::now() }
    }

    /// One optimizer step: accumulated gradients, clipping, and (when both are finite) the
    /// update. Returns the loss, learning rate and gradient norm.
    fn step(&self, opt: &mut AdamW, p: &Progress) -> Result<(f64, f64, f64)> {
        let cfg = &self.train_cfg;
        let step = p.step;
        let lr = lr_at(step, cfg.max_steps, cfg.warmup_steps, cfg.lr, cfg.min_lr);
        let (loss, mut grads) = accumulate_grads(opt, cfg.grad_accum, |micro| {
            let mut rng = ops::step_rng(cfg.seed, step * cfg.grad_accum as u64 + micro, 1);
            self.objective.train_loss(self.model, cfg, step, micro, &mut rng)
        })?;
        let grad_norm = clip_global_norm(&mut grads, cfg.grad_clip)?;
        // Checked before the update: gradients can overflow while the loss is still finite, and
        // applying them would leave non-finite weights in the "last good state".
        if !loss.is_finite() || !grad_norm.is_finite() {
            self.save(p, opt)?;
            let what = if loss.is_finite() {
                format!("the gradient norm became {grad_norm} (loss {loss})")
            } else {
                format!("loss became {loss}")
            };
            bail!("{what} at step {step}; the last good state is saved in {} (try a lower lr)", self.spec.out.display());
        }
        opt.step(&grads, lr)?;
        Ok((loss, lr, grad_norm))
    }

    fn elapsed(&self, p: &Progress) -> f64 {
        p.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// An atomic checkpoint of the run as it stands.
    fn save(&self, p: &Progress, opt: &AdamW) -> Result<()> {
        let state = TrainerState {
            step: p.step,
            tokens_seen: p.tokens_seen,
            train: self.train_cfg.clone(),
            data: self.objective.summary().clone(),
            last_train_loss: p.last_loss,
            last_eval_loss: p.last_eval,
            elapsed_secs: self.elapsed(p),
            lmlab_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let request = SaveRequest {
            model_config: &self.model_cfg,
            weights: self.params.tensors(),
            optimizer: opt.state_tensors(),
            state: &state,
            extras: self.spec.extras.clone(),
        };
        checkpoint::save(self.spec.out, request)
    }

    /// Whether a held-out evaluation is due after `step`.
    fn eval_due(&self, step: u64) -> bool {
        let cfg = &self.train_cfg;
        cfg.eval_batches > 0 && self.objective.has_eval(cfg) && (step.is_multiple_of(cfg.eval_every.max(1)) || step == cfg.max_steps)
    }

    /// Trains from `p` to `max_steps` (or a stop), handing each [`TrainEvent`] to `on_event`.
    pub fn run(&self, mut opt: AdamW, mut p: Progress, mut on_event: impl FnMut(&TrainEvent)) -> Result<TrainReport> {
        let (cfg, spec) = (&self.train_cfg, &self.spec);
        lmlab_model::fused::set_precision(cfg.precision);
        let max_steps = cfg.max_steps;
        if p.step >= max_steps {
            bail!("the checkpoint is already at step {} of {max_steps}; raise max_steps to train further", p.step);
        }
        let start_step = p.step;
        let metrics = MetricsLog::open(&metrics_path(spec.out), spec.stage, spec.resume.then_some(start_step))?;
        let tokens_per_step = self.objective.tokens_per_step(cfg);
        let summary = self.objective.summary();
        on_event(&TrainEvent::Start {
            start_step,
            max_steps,
            params: self.params.num_elements(),
            train_tokens: summary.train_tokens,
            val_tokens: summary.val_tokens,
            tokens_per_step,
        });
        let mut records = Vec::new();
        let mut interrupted = false;
        let mut window_start = (Instant::now(), p.tokens_seen);
        while p.step < max_steps {
            let (loss, lr, grad_norm) = self.step(&mut opt, &p)?;
            let extra = self.objective.take_step_metrics();
            p.step += 1;
            p.tokens_seen += tokens_per_step;
            p.last_loss = Some(loss);
            let step = p.step;

            let mut line = serde_json::json!({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": p.tokens_seen});
            line.as_object_mut().expect("an object").extend(extra.clone());
            records.push(StepRecord { step, loss, lr, grad_norm, extra });
            let eval_now = self.eval_due(step);
            if eval_now {
                let l = self.objective.eval_loss(self.model, cfg)?;
                p.last_eval = Some(l);
                line["eval_loss"] = l.into();
                on_event(&TrainEvent::Eval { step, train_loss: loss, eval_loss: l });
            }
            let (t0, tok0) = window_start;
            let tps = (p.tokens_seen - tok0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            if step.is_multiple_of(cfg.log_every.max(1)) || eval_now || step == max_steps {
                line["tokens_per_sec"] = tps.into();
                line["elapsed_secs"] = self.elapsed(&p).into();
                metrics.log(line)?;
                window_start = (Instant::now(), p.tokens_seen);
            }
            on_event(&TrainEvent::Step { step, loss, lr, tokens_per_sec: tps });

            let stop_requested = spec.stop.load(Ordering::SeqCst);
            let stop_after = spec.stop_after.is_some_and(|n| step - start_step >= n);
            if stop_requested || stop_after {
                interrupted = step < max_steps;
                self.save(&p, &opt)?;
                if interrupted {
                    on_event(&TrainEvent::Note(format!(
                        "stopped at step {step}; checkpoint written to {} (continue with --resume)",
                        spec.out.display()
                    )));
                }
                break;
            }
            if step == max_steps || (cfg.save_every > 0 && step.is_multiple_of(cfg.save_every)) {
                self.save(&p, &opt)?;
            }
        }
        let secs = self.started.elapsed().as_secs_f64();
        Ok(TrainReport {
            checkpoint: spec.out.to_path_buf(),
            metrics: metrics.path().to_path_buf(),
            start_step,
            final_step: p.step,
            max_steps,
            params: self.params.num_elements(),
            tokens_seen: p.tokens_seen,
            tokens_per_sec: (p.step - start_step) as f64 * tokens_per_step as f64 / secs.max(1e-9),
            last_eval_loss: p.last_eval,
            interrupted,
            steps: records,
        })
    }
}
