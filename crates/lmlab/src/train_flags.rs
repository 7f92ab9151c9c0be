//! The flags every fine-tuning stage shares (`sft`, `reward train`, `dpo`): training overrides
//! on top of a preset table or the stage's defaults, and LoRA adapters.

use anyhow::Result;
use clap::Args;
use lmlab_model::{Activation, LoraConfig, LoraTarget};
use lmlab_train::TrainConfig;

#[derive(Args)]
pub struct TrainFlags {
    #[arg(long)]
    steps: Option<u64>,
    /// Peak learning rate (it decays to a tenth).
    #[arg(long)]
    lr: Option<f64>,
    /// Rows (sft) or pairs (reward, dpo) per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Longest sequence in tokens (default: the model's context length).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Share of conversations or pairs held out for evaluation.
    #[arg(long)]
    val_fraction: Option<f64>,
    /// f32, or bf16 (mixed precision: bf16 matmuls, f32 weights and optimiser state).
    #[arg(long)]
    precision: Option<lmlab_model::fused::Precision>,
    /// Continue from the checkpoint in --out exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Write a checkpoint and stop after this many steps (resume later with --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
}

impl TrainFlags {
    /// `cfg` with the flags given applied; the warmup is capped at half the steps.
    pub fn apply(&self, mut cfg: TrainConfig) -> TrainConfig {
        if let Some(v) = self.steps {
            cfg.max_steps = v;
        }
        if let Some(v) = self.lr {
            cfg.lr = v;
            cfg.min_lr = v / 10.0;
        }
        if let Some(v) = self.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = self.seq_len {
            cfg.seq_len = v;
        }
        if let Some(v) = self.val_fraction {
            cfg.val_fraction = v;
        }
        if let Some(v) = self.precision {
            cfg.precision = v;
        }
        cfg.warmup_steps = cfg.warmup_steps.min(cfg.max_steps / 2);
        cfg
    }
}

/// A fine-tuning stage's defaults: 300 steps from `lr`, decaying to a tenth, no weight decay.
pub fn stage_defaults(lr: f64, log_every: u64, val_fraction: f64) -> TrainConfig {
    TrainConfig {
        max_steps: 300,
        lr,
        min_lr: lr / 10.0,
        warmup_steps: 20,
        weight_decay: 0.0,
        eval_every: 50,
        save_every: 100,
        log_every,
        val_fraction,
        ..TrainConfig::default()
    }
}

#[derive(Args)]
pub struct LoraFlags {
    /// Train LoRA adapters of this rank on a frozen base instead of every weight.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA scale numerator: adapters add (alpha/rank)·B·A.
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Projections to adapt: q, k, v, o, gate, up, down, or the groups attn, mlp, all.
    #[arg(long, default_value = "attn,mlp")]
    lora_targets: String,
}

impl LoraFlags {
    /// The adapters asked for, on a model with `activation`: groups ("mlp", the default
    /// "attn,mlp") name the model's own projections, so no gate on a GELU model.
    pub fn config(&self, activation: Activation) -> Result<Option<LoraConfig>> {
        let Some(rank) = self.lora_rank else { return Ok(None) };
        let targets = LoraTarget::parse_list_for(&self.lora_targets, activation).map_err(anyhow::Error::msg)?;
        Ok(Some(LoraConfig { rank, alpha: self.lora_alpha, targets }))
    }
}
