//! A matmul kernel for Q4_1 weights (ggml's 4-bit type with a per-block scale and minimum), as
//! a candle custom op.
//!
//! Why hand-written: candle 0.11 multiplies Q4_1 with a scalar loop (no SIMD), which left
//! SmolLM2-135M decoding at 20 tokens/s, and it rounds the activations' block sums (`s`) in
//! half precision twice, so near-tied logits came out differently from llama.cpp. This kernel
//! quantizes activations to Q8_1 exactly as ggml's x86 code does (scale 127/amax, round half to
//! even, `s = fp16(d · Σq)`), then takes block dot products with AVX2 (a scalar path with the
//! same arithmetic serves other CPUs), spread over rayon's threads by weight rows.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use half::f16;
use rayon::prelude::*;

pub const BLOCK: usize = 32;
/// Bytes of one Q4_1 block: f16 scale, f16 minimum, 16 bytes of packed 4-bit values.
pub const BLOCK_BYTES: usize = 20;

/// One block of activations in Q8_1: scale `d` and `s = d · Σ qs`, both rounded to f16 as
/// ggml stores them but kept as f32 so the dot product does not convert them again.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ8_1 {
    d: f32,
    s: f32,
    qs: [i8; BLOCK],
}

const ZERO_Q8_1: BlockQ8_1 = BlockQ8_1 { d: 0.0, s: 0.0, qs: [0; BLOCK] };

/// One block of weights, unpacked at load time from ggml's 20 bytes: f16 scale and minimum
/// as f32, then the 16 bytes of 4-bit values.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ4_1 {
    d: f32,
    m: f32,
    qs: [u8; BLOCK / 2],
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn unpack(ggml: &[u8]) -> Vec<BlockQ4_1> {
    ggml.chunks_exact(BLOCK_BYTES)
        .map(|b| BlockQ4_1 { d: half(b, 0), m: half(b, 2), qs: b[4..BLOCK_BYTES].try_into().expect("16 bytes") })
        .collect()
}

/// Quantizes one row (`x.len()` a multiple of 32) the way ggml's `quantize_row_q8_1` does.
fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(BLOCK)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d).to_f32();
        b.s = f16::from_f32(d * sum as f32).to_f32();
    }
}

/// Σ over blocks of (d_w·d_x)·Σ(q_w·q_x) + m_w·s_x: one weight row against one activation row.
fn dot_scalar(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    let mut acc = 0.0f32;
    let mut summs = 0.0f32;
    for (wb, xb) in w.iter().zip(x) {
        let mut sumi = 0i32;
        for j in 0..BLOCK / 2 {
            let byte = wb.qs[j];
            sumi += (byte & 0x0F) as i32 * xb.qs[j] as i32 + (byte >> 4) as i32 * xb.qs[j + BLOCK / 2] as i32;
        }
        acc += wb.d * xb.d * sumi as f32;
        summs += wb.m * xb.s;
    }
    acc + summs
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for (wb, xb) in w.iter().zip(x) {
        summs += wb.m * xb.s;
        let packed = _mm_loadu_si128(wb.qs.as_ptr() as *const __m128i);
        // Low nibbles are elements 0..16, high nibbles 16..32.
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        let wq = _mm256_and_si256(both, low);
        let xq = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let pairs = _mm256_maddubs_epi16(wq, xq);
        let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(wb.d * xb.d), sums, acc);
    }
    let hi = _mm256_extractf128_ps(acc, 1);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    _mm_cvtss_f32(s1) + summs
}

fn dot(w: &[BlockQ4_1], x: &[BlockQ8_1], avx2: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller checked that the CPU has AVX2 and FMA.
        return unsafe { dot_avx2(w, x) };
    }
    let _ = avx2;
    dot_scalar(w, x)
}

/// `y = x Wᵀ` for Q4_1 weights W [n, k] stored as ggml blocks.
#[derive(Clone)]
pub struct Q4_1Matmul {
    weights: Arc<Vec<BlockQ4_1>>,
    n: usize,
    k: usize,
}

impl Q4_1Matmul {
    pub fn new(weights: Vec<u8>, n: usize, k: usize) -> Result<Self> {
        if !k.is_multiple_of(BLOCK) || weights.len() != n * k / BLOCK * BLOCK_BYTES {
            candle_core::bail!("Q4_1 weights of {} bytes do not hold a [{n}, {k}] matrix", weights.len());
        }
        Ok(Self { weights: Arc::new(unpack(&weights)), n, k })
    }

    /// The product for `m` rows of `x` (row-major [m, k]) into `dst` [m, n].
    pub fn matmul(&self, x: &[f32], m: usize, dst: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let blocks = k / BLOCK;
        let mut xq = vec![ZERO_Q8_1; m * blocks];
        xq.par_chunks_mut(blocks).zip(x.par_chunks(k)).for_each(|(q, row)| quantize_row_q8_1(row, q));
        #[cfg(target_arch = "x86_64")]
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        // Work items are runs of weight rows: each run is read once for all activation rows.
        let rows_per_item = (n / (8 * rayon::current_num_threads())).clamp(16, 256);
        let parts: Vec<(usize, Vec<f32>)> = self
            .weights
            .par_chunks(rows_per_item * blocks)
            .enumerate()
            .map(|(item, wrows)| {
                let count = wrows.len() / blocks;
                let mut out = vec![0.0f32; m * count];
                for (j, w) in wrows.chunks_exact(blocks).enumerate() {
                    for i in 0..m {
                        out[i * count + j] = dot(w, &xq[i * blocks..(i + 1) * blocks], avx2);
                    }
                }
                (item * rows_per_item, out)
            })
            .collect();
        for (start, out) in parts {
            let count = out.len() / m.max(1);
            for i in 0..m {
                dst[i * n + start..i * n + start + count].copy_from_slice(&out[i * count..(i + 1) * count]);
            }
        }
    }
}

impl CustomOp1 for Q4_1Matmul {
    fn name(&self) -> &'static str {
        "q4_1-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("q4_1-matmul needs f32 input") };
        let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("q4_1-matmul needs contiguous input") };
        let mut dims = layout.dims().to_vec();
        if dims.last() != Some(&self.k) {
            candle_core::bail!("q4_1-matmul: input {dims:?} does not end in {}", self.k);
        }
        let m = (end - start) / self.k;
        let mut dst = vec![0.0f32; m * self.n];
        self.matmul(&data[start..end], m, &mut dst);
        *dims.last_mut().unwrap() = self.n;
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_a_naive_product_of_the_dequantized_values() {
        let dev = Device::Cpu;
        let (m, n, k) = (5, 70, 96);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let wd: Vec<f32> = q.dequantize(&dev).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let x: Vec<f32> = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mm = Q4_1Matmul::new(q.data().unwrap().into_owned(), n, k).unwrap();
        let mut got = vec![0.0; m * n];
        mm.matmul(&x, m, &mut got);
        // Reference: dequantize our own Q8_1 activations and multiply in f64.
        let blocks = k / BLOCK;
        for i in 0..m {
            let mut xq = vec![ZERO_Q8_1; blocks];
            quantize_row_q8_1(&x[i * k..(i + 1) * k], &mut xq);
            let xd: Vec<f64> = xq.iter().flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64)).collect();
            for j in 0..n {
                let want: f64 = (0..k).map(|c| wd[j * k + c] as f64 * xd[c]).sum();
                let g = got[i * n + j] as f64;
                // s is rounded to f16 by design (as in ggml): allow its rounding.
                assert!((g - want).abs() < 2e-2 * (1.0 + want.abs()), "row {i} col {j}: {g} vs {want}");
            }
        }
        // The SIMD and scalar paths agree.
        let mut xq = vec![ZERO_Q8_1; blocks];
        quantize_row_q8_1(&x[..k], &mut xq);
        let row = &mm.weights[..blocks];
        assert!((dot(row, &xq, true) - dot_scalar(row, &xq)).abs() < 1e-4);
    }

    #[test]
    fn activation_quantization_follows_ggml() {
        // amax 127 gives scale 1: values are their own quantized steps.
        let mut x = vec![0.0f32; BLOCK];
        x[..5].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -3.0]);
        let mut b = [ZERO_Q8_1];
        quantize_row_q8_1(&x, &mut b);
        // Ties round to even, as ggml's AVX code does.
        assert_eq!(&b[0].qs[..5], &[127, 0, 2, 2, -3]);
        assert_eq!((b[0].d, b[0].s), (1.0, 128.0));
    }
}
