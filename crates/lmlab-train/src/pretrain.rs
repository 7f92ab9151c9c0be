//! The pretraining loop: next-token prediction with AdamW, warmup + cosine schedule, gradient
//! accumulation and clipping, periodic held-out evaluation, checkpoints and exact resume.
//!
//! Exact resume: everything a step depends on is either in the checkpoint (weights, AdamW
//! moments, step count) or a pure function of (seed, step): the batch and the dropout masks. So
//! N steps, a checkpoint, and M resumed steps reproduce N+M uninterrupted steps bit for bit.
//! A stop request (Ctrl-C) finishes the current step and writes a checkpoint before returning.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::{init_trainable, trainable_from_tensors};
use lmlab_model::{ops, Gpt, GptConfig, Mode};
use lmlab_tokenizer::Tokenizer;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{self, Extras};
use crate::config::{Preset, TrainConfig};
use crate::data::{DataSummary, TokenData};
use crate::optim::AdamW;
pub use crate::trainer::{accumulate_grads, metrics_path, StepRecord, TrainEvent};
use crate::trainer::{Objective, Progress, RunSpec, TrainReport, Trainer};

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

/// The report of a pretraining invocation.
pub type PretrainReport = TrainReport;

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

/// Next-token prediction on random windows of the token stream.
struct NextToken {
    data: TokenData,
    device: Device,
}

impl Objective for NextToken {
    fn train_loss(&self, model: &Gpt, cfg: &TrainConfig, step: u64, micro: u64, dropout: &mut ChaCha8Rng) -> Result<Tensor> {
        let (x, y) = self.data.train_batch(cfg.seed, step, micro, cfg.batch_size, cfg.seq_len, &self.device)?;
        let mut mode = Mode { grad: true, dropout: Some(dropout), capture: None, packing: None };
        Ok(model.loss(&x, &y, &mut mode)?)
    }

    fn eval_loss(&self, model: &Gpt, cfg: &TrainConfig) -> Result<f64> {
        evaluate(model, &self.data, cfg.eval_batches, cfg.batch_size, cfg.seq_len, &self.device)
    }

    fn has_eval(&self, cfg: &TrainConfig) -> bool {
        self.data.summary.val_tokens > cfg.seq_len
    }

    fn summary(&self) -> &DataSummary {
        &self.data.summary
    }

    fn tokens_per_step(&self, cfg: &TrainConfig) -> u64 {
        (cfg.batch_size * cfg.grad_accum * cfg.seq_len) as u64
    }
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

/// Trains as `opts` says, handing each [`TrainEvent`] to `on_event`.
pub fn pretrain_with(opts: PretrainOptions, mut on_event: impl FnMut(&TrainEvent)) -> Result<PretrainReport> {
    let tokenizer = opts.tokenizer.as_deref().map(Tokenizer::from_file).transpose()?;
    let mut setup = resolve_setup(&opts, tokenizer.as_ref(), &mut on_event)?;
    let (model_cfg, train_cfg) = (&setup.model_cfg, &setup.train_cfg);
    let data = TokenData::load(&opts.data, tokenizer.as_ref(), model_cfg.vocab_size, train_cfg.val_fraction)?;
    data.check_fits(train_cfg.seq_len, train_cfg.eval_batches > 0 && train_cfg.val_fraction > 0.0)?;
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
    let mut progress = Progress::fresh();
    if let Some(l) = setup.loaded.take() {
        opt.load_state(l.optimizer, l.state.step)?;
        progress = Progress::resumed(&l.state);
    }
    let objective = NextToken { data, device: opts.device.clone() };
    let spec = RunSpec {
        out: &opts.out,
        stage: "pretrain",
        resume: opts.resume,
        stop_after: opts.stop_after,
        stop: opts.stop.clone(),
        device: opts.device.clone(),
        extras: Extras { tokenizer_json: opts.tokenizer.as_deref(), adapter: None, tensor_files: &[] },
    };
    let trainer = Trainer::new(spec, setup.model_cfg, setup.train_cfg, &objective, &model, params);
    trainer.run(opt, progress, on_event)
}
