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
use indicatif::{ProgressBar, ProgressStyle};
use lmlab_model::checkpoint::{init_trainable, trainable_from_tensors};
use lmlab_model::{ops, Gpt, Mode};
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
    pub show_progress: bool,
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

/// A line above the progress bar, or a log line when there is no bar (not a terminal).
fn say(bar: &ProgressBar, msg: String) {
    if bar.is_hidden() {
        tracing::info!("{msg}");
    } else {
        bar.println(msg);
    }
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

pub fn pretrain(opts: PretrainOptions) -> Result<PretrainReport> {
    let dev = opts.device.clone();
    let tokenizer = match &opts.tokenizer {
        Some(p) => Some(Tokenizer::from_file(p)?),
        None => None,
    };

    // Model and trainer state: fresh, or from the checkpoint.
    let (model_cfg, mut train_cfg, loaded) = if opts.resume {
        let l = checkpoint::load(&opts.out, &dev).with_context(|| format!("resuming from {}", opts.out.display()))?;
        // The schedule and data order must be those of the original run; the preset may only
        // extend max_steps.
        let mut train = l.state.train.clone();
        if opts.preset.train.max_steps > train.max_steps {
            train.max_steps = opts.preset.train.max_steps;
        }
        let asked = TrainConfig { max_steps: train.max_steps, seq_len: train.seq_len, ..opts.preset.train.clone() };
        if asked != train {
            tracing::warn!("the [train] settings given differ from the checkpoint's; resuming with the checkpoint's (only max_steps may grow) so the run continues exactly");
        }
        (l.model_config.clone(), train, Some(l))
    } else {
        let mut cfg = opts.preset.model.clone();
        if let Some(tok) = &tokenizer {
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

    let data = TokenData::load(&opts.data, tokenizer.as_ref(), model_cfg.vocab_size, train_cfg.val_fraction)?;
    data.check_fits(seq, train_cfg.eval_batches > 0 && train_cfg.val_fraction > 0.0)?;
    if let Some(l) = &loaded {
        if l.state.data.total_tokens != data.summary.total_tokens {
            tracing::warn!(
                "the data has {} tokens but the checkpoint was trained on {}: the resumed run will not match an uninterrupted one",
                data.summary.total_tokens,
                l.state.data.total_tokens
            );
        }
    }

    let (model, params) = match &loaded {
        Some(l) => trainable_from_tensors(&model_cfg, l.weights.clone(), opts.dtype, &dev)?,
        None => init_trainable(&model_cfg, train_cfg.seed, opts.dtype, &dev)?,
    };
    let mut opt = AdamW::new(&params, train_cfg.adamw())?;
    let (start_step, mut tokens_seen, elapsed_before, mut last_eval) = match loaded {
        Some(l) => {
            opt.load_state(l.optimizer, l.state.step)?;
            (l.state.step, l.state.tokens_seen, l.state.elapsed_secs, l.state.last_eval_loss)
        }
        None => (0, 0, 0.0, None),
    };
    if start_step >= train_cfg.max_steps {
        bail!("the checkpoint is already at step {start_step} of {}; raise max_steps to train further", train_cfg.max_steps);
    }

    let metrics = MetricsLog::open(&metrics_path(&opts.out), "pretrain", opts.resume.then_some(start_step))?;
    let tokens_per_step = (train_cfg.batch_size * train_cfg.grad_accum * seq) as u64;
    let n_params = params.num_elements();
    tracing::info!(
        "model: {n_params} parameters; data: {} train / {} held-out tokens; {} tokens per step; steps {start_step}..{}",
        data.summary.train_tokens,
        data.summary.val_tokens,
        tokens_per_step,
        train_cfg.max_steps
    );

    let bar = if opts.show_progress { ProgressBar::new(train_cfg.max_steps) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}").expect("valid template"),
    );
    bar.set_position(start_step);

    let save = |step: u64, tokens: u64, elapsed: f64, last_loss: Option<f64>, last_eval: Option<f64>, opt: &AdamW| -> Result<()> {
        let state = TrainerState {
            step,
            tokens_seen: tokens,
            train: train_cfg.clone(),
            data: data.summary.clone(),
            last_train_loss: last_loss,
            last_eval_loss: last_eval,
            elapsed_secs: elapsed,
            lmlab_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        checkpoint::save(
            &opts.out,
            SaveRequest {
                model_config: &model_cfg,
                weights: params.tensors(),
                optimizer: opt.state_tensors(),
                state: &state,
                tokenizer_json: opts.tokenizer.as_deref(),
            },
        )
    };

    let started = Instant::now();
    let mut step = start_step;
    let mut records = Vec::new();
    let mut interrupted = false;
    let mut last_loss = None;
    let mut window_start = (Instant::now(), tokens_seen);
    while step < train_cfg.max_steps {
        let lr = lr_at(step, train_cfg.max_steps, train_cfg.warmup_steps, train_cfg.lr, train_cfg.min_lr);
        let (loss, mut grads) = accumulate_grads(&opt, train_cfg.grad_accum, |micro| {
            let (x, y) = data.train_batch(train_cfg.seed, step, micro, train_cfg.batch_size, seq, &dev)?;
            let mut rng = ops::step_rng(train_cfg.seed, step * train_cfg.grad_accum as u64 + micro, 1);
            let mut mode = Mode { grad: true, dropout: Some(&mut rng), capture: None };
            Ok(model.loss(&x, &y, &mut mode)?)
        })?;
        let grad_norm = clip_global_norm(&mut grads, train_cfg.grad_clip)?;
        // Checked before the update: gradients can overflow while the loss is still finite, and
        // applying them would leave non-finite weights in the "last good state".
        if !loss.is_finite() || !grad_norm.is_finite() {
            save(step, tokens_seen, elapsed_before + started.elapsed().as_secs_f64(), last_loss, last_eval, &opt)?;
            let what = if loss.is_finite() {
                format!("the gradient norm became {grad_norm} (loss {loss})")
            } else {
                format!("loss became {loss}")
            };
            bail!("{what} at step {step}; the last good state is saved in {} (try a lower lr)", opts.out.display());
        }
        opt.step(&grads, lr)?;
        step += 1;
        tokens_seen += tokens_per_step;
        last_loss = Some(loss);
        records.push(StepRecord { step, loss, lr, grad_norm });

        let mut line = serde_json::json!({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens_seen});
        let eval_now = train_cfg.eval_batches > 0
            && data.summary.val_tokens > seq
            && (step % train_cfg.eval_every.max(1) == 0 || step == train_cfg.max_steps);
        if eval_now {
            let l = evaluate(&model, &data, train_cfg.eval_batches, train_cfg.batch_size, seq, &dev)?;
            last_eval = Some(l);
            line["eval_loss"] = l.into();
            say(&bar, format!("step {step}: train loss {loss:.4}, eval loss {l:.4}"));
        }
        let (t0, tok0) = window_start;
        let tps = (tokens_seen - tok0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        if step % train_cfg.log_every.max(1) == 0 || eval_now || step == train_cfg.max_steps {
            line["tokens_per_sec"] = tps.into();
            line["elapsed_secs"] = (elapsed_before + started.elapsed().as_secs_f64()).into();
            metrics.log(line)?;
            window_start = (Instant::now(), tokens_seen);
        }
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s"));

        let stop_requested = opts.stop.load(Ordering::SeqCst);
        let stop_after = opts.stop_after.is_some_and(|n| step - start_step >= n);
        let elapsed = elapsed_before + started.elapsed().as_secs_f64();
        if stop_requested || stop_after {
            interrupted = step < train_cfg.max_steps;
            save(step, tokens_seen, elapsed, last_loss, last_eval, &opt)?;
            if interrupted {
                say(&bar, format!("stopped at step {step}; checkpoint written to {} (continue with --resume)", opts.out.display()));
            }
            break;
        }
        if step == train_cfg.max_steps || (train_cfg.save_every > 0 && step % train_cfg.save_every == 0) {
            save(step, tokens_seen, elapsed, last_loss, last_eval, &opt)?;
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    Ok(PretrainReport {
        checkpoint: opts.out.clone(),
        metrics: metrics.path().to_path_buf(),
        start_step,
        final_step: step,
        max_steps: train_cfg.max_steps,
        params: n_params,
        tokens_seen,
        tokens_per_sec: (step - start_step) as f64 * tokens_per_step as f64 / secs.max(1e-9),
        last_eval_loss: last_eval,
        interrupted,
        steps: records,
    })
}
