//! LoRA adapters at the model level: a fresh adapter (B = 0) changes nothing; the merged weight
//! W + (α/r)·B·A computes what the adapted model computes; each target touches only its own rows
//! of the fused projections; target lists parse; only adapter parameters are trained, and their
//! gradients match finite differences.

mod common;

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::{frozen_from_tensors, init_trainable};
use lmlab_model::params::ParamBackend;
use lmlab_model::{Activation, Gpt, GptConfig, LoraConfig, LoraTarget as Target, Mode, ParamSet};
use rand::{Rng, SeedableRng};

/// Llama style with grouped queries (4 query heads, 2 KV heads: the k and v blocks of the fused
/// c_attn are half the size of q's), untied head.
fn llama() -> GptConfig {
    GptConfig { tie_embeddings: false, ..GptConfig::llama_style(19, 12, 2, 4, 2, 16, 24) }
}

/// GPT-2 style: GELU MLP (no gate), biases, LayerNorm, learned positions.
fn gpt2() -> GptConfig {
    GptConfig::gpt2_style(19, 12, 2, 4, 16, 24)
}

/// A base model's weights as `init_trainable` makes them: tensors of trainable variables, as a
/// caller holding a freshly initialised or trained model would pass them.
fn base_weights(cfg: &GptConfig, dtype: DType) -> HashMap<String, Tensor> {
    init_trainable(cfg, 5, dtype, &Device::Cpu).unwrap().1.tensors()
}

/// The base as frozen tensors with fresh adapters from a trainable builder.
fn adapted(cfg: &GptConfig, base: &HashMap<String, Tensor>, lora: &LoraConfig, dtype: DType) -> (Gpt, ParamSet, usize) {
    let dev = Device::Cpu;
    let mut model = frozen_from_tensors(cfg, base.clone(), dtype, &dev).unwrap();
    let (vb, collector) = ParamBackend::var_builder(11, None, dtype, &dev);
    let n = model.add_lora(lora, &vb).unwrap();
    (model, collector.finish(), n)
}

fn lora(targets: &[Target]) -> LoraConfig {
    LoraConfig { rank: 3, alpha: 6.0, targets: targets.to_vec() }
}

/// The adapters a model of this activation can carry: every target but gate on a GELU model.
fn all_targets(cfg: &GptConfig) -> Vec<Target> {
    Target::ALL.into_iter().filter(|&t| !(t == Target::Gate && cfg.activation == Activation::Gelu)).collect()
}

/// Sets every B to seeded normal values (a trained adapter), leaving A as initialised.
fn randomize_b(params: &ParamSet, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in params.params.iter().filter(|(n, _)| n.ends_with(".lora_b")) {
        let n = var.elem_count();
        let values: Vec<f64> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
        let t = Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap().to_dtype(var.dtype()).unwrap();
        var.set(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn ids(cfg: &GptConfig, b: usize, t: usize, salt: usize) -> Tensor {
    let data: Vec<u32> = (0..b * t).map(|i| ((i * 7 + salt * 5 + i * i) % cfg.vocab_size) as u32).collect();
    Tensor::from_vec(data, (b, t), &Device::Cpu).unwrap()
}

fn logits(model: &Gpt, x: &Tensor) -> Vec<f32> {
    model.forward(x, &mut Mode::inference()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn fresh_adapters_leave_the_logits_exactly_those_of_the_base() {
    for cfg in [llama(), gpt2()] {
        let base = base_weights(&cfg, DType::F32);
        let plain = frozen_from_tensors(&cfg, base.clone(), DType::F32, &Device::Cpu).unwrap();
        let x = ids(&cfg, 2, 12, 0);
        let want = logits(&plain, &x);
        // All targets (one adapter per projection), and q alone (an adapter on part of the fused
        // c_attn, zeros beside it).
        for targets in [all_targets(&cfg), vec![Target::Q]] {
            let (model, params, _) = adapted(&cfg, &base, &lora(&targets), DType::F32);
            assert_eq!(logits(&model, &x), want, "{:?} {targets:?}: B = 0 must change nothing", cfg.activation);
            // The comparison sees adapters once B is not zero.
            randomize_b(&params, 1);
            assert!(max_abs_diff(&logits(&model, &x), &want) > 1e-3, "{:?} {targets:?}: trained adapters change nothing", cfg.activation);
        }
    }
}

#[test]
fn merged_weights_in_a_plain_model_give_the_adapted_model_s_logits() {
    for cfg in [llama(), gpt2()] {
        let base = base_weights(&cfg, DType::F32);
        let lcfg = lora(&all_targets(&cfg));
        let (model, params, _) = adapted(&cfg, &base, &lcfg, DType::F32);
        randomize_b(&params, 2);
        let merged = model.named_weights().unwrap();
        assert_eq!(merged.keys().collect::<BTreeSet<_>>(), base.keys().collect::<BTreeSet<_>>(), "merging renames nothing");
        let plain = frozen_from_tensors(&cfg, merged.clone(), DType::F32, &Device::Cpu).unwrap();
        let x = ids(&cfg, 2, 12, 1);
        let (got, want) = (logits(&plain, &x), logits(&model, &x));
        // The same sums in another order (x·(W + sBA)ᵀ against x·Wᵀ + s(x·Aᵀ)·Bᵀ), through two
        // layers: f32 rounding of values of order 1.
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-5, "{:?}: merged logits differ by {d}", cfg.activation);

        // The merge itself, against W + (α/r)·B·A in f64 for one adapted projection (layer 1's
        // up projection: the whole matrix).
        let (w_name, prefix) = match cfg.activation {
            Activation::Gelu => ("h.1.mlp.c_fc.weight", "h.1.mlp.c_fc"),
            Activation::SwiGlu => ("h.1.mlp.up_proj.weight", "h.1.mlp.up_proj"),
        };
        let get = |n: &str| params.get(n).unwrap_or_else(|| panic!("no {n}")).as_tensor().to_dtype(DType::F64).unwrap();
        let (a, b) = (get(&format!("{prefix}.lora_a")), get(&format!("{prefix}.lora_b")));
        let want = (base[w_name].to_dtype(DType::F64).unwrap() + (b.matmul(&a).unwrap() * lcfg.scale()).unwrap()).unwrap();
        let want: Vec<f32> = flat(&want.to_dtype(DType::F32).unwrap());
        assert!(max_abs_diff(&flat(&merged[w_name]), &want) < 1e-6, "{w_name} is not W + (α/r)·B·A");
        assert!(max_abs_diff(&flat(&merged[w_name]), &flat(&base[w_name])) > 1e-3, "{w_name} was not merged");
    }
}

#[test]
fn each_target_changes_only_its_own_rows_of_its_own_projection() {
    let cfg = llama();
    let (d, kv, f) = (cfg.d_model, cfg.n_kv_head * cfg.head_dim(), cfg.d_ff);
    assert!(kv < d, "the test needs grouped queries, so that the q, k and v blocks differ in size");
    let base = base_weights(&cfg, DType::F32);
    // (target, the tensor of each layer it changes, the rows of it)
    let cases = [
        (Target::Q, "attn.c_attn", 0..d),
        (Target::K, "attn.c_attn", d..d + kv),
        (Target::V, "attn.c_attn", d + kv..d + 2 * kv),
        (Target::O, "attn.c_proj", 0..d),
        (Target::Gate, "mlp.gate_proj", 0..f),
        (Target::Up, "mlp.up_proj", 0..f),
        (Target::Down, "mlp.down_proj", 0..d),
    ];
    for (target, layer, rows) in cases {
        let (model, params, _) = adapted(&cfg, &base, &lora(&[target]), DType::F32);
        randomize_b(&params, 3);
        let merged = model.named_weights().unwrap();
        for (name, w) in &merged {
            let (before, after) = (base[name].to_vec2::<f32>(), w.to_vec2::<f32>());
            let touched = (0..cfg.n_layer).any(|i| *name == format!("h.{i}.{layer}.weight"));
            match (touched, before, after) {
                (true, Ok(before), Ok(after)) => {
                    assert_eq!(before.len(), after.len());
                    for (r, (x, y)) in before.iter().zip(&after).enumerate() {
                        if rows.contains(&r) {
                            // Every row of the block moves: B·A has rank 3 with random B.
                            assert_ne!(x, y, "{target:?}: row {r} of {name} is in its block but unchanged");
                        } else {
                            assert_eq!(x, y, "{target:?}: row {r} of {name} is outside its block but changed");
                        }
                    }
                }
                _ => assert_eq!(flat(w), flat(&base[name]), "{target:?} changed {name}"),
            }
        }
    }
}

#[test]
fn target_lists_parse_groups_and_reject_unknown_names() {
    use Target::*;
    assert_eq!(Target::parse_list("attn").unwrap(), [Q, K, V, O]);
    assert_eq!(Target::parse_list("mlp").unwrap(), [Gate, Up, Down]);
    assert_eq!(Target::parse_list("all").unwrap(), Target::ALL);
    assert_eq!(Target::parse_list("attn,mlp").unwrap(), Target::ALL);
    // Sorted, without repeats, spaces ignored.
    assert_eq!(Target::parse_list(" v, q ,q,").unwrap(), [Q, V]);
    assert_eq!(Target::parse_list("down,attn").unwrap(), [Q, K, V, O, Down]);
    for bad in ["qkv", "q,proj", "Q", "attention"] {
        let e = Target::parse_list(bad).unwrap_err();
        assert!(e.contains("unknown LoRA target"), "{bad}: {e}");
    }
    assert!(Target::parse_list("").is_err() && Target::parse_list(" , ").is_err());
    for t in Target::ALL {
        assert_eq!(Target::parse_list(t.name()).unwrap(), [t]);
    }
}

#[test]
fn groups_mean_the_model_s_own_projections_and_gate_on_a_gelu_model_is_an_error() {
    use Target::*;
    let gelu = gpt2();
    // On a GELU model "mlp" is up and down (c_fc and c_proj), as on SwiGLU it is all three.
    assert_eq!(Target::parse_list_for("mlp", gelu.activation).unwrap(), [Up, Down]);
    assert_eq!(Target::parse_list_for("all", gelu.activation).unwrap(), [Q, K, V, O, Up, Down]);
    assert_eq!(Target::parse_list_for("attn,mlp", gelu.activation).unwrap(), [Q, K, V, O, Up, Down]);
    assert_eq!(Target::parse_list_for("mlp", Activation::SwiGlu).unwrap(), [Gate, Up, Down]);
    assert!(Target::parse_list_for("nope", gelu.activation).is_err());

    let base = base_weights(&gelu, DType::F32);
    let lcfg = LoraConfig { rank: 2, alpha: 4.0, targets: Target::parse_list_for("attn,mlp", gelu.activation).unwrap() };
    let (model, params, _) = adapted(&gelu, &base, &lcfg, DType::F32);
    let names: Vec<&str> = params.params.iter().map(|(n, _)| n.as_str()).filter(|n| n.starts_with("h.0.mlp")).collect();
    assert_eq!(names, ["h.0.mlp.c_fc.lora_a", "h.0.mlp.c_fc.lora_b", "h.0.mlp.c_proj.lora_a", "h.0.mlp.c_proj.lora_b"]);
    drop(model);

    // Asked for by name, gate is an error on a model without one.
    let mut plain = frozen_from_tensors(&gelu, base.clone(), DType::F32, &Device::Cpu).unwrap();
    let (vb, _) = ParamBackend::var_builder(0, None, DType::F32, &Device::Cpu);
    let e = plain.add_lora(&lora(&[Gate]), &vb).unwrap_err().to_string();
    assert!(e.contains("gate") && e.contains("GELU"), "{e}");
    let e = plain.add_lora(&LoraConfig { rank: 0, alpha: 1.0, targets: vec![Q] }, &vb).unwrap_err().to_string();
    assert!(e.contains("rank"), "{e}");
}

#[test]
fn only_adapter_parameters_are_created_and_receive_gradients() {
    for cfg in [llama(), gpt2()] {
        let targets = all_targets(&cfg);
        let lcfg = LoraConfig { rank: 2, alpha: 8.0, targets: targets.clone() };
        let base = base_weights(&cfg, DType::F32);
        let (model, params, created) = adapted(&cfg, &base, &lcfg, DType::F32);
        randomize_b(&params, 4);

        // The trainable set: an A and a B per target and layer, nothing else.
        let (d, kv, f) = (cfg.d_model, cfg.n_kv_head * cfg.head_dim(), cfg.d_ff);
        let per_layer: usize = targets
            .iter()
            .map(|t| {
                let (inp, out) = match t {
                    Target::Q | Target::O => (d, d),
                    Target::K | Target::V => (d, kv),
                    Target::Gate | Target::Up => (d, f),
                    Target::Down => (f, d),
                };
                lcfg.rank * (inp + out)
            })
            .sum();
        let want = cfg.n_layer * per_layer;
        assert_eq!(params.num_elements(), want, "{:?}", cfg.activation);
        assert_eq!(created, want);
        assert_eq!(params.params.len(), 2 * cfg.n_layer * targets.len());
        for (name, _) in &params.params {
            assert!(name.ends_with(".lora_a") || name.ends_with(".lora_b"), "{name} is trainable");
        }

        // A backward pass reaches every adapter, and the base weights (even when the caller's
        // tensors are trainable variables, as here) get no gradient.
        let x = ids(&cfg, 2, 10, 2);
        let y = ids(&cfg, 2, 10, 3);
        let grads = model.loss(&x, &y, &mut Mode::training_without_dropout()).unwrap().backward().unwrap();
        let leaked: Vec<&String> = base.iter().filter(|(_, t)| grads.get(t).is_some()).map(|(n, _)| n).collect();
        assert!(leaked.is_empty(), "{:?}: base weights received gradients: {leaked:?}", cfg.activation);
        for (name, v) in &params.params {
            let g = flat(grads.get(v).unwrap_or_else(|| panic!("{name} has no gradient")));
            assert!(g.iter().any(|&x| x != 0.0), "{name} has a zero gradient");
        }
        // The model holds its base as plain tensors: with adapters on q only, every weight but
        // the merged c_attn is the model's own tensor, and none is a variable.
        let (q_only, _, _) = adapted(&cfg, &base, &lora(&[Target::Q]), DType::F32);
        let vars: Vec<String> = q_only.named_weights().unwrap().into_iter().filter(|(_, t)| t.is_variable()).map(|(n, _)| n).collect();
        assert!(vars.is_empty(), "{:?}: the frozen base holds trainable variables: {vars:?}", cfg.activation);
    }
}

#[test]
fn adapter_gradients_match_central_finite_differences_in_f64() {
    for cfg in [llama(), gpt2()] {
        let base = base_weights(&cfg, DType::F64);
        let (model, params, _) = adapted(&cfg, &base, &lora(&all_targets(&cfg)), DType::F64);
        // With B = 0, A's gradient is 0 (it reaches the output only through B): train B first.
        randomize_b(&params, 5);
        let x = ids(&cfg, 2, 6, 4);
        let y = ids(&cfg, 2, 6, 5);
        let loss = || model.loss(&x, &y, &mut Mode::training_without_dropout()).unwrap();
        let grads = loss().backward().unwrap();
        common::assert_gradients_match_fd(&format!("{:?}", cfg.activation), &params, &grads, || loss().to_scalar::<f64>().unwrap());
    }
}

#[test]
fn models_built_from_a_caller_s_tensors_never_write_into_them() {
    // A trainable copy of trainable tensors (a fine-tune started from a model in memory): its
    // updates must not reach the tensors it was built from, which a second run starts from.
    let cfg = llama();
    let base = base_weights(&cfg, DType::F32);
    let before: HashMap<String, Vec<f32>> = base.iter().map(|(n, t)| (n.clone(), flat(t))).collect();
    let (_, params) = lmlab_model::checkpoint::trainable_from_tensors(&cfg, base.clone(), DType::F32, &Device::Cpu).unwrap();
    for (name, var) in &params.params {
        var.set(&(var.as_tensor() + 1.0).unwrap()).unwrap();
        assert_eq!(flat(&base[name]), before[name], "training the copy changed the caller's {name}");
        assert_ne!(flat(var.as_tensor()), before[name]);
    }
}
