//! Matmul kernels for ggml's Q4_1 and Q8_0 weights, as candle custom ops.
//!
//! Why hand-written: candle 0.11 multiplies Q4_1 with a scalar loop (no SIMD), which left
//! SmolLM2-135M decoding at 20 tokens/s, and it rounds the activations' block sums (`s`) in
//! half precision twice, so logits came out differently from llama.cpp's. Both kernels here
//! quantize the activations to 8 bits exactly as ggml's x86 code does (scale 127/amax, round
//! half to even, for Q4_1 `s = fp16(d · Σq)`), then take block dot products with AVX2 (a
//! scalar path with the same arithmetic serves other CPUs). Weights stay in ggml's block layout
//! (decoding is bound by memory bandwidth: unpacking the f16 scales to f32 made it slower).
//! Decode takes four weight rows against the one activation row, prefetching the weights ahead;
//! prefill takes four weight rows against two activation rows, so each weight block is unpacked
//! once for both and its scales are converted once for all rows. Rayon spreads runs of weight
//! rows over the threads.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use half::f16;
use rayon::prelude::*;

pub const BLOCK: usize = 32;

/// One block of activations quantized to 8 bits: scale `d` and (for Q4_1) `s = d · Σ qs`,
/// both rounded to f16 as ggml stores them but kept as f32.
#[derive(Clone, Copy)]
#[repr(C)]
struct ActBlock {
    d: f32,
    s: f32,
    qs: [i8; BLOCK],
}

const ZERO_ACT: ActBlock = ActBlock { d: 0.0, s: 0.0, qs: [0; BLOCK] };

/// Quantizes one row (`x.len()` a multiple of 32) the way ggml's x86 `quantize_row_q8_1` (and,
/// ignoring `s`, `quantize_row_q8_0`) does.
fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(BLOCK)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(xs) {
            // Round half to even by adding and removing 1.5·2²³ (exact for |x| ≤ 2²²): the
            // same result as `round_ties_even`, which compiles to a libm call on baseline x86-64.
            const MAGIC: f32 = 12_582_912.0;
            *q = ((v * id + MAGIC) - MAGIC) as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d).to_f32();
        b.s = f16::from_f32(d * sum as f32).to_f32();
    }
}

/// How far ahead of each weight row's current block a decode pass asks for memory: 2-8 KB
/// all measured alike (2.8-11 groups of four 360-byte rows of SmolLM2-135M); 4 KB is the middle.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// ggml block: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles (low nibbles are
    /// elements 0..16, high nibbles 16..32).
    Q4_1,
    /// ggml block: f16 scale `d`, 32 signed bytes.
    Q8_0,
}

impl Kind {
    const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
        }
    }
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// One weight row (ggml blocks, kept in the file's layout: the kernel is bound by memory
/// bandwidth, so the weights stay as small as they were stored) against one activation row.
fn dot_scalar(kind: Kind, w: &[u8], x: &[ActBlock]) -> f32 {
    let mut acc = 0.0f32;
    let mut summs = 0.0f32;
    for (wb, xb) in w.chunks_exact(kind.block_bytes()).zip(x) {
        let (sumi, m): (i32, f32) = match kind {
            Kind::Q4_1 => ((0..BLOCK / 2).map(|j| (wb[4 + j] & 0x0F) as i32 * xb.qs[j] as i32 + (wb[4 + j] >> 4) as i32 * xb.qs[j + BLOCK / 2] as i32).sum(), half(wb, 2)),
            Kind::Q8_0 => ((0..BLOCK).map(|j| wb[2 + j] as i8 as i32 * xb.qs[j] as i32).sum(), 0.0),
        };
        acc += half(wb, 0) * xb.d * sumi as f32;
        summs = m.mul_add(xb.s, summs);
    }
    acc + summs
}

/// The scales and minimums of four weight rows, block by block, as f32 in the order the
/// prefill kernel loads them (`[d0..d3]`, `[m0..m3]`): converting them once beats converting
/// them for every activation row they meet. The plain version, which the F16C one is tested
/// against.
#[cfg(test)]
fn group_scales(kind: Kind, w: [&[u8]; 4]) -> Vec<[[f32; 4]; 2]> {
    let bb = kind.block_bytes();
    (0..w[0].len() / bb)
        .map(|b| {
            let at = |r: usize, off: usize| half(w[r], b * bb + off);
            let m = |r: usize| if kind == Kind::Q4_1 { at(r, 2) } else { 0.0 };
            [[at(0, 0), at(1, 0), at(2, 0), at(3, 0)], [m(0), m(1), m(2), m(3)]]
        })
        .collect()
}

/// The scales and minimums of four weight rows, block by block, as f32 in the order the
/// prefill kernel loads them (`[d0..d3]`, `[m0..m3]`), converted four halves per instruction
/// (a library call each had been 40% of a decode step of four sequences).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn group_scales_f16c(kind: Kind, w: [&[u8]; 4]) -> Vec<[[f32; 4]; 2]> {
    use std::arch::x86_64::*;
    let bb = kind.block_bytes();
    let mut out = vec![[[0.0f32; 4]; 2]; w[0].len() / bb];
    for (b, o) in out.iter_mut().enumerate() {
        let p = [w[0].as_ptr().add(b * bb), w[1].as_ptr().add(b * bb), w[2].as_ptr().add(b * bb), w[3].as_ptr().add(b * bb)];
        _mm_storeu_ps(o[0].as_mut_ptr(), f16x4(p));
        if kind == Kind::Q4_1 {
            _mm_storeu_ps(o[1].as_mut_ptr(), f16x4([p[0].add(2), p[1].add(2), p[2].add(2), p[3].add(2)]));
        }
    }
    out
}

/// Four f16 values, one at each pointer, as four f32 (one conversion for the four rows).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16x4(p: [*const u8; 4]) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    let mut v = _mm_setzero_si128();
    v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[0] as *const u16) as i32, 0);
    v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[1] as *const u16) as i32, 1);
    v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[2] as *const u16) as i32, 2);
    v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[3] as *const u16) as i32, 3);
    _mm_cvtph_ps(v)
}

/// Four weight rows against one activation row (decode): each activation block is loaded once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_avx2(kind: Kind, w: [&[u8]; 4], x: &[ActBlock]) -> [f32; 4] {
    dot4_body::<false>(kind, w, x)
}

/// The same with AVX-VNNI, whose `vpdpbusd` does the u8×i8 products and their sums of four in
/// one instruction (the integer results are identical).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn dot4_vnni(kind: Kind, w: [&[u8]; 4], x: &[ActBlock]) -> [f32; 4] {
    dot4_body::<true>(kind, w, x)
}

/// Four weight rows against two activation rows (prefill): each weight block is unpacked once
/// for both, its scales come ready from [`group_scales`]. Per output the same operations in the
/// same order as [`dot4_avx2`], so prefill and decode give identical numbers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4x2_avx2(kind: Kind, w: [&[u8]; 4], dm: &[[[f32; 4]; 2]], x: [&[ActBlock]; 2], stream: bool) -> [[f32; 4]; 2] {
    dot4x2_body::<false>(kind, w, dm, x, stream)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn dot4x2_vnni(kind: Kind, w: [&[u8]; 4], dm: &[[[f32; 4]; 2]], x: [&[ActBlock]; 2], stream: bool) -> [[f32; 4]; 2] {
    dot4x2_body::<true>(kind, w, dm, x, stream)
}

/// One weight block as the unsigned operand of maddubs / vpdpbusd: Q4_1's nibbles as bytes
/// (low nibbles are elements 0..16), Q8_0's bytes as they are (signed; see [`int_dot`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn weight_bytes(kind: Kind, block: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    match kind {
        Kind::Q4_1 => {
            // The 16 packed bytes in both halves by the load itself, the high half shifted:
            // no insert on the shuffle port, which the kernels' broadcasts also need.
            let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(block.add(4) as *const __m128i));
            _mm256_and_si256(_mm256_blend_epi32(both, _mm256_srli_epi16(both, 4), 0xF0), _mm256_set1_epi8(0x0F))
        }
        Kind::Q8_0 => _mm256_loadu_si256(block.add(2) as *const __m256i),
    }
}

/// The block's integer dot product in eight lanes of partial sums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn int_dot<const VNNI: bool>(kind: Kind, wb: std::arch::x86_64::__m256i, xq: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let (u, s) = match kind {
        Kind::Q4_1 => (wb, xq),
        // Move the weight's sign onto x so the weight operand is unsigned.
        Kind::Q8_0 => (_mm256_sign_epi8(wb, wb), _mm256_sign_epi8(xq, wb)),
    };
    if VNNI {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
    } else {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
}

/// Lane `r` of `v` in all eight lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes4(v: std::arch::x86_64::__m128) -> [std::arch::x86_64::__m256; 4] {
    use std::arch::x86_64::*;
    [
        _mm256_broadcastss_ps(v),
        _mm256_broadcastss_ps(_mm_permute_ps(v, 1)),
        _mm256_broadcastss_ps(_mm_permute_ps(v, 2)),
        _mm256_broadcastss_ps(_mm_permute_ps(v, 3)),
    ]
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot4_body<const VNNI: bool>(kind: Kind, w: [&[u8]; 4], x: &[ActBlock]) -> [f32; 4] {
    use std::arch::x86_64::*;
    use crate::decode_attention::hsum8 as hsum;
    let bb = kind.block_bytes();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut summs = _mm_setzero_ps();
    for (b, xb) in x.iter().enumerate() {
        let xq = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let p = [w[0].as_ptr().add(b * bb), w[1].as_ptr().add(b * bb), w[2].as_ptr().add(b * bb), w[3].as_ptr().add(b * bb)];
        // Decode meets each weight once, streaming it from memory. Four rows interleaved at
        // 20 or 34 bytes a step are short streams the hardware prefetcher follows late; asking
        // for the bytes a few groups of rows ahead took a decode-sized pass from 6.3 to ~9.5
        // GB/s on 2 threads (docs/PERFORMANCE.md, step 12). Prefetches are hints: an address
        // past the end is never read.
        for row in p {
            _mm_prefetch(row.wrapping_add(PREFETCH_AHEAD) as *const i8, _MM_HINT_T0);
        }
        // The four rows' block scales (and minimums) at once. The minimum terms are fused into
        // their running sum, as in llama.cpp's build of ggml (gcc contracts its `summs += m * s`
        // into one FMA; checked in its disassembly); the scalar path does the same.
        let d4 = f16x4(p);
        let scale4 = _mm_mul_ps(d4, _mm_set1_ps(xb.d));
        if kind == Kind::Q4_1 {
            let m4 = f16x4([p[0].add(2), p[1].add(2), p[2].add(2), p[3].add(2)]);
            summs = _mm_fmadd_ps(m4, _mm_set1_ps(xb.s), summs);
        }
        let lanes = lanes4(scale4);
        for r in 0..4 {
            let ints = int_dot::<VNNI>(kind, weight_bytes(kind, p[r]), xq);
            acc[r] = _mm256_fmadd_ps(lanes[r], _mm256_cvtepi32_ps(ints), acc[r]);
        }
    }
    let mut sm = [0.0f32; 4];
    _mm_storeu_ps(sm.as_mut_ptr(), summs);
    [hsum(acc[0]) + sm[0], hsum(acc[1]) + sm[1], hsum(acc[2]) + sm[2], hsum(acc[3]) + sm[3]]
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot4x2_body<const VNNI: bool>(kind: Kind, w: [&[u8]; 4], dm: &[[[f32; 4]; 2]], x: [&[ActBlock]; 2], stream: bool) -> [[f32; 4]; 2] {
    use std::arch::x86_64::*;
    use crate::decode_attention::hsum8 as hsum;
    let bb = kind.block_bytes();
    let mut acc = [[_mm256_setzero_ps(); 4]; 2];
    let mut summs = [_mm_setzero_ps(); 2];
    for (b, s) in dm.iter().enumerate() {
        if stream {
            // A few activation rows (a decode step of several sequences) leave the weights
            // streaming from memory, as in decode: prefetch them the same way.
            for row in w {
                _mm_prefetch(row.as_ptr().wrapping_add(b * bb + PREFETCH_AHEAD) as *const i8, _MM_HINT_T0);
            }
        }
        let wb = [
            weight_bytes(kind, w[0].as_ptr().add(b * bb)),
            weight_bytes(kind, w[1].as_ptr().add(b * bb)),
            weight_bytes(kind, w[2].as_ptr().add(b * bb)),
            weight_bytes(kind, w[3].as_ptr().add(b * bb)),
        ];
        for c in 0..2 {
            let xb = x[c].get_unchecked(b);
            let xq = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
            if kind == Kind::Q4_1 {
                summs[c] = _mm_fmadd_ps(_mm_loadu_ps(s[1].as_ptr()), _mm_set1_ps(xb.s), summs[c]);
            }
            // Each output's scale broadcast from memory (a load, not a shuffle) and multiplied:
            // the same product as the decode kernel's, so the same bits.
            let xd = _mm256_broadcast_ss(&xb.d);
            for r in 0..4 {
                let lane = _mm256_mul_ps(_mm256_broadcast_ss(&s[0][r]), xd);
                acc[c][r] = _mm256_fmadd_ps(lane, _mm256_cvtepi32_ps(int_dot::<VNNI>(kind, wb[r], xq)), acc[c][r]);
            }
        }
    }
    let mut out = [[0.0f32; 4]; 2];
    for c in 0..2 {
        let mut sm = [0.0f32; 4];
        _mm_storeu_ps(sm.as_mut_ptr(), summs[c]);
        for r in 0..4 {
            out[c][r] = hsum(acc[c][r]) + sm[r];
        }
    }
    out
}

/// `y = x Wᵀ` for Q4_1 or Q8_0 weights W [n, k].
#[derive(Clone)]
pub struct QuantMatmul {
    kind: Kind,
    /// ggml's blocks, row after row.
    weights: Arc<Vec<u8>>,
    n: usize,
    k: usize,
}

impl QuantMatmul {
    /// A kernel for `dtype` (Q4_1 or Q8_0) weights [n, k] given as ggml's raw blocks, or None
    /// for other types.
    pub fn new(dtype: GgmlDType, ggml: &[u8], n: usize, k: usize) -> Result<Option<Self>> {
        let kind = match dtype {
            GgmlDType::Q4_1 => Kind::Q4_1,
            GgmlDType::Q8_0 => Kind::Q8_0,
            _ => return Ok(None),
        };
        if !k.is_multiple_of(BLOCK) || ggml.len() != n * k / BLOCK * kind.block_bytes() {
            candle_core::bail!("{dtype:?} weights of {} bytes do not hold a [{n}, {k}] matrix", ggml.len());
        }
        Ok(Some(Self { kind, weights: Arc::new(ggml.to_vec()), n, k }))
    }

    /// The rows of `self` then the rows of `other` as one matrix (one activation quantization
    /// and one dispatch instead of two), or None when their types or widths differ.
    pub fn concat_rows(&self, other: &QuantMatmul) -> Option<QuantMatmul> {
        if self.kind != other.kind || self.k != other.k {
            return None;
        }
        let mut weights = Vec::with_capacity(self.weights.len() + other.weights.len());
        weights.extend_from_slice(&self.weights);
        weights.extend_from_slice(&other.weights);
        Some(QuantMatmul { kind: self.kind, weights: Arc::new(weights), n: self.n + other.n, k: self.k })
    }

    pub fn shape(&self) -> Shape {
        Shape::from((self.n, self.k))
    }

    /// The blocks as a candle tensor (a copy).
    pub fn to_qtensor(&self) -> Result<QTensor> {
        let dtype = match self.kind {
            Kind::Q4_1 => GgmlDType::Q4_1,
            Kind::Q8_0 => GgmlDType::Q8_0,
        };
        let storage = QStorage::from_data(std::borrow::Cow::Borrowed(&self.weights[..]), &candle_core::Device::Cpu, dtype)?;
        QTensor::new(storage, (self.n, self.k))
    }

    /// The product for `m` rows of `x` (row-major [m, k]) into `dst` [m, n].
    pub fn matmul(&self, x: &[f32], m: usize, dst: &mut [f32]) {
        let (n, k, kind) = (self.n, self.k, self.kind);
        let blocks = k / BLOCK;
        let mut xq = vec![ZERO_ACT; m * blocks];
        // A rayon dispatch costs more than quantizing a few rows (decode has one).
        if m < 16 {
            xq.chunks_mut(blocks).zip(x.chunks(k)).for_each(|(q, row)| quantize_row(row, q));
        } else {
            xq.par_chunks_mut(blocks).zip(x.par_chunks(k)).for_each(|(q, row)| quantize_row(row, q));
        }
        #[cfg(target_arch = "x86_64")]
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        #[cfg(target_arch = "x86_64")]
        let vnni = avx2 && is_x86_feature_detected!("avxvnni");
        let row_bytes = blocks * kind.block_bytes();
        // Work items are runs of weight rows (a multiple of 4): each is read once for all
        // activation rows.
        let rows_per_item = (n / (8 * rayon::current_num_threads())).clamp(16, 256) / 4 * 4;
        let parts: Vec<(usize, Vec<f32>)> = self
            .weights
            .par_chunks(rows_per_item * row_bytes)
            .enumerate()
            .map(|(item, wrows)| {
                let count = wrows.len() / row_bytes;
                let rows: Vec<&[u8]> = wrows.chunks_exact(row_bytes).collect();
                let mut out = vec![0.0f32; m * count];
                let mut j = 0;
                // Few activation rows: each weight byte is used a few times only and comes from
                // memory, not from cache.
                let stream = m <= 8;
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    while j + 4 <= count {
                        let w4 = [rows[j], rows[j + 1], rows[j + 2], rows[j + 3]];
                        if m == 1 {
                            // SAFETY: AVX2, FMA and F16C were detected; every row has `blocks` blocks.
                            let d = unsafe { if vnni { dot4_vnni(kind, w4, &xq) } else { dot4_avx2(kind, w4, &xq) } };
                            out[j..j + 4].copy_from_slice(&d);
                        } else {
                            // SAFETY: AVX2 and F16C were detected.
                            let dm = unsafe { group_scales_f16c(kind, w4) };
                            // Activation rows in pairs; an odd last row is paired with itself.
                            for i in (0..m).step_by(2) {
                                let i2 = (i + 1).min(m - 1);
                                let x2 = [&xq[i * blocks..(i + 1) * blocks], &xq[i2 * blocks..(i2 + 1) * blocks]];
                                // SAFETY: as above; `dm` has one entry per block.
                                let d = unsafe { if vnni { dot4x2_vnni(kind, w4, &dm, x2, stream) } else { dot4x2_avx2(kind, w4, &dm, x2, stream) } };
                                out[i * count + j..i * count + j + 4].copy_from_slice(&d[0]);
                                out[i2 * count + j..i2 * count + j + 4].copy_from_slice(&d[1]);
                            }
                        }
                        j += 4;
                    }
                }
                for (jj, row) in rows.iter().enumerate().skip(j) {
                    for i in 0..m {
                        out[i * count + jj] = dot_scalar(kind, row, &xq[i * blocks..(i + 1) * blocks]);
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

impl CustomOp1 for QuantMatmul {
    fn name(&self) -> &'static str {
        "lmlab-quant-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("quantized matmul needs f32 input") };
        let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("quantized matmul needs contiguous input") };
        let mut dims = layout.dims().to_vec();
        if dims.last() != Some(&self.k) {
            candle_core::bail!("quantized matmul: input {dims:?} does not end in {}", self.k);
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
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_a_naive_product_of_the_dequantized_values() {
        let dev = Device::Cpu;
        // 70 rows: runs of 4 and a remainder for the scalar path.
        let (m, n, k) = (5, 70, 96);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let wd: Vec<f32> = q.dequantize(&dev).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let x: Vec<f32> = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let mm = QuantMatmul::new(dtype, &q.data().unwrap(), n, k).unwrap().unwrap();
            assert_eq!(mm.to_qtensor().unwrap().data().unwrap(), q.data().unwrap());
            let mut got = vec![0.0; m * n];
            mm.matmul(&x, m, &mut got);
            // Reference: dequantize our own 8-bit activations and multiply in f64.
            let blocks = k / BLOCK;
            for i in 0..m {
                let mut xq = vec![ZERO_ACT; blocks];
                quantize_row(&x[i * k..(i + 1) * k], &mut xq);
                let xd: Vec<f64> = xq.iter().flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64)).collect();
                for j in 0..n {
                    let want: f64 = (0..k).map(|c| wd[j * k + c] as f64 * xd[c]).sum();
                    let g = got[i * n + j] as f64;
                    // Q4_1's s is rounded to f16 by design (as in ggml): allow its rounding.
                    assert!((g - want).abs() < 2e-2 * (1.0 + want.abs()), "{dtype:?} row {i} col {j}: {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn simd_and_scalar_paths_agree() {
        let dev = Device::Cpu;
        let k = 128;
        let x: Vec<f32> = Tensor::randn(0f32, 1.0, k, &dev).unwrap().to_vec1().unwrap();
        let mut xq = vec![ZERO_ACT; k / BLOCK];
        quantize_row(&x, &mut xq);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&Tensor::randn(0f32, 1.0, (4, k), &dev).unwrap(), dtype).unwrap();
            let mm = QuantMatmul::new(dtype, &q.data().unwrap(), 4, k).unwrap().unwrap();
            let rows: Vec<&[u8]> = mm.weights.chunks_exact(k / BLOCK * mm.kind.block_bytes()).collect();
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
                let w4 = [rows[0], rows[1], rows[2], rows[3]];
                let simd = unsafe { dot4_avx2(mm.kind, w4, &xq) };
                // The prefill kernel, the same row paired with a second one, gives the same bits.
                let other: Vec<f32> = x.iter().rev().map(|v| v * 0.5).collect();
                let mut xq2 = vec![ZERO_ACT; k / BLOCK];
                quantize_row(&other, &mut xq2);
                let dm = group_scales(mm.kind, w4);
                let dm_f16c = unsafe { group_scales_f16c(mm.kind, w4) };
                assert_eq!(dm, dm_f16c, "{dtype:?}: F16C and scalar scale conversion differ");
                let pair = unsafe { dot4x2_avx2(mm.kind, w4, &dm, [&xq, &xq2], false) };
                assert_eq!(pair, [simd, unsafe { dot4_avx2(mm.kind, w4, &xq2) }], "{dtype:?}: prefill and decode kernels differ");
                for r in 0..4 {
                    assert!((simd[r] - dot_scalar(mm.kind, rows[r], &xq)).abs() < 1e-3, "{dtype:?} row {r}");
                }
                if is_x86_feature_detected!("avxvnni") {
                    let vnni = unsafe { dot4_vnni(mm.kind, w4, &xq) };
                    assert_eq!(vnni, simd, "{dtype:?}: VNNI and AVX2 integer sums differ");
                    assert_eq!(unsafe { dot4x2_vnni(mm.kind, w4, &dm, [&xq, &xq2], true) }, pair, "{dtype:?}: VNNI and AVX2 prefill kernels differ");
                }
            }
        }
    }

    #[test]
    fn activation_quantization_follows_ggml() {
        // amax 127 gives scale 1: values are their own quantized steps.
        let mut x = vec![0.0f32; BLOCK];
        x[..5].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -3.0]);
        let mut b = [ZERO_ACT];
        quantize_row(&x, &mut b);
        // Ties round to even, as ggml's AVX code does.
        assert_eq!(&b[0].qs[..5], &[127, 0, 2, 2, -3]);
        assert_eq!((b[0].d, b[0].s), (1.0, 128.0));
    }
}
