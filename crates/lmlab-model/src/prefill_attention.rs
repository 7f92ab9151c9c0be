//! Causal attention for a prompt's new positions over the KV cache (prefill): the
//! tensor-facing side of `lmlab_kernels::causal_attention` (blocks of query rows through gemm).
//!
//! Why not candle ops: the tensor path scores every query against every cached key, masks the
//! future half away, widens the whole f16 cache to f32 and copies heads in and out of their
//! layout. Here each block of 32 query rows meets only the keys up to its last row.

use candle_core::{DType, Result, Tensor};

/// `q` [t, H·Dh] f32, the queries of the last `t` positions of the cache `k`, `v`
/// [1, Hkv, S, Dh] (f32 or f16; H a multiple of Hkv, query head `h` reading key/value head
/// `h / (H / Hkv)`). Row `i` attends to cached positions `0..=S−t+i`. Returns [t, H·Dh].
pub fn causal_attention(q: &[f32], t: usize, h: usize, k: &Tensor, v: &Tensor, scale: f32) -> Result<Vec<f32>> {
    let (b, hkv, s, hd) = k.dims4()?;
    if b != 1 || v.dims4()? != (b, hkv, s, hd) {
        candle_core::bail!("causal_attention takes one sequence's keys and values, not {:?} and {:?}", k.dims(), v.dims());
    }
    // Each group's keys and values as contiguous f32 [S, Dh], widened once for all rows.
    let widen = |x: &Tensor| -> Result<Vec<f32>> { x.to_dtype(DType::F32)?.flatten_all()?.to_vec1() };
    lmlab_kernels::causal_attention(q, t, h, &widen(k)?, &widen(v)?, (hkv, s, hd), scale).map_err(candle_core::Error::Msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_masked_softmax_attention_over_the_whole_cache() {
        let dev = Device::Cpu;
        // 70 new rows (two full blocks and a partial one) after 9 cached positions; 6 query
        // heads over 2 key/value groups; f32 and f16 caches.
        let (t, past, h, hkv, hd) = (70, 9, 6, 2, 16);
        let s = past + t;
        let q = Tensor::randn(0f32, 1.0, (t, h * hd), &dev).unwrap();
        let kbuf = Tensor::randn(0f32, 1.0, (1, hkv, s, hd), &dev).unwrap();
        let vbuf = Tensor::randn(0f32, 1.0, (1, hkv, s, hd), &dev).unwrap();
        let scale = 0.25f32;
        for dtype in [DType::F32, DType::F16] {
            let (k, v) = (kbuf.to_dtype(dtype).unwrap(), vbuf.to_dtype(dtype).unwrap());
            let got = causal_attention(&q.flatten_all().unwrap().to_vec1().unwrap(), t, h, &k, &v, scale).unwrap();
            // Reference in f64, one query head and row at a time over its visible keys.
            let kd: Vec<f32> = k.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let vd: Vec<f32> = v.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let qd: Vec<f32> = q.flatten_all().unwrap().to_vec1().unwrap();
            for i in 0..t {
                for head in 0..h {
                    let g = head / (h / hkv);
                    let qrow = &qd[i * h * hd + head * hd..][..hd];
                    let visible = past + i + 1;
                    let scores: Vec<f64> = (0..visible)
                        .map(|j| (0..hd).map(|c| qrow[c] as f64 * kd[(g * s + j) * hd + c] as f64).sum::<f64>() * scale as f64)
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..hd {
                        let want: f64 = (0..visible).map(|j| e[j] / z * vd[(g * s + j) * hd + c] as f64).sum();
                        let have = got[i * h * hd + head * hd + c] as f64;
                        assert!((have - want).abs() < 1e-5, "{dtype:?} row {i} head {head} dim {c}: {have} vs {want}");
                    }
                }
            }
        }
    }
}
