//! Matmul kernels for ggml's Q4_1 and Q8_0 weights.
//!
//! Why hand-written: candle 0.11 multiplies Q4_1 with a scalar loop (no SIMD), which left
//! SmolLM2-135M decoding at 20 tokens/s, and it rounds the activations' block sums (`s`) in
//! half precision twice, so logits came out differently from llama.cpp's. The kernels here
//! quantize the activations to 8 bits exactly as ggml's x86 code does (scale 127/amax, round
//! half to even, for Q4_1 `s = fp16(d · Σq)`), then take block dot products: with AVX2 or
//! AVX-VNNI where the CPU has them (`x86_64.rs`), else with the scalar reference here, which
//! does the same arithmetic in another summation order. Weights stay in ggml's block layout
//! (decoding is bound by memory bandwidth: unpacking the f16 scales to f32 made it slower).
//! Decode takes four weight rows against the one activation row, prefetching the weights
//! ahead; prefill takes four weight rows against two activation rows, so each weight block is
//! unpacked once for both and its scales are converted once for all rows. Rayon spreads runs
//! of weight rows over the threads.

use half::f16;
use rayon::prelude::*;

use crate::cpu::Isa;

/// Elements per ggml block.
pub const BLOCK: usize = 32;

/// The ggml weight types these kernels multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantKind {
    /// ggml block: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles (low nibbles are
    /// elements 0..16, high nibbles 16..32).
    Q4_1,
    /// ggml block: f16 scale `d`, 32 signed bytes.
    Q8_0,
}

impl QuantKind {
    /// Bytes of one block of 32 weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantKind::Q4_1 => 20,
            QuantKind::Q8_0 => 34,
        }
    }
}

/// One block of activations quantized to 8 bits: scale `d` and (for Q4_1) `s = d · Σ qs`,
/// both rounded to f16 as ggml stores them but kept as f32.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct ActBlock {
    /// The block's scale: `amax / 127`, rounded to f16.
    pub d: f32,
    /// `d · Σ qs`, rounded to f16 (Q4_1's minimum term uses it).
    pub s: f32,
    /// The quantized values.
    pub qs: [i8; BLOCK],
}

impl ActBlock {
    /// An all-zero block.
    pub const ZERO: ActBlock = ActBlock { d: 0.0, s: 0.0, qs: [0; BLOCK] };
}

/// Quantizes one row (`x.len()` a multiple of 32) the way ggml's x86 `quantize_row_q8_1` (and,
/// ignoring `s`, `quantize_row_q8_0`) does.
pub fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
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

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// One weight row (ggml blocks) against one activation row: the scalar reference. Per block
/// `d_w·d_x·Σ w·q` accumulated in order, the minimum terms fused into their own running sum.
pub(crate) fn dot_scalar(kind: QuantKind, w: &[u8], x: &[ActBlock]) -> f32 {
    let mut acc = 0.0f32;
    let mut summs = 0.0f32;
    for (wb, xb) in w.chunks_exact(kind.block_bytes()).zip(x) {
        let (sumi, m): (i32, f32) = match kind {
            QuantKind::Q4_1 => (
                (0..BLOCK / 2)
                    .map(|j| (wb[4 + j] & 0x0F) as i32 * xb.qs[j] as i32 + (wb[4 + j] >> 4) as i32 * xb.qs[j + BLOCK / 2] as i32)
                    .sum(),
                half_at(wb, 2),
            ),
            QuantKind::Q8_0 => ((0..BLOCK).map(|j| wb[2 + j] as i8 as i32 * xb.qs[j] as i32).sum(), 0.0),
        };
        acc += half_at(wb, 0) * xb.d * sumi as f32;
        summs = m.mul_add(xb.s, summs);
    }
    acc + summs
}

/// The scales and minimums of four weight rows, block by block, as f32 (`[d0..d3]`,
/// `[m0..m3]`): the scalar reference for the F16C conversion the prefill kernel uses.
pub fn group_scales(kind: QuantKind, w: [&[u8]; 4]) -> Vec<[[f32; 4]; 2]> {
    let bb = kind.block_bytes();
    (0..w[0].len() / bb)
        .map(|b| {
            let at = |r: usize, off: usize| half_at(w[r], b * bb + off);
            let m = |r: usize| if kind == QuantKind::Q4_1 { at(r, 2) } else { 0.0 };
            [[at(0, 0), at(1, 0), at(2, 0), at(3, 0)], [m(0), m(1), m(2), m(3)]]
        })
        .collect()
}

/// Four weight rows of `blocks` blocks each against one activation row, on `isa`.
///
/// Panics when a row is shorter than `x`, or when `isa` is not supported by this CPU.
pub fn dot4(isa: Isa, kind: QuantKind, w: [&[u8]; 4], x: &[ActBlock]) -> [f32; 4] {
    assert!(w.iter().all(|r| r.len() >= x.len() * kind.block_bytes()), "dot4: a weight row is shorter than the activations");
    assert!(isa.supported(), "dot4: this CPU cannot run {}", isa.name());
    // SAFETY: both conditions of `dot4_rows` asserted just above.
    let [row, _] = unsafe { dot4_rows(isa, kind, w, None, [x, x], false) };
    row
}

/// Four weight rows against two activation rows with the rows' scales from [`group_scales`]
/// (prefill and batched decode), on `isa`. `stream` prefetches the weights as decode does.
///
/// Panics when a row is shorter than `dm`, or when `isa` is not supported by this CPU.
pub fn dot4x2(isa: Isa, kind: QuantKind, w: [&[u8]; 4], dm: &[[[f32; 4]; 2]], x: [&[ActBlock]; 2], stream: bool) -> [[f32; 4]; 2] {
    assert!(
        w.iter().all(|r| r.len() >= dm.len() * kind.block_bytes()) && x.iter().all(|r| r.len() >= dm.len()),
        "dot4x2: rows shorter than the scales"
    );
    assert!(isa.supported(), "dot4x2: this CPU cannot run {}", isa.name());
    let n = dm.len();
    // SAFETY: both conditions of `dot4_rows` asserted just above (the rows cut to `dm`'s length).
    unsafe { dot4_rows(isa, kind, w, Some(dm), [&x[0][..n], &x[1][..n]], stream) }
}

/// [`group_scales`] with F16C where `isa` has it (the same bits).
pub fn group_scales_on(isa: Isa, kind: QuantKind, w: [&[u8]; 4]) -> Vec<[[f32; 4]; 2]> {
    assert!(w.iter().all(|r| r.len() >= w[0].len()), "group_scales: rows of different lengths");
    assert!(isa.supported(), "group_scales: this CPU cannot run {}", isa.name());
    match isa {
        Isa::Scalar => group_scales(kind, w),
        // SAFETY: AVX2 and F16C are part of both SIMD levels (asserted supported); rows 1..4
        // are at least as long as row 0 (asserted).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { crate::x86_64::group_scales(kind, w) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar kernels exist on this architecture"),
    }
}

/// `dst = x Wᵀ` for `m` activation rows `x` [m, k] and weights W [n, k] given as ggml blocks,
/// row after row, on the instruction set [`crate::isa`] chose.
pub fn quant_matmul(kind: QuantKind, weights: &[u8], (n, k): (usize, usize), x: &[f32], m: usize, dst: &mut [f32]) {
    quant_matmul_on(crate::isa(), kind, weights, (n, k), x, m, dst)
}

/// [`quant_matmul`] on a given instruction set (tests compare them).
///
/// Panics when the buffers do not fit the shapes, or when this CPU cannot run `isa`.
pub fn quant_matmul_on(isa: Isa, kind: QuantKind, weights: &[u8], (n, k): (usize, usize), x: &[f32], m: usize, dst: &mut [f32]) {
    let blocks = k / BLOCK;
    let row_bytes = blocks * kind.block_bytes();
    assert!(k.is_multiple_of(BLOCK) && weights.len() == n * row_bytes, "quant_matmul: {} weight bytes for [{n}, {k}]", weights.len());
    assert!(x.len() == m * k && dst.len() == m * n, "quant_matmul: x has {} values and dst {} for m={m}, n={n}, k={k}", x.len(), dst.len());
    let xq = quantize_rows(x, m, k);
    // Work items are runs of weight rows (a multiple of 4): each is read once for all
    // activation rows.
    let rows_per_item = (n / (8 * rayon::current_num_threads())).clamp(16, 256) / 4 * 4;
    let parts: Vec<(usize, Vec<f32>)> = weights
        .par_chunks(rows_per_item * row_bytes)
        .enumerate()
        .map(|(item, wrows)| (item * rows_per_item, rows_times_activations(isa, kind, wrows, row_bytes, &xq, m)))
        .collect();
    for (start, out) in parts {
        let count = out.len() / m.max(1);
        for i in 0..m {
            dst[i * n + start..i * n + start + count].copy_from_slice(&out[i * count..(i + 1) * count]);
        }
    }
}

/// The activations quantized row by row (`m` rows of `k`).
fn quantize_rows(x: &[f32], m: usize, k: usize) -> Vec<ActBlock> {
    let blocks = k / BLOCK;
    let mut xq = vec![ActBlock::ZERO; m * blocks];
    // A rayon dispatch costs more than quantizing a few rows (decode has one).
    if m < 16 {
        xq.chunks_mut(blocks).zip(x.chunks(k)).for_each(|(q, row)| quantize_row(row, q));
    } else {
        xq.par_chunks_mut(blocks).zip(x.par_chunks(k)).for_each(|(q, row)| quantize_row(row, q));
    }
    xq
}

/// The four-row kernels without checks: [`dot4`] (`dm` None, the answer in row 0) or
/// [`dot4x2`] (`dm` given) on `isa`. The public functions check each call; the matmul's inner
/// loop (tens of thousands of calls per prompt) checks once for all of them.
///
/// # Safety
/// `isa` is supported by this CPU, every row of `w` holds `x[c].len()` blocks of `kind`, and
/// the two rows of `x` (equal for decode) have the same length, which `dm` matches when given.
#[inline(always)]
unsafe fn dot4_rows(
    isa: Isa,
    kind: QuantKind,
    w: [&[u8]; 4],
    dm: Option<&[[[f32; 4]; 2]]>,
    x: [&[ActBlock]; 2],
    stream: bool,
) -> [[f32; 4]; 2] {
    match (isa, dm) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded contract.
        (Isa::Avx2, None) => [unsafe { crate::x86_64::dot4_avx2(kind, w, x[0]) }, [0.0; 4]],
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded contract.
        (Isa::AvxVnni, None) => [unsafe { crate::x86_64::dot4_vnni(kind, w, x[0]) }, [0.0; 4]],
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded contract.
        (Isa::Avx2, Some(dm)) => unsafe { crate::x86_64::dot4x2_avx2(kind, w, dm, x, stream) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded contract.
        (Isa::AvxVnni, Some(dm)) => unsafe { crate::x86_64::dot4x2_vnni(kind, w, dm, x, stream) },
        (_, None) => [w.map(|r| dot_scalar(kind, r, x[0])), [0.0; 4]],
        (_, Some(_)) => x.map(|xr| w.map(|r| dot_scalar(kind, r, xr))),
    }
}

/// One run of weight rows against all `m` activation rows: [m, count], row-major.
fn rows_times_activations(isa: Isa, kind: QuantKind, wrows: &[u8], row_bytes: usize, xq: &[ActBlock], m: usize) -> Vec<f32> {
    let blocks = xq.len() / m.max(1);
    let count = wrows.len() / row_bytes;
    let rows: Vec<&[u8]> = wrows.chunks_exact(row_bytes).collect();
    let mut out = vec![0.0f32; m * count];
    // Few activation rows: each weight byte is used a few times only and comes from memory.
    let stream = m <= 8;
    let mut j = 0;
    // Once for every call below: each weight row has `blocks` blocks (rows come from
    // chunks_exact of row_bytes = blocks · block size), each activation row has `blocks`.
    assert!(isa.supported() && row_bytes == blocks * kind.block_bytes() && xq.len() == m * blocks, "quant matmul: inconsistent shapes");
    if isa != Isa::Scalar {
        while j + 4 <= count {
            let w4 = [rows[j], rows[j + 1], rows[j + 2], rows[j + 3]];
            if m == 1 {
                // SAFETY: checked above for the whole run of rows.
                out[j..j + 4].copy_from_slice(&unsafe { dot4_rows(isa, kind, w4, None, [xq, xq], stream) }[0]);
            } else {
                let dm = group_scales_on(isa, kind, w4);
                // Activation rows in pairs; an odd last row is paired with itself.
                for i in (0..m).step_by(2) {
                    let i2 = (i + 1).min(m - 1);
                    let x2 = [&xq[i * blocks..(i + 1) * blocks], &xq[i2 * blocks..(i2 + 1) * blocks]];
                    // SAFETY: checked above; `dm` has one entry per block of these rows.
                    let d = unsafe { dot4_rows(isa, kind, w4, Some(&dm), x2, stream) };
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
    out
}
