//! Model behaviour: gradients against finite differences, every parameter trained, KV-cache
//! decoding equal to full recomputation, inference kernels equal to training ops, and the
//! published GPT-2 parameter count.

mod common;

use candle_core::{DType, Device, Tensor, D};
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::{Activation, CausalLm, GptConfig, Mode, Norm, Position};

fn tiny(norm: Norm, activation: Activation, position: Position, tie: bool, bias: bool, n_kv_head: usize) -> GptConfig {
    GptConfig {
        vocab_size: 17,
        context_length: 12,
        n_layer: 2,
        n_head: 4,
        n_kv_head,
        d_model: 16,
        d_ff: 24,
        norm,
        activation,
        position,
        rope_theta: 10_000.0,
        tie_embeddings: tie,
        dropout: 0.0,
        bias,
        norm_eps: 1e-5,
    }
}

/// The architectures the tests cover: GPT-2 style, Llama style with GQA, and an untied mix.
fn variants() -> Vec<GptConfig> {
    vec![
        tiny(Norm::LayerNorm, Activation::Gelu, Position::Learned, true, true, 4),
        tiny(Norm::RmsNorm, Activation::SwiGlu, Position::Rope, true, false, 2),
        tiny(Norm::LayerNorm, Activation::SwiGlu, Position::Rope, false, false, 1),
    ]
}

fn ids(b: usize, t: usize, v: usize, salt: usize, dev: &Device) -> Tensor {
    let data: Vec<u32> = (0..b * t).map(|i| ((i * 7 + salt * 3 + i * i) % v) as u32).collect();
    Tensor::from_vec(data, (b, t), dev).unwrap()
}

#[test]
fn gradients_match_central_finite_differences_in_f64() {
    let dev = Device::Cpu;
    for cfg in variants() {
        let (model, params) = init_trainable(&cfg, 3, DType::F64, &dev).unwrap();
        let x = ids(2, 6, cfg.vocab_size, 0, &dev);
        let y = ids(2, 6, cfg.vocab_size, 1, &dev);
        let grads = model.loss(&x, &y, &mut Mode::training_without_dropout()).unwrap().backward().unwrap();
        common::assert_gradients_match_fd(&format!("{cfg:?}"), &params, &grads, || {
            model.loss(&x, &y, &mut Mode::training_without_dropout()).unwrap().to_scalar::<f64>().unwrap()
        });
    }
}

#[test]
fn every_parameter_receives_a_nonzero_gradient() {
    let dev = Device::Cpu;
    for cfg in variants() {
        let (model, params) = init_trainable(&cfg, 1, DType::F32, &dev).unwrap();
        let x = ids(2, 8, cfg.vocab_size, 0, &dev);
        let y = ids(2, 8, cfg.vocab_size, 5, &dev);
        let grads = model.loss(&x, &y, &mut Mode::training_without_dropout()).unwrap().backward().unwrap();
        assert_eq!(params.num_elements(), cfg.param_count().total, "{cfg:?}");
        for (name, var) in &params.params {
            let g = grads.get(var).unwrap_or_else(|| panic!("{name}: no gradient"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{name}: gradient norm² {norm}");
        }
    }
}

/// `cfg`'s model with every matrix scaled by 10 from the init's std 0.02: logits spread over
/// several units and attention is far from uniform, so an error in positions or in the cache
/// moves the logits by much more than rounding does (with std 0.02 a RoPE off-by-one in decode
/// moved logits by ~5e-5 and passed a 1e-4 bound).
fn spread_model(cfg: &GptConfig, seed: u64) -> lmlab_model::Gpt {
    let (_, params) = init_trainable(cfg, seed, DType::F32, &Device::Cpu).unwrap();
    let tensors = params.tensors().into_iter().map(|(n, t)| if t.rank() == 2 { (n, (t * 10.0).unwrap()) } else { (n, t) }).collect();
    lmlab_model::Gpt::new(cfg, candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)).unwrap()
}

#[test]
fn kv_cache_decoding_matches_full_recomputation() {
    let dev = Device::Cpu;
    for cfg in variants() {
        // 300 positions: the cache outgrows its first 256-position buffer on the way.
        let cfg = GptConfig { context_length: 300, ..cfg };
        let model = spread_model(&cfg, 9);
        let seq = ids(1, cfg.context_length, cfg.vocab_size, 2, &dev);
        let full = model.forward(&seq, &mut Mode::inference()).unwrap().squeeze(0).unwrap(); // [T, V]
        let scale = full.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(scale > 1.0, "{cfg:?}: logits up to {scale} only: the test would not see small errors");
        // Prefill the first 5 tokens in one pass, then decode one token at a time.
        let mut cache = model.new_cache();
        let prefill = 5;
        let mut rows = vec![model.forward_cached_mode(&seq.narrow(1, 0, prefill).unwrap(), &mut cache, &mut Mode::inference()).unwrap()];
        for pos in prefill..cfg.context_length {
            rows.push(model.forward_cached_mode(&seq.narrow(1, pos, 1).unwrap(), &mut cache, &mut Mode::inference()).unwrap());
        }
        assert_eq!(cache.seq_len(), cfg.context_length);
        for (i, row) in rows.iter().enumerate() {
            let pos = prefill - 1 + i;
            let diff = (row.squeeze(0).unwrap() - full.get(pos).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max(D::Minus1)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // Attention over up to 300 cached positions sums in another order than the full
            // pass's matmul: f32 rounding, ~1e-6 of the logits' size.
            assert!(diff <= 1e-5 * scale, "{cfg:?}: position {pos} differs by {diff} (logits up to {scale})");
        }
        // Going past the context is an error, not a panic.
        assert!(model.forward_cached_mode(&seq.narrow(1, 0, 1).unwrap(), &mut cache, &mut Mode::inference()).is_err());
    }
}

#[test]
fn inference_kernels_agree_with_training_ops() {
    let dev = Device::Cpu;
    for cfg in variants() {
        let (model, _) = init_trainable(&cfg, 4, DType::F32, &dev).unwrap();
        let x = ids(3, 9, cfg.vocab_size, 7, &dev);
        let a = model.forward(&x, &mut Mode::inference()).unwrap();
        let b = model.forward(&x, &mut Mode::training_without_dropout()).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "{cfg:?}: {diff}");
    }
}

#[test]
fn attention_capture_returns_causal_distributions() {
    let dev = Device::Cpu;
    let cfg = &variants()[1];
    let (model, _) = init_trainable(cfg, 2, DType::F32, &dev).unwrap();
    let mut captured = Vec::new();
    let mut mode = Mode { grad: false, dropout: None, capture: Some(&mut captured), packing: None };
    model.forward(&ids(1, 6, cfg.vocab_size, 0, &dev), &mut mode).unwrap();
    assert_eq!(captured.len(), cfg.n_layer);
    let w: Vec<Vec<f32>> = captured[0].get(0).unwrap().get(0).unwrap().to_vec2().unwrap(); // [T, S]
    for (i, row) in w.iter().enumerate() {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(row[i + 1..].iter().all(|&p| p == 0.0), "row {i} attends to the future: {row:?}");
    }
}
