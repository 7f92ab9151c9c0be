//! One arm of an experiment that trains: a model trained on an in-memory token corpus in its
//! own folder, kept there, so that an interrupted experiment redoes only unfinished arms.
//!
//! The corpus is written once as `train.bin` (atomically: a temporary file renamed), the model
//! is trained by [`lmlab_train::pretrain_with`] into `model/`, and a finished checkpoint (its
//! step count at the preset's `max_steps`) is never trained again; an unfinished one resumes.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use candle_core::{DType, Device};
use lmlab_train::checkpoint::{TrainerState, STATE_FILE};
use lmlab_train::shards::{write_shard, Shard};
use lmlab_train::{pretrain_with, Preset, PretrainOptions};

/// Whether `dir` holds a finished checkpoint of `steps` steps.
pub fn trained(dir: &Path, steps: u64) -> bool {
    std::fs::read(dir.join(STATE_FILE)).ok().and_then(|b| serde_json::from_slice::<TrainerState>(&b).ok()).is_some_and(|s| s.step >= steps)
}

/// The tokens of shard `path`: read back if it exists, else made by `make` and written atomically.
pub fn cached_shard(path: &Path, vocab: usize, make: impl FnOnce() -> Result<Vec<u32>>) -> Result<Vec<u32>> {
    if path.is_file() {
        let shard = Shard::open(path)?;
        let mut v = Vec::with_capacity(shard.len());
        shard.read_into(0, shard.len(), &mut v);
        return Ok(v);
    }
    let tokens = make()?;
    let tmp = path.with_extension("bin.tmp");
    write_shard(&tmp, &tokens, vocab as u32)?;
    std::fs::rename(&tmp, path)?;
    Ok(tokens)
}

/// Trains (or resumes, or finds finished) the model `dir/model` on `corpus` with `preset`.
pub fn train_on(dir: &Path, preset: &Preset, corpus: &[u32], vocab: usize, tokenizer: &Path, stop: &Arc<AtomicBool>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let model_dir = dir.join("model");
    if trained(&model_dir, preset.train.max_steps) {
        return Ok(());
    }
    let train_shard = dir.join("train.bin");
    cached_shard(&train_shard, vocab, || Ok(corpus.to_vec()))?;
    let opts = PretrainOptions {
        preset: preset.clone(),
        data: vec![train_shard],
        tokenizer: Some(tokenizer.to_path_buf()),
        resume: model_dir.join(STATE_FILE).is_file(),
        out: model_dir,
        stop_after: None,
        stop: stop.clone(),
        device: Device::Cpu,
        dtype: DType::F32,
    };
    pretrain_with(opts, |_| {})?;
    Ok(())
}
