//! Causal attention for a prompt's new positions over the KV cache (prefill), in blocks of
//! query rows through gemm.
//!
//! Why not candle ops: the tensor path scores every query against every cached key, masks the
//! future half away, widens the whole f16 cache to f32 and copies heads in and out of their
//! layout; why not the decode step's loop per query row: it widens each f16 key and value once
//! per query head and row, which made it 2.5× slower than the tensor path. Here each block of
//! 32 query rows (all query heads of one key/value group together, as grouped-query attention
//! shares the keys) meets only the keys up to its last row, in two small gemms.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use crate::decode_attention::exp_shifted;

/// Query rows per block: large enough for gemm to run at speed, small enough that the masked
/// corner of the diagonal block (about half a block of keys per row) stays cheap.
const ROWS: usize = 32;

/// `q` [t, H·Dh] f32, the queries of the last `t` positions of the cache `k`, `v`
/// [1, Hkv, S, Dh] (f32 or f16; H a multiple of Hkv, query head `h` reading key/value head
/// `h / (H / Hkv)`). Row `i` attends to cached positions `0..=S−t+i`. Returns [t, H·Dh].
pub fn causal_attention(q: &[f32], t: usize, h: usize, k: &Tensor, v: &Tensor, scale: f32) -> Result<Vec<f32>> {
    let (b, hkv, s, hd) = k.dims4()?;
    if b != 1 || t == 0 || q.len() != t * h * hd || s < t || hkv == 0 || !h.is_multiple_of(hkv) || v.dims4()? != (b, hkv, s, hd) {
        candle_core::bail!("causal_attention: {} query values for {t} rows and {h} heads do not fit a {:?} cache", q.len(), k.dims());
    }
    // Each group's keys and values as contiguous f32 [S, Dh], widened once for all rows.
    let widen = |x: &Tensor| -> Result<Vec<f32>> { x.to_dtype(DType::F32)?.flatten_all()?.to_vec1() };
    let (kf, vf) = (widen(k)?, widen(v)?);
    let rep = h / hkv;
    let blocks = t.div_ceil(ROWS);
    let parts: Vec<(usize, usize, Vec<f32>)> = (0..hkv * blocks)
        .into_par_iter()
        .map(|item| {
            let (g, blk) = (item / blocks, item % blocks);
            let (i0, i1) = (blk * ROWS, ((blk + 1) * ROWS).min(t));
            // Rows of the block's matrices: (query row, head of the group), row-major.
            let rows = (i1 - i0) * rep;
            let len = s - t + i1;
            let mut qs = Vec::with_capacity(rows * hd);
            for i in i0..i1 {
                qs.extend_from_slice(&q[i * h * hd + g * rep * hd..i * h * hd + (g + 1) * rep * hd]);
            }
            let (kg, vg) = (&kf[g * s * hd..(g + 1) * s * hd], &vf[g * s * hd..(g + 1) * s * hd]);
            let mut scores = vec![0.0f32; rows * len];
            // SAFETY: every matrix lies inside its buffer with the strides given: scores
            // [rows, len], qs [rows, hd], keys read as their transpose [hd, len].
            unsafe {
                gemm::gemm(rows, len, hd, scores.as_mut_ptr(), 1, len as isize, false, qs.as_ptr(), 1, hd as isize, kg.as_ptr(), hd as isize, 1, 0.0, scale, false, false, false, gemm::Parallelism::None);
            }
            for (row, w) in scores.chunks_mut(len).enumerate() {
                // Softmax over this row's own prefix; later keys get weight 0.
                let visible = s - t + i0 + row / rep + 1;
                let (seen, future) = w.split_at_mut(visible);
                let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum = exp_shifted(seen, max);
                seen.iter_mut().for_each(|x| *x /= sum);
                future.fill(0.0);
            }
            let mut out = vec![0.0f32; rows * hd];
            // SAFETY: out [rows, hd], scores [rows, len], values [len, hd], all in bounds.
            unsafe {
                gemm::gemm(rows, hd, len, out.as_mut_ptr(), 1, hd as isize, false, scores.as_ptr(), 1, len as isize, vg.as_ptr(), 1, hd as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
            }
            (g, i0, out)
        })
        .collect();
    let mut out = vec![0.0f32; t * h * hd];
    for (g, i0, o) in parts {
        for (r, chunk) in o.chunks(rep * hd).enumerate() {
            let at = (i0 + r) * h * hd + g * rep * hd;
            out[at..at + rep * hd].copy_from_slice(chunk);
        }
    }
    Ok(out)
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
                    let scores: Vec<f64> = (0..visible).map(|j| (0..hd).map(|c| qrow[c] as f64 * kd[(g * s + j) * hd + c] as f64).sum::<f64>() * scale as f64).collect();
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
