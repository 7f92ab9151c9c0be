//! Attention over a KV cache in plain loops: one new position (decode) and a block of prompt
//! positions (prefill), with the softmax exponential they share.
//!
//! Why not tensor ops: for one query the work is tiny (heads × cached positions × head size)
//! while a generic path runs two batched matmuls, a scale and a softmax through a framework's
//! dispatch and thread pool, and reads the cache through a strided view. At 512 cached
//! positions that cost SmolLM2 more per token than the arithmetic itself. For a prompt, each
//! block of 32 query rows (all query heads of one key/value group together, as grouped-query
//! attention shares the keys) meets only the keys up to its last row, in two small gemms.
//! Inference only: no gradient, no weight capture, no dropout.

use rayon::prelude::*;

use crate::cpu::Isa;
use crate::gemm::{gemm, View};

/// `Σ a·b`, in order: the scalar reference.
pub(crate) fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `out += w·x`: the scalar reference.
pub(crate) fn axpy_scalar(w: f32, x: &[f32], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

pub(crate) fn dot_f16_scalar(q: &[f32], k: &[half::f16]) -> f32 {
    q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum()
}

pub(crate) fn axpy_f16_scalar(w: f32, x: &[half::f16], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v.to_f32();
    }
}

/// `w ← exp(w − max)` for every weight; returns their sum. The scalar reference.
pub(crate) fn exp_shifted_scalar(w: &mut [f32], max: f32) -> f32 {
    let mut sum = 0.0f32;
    for x in w.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// `w ← exp(w − max)` for every weight, eight lanes at a time where the CPU allows; returns
/// their sum. Decode and prefill attention share it so both round alike.
pub(crate) fn exp_shifted(w: &mut [f32], max: f32) -> f32 {
    exp_shifted_on(crate::isa(), w, max)
}

/// [`exp_shifted`] on a given instruction set (tests compare them).
pub(crate) fn exp_shifted_on(isa: Isa, w: &mut [f32], max: f32) -> f32 {
    assert!(isa.supported(), "exp_shifted: this CPU cannot run {}", isa.name());
    match isa {
        Isa::Scalar => exp_shifted_scalar(w, max),
        // SAFETY: both SIMD levels include AVX2 and FMA, and the CPU supports them (asserted).
        #[cfg(target_arch = "x86_64")]
        _ => unsafe { crate::x86_64::exp_shifted(w, max) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar kernels exist on this architecture"),
    }
}

/// e^x of eight values with the vector polynomial (within 2 ulp of `f32::exp` for x ≤ 0, and 0
/// below −87.3), or `f32::exp` on the scalar path.
pub fn exp8_on(isa: Isa, x: [f32; 8]) -> [f32; 8] {
    assert!(isa.supported(), "exp8: this CPU cannot run {}", isa.name());
    match isa {
        Isa::Scalar => x.map(f32::exp),
        // SAFETY: both SIMD levels include AVX2 and FMA, and the CPU supports them (asserted).
        #[cfg(target_arch = "x86_64")]
        _ => unsafe { crate::x86_64::exp8_array(x) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar kernels exist on this architecture"),
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// What a KV cache may hold: f32, or f16 as llama.cpp keeps it (half the bytes to read per
/// step at long contexts), widened to f32 for the arithmetic.
pub trait CacheElem: Copy + Send + Sync + sealed::Sealed {
    /// `Σ q·k`, in order.
    fn dot_scalar(q: &[f32], k: &[Self]) -> f32;
    /// `out += w·x`.
    fn axpy_scalar(w: f32, x: &[Self], out: &mut [f32]);
    /// [`CacheElem::dot_scalar`] eight lanes at a time.
    ///
    /// # Safety
    /// The CPU supports AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx2(q: &[f32], k: &[Self]) -> f32;
    /// [`CacheElem::axpy_scalar`] eight lanes at a time.
    ///
    /// # Safety
    /// The CPU supports AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn axpy_avx2(w: f32, x: &[Self], out: &mut [f32]);
    /// The value as f32.
    fn widen(self) -> f32;
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
        // SAFETY: forwarded contract.
        unsafe { crate::x86_64::dot_f32(q, k) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn axpy_avx2(w: f32, x: &[f32], out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { crate::x86_64::axpy_f32(w, x, out) }
    }
    fn widen(self) -> f32 {
        self
    }
}

impl CacheElem for half::f16 {
    fn dot_scalar(q: &[f32], k: &[half::f16]) -> f32 {
        dot_f16_scalar(q, k)
    }
    fn axpy_scalar(w: f32, x: &[half::f16], out: &mut [f32]) {
        axpy_f16_scalar(w, x, out)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dot_avx2(q: &[f32], k: &[half::f16]) -> f32 {
        // SAFETY: forwarded contract.
        unsafe { crate::x86_64::dot_f16(q, k) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn axpy_avx2(w: f32, x: &[half::f16], out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { crate::x86_64::axpy_f16(w, x, out) }
    }
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// A strided view of a [B, H, S, Dh] buffer whose rows (the last axis) are contiguous: the
/// layout of a KV cache with room to spare.
#[derive(Clone, Copy)]
pub struct CacheView<'a, T> {
    data: &'a [T],
    start: usize,
    /// Element strides of the B, H and S axes.
    stride: [usize; 3],
    /// [B, H, S, Dh].
    dims: [usize; 4],
}

impl<'a, T> CacheView<'a, T> {
    /// A view of `data` from `start` with `dims` [B, H, S, Dh] and strides of the first three
    /// axes; checks that every row lies inside `data`.
    pub fn new(data: &'a [T], start: usize, dims: [usize; 4], stride: [usize; 3]) -> Result<Self, String> {
        let [b, h, s, hd] = dims;
        if b * h * s * hd > 0 {
            let last = start + (b - 1) * stride[0] + (h - 1) * stride[1] + (s - 1) * stride[2] + hd;
            if last > data.len() {
                return Err(format!(
                    "a [{b}, {h}, {s}, {hd}] view with strides {stride:?} from {start} reaches element {last} of {}",
                    data.len()
                ));
            }
        }
        Ok(Self { data, start, stride, dims })
    }

    /// A contiguous [B, H, S, Dh] buffer.
    pub fn contiguous(data: &'a [T], dims: [usize; 4]) -> Result<Self, String> {
        let [_, h, s, hd] = dims;
        Self::new(data, 0, dims, [h * s * hd, s * hd, hd])
    }

    /// [B, H, S, Dh].
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    fn row(&self, b: usize, h: usize, s: usize) -> &'a [T] {
        let at = self.start + b * self.stride[0] + h * self.stride[1] + s * self.stride[2];
        &self.data[at..at + self.dims[3]]
    }
}

/// The query heads of one key/value group over cached rows `first..first + len` (len =
/// `weights.len() / qs.len()`): for each query `r`, the largest score `m_r`, `l_r = Σ e^(score −
/// m_r)`, and `Σ e^(score − m_r)·v` added into `out[r]` — a softmax part that
/// [`merge_parts`] combines with the other parts of the cache. With `whole` (the range is the
/// whole cache) the weights are normalised before they are summed into `out` and `l_r` is 1:
/// the plain softmax. Each key and value row is read once for the whole group (grouped-query
/// attention shares them), not once per query head. `(dot, axpy, exp_shifted)` are the vector
/// kernels to use.
#[inline(always)]
pub(crate) fn attend<'a, T: 'a>(
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

/// One softmax part per query head of a group: `(max, sum)` per head and the unnormalised
/// outputs [rep, Dh].
type Part = (Vec<(f32, f32)>, Vec<f32>);

/// Combines softmax parts over disjoint ranges of the cache: with `M` the largest part maximum,
/// each part's sum and output are scaled by `e^(m − M)`, and the output divided by the total sum.
fn merge_parts(parts: &[Part], r: usize, hd: usize, out: &mut [f32]) {
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

/// Attention of one new position per sequence over its cache (a decode step).
///
/// `q` [B, H, Dh] contiguous f32; `k`, `v` [B, Hkv, S, Dh] with H a multiple of Hkv (query head
/// `h` reads key/value head `h / (H / Hkv)`). Returns softmax(q·kᵀ·scale)·v as [B, H, Dh].
pub fn decode_attention<T: CacheElem>(q: &[f32], h: usize, k: CacheView<T>, v: CacheView<T>, scale: f32) -> Result<Vec<f32>, String> {
    decode_attention_on(crate::isa(), q, h, k, v, scale)
}

/// [`decode_attention`] on a given instruction set (tests compare them).
pub fn decode_attention_on<T: CacheElem>(
    isa: Isa,
    q: &[f32],
    h: usize,
    k: CacheView<T>,
    v: CacheView<T>,
    scale: f32,
) -> Result<Vec<f32>, String> {
    let [b, hkv, s, hd] = k.dims();
    if v.dims() != k.dims() || hkv == 0 || !h.is_multiple_of(hkv) || q.len() != b * h * hd {
        return Err(format!(
            "decode attention: {} query values for {h} heads do not fit keys {:?} and values {:?}",
            q.len(),
            k.dims(),
            v.dims()
        ));
    }
    assert!(isa.supported(), "decode attention: this CPU cannot run {}", isa.name());
    let rep = h / hkv;
    // Work items: (sequence, key/value group, range of cached positions). A long cache is cut
    // into ranges so that every thread gets an equal share (SmolLM2 has 3 groups for 2
    // threads); a short one is one item per group, on this thread.
    let parallel = s * h >= 2048;
    let pieces = if parallel { (2 * rayon::current_num_threads()).div_ceil(hkv).clamp(1, s.max(1)) } else { 1 };
    let one_part = |item: usize| -> Part {
        let (bg, c) = (item / pieces, item % pieces);
        let (bi, g) = (bg / hkv, bg % hkv);
        let (first, end) = (c * s / pieces, (c + 1) * s / pieces);
        let mut weights = vec![0.0f32; rep * (end - first)];
        let mut o = vec![0.0f32; rep * hd];
        let qrows: Vec<&[f32]> = (0..rep).map(|r| &q[(bi * h + g * rep + r) * hd..(bi * h + g * rep + r + 1) * hd]).collect();
        let rows = (|si| k.row(bi, g, si), |si| v.row(bi, g, si));
        let ms = match isa {
            Isa::Scalar => {
                attend(&qrows, rows, (first, pieces == 1), &mut weights, scale, &mut o, (T::dot_scalar, T::axpy_scalar, exp_shifted_scalar))
            }
            // SAFETY: both SIMD levels include AVX2, FMA and F16C, and the CPU supports them
            // (asserted above).
            #[cfg(target_arch = "x86_64")]
            _ => unsafe { crate::x86_64::attend(&qrows, rows, (first, pieces == 1), &mut weights, scale, &mut o) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the scalar kernels exist on this architecture"),
        };
        (ms, o)
    };
    let items = b * hkv * pieces;
    let parts: Vec<Part> = if parallel { (0..items).into_par_iter().map(one_part).collect() } else { (0..items).map(one_part).collect() };
    let mut out = vec![0.0f32; b * h * hd];
    for (bg, group_parts) in parts.chunks(pieces).enumerate() {
        let (bi, g) = (bg / hkv, bg % hkv);
        for r in 0..rep {
            let at = (bi * h + g * rep + r) * hd;
            merge_parts(group_parts, r, hd, &mut out[at..at + hd]);
        }
    }
    Ok(out)
}

/// Query rows per prefill block: large enough for gemm to run at speed, small enough that the
/// masked corner of the diagonal block (about half a block of keys per row) stays cheap.
const ROWS: usize = 32;

/// Causal attention of a prompt's last `t` positions over the cache (prefill).
///
/// `q` [t, H·Dh] f32, the queries of the last `t` positions of the cache; `k`, `v` one
/// sequence's keys and values widened to f32, contiguous [Hkv, S, Dh] (H a multiple of Hkv).
/// Row `i` attends to cached positions `0..=S−t+i`. Returns [t, H·Dh].
pub fn causal_attention(
    q: &[f32],
    t: usize,
    h: usize,
    k: &[f32],
    v: &[f32],
    (hkv, s, hd): (usize, usize, usize),
    scale: f32,
) -> Result<Vec<f32>, String> {
    if t == 0 || q.len() != t * h * hd || s < t || hkv == 0 || !h.is_multiple_of(hkv) || k.len() != hkv * s * hd || v.len() != k.len() {
        return Err(format!("causal attention: {} query values for {t} rows and {h} heads do not fit a [{hkv}, {s}, {hd}] cache", q.len()));
    }
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
            let (kg, vg) = (&k[g * s * hd..(g + 1) * s * hd], &v[g * s * hd..(g + 1) * s * hd]);
            let mut scores = vec![0.0f32; rows * len];
            // Keys read as their transpose [hd, len]: element (d, j) at j·hd + d.
            gemm(&mut scores, (rows, len, hd), View::rows(&qs, hd), View::transposed(kg, hd), scale, false);
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
            gemm(&mut out, (rows, hd, len), View::rows(&scores, len), View::rows(vg, hd), 1.0, false);
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
                // Merging rescales by e^(m − M) and divides once more: a few f32 roundings.
                assert!((x - y).abs() < 1e-6, "head {r}: {x} vs {y}");
            }
        }
    }
}
