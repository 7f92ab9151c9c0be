//! The pretraining loop: next-token prediction with AdamW, warmup + cosine schedule, gradient
//! accumulation and clipping, periodic held-out evaluation, checkpoints and exact resume.
//!
//! Exact resume: everything a step depends on is either in the checkpoint (weights, AdamW
//! moments, step count) or a pure function of (seed, step): the batch and the dropout masks. So
//! N steps, a checkpoint, and M resumed steps reproduce N+M uninterrupted steps bit for bit.
//! A stop request (Ctrl-C) finishes the current step and writes a checkpoint before returning.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::{init_trainable, trainable_from_tensors};
use lmlab_model::params::ParamSet;
use lmlab_model::{ops, Gpt, GptConfig, Mode};
use lmlab_tokenizer::Tokenizer;
use serde::Serialize;

use crate::checkpoint::{self, SaveRequest, TrainerState};
use crate::config::{Preset, TrainConfig};
use crate::data::TokenData;
use crate::metrics::MetricsLog;
use crate::optim::{clip_global_norm, AdamW};
use crate::schedule::lr_at;

pub struct PretrainOptions {
    pub preset: Preset,
    pub data: Vec<PathBuf>,
    /// `tokenizer.json`; needed for text data. Copied into each checkpoint.
    pub tokenizer: Option<PathBuf>,
    /// Checkpoint folder (e.g. runs/NAME/base). metrics.jsonl goes in its parent (the run).
    pub out: PathBuf,
    pub resume: bool,
    /// Stop (with a checkpoint) after this many steps in this invocation.
    pub stop_after: Option<u64>,
    /// Set by a signal handler to request a clean stop.
    pub stop: Arc<AtomicBool>,
    pub device: Device,
    pub dtype: DType,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PretrainReport {
    pub checkpoint: PathBuf,
    pub metrics: PathBuf,
    pub start_step: u64,
    pub final_step: u64,
    pub max_steps: u64,
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

/// What a run reports as it goes; [`pretrain_with`] hands each to its caller, which may draw a
/// progress bar (the CLI does) or log them.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Before the first step of this invocation.
    Start { start_step: u64, max_steps: u64, params: usize, train_tokens: usize, val_tokens: usize, tokens_per_step: u64 },
    /// After each optimizer step: its loss, learning rate, and tokens/s since the last logged step.
    Step { step: u64, loss: f64, lr: f64, tokens_per_sec: f64 },
    /// A held-out evaluation after `step`.
    Eval { step: u64, train_loss: f64, eval_loss: f64 },
    /// Something the user should read: a warning, or where a stopped run left its checkpoint.
    Note(String),
}

/// Mean held-out loss over the configured evaluation batches.
pub fn evaluate(model: &Gpt, data: &TokenData, batches: usize, batch: usize, seq: usize, dev: &Device) -> Result<f64> {
    let mut total = 0.0;
    for i in 0..batches {
        let (x, y) = data.val_batch(i, batches, batch, seq, dev)?;
        let logits = model.forward(&x, &mut Mode::inference())?;
        let (b, t, v) = logits.dims3()?;
        let loss = ops::cross_entropy(&logits.reshape((b * t, v))?, &y.reshape(b * t)?, None)?;
        total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    Ok(total / batches as f64)
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

/// Trains as `opts` says; see [`pretrain_with`] to follow the run.
pub fn pretrain(opts: PretrainOptions) -> Result<PretrainReport> {
    pretrain_with(opts, |_| {})
}

/// The model and trainer settings of a run: the preset's for a fresh run, the checkpoint's (with
/// at most a larger `max_steps`) for a resumed one, and the checkpoint itself.
struct Setup {
    model_cfg: GptConfig,
    train_cfg: TrainConfig,
    loaded: Option<checkpoint::Loaded>,
}

fn resolve_setup(opts: &PretrainOptions, tokenizer: Option<&Tokenizer>, on_event: &mut impl FnMut(&TrainEvent)) -> Result<Setup> {
    let (model_cfg, mut train_cfg, loaded) = if opts.resume {
        let l = checkpoint::load(&opts.out, &opts.device).with_context(|| format!("resuming from {}", opts.out.display()))?;
        // The schedule and data order must be those of the original run; the preset may only
        // extend max_steps.
        let mut train = l.state.train.clone();
        if opts.preset.train.max_steps > train.max_steps {
            train.max_steps = opts.preset.train.max_steps;
        }
        let asked = TrainConfig { max_steps: train.max_steps, seq_len: train.seq_len, ..opts.preset.train.clone() };
        if asked != train {
            on_event(&TrainEvent::Note("the [train] settings given differ from the checkpoint's; resuming with the checkpoint's (only max_steps may grow) so the run continues exactly".into()));
        }
        (l.model_config.clone(), train, Some(l))
    } else {
        let mut cfg = opts.preset.model.clone();
        if let Some(tok) = tokenizer {
            let v = tok.vocab_size();
            if cfg.vocab_size == 0 {
                cfg.vocab_size = v;
            } else if cfg.vocab_size < v {
                bail!("model.vocab_size {} is smaller than the tokenizer's {v}", cfg.vocab_size);
            }
        }
        (cfg, opts.preset.train.clone(), None)
    };
    if model_cfg.vocab_size == 0 {
        bail!("model.vocab_size is not set and no --tokenizer was given to take it from");
    }
    model_cfg.validate()?;
    train_cfg.validate()?;
    let seq = if train_cfg.seq_len == 0 { model_cfg.context_length } else { train_cfg.seq_len };
    if seq > model_cfg.context_length {
        bail!("train.seq_len {seq} exceeds the context length {}", model_cfg.context_length);
    }
    train_cfg.seq_len = seq;
    Ok(Setup { model_cfg, train_cfg, loaded })
}

/// Where a run stands between steps: what a checkpoint records.
struct Progress {
    step: u64,
    tokens_seen: u64,
    /// Training seconds of earlier invocations (from the checkpoint).
    elapsed_before: f64,
    last_loss: Option<f64>,
    last_eval: Option<f64>,
}

/// Everything a training step reads, fixed for the run.
struct Trainer<'a> {
    opts: &'a PretrainOptions,
    setup: Setup,
    data: TokenData,
    model: Gpt,
    params: ParamSet,
    started: Instant,
}

impl Trainer<'_> {
    fn train_cfg(&self) -> &TrainConfig {
        &self.setup.train_cfg
    }

    /// One optimizer step: accumulated gradients, clipping, and (when both are finite) the
    /// update. Returns the loss, learning rate and gradient norm.
    fn step(&self, opt: &mut AdamW, p: &Progress) -> Result<(f64, f64, f64)> {
        let (cfg, dev) = (self.train_cfg(), &self.opts.device);
        let step = p.step;
        let lr = lr_at(step, cfg.max_steps, cfg.warmup_steps, cfg.lr, cfg.min_lr);
        let (loss, mut grads) = accumulate_grads(opt, cfg.grad_accum, |micro| {
            let (x, y) = self.data.train_batch(cfg.seed, step, micro, cfg.batch_size, cfg.seq_len, dev)?;
            let mut rng = ops::step_rng(cfg.seed, step * cfg.grad_accum as u64 + micro, 1);
            let mut mode = Mode { grad: true, dropout: Some(&mut rng), capture: None };
            Ok(self.model.loss(&x, &y, &mut mode)?)
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
            bail!("{what} at step {step}; the last good state is saved in {} (try a lower lr)", self.opts.out.display());
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
            train: self.train_cfg().clone(),
            data: self.data.summary.clone(),
            last_train_loss: p.last_loss,
            last_eval_loss: p.last_eval,
            elapsed_secs: self.elapsed(p),
            lmlab_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let request = SaveRequest {
            model_config: &self.setup.model_cfg,
            weights: self.params.tensors(),
            optimizer: opt.state_tensors(),
            state: &state,
            tokenizer_json: self.opts.tokenizer.as_deref(),
        };
        checkpoint::save(&self.opts.out, request)
    }

    /// Whether a held-out evaluation is due after `step`.
    fn eval_due(&self, step: u64) -> bool {
        let cfg = self.train_cfg();
        cfg.eval_batches > 0
            && self.data.summary.val_tokens > cfg.seq_len
            && (step.is_multiple_of(cfg.eval_every.max(1)) || step == cfg.max_steps)
    }

    fn evaluate(&self) -> Result<f64> {
        let cfg = self.train_cfg();
        evaluate(&self.model, &self.data, cfg.eval_batches, cfg.batch_size, cfg.seq_len, &self.opts.device)
    }
}

/// Trains as `opts` says, handing each [`TrainEvent`] to `on_event`.
pub fn pretrain_with(opts: PretrainOptions, mut on_event: impl FnMut(&TrainEvent)) -> Result<PretrainReport> {
    let tokenizer = opts.tokenizer.as_deref().map(Tokenizer::from_file).transpose()?;
    let setup = resolve_setup(&opts, tokenizer.as_ref(), &mut on_event)?;
    let (model_cfg, train_cfg) = (&setup.model_cfg, &setup.train_cfg);
    let seq = train_cfg.seq_len;
    let data = TokenData::load(&opts.data, tokenizer.as_ref(), model_cfg.vocab_size, train_cfg.val_fraction)?;
    data.check_fits(seq, train_cfg.eval_batches > 0 && train_cfg.val_fraction > 0.0)?;
    if let Some(l) = setup.loaded.as_ref().filter(|l| l.state.data.total_tokens != data.summary.total_tokens) {
        on_event(&TrainEvent::Note(format!(
            "the data has {} tokens but the checkpoint was trained on {}: the resumed run will not match an uninterrupted one",
            data.summary.total_tokens, l.state.data.total_tokens
        )));
    }
    let (model, params) = match &setup.loaded {
        Some(l) => trainable_from_tensors(model_cfg, l.weights.clone(), opts.dtype, &opts.device)?,
        None => init_trainable(model_cfg, train_cfg.seed, opts.dtype, &opts.device)?,
    };
    let mut opt = AdamW::new(&params, train_cfg.adamw())?;
    let mut p = Progress { step: 0, tokens_seen: 0, elapsed_before: 0.0, last_loss: None, last_eval: None };
    let mut setup = setup;
    if let Some(l) = setup.loaded.take() {
        opt.load_state(l.optimizer, l.state.step)?;
        p = Progress {
            step: l.state.step,
            tokens_seen: l.state.tokens_seen,
            elapsed_before: l.state.elapsed_secs,
            last_loss: None,
            last_eval: l.state.last_eval_loss,
        };
    }
    let max_steps = setup.train_cfg.max_steps;
    if p.step >= max_steps {
        bail!("the checkpoint is already at step {} of {max_steps}; raise max_steps to train further", p.step);
    }
    let start_step = p.step;
    let metrics = MetricsLog::open(&metrics_path(&opts.out), "pretrain", opts.resume.then_some(start_step))?;
    let cfg = setup.train_cfg.clone();
    let tokens_per_step = (cfg.batch_size * cfg.grad_accum * seq) as u64;
    let n_params = params.num_elements();
    on_event(&TrainEvent::Start {
        start_step,
        max_steps,
        params: n_params,
        train_tokens: data.summary.train_tokens,
        val_tokens: data.summary.val_tokens,
        tokens_per_step,
    });
    let trainer = Trainer { opts: &opts, setup, data, model, params, started: Instant::now() };

    let mut records = Vec::new();
    let mut interrupted = false;
    let mut window_start = (Instant::now(), p.tokens_seen);
    while p.step < max_steps {
        let (loss, lr, grad_norm) = trainer.step(&mut opt, &p)?;
        p.step += 1;
        p.tokens_seen += tokens_per_step;
        p.last_loss = Some(loss);
        let step = p.step;
        records.push(StepRecord { step, loss, lr, grad_norm });

        let mut line = serde_json::json!({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": p.tokens_seen});
        let eval_now = trainer.eval_due(step);
        if eval_now {
            let l = trainer.evaluate()?;
            p.last_eval = Some(l);
            line["eval_loss"] = l.into();
            on_event(&TrainEvent::Eval { step, train_loss: loss, eval_loss: l });
        }
        let (t0, tok0) = window_start;
        let tps = (p.tokens_seen - tok0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        if step.is_multiple_of(cfg.log_every.max(1)) || eval_now || step == max_steps {
            line["tokens_per_sec"] = tps.into();
            line["elapsed_secs"] = trainer.elapsed(&p).into();
            metrics.log(line)?;
            window_start = (Instant::now(), p.tokens_seen);
        }
        on_event(&TrainEvent::Step { step, loss, lr, tokens_per_sec: tps });

        let stop_requested = opts.stop.load(Ordering::SeqCst);
        let stop_after = opts.stop_after.is_some_and(|n| step - start_step >= n);
        if stop_requested || stop_after {
            interrupted = step < max_steps;
            trainer.save(&p, &opt)?;
            if interrupted {
                on_event(&TrainEvent::Note(format!(
                    "stopped at step {step}; checkpoint written to {} (continue with --resume)",
                    opts.out.display()
                )));
            }
            break;
        }
        if step == max_steps || (cfg.save_every > 0 && step.is_multiple_of(cfg.save_every)) {
            trainer.save(&p, &opt)?;
        }
    }
    let secs = trainer.started.elapsed().as_secs_f64();
    Ok(PretrainReport {
        checkpoint: opts.out.clone(),
        metrics: metrics.path().to_path_buf(),
        start_step,
        final_step: p.step,
        max_steps,
        params: n_params,
        tokens_seen: p.tokens_seen,
        tokens_per_sec: (p.step - start_step) as f64 * tokens_per_step as f64 / secs.max(1e-9),
        last_eval_loss: p.last_eval,
        interrupted,
        steps: records,
    })
}
