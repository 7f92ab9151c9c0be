//! The KV cache: keys and values of every position already read, per layer.
//!
//! Prefill fills it in one parallel pass over the prompt; each decode step then computes keys
//! and values for the one new token only and attends over the cached ones, which is why
//! generation is sequential but cheap per token. Tensors are [B, H_kv, S, Dh].

use candle_core::{Result, Tensor};

#[derive(Clone, Default)]
pub struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
}

impl LayerCache {
    /// Appends new keys/values along the time axis and returns the full cached ones.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match (&self.k, &self.v) {
            (Some(pk), Some(pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
            _ => (k.clone(), v.clone()),
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        Ok((k, v))
    }

    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dim(2).unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One [`LayerCache`] per layer, and the number of positions they hold.
#[derive(Clone)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(n_layer: usize) -> Self {
        Self { layers: vec![LayerCache::default(); n_layer] }
    }

    /// Positions cached so far (the offset of the next token).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Bytes held by the cached keys and values.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| [&l.k, &l.v])
            .flatten()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Repeats a batch-1 cache `n` times along the batch axis, so `n` continuations of one
    /// prompt share a single prefill.
    pub fn repeat_batch(&mut self, n: usize) -> candle_core::Result<()> {
        for l in &mut self.layers {
            for t in [&mut l.k, &mut l.v].into_iter().flatten() {
                let copies: Vec<Tensor> = (0..n).map(|_| t.clone()).collect();
                *t = Tensor::cat(&copies, 0)?;
            }
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = LayerCache::default();
        }
    }
}
