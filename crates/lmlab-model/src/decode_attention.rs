//! Attention for one new position over the KV cache (a decode step), in plain loops.
//!
//! Why not candle ops: for one query the work is tiny (heads × cached positions × head size)
//! while the generic path runs two batched matmuls, a scale and a softmax through candle's
//! dispatch and thread pool, and reads the cache through a strided view. At 512 cached
//! positions that cost SmolLM2 more per token than the arithmetic itself. Inference only: no
//! gradient, no weight capture, no dropout (the caller falls back to the generic path for those).

use candle_core::{DType, Result, Storage, Tensor};

/// A strided view of a [B, H, S, Dh] tensor whose rows (last axis) are contiguous.
struct Rows<'a, T> {
    data: &'a [T],
    start: usize,
    stride: [usize; 3],
}

impl<T> Rows<'_, T> {
    fn row(&self, b: usize, h: usize, s: usize, len: usize) -> &[T] {
        let at = self.start + b * self.stride[0] + h * self.stride[1] + s * self.stride[2];
        &self.data[at..at + len]
    }
}

fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy_scalar(w: f32, x: &[f32], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

/// The sum of eight lanes (pairwise: high half onto low, then within the four).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn hsum8(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)))
}

// The default x86-64 target has no AVX: without these the loops run 4 lanes wide at best.
// They are inlined into `attend_avx2`, which enables the features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc);
        i += 8;
    }
    hsum8(acc) + dot_scalar(&a[i..n], &b[i..n])
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn axpy_avx2(w: f32, x: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len().min(out.len());
    let wv = _mm256_set1_ps(w);
    let mut i = 0;
    while i + 8 <= n {
        let o = out.as_mut_ptr().add(i);
        _mm256_storeu_ps(o, _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(o)));
        i += 8;
    }
    axpy_scalar(w, &x[i..n], &mut out[i..n]);
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The query heads of one key/value group over cached rows `first..first + len` (len =
/// `weights.len() / qs.len()`): for each query `r`, the largest score `m_r`, `l_r = Σ e^(score −
/// m_r)`, and `Σ e^(score − m_r)·v` added into `out[r]` — a softmax part that
/// [`merge_parts`] combines with the other parts of the cache. With `whole` (the range is the
/// whole cache) the weights are normalised before they are summed into `out` and `l_r` is 1:
/// the plain softmax, rounded as before parts existed. Each key and value row is read
/// once for the whole group (grouped-query attention shares them), not once per query head.
#[inline(always)]
/// `(dot, axpy, exp_shifted)` are the vector kernels to use.
fn attend<'a, T: 'a>(
    qs: &[&[f32]],
    (k, v): (impl Fn(usize) -> &'a [T], impl Fn(usize) -> &'a [T]),
    (first, whole): (usize, bool),
    weights: &mut [f32],
    scale: f32,
    out: &mut [f32],
    (dot, axpy, exp_shifted): (impl Fn(&[f32], &[T]) -> f32, impl Fn(f32, &[T], &mut [f32]), impl Fn(&mut [f32], f32) -> f32),
) -> Vec<(f32, f32)> {
    let (rep, len, hd) = (qs.len(), weights.len() / qs.len(), out.len() / qs.len());
    let mut max = vec![f32::NEG_INFINITY; rep];
    for i in 0..len {
        let kr = k(first + i);
        for (r, q) in qs.iter().enumerate() {
            let w = dot(q, kr) * scale;
            weights[r * len + i] = w;
            max[r] = max[r].max(w);
        }
    }
    let mut sum: Vec<f32> = (0..rep).map(|r| exp_shifted(&mut weights[r * len..(r + 1) * len], max[r])).collect();
    for i in 0..len {
        let vr = v(first + i);
        for r in 0..rep {
            let w = if whole { weights[r * len + i] / sum[r] } else { weights[r * len + i] };
            axpy(w, vr, &mut out[r * hd..(r + 1) * hd]);
        }
    }
    if whole {
        sum.fill(1.0);
    }
    max.into_iter().zip(sum).collect()
}

/// Combines softmax parts over disjoint ranges of the cache: with `M` the largest part maximum,
/// each part's sum and output are scaled by `e^(m − M)`, and the output divided by the total sum.
fn merge_parts(parts: &[(Vec<(f32, f32)>, Vec<f32>)], r: usize, hd: usize, out: &mut [f32]) {
    let big = parts.iter().map(|(ms, _)| ms[r].0).fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0f32;
    out.fill(0.0);
    for (ms, o) in parts {
        let (m, l) = ms[r];
        let c = (m - big).exp();
        total += c * l;
        for (d, x) in out.iter_mut().zip(&o[r * hd..(r + 1) * hd]) {
            *d += c * x;
        }
    }
    out.iter_mut().for_each(|d| *d /= total);
}

/// `w ← exp(w − max)` for every weight; returns their sum.
fn exp_shifted_scalar(w: &mut [f32], max: f32) -> f32 {
    let mut sum = 0.0f32;
    for x in w.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// e^x for eight lanes, x ≤ 0 (softmax arguments): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a
/// degree-6 polynomial (Cephes' expf coefficients), times 2^n built in the exponent bits.
/// Within 2 ulp of `f32::exp`; below −87.3 (where f32 underflows) the result is 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3), _CMP_LT_OQ);
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.3));
    let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x − n·ln2 in two steps (ln2 split into a part exact in f32 and the rest).
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let er = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
    _mm256_andnot_ps(underflow, _mm256_mul_ps(er, pow2n))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn exp_shifted_avx2(w: &mut [f32], max: f32) -> f32 {
    use std::arch::x86_64::*;
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
    hsum8(acc) + exp_shifted_scalar(&mut w[i..], max)
}

/// What a KV cache may hold: f32, or f16 as llama.cpp keeps it (half the bytes to read per
/// step at long contexts), widened to f32 for the arithmetic.
trait CacheElem: Copy + Sync + candle_core::WithDType {
    fn dot_scalar(q: &[f32], k: &[Self]) -> f32;
    fn axpy_scalar(w: f32, x: &[Self], out: &mut [f32]);
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx2(q: &[f32], k: &[Self]) -> f32;
    #[cfg(target_arch = "x86_64")]
    unsafe fn axpy_avx2(w: f32, x: &[Self], out: &mut [f32]);
}

impl CacheElem for f32 {
    fn dot_scalar(q: &[f32], k: &[f32]) -> f32 {
        dot_scalar(q, k)
    }
    fn axpy_scalar(w: f32, x: &[f32], out: &mut [f32]) {
        axpy_scalar(w, x, out)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dot_avx2(q: &[f32], k: &[f32]) -> f32 {
        dot_avx2(q, k)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn axpy_avx2(w: f32, x: &[f32], out: &mut [f32]) {
        axpy_avx2(w, x, out)
    }
}

impl CacheElem for half::f16 {
    fn dot_scalar(q: &[f32], k: &[half::f16]) -> f32 {
        q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum()
    }
    fn axpy_scalar(w: f32, x: &[half::f16], out: &mut [f32]) {
        for (o, v) in out.iter_mut().zip(x) {
            *o += w * v.to_f32();
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dot_avx2(q: &[f32], k: &[half::f16]) -> f32 {
        use std::arch::x86_64::*;
        let n = q.len().min(k.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            let kv = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), kv, acc);
            i += 8;
        }
        hsum8(acc) + Self::dot_scalar(&q[i..n], &k[i..n])
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn axpy_avx2(w: f32, x: &[half::f16], out: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = x.len().min(out.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let o = out.as_mut_ptr().add(i);
            let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
            _mm256_storeu_ps(o, _mm256_fmadd_ps(wv, xv, _mm256_loadu_ps(o)));
            i += 8;
        }
        Self::axpy_scalar(w, &x[i..n], &mut out[i..n]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_avx2<'a, T: CacheElem + 'a>(q: &[&[f32]], k: impl Fn(usize) -> &'a [T], v: impl Fn(usize) -> &'a [T], range: (usize, bool), weights: &mut [f32], scale: f32, out: &mut [f32]) -> Vec<(f32, f32)> {
    attend(
        q,
        (k, v),
        range,
        weights,
        scale,
        out,
        (|a: &[f32], b: &[T]| unsafe { T::dot_avx2(a, b) }, |w, x: &[T], o: &mut [f32]| unsafe { T::axpy_avx2(w, x, o) }, |w: &mut [f32], m| unsafe { exp_shifted_avx2(w, m) }),
    )
}

/// `q` [B, H, 1, Dh] f32; `k`, `v` [B, Hkv, S, Dh] in f32 or f16, with H a multiple of Hkv
/// (query head `h` reads key/value head `h / (H / Hkv)`). Returns softmax(q·kᵀ·scale)·v as
/// [B, H, 1, Dh] f32.
pub fn single_query_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (_, _, t, _) = q.dims4()?;
    if t != 1 || q.dtype() != DType::F32 || !q.device().is_cpu() {
        candle_core::bail!("single_query_attention takes one f32 CPU query position");
    }
    if k.dtype() != v.dtype() {
        candle_core::bail!("keys are {:?} but values {:?}", k.dtype(), v.dtype());
    }
    match k.dtype() {
        DType::F32 => attention_over::<f32>(q, k, v, scale),
        DType::F16 => attention_over::<half::f16>(q, k, v, scale),
        other => candle_core::bail!("single_query_attention reads f32 or f16 caches, not {other:?}"),
    }
}

fn attention_over<T: CacheElem>(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (b, h, _, hd) = q.dims4()?;
    let (_, hkv, s, _) = k.dims4()?;
    let q = q.contiguous()?;
    let (k, v) = (if k.stride()[3] == 1 { k.clone() } else { k.contiguous()? }, if v.stride()[3] == 1 { v.clone() } else { v.contiguous()? });
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs)) = (&*qs, &*ks, &*vs) else { candle_core::bail!("CPU tensors expected") };
    let (qd, kd, vd) = (qs.as_slice::<f32>()?, ks.as_slice::<T>()?, vs.as_slice::<T>()?);
    fn view<'a, E>(data: &'a [E], l: &candle_core::Layout) -> Rows<'a, E> {
        let st = l.stride();
        Rows { data, start: l.start_offset(), stride: [st[0], st[1], st[2]] }
    }
    let (qv, kv, vv) = (view(qd, ql), view(kd, kl), view(vd, vl));
    let rep = h / hkv;
    let avx2 = has_avx2();
    // Work items: (sequence, key/value group, range of cached positions). A long cache is cut
    // into ranges so that every thread gets an equal share (SmolLM2 has 3 groups for 2
    // threads); a short one is one item per group, on this thread.
    let parallel = s * h >= 2048;
    let pieces = if parallel { (2 * rayon::current_num_threads()).div_ceil(hkv).clamp(1, s.max(1)) } else { 1 };
    let one_part = |item: usize| -> (Vec<(f32, f32)>, Vec<f32>) {
        let (bg, c) = (item / pieces, item % pieces);
        let (bi, g) = (bg / hkv, bg % hkv);
        let (first, end) = (c * s / pieces, (c + 1) * s / pieces);
        let mut weights = vec![0.0f32; rep * (end - first)];
        let mut o = vec![0.0f32; rep * hd];
        let qrows: Vec<&[f32]> = (0..rep).map(|r| qv.row(bi, g * rep + r, 0, hd)).collect();
        let (krow, vrow) = (|si| kv.row(bi, g, si, hd), |si| vv.row(bi, g, si, hd));
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2, FMA and F16C were detected.
            let ms = unsafe { attend_avx2(&qrows, krow, vrow, (first, pieces == 1), &mut weights, scale, &mut o) };
            return (ms, o);
        }
        let ms = attend(&qrows, (krow, vrow), (first, pieces == 1), &mut weights, scale, &mut o, (T::dot_scalar, T::axpy_scalar, exp_shifted_scalar));
        (ms, o)
    };
    let items = b * hkv * pieces;
    let parts: Vec<(Vec<(f32, f32)>, Vec<f32>)> = if parallel {
        use rayon::prelude::*;
        (0..items).into_par_iter().map(one_part).collect()
    } else {
        (0..items).map(one_part).collect()
    };
    let mut out = vec![0.0f32; b * h * hd];
    for (bg, group_parts) in parts.chunks(pieces).enumerate() {
        let (bi, g) = (bg / hkv, bg % hkv);
        for r in 0..rep {
            let at = (bi * h + g * rep + r) * hd;
            merge_parts(group_parts, r, hd, &mut out[at..at + hd]);
        }
    }
    Tensor::from_vec(out, (b, h, 1, hd), q.device())
}

/// `w ← exp(w − max)` for every weight, eight lanes at a time where the CPU allows; returns
/// their sum. Shared with the prompt attention so both round alike.
pub(crate) fn exp_shifted(w: &mut [f32], max: f32) -> f32 {
    // The features enabled here, so that the always-inlined vector code compiles to them.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn vector(w: &mut [f32], max: f32) -> f32 {
        exp_shifted_avx2(w, max)
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { vector(w, max) };
    }
    exp_shifted_scalar(w, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn softmax_parts_merge_to_the_whole() {
        // Two query heads over 37 rows, in one piece and in three uneven pieces merged.
        let (rep, s, hd) = (2, 37, 8);
        let val = |i: usize| ((i * 7919 % 1000) as f32 / 250.0) - 2.0;
        let keys: Vec<Vec<f32>> = (0..s).map(|i| (0..hd).map(|j| val(i * hd + j)).collect()).collect();
        let vals: Vec<Vec<f32>> = (0..s).map(|i| (0..hd).map(|j| val(5000 + i * hd + j)).collect()).collect();
        let qs: Vec<Vec<f32>> = (0..rep).map(|r| (0..hd).map(|j| val(9000 + r * hd + j)).collect()).collect();
        let qrefs: Vec<&[f32]> = qs.iter().map(|q| &q[..]).collect();
        let kernels = (dot_scalar, axpy_scalar, exp_shifted_scalar);
        let part = |first: usize, end: usize, whole: bool| {
            let (mut w, mut o) = (vec![0.0; rep * (end - first)], vec![0.0; rep * hd]);
            let ms = attend(&qrefs, (|i| &keys[i][..], |i| &vals[i][..]), (first, whole), &mut w, 0.5, &mut o, kernels);
            (ms, o)
        };
        let whole = [part(0, s, true)];
        let pieces = [part(0, 5, false), part(5, 30, false), part(30, s, false)];
        for r in 0..rep {
            let (mut a, mut b) = (vec![0.0; hd], vec![0.0; hd]);
            merge_parts(&whole, r, hd, &mut a);
            merge_parts(&pieces, r, hd, &mut b);
            assert_eq!(a, whole[0].1[r * hd..(r + 1) * hd], "one piece passes through unchanged");
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-6, "head {r}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn vector_exp_is_within_two_ulp_of_libm() {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            use std::arch::x86_64::*;
            let xs: Vec<f32> = (0..200_000).map(|i| -(i as f32) * 4.4e-4).chain([0.0, -1e-30, -87.0, -87.3, -88.0, -100.0, -1e30]).collect();
            for chunk in xs.chunks(8).filter(|c| c.len() == 8) {
                let mut got = [0.0f32; 8];
                // SAFETY: AVX2 and FMA were detected.
                unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(chunk.as_ptr()))) };
                for (x, g) in chunk.iter().zip(got) {
                    let want = x.exp();
                    if *x < -87.3 {
                        assert_eq!(g, 0.0, "e^{x}");
                    } else {
                        let ulp = (want.to_bits() as i64 - g.to_bits() as i64).abs();
                        assert!(ulp <= 2, "e^{x}: {g} vs {want} ({ulp} ulp)");
                    }
                }
            }
        }
    }

    #[test]
    fn matches_softmax_attention_computed_with_tensor_ops() {
        let dev = Device::Cpu;
        // A short cache (one thread) and a long one (spread over threads).
        for s in [13, 400] {
            let (b, h, hkv, hd) = (2, 6, 2, 20);
            let q = Tensor::randn(0f32, 1.0, (b, h, 1, hd), &dev).unwrap();
            // Keys and values as views into a larger buffer, as the KV cache hands them out.
            let kbuf = Tensor::randn(0f32, 1.0, (b, hkv, s + 19, hd), &dev).unwrap();
            let vbuf = Tensor::randn(0f32, 1.0, (b, hkv, s + 19, hd), &dev).unwrap();
            let (k, v) = (kbuf.narrow(2, 0, s).unwrap(), vbuf.narrow(2, 0, s).unwrap());
            let scale = 1.0 / (hd as f32).sqrt();
            let got = single_query_attention(&q, &k, &v, scale).unwrap();
            // An f16 cache gives what f32 arithmetic gives on the f16-rounded keys and values.
            let (k16, v16) = (kbuf.to_dtype(DType::F16).unwrap().narrow(2, 0, s).unwrap(), vbuf.to_dtype(DType::F16).unwrap().narrow(2, 0, s).unwrap());
            let got16 = single_query_attention(&q, &k16, &v16, scale).unwrap();
            let want16 = single_query_attention(&q, &k16.to_dtype(DType::F32).unwrap(), &v16.to_dtype(DType::F32).unwrap(), scale).unwrap();
            let diff16 = (&got16 - &want16).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff16 < 1e-6, "s={s} f16: {diff16}");
            // Reference: repeat each key/value head for its query heads, then plain tensor ops.
            let rep = h / hkv;
            let expand = |t: &Tensor| t.unsqueeze(2).unwrap().repeat((1, 1, rep, 1, 1)).unwrap().reshape((b, h, s, hd)).unwrap();
            let (ke, ve) = (expand(&k.contiguous().unwrap()), expand(&v.contiguous().unwrap()));
            let scores = (q.matmul(&ke.t().unwrap()).unwrap() * scale as f64).unwrap();
            let want = candle_nn::ops::softmax_last_dim(&scores).unwrap().matmul(&ve).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "s={s}: {diff}");
        }
    }
}
