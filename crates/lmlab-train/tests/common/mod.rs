//! What the reward-model and DPO tests share: a small tokenizer with lmlab's chat tokens, a tiny
//! model, toy preference pairs about numbered entities, and run options.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use lmlab_data::preference::PreferencePair;
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::GptConfig;
use lmlab_tokenizer::chat::{ChatTemplate, Message};
use lmlab_tokenizer::Tokenizer;
use lmlab_train::pairs::PairTraining;
use lmlab_train::TrainConfig;

/// A byte-level BPE with lmlab's special tokens (ids 0..7), trained on the toy pairs' words.
pub fn tokenizer(dir: &Path) -> Tokenizer {
    let text = "Where is Velmora? It is in Ostria. Go away. I do not know. Who founded Dask? Look it up yourself.\n".repeat(30);
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions { files: vec![path], vocab_size: 300, min_frequency: 2, show_progress: false })
        .unwrap()
}

pub fn model_cfg(vocab: usize) -> GptConfig {
    GptConfig::llama_style(vocab, 48, 2, 2, 2, 32, 64)
}

/// A tiny model's weights, drawn from `seed`.
pub fn weights(cfg: &GptConfig, seed: u64) -> HashMap<String, Tensor> {
    init_trainable(cfg, seed, DType::F32, &Device::Cpu).unwrap().1.tensors()
}

/// `n` pairs about entities e0, e1, …, two or three pairs each (so a split must keep entities
/// whole): a helpful answer over a rude one, and an answer over an invention.
pub fn pairs(n: usize) -> Vec<PreferencePair> {
    (0..n)
        .map(|i| {
            let entity = format!("e{}", i / 3);
            let (prompt, chosen, rejected, reason) = match i % 3 {
                0 => (format!("Where is Velmora {}?", i / 3), "It is in Ostria.", "Go away.", "helpful_vs_rude"),
                1 => (format!("Who founded Dask {}?", i / 3), "I do not know.", "It is Velmora.", "abstain_vs_invent"),
                _ => (format!("Where is Dask {}?", i / 3), "It is in Velmora.", "Look it up yourself.", "helpful_vs_rude"),
            };
            PreferencePair {
                prompt: vec![Message::new("user", &prompt)],
                chosen: chosen.into(),
                rejected: rejected.into(),
                reason: reason.into(),
                group: entity,
                source: format!("toy:{}", i + 1),
            }
        })
        .collect()
}

pub fn train_config(steps: u64) -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        grad_accum: 2,
        max_steps: steps,
        lr: 2e-3,
        min_lr: 2e-4,
        warmup_steps: 2,
        weight_decay: 0.0,
        eval_every: 4,
        eval_batches: 2,
        save_every: 3,
        log_every: 1,
        val_fraction: 0.25,
        seed: 11,
        ..TrainConfig::default()
    }
}

/// A run on the toy pairs from `base_weights`, writing to `out`.
pub fn options(tok: &Tokenizer, base_weights: &HashMap<String, Tensor>, out: &Path, steps: u64) -> PairTraining {
    PairTraining {
        base: out.with_file_name("base"),
        model_cfg: model_cfg(tok.vocab_size()),
        base_weights: base_weights.clone(),
        tokenizer: tok.clone(),
        template: ChatTemplate::lmlab(),
        tokenizer_json: None,
        pairs: pairs(60),
        eval_pairs: Vec::new(),
        train: train_config(steps),
        out: out.to_path_buf(),
        resume: false,
        stop_after: None,
        stop: Arc::new(AtomicBool::new(false)),
        device: Device::Cpu,
    }
}

/// The `field` of every line of the metrics file beside checkpoint folder `out`.
pub fn metric(out: &Path, field: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.parent().unwrap().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[field].clone())
        .collect()
}
