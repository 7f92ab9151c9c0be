//! lmlab-train: optimisation and the training loops.
//!
//! What it does: AdamW with parameter groups and clipping ([`optim`]), the learning-rate
//! schedule ([`schedule`]), token shards ([`shards`]) and batches ([`data`]), training
//! configuration ([`config`]), checkpoints with exact resume ([`checkpoint`]), `metrics.jsonl`
//! ([`metrics`]) and the pretraining loop ([`pretrain`]).
//!
//! What it does not do: model architecture (lmlab-model) or sampling (lmlab-infer).

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
