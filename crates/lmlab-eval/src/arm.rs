//! One arm of an experiment that trains: a model trained on an in-memory token corpus in its
//! own folder, kept there, so that an interrupted experiment redoes only unfinished arms.
//!
//! The corpus is written once as `train.bin` (atomically: a temporary file renamed), the model
//! is trained by [`lmlab_train::pretrain_with`] into `model/`, and a finished checkpoint (its
//! step count at the preset's `max_steps`) is never trained again; an unfinished one resumes.
//! `arm.json` records what the arm is (the preset and a hash of its corpus): a folder holding
//! an arm of other settings (a `--quick` run's, or one with other flags) is an error, never
//! silently reused.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
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
    write_once(path, vocab, &tokens)?;
    Ok(tokens)
}

/// Writes `tokens` as shard `path` unless it exists (atomically: a temporary file renamed).
fn write_once(path: &Path, vocab: usize, tokens: &[u32]) -> Result<()> {
    if !path.is_file() {
        let tmp = path.with_extension("bin.tmp");
        write_shard(&tmp, tokens, vocab as u32)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}

const ARM_FILE: &str = "arm.json";

/// A hash of `corpus` (any sequence of token ids), for `arm.json`.
pub fn corpus_hash(corpus: &[u32]) -> String {
    let bytes: Vec<u8> = corpus.iter().flat_map(|t| t.to_le_bytes()).collect();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// Checks that `dir` holds this arm or nothing yet, and records it. A folder from before
/// `arm.json` existed is accepted when its `train.bin` is this corpus.
fn claim(dir: &Path, preset: &Preset, corpus: &[u32]) -> Result<()> {
    let this = serde_json::json!({ "preset": preset, "corpus_tokens": corpus.len(), "corpus_xxh3": corpus_hash(corpus) });
    let train_bin = dir.join("train.bin");
    if !dir.join(ARM_FILE).is_file() && train_bin.is_file() {
        let old = cached_shard(&train_bin, 0, || unreachable!("the file exists"))?;
        ensure!(old == corpus, "{} holds a corpus other than this arm's; remove it or choose another --out", dir.display());
    }
    claim_as(dir, &this)
}

/// Checks that `dir` holds the arm described by `this` (its settings and a hash of its data) or
/// nothing yet, and records it in `arm.json`.
pub fn claim_as(dir: &Path, this: &serde_json::Value) -> Result<()> {
    let path = dir.join(ARM_FILE);
    if path.is_file() {
        let recorded: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path)?).with_context(|| format!("parsing {}", path.display()))?;
        ensure!(
            &recorded == this,
            "{} holds an arm trained with other settings (another preset or corpus: a --quick run's, or other flags); remove it or choose another --out",
            dir.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(this)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Trains (or resumes, or finds finished) the model `dir/model` on `corpus` with `preset`.
pub fn train_on(dir: &Path, preset: &Preset, corpus: &[u32], vocab: usize, tokenizer: &Path, stop: &Arc<AtomicBool>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    claim(dir, preset, corpus)?;
    let model_dir = dir.join("model");
    if trained(&model_dir, preset.train.max_steps) {
        return Ok(());
    }
    let train_shard = dir.join("train.bin");
    write_once(&train_shard, vocab, corpus)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_holds_one_arm_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let preset = Preset::builtin("tiny").unwrap();
        let corpus: Vec<u32> = (0..100).collect();
        claim(dir.path(), &preset, &corpus).unwrap();
        claim(dir.path(), &preset, &corpus).unwrap();
        let err = claim(dir.path(), &preset, &corpus[..99]).unwrap_err().to_string();
        assert!(err.contains("other settings"), "{err}");
        let mut longer = preset.clone();
        longer.train.max_steps += 1;
        assert!(claim(dir.path(), &longer, &corpus).is_err());
        // A folder from before arm.json: accepted with its own corpus, refused with another.
        let legacy = tempfile::tempdir().unwrap();
        cached_shard(&legacy.path().join("train.bin"), 128, || Ok(corpus.clone())).unwrap();
        assert!(claim(legacy.path(), &preset, &corpus[1..]).is_err());
        claim(legacy.path(), &preset, &corpus).unwrap();
        assert!(legacy.path().join(ARM_FILE).is_file());
    }
}
