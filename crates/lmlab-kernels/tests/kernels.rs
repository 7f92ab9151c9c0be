//! Every kernel on every instruction set this CPU has, against its scalar reference and an
//! f64 computation of the same quantity. An instruction set the CPU lacks is named on stderr
//! ("NOT RUN on this CPU"), never passed silently.

use half::f16;
use lmlab_kernels::*;

/// A deterministic stream of values in [-1, 1) (64-bit LCG, top bits).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// The SIMD instruction sets to test: those this CPU runs; the others are named as not run.
fn simd_levels(what: &str) -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .filter(|isa| {
            let ok = isa.supported();
            if !ok {
                eprintln!("NOT RUN on this CPU: {what} on {} (the CPU lacks it; scalar and the others were checked)", isa.name());
            }
            ok
        })
        .collect()
}

/// Weights [n, k] quantized to ggml blocks by a plain quantizer, and their dequantized values
/// block by block as (scale, minimum, integer values).
struct Quantized {
    bytes: Vec<u8>,
    blocks: Vec<(f64, f64, [i32; BLOCK])>,
}

fn quantize(kind: QuantKind, w: &[f32]) -> Quantized {
    let mut bytes = Vec::new();
    let mut blocks = Vec::new();
    for xs in w.chunks_exact(BLOCK) {
        let mut q = [0i32; BLOCK];
        match kind {
            QuantKind::Q4_1 => {
                let (lo, hi) = xs.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let d = f16::from_f32((hi - lo) / 15.0);
                let m = f16::from_f32(lo);
                for (qi, v) in q.iter_mut().zip(xs) {
                    *qi = (((v - m.to_f32()) / d.to_f32()).round() as i32).clamp(0, 15);
                }
                bytes.extend(d.to_le_bytes());
                bytes.extend(m.to_le_bytes());
                bytes.extend((0..16).map(|j| (q[j] as u8) | ((q[j + 16] as u8) << 4)));
                blocks.push((d.to_f64(), m.to_f64(), q));
            }
            QuantKind::Q8_0 => {
                let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let d = f16::from_f32(amax / 127.0);
                for (qi, v) in q.iter_mut().zip(xs) {
                    *qi = ((v / d.to_f32()).round() as i32).clamp(-127, 127);
                }
                bytes.extend(d.to_le_bytes());
                bytes.extend(q.iter().map(|&v| v as i8 as u8));
                blocks.push((d.to_f64(), 0.0, q));
            }
        }
    }
    Quantized { bytes, blocks }
}

/// Row `j` of the weights against the quantized activation row `x`, in f64: the exact value
/// of what every kernel computes (Q4_1's minimum term uses the f16-rounded `s`, as ggml does),
/// and `Σ |terms|`, which bounds the f32 summation error.
fn exact_dot(w: &Quantized, j: usize, x: &[ActBlock]) -> (f64, f64) {
    let blocks = x.len();
    let (mut sum, mut abs) = (0.0f64, 0.0f64);
    for (b, xb) in x.iter().enumerate() {
        let (d, m, q) = &w.blocks[j * blocks + b];
        let ints: i64 = q.iter().zip(xb.qs).map(|(&a, c)| a as i64 * c as i64).sum();
        let terms = [d * xb.d as f64 * ints as f64, m * xb.s as f64];
        sum += terms[0] + terms[1];
        abs += terms[0].abs() + terms[1].abs();
    }
    (sum, abs)
}

fn quantized_rows(x: &[f32], k: usize) -> Vec<Vec<ActBlock>> {
    x.chunks(k)
        .map(|row| {
            let mut q = vec![ActBlock::ZERO; k / BLOCK];
            quantize_row(row, &mut q);
            q
        })
        .collect()
}

#[test]
fn quantized_matmul_matches_the_exact_product_on_every_instruction_set() {
    let mut rng = Lcg(7);
    // 70 rows: runs of 4 and a remainder for the scalar tail; m from one row (decode) to 17
    // (parallel quantization, an odd row paired with itself).
    let (n, k) = (70, 256);
    for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
        let w = quantize(kind, &rng.vec(n * k));
        for m in [1, 2, 3, 5, 17] {
            let x = rng.vec(m * k);
            let xq = quantized_rows(&x, k);
            let mut levels = vec![Isa::Scalar];
            levels.extend(simd_levels("quantized matmul"));
            for isa in levels {
                let mut got = vec![0.0f32; m * n];
                quant_matmul_on(isa, kind, &w.bytes, (n, k), &x, m, &mut got);
                for i in 0..m {
                    for j in 0..n {
                        let (want, abs) = exact_dot(&w, j, &xq[i]);
                        let g = got[i * n + j] as f64;
                        // f32 sums of k/32 = 8 block terms plus lane sums: each rounding at most
                        // 2⁻²⁴ of the running |sum|, so 16·2⁻²⁴·Σ|terms| < 1e-6·Σ|terms|.
                        assert!(
                            (g - want).abs() <= 1e-6 * abs,
                            "{kind:?} {} m={m} row {i} col {j}: {g} vs {want} (Σ|terms| {abs})",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn four_row_kernels_agree_bit_for_bit_between_decode_prefill_and_vnni() {
    let mut rng = Lcg(11);
    let k = 128;
    let xq = quantized_rows(&rng.vec(2 * k), k);
    for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
        let w = quantize(kind, &rng.vec(4 * k));
        let rows: Vec<&[u8]> = w.bytes.chunks_exact(k / BLOCK * kind.block_bytes()).collect();
        let w4 = [rows[0], rows[1], rows[2], rows[3]];
        let dm = group_scales(kind, w4);
        // The scalar prefill kernel is the scalar decode kernel, row by row.
        let scalar = dot4x2(Isa::Scalar, kind, w4, &dm, [&xq[0], &xq[1]], false);
        assert_eq!(scalar, [dot4(Isa::Scalar, kind, w4, &xq[0]), dot4(Isa::Scalar, kind, w4, &xq[1])]);
        let levels = simd_levels("four-row quantized kernels");
        for &isa in &levels {
            assert_eq!(group_scales_on(isa, kind, w4), dm, "{kind:?} {}: F16C and scalar scale conversion differ", isa.name());
            let decode = [dot4(isa, kind, w4, &xq[0]), dot4(isa, kind, w4, &xq[1])];
            for stream in [false, true] {
                // Same operations in the same order per output: the same bits.
                assert_eq!(
                    dot4x2(isa, kind, w4, &dm, [&xq[0], &xq[1]], stream),
                    decode,
                    "{kind:?} {} stream={stream}: prefill and decode kernels differ",
                    isa.name()
                );
            }
            for (got, x) in decode.iter().zip(&xq) {
                for (r, &g) in got.iter().enumerate() {
                    let (want, abs) = exact_dot(&w, r, x);
                    // As in the matmul test: a few f32 roundings of sums bounded by Σ|terms|.
                    assert!((g as f64 - want).abs() <= 1e-6 * abs, "{kind:?} {} row {r}", isa.name());
                }
            }
        }
        // AVX-VNNI's integer sums equal AVX2's maddubs/madd sums exactly.
        if levels.contains(&Isa::AvxVnni) {
            assert_eq!(dot4(Isa::AvxVnni, kind, w4, &xq[0]), dot4(Isa::Avx2, kind, w4, &xq[0]));
        }
    }
}

#[test]
fn activation_quantization_follows_ggml() {
    // amax 127 gives scale 1: values are their own quantized steps.
    let mut x = vec![0.0f32; BLOCK];
    x[..5].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -3.0]);
    let mut b = [ActBlock::ZERO];
    quantize_row(&x, &mut b);
    // Ties round to even, as ggml's AVX code does.
    assert_eq!(&b[0].qs[..5], &[127, 0, 2, 2, -3]);
    assert_eq!((b[0].d, b[0].s), (1.0, 128.0));
}

#[test]
fn vector_exp_is_within_two_ulp_of_libm() {
    let xs: Vec<f32> = (0..200_000).map(|i| -(i as f32) * 4.4e-4).chain([0.0, -1e-30, -87.0, -87.3, -88.0, -100.0, -1e30, -0.5]).collect();
    for isa in Isa::ALL.into_iter().filter(|i| i.supported()) {
        for chunk in xs.chunks_exact(8) {
            let got = exp8_on(isa, chunk.try_into().unwrap());
            for (x, g) in chunk.iter().zip(got) {
                let want = x.exp();
                if *x < -87.3 && isa != Isa::Scalar {
                    assert_eq!(g, 0.0, "e^{x}");
                } else {
                    let ulp = (want.to_bits() as i64 - g.to_bits() as i64).abs();
                    // Cephes' degree-6 polynomial: its stated accuracy.
                    assert!(ulp <= 2, "{}: e^{x}: {g} vs {want} ({ulp} ulp)", isa.name());
                }
            }
        }
    }
    let _ = simd_levels("vector exp");
}

/// Softmax attention in f64 for one query row against `len` key/value rows.
fn attention_f64(q: &[f32], keys: &[&[f32]], vals: &[&[f32]], scale: f32) -> Vec<f64> {
    let scores: Vec<f64> = keys.iter().map(|k| q.iter().zip(*k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale as f64).collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let z: f64 = e.iter().sum();
    let hd = vals[0].len();
    (0..hd).map(|d| e.iter().zip(vals).map(|(w, v)| w / z * v[d] as f64).sum()).collect()
}

#[test]
fn decode_attention_matches_f64_softmax_on_every_instruction_set() {
    let mut rng = Lcg(3);
    // A short cache (one thread, the plain softmax) and a long one (ranges merged).
    for s in [13, 400] {
        let (b, h, hkv, hd, spare) = (2, 6, 2, 20, 19);
        let cap = s + spare;
        let q = rng.vec(b * h * hd);
        // Keys and values in buffers with room to spare, as the KV cache holds them.
        let kbuf: Vec<f32> = rng.vec(b * hkv * cap * hd).iter().map(|v| 3.0 * v).collect();
        let vbuf = rng.vec(b * hkv * cap * hd);
        let stride = [hkv * cap * hd, cap * hd, hd];
        let scale = 1.0 / (hd as f32).sqrt();
        let k16: Vec<f16> = kbuf.iter().map(|&v| f16::from_f32(v)).collect();
        let v16: Vec<f16> = vbuf.iter().map(|&v| f16::from_f32(v)).collect();
        let (k16w, v16w): (Vec<f32>, Vec<f32>) = (k16.iter().map(|v| v.to_f32()).collect(), v16.iter().map(|v| v.to_f32()).collect());
        let mut levels = vec![Isa::Scalar];
        levels.extend(simd_levels("decode attention"));
        for isa in levels {
            let got = decode_attention_on(
                isa,
                &q,
                h,
                CacheView::new(&kbuf, 0, [b, hkv, s, hd], stride).unwrap(),
                CacheView::new(&vbuf, 0, [b, hkv, s, hd], stride).unwrap(),
                scale,
            )
            .unwrap();
            let got16 = decode_attention_on(
                isa,
                &q,
                h,
                CacheView::new(&k16, 0, [b, hkv, s, hd], stride).unwrap(),
                CacheView::new(&v16, 0, [b, hkv, s, hd], stride).unwrap(),
                scale,
            )
            .unwrap();
            for bi in 0..b {
                for hi in 0..h {
                    let g = hi / (h / hkv);
                    let rows = |buf: &[f32]| -> Vec<Vec<f32>> {
                        (0..s).map(|si| buf[bi * stride[0] + g * stride[1] + si * hd..][..hd].to_vec()).collect()
                    };
                    let qr = &q[(bi * h + hi) * hd..][..hd];
                    for (what, out, kb, vb) in [("f32", &got, &kbuf, &vbuf), ("f16", &got16, &k16w, &v16w)] {
                        let (kr, vr) = (rows(kb), rows(vb));
                        let want = attention_f64(
                            qr,
                            &kr.iter().map(|r| &r[..]).collect::<Vec<_>>(),
                            &vr.iter().map(|r| &r[..]).collect::<Vec<_>>(),
                            scale,
                        );
                        for (d, w) in want.iter().enumerate() {
                            let o = out[(bi * h + hi) * hd + d] as f64;
                            // Outputs are convex mixes of values in [-1, 1]: f32 sums over ≤ 400
                            // rows and the 2-ulp exponential stay well inside 1e-5.
                            assert!((o - w).abs() < 1e-5, "{} {what} s={s} seq {bi} head {hi} dim {d}: {o} vs {w}", isa.name());
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn prefill_attention_matches_a_masked_f64_softmax() {
    let mut rng = Lcg(5);
    // A prompt onto an empty cache (s = t) and onto a filled one; 70 rows = three blocks.
    for (t, s) in [(70, 70), (40, 90), (1, 9)] {
        let (h, hkv, hd) = (6, 2, 16);
        let q = rng.vec(t * h * hd);
        let k: Vec<f32> = rng.vec(hkv * s * hd).iter().map(|v| 3.0 * v).collect();
        let v = rng.vec(hkv * s * hd);
        let scale = 1.0 / (hd as f32).sqrt();
        let got = causal_attention(&q, t, h, &k, &v, (hkv, s, hd), scale).unwrap();
        for i in 0..t {
            for hi in 0..h {
                let g = hi / (h / hkv);
                let visible = s - t + i + 1;
                let kr: Vec<&[f32]> = (0..visible).map(|j| &k[(g * s + j) * hd..][..hd]).collect();
                let vr: Vec<&[f32]> = (0..visible).map(|j| &v[(g * s + j) * hd..][..hd]).collect();
                let want = attention_f64(&q[(i * h + hi) * hd..][..hd], &kr, &vr, scale);
                for (d, w) in want.iter().enumerate() {
                    let o = got[(i * h + hi) * hd + d] as f64;
                    // As for decode: f32 gemm sums over ≤ 90 keys of values in [-1, 1].
                    assert!((o - w).abs() < 1e-5, "t={t} s={s} row {i} head {hi} dim {d}: {o} vs {w}");
                }
            }
        }
    }
    assert!(causal_attention(&[0.0; 10], 1, 1, &[0.0; 16], &[0.0; 16], (1, 1, 16), 1.0).is_err(), "a query of the wrong size is refused");
}

#[test]
fn views_and_matmuls_refuse_buffers_that_do_not_fit() {
    assert!(CacheView::<f32>::new(&[0.0; 10], 0, [1, 1, 2, 8], [16, 16, 8]).is_err());
    assert!(CacheView::<f32>::contiguous(&[0.0; 16], [1, 1, 2, 8]).is_ok());
    let result = std::panic::catch_unwind(|| {
        let mut y = [0.0f32; 1];
        quant_matmul(QuantKind::Q8_0, &[0u8; 10], (1, 32), &[0.0; 32], 1, &mut y);
    });
    assert!(result.is_err(), "a weight buffer of the wrong size panics with a message, never reads out of bounds");
}

#[test]
fn simd_can_be_forced_off() {
    // `isa()` is read once per process, so the variable is checked through its parser here and
    // in CI by running the whole suite with LMLAB_SIMD=off (scripts/check.sh).
    if simd_forced_off() {
        assert_eq!(isa(), Isa::Scalar);
    } else {
        assert_eq!(isa(), detected());
    }
}
