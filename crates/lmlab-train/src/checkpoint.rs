//! Training checkpoints: a folder holding `model.safetensors`, `config.json`,
//! `optimizer.safetensors`, `trainer_state.json` (and `tokenizer.json` when known, and any
//! files of the stage's own, such as DPO's reference log-probabilities).
//!
//! The whole folder is replaced atomically: files are written into `<dir>.tmp`, then the old
//! folder is moved to `<dir>.old`, the new one into place, and the old one deleted. A crash at
//! any point leaves either the old or the new checkpoint complete; [`resolve`] finds it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use lmlab_model::checkpoint::{
    load_config, load_safetensors, save_model, save_safetensors, with_suffix, write_atomic, CONFIG_FILE, WEIGHTS_FILE,
};
use lmlab_model::GptConfig;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::DataSummary;

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: u64,
    pub tokens_seen: u64,
    pub train: TrainConfig,
    pub data: DataSummary,
    pub last_train_loss: Option<f64>,
    pub last_eval_loss: Option<f64>,
    /// Wall time spent training, over all resumed runs.
    pub elapsed_secs: f64,
    pub lmlab_version: String,
}

/// Everything a checkpoint holds, loaded.
pub struct Loaded {
    pub model_config: GptConfig,
    pub weights: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    pub state: TrainerState,
}

/// The complete checkpoint folder for `dir`: `dir` itself, or `<dir>.old` if a previous save was
/// interrupted between its two renames.
pub fn resolve(dir: &Path) -> Option<PathBuf> {
    if dir.join(STATE_FILE).is_file() {
        return Some(dir.to_path_buf());
    }
    let old = with_suffix(dir, ".old");
    old.join(STATE_FILE).is_file().then_some(old)
}

pub struct SaveRequest<'a> {
    pub model_config: &'a GptConfig,
    /// The trained parameters: the whole model, or only its adapters (see [`Extras::adapter`]).
    pub weights: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    pub state: &'a TrainerState,
    pub extras: Extras<'a>,
}

/// What a checkpoint holds beside its weights.
#[derive(Clone, Default)]
pub struct Extras<'a> {
    /// Copied in as `tokenizer.json`.
    pub tokenizer_json: Option<&'a Path>,
    /// The weights are LoRA adapters on this frozen base: they are written to
    /// `adapter.safetensors` with `adapter.json`, and the folder has no `model.safetensors`.
    pub adapter: Option<&'a AdapterInfo>,
    /// Further safetensors files, by name, that belong to the run and must survive each save
    /// (DPO's reference log-probabilities).
    pub tensor_files: &'a [(&'a str, HashMap<String, Tensor>)],
}

pub use lmlab_model::lora::{adapter_info, AdapterInfo, ADAPTER_FILE, ADAPTER_INFO_FILE};

pub fn save(dir: &Path, req: SaveRequest) -> Result<()> {
    let tmp = with_suffix(dir, ".tmp");
    let old = with_suffix(dir, ".old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    match req.extras.adapter {
        None => save_model(&tmp, req.model_config, &req.weights)?,
        Some(info) => {
            std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            write_atomic(&tmp.join(CONFIG_FILE), serde_json::to_string_pretty(req.model_config)?.as_bytes())?;
            save_safetensors(&tmp.join(ADAPTER_FILE), &req.weights)?;
            write_atomic(&tmp.join(ADAPTER_INFO_FILE), serde_json::to_string_pretty(info)?.as_bytes())?;
        }
    }
    save_safetensors(&tmp.join(OPTIMIZER_FILE), &req.optimizer)?;
    for (name, tensors) in req.extras.tensor_files {
        save_safetensors(&tmp.join(name), tensors)?;
    }
    if let Some(tok) = req.extras.tokenizer_json {
        std::fs::copy(tok, tmp.join(TOKENIZER_FILE)).with_context(|| format!("copying {}", tok.display()))?;
    }
    write_atomic(&tmp.join(STATE_FILE), serde_json::to_string_pretty(req.state)?.as_bytes())?;

    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        std::fs::rename(dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("moving the new checkpoint to {}", dir.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

pub fn load(dir: &Path, dev: &Device) -> Result<Loaded> {
    let Some(found) = resolve(dir) else {
        bail!("no checkpoint to resume in {} (no {STATE_FILE})", dir.display());
    };
    let state_path = found.join(STATE_FILE);
    let state: TrainerState =
        serde_json::from_str(&std::fs::read_to_string(&state_path).with_context(|| format!("reading {}", state_path.display()))?)
            .with_context(|| format!("parsing {}", state_path.display()))?;
    let weights = if found.join(ADAPTER_INFO_FILE).is_file() { ADAPTER_FILE } else { WEIGHTS_FILE };
    Ok(Loaded {
        model_config: load_config(&found)?,
        weights: load_safetensors(&found.join(weights), dev)?,
        optimizer: load_safetensors(&found.join(OPTIMIZER_FILE), dev)?,
        state,
    })
}
