//! Causal self-attention for training: forward and a hand-written backward that keeps no
//! T×T probability matrix between them.
//!
//! Layout: queries `q` [B, H, T, Dh], keys and values `k`, `v` [B, Hkv, T, Dh], all contiguous
//! f32, H a multiple of Hkv (grouped-query attention: query head `h` reads key/value head
//! `h / (H/Hkv)`). Query `i` sees key `j` when `j ≤ i` and, with `segments` [B, T], when both
//! belong to the same packed document.
//!
//! Both passes walk one (batch, key/value head) at a time, on rayon, and inside it blocks of
//! [`ROWS`] query rows of each of its query heads. A block's scores `S = scale·Q·Kᵀ` meet only
//! the keys up to the block's last row, in two small gemms. The backward recomputes the
//! block's probabilities from `q` and `k` (as FlashAttention does) instead of reading them from
//! memory: with the keys of a whole row in hand the softmax needs no running statistics, and
//! recomputing costs one more `Q·Kᵀ` gemm, cheaper than writing and reading B·H·T² floats.
//!
//! Gradients, per block, with `P` the probabilities, `Y = P·V` and `dY` the output gradient:
//! `dV += Pᵀ·dY`, `dP = dY·Vᵀ`, `dS = P ∘ (dP − rowsum(dY ∘ Y))`, `dQ = scale·dS·K`,
//! `dK += scale·dSᵀ·Q`. A key/value head's `dK` and `dV` sum over its query heads and blocks
//! inside one rayon item, so no two threads write the same gradient.

use rayon::prelude::*;

use crate::gemm::{gemm, View};

/// Query rows per block.
const ROWS: usize = 64;

/// The shape of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub len: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Values in one (batch, key/value head) slice of `q` (all its query heads) and of `k`.
    fn group_sizes(&self) -> (usize, usize) {
        (self.rep() * self.len * self.head_dim, self.len * self.head_dim)
    }

    /// An error naming what does not fit, or `Ok`.
    fn check(&self, q: &[f32], k: &[f32], v: &[f32], segments: Option<&[u32]>) -> Result<(), String> {
        let AttentionShape { batch: b, heads: h, kv_heads: hkv, len: t, head_dim: hd } = *self;
        if hkv == 0 || !h.is_multiple_of(hkv) {
            return Err(format!("attention: {h} query heads do not divide into {hkv} key/value heads"));
        }
        if q.len() != b * h * t * hd || k.len() != b * hkv * t * hd || v.len() != k.len() {
            return Err(format!(
                "attention: {} query, {} key and {} value numbers do not fit [B={b}, H={h}, Hkv={hkv}, T={t}, Dh={hd}]",
                q.len(),
                k.len(),
                v.len()
            ));
        }
        match segments {
            Some(s) if s.len() != b * t => Err(format!("attention: {} segment ids for {b} rows of {t} tokens", s.len())),
            _ => Ok(()),
        }
    }
}

/// Softmax probabilities of one block: rows `i0..i1` of one query head (`q_block`, row-major
/// [rows, Dh]) against keys `0..i1`. Writes `p` [rows, i1]; masked entries are exactly 0.
fn block_probabilities(p: &mut [f32], q_block: &[f32], k: &[f32], (i0, i1, hd): (usize, usize, usize), seg: Option<&[u32]>, scale: f32) {
    let keys = i1;
    gemm(p, (i1 - i0, keys, hd), View::rows(q_block, hd), View::transposed(k, hd), scale, false);
    for (r, row) in p.chunks_exact_mut(keys).enumerate() {
        let i = i0 + r;
        let visible = &mut row[..=i];
        if let Some(seg) = seg {
            for (j, s) in visible.iter_mut().enumerate() {
                if seg[j] != seg[i] {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        let max = visible.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for s in visible.iter_mut() {
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { (*s - max).exp() };
            sum += *s;
        }
        let inv = 1.0 / sum;
        visible.iter_mut().for_each(|s| *s *= inv);
        row[i + 1..].fill(0.0);
    }
}

/// The query blocks of a sequence of `t` rows: `(i0, i1)` pairs.
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t.div_ceil(ROWS)).map(move |blk| (blk * ROWS, ((blk + 1) * ROWS).min(t)))
}

/// Causal attention forward: returns `y` [B, H, T, Dh].
pub fn attention_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttentionShape,
    segments: Option<&[u32]>,
    scale: f32,
) -> Result<Vec<f32>, String> {
    shape.check(q, k, v, segments)?;
    let AttentionShape { len: t, head_dim: hd, .. } = shape;
    let (q_group, kv_group) = shape.group_sizes();
    let groups_per_row = shape.kv_heads;
    let mut y = vec![0.0f32; q.len()];
    y.par_chunks_mut(q_group.max(1)).enumerate().for_each(|(item, y_group)| {
        let (k_g, v_g) = (&k[item * kv_group..][..kv_group], &v[item * kv_group..][..kv_group]);
        let seg = segments.map(|s| &s[(item / groups_per_row) * t..][..t]);
        let mut p = vec![0.0f32; ROWS * t];
        for r in 0..shape.rep() {
            let head = item * q_group + r * t * hd;
            for (i0, i1) in blocks(t) {
                let p = &mut p[..(i1 - i0) * i1];
                block_probabilities(p, &q[head + i0 * hd..head + i1 * hd], k_g, (i0, i1, hd), seg, scale);
                let out = &mut y_group[r * t * hd + i0 * hd..r * t * hd + i1 * hd];
                gemm(out, (i1 - i0, hd, i1), View::rows(p, i1), View::rows(v_g, hd), 1.0, false);
            }
        }
    });
    Ok(y)
}

/// The gradients of attention's three inputs, each laid out as its input.
pub struct AttentionGrads {
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

/// Gradients `(dq, dk, dv)` of causal attention, given the forward's inputs, its output `y`
/// and the output's gradient `dy` (both [B, H, T, Dh]).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    y: &[f32],
    dy: &[f32],
    shape: AttentionShape,
    segments: Option<&[u32]>,
    scale: f32,
) -> Result<AttentionGrads, String> {
    shape.check(q, k, v, segments)?;
    if y.len() != q.len() || dy.len() != q.len() {
        return Err(format!("attention backward: output {} and gradient {} numbers for {} queries", y.len(), dy.len(), q.len()));
    }
    let AttentionShape { len: t, head_dim: hd, .. } = shape;
    let (q_group, kv_group) = shape.group_sizes();
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; q.len()], vec![0.0f32; k.len()], vec![0.0f32; v.len()]);
    dq.par_chunks_mut(q_group.max(1)).zip(dk.par_chunks_mut(kv_group.max(1))).zip(dv.par_chunks_mut(kv_group.max(1))).enumerate().for_each(
        |(item, ((dq_g, dk_g), dv_g))| {
            let (k_g, v_g) = (&k[item * kv_group..][..kv_group], &v[item * kv_group..][..kv_group]);
            let seg = segments.map(|s| &s[(item / shape.kv_heads) * t..][..t]);
            let mut p = vec![0.0f32; ROWS * t];
            let mut ds = vec![0.0f32; ROWS * t];
            for r in 0..shape.rep() {
                let head = item * q_group + r * t * hd;
                for (i0, i1) in blocks(t) {
                    let rows = i1 - i0;
                    let at = head + i0 * hd..head + i1 * hd;
                    let (q_b, y_b, dy_b) = (&q[at.clone()], &y[at.clone()], &dy[at]);
                    let (p, ds) = (&mut p[..rows * i1], &mut ds[..rows * i1]);
                    block_probabilities(p, q_b, k_g, (i0, i1, hd), seg, scale);
                    // dV[0..i1] += Pᵀ·dY
                    gemm(&mut dv_g[..i1 * hd], (i1, hd, rows), View::transposed(p, i1), View::rows(dy_b, hd), 1.0, true);
                    // dP = dY·Vᵀ, then dS = P ∘ (dP − rowsum(dY ∘ Y)) in place.
                    gemm(ds, (rows, i1, hd), View::rows(dy_b, hd), View::transposed(&v_g[..i1 * hd], hd), 1.0, false);
                    for r_i in 0..rows {
                        let d: f32 = dy_b[r_i * hd..][..hd].iter().zip(&y_b[r_i * hd..][..hd]).map(|(a, b)| a * b).sum();
                        for (s, &pv) in ds[r_i * i1..][..i1].iter_mut().zip(&p[r_i * i1..][..i1]) {
                            *s = pv * (*s - d);
                        }
                    }
                    let dq_b = &mut dq_g[r * t * hd + i0 * hd..r * t * hd + i1 * hd];
                    gemm(dq_b, (rows, hd, i1), View::rows(ds, i1), View::rows(&k_g[..i1 * hd], hd), scale, false);
                    gemm(&mut dk_g[..i1 * hd], (i1, hd, rows), View::transposed(ds, i1), View::rows(q_b, hd), scale, true);
                }
            }
        },
    );
    Ok(AttentionGrads { dq, dk, dv })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same attention in f64 loops, straight from the definition.
    fn reference(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape, seg: Option<&[u32]>, scale: f64) -> Vec<f64> {
        let AttentionShape { batch, heads, kv_heads, len: t, head_dim: hd } = s;
        let rep = heads / kv_heads;
        let mut y = vec![0.0f64; q.len()];
        for b in 0..batch {
            for h in 0..heads {
                let g = h / rep;
                let qh = |i: usize, d: usize| q[((b * heads + h) * t + i) * hd + d] as f64;
                let kv = |x: &[f32], j: usize, d: usize| x[((b * kv_heads + g) * t + j) * hd + d] as f64;
                for i in 0..t {
                    let sees = |j: usize| j <= i && seg.is_none_or(|sg| sg[b * t + j] == sg[b * t + i]);
                    let scores: Vec<f64> = (0..t)
                        .map(|j| if sees(j) { scale * (0..hd).map(|d| qh(i, d) * kv(k, j, d)).sum::<f64>() } else { f64::NEG_INFINITY })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..hd {
                        y[((b * heads + h) * t + i) * hd + d] = (0..t).map(|j| e[j] / sum * kv(v, j, d)).sum();
                    }
                }
            }
        }
        y
    }

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0) - 1.0).collect()
    }

    #[test]
    fn forward_matches_the_definition_in_f64_across_blocks_groups_and_segments() {
        // 150 rows span three blocks; two query heads share each key/value head.
        let s = AttentionShape { batch: 2, heads: 4, kv_heads: 2, len: 150, head_dim: 8 };
        let (q, k, v) = (data(2 * 4 * 150 * 8, 1), data(2 * 2 * 150 * 8, 2), data(2 * 2 * 150 * 8, 3));
        let seg: Vec<u32> = (0..2 * 150).map(|i| ((i % 150) / 40) as u32).collect();
        for segments in [None, Some(&seg[..])] {
            let y = attention_forward(&q, &k, &v, s, segments, 0.35).unwrap();
            let want = reference(&q, &k, &v, s, segments, 0.35);
            let worst = y.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-5, "worst difference {worst} (segments: {})", segments.is_some());
        }
    }

    #[test]
    fn backward_matches_finite_differences_of_the_f64_definition() {
        let s = AttentionShape { batch: 1, heads: 2, kv_heads: 1, len: 70, head_dim: 4 };
        let (q, k, v) = (data(2 * 70 * 4, 4), data(70 * 4, 5), data(70 * 4, 6));
        let seg: Vec<u32> = (0..70).map(|i| (i / 30) as u32).collect();
        let w = data(q.len(), 7); // the loss is Σ w ∘ y, so dy = w
        for segments in [None, Some(&seg[..])] {
            let y = attention_forward(&q, &k, &v, s, segments, 0.5).unwrap();
            let AttentionGrads { dq, dk, dv } = attention_backward(&q, &k, &v, &y, &w, s, segments, 0.5).unwrap();
            let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                reference(q, k, v, s, segments, 0.5).iter().zip(&w).map(|(a, b)| a * *b as f64).sum()
            };
            // Central differences at a spread of entries of each input.
            let check = |which: usize, grad: &[f32]| {
                for idx in (0..grad.len()).step_by(grad.len() / 13 + 1) {
                    let (mut inputs, h) = ([q.clone(), k.clone(), v.clone()], 1e-2f32);
                    inputs[which][idx] += h;
                    let up = loss(&inputs[0], &inputs[1], &inputs[2]);
                    inputs[which][idx] -= 2.0 * h;
                    let down = loss(&inputs[0], &inputs[1], &inputs[2]);
                    let numeric = (up - down) / (2.0 * h as f64);
                    assert!(
                        (numeric - grad[idx] as f64).abs() < 2e-3 * (1.0 + numeric.abs()),
                        "input {which} entry {idx}: analytic {} vs numeric {numeric}",
                        grad[idx]
                    );
                }
            };
            check(0, &dq);
            check(1, &dk);
            check(2, &dv);
        }
    }

    #[test]
    fn a_bad_shape_is_an_error_not_a_panic() {
        let s = AttentionShape { batch: 1, heads: 3, kv_heads: 2, len: 4, head_dim: 2 };
        assert!(attention_forward(&[0.0; 24], &[0.0; 16], &[0.0; 16], s, None, 1.0).unwrap_err().contains("do not divide"));
        let s = AttentionShape { kv_heads: 1, ..s };
        assert!(attention_forward(&[0.0; 5], &[0.0; 8], &[0.0; 8], s, None, 1.0).unwrap_err().contains("do not fit"));
    }
}
