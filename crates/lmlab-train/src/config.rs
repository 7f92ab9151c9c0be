//! Training configuration and preset files.
//!
//! A preset (`configs/*.toml`) has a `[model]` table ([`lmlab_model::GptConfig`]) and a `[train]`
//! table ([`TrainConfig`]); every training field has a default, so a preset may omit `[train]`.

use std::path::Path;

use anyhow::{Context, Result};
use lmlab_model::GptConfig;
use serde::{Deserialize, Serialize};

use crate::optim::AdamWConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before one optimizer step.
    pub grad_accum: usize,
    /// Tokens per sequence; 0 means the model's context length.
    pub seq_len: usize,
    pub max_steps: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub decay_embeddings: bool,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm limit; 0 disables clipping.
    pub grad_clip: f64,
    pub eval_every: u64,
    pub eval_batches: usize,
    pub save_every: u64,
    pub log_every: u64,
    /// Share of the token stream held out for evaluation (taken from its end).
    pub val_fraction: f64,
    pub seed: u64,
    /// `f32`, or `bf16`: the linear layers multiply in bf16 with f32 sums, weights and
    /// optimiser state stay f32 (mixed precision).
    pub precision: lmlab_model::fused::Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            grad_accum: 1,
            seq_len: 0,
            max_steps: 1000,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 50,
            weight_decay: 0.1,
            decay_embeddings: false,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 100,
            eval_batches: 8,
            save_every: 200,
            log_every: 10,
            val_fraction: 0.05,
            seed: 1337,
            precision: lmlab_model::fused::Precision::F32,
        }
    }
}

impl TrainConfig {
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decay_embeddings: self.decay_embeddings,
        }
    }

    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.batch_size > 0, "train.batch_size must be positive");
        anyhow::ensure!(self.grad_accum > 0, "train.grad_accum must be positive");
        anyhow::ensure!(self.max_steps > 0, "train.max_steps must be positive");
        anyhow::ensure!(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr, "need 0 <= train.min_lr <= train.lr and lr > 0");
        anyhow::ensure!((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2), "train.beta1/beta2 must be in [0, 1)");
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub model: GptConfig,
    #[serde(default)]
    pub train: TrainConfig,
    /// The world a post-training preset is meant for (`lmlab world generate --preset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<lmlab_world::WorldOptions>,
    /// Instruction tuning's settings (`lmlab sft --config`), where they differ from its defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sft: Option<StageTable>,
    /// The reward model's settings (`lmlab reward train --config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<StageTable>,
    /// DPO's settings (`lmlab dpo --config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<StageTable>,
}

/// A post-training stage's table (`[sft]`, `[reward]`, `[dpo]`): only the fields it names,
/// laid over that stage's own defaults, so that `[reward]\nval_fraction = 0.2` changes the
/// held-out share and nothing else. Its fields are those of [`TrainConfig`], checked on reading.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct StageTable(toml::Table);

impl StageTable {
    /// `defaults` with this table's fields in their place.
    pub fn over(&self, defaults: TrainConfig) -> Result<TrainConfig> {
        let toml::Value::Table(mut merged) = toml::Value::try_from(&defaults)? else { unreachable!("a struct serializes to a table") };
        merged.extend(self.0.clone());
        let cfg: TrainConfig = toml::Value::Table(merged).try_into()?;
        cfg.validate()?;
        Ok(cfg)
    }
}

impl<'de> Deserialize<'de> for StageTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let table = StageTable(toml::Table::deserialize(d)?);
        table.over(TrainConfig::default()).map_err(serde::de::Error::custom)?;
        Ok(table)
    }
}

/// The presets shipped in `configs/`, by name, embedded so that they work from any directory.
pub const PRESETS: [(&str, &str); 9] = [
    ("tiny", include_str!("../../../configs/tiny.toml")),
    ("knowledge", include_str!("../../../configs/knowledge.toml")),
    ("small", include_str!("../../../configs/small.toml")),
    ("gpt2-124m", include_str!("../../../configs/gpt2-124m.toml")),
    ("gpt2-xl", include_str!("../../../configs/gpt2-xl.toml")),
    ("llama-2-7b", include_str!("../../../configs/llama-2-7b.toml")),
    ("llama-3-8b", include_str!("../../../configs/llama-3-8b.toml")),
    ("llama-3-70b", include_str!("../../../configs/llama-3-70b.toml")),
    ("smollm2-135m", include_str!("../../../configs/smollm2-135m.toml")),
];

impl Preset {
    /// The built-in preset `name` (one of [`PRESETS`]); an unknown name lists the known ones.
    pub fn builtin(name: &str) -> Result<Self> {
        let Some((_, text)) = PRESETS.iter().find(|(n, _)| *n == name) else {
            anyhow::bail!("unknown preset {name:?}; known: {}", PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "));
        };
        Self::from_toml(text).with_context(|| format!("in the built-in preset {name}"))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in config {}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let mut p: Preset = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", describe_toml_error(text, &e)))?;
        p.model = p.model.resolved();
        p.train.validate()?;
        // The model's shape is checked now (a vocabulary of 0 is allowed: the tokenizer sets it).
        GptConfig { vocab_size: p.model.vocab_size.max(1), ..p.model.clone() }.validate()?;
        Ok(p)
    }
}

/// What each table of a preset takes, for error messages.
const MODEL_FIELDS: &str = "vocab_size (0: from the tokenizer), context_length, n_layer, n_head, n_kv_head (default n_head), d_model, d_ff, norm = \"layernorm\" | \"rmsnorm\", activation = \"gelu\" | \"swiglu\", position = \"learned\" | \"rope\", rope_theta, tie_embeddings, dropout, bias, norm_eps";
const WORLD_FIELDS: &str = "seed, scale = \"tiny\" | \"small\" | \"medium\", zh_share, poison, singleton_share, head_occurrences, occurrence_decay, core_entities, core_occurrences (all optional)";
const TRAIN_FIELDS: &str = "batch_size, grad_accum, seq_len, max_steps, lr, min_lr, warmup_steps, weight_decay, decay_embeddings, beta1, beta2, eps, grad_clip, eval_every, eval_batches, save_every, log_every, val_fraction, seed (all optional)";

/// A TOML error with the table it is in, the line, and what the table takes.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map_or(0, |s| s.start.min(text.len()));
    let line = text[..at].matches('\n').count() + 1;
    // The table: the last `[name]` header at or before the error (the error may sit on it).
    let upto = &text[..text[at..].find('\n').map_or(text.len(), |n| at + n)];
    let table = upto.lines().rev().find_map(|l| l.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']'))).unwrap_or("");
    let takes = match table {
        "model" => format!("; [model] takes {MODEL_FIELDS}"),
        "train" => format!("; [train] takes {TRAIN_FIELDS}"),
        "sft" | "reward" | "dpo" => format!("; [{table}] takes {TRAIN_FIELDS}"),
        "world" => format!("; [world] takes {WORLD_FIELDS}"),
        _ => "; a preset has the tables [model], [train], and optionally [world], [sft], [reward] and [dpo]".into(),
    };
    let place = if table.is_empty() { format!("line {line}") } else { format!("table [{table}], line {line}") };
    format!("{place}: {}{takes}", e.message().trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_presets_name_the_table_the_field_and_what_is_allowed() {
        let err = |t: &str| format!("{:#}", Preset::from_toml(t).unwrap_err());
        let missing = err("[model]\nvocab_size = 10\nn_layer = 2\n");
        assert!(
            missing.contains("table [model]")
                && missing.contains("missing field `context_length`")
                && missing.contains("norm = \"layernorm\" | \"rmsnorm\""),
            "{missing}"
        );
        let model = "[model]\ncontext_length = 16\nn_layer = 1\nn_head = 2\nd_model = 8\nd_ff = 8\nnorm = \"rmsnorm\"\nactivation = \"gelu\"\nposition = \"rope\"\n";
        let enum_value = err(&model.replace("\"gelu\"", "\"relu\""));
        assert!(enum_value.contains("table [model], line 8") && enum_value.contains("relu"), "{enum_value}");
        let negative_lr = err(&format!("{model}[train]\nlr = -1.0\n"));
        assert!(negative_lr.contains("lr > 0"), "{negative_lr}");
        let heads = err(&model.replace("n_head = 2", "n_head = 3"));
        assert!(heads.contains("d_model (8) must be divisible by model.n_head (3)"), "{heads}");
        let unknown = err(&format!("{model}[training]\nlr = 1.0\n"));
        assert!(unknown.contains("[model], [train]"), "{unknown}");
        let world = err(&format!("{model}[world]\nscale = \"huge\"\n"));
        assert!(world.contains("table [world]") && world.contains("huge") && world.contains("core_entities"), "{world}");
        let dpo = err(&format!("{model}[dpo]\nbeta = 0.1\n"));
        assert!(dpo.contains("table [dpo]") && dpo.contains("unknown field `beta`") && dpo.contains("log_every"), "{dpo}");
        let stages = Preset::from_toml(&format!("{model}[reward]\nlr = 1e-4\n[dpo]\nmax_steps = 7\n")).unwrap();
        // A stage table changes only the fields it names, over the stage's own defaults.
        let defaults = TrainConfig { max_steps: 300, lr: 3e-4, val_fraction: 0.1, ..TrainConfig::default() };
        let reward = stages.reward.unwrap().over(defaults.clone()).unwrap();
        assert_eq!(reward, TrainConfig { lr: 1e-4, ..defaults.clone() });
        assert_eq!(stages.dpo.unwrap().over(defaults.clone()).unwrap(), TrainConfig { max_steps: 7, ..defaults });
        assert!(Preset::from_toml(model).is_ok());
    }
}
