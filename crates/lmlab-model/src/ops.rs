//! Building blocks with a gradient: softmax, LayerNorm, RMSNorm, rotary embedding, linear,
//! cross-entropy, dropout.
//!
//! candle 0.11's fused `softmax_last_dim`, `layer_norm`, `rms_norm`, `sdpa` and rotary helpers
//! have no backward pass; a model trained through them silently leaves parameters untrained.
//! The `composed_*` functions and [`softmax`] / [`log_softmax`] are built of differentiable
//! tensor ops; they run wherever [`crate::fused`]'s kernels do not (another dtype or device),
//! and they are the reference those kernels are tested against. [`norm`] and
//! [`cross_entropy`] pick the fused kernel where it runs.
//! The `*_infer` variants call candle's fused kernels and are only for gradient-free inference.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use rand::{Rng, SeedableRng};

/// Softmax over the last dimension. The max is detached: softmax does not depend on it, so
/// its gradient would be zero anyway, and detaching skips the max's backward.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// log-softmax over the last dimension, differentiable.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// LayerNorm over the last dimension: (x - mean) / sqrt(var + eps) * w (+ b).
pub fn composed_layer_norm(x: &Tensor, w: &Tensor, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xc.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(w)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) * w.
pub fn composed_rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// LayerNorm (with its bias, if any) or RMSNorm with a gradient: the fused kernel on f32 CPU
/// tensors, the composed ops elsewhere.
pub fn norm(x: &Tensor, w: &Tensor, b: Option<&Tensor>, kind: crate::config::Norm, eps: f64) -> Result<Tensor> {
    use crate::config::Norm;
    match (kind, crate::fused::fusable(x)) {
        (Norm::RmsNorm, true) => crate::fused::rms_norm(x, w, eps),
        (Norm::RmsNorm, false) => composed_rms_norm(x, w, eps),
        (Norm::LayerNorm, true) => crate::fused::layer_norm(x, w, b, eps),
        (Norm::LayerNorm, false) => composed_layer_norm(x, w, b, eps),
    }
}

/// Fused LayerNorm for inference (no backward). `b` must be present (zeros when unbiased).
pub fn layer_norm_infer(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::LayerNorm::new(w.clone(), b.clone(), eps).forward(x)
}

/// Fused RMSNorm for inference (no backward).
pub fn rms_norm_infer(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::RmsNorm::new(w.clone(), eps).forward(x)
}

/// Fused softmax over the last dimension for inference (no backward).
pub fn softmax_infer(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax_last_dim(x)
}

/// Rotary embedding, "rotate half" layout (as Llama / Hugging Face): the head dimension is split
/// in halves (x1, x2) rotated by angle θ_i·pos. `x` is [B, H, T, Dh]; `cos`/`sin` are [T, Dh/2].
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if crate::fused::fusable(x) && x.rank() == 4 {
        return crate::fused::rope(x, cos, sin);
    }
    composed_rope(x, cos, sin)
}

/// [`rope`] composed of tensor ops: the reference the fused kernel is tested against.
pub fn composed_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let r2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
    Tensor::cat(&[r1, r2], D::Minus1)
}

/// (cos, sin) of the rotary angles of position `pos`: pair `i` turns by pos·θ^(−2i/Dh).
pub fn rope_row(pos: usize, head_dim: usize, theta: f64) -> impl Iterator<Item = (f64, f64)> {
    (0..head_dim / 2).map(move |i| {
        let angle = pos as f64 * (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64));
        (angle.cos(), angle.sin())
    })
}

/// cos and sin tables [max_len, head_dim/2] for rotary embedding.
pub fn rope_tables(max_len: usize, head_dim: usize, theta: f64, dtype: DType, dev: &Device) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(max_len * half);
    let mut sin = Vec::with_capacity(max_len * half);
    for pos in 0..max_len {
        for (c, s) in rope_row(pos, head_dim, theta) {
            cos.push(c);
            sin.push(s);
        }
    }
    let cos = Tensor::from_vec(cos, (max_len, half), dev)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (max_len, half), dev)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

/// y = x·Wᵀ (+ b) for x of any rank; W is [out, in]. Flattening to one 2-D matmul is faster in
/// candle than its broadcast batched matmul.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inner = *dims.last().expect("linear input has a last dimension");
    let rows = x.elem_count() / inner;
    let x = x.reshape((rows, inner))?;
    let fused = crate::fused::fusable(&x) && crate::fused::fusable(w) && b.is_none_or(crate::fused::fusable);
    let y = match (fused, b) {
        (true, _) => crate::fused::linear(&x, w, b)?,
        (false, Some(b)) => x.matmul(&w.t()?)?.broadcast_add(b)?,
        (false, None) => x.matmul(&w.t()?)?,
    };
    let mut out_dims = dims;
    *out_dims.last_mut().unwrap() = w.dim(0)?;
    y.reshape(out_dims)
}

/// Mean cross-entropy of `logits` [N, V] against `targets` [N] (u32), counting only rows whose
/// `mask` [N] is 1 (candle-nn's `cross_entropy` has no ignore-index). Returns a scalar.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    if crate::fused::fusable(logits) {
        let losses = crate::fused::cross_entropy_rows(logits, targets)?;
        return match mask {
            None => losses.mean_all(),
            Some(m) => {
                let m = m.to_dtype(losses.dtype())?;
                let n = m.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.max(1.0);
                (losses * m)?.sum_all()? / n
            }
        };
    }
    composed_cross_entropy(logits, targets, mask)
}

/// [`cross_entropy`] composed of tensor ops: log-softmax, then the targets' entries.
pub fn composed_cross_entropy(logits: &Tensor, targets: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let logp = log_softmax(logits)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    match mask {
        None => picked.mean_all()?.neg(),
        Some(m) => {
            let m = m.to_dtype(picked.dtype())?;
            let n = m.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.max(1.0);
            ((picked * m)?.sum_all()? / n)?.neg()
        }
    }
}

/// Inverted dropout with a mask drawn from a seeded RNG, so training is reproducible
/// (candle's CPU random generator cannot be seeded).
pub fn dropout(x: &Tensor, p: f64, rng: &mut rand_chacha::ChaCha8Rng) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let scale = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.random::<f64>() < p { 0.0 } else { scale as f32 }).collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

/// A fresh dropout RNG for one training step: independent of everything but (seed, step).
pub fn step_rng(seed: u64, step: u64, stream: u64) -> rand_chacha::ChaCha8Rng {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng.set_word_pos(u128::from(step) << 32);
    rng
}
