//! Fused training ops with hand-written backward passes, as candle custom ops: causal
//! attention, softmax cross-entropy, RMSNorm, LayerNorm, SwiGLU, GELU, the linear layer (with
//! its bias) and rotary embedding.
//!
//! Why: composed of candle's tensor ops (see [`crate::ops`]) each of these is a chain of
//! elementwise kernels and broadcasts, and its backward a longer one, each allocating a full
//! tensor and walking memory once. Fused, a row is read once forward and once backward. The
//! attention keeps no T×T probabilities for backward (see `lmlab_kernels::attention_backward`);
//! the cross-entropy keeps no probabilities at all: its backward recovers each row's
//! log-sum-exp from the loss it returned and recomputes the softmax from the logits.
//!
//! Each op runs on contiguous f32 CPU tensors. [`fusable`] says when that holds; elsewhere
//! (another dtype, a GPU) the callers in [`crate::ops`] take the composed path, and the tests in
//! `tests/fused_ops.rs` check that both give the same values and gradients.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use lmlab_kernels::AttentionShape;
use rayon::prelude::*;

/// The precision of the linear layers' matrix products in training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed precision: the linear layers multiply bf16-rounded inputs and weights with f32
    /// sums (as PyTorch's bf16 autocast does); weights, gradients and optimiser state stay f32,
    /// and so do attention, norms and the loss.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision {other:?}: expected f32 or bf16")),
        }
    }
}

thread_local! {
    static PRECISION: std::cell::Cell<Precision> = const { std::cell::Cell::new(Precision::F32) };
}

/// Sets the precision of the linear layers' products that this thread builds from now on (a
/// training run sets it once, before its first step). Per thread, like PyTorch's autocast, so
/// that two trainings in one process (tests, say) do not change each other's numbers; the op
/// records the precision when it is built, so the rayon threads that run it need no setting.
pub fn set_precision(p: Precision) {
    PRECISION.with(|c| c.set(p));
}

/// The precision [`set_precision`] last set on this thread.
pub fn precision() -> Precision {
    PRECISION.with(|c| c.get())
}

/// Whether the fused ops can run on this tensor: f32 on the CPU.
pub fn fusable(t: &Tensor) -> bool {
    t.dtype() == DType::F32 && t.device().is_cpu()
}

/// The values of a contiguous f32 storage, or an error naming the op.
fn f32_values<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        (CpuStorage::F32(_), None) => bail!("{op}: expects a contiguous tensor"),
        _ => bail!("{op}: expects f32 values"),
    }
}

/// Calls `f` with the f32 values of each tensor (made contiguous first): how the backward
/// passes read their inputs without copying them into new vectors.
fn with_values<R>(op: &str, ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let contiguous: Vec<Tensor> = ts.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
    let guards: Vec<_> = contiguous.iter().map(|t| t.storage_and_layout()).collect();
    let mut values = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(s) => values.push(f32_values(s, layout, op)?),
            _ => bail!("{op}: runs on the CPU only"),
        }
    }
    f(&values)
}

fn tensor_like(values: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(values, like.shape(), like.device())
}

/// Values per piece of work handed to rayon: enough to be worth a thread.
const PIECE: usize = 16_384;

/// Rows of `width` values per piece of about [`PIECE`] values, so short rows still make pieces
/// worth a thread.
fn rows_per_piece(width: usize) -> usize {
    (PIECE / width.max(1)).max(1)
}

// ---------------------------------------------------------------------------------------------
// Causal attention
// ---------------------------------------------------------------------------------------------

struct CausalAttention {
    shape: AttentionShape,
    segments: Option<Arc<Vec<u32>>>,
    scale: f32,
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "fused-causal-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (f32_values(q, lq, self.name())?, f32_values(k, lk, self.name())?, f32_values(v, lv, self.name())?);
        let y = lmlab_kernels::attention_forward(q, k, v, self.shape, self.segments.as_deref().map(|s| &s[..]), self.scale)
            .map_err(candle_core::Error::msg)?;
        Ok((CpuStorage::F32(y), lq.shape().clone()))
    }

    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let lmlab_kernels::AttentionGrads { dq, dk, dv } = with_values(self.name(), &[q, k, v, y, dy], |x| {
            lmlab_kernels::attention_backward(
                x[0],
                x[1],
                x[2],
                x[3],
                x[4],
                self.shape,
                self.segments.as_deref().map(|s| &s[..]),
                self.scale,
            )
            .map_err(candle_core::Error::msg)
        })?;
        Ok((Some(tensor_like(dq, q)?), Some(tensor_like(dk, k)?), Some(tensor_like(dv, v)?)))
    }
}

/// Causal attention `softmax(scale·Q·Kᵀ + mask)·V` of `q` [B, H, T, Dh] over `k`, `v`
/// [B, Hkv, T, Dh], with an optional document id per token [B·T] (packed rows: a token sees
/// only earlier tokens of its own document). Returns [B, H, T, Dh].
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, segments: Option<Arc<Vec<u32>>>, scale: f64) -> Result<Tensor> {
    let (batch, heads, len, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let shape = AttentionShape { batch, heads, kv_heads, len, head_dim };
    let op = CausalAttention { shape, segments, scale: scale as f32 };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy
// ---------------------------------------------------------------------------------------------

/// Per-row cross-entropy `logsumexp(x) − x[target]` of logits [N, V].
struct CrossEntropyRows {
    targets: Vec<u32>,
}

impl CrossEntropyRows {
    fn name_target(&self, row: usize, vocab: usize) -> Result<usize> {
        let t = self.targets[row] as usize;
        if t >= vocab {
            bail!("cross-entropy: row {row}'s target {t} is outside the vocabulary of {vocab}");
        }
        Ok(t)
    }
}

/// log Σ exp(x).
fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = x.iter().map(|v| (v - max).exp()).sum();
    max + sum.ln()
}

impl CustomOp1 for CrossEntropyRows {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = f32_values(s, l, self.name())?;
        let (n, vocab) = l.shape().dims2()?;
        if self.targets.len() != n {
            bail!("cross-entropy: {} targets for {n} rows of logits", self.targets.len());
        }
        let losses = logits
            .par_chunks(vocab)
            .enumerate()
            .map(|(row, x)| Ok(log_sum_exp(x) - x[self.name_target(row, vocab)?]))
            .collect::<Result<Vec<f32>>>()?;
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    /// d loss_i / d x_ij = softmax(x_i)_j − [j = target_i], scaled by the row's incoming
    /// gradient. The row's log-sum-exp is its loss plus its target logit.
    fn bwd(&self, logits: &Tensor, losses: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, vocab) = logits.dims2()?;
        let dx = with_values(self.name(), &[logits, losses, grad], |x| {
            let (logits, losses, grad) = (x[0], x[1], x[2]);
            let mut dx = vec![0.0f32; logits.len()];
            dx.par_chunks_mut(vocab).enumerate().try_for_each(|(row, d)| -> Result<()> {
                let g = grad[row];
                if g == 0.0 {
                    return Ok(()); // a masked row: its gradient is zero
                }
                let x = &logits[row * vocab..][..vocab];
                let t = self.name_target(row, vocab)?;
                let lse = losses[row] + x[t];
                for (d, &v) in d.iter_mut().zip(x) {
                    *d = g * (v - lse).exp();
                }
                d[t] -= g;
                Ok(())
            })?;
            Ok(dx)
        })?;
        Ok(Some(tensor_like(dx, logits)?))
    }
}

/// Cross-entropy of each row of `logits` [N, V] against `targets` [N] (u32): a tensor [N].
pub fn cross_entropy_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let targets = targets.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    logits.contiguous()?.apply_op1(CrossEntropyRows { targets })
}

// ---------------------------------------------------------------------------------------------
// RMSNorm and LayerNorm
// ---------------------------------------------------------------------------------------------

/// Adds each piece's partial weight gradients into one vector of `width`.
fn sum_partials(partials: Vec<Vec<f32>>, width: usize) -> Vec<f32> {
    partials.into_iter().fold(vec![0.0f32; width], |mut acc, p| {
        acc.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        acc
    })
}

/// 1 / sqrt(mean(x²) + eps).
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (ms + eps).sqrt()
}

/// (mean, 1 / sqrt(var + eps)) of a row.
fn mean_and_scale(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// LayerNorm (`layer`) or RMSNorm over the last dimension; as a two-input op without a bias,
/// as a three-input op with one.
struct Norm {
    layer: bool,
    eps: f32,
}

impl Norm {
    fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let d = w.len();
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(y, x)| {
            let (mean, r) = if self.layer { mean_and_scale(x, self.eps) } else { (0.0, rms_scale(x, self.eps)) };
            for j in 0..d {
                y[j] = (x[j] - mean) * r * w[j] + b.map_or(0.0, |b| b[j]);
            }
        });
        y
    }

    /// (dx, dw, db): with x̂ the normalised row and g = dy ∘ w,
    /// RMSNorm: dx = r·(g − x̂·mean(g ∘ x̂)); LayerNorm: dx = r·(g − mean(g) − x̂·mean(g ∘ x̂));
    /// dw = Σ_rows dy ∘ x̂; db = Σ_rows dy.
    fn backward(&self, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let d = w.len();
        let piece = rows_per_piece(d) * d;
        let mut dx = vec![0.0f32; x.len()];
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(piece)
            .zip(x.par_chunks(piece).zip(dy.par_chunks(piece)))
            .map(|(dx, (x, dy))| {
                let (mut dw, mut db) = (vec![0.0f32; d], vec![0.0f32; d]);
                let mut xhat = vec![0.0f32; d];
                for ((dx, x), dy) in dx.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(dy.chunks_exact(d)) {
                    let (mean, r) = if self.layer { mean_and_scale(x, self.eps) } else { (0.0, rms_scale(x, self.eps)) };
                    let (mut mean_g, mut mean_gx) = (0.0f32, 0.0f32);
                    for j in 0..d {
                        xhat[j] = (x[j] - mean) * r;
                        let g = dy[j] * w[j];
                        mean_g += g;
                        mean_gx += g * xhat[j];
                        dw[j] += dy[j] * xhat[j];
                        db[j] += dy[j];
                    }
                    let (mean_g, mean_gx) = (if self.layer { mean_g / d as f32 } else { 0.0 }, mean_gx / d as f32);
                    for j in 0..d {
                        dx[j] = r * (dy[j] * w[j] - mean_g - xhat[j] * mean_gx);
                    }
                }
                (dw, db)
            })
            .collect();
        let (dw, db): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
        (dx, sum_partials(dw, d), sum_partials(db, d))
    }
}

const RMS_NORM: &str = "fused-rms-norm";
const LAYER_NORM: &str = "fused-layer-norm";

impl Norm {
    fn op_name(&self) -> &'static str {
        if self.layer {
            LAYER_NORM
        } else {
            RMS_NORM
        }
    }
}

impl CustomOp2 for Norm {
    fn name(&self) -> &'static str {
        self.op_name()
    }

    fn cpu_fwd(&self, x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_values(x, lx, self.op_name())?, f32_values(w, lw, self.op_name())?);
        Ok((CpuStorage::F32(self.forward(x, w, None)), lx.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = with_values(self.op_name(), &[x, w, dy], |v| Ok(self.backward(v[0], v[1], v[2])))?;
        Ok((Some(tensor_like(dx, x)?), Some(tensor_like(dw, w)?)))
    }
}

impl CustomOp3 for Norm {
    fn name(&self) -> &'static str {
        LAYER_NORM
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_values(x, lx, LAYER_NORM)?, f32_values(w, lw, LAYER_NORM)?, f32_values(b, lb, LAYER_NORM)?);
        Ok((CpuStorage::F32(self.forward(x, w, Some(b))), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = with_values(LAYER_NORM, &[x, w, dy], |v| Ok(self.backward(v[0], v[1], v[2])))?;
        Ok((Some(tensor_like(dx, x)?), Some(tensor_like(dw, w)?), Some(tensor_like(db, b)?)))
    }
}

fn check_norm_weight(x: &Tensor, w: &Tensor) -> Result<()> {
    let d = x.dim(candle_core::D::Minus1)?;
    if w.dims() != [d] {
        bail!("norm: weight of shape {:?} for rows of {d}", w.dims());
    }
    Ok(())
}

/// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · w.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    check_norm_weight(x, w)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, Norm { layer: false, eps: eps as f32 })
}

/// LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) · w (+ b).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    check_norm_weight(x, w)?;
    let op = Norm { layer: true, eps: eps as f32 };
    match b {
        Some(b) => {
            check_norm_weight(x, b)?;
            x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)
        }
        None => x.contiguous()?.apply_op2(&w.contiguous()?, op),
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU
// ---------------------------------------------------------------------------------------------

/// silu(gate) ∘ up, elementwise.
struct SwiGlu;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(&self, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (f32_values(a, la, self.name())?, f32_values(b, lb, self.name())?);
        if la.shape() != lb.shape() {
            bail!("swiglu: gate {:?} and up {:?} differ in shape", la.shape(), lb.shape());
        }
        let mut y = vec![0.0f32; a.len()];
        y.par_chunks_mut(PIECE).zip(a.par_chunks(PIECE).zip(b.par_chunks(PIECE))).for_each(|(y, (a, b))| {
            for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                *y = a * sigmoid(a) * b;
            }
        });
        Ok((CpuStorage::F32(y), la.shape().clone()))
    }

    /// d/da = up · σ(a)·(1 + a·(1 − σ(a))), d/dup = a·σ(a).
    fn bwd(&self, a: &Tensor, b: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (da, db) = with_values(self.name(), &[a, b, dy], |v| {
            let (a, b, dy) = (v[0], v[1], v[2]);
            let (mut da, mut db) = (vec![0.0f32; a.len()], vec![0.0f32; a.len()]);
            da.par_chunks_mut(PIECE).zip(db.par_chunks_mut(PIECE)).enumerate().for_each(|(p, (da, db))| {
                let at = p * PIECE;
                for i in 0..da.len() {
                    let (x, u, g) = (a[at + i], b[at + i], dy[at + i]);
                    let s = sigmoid(x);
                    da[i] = g * u * s * (1.0 + x * (1.0 - s));
                    db[i] = g * x * s;
                }
            });
            Ok((da, db))
        })?;
        Ok((Some(tensor_like(da, a)?), Some(tensor_like(db, b)?)))
    }
}

/// silu(gate) ∘ up for tensors of one shape.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

// ---------------------------------------------------------------------------------------------
// GELU (tanh approximation)
// ---------------------------------------------------------------------------------------------

/// GELU with the tanh approximation GPT-2 uses (candle's `gelu`):
/// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
struct Gelu;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_values(s, l, self.name())?;
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(PIECE).zip(x.par_chunks(PIECE)).for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)).tanh());
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// d/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t the tanh above.
    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_values(self.name(), &[x, dy], |v| {
            let (x, dy) = (v[0], v[1]);
            let mut dx = vec![0.0f32; x.len()];
            dx.par_chunks_mut(PIECE).zip(x.par_chunks(PIECE).zip(dy.par_chunks(PIECE))).for_each(|(dx, (x, dy))| {
                for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                    let t = (SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)).tanh();
                    let inner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
                    *d = g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner);
                }
            });
            Ok(dx)
        })?;
        Ok(Some(tensor_like(dx, x)?))
    }
}

/// GELU (tanh approximation), elementwise.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

/// The column sums of a row-major matrix with `n` columns: a bias's gradient. Summed in fixed
/// pieces of rows, then the pieces in order, so the result does not depend on the thread count.
fn column_sums(m: &[f32], n: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = m
        .par_chunks(rows_per_piece(n) * n)
        .map(|piece| {
            let mut acc = vec![0.0f32; n];
            for row in piece.chunks_exact(n) {
                acc.iter_mut().zip(row).for_each(|(a, g)| *a += g);
            }
            acc
        })
        .collect();
    sum_partials(partials, n)
}

// ---------------------------------------------------------------------------------------------
// Linear layer
// ---------------------------------------------------------------------------------------------

/// `x · wᵀ (+ b)` for x [rows, in], w [out, in] and a bias b [out]: a two-input op without a
/// bias, a three-input op with one. Composed, candle records the transpose of `w` as a node of
/// its own, its backward adds the weight gradient through a strided view, and the product
/// without its bias is kept beside the sum; here the product is never a tensor of its own and
/// each gradient comes from one gemm (the bias's from column sums), written in place.
struct Linear {
    bf16: bool,
}

const LINEAR: &str = "fused-linear";

impl Linear {
    fn forward(&self, x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout, b: Option<&[f32]>) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_values(x, lx, LINEAR)?, f32_values(w, lw, LINEAR)?);
        let shape = linear_shape(lx.shape(), lw.shape())?;
        let mut y = lmlab_kernels::linear_forward(x, w, shape, self.bf16).map_err(candle_core::Error::msg)?;
        if let Some(b) = b {
            if b.len() != shape.outputs {
                bail!("linear: a bias of {} for {} outputs", b.len(), shape.outputs);
            }
            y.par_chunks_mut(rows_per_piece(b.len()) * b.len()).for_each(|piece| {
                for row in piece.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((shape.rows, shape.outputs))))
    }

    /// (dx, dw, and with a bias db).
    fn backward(&self, x: &Tensor, w: &Tensor, dy: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let shape = linear_shape(x.shape(), w.shape())?;
        let (dx, dw, db) = with_values(LINEAR, &[x, w, dy], |v| {
            let (dx, dw) = lmlab_kernels::linear_backward(v[0], v[1], v[2], shape, self.bf16).map_err(candle_core::Error::msg)?;
            Ok((dx, dw, bias.is_some().then(|| column_sums(v[2], shape.outputs))))
        })?;
        let db = db.zip(bias).map(|(db, b)| tensor_like(db, b)).transpose()?;
        Ok((tensor_like(dx, x)?, tensor_like(dw, w)?, db))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        LINEAR
    }

    fn cpu_fwd(&self, x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout) -> Result<(CpuStorage, Shape)> {
        self.forward(x, lx, w, lw, None)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(x, w, dy, None)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        LINEAR
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(x, lx, w, lw, Some(f32_values(b, lb, LINEAR)?))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.backward(x, w, dy, Some(b))?;
        Ok((Some(dx), Some(dw), db))
    }
}

fn linear_shape(x: &Shape, w: &Shape) -> Result<lmlab_kernels::LinearShape> {
    let ((rows, inputs), (outputs, w_inputs)) = (x.dims2()?, w.dims2()?);
    if inputs != w_inputs {
        bail!("linear: input of {inputs} features for a weight [{outputs}, {w_inputs}]");
    }
    Ok(lmlab_kernels::LinearShape { rows, inputs, outputs })
}

/// `x · wᵀ (+ b)` for x [rows, in], a weight w [out, in] and a bias b [out], in the
/// [`precision`] of this thread.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    linear_in(x, w, b, precision())
}

/// `x · wᵀ (+ b)` in the given precision.
pub fn linear_in(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Precision) -> Result<Tensor> {
    let op = Linear { bf16: p == Precision::Bf16 };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

// ---------------------------------------------------------------------------------------------
// Rotary embedding
// ---------------------------------------------------------------------------------------------

/// Rotary embedding, "rotate half" layout, of x [B, H, T, Dh] by tables cos, sin of [T, Dh/2]
/// (every row alike) or [B, 1, T, Dh/2] (packed rows, positions restarting per document):
/// `y1 = x1·cos − x2·sin`, `y2 = x1·sin + x2·cos` for the halves x1, x2 of each head vector.
/// The backward is the inverse rotation of the gradient; the tables get none.
struct Rope {
    dims: (usize, usize, usize, usize),
}

impl Rope {
    /// Rotates each head vector of `x` by `sign`·angle into a new vector.
    fn rotate(&self, x: &[f32], cos: &[f32], sin: &[f32], sign: f32) -> Vec<f32> {
        let (_, h, len, hd) = self.dims;
        let half = hd / 2;
        // Tables of one row serve every row; otherwise each row has its own.
        let shared = cos.len() == len * half;
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(len * hd).zip(x.par_chunks(len * hd)).enumerate().for_each(|(bh, (y, x))| {
            let row_table = if shared { 0 } else { (bh / h) * len * half };
            for t in 0..len {
                let at = row_table + t * half;
                let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
                let (x, y) = (&x[t * hd..(t + 1) * hd], &mut y[t * hd..(t + 1) * hd]);
                for i in 0..half {
                    let (x1, x2, s) = (x[i], x[half + i], sign * s[i]);
                    y[i] = x1 * c[i] - x2 * s;
                    y[half + i] = x1 * s + x2 * c[i];
                }
            }
        });
        y
    }
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        c: &CpuStorage,
        lc: &Layout,
        s: &CpuStorage,
        ls: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, c, s) = (f32_values(x, lx, self.name())?, f32_values(c, lc, self.name())?, f32_values(s, ls, self.name())?);
        Ok((CpuStorage::F32(self.rotate(x, c, s, 1.0)), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = with_values(self.name(), &[dy, cos, sin], |v| Ok(self.rotate(v[0], v[1], v[2], -1.0)))?;
        Ok((Some(tensor_like(dx, x)?), None, None))
    }
}

/// Rotary embedding of `x` [B, H, T, Dh] by `cos`, `sin` of [T, Dh/2] or [B, 1, T, Dh/2].
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dims = x.dims4()?;
    let (b, _, t, hd) = dims;
    let n = cos.elem_count();
    if hd % 2 != 0 || cos.dims() != sin.dims() || (n != t * hd / 2 && n != b * t * hd / 2) {
        bail!("rope: tables {:?} and {:?} do not fit x {:?}", cos.dims(), sin.dims(), x.dims());
    }
    x.contiguous()?.apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope { dims })
}
