//! The fused training ops against the composed ones they replace: values and gradients agree.
//! The composed reference runs in f64 (candle's autodiff of the definition), the fused op in
//! f32, so each comparison allows f32 rounding and nothing more.

use candle_core::{DType, Device, Result, Tensor, Var};
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::{fused, ops, Activation, GptConfig, Mode, Norm, Position};

/// Deterministic values in [-scale, scale) of the given shape, as f64.
fn values(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Largest |a − b| over all entries, relative to the largest |b| (so a gradient of entries
/// around 1e-4 is held to the same relative precision as one around 1).
fn worst(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, y| m.max(y.abs()));
    assert!(scale > 0.0, "the reference is all zeros: nothing would be compared");
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

/// Runs `f` on f32 variables (fused) and on f64 variables (composed), with the loss Σ r ∘ f(x)
/// for a fixed random `r`, and returns the worst value and gradient differences.
fn compare(
    inputs: &[Tensor],
    fused_fn: impl Fn(&[Tensor]) -> Result<Tensor>,
    composed_fn: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> (f64, Vec<f64>) {
    let run = |dtype: DType, f: &dyn Fn(&[Tensor]) -> Result<Tensor>| {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts).unwrap();
        let r = values(y.dims(), 99, 1.0).to_dtype(dtype).unwrap();
        let loss = (&y * &r).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Tensor> = vars.iter().map(|v| grads.get(v.as_tensor()).expect("every input gets a gradient").clone()).collect();
        (y, g)
    };
    let (y32, g32) = run(DType::F32, &fused_fn);
    let (y64, g64) = run(DType::F64, &composed_fn);
    (worst(&y32, &y64), g32.iter().zip(&g64).map(|(a, b)| worst(a, b)).collect())
}

fn assert_close(what: &str, (value, grads): (f64, Vec<f64>), tol: f64) {
    assert!(value < tol, "{what}: values differ by {value}");
    for (i, g) in grads.iter().enumerate() {
        assert!(*g < tol, "{what}: gradient of input {i} differs by {g}");
    }
}

#[test]
fn fused_ops_run_on_f32_cpu_tensors_only() {
    assert!(fused::fusable(&values(&[2], 1, 1.0).to_dtype(DType::F32).unwrap()));
    assert!(!fused::fusable(&values(&[2], 1, 1.0)), "f64 takes the composed path, which the tests use as reference");
}

#[test]
fn rms_norm_matches_the_composed_version() {
    let inputs = [values(&[3, 5, 48], 1, 2.0), values(&[48], 2, 1.0)];
    let got = compare(&inputs, |t| fused::rms_norm(&t[0], &t[1], 1e-5), |t| ops::composed_rms_norm(&t[0], &t[1], 1e-5));
    assert_close("rms_norm", got, 1e-5);
}

#[test]
fn layer_norm_matches_the_composed_version() {
    let inputs = [(values(&[7, 40], 3, 2.0) + 0.7).unwrap(), values(&[40], 4, 1.0), values(&[40], 5, 1.0)];
    let got = compare(
        &inputs,
        |t| fused::layer_norm(&t[0], &t[1], Some(&t[2]), 1e-5),
        |t| ops::composed_layer_norm(&t[0], &t[1], Some(&t[2]), 1e-5),
    );
    assert_close("layer_norm", got, 1e-5);
}

#[test]
fn swiglu_matches_silu_times_up() {
    let inputs = [values(&[4, 9, 33], 6, 4.0), values(&[4, 9, 33], 7, 2.0)];
    let got = compare(&inputs, |t| fused::swiglu(&t[0], &t[1]), |t| t[0].silu()? * &t[1]);
    assert_close("swiglu", got, 1e-5);
}

#[test]
fn linear_matches_matmul_by_the_transpose() {
    let inputs = [values(&[70, 24], 16, 2.0), values(&[40, 24], 17, 1.0)];
    let got = compare(&inputs, |t| fused::linear(&t[0], &t[1], None), |t| t[0].matmul(&t[1].t()?));
    assert_close("linear", got, 1e-5);
}

#[test]
fn rope_matches_the_composed_rotation_with_shared_and_per_row_tables() {
    let (b, h, t, d) = (2, 3, 11, 8);
    let (cos, sin) = ops::rope_tables(t, d, 10_000.0, DType::F64, &Device::Cpu).unwrap();
    // Per-row tables, as packed documents give: each row's positions shifted by its index.
    let per_row = |table: &Tensor| {
        Tensor::cat(&[table.unsqueeze(0).unwrap(), table.flip(&[0]).unwrap().unsqueeze(0).unwrap()], 0).unwrap().unsqueeze(1).unwrap()
    };
    let inputs = [values(&[b, h, t, d], 18, 2.0)];
    for (c, s) in [(cos.clone(), sin.clone()), (per_row(&cos), per_row(&sin))] {
        let (c32, s32) = (c.to_dtype(DType::F32).unwrap(), s.to_dtype(DType::F32).unwrap());
        let got = compare(&inputs, |x| fused::rope(&x[0], &c32, &s32), |x| ops::composed_rope(&x[0], &c, &s));
        assert_close("rope", got, 1e-5);
    }
}

#[test]
fn linear_with_bias_matches_matmul_plus_broadcast_bias() {
    let inputs = [values(&[70, 24], 19, 2.0), values(&[40, 24], 20, 1.0), values(&[40], 21, 1.0)];
    let got = compare(&inputs, |t| fused::linear(&t[0], &t[1], Some(&t[2])), |t| t[0].matmul(&t[1].t()?)?.broadcast_add(&t[2]));
    assert_close("linear_with_bias", got, 1e-5);
}

#[test]
fn gelu_matches_candles_tanh_gelu() {
    let inputs = [values(&[5, 77], 13, 5.0)];
    let got = compare(&inputs, |t| fused::gelu(&t[0]), |t| t[0].gelu());
    assert_close("gelu", got, 1e-5);
}

#[test]
fn cross_entropy_matches_log_softmax_and_gather_with_and_without_a_mask() {
    let (n, v) = (37, 300);
    let targets = Tensor::from_vec((0..n as u32).map(|i| (i * 97) % v as u32).collect::<Vec<_>>(), n, &Device::Cpu).unwrap();
    let mask = Tensor::from_vec((0..n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect::<Vec<f64>>(), n, &Device::Cpu).unwrap();
    let inputs = [values(&[n, v], 8, 6.0)];
    for m in [None, Some(&mask)] {
        let got = compare(
            &inputs,
            |t| ops::cross_entropy(&t[0], &targets, m.map(|m| m.to_dtype(DType::F32).unwrap()).as_ref()),
            |t| ops::composed_cross_entropy(&t[0], &targets, m),
        );
        assert_close("cross_entropy", got, 1e-5);
    }
}

#[test]
fn cross_entropy_names_a_target_outside_the_vocabulary() {
    let logits = values(&[2, 5], 9, 1.0).to_dtype(DType::F32).unwrap();
    let targets = Tensor::new(&[1u32, 5], &Device::Cpu).unwrap();
    let err = fused::cross_entropy_rows(&logits, &targets).unwrap_err().to_string();
    assert!(err.contains("row 1") && err.contains("target 5"), "{err}");
}

/// Attention composed of tensor ops: scores, an additive mask, softmax, weighted values.
fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor, segments: Option<&[u32]>, scale: f64) -> Result<Tensor> {
    let (b, h, t, _) = q.dims4()?;
    let rep = h / k.dim(1)?;
    let expand = |x: &Tensor| -> Result<Tensor> {
        let (b, hkv, t, d) = x.dims4()?;
        x.unsqueeze(2)?.expand((b, hkv, rep, t, d))?.reshape((b, hkv * rep, t, d))
    };
    let (k, v) = (expand(k)?, expand(v)?);
    let mut mask = vec![0.0f64; b * t * t];
    for bi in 0..b {
        for i in 0..t {
            for j in 0..t {
                let same = segments.is_none_or(|s| s[bi * t + i] == s[bi * t + j]);
                if j > i || !same {
                    mask[(bi * t + i) * t + j] = f64::NEG_INFINITY;
                }
            }
        }
    }
    let mask = Tensor::from_vec(mask, (b, 1, t, t), q.device())?.to_dtype(q.dtype())?;
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
    ops::softmax(&scores)?.matmul(&v)
}

#[test]
fn causal_attention_matches_the_composed_version_with_groups_and_packed_documents() {
    // 90 positions span two of the kernel's query blocks; 4 query heads share 2 key/value heads.
    let (b, h, hkv, t, d) = (2, 4, 2, 90, 16);
    let inputs = [values(&[b, h, t, d], 10, 1.5), values(&[b, hkv, t, d], 11, 1.5), values(&[b, hkv, t, d], 12, 1.0)];
    let segments: Vec<u32> = (0..b * t).map(|i| ((i % t) / 25) as u32 + (i / t) as u32).collect();
    for seg in [None, Some(&segments)] {
        let got = compare(
            &inputs,
            |x| fused::causal_attention(&x[0], &x[1], &x[2], seg.map(|s| std::sync::Arc::new(s.clone())), 0.25),
            |x| composed_attention(&x[0], &x[1], &x[2], seg.map(|s| &s[..]), 0.25),
        );
        assert_close("causal_attention", got, 1e-5);
    }
}

fn config(norm: Norm, activation: Activation, position: Position, bias: bool, n_kv_head: usize) -> GptConfig {
    GptConfig {
        vocab_size: 64,
        context_length: 80,
        n_layer: 2,
        n_head: 4,
        n_kv_head,
        d_model: 32,
        d_ff: 64,
        norm,
        activation,
        position,
        rope_theta: 10_000.0,
        tie_embeddings: true,
        dropout: 0.0,
        bias,
        norm_eps: 1e-5,
    }
}

#[test]
fn a_model_has_the_same_loss_and_gradients_fused_or_composed() {
    // A whole forward and backward, Llama style (GQA) and GPT-2 style, in f32 (every fused
    // op) and in f64 (every composed op), from the same initial weights.
    let dev = Device::Cpu;
    for cfg in [
        config(Norm::RmsNorm, Activation::SwiGlu, Position::Rope, false, 2),
        config(Norm::LayerNorm, Activation::Gelu, Position::Learned, true, 4),
        config(Norm::LayerNorm, Activation::SwiGlu, Position::Rope, false, 1),
    ] {
        let (b, t) = (2, 80);
        let ids = |salt: u32| {
            Tensor::from_vec((0..(b * t) as u32).map(|i| (i * 7 + salt + i * i) % 64).collect::<Vec<_>>(), (b, t), &dev).unwrap()
        };
        let (x, y) = (ids(0), ids(5));
        let run = |dtype: DType| {
            let (model, params) = init_trainable(&cfg, 3, dtype, &dev).unwrap();
            let loss = model.loss(&x, &y, &mut Mode::training_without_dropout()).unwrap();
            let grads = loss.backward().unwrap();
            let grads: Vec<Tensor> =
                params.params.iter().map(|(n, v)| grads.get(v).unwrap_or_else(|| panic!("{n}: no gradient")).clone()).collect();
            (loss, grads)
        };
        let (l32, g32) = run(DType::F32);
        let (l64, g64) = run(DType::F64);
        let loss_diff = worst(&l32, &l64);
        assert!(loss_diff < 1e-5, "{cfg:?}: loss differs by {loss_diff} (relative)");
        for (i, (a, b)) in g32.iter().zip(&g64).enumerate() {
            let diff = worst(a, b);
            assert!(diff < 1e-3, "{cfg:?}: parameter {i}'s gradient differs by {diff} of its largest entry");
        }
    }
}
