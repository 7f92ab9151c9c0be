//! The KV cache: keys and values of every position already read, per layer.
//!
//! Prefill fills it in one parallel pass over the prompt; each decode step then computes keys
//! and values for the one new token only and attends over the cached ones, which is why
//! generation is sequential but cheap per token. Tensors are [B, H_kv, S, Dh].
//!
//! Each layer keeps its keys and values in buffers with room to spare and writes new positions
//! in place; the buffers double when full. Appending therefore costs the new positions only,
//! not a copy of the whole history per token (which `cat` would).

use candle_core::{DType, Result, Tensor};

/// Positions a fresh buffer has room for.
const INITIAL_CAPACITY: usize = 256;

#[derive(Default)]
pub struct LayerCache {
    /// Buffers [B, H_kv, capacity, Dh]; positions `0..len` are filled.
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
    /// The buffers' element type when it differs from the model's (an f16 cache for inference).
    dtype: Option<DType>,
}

/// A buffer like `t` with room for `capacity` positions, holding `t`'s first `len` positions.
fn with_capacity(t: &Tensor, len: usize, capacity: usize) -> Result<Tensor> {
    let (b, h, _, d) = t.dims4()?;
    let buf = Tensor::zeros((b, h, capacity, d), t.dtype(), t.device())?;
    if len > 0 {
        buf.slice_set(&t.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
    }
    Ok(buf)
}

impl Clone for LayerCache {
    /// An independent copy. Appends write into the buffers in place, so a clone that shared
    /// them (as a derived `Clone` of tensors would) would see the other's new positions.
    fn clone(&self) -> Self {
        let copy = |t: &Option<Tensor>| t.as_ref().map(|t| t.copy().expect("copying a KV cache buffer in memory"));
        Self { k: copy(&self.k), v: copy(&self.v), len: self.len, dtype: self.dtype }
    }
}

impl LayerCache {
    /// Appends new keys/values along the time axis and returns the full cached ones (views of
    /// the buffers).
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.dtype {
            Some(dt) if k.dtype() != dt => (&k.to_dtype(dt)?, &v.to_dtype(dt)?),
            _ => (k, v),
        };
        let new = k.dim(2)?;
        let needed = self.len + new;
        let capacity = self.k.as_ref().map_or(0, |b| b.dim(2).unwrap_or(0));
        if needed > capacity {
            let grown = needed.max(2 * capacity).max(INITIAL_CAPACITY);
            let (old_k, old_v) = (self.k.take().unwrap_or_else(|| k.clone()), self.v.take().unwrap_or_else(|| v.clone()));
            self.k = Some(with_capacity(&old_k, self.len, grown)?);
            self.v = Some(with_capacity(&old_v, self.len, grown)?);
        }
        let (kb, vb) = (self.k.as_ref().expect("allocated"), self.v.as_ref().expect("allocated"));
        kb.slice_set(&k.contiguous()?, 2, self.len)?;
        vb.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok((kb.narrow(2, 0, needed)?, vb.narrow(2, 0, needed)?))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The cached keys and values [B, H_kv, len, Dh] (views of the buffers), None when empty.
    pub fn keys_values(&self) -> Option<(Tensor, Tensor)> {
        let (k, v) = (self.k.as_ref()?, self.v.as_ref()?);
        Some((k.narrow(2, 0, self.len).ok()?, v.narrow(2, 0, self.len).ok()?))
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

    /// A cache that stores keys and values as `dtype` (f16 halves what a decode step reads at
    /// long contexts, as llama.cpp's default cache does; attention widens them again).
    pub fn with_dtype(n_layer: usize, dtype: DType) -> Self {
        Self { layers: vec![LayerCache { dtype: Some(dtype), ..Default::default() }; n_layer] }
    }

    /// Positions cached so far (the offset of the next token).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Bytes of the cached keys and values (filled positions; the buffers' spare room is not
    /// counted).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| [&l.k, &l.v].into_iter().flatten().map(move |t| (t, l.len)))
            .map(|(t, len)| t.elem_count() / t.dim(2).unwrap_or(1).max(1) * len * t.dtype().size_in_bytes())
            .sum()
    }

    /// Repeats a batch-1 cache `n` times along the batch axis, so `n` continuations of one
    /// prompt share a single prefill.
    pub fn repeat_batch(&mut self, n: usize) -> candle_core::Result<()> {
        for l in &mut self.layers {
            for t in [&mut l.k, &mut l.v].into_iter().flatten() {
                let copies: Vec<Tensor> = (0..n).map(|_| t.clone()).collect();
                // A fresh buffer: the copies must not share storage with each other.
                *t = Tensor::cat(&copies, 0)?.copy()?;
            }
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = LayerCache { dtype: l.dtype, ..Default::default() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_clone_does_not_see_the_originals_later_appends() {
        let dev = Device::Cpu;
        let row = |x: f32| Tensor::full(x, (1, 1, 1, 2), &dev).unwrap();
        let mut original = LayerCache::default();
        original.append(&row(1.0), &row(1.0)).unwrap();
        let mut copy = original.clone();
        original.append(&row(2.0), &row(2.0)).unwrap();
        copy.append(&row(3.0), &row(3.0)).unwrap();
        let values = |c: &LayerCache| c.keys_values().unwrap().0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(values(&original), [1.0, 1.0, 2.0, 2.0]);
        assert_eq!(values(&copy), [1.0, 1.0, 3.0, 3.0]);
    }
}
