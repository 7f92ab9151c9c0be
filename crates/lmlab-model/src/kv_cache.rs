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
    pub(crate) layers: Vec<LayerCache>,
    /// Key (= value) values per position per sequence (`n_kv_head · head_dim`), when known.
    kv_width: Option<usize>,
}

impl KvCache {
    /// A cache for `n_layer` layers, in the model's own precision.
    pub fn new(n_layer: usize) -> Self {
        Self { layers: vec![LayerCache::default(); n_layer], kv_width: None }
    }

    /// A cache that stores keys and values as `dtype` (f16 halves what a decode step reads at
    /// long contexts, as llama.cpp's default cache does; attention widens them again).
    pub fn with_dtype(n_layer: usize, dtype: DType) -> Self {
        Self { layers: vec![LayerCache { dtype: Some(dtype), ..Default::default() }; n_layer], kv_width: None }
    }

    /// A cache for a model of `n_layer` layers with `n_kv_head` key/value heads of `head_dim`,
    /// storing `dtype`: it can report [`KvCache::bytes_per_token`] before it holds anything.
    pub fn for_model(n_layer: usize, n_kv_head: usize, head_dim: usize, dtype: DType) -> Self {
        Self { kv_width: Some(n_kv_head * head_dim), ..Self::with_dtype(n_layer, dtype) }
    }

    /// Positions cached so far (the offset of the next token).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Layer `i`'s keys and values.
    pub fn layer(&self, i: usize) -> Option<&LayerCache> {
        self.layers.get(i)
    }

    /// Number of layers.
    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// Sequences held side by side (1 for an empty cache).
    pub fn batch_size(&self) -> usize {
        self.layers.first().and_then(|l| l.k.as_ref()).map_or(1, |k| k.dim(0).unwrap_or(1))
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

    /// Bytes one more position of one sequence takes (keys and values of every layer): known
    /// from the model's shape for a cache made by [`KvCache::for_model`], else from what it
    /// holds; None for an empty cache of unknown shape.
    pub fn bytes_per_token(&self) -> Option<usize> {
        if let (Some(w), Some(dt)) = (self.kv_width, self.layers.first().and_then(|l| l.dtype)) {
            return Some(self.layers.len() * 2 * w * dt.size_in_bytes());
        }
        let len = self.seq_len();
        (len > 0).then(|| self.bytes() / (len * self.batch_size()))
    }

    /// Bytes reserved by the buffers, spare room included (what the cache costs in memory).
    pub fn reserved_bytes(&self) -> usize {
        self.layers.iter().flat_map(|l| [&l.k, &l.v].into_iter().flatten()).map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    /// Forgets every position from `len` on (a rejected draft, a chat turn taken back); the
    /// buffers keep their room. Longer than the cache is an error.
    pub fn truncate(&mut self, len: usize) -> candle_core::Result<()> {
        if len > self.seq_len() {
            candle_core::bail!("cannot truncate a cache of {} positions to {len}", self.seq_len());
        }
        for l in &mut self.layers {
            l.len = len;
        }
        Ok(())
    }

    /// A copy of the first `len` positions in fresh buffers with room for `room` positions (and
    /// never less than a fresh buffer's): the cache a prefill of `room` tokens would have made,
    /// with only the first `len` written. Longer than the cache is an error.
    pub fn copy_prefix(&self, len: usize, room: usize) -> Result<KvCache> {
        if len > self.seq_len() {
            candle_core::bail!("cannot copy {len} positions of a cache of {}", self.seq_len());
        }
        let capacity = room.max(len).max(INITIAL_CAPACITY);
        let copy = |t: &Option<Tensor>| t.as_ref().map(|t| with_capacity(t, len, capacity)).transpose();
        let layers = self
            .layers
            .iter()
            .map(|l| Ok(LayerCache { k: copy(&l.k)?, v: copy(&l.v)?, len, dtype: l.dtype }))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers, kv_width: self.kv_width })
    }

    /// Empties the cache and frees its buffers.
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

    #[test]
    fn grows_past_its_first_buffer_truncates_and_reports_its_size() {
        let dev = Device::Cpu;
        // Two layers, 2 key/value heads of 3 dims, f16: 2 layers · 2 (k, v) · 6 values · 2 bytes.
        let mut cache = KvCache::for_model(2, 2, 3, DType::F16);
        assert_eq!((cache.bytes_per_token(), cache.seq_len(), cache.batch_size()), (Some(48), 0, 1));
        // 300 positions, one at a time: past the first 256-position buffer, so it doubles once.
        for pos in 0..300 {
            let row = Tensor::full(pos as f32, (1, 2, 1, 3), &dev).unwrap();
            for l in &mut cache.layers {
                l.append(&row, &(&row + 0.5).unwrap()).unwrap();
            }
        }
        assert_eq!((cache.seq_len(), cache.bytes()), (300, 300 * 48));
        assert_eq!(cache.reserved_bytes(), 512 * 48, "the buffer doubled from 256 to 512 positions");
        // Every position kept its own values across the growth (f16 holds integers to 2048).
        let (k, v) = cache.layers[1].keys_values().unwrap();
        let k: Vec<f32> = k.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let v: Vec<f32> = v.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for head in 0..2 {
            for pos in [0usize, 255, 256, 299] {
                assert_eq!(k[(head * 300 + pos) * 3], pos as f32);
                assert_eq!(v[(head * 300 + pos) * 3 + 2], pos as f32 + 0.5);
            }
        }
        cache.truncate(10).unwrap();
        assert_eq!((cache.seq_len(), cache.bytes()), (10, 10 * 48));
        assert!(cache.truncate(11).is_err());
        // The next append lands at position 10.
        let row = Tensor::full(-1.0f32, (1, 2, 1, 3), &dev).unwrap();
        let (k, _) = cache.layers[0].append(&row, &row).unwrap();
        assert_eq!(k.dims(), &[1, 2, 11, 3]);
        assert_eq!(
            k.narrow(2, 10, 1).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![-1.0; 6]
        );
        cache.clear();
        assert_eq!((cache.seq_len(), cache.reserved_bytes()), (0, 0));
    }
}
