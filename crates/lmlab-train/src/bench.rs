//! Training-step throughput: tokens/s, model FLOPs per token, achieved GFLOP/s and MFU.
//!
//! A step is exactly what pretraining does: forward, loss, backward, global-norm clipping and an
//! AdamW update, on random tokens. MFU is reported against this machine's f32 matmul peak,
//! measured in the same run with the same matmul kernel the model uses, so the ratio is honest
//! for this machine rather than against a datasheet.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::fused::Precision;
use lmlab_model::{GptConfig, Mode};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::TrainConfig;
use crate::optim::{clip_global_norm, AdamW};

#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    pub batch_size: usize,
    pub seq_len: usize,
    pub params: usize,
    pub steps: usize,
    pub threads: usize,
    pub ms_per_step: f64,
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
    pub tokens_per_sec: f64,
    pub flops_per_token: f64,
    pub achieved_gflops: f64,
    /// `f32` or `bf16` (mixed precision), and the matmul peak measured in it.
    pub precision: Precision,
    pub peak_matmul_gflops: f64,
    pub mfu: f64,
    pub final_loss: f64,
    /// Bytes of the tensors one step's graph keeps for the backward pass (distinct buffers,
    /// parameters excluded), counted on the last timed step.
    pub activation_bytes: u64,
    /// How far the peak resident memory rose over the first step (VmHWM after it minus VmRSS
    /// before it, from /proc/self/status): activations, gradients and the optimiser's moments,
    /// which the first step allocates. `None` where /proc is not there.
    pub first_step_peak_rss_growth_bytes: Option<u64>,
}

/// Bytes of the distinct storages behind the tensors of `loss`'s graph that are not
/// parameters: what the graph holds alive until the backward pass has run. A view (a reshape,
/// a narrow) shares its source's buffer and counts once, at the largest extent any view reaches.
fn activation_bytes(loss: &Tensor) -> u64 {
    let mut extent: HashMap<usize, u64> = HashMap::new();
    for t in loss.sorted_nodes().into_iter().filter(|t| !t.is_variable()) {
        let (storage, layout) = t.storage_and_layout();
        let key = &*storage as *const candle_core::Storage as usize;
        let bytes = ((layout.start_offset() + t.elem_count()) * t.dtype().size_in_bytes()) as u64;
        let e = extent.entry(key).or_default();
        *e = (*e).max(bytes);
    }
    extent.values().sum()
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`), or `None` off Linux.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// f32 matmul GFLOP/s of an n×n×n product, best of `reps`.
pub fn matmul_peak_gflops(n: usize, reps: usize, dev: &Device) -> Result<f64> {
    matmul_peak_gflops_in(n, reps, dev, Precision::F32)
}

/// [`matmul_peak_gflops`] of the product training uses in `precision` (the fused linear
/// layer's, for bf16: bf16 inputs, f32 sums).
pub fn matmul_peak_gflops_in(n: usize, reps: usize, dev: &Device, precision: Precision) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let product = |a: &Tensor, b: &Tensor| match precision {
        Precision::F32 => a.matmul(b),
        Precision::Bf16 => lmlab_model::fused::linear_in(a, b, None, precision),
    };
    let _ = product(&a, &b)?; // warm up threads and caches
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let c = product(&a, &b)?;
        dev.synchronize()?;
        drop(c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

pub fn bench_train(
    cfg: &GptConfig,
    train: &TrainConfig,
    batch: usize,
    seq: usize,
    warmup: usize,
    steps: usize,
    dev: &Device,
) -> Result<TrainBench> {
    cfg.validate()?;
    anyhow::ensure!(seq <= cfg.context_length, "seq_len {seq} exceeds the context length {}", cfg.context_length);
    anyhow::ensure!(steps > 0, "need at least one timed step");
    lmlab_model::fused::set_precision(train.precision);
    let (model, params) = init_trainable(cfg, train.seed, DType::F32, dev)?;
    let mut opt = AdamW::new(&params, train.adamw())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(train.seed);
    let tokens: Vec<u32> = (0..batch * (seq + 1)).map(|_| rng.random_range(0..cfg.vocab_size as u32)).collect();
    let all = Tensor::from_vec(tokens, (batch, seq + 1), dev)?;
    let x = all.narrow(1, 0, seq)?.contiguous()?;
    let y = all.narrow(1, 1, seq)?.contiguous()?;

    let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
    let mut final_loss = 0.0;
    let (mut activations, mut rss_growth) = (0, None);
    let rss_before = proc_status_bytes("VmRSS");
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let loss = model.loss(&x, &y, &mut Mode::training_without_dropout())?;
        final_loss = loss.to_scalar::<f32>()? as f64;
        let t1 = Instant::now();
        if i + 1 == warmup + steps {
            activations = activation_bytes(&loss);
        }
        let t1b = Instant::now(); // the count above stays out of both timed parts
        let mut grads = opt.collect_grads(&loss.backward()?)?;
        let t2 = Instant::now();
        clip_global_norm(&mut grads, train.grad_clip)?;
        opt.step(&grads, train.lr)?;
        dev.synchronize()?;
        let t3 = Instant::now();
        if i == 0 {
            rss_growth = proc_status_bytes("VmHWM").zip(rss_before).map(|(peak, before)| peak.saturating_sub(before));
        }
        if i >= warmup {
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1b).as_secs_f64();
            upd += (t3 - t2).as_secs_f64();
        }
    }
    let per_step = (fwd + bwd + upd) / steps as f64;
    let tokens_per_sec = (batch * seq) as f64 / per_step;
    let flops_per_token = cfg.train_flops_per_token(seq);
    let achieved = flops_per_token * tokens_per_sec / 1e9;
    let peak = matmul_peak_gflops_in(1024, 5, dev, train.precision)?;
    Ok(TrainBench {
        batch_size: batch,
        seq_len: seq,
        params: params.num_elements(),
        steps,
        threads: candle_core::utils::get_num_threads(),
        ms_per_step: per_step * 1e3,
        forward_ms: fwd / steps as f64 * 1e3,
        backward_ms: bwd / steps as f64 * 1e3,
        optimizer_ms: upd / steps as f64 * 1e3,
        tokens_per_sec,
        flops_per_token,
        achieved_gflops: achieved,
        precision: train.precision,
        peak_matmul_gflops: peak,
        mfu: achieved / peak,
        final_loss,
        activation_bytes: activations,
        first_step_peak_rss_growth_bytes: rss_growth,
    })
}
