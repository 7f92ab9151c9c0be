//! Matrix products with bf16 inputs and f32 sums: what mixed-precision training multiplies
//! with. Both inputs are rounded to bf16 (round to nearest even) while they are packed, and
//! every product of two bf16 values is exact in f32, so the result differs from the f32
//! product only by the inputs' rounding and the order of the sums.
//!
//! Layout: the right matrix is packed once into panels of [`NR`] columns, the left one per
//! block of [`MR`] rows, each as 32-bit pairs of bf16 values adjacent along `k` — the operand
//! shape of AVX-512 BF16's `vdpbf16ps`, which adds a pair's two products into one f32 lane.
//! The microkernel keeps an MR × NR tile of sums in registers (16 vectors of 16 lanes). Where
//! the CPU lacks AVX-512 BF16 (or under `LMLAB_SIMD=off`) the scalar microkernel computes the
//! same sums in the same order.

use rayon::prelude::*;

use crate::gemm::View;

/// Rows per microkernel tile.
pub(crate) const MR: usize = 8;
/// Columns per microkernel tile: two vectors of 16 f32 lanes.
pub(crate) const NR: usize = 32;
/// Rows per rayon task.
const ROW_BLOCK: usize = 64;

/// The bf16 bits of `x`, rounded to nearest even (as `half::bf16::from_f32`; NaN stays NaN).
/// Written out because packing converts every input, and the library's checks cost more than
/// the arithmetic here.
fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return (bits >> 16) | 0x40;
    }
    (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
}

/// Two values along `k` as one 32-bit operand: the lower `k` in the low half.
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

/// The two bf16 halves of a pair, widened to f32 exactly: (low, high).
fn unpair(p: u32) -> (f32, f32) {
    (f32::from_bits(p << 16), f32::from_bits(p & 0xFFFF_0000))
}

/// `b` [k, n] as panels of NR columns; within a panel, for each pair of rows of `b`, NR pairs.
/// Past the matrix's edge (an odd `k`, the last panel's missing columns) the pairs are zeros.
/// Reads along whichever direction `b` is contiguous in.
fn pack_b(b: View, k: usize, n: usize) -> Vec<u32> {
    let kp = k.div_ceil(2);
    let mut packed = vec![0u32; n.div_ceil(NR) * kp * NR];
    let value = |kk: usize, j: usize| if kk < k { b.at(kk, j) } else { 0.0 };
    packed.par_chunks_mut(kp * NR).enumerate().for_each(|(p, panel)| {
        let cols = NR.min(n - p * NR);
        if b.row_stride == 1 {
            // Each column of b is contiguous along k (b is a transposed row-major matrix).
            for c in 0..cols {
                let j = p * NR + c;
                for q in 0..kp {
                    panel[q * NR + c] = pair(value(2 * q, j), value(2 * q + 1, j));
                }
            }
        } else {
            for q in 0..kp {
                for c in 0..cols {
                    let j = p * NR + c;
                    panel[q * NR + c] = pair(value(2 * q, j), value(2 * q + 1, j));
                }
            }
        }
    });
    packed
}

/// Rows `r0..r0 + rows` (rows ≤ MR) of `a` [m, k]: for each pair of columns, MR pairs.
fn pack_a(a: View, r0: usize, rows: usize, k: usize, packed: &mut [u32]) {
    packed.fill(0);
    let value = |r: usize, kk: usize| if kk < k { a.at(r0 + r, kk) } else { 0.0 };
    if a.col_stride == 1 {
        // Rows contiguous along k: walk each row.
        for r in 0..rows {
            for q in 0..k.div_ceil(2) {
                packed[q * MR + r] = pair(value(r, 2 * q), value(r, 2 * q + 1));
            }
        }
    } else {
        for q in 0..k.div_ceil(2) {
            for r in 0..rows {
                packed[q * MR + r] = pair(value(r, 2 * q), value(r, 2 * q + 1));
            }
        }
    }
}

/// The scalar microkernel: `acc[r][c] += a_hi·b_hi`, then `+= a_lo·b_lo`, for each pair, as
/// `vdpbf16ps` adds them (each product exact in f32, each sum rounded).
fn micro_scalar(a: &[u32], b: &[u32], kp: usize, acc: &mut [f32; MR * NR]) {
    for q in 0..kp {
        for r in 0..MR {
            let (a_lo, a_hi) = unpair(a[q * MR + r]);
            for c in 0..NR {
                let (b_lo, b_hi) = unpair(b[q * NR + c]);
                let s = acc[r * NR + c] + a_hi * b_hi;
                acc[r * NR + c] = s + a_lo * b_lo;
            }
        }
    }
}

fn micro(a: &[u32], b: &[u32], kp: usize, acc: &mut [f32; MR * NR], simd: bool) {
    assert!(a.len() >= kp * MR && b.len() >= kp * NR, "bf16 microkernel: packed operands too short");
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true where the CPU has AVX-512F and AVX-512 BF16 (the caller
        // asks `use_avx512_bf16`), and the packed slices hold kp·MR and kp·NR values (asserted).
        unsafe { crate::x86_64::bf16_micro(a.as_ptr(), b.as_ptr(), kp, acc) };
        return;
    }
    let _ = simd;
    micro_scalar(a, b, kp, acc);
}

/// `c [m, n] (row-major) = a [m, k] · b [k, n]` with `a` and `b` rounded to bf16 and the
/// products summed in f32; `simd` picks the AVX-512 BF16 microkernel (only where the CPU has it).
pub(crate) fn gemm_bf16_on(c: &mut [f32], (m, n, k): (usize, usize, usize), a: View, b: View, simd: bool) {
    assert!(c.len() >= m * n, "bf16 gemm: output of {} values is smaller than [{m}, {n}]", c.len());
    assert!(!simd || crate::cpu::detected_avx512_bf16(), "bf16 gemm: this CPU has no AVX-512 BF16");
    if m * n == 0 {
        return;
    }
    a.check(m, k, "left matrix");
    b.check(k, n, "right matrix");
    let kp = k.div_ceil(2);
    let packed_b = pack_b(b, k, n);
    c[..m * n].par_chunks_mut(ROW_BLOCK * n).enumerate().for_each(|(blk, c_rows)| {
        let first = blk * ROW_BLOCK;
        let rows = c_rows.len() / n;
        let mut packed_a = vec![0u32; kp * MR];
        for r0 in (0..rows).step_by(MR) {
            let mr = MR.min(rows - r0);
            pack_a(a, first + r0, mr, k, &mut packed_a);
            for (p, panel) in packed_b.chunks_exact(kp * NR).enumerate() {
                let mut acc = [0.0f32; MR * NR];
                micro(&packed_a, panel, kp, &mut acc, simd);
                let cols = NR.min(n - p * NR);
                for r in 0..mr {
                    c_rows[(r0 + r) * n + p * NR..][..cols].copy_from_slice(&acc[r * NR..r * NR + cols]);
                }
            }
        }
    });
}

/// [`gemm_bf16_on`] with the microkernel this CPU runs.
pub(crate) fn gemm_bf16(c: &mut [f32], dims: (usize, usize, usize), a: View, b: View) {
    gemm_bf16_on(c, dims, a, b, crate::cpu::use_avx512_bf16())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(i: usize, seed: usize) -> f32 {
        (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0) - 1.0
    }

    fn round(x: f32) -> f64 {
        half::bf16::from_f32(x).to_f64()
    }

    #[test]
    fn rounding_to_bf16_is_the_half_crates() {
        let specials = [0.0f32, -0.0, 1.0, f32::MAX, f32::MIN_POSITIVE, 1e-40, f32::INFINITY, f32::NEG_INFINITY, 1.0 + f32::EPSILON * 64.0];
        let spread = (0..100_000u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)));
        for x in specials.into_iter().chain(spread).filter(|x| !x.is_nan()) {
            assert_eq!(bf16_bits(x), u32::from(half::bf16::from_f32(x).to_bits()), "{x:e}");
        }
        assert!(f32::from_bits(bf16_bits(f32::NAN) << 16).is_nan());
    }

    #[test]
    fn products_are_those_of_the_bf16_rounded_inputs_summed_in_f32() {
        // Odd sizes: an odd k (a zero-padded pair), a partial row tile and a partial panel.
        let (m, n, k) = (75, 45, 67);
        let a: Vec<f32> = (0..m * k).map(|i| val(i, 1)).collect();
        let b: Vec<f32> = (0..k * n).map(|i| val(i, 2)).collect();
        let mut c = vec![f32::NAN; m * n];
        gemm_bf16_on(&mut c, (m, n, k), View::rows(&a, k), View::rows(&b, n), false);
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|q| round(a[i * k + q]) * round(b[q * n + j])).sum();
                assert!((c[i * n + j] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "({i}, {j}): {} vs {want}", c[i * n + j]);
            }
        }
        // A transposed right matrix reads the same values through other strides.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut ct = vec![0.0f32; m * n];
        gemm_bf16_on(&mut ct, (m, n, k), View::rows(&a, k), View::transposed(&bt, k), false);
        assert_eq!(c, ct);
    }

    #[test]
    fn the_avx512_bf16_microkernel_equals_the_scalar_one_bit_for_bit() {
        if !crate::cpu::detected_avx512_bf16() {
            eprintln!("SKIPPED: this CPU has no AVX-512 BF16");
            return;
        }
        let (m, n, k) = (70, 100, 301);
        let a: Vec<f32> = (0..m * k).map(|i| val(i, 3) * 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| val(i, 4)).collect();
        let (mut scalar, mut simd) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
        gemm_bf16_on(&mut scalar, (m, n, k), View::rows(&a, k), View::rows(&b, n), false);
        gemm_bf16_on(&mut simd, (m, n, k), View::rows(&a, k), View::rows(&b, n), true);
        assert_eq!(scalar, simd);
    }
}
