//! Model files: `config.json` + `model.safetensors`, written atomically, and the ways to build a
//! [`Gpt`] from them (for inference, or with trainable variables).
//!
//! Training state (optimizer, step, data position) lives in lmlab-train; this module only knows
//! the model.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::GptConfig;
use crate::gpt::Gpt;
use crate::params::{ParamBackend, ParamSet};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees a
/// half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// `path` with `suffix` appended to its file name (`base` → `base.tmp`).
pub fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn tmp_path(path: &Path) -> std::path::PathBuf {
    with_suffix(path, ".tmp")
}

/// Saves tensors as safetensors, atomically.
pub fn save_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let tmp = tmp_path(path);
    candle_core::safetensors::save(tensors, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

pub fn load_safetensors(path: &Path, dev: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, dev).with_context(|| format!("reading {}", path.display()))
}

/// Writes `config.json` and `model.safetensors` into `dir` (created if needed).
pub fn save_model(dir: &Path, cfg: &GptConfig, tensors: &HashMap<String, Tensor>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    save_safetensors(&dir.join(WEIGHTS_FILE), tensors)?;
    write_atomic(&dir.join(CONFIG_FILE), serde_json::to_string_pretty(cfg)?.as_bytes())
}

pub fn load_config(dir: &Path) -> Result<GptConfig> {
    let path = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {} (is {} a model folder?)", path.display(), dir.display()))?;
    let cfg: GptConfig = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let cfg = cfg.resolved();
    cfg.validate().with_context(|| format!("invalid {}", path.display()))?;
    Ok(cfg)
}

/// Loads a model for inference (plain tensors, no gradient tracking).
pub fn load_model(dir: &Path, dtype: DType, dev: &Device) -> Result<Gpt> {
    let cfg = load_config(dir)?;
    let tensors = load_safetensors(&dir.join(WEIGHTS_FILE), dev)?;
    let vb = VarBuilder::from_tensors(tensors, dtype, dev);
    Gpt::new(&cfg, vb).map_err(|e| anyhow!("building the model from {}: {e}", dir.display()))
}

/// A fresh model with trainable variables drawn from `seed`.
pub fn init_trainable(cfg: &GptConfig, seed: u64, dtype: DType, dev: &Device) -> Result<(Gpt, ParamSet)> {
    let (vb, collector) = ParamBackend::var_builder(seed, None, dtype, dev);
    let model = Gpt::new(cfg, vb)?;
    Ok((model, collector.finish()))
}

/// A model holding the given tensors as plain (frozen) tensors: no gradient reaches them. The
/// base of a LoRA run. Tensors that are trainable variables (a model's [`ParamSet::tensors`])
/// are detached: otherwise every backward pass would compute gradients for the whole base.
pub fn frozen_from_tensors(cfg: &GptConfig, tensors: HashMap<String, Tensor>, dtype: DType, dev: &Device) -> Result<Gpt> {
    let tensors = tensors.into_iter().map(|(name, t)| (name, t.detach())).collect();
    Ok(Gpt::new(cfg, candle_nn::VarBuilder::from_tensors(tensors, dtype, dev))?)
}

/// A model with trainable variables holding the given tensors (a checkpoint).
pub fn trainable_from_tensors(cfg: &GptConfig, tensors: HashMap<String, Tensor>, dtype: DType, dev: &Device) -> Result<(Gpt, ParamSet)> {
    let n = tensors.len();
    let (vb, collector) = ParamBackend::var_builder(0, Some(tensors), dtype, dev);
    let model = Gpt::new(cfg, vb)?;
    let params = collector.finish();
    if params.params.len() != n {
        anyhow::bail!("checkpoint holds {n} tensors but the config uses {}", params.params.len());
    }
    Ok((model, params))
}
