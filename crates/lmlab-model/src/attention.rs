//! Causal self-attention with grouped-query heads, rotary or learned positions, a KV cache, and
//! optional capture of the attention weights.
//!
//! Q·Kᵀ/√d gives each query a score for every earlier key; softmax turns the scores into the
//! attention weights the article describes; the output is the weighted sum of values. With
//! grouped-query attention, `n_head / n_kv_head` query heads share one key/value head: the
//! queries of a group are stacked along the time axis so one matmul serves the whole group and
//! keys/values are never copied per head.

use candle_core::{DType, Device, Result, Tensor};

use crate::config::{GptConfig, Position};
use crate::kv_cache::LayerCache;
use crate::linear::{Linear, WeightSource};
use crate::ops;

/// How a forward pass runs: with gradients (composed ops, dropout) or as fast inference.
pub struct Mode<'a> {
    /// Use differentiable ops (training). False selects candle's fused inference kernels.
    pub grad: bool,
    /// Dropout RNG for training steps; `None` disables dropout.
    pub dropout: Option<&'a mut rand_chacha::ChaCha8Rng>,
    /// When set, each layer pushes its attention weights [B, H, T, S] here.
    pub capture: Option<&'a mut Vec<Tensor>>,
    /// Several documents packed into each row (fine-tuning): positions restart and attention
    /// stays inside each document. Only for a full pass without a cache.
    pub packing: Option<&'a Packing>,
}

impl Mode<'_> {
    pub fn inference() -> Mode<'static> {
        Mode { grad: false, dropout: None, capture: None, packing: None }
    }

    pub fn training_without_dropout() -> Mode<'static> {
        Mode { grad: true, dropout: None, capture: None, packing: None }
    }

    /// Whether dropout with probability `p` changes anything in this pass.
    pub(crate) fn drops(&self, p: f64) -> bool {
        self.dropout.is_some() && p > 0.0
    }

    pub(crate) fn dropout(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        match self.dropout.as_deref_mut() {
            Some(rng) if p > 0.0 => ops::dropout(x, p, rng),
            _ => Ok(x.clone()),
        }
    }
}

/// Documents packed side by side in each row of a batch: each token's position inside its own
/// document, and an additive mask [B, 1, T, T] that lets a token see only the earlier tokens of
/// its own document. Packed this way, every document gets exactly the attention (and so the
/// logits) it would get alone in a row of its own; a test checks the losses agree.
pub struct Packing {
    pub(crate) positions: Tensor,
    pub(crate) mask: Tensor,
    /// The document of each token [B·T], for the fused attention kernel.
    pub(crate) segments: std::sync::Arc<Vec<u32>>,
}

impl Packing {
    /// `rows[b]` lists the lengths of the documents in row `b`, in order; the rest of the row
    /// (up to `t`) is padding, which sees only itself.
    pub fn new(rows: &[Vec<usize>], t: usize, dtype: DType, dev: &Device) -> Result<Self> {
        let mut positions = Vec::with_capacity(rows.len() * t);
        let mut mask = Vec::with_capacity(rows.len() * t * t);
        let mut segments = Vec::with_capacity(rows.len() * t);
        for docs in rows {
            if docs.iter().sum::<usize>() > t {
                candle_core::bail!("documents of {} tokens packed into a row of {t}", docs.iter().sum::<usize>());
            }
            // The document each token belongs to; padding tokens are documents of one token.
            let mut doc_of = Vec::with_capacity(t);
            for (d, &len) in docs.iter().enumerate() {
                doc_of.extend(std::iter::repeat_n(d, len));
                positions.extend(0..len as u32);
            }
            let pads = t - doc_of.len();
            doc_of.extend((0..pads).map(|p| docs.len() + p));
            positions.extend(std::iter::repeat_n(0u32, pads));
            for i in 0..t {
                mask.extend((0..t).map(|j| if j <= i && doc_of[j] == doc_of[i] { 0.0f32 } else { f32::NEG_INFINITY }));
            }
            segments.extend(doc_of.iter().map(|&d| d as u32));
        }
        let b = rows.len();
        Ok(Self {
            positions: Tensor::from_vec(positions, (b, t), dev)?,
            mask: Tensor::from_vec(mask, (b, 1, t, t), dev)?.to_dtype(dtype)?,
            segments: std::sync::Arc::new(segments),
        })
    }
}

/// Rotary tables shared by all layers.
#[derive(Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    pub fn new(cfg: &GptConfig, dtype: DType, dev: &Device) -> Result<Self> {
        let (cos, sin) = ops::rope_tables(cfg.context_length, cfg.head_dim(), cfg.rope_theta, dtype, dev)?;
        Ok(Self { cos, sin })
    }

    fn apply(&self, x: &Tensor, offset: usize, packing: Option<&Packing>) -> Result<Tensor> {
        let t = x.dim(2)?;
        match packing {
            None => ops::rope(x, &self.cos.narrow(0, offset, t)?, &self.sin.narrow(0, offset, t)?),
            // Each token turns by its position inside its document: tables [B, 1, T, Dh/2].
            Some(p) => {
                let (b, t) = p.positions.dims2()?;
                let at = |table: &Tensor| table.index_select(&p.positions.flatten_all()?, 0)?.reshape((b, 1, t, table.dim(1)?));
                ops::rope(x, &at(&self.cos)?, &at(&self.sin)?)
            }
        }
    }
}

pub struct CausalSelfAttention {
    /// Queries, keys and values in one projection.
    pub(crate) c_attn: Linear,
    pub(crate) c_proj: Linear,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    dropout: f64,
    rotary: Option<Rotary>,
}

impl CausalSelfAttention {
    pub fn new(cfg: &GptConfig, rotary: Option<Rotary>, vb: WeightSource) -> Result<Self> {
        let d = cfg.d_model;
        let hd = cfg.head_dim();
        let qkv = d + 2 * cfg.n_kv_head * hd;
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        Ok(Self {
            c_attn: vb.pp("c_attn").linear(qkv, d, 0.02, cfg.bias)?,
            c_proj: vb.pp("c_proj").linear(d, d, proj_std, cfg.bias)?,
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            head_dim: hd,
            dropout: cfg.dropout,
            rotary,
        })
    }

    /// `x` is [B, T, D] for positions `offset..offset+T`. With a cache, keys/values of earlier
    /// positions come from it and the new ones are appended.
    pub fn forward(&self, x: &Tensor, offset: usize, cache: Option<&mut LayerCache>, mode: &mut Mode) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, hkv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let qkv = self.c_attn.forward(x)?;
        let heads = |start: usize, n: usize| -> Result<Tensor> {
            qkv.narrow(2, start * hd, n * hd)?.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let mut q = heads(0, h)?;
        let mut k = heads(h, hkv)?;
        let v = heads(h + hkv, hkv)?;
        if let Some(rot) = &self.rotary {
            q = rot.apply(&q, offset, mode.packing)?;
            k = rot.apply(&k, offset, mode.packing)?;
        }
        let (k, v) = match cache {
            Some(c) => c.append(&k, &v)?,
            None => (k, v),
        };
        let s = k.dim(2)?;
        let scale = 1.0 / (hd as f64).sqrt();

        // A decode step in inference: one query, plain loops (see decode_attention).
        let plain = t == 1 && !mode.grad && mode.capture.is_none() && q.dtype() == DType::F32 && q.device().is_cpu();
        if plain {
            let y = crate::decode_attention::single_query_attention(&q, &k, &v, scale as f32)?;
            return self.c_proj.forward(&y.transpose(1, 2)?.reshape((b, t, h * hd))?);
        }
        // Training without weight capture or attention dropout: one fused op with its own
        // backward, which keeps no T×T probabilities.
        if mode.grad && offset == 0 && s == t && mode.capture.is_none() && !mode.drops(self.dropout) && crate::fused::fusable(&q) {
            let y = crate::fused::causal_attention(&q, &k, &v, mode.packing.map(|p| p.segments.clone()), scale)?;
            let y = y.transpose(1, 2)?.reshape((b, t, h * hd))?;
            return self.c_proj.forward(&y);
        }
        // A cache kept in another precision (f16) is widened for the tensor ops.
        let (k, v) = if k.dtype() != q.dtype() { (k.to_dtype(q.dtype())?, v.to_dtype(q.dtype())?) } else { (k, v) };

        // Stack each group's query heads along time: [B, Hkv, (H/Hkv)·T, Dh].
        let rep = h / hkv;
        let qg = q.reshape((b, hkv, rep * t, hd))?;
        let scores = (qg.matmul(&k.t()?)? * scale)?.reshape((b, h, t, s))?;
        let scores = match (mode.packing, causal_mask(t, s, offset, scores.dtype(), scores.device())?) {
            (Some(p), _) if offset == 0 && s == t => scores.broadcast_add(&p.mask)?,
            (Some(_), _) => candle_core::bail!("a packed batch runs as one full pass, without a cache"),
            (None, Some(mask)) => scores.broadcast_add(&mask)?,
            (None, None) => scores,
        };
        let weights = if mode.grad { ops::softmax(&scores)? } else { ops::softmax_infer(&scores)? };
        if let Some(cap) = mode.capture.as_deref_mut() {
            cap.push(weights.detach());
        }
        let weights = mode.dropout(&weights, self.dropout)?;
        let y = weights.reshape((b, hkv, rep * t, s))?.matmul(&v)?.reshape((b, h, t, hd))?;
        let y = y.transpose(1, 2)?.reshape((b, t, h * hd))?;
        let y = self.c_proj.forward(&y)?;
        mode.dropout(&y, self.dropout)
    }
}

/// Additive mask [T, S]: query i (absolute position offset+i) sees keys 0..=offset+i.
/// `None` when every key is visible (a single new token).
fn causal_mask(t: usize, s: usize, offset: usize, dtype: DType, dev: &Device) -> Result<Option<Tensor>> {
    if t == 1 && s == offset + 1 {
        return Ok(None);
    }
    let mask: Vec<f32> = (0..t).flat_map(|i| (0..s).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Ok(Some(Tensor::from_vec(mask, (t, s), dev)?.to_dtype(dtype)?))
}

/// The positions a learned position table needs for a chunk, checked against the context.
pub fn positions(offset: usize, t: usize, context: usize, dev: &Device) -> Result<Tensor> {
    if offset + t > context {
        candle_core::bail!("sequence of {} tokens exceeds the context length {context}", offset + t);
    }
    Tensor::arange(offset as u32, (offset + t) as u32, dev)
}

/// Whether the model uses a position table (learned) rather than rotary.
pub fn uses_position_table(cfg: &GptConfig) -> bool {
    cfg.position == Position::Learned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_blocks_the_future_with_offset() {
        let m = causal_mask(2, 4, 2, DType::F32, &Device::Cpu).unwrap().unwrap();
        let v: Vec<Vec<f32>> = m.to_vec2().unwrap();
        assert_eq!(v[0], vec![0.0, 0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(v[1], vec![0.0, 0.0, 0.0, 0.0]);
        assert!(causal_mask(1, 5, 4, DType::F32, &Device::Cpu).unwrap().is_none());
    }
}
