//! lmlab-train: optimisation and the training loops.
//!
//! What it does: AdamW with parameter groups and clipping ([`optim`]), the learning-rate
//! schedule ([`schedule`]), token shards ([`shards`]) and batches ([`data`]), training
//! configuration ([`config`]), checkpoints with exact resume ([`checkpoint`]), `metrics.jsonl`
//! ([`metrics`]), the training loop every stage shares ([`trainer`]), pretraining
//! ([`pretrain`]) and supervised fine-tuning, full or LoRA ([`sft`]).
//!
//! What it does not do: model architecture (lmlab-model), sampling (lmlab-infer), or reading
//! model files and conversation datasets (the caller loads them: `lmlab_infer::Model`,
//! `lmlab_data::chat`).

#![forbid(unsafe_code)]

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod metrics;
pub mod optim;
pub mod pretrain;
pub mod schedule;
pub mod seq2seq;
pub mod sft;
pub mod trainer;
/// The token shard format lives with the data pipeline that writes it.
pub use lmlab_data::shards;

pub use config::{Preset, TrainConfig};
pub use pretrain::{pretrain, pretrain_with, PretrainOptions, PretrainReport, TrainEvent};
