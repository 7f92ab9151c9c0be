//! lmlab-train: optimisation and the training loops.
//!
//! What it does: AdamW with parameter groups and clipping ([`optim`]), the learning-rate
//! schedule ([`schedule`]), token shards ([`shards`]) and batches ([`data`]), training
//! configuration ([`config`]), checkpoints with exact resume ([`checkpoint`]), `metrics.jsonl`
//! ([`metrics`]), the training loop every stage shares ([`trainer`]), pretraining
//! ([`pretrain`]), supervised fine-tuning, full or LoRA ([`sft`]), and learning from preference
//! pairs ([`pairs`]): a Bradley–Terry reward model ([`reward`]) and DPO, IPO or SimPO ([`dpo`]);
//! unlearning a forget set by gradient ascent, gradient difference or NPO ([`unlearn`]);
//! and RLHF on the policy's own samples with PPO, GRPO or RLOO ([`rl`]).
//!
//! What it does not do: model architecture (lmlab-model), sampling (lmlab-infer; RL rollouts
//! call its engine), or reading
//! model files, conversation or preference datasets (the caller loads them: `lmlab_infer::Model`,
//! `lmlab_data::chat`, `lmlab_data::preference`).

#![forbid(unsafe_code)]

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dpo;
pub mod metrics;
pub mod optim;
pub mod pairs;
pub mod pretrain;
pub mod reward;
pub mod rl;
pub mod schedule;
pub mod seq2seq;
pub mod sft;
pub mod trainer;
pub mod unlearn;
/// The token shard format lives with the data pipeline that writes it.
pub use lmlab_data::shards;

pub use config::{Preset, TrainConfig};
pub use pretrain::{pretrain, pretrain_with, PretrainOptions, PretrainReport, TrainEvent};
