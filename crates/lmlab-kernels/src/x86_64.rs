//! Every x86-64 SIMD kernel of lmlab, in one file: AVX2/FMA/F16C, AVX-VNNI for the
//! quantized dot products, and AVX-512 BF16 for the bf16 matmul's microkernel.
//!
//! Each `unsafe fn` here states its contract in a `# Safety` section. Two kinds of promise
//! recur: the CPU supports the instruction sets named in the function's `target_feature`
//! (callers check [`crate::cpu::isa`] first), and the slices hold as many elements or blocks
//! as the function reads through raw pointers (stated per function). The safe wrappers in
//! `quant.rs` and `attention.rs` keep both promises and are the only callers.

use std::arch::x86_64::*;

use crate::bf16::{MR as BF16_MR, NR as BF16_NR};
use crate::quant::{ActBlock, QuantKind};

/// How far ahead of each weight row's current block a decode pass asks for memory: 2-8 KB
/// all measured alike (2.8-11 groups of four 360-byte rows of SmolLM2-135M); 4 KB is the middle.
const PREFETCH_AHEAD: usize = 4096;

/// The sum of eight lanes (pairwise: high half onto low, then within the four).
///
/// # Safety
/// The CPU supports AVX.
#[inline(always)]
pub(crate) unsafe fn hsum8(v: __m256) -> f32 {
    // SAFETY: AVX, by this function's contract.
    unsafe {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)))
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized dot products (Q4_1, Q8_0 weights against 8-bit activations)
// ---------------------------------------------------------------------------------------------

/// Four f16 values, one at each pointer, as four f32 (one conversion for the four rows).
///
/// # Safety
/// The CPU supports F16C; each pointer is valid for reading two bytes (no alignment needed).
#[inline(always)]
unsafe fn f16x4(p: [*const u8; 4]) -> __m128 {
    // SAFETY: F16C and the four readable pointers, by this function's contract.
    unsafe {
        let mut v = _mm_setzero_si128();
        v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[0] as *const u16) as i32, 0);
        v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[1] as *const u16) as i32, 1);
        v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[2] as *const u16) as i32, 2);
        v = _mm_insert_epi16(v, std::ptr::read_unaligned(p[3] as *const u16) as i32, 3);
        _mm_cvtph_ps(v)
    }
}

/// The scales and minimums of four weight rows, block by block, as f32 in the order the
/// prefill kernel loads them (`[d0..d3]`, `[m0..m3]`), converted four halves per instruction
/// (a library call each had been 40% of a decode step of four sequences). Equal bit for bit to
/// [`crate::quant::group_scales`].
///
/// # Safety
/// The CPU supports AVX2 and F16C, and `w[1..4]` are at least as long as `w[0]`.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn group_scales(kind: QuantKind, w: [&[u8]; 4]) -> Vec<[[f32; 4]; 2]> {
    let bb = kind.block_bytes();
    let mut out = vec![[[0.0f32; 4]; 2]; w[0].len() / bb];
    for (b, o) in out.iter_mut().enumerate() {
        // SAFETY: block `b` lies inside every row (all rows are at least as long as `w[0]`,
        // which has `out.len()` whole blocks); the scale is at offset 0 and the minimum at 2.
        unsafe {
            let p = [w[0].as_ptr().add(b * bb), w[1].as_ptr().add(b * bb), w[2].as_ptr().add(b * bb), w[3].as_ptr().add(b * bb)];
            _mm_storeu_ps(o[0].as_mut_ptr(), f16x4(p));
            if kind == QuantKind::Q4_1 {
                _mm_storeu_ps(o[1].as_mut_ptr(), f16x4([p[0].add(2), p[1].add(2), p[2].add(2), p[3].add(2)]));
            }
        }
    }
    out
}

/// Four weight rows against one activation row (decode): each activation block is loaded once.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C (and AVX-VNNI when `VNNI`); each row of `w` holds at
/// least `x.len()` blocks of `kind`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot4_avx2(kind: QuantKind, w: [&[u8]; 4], x: &[ActBlock]) -> [f32; 4] {
    // SAFETY: forwarded contract.
    unsafe { dot4_body::<false>(kind, w, x) }
}

/// The same with AVX-VNNI, whose `vpdpbusd` does the u8×i8 products and their sums of four in
/// one instruction (the integer results are identical).
///
/// # Safety
/// As [`dot4_avx2`], and the CPU supports AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) unsafe fn dot4_vnni(kind: QuantKind, w: [&[u8]; 4], x: &[ActBlock]) -> [f32; 4] {
    // SAFETY: forwarded contract.
    unsafe { dot4_body::<true>(kind, w, x) }
}

/// Four weight rows against two activation rows (prefill): each weight block is unpacked once
/// for both, its scales come ready from [`group_scales`]. Per output the same operations in the
/// same order as [`dot4_avx2`], so prefill and decode give identical numbers.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; each row of `w` and each row of `x` holds at least
/// `dm.len()` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot4x2_avx2(kind: QuantKind, w: [&[u8]; 4], dm: &[[[f32; 4]; 2]], x: [&[ActBlock]; 2], stream: bool) -> [[f32; 4]; 2] {
    // SAFETY: forwarded contract.
    unsafe { dot4x2_body::<false>(kind, w, dm, x, stream) }
}

/// [`dot4x2_avx2`] with AVX-VNNI.
///
/// # Safety
/// As [`dot4x2_avx2`], and the CPU supports AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(crate) unsafe fn dot4x2_vnni(kind: QuantKind, w: [&[u8]; 4], dm: &[[[f32; 4]; 2]], x: [&[ActBlock]; 2], stream: bool) -> [[f32; 4]; 2] {
    // SAFETY: forwarded contract.
    unsafe { dot4x2_body::<true>(kind, w, dm, x, stream) }
}

/// One weight block as the unsigned operand of maddubs / vpdpbusd: Q4_1's nibbles as bytes
/// (low nibbles are elements 0..16), Q8_0's bytes as they are (signed; see [`int_dot`]).
///
/// # Safety
/// The CPU supports AVX2; `block` points at one whole block of `kind`.
#[inline(always)]
unsafe fn weight_bytes(kind: QuantKind, block: *const u8) -> __m256i {
    // SAFETY: AVX2 and the readable block, by this function's contract.
    unsafe {
        match kind {
            QuantKind::Q4_1 => {
                // The 16 packed bytes in both halves by the load itself, the high half shifted:
                // no insert on the shuffle port, which the kernels' broadcasts also need.
                let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(block.add(4) as *const __m128i));
                _mm256_and_si256(_mm256_blend_epi32(both, _mm256_srli_epi16(both, 4), 0xF0), _mm256_set1_epi8(0x0F))
            }
            QuantKind::Q8_0 => _mm256_loadu_si256(block.add(2) as *const __m256i),
        }
    }
}

/// The block's integer dot product in eight lanes of partial sums.
///
/// # Safety
/// The CPU supports AVX2 (and AVX-VNNI when `VNNI`).
#[inline(always)]
unsafe fn int_dot<const VNNI: bool>(kind: QuantKind, wb: __m256i, xq: __m256i) -> __m256i {
    // SAFETY: the instruction sets, by this function's contract; no memory is touched.
    unsafe {
        let (u, s) = match kind {
            QuantKind::Q4_1 => (wb, xq),
            // Move the weight's sign onto x so the weight operand is unsigned.
            QuantKind::Q8_0 => (_mm256_sign_epi8(wb, wb), _mm256_sign_epi8(xq, wb)),
        };
        if VNNI {
            _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
        } else {
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
        }
    }
}

/// Lane `r` of `v` in all eight lanes.
///
/// # Safety
/// The CPU supports AVX2.
#[inline(always)]
unsafe fn lanes4(v: __m128) -> [__m256; 4] {
    // SAFETY: AVX2, by this function's contract; no memory is touched.
    unsafe {
        [
            _mm256_broadcastss_ps(v),
            _mm256_broadcastss_ps(_mm_permute_ps(v, 1)),
            _mm256_broadcastss_ps(_mm_permute_ps(v, 2)),
            _mm256_broadcastss_ps(_mm_permute_ps(v, 3)),
        ]
    }
}

/// # Safety
/// As [`dot4_avx2`] (and [`dot4_vnni`] when `VNNI`).
#[inline(always)]
unsafe fn dot4_body<const VNNI: bool>(kind: QuantKind, w: [&[u8]; 4], x: &[ActBlock]) -> [f32; 4] {
    let bb = kind.block_bytes();
    debug_assert!(w.iter().all(|r| r.len() >= x.len() * bb));
    // SAFETY: every block index `b < x.len()` lies inside each weight row (contract); the
    // prefetches are hints that never read memory, so addresses past the end are harmless.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut summs = _mm_setzero_ps();
        for (b, xb) in x.iter().enumerate() {
            let xq = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
            let p = [w[0].as_ptr().add(b * bb), w[1].as_ptr().add(b * bb), w[2].as_ptr().add(b * bb), w[3].as_ptr().add(b * bb)];
            // Decode meets each weight once, streaming it from memory. Four rows interleaved at
            // 20 or 34 bytes a step are short streams the hardware prefetcher follows late; asking
            // for the bytes a few groups of rows ahead took a decode-sized pass from 6.3 to ~9.5
            // GB/s on 2 threads (docs/PERFORMANCE.md, step 12).
            for row in p {
                _mm_prefetch(row.wrapping_add(PREFETCH_AHEAD) as *const i8, _MM_HINT_T0);
            }
            // The four rows' block scales (and minimums) at once. The minimum terms are fused into
            // their running sum, as in llama.cpp's build of ggml (gcc contracts its `summs += m * s`
            // into one FMA; checked in its disassembly); the scalar path does the same.
            let d4 = f16x4(p);
            let scale4 = _mm_mul_ps(d4, _mm_set1_ps(xb.d));
            if kind == QuantKind::Q4_1 {
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
        [hsum8(acc[0]) + sm[0], hsum8(acc[1]) + sm[1], hsum8(acc[2]) + sm[2], hsum8(acc[3]) + sm[3]]
    }
}

/// # Safety
/// As [`dot4x2_avx2`] (and [`dot4x2_vnni`] when `VNNI`).
#[inline(always)]
unsafe fn dot4x2_body<const VNNI: bool>(
    kind: QuantKind,
    w: [&[u8]; 4],
    dm: &[[[f32; 4]; 2]],
    x: [&[ActBlock]; 2],
    stream: bool,
) -> [[f32; 4]; 2] {
    let bb = kind.block_bytes();
    debug_assert!(w.iter().all(|r| r.len() >= dm.len() * bb) && x.iter().all(|r| r.len() >= dm.len()));
    // SAFETY: every block index `b < dm.len()` lies inside each weight row and each activation
    // row (contract); prefetches never read memory.
    unsafe {
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
                if kind == QuantKind::Q4_1 {
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
                out[c][r] = hsum8(acc[c][r]) + sm[r];
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Attention: dot products and axpy over cache rows in f32 or f16, and the softmax exponential
// ---------------------------------------------------------------------------------------------

/// `Σ a·b` over the common length, eight lanes at a time.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: lanes `i..i + 8` with `i + 8 <= n` are inside both slices; AVX2/FMA by contract.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc);
            i += 8;
        }
        hsum8(acc) + crate::attention::dot_scalar(&a[i..n], &b[i..n])
    }
}

/// `out += w·x` over the common length.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn axpy_f32(w: f32, x: &[f32], out: &mut [f32]) {
    let n = x.len().min(out.len());
    // SAFETY: lanes `i..i + 8` with `i + 8 <= n` are inside both slices; AVX2/FMA by contract.
    unsafe {
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let o = out.as_mut_ptr().add(i);
            _mm256_storeu_ps(o, _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(o)));
            i += 8;
        }
    }
    crate::attention::axpy_scalar(w, &x[n - n % 8..n], &mut out[n - n % 8..n]);
}

/// `Σ q·k` with `k` in f16, widened eight at a time.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C.
#[inline(always)]
pub(crate) unsafe fn dot_f16(q: &[f32], k: &[half::f16]) -> f32 {
    let n = q.len().min(k.len());
    // SAFETY: lanes `i..i + 8` with `i + 8 <= n` are inside both slices (8 halves = 16 bytes);
    // the instruction sets by contract.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            let kv = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), kv, acc);
            i += 8;
        }
        hsum8(acc) + crate::attention::dot_f16_scalar(&q[i..n], &k[i..n])
    }
}

/// `out += w·x` with `x` in f16.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C.
#[inline(always)]
pub(crate) unsafe fn axpy_f16(w: f32, x: &[half::f16], out: &mut [f32]) {
    let n = x.len().min(out.len());
    // SAFETY: lanes `i..i + 8` with `i + 8 <= n` are inside both slices; instruction sets by
    // contract.
    unsafe {
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let o = out.as_mut_ptr().add(i);
            let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
            _mm256_storeu_ps(o, _mm256_fmadd_ps(wv, xv, _mm256_loadu_ps(o)));
            i += 8;
        }
    }
    crate::attention::axpy_f16_scalar(w, &x[n - n % 8..n], &mut out[n - n % 8..n]);
}

/// e^x for eight lanes, x ≤ 0 (softmax arguments): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a
/// degree-6 polynomial (Cephes' expf coefficients), times 2^n built in the exponent bits.
/// Within 2 ulp of `f32::exp`; below −87.3 (where f32 underflows) the result is 0.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
    // SAFETY: AVX2/FMA by contract; no memory is touched.
    unsafe {
        let underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3), _CMP_LT_OQ);
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.3));
        let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        // r = x − n·ln2 in two steps (ln2 split into a part exact in f32 and the rest).
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        // (Cephes lists the last one as 5.0000001e-1, which is 0.5 in f32.)
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let er = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
        _mm256_andnot_ps(underflow, _mm256_mul_ps(er, pow2n))
    }
}

/// [`exp8`] on eight values: `out[i] = e^x[i]`.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp8_array(x: [f32; 8]) -> [f32; 8] {
    let mut out = [0.0f32; 8];
    // SAFETY: both arrays hold eight f32; AVX2/FMA by contract.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_loadu_ps(x.as_ptr()))) };
    out
}

/// `w ← exp(w − max)` for every weight; returns their sum.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[inline(always)]
unsafe fn exp_shifted_inline(w: &mut [f32], max: f32) -> f32 {
    // SAFETY: lanes `i..i + 8` with `i + 8 <= len` are inside `w`; AVX2/FMA by contract.
    unsafe {
        let m = _mm256_set1_ps(max);
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= w.len() {
            let p = w.as_mut_ptr().add(i);
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), m));
            _mm256_storeu_ps(p, e);
            acc = _mm256_add_ps(acc, e);
            i += 8;
        }
        hsum8(acc) + crate::attention::exp_shifted_scalar(&mut w[i..], max)
    }
}

/// [`exp_shifted_inline`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_shifted(w: &mut [f32], max: f32) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { exp_shifted_inline(w, max) }
}

/// One key/value group's softmax part ([`crate::attention::attend`]) with the AVX2 loops
/// inlined into one function compiled for AVX2, FMA and F16C.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend<'a, T: crate::attention::CacheElem + 'a>(
    q: &[&[f32]],
    rows: (impl Fn(usize) -> &'a [T], impl Fn(usize) -> &'a [T]),
    range: (usize, bool),
    weights: &mut [f32],
    scale: f32,
    out: &mut [f32],
) -> Vec<(f32, f32)> {
    let dot = |a: &[f32], b: &[T]| {
        // SAFETY: the CPU has the features this function is compiled for (its contract).
        unsafe { T::dot_avx2(a, b) }
    };
    let axpy = |w, x: &[T], o: &mut [f32]| {
        // SAFETY: as for `dot`.
        unsafe { T::axpy_avx2(w, x, o) }
    };
    let exp = |w: &mut [f32], m| {
        // SAFETY: as for `dot`.
        unsafe { exp_shifted_inline(w, m) }
    };
    let kernels = (dot, axpy, exp);
    crate::attention::attend(q, rows, range, weights, scale, out, kernels)
}

// ---------------------------------------------------------------------------------------------
// bf16 matmul microkernel (AVX-512 BF16)
// ---------------------------------------------------------------------------------------------

/// `acc [MR, NR] += a · b` over `kp` pairs of packed bf16 operands (see `bf16.rs`): for each
/// pair, each row's pair broadcast against two vectors of 16 column pairs, `vdpbf16ps` adding
/// the high products, then the low, into the f32 lanes, as `bf16::micro_scalar` does.
///
/// # Safety
/// The CPU supports AVX-512F and AVX-512 BF16; `a` is valid for reading `kp·MR` u32 values and
/// `b` for `kp·NR` (no alignment needed).
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn bf16_micro(a: *const u32, b: *const u32, kp: usize, acc: &mut [f32; BF16_MR * BF16_NR]) {
    // SAFETY: AVX-512F/BF16 and the readable ranges, by this function's contract; each load
    // reads 16 u32 at b + q·NR (+16) < b + kp·NR, each broadcast one u32 at a + q·MR + r.
    unsafe {
        let mut sums = [[_mm512_setzero_ps(); 2]; BF16_MR];
        for q in 0..kp {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(q * BF16_NR) as *const _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(q * BF16_NR + 16) as *const _));
            for (r, row) in sums.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(q * BF16_MR + r) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                row[1] = _mm512_dpbf16_ps(row[1], av, b1);
            }
        }
        for (r, row) in sums.iter().enumerate() {
            _mm512_storeu_ps(acc.as_mut_ptr().add(r * BF16_NR), row[0]);
            _mm512_storeu_ps(acc.as_mut_ptr().add(r * BF16_NR + 16), row[1]);
        }
    }
}
