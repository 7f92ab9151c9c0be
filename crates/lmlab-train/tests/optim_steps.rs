//! The optimiser over several steps and the paths around it: AdamW against an f64 reference
//! written from the formula, weight decay on matrices only, clipping by the global norm,
//! gradient accumulation against one larger batch, the NaN-loss stop, and recovery from the
//! `.old` checkpoint a crash between the two renames of a save leaves.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use lmlab_model::checkpoint::{init_trainable, with_suffix};
use lmlab_model::{GptConfig, Mode, ParamSet};
use lmlab_train::checkpoint;
use lmlab_train::optim::{clip_global_norm, global_norm, AdamW, AdamWConfig};
use lmlab_train::pretrain::accumulate_grads;
use lmlab_train::shards::write_shard;
use lmlab_train::{pretrain, Preset, PretrainOptions, TrainConfig};

fn params(list: &[(&str, &[f32], &[usize])]) -> ParamSet {
    let params = list
        .iter()
        .map(|(name, values, shape)| {
            (name.to_string(), Var::from_tensor(&Tensor::from_slice(values, *shape, &Device::Cpu).unwrap()).unwrap())
        })
        .collect();
    ParamSet { params }
}

fn values(ps: &ParamSet, i: usize) -> Vec<f32> {
    ps.params[i].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// How the hand-written reference may deviate from AdamW, to show the test tells them apart.
#[derive(Clone, Copy, Default)]
struct Variant {
    no_bias_correction: bool,
    no_second_bias_correction: bool,
    swap_betas: bool,
    /// L2 regularisation (wd·p added to the gradient) instead of decoupled decay.
    coupled_decay: bool,
    /// Decay applied after the Adam update instead of before it.
    decay_after_update: bool,
}

/// AdamW in f64, straight from the formula (Loshchilov & Hutter; PyTorch's torch.optim.AdamW):
/// m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),
/// p ← p(1 − lr·wd), p ← p − lr·m̂/(√v̂ + ε).
fn reference(p0: &[f32], grads: &[Vec<f32>], lrs: &[f64], cfg: &AdamWConfig, decay: bool, var: Variant) -> Vec<f64> {
    let (b1, b2) = if var.swap_betas { (cfg.beta2, cfg.beta1) } else { (cfg.beta1, cfg.beta2) };
    let wd = if decay { cfg.weight_decay } else { 0.0 };
    let mut p: Vec<f64> = p0.iter().map(|&x| f64::from(x)).collect();
    let mut m = vec![0.0f64; p.len()];
    let mut v = vec![0.0f64; p.len()];
    for (t, (g, &lr)) in grads.iter().zip(lrs).enumerate() {
        let t = t as i32 + 1;
        for i in 0..p.len() {
            let mut gi = f64::from(g[i]);
            if var.coupled_decay {
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let bc1 = if var.no_bias_correction { 1.0 } else { 1.0 - b1.powi(t) };
            let bc2 = if var.no_bias_correction || var.no_second_bias_correction { 1.0 } else { 1.0 - b2.powi(t) };
            let update = lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + cfg.eps);
            if var.coupled_decay {
                p[i] -= update;
            } else if var.decay_after_update {
                p[i] = (p[i] - update) * (1.0 - lr * wd);
            } else {
                p[i] = p[i] * (1.0 - lr * wd) - update;
            }
        }
    }
    p
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn adamw_over_five_steps_matches_an_f64_reference_with_bias_correction_and_decoupled_decay() {
    // β₁ ≠ β₂ (so a swap shows), ε = 1e-3 (comparable to the smallest gradients, so where ε
    // enters matters), a learning rate that changes every step as under the schedule, and
    // gradients that change sign and size from step to step.
    let cfg = AdamWConfig { beta1: 0.8, beta2: 0.9, eps: 1e-3, weight_decay: 0.1, decay_embeddings: false };
    let p0: [f32; 6] = [1.0, -2.0, 0.5, 3.0, -0.75, 0.25];
    let grads: Vec<Vec<f32>> = vec![
        vec![0.5, -0.25, 1.0, -2.0, 0.02, 0.3],
        vec![-0.3, -0.5, 0.2, 1.5, 0.01, 0.3],
        vec![0.1, 0.4, -0.6, -0.5, -0.03, 0.0],
        vec![0.8, -0.1, 0.05, 2.5, 0.0, -0.3],
        vec![-0.2, 0.3, 0.9, -1.0, 0.04, 0.1],
    ];
    let lrs = [0.05, 0.1, 0.08, 0.04, 0.02];
    // The same values as a decayed matrix and as a norm weight (never decayed).
    let ps = params(&[("h.0.mlp.c_fc.weight", &p0, &[2, 3]), ("h.0.ln_1.weight", &p0, &[6])]);
    let mut opt = AdamW::new(&ps, cfg.clone()).unwrap();
    for (g, &lr) in grads.iter().zip(&lrs) {
        let gm = Tensor::from_slice(g, (2, 3), &Device::Cpu).unwrap();
        let gn = Tensor::from_slice(g, 6, &Device::Cpu).unwrap();
        opt.step(&[gm, gn], lr).unwrap();
    }
    assert_eq!(opt.t, 5);
    // f32 keeps 24 bits: each step rounds p (|p| < 4, half an ulp ≤ 2.4e-7) and an update of at
    // most lr·(1 + rounding) ≈ 0.1, so five steps stay within 2e-6 of the exact values.
    let tol = 2e-6;
    for (i, decay) in [(0, true), (1, false)] {
        let got: Vec<f64> = values(&ps, i).into_iter().map(f64::from).collect();
        let want = reference(&p0, &grads, &lrs, &cfg, decay, Variant::default());
        assert!(max_diff(&got, &want) < tol, "{}: {got:?} vs reference {want:?}", ps.params[i].0);
        // The reference is sharp enough to see the mistakes one would make: each variant moves
        // the parameters by far more than the tolerance.
        let variants = [
            ("no bias correction", Variant { no_bias_correction: true, ..Default::default() }),
            ("no second-moment bias correction", Variant { no_second_bias_correction: true, ..Default::default() }),
            ("β₁ and β₂ swapped", Variant { swap_betas: true, ..Default::default() }),
        ];
        for (what, var) in variants {
            let wrong = reference(&p0, &grads, &lrs, &cfg, decay, var);
            assert!(max_diff(&wrong, &want) > 100.0 * tol, "{what} is indistinguishable");
            assert!(max_diff(&got, &wrong) > 50.0 * tol, "{}: AdamW behaves as with {what}", ps.params[i].0);
        }
        if decay {
            for (what, var) in [
                ("coupled (L2) decay", Variant { coupled_decay: true, ..Default::default() }),
                ("decay after the update", Variant { decay_after_update: true, ..Default::default() }),
            ] {
                let wrong = reference(&p0, &grads, &lrs, &cfg, decay, var);
                assert!(max_diff(&wrong, &want) > 100.0 * tol, "{what} is indistinguishable");
                assert!(max_diff(&got, &wrong) > 50.0 * tol, "AdamW behaves as with {what}");
            }
        }
    }
    // The two parameters saw the same gradients; only decay separates them.
    assert_ne!(values(&ps, 0), values(&ps, 1));
}

fn tiny(dropout: f64) -> GptConfig {
    GptConfig { dropout, ..GptConfig::llama_style(64, 16, 2, 4, 2, 32, 64) }
}

#[test]
fn weight_decay_reaches_matrices_only_and_embeddings_only_when_asked() {
    // Both model families (GPT-2 has biases, LayerNorm and learned positions; Llama has RMSNorm
    // and untied lm_head). Decayed = exactly the parameters with two or more axes that are not
    // token/position embeddings: decided from shapes here, from names in the optimiser.
    let gpt2 = GptConfig { tie_embeddings: false, ..GptConfig::gpt2_style(64, 16, 2, 4, 32, 64) };
    for model in [tiny(0.0), gpt2] {
        let (_, ps) = init_trainable(&model, 0, DType::F32, &Device::Cpu).unwrap();
        let is_embedding = |n: &str| n.starts_with("wte.") || n.starts_with("wpe.");
        for decay_embeddings in [false, true] {
            let cfg = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.5, decay_embeddings };
            let mut opt = AdamW::new(&ps, cfg).unwrap();
            let expect: Vec<&str> = ps
                .params
                .iter()
                .filter(|(n, v)| v.rank() >= 2 && (decay_embeddings || !is_embedding(n)))
                .map(|(n, _)| n.as_str())
                .collect();
            assert_eq!(opt.decayed(), expect);
            assert!(ps.params.iter().any(|(n, v)| v.rank() == 1 && !expect.contains(&n.as_str())), "the model has vectors, none decayed");
            // With zero gradients Adam's update is 0/(0 + ε) = 0, so one step shows the decay
            // alone: lr·wd = 0.25·0.5, a factor 0.875 that is exact in binary.
            let before: Vec<Vec<f32>> = (0..ps.params.len()).map(|i| values(&ps, i)).collect();
            let zeros: Vec<Tensor> = ps.params.iter().map(|(_, v)| v.zeros_like().unwrap()).collect();
            opt.step(&zeros, 0.25).unwrap();
            for (i, (name, _)) in ps.params.iter().enumerate() {
                let want: Vec<f32> =
                    if expect.contains(&name.as_str()) { before[i].iter().map(|x| x * 0.875).collect() } else { before[i].clone() };
                assert_eq!(values(&ps, i), want, "{name} (decay_embeddings {decay_embeddings})");
            }
            // Undo, so the next configuration starts from the same weights.
            for (i, (_, v)) in ps.params.iter().enumerate() {
                v.set(&Tensor::from_slice(&before[i], v.shape(), &Device::Cpu).unwrap()).unwrap();
            }
        }
    }
}

#[test]
fn clipping_scales_all_gradients_by_one_global_factor_before_the_update() {
    let dev = Device::Cpu;
    let grads = || vec![Tensor::new(&[3.0f32, 0.0], &dev).unwrap(), Tensor::new(&[[4.0f32]], &dev).unwrap()];
    // Global norm √(3² + 4²) = 5; the limit 2.5 scales every gradient by 2.5/(5 + 1e-6) (the
    // 1e-6 is torch's clip_grad_norm_ guard).
    let mut g = grads();
    assert!((clip_global_norm(&mut g, 2.5).unwrap() - 5.0).abs() < 1e-12);
    let s = 2.5 / (5.0 + 1e-6);
    let (a, b) = (g[0].to_vec1::<f32>().unwrap(), g[1].flatten_all().unwrap().to_vec1::<f32>().unwrap());
    // f32 rounding of values ≤ 4: below 1e-6.
    assert!((f64::from(a[0]) - 3.0 * s).abs() < 1e-6 && a[1] == 0.0 && (f64::from(b[0]) - 4.0 * s).abs() < 1e-6, "{a:?} {b:?}");
    assert!((global_norm(&g).unwrap() - 2.5).abs() < 1e-6);
    // At or under the limit, and with clipping off (0), the gradients are untouched.
    for limit in [5.0, 6.0, 0.0] {
        let mut g = grads();
        clip_global_norm(&mut g, limit).unwrap();
        assert_eq!(g[0].to_vec1::<f32>().unwrap(), [3.0, 0.0]);
        assert_eq!(g[1].flatten_all().unwrap().to_vec1::<f32>().unwrap(), [4.0]);
    }

    // Through AdamW: with ε = 1 the first update lr·g/(|g| + ε) depends on the gradient's size,
    // so it shows the clipped values: 0.1·1.5/2.5 = 0.06 and 0.1·2/3, where clipping each
    // tensor to 2.5 on its own would give 0.1·2.5/3.5 for both, and no clipping 0.075 and 0.08.
    let ps = params(&[("h.0.attn.c_proj.weight", &[0.0, 0.0], &[2]), ("h.0.mlp.c_fc.weight", &[0.0], &[1, 1])]);
    let mut opt = AdamW::new(&ps, AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1.0, weight_decay: 0.0, decay_embeddings: false }).unwrap();
    let mut g = grads();
    clip_global_norm(&mut g, 2.5).unwrap();
    opt.step(&g, 0.1).unwrap();
    let (g0, g1) = (3.0 * s, 4.0 * s);
    let (p0, p1) = (values(&ps, 0), values(&ps, 1));
    // The weights start at 0, so they equal minus the update: a few f32 roundings of values
    // below 0.1 (ulp 7.5e-9).
    assert!((f64::from(p0[0]) + 0.1 * g0 / (g0 + 1.0)).abs() < 5e-8, "{p0:?}");
    assert_eq!(p0[1], 0.0);
    assert!((f64::from(p1[0]) + 0.1 * g1 / (g1 + 1.0)).abs() < 5e-8, "{p1:?}");
    assert!((f64::from(p0[0]) + 0.06).abs() < 1e-6 && (f64::from(p1[0]) + 0.2 / 3.0).abs() < 1e-6);
}

#[test]
fn accumulating_k_micro_batches_equals_one_k_times_larger_batch() {
    let dev = Device::Cpu;
    let cfg = tiny(0.0);
    let tokens: Vec<u32> = (0..4 * 17).map(|i| ((i * 13 + i / 5) % 64) as u32).collect();
    let all = Tensor::from_vec(tokens, (4, 17), &dev).unwrap();
    let (x, y) = (all.narrow(1, 0, 16).unwrap(), all.narrow(1, 1, 16).unwrap());
    // ε = 1e-4: the first AdamW update lr·g/(|g| + ε) then moves by at most lr/ε per unit of
    // gradient difference, so the parameter tolerance below follows from the gradient one.
    let adamw = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-4, weight_decay: 0.1, decay_embeddings: false };
    let lr = 1e-3;
    // k micro-batches of 4/k rows each, through the trainer's accumulation, then one step.
    let run = |k: usize| {
        let (model, ps) = init_trainable(&cfg, 0, DType::F32, &dev).unwrap();
        let mut opt = AdamW::new(&ps, adamw.clone()).unwrap();
        let rows = 4 / k;
        let (loss, grads) = accumulate_grads(&opt, k, |micro| {
            let (xs, ys) = (x.narrow(0, micro as usize * rows, rows)?, y.narrow(0, micro as usize * rows, rows)?);
            Ok(model.loss(&xs, &ys, &mut Mode::training_without_dropout())?)
        })
        .unwrap();
        let flat: Vec<Vec<f32>> = grads.iter().map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
        opt.step(&grads, lr).unwrap();
        let after: Vec<Vec<f32>> = (0..ps.params.len()).map(|i| values(&ps, i)).collect();
        (loss, flat, after)
    };
    let (loss1, grads1, params1) = run(1);
    for k in [2, 4] {
        let (loss_k, grads_k, params_k) = run(k);
        // Means of 64 f32 terms against means of 64/k: f32 sums of n terms in another order
        // differ by about n·2⁻²⁴ ≈ 4e-6 relatively.
        assert!((loss_k - loss1).abs() < 1e-5 * loss1, "k={k}: loss {loss_k} vs {loss1}");
        let mut worst = 0.0f32;
        for (i, (a, b)) in grads_k.iter().zip(&grads1).enumerate() {
            let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0, "parameter {i} has no gradient");
            let d = a.iter().zip(b).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            // The same sums over 64 token positions, split and reordered: 1e-5 of the largest
            // gradient of the tensor is 2-3 times n·2⁻²⁴.
            assert!(d <= 1e-5 * scale, "k={k}, parameter {i}: gradients differ by {d} (largest {scale})");
            worst = worst.max(d);
        }
        // Parameters after one step: by lr/ε times the gradient difference, plus rounding of
        // weights below 1 (1e-7).
        let tol = lr / 1e-4 * f64::from(worst) + 1e-7;
        for (i, (a, b)) in params_k.iter().zip(&params1).enumerate() {
            let d = a.iter().zip(b).fold(0.0f64, |m, (p, q)| m.max(f64::from((p - q).abs())));
            assert!(d <= tol, "k={k}, parameter {i}: weights differ by {d} after the step (allowed {tol})");
        }
    }
}

fn write_data(dir: &Path) -> PathBuf {
    let tokens: Vec<u32> = (0..6000u32).map(|i| (i % 7) * 5 + (i / 7) % 3).collect();
    let path = dir.join("data.bin");
    write_shard(&path, &tokens, 64).unwrap();
    path
}

fn options(dir: &Path, data: &Path, out: &str, resume: bool, stop_after: Option<u64>, train: TrainConfig) -> PretrainOptions {
    PretrainOptions {
        preset: Preset { model: tiny(0.1), train, world: None, sft: None, reward: None, dpo: None },
        data: vec![data.to_path_buf()],
        tokenizer: None,
        out: dir.join(out).join("base"),
        resume,
        stop_after,
        stop: Arc::new(AtomicBool::new(false)),
        device: Device::Cpu,
        dtype: DType::F32,
    }
}

fn train_config() -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        grad_accum: 2,
        max_steps: 20,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 5,
        eval_every: 5,
        eval_batches: 2,
        save_every: 0,
        log_every: 1,
        val_fraction: 0.1,
        seed: 42,
        ..TrainConfig::default()
    }
}

fn metric_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn non_finite_gradients_stop_training_before_the_update_with_the_last_good_state_saved() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    // An absurd learning rate: the first update takes the weights to about ±1e30 (finite); the
    // next step's loss is still finite (ln 64, the logits are flat) but its gradients overflow
    // to NaN. Applying them would save NaN weights as the "last good state".
    let train = TrainConfig { lr: 1e30, min_lr: 1e30, warmup_steps: 0, max_steps: 10, ..train_config() };
    let Err(err) = pretrain(options(dir.path(), &data, "nan", false, None, train.clone())) else {
        panic!("training must stop on non-finite gradients")
    };
    let msg = format!("{err:#}");
    let base = dir.path().join("nan/base");
    let saved = checkpoint::load(&base, &Device::Cpu).expect("the state is saved before stopping");
    let k = saved.state.step;
    assert!((1..10).contains(&k), "stopped after step {k}");
    assert!(
        msg.contains("gradient norm became NaN") && msg.contains(&format!("at step {k}")) && msg.contains(&base.display().to_string()),
        "{msg}"
    );
    // "The last good state": every weight and moment saved is finite (a step with non-finite
    // gradients must not be applied), the last finite loss is recorded, and metrics.jsonl holds
    // the completed steps only.
    for (what, tensors) in [("weights", &saved.weights), ("moments", &saved.optimizer)] {
        let bad: usize =
            tensors.values().map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().filter(|x| !x.is_finite()).count()).sum();
        assert_eq!(bad, 0, "{bad} saved {what} are not finite (saved at step {k}: {msg})");
    }
    assert!(saved.state.last_train_loss.is_some_and(f64::is_finite), "{:?}", saved.state.last_train_loss);
    assert_eq!(metric_steps(&dir.path().join("nan")), (1..=k).collect::<Vec<_>>());
    // The saved state is the one after step k: the step that went wrong changed neither the
    // weights nor the moments. A run told to stop after k steps saves the same.
    let stopped = pretrain(options(dir.path(), &data, "stopped", false, Some(k), train)).unwrap();
    assert_eq!(stopped.final_step, k);
    for f in ["model.safetensors", "optimizer.safetensors"] {
        assert!(
            std::fs::read(base.join(f)).unwrap() == std::fs::read(dir.path().join("stopped/base").join(f)).unwrap(),
            "{f} differs from the state after step {k}"
        );
    }
    let state = checkpoint::load(&dir.path().join("stopped/base"), &Device::Cpu).unwrap().state;
    assert_eq!(
        (state.step, state.tokens_seen, state.last_train_loss.map(f64::to_bits)),
        (k, saved.state.tokens_seen, saved.state.last_train_loss.map(f64::to_bits))
    );
}

#[test]
fn a_nan_loss_stops_the_run_and_leaves_the_checkpoint_at_its_step() {
    // A checkpoint whose final norm holds a NaN (as a corrupted file or a bad earlier run might):
    // the first resumed step's loss is NaN, and the run stops at once, saving step 3 again.
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    pretrain(options(dir.path(), &data, "run", false, Some(3), train_config())).unwrap();
    let base = dir.path().join("run/base");
    let weights_file = base.join("model.safetensors");
    let mut weights = lmlab_model::checkpoint::load_safetensors(&weights_file, &Device::Cpu).unwrap();
    let ln_f = weights.get_mut("ln_f.weight").expect("the final norm's weight");
    *ln_f = (ln_f.clone() * f64::NAN).unwrap();
    lmlab_model::checkpoint::save_safetensors(&weights_file, &weights).unwrap();
    let before = std::fs::read(&weights_file).unwrap();
    let optimizer = std::fs::read(base.join("optimizer.safetensors")).unwrap();

    let Err(err) = pretrain(options(dir.path(), &data, "run", true, None, train_config())) else { panic!("a NaN loss stops training") };
    let msg = format!("{err:#}");
    assert!(msg.contains("loss became NaN at step 3") && msg.contains(&base.display().to_string()), "{msg}");
    let saved = checkpoint::load(&base, &Device::Cpu).unwrap();
    assert_eq!(saved.state.step, 3);
    assert!(
        std::fs::read(&weights_file).unwrap() == before && std::fs::read(base.join("optimizer.safetensors")).unwrap() == optimizer,
        "the NaN step changed the checkpoint"
    );
    assert_eq!(metric_steps(&dir.path().join("run")), [1, 2, 3]);
}

#[test]
fn a_crash_between_the_renames_of_a_save_resumes_from_the_old_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    let full = pretrain(options(dir.path(), &data, "full", false, None, train_config())).unwrap();
    assert_eq!(full.final_step, 20);

    let run = dir.path().join("crash");
    let base = run.join("base");
    let (old, tmp) = (with_suffix(&base, ".old"), with_suffix(&base, ".tmp"));
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    };
    pretrain(options(dir.path(), &data, "crash", false, Some(10), train_config())).unwrap();
    let at10 = dir.path().join("at10");
    copy(&base, &at10);
    let second = pretrain(options(dir.path(), &data, "crash", true, Some(5), train_config())).unwrap();
    assert_eq!(second.final_step, 15);

    // A crash after the new folder was moved into place but before the old one was deleted:
    // both are complete and the new one wins.
    copy(&at10, &old);
    assert_eq!(checkpoint::resolve(&base), Some(base.clone()));
    assert_eq!(checkpoint::load(&base, &Device::Cpu).unwrap().state.step, 15);
    // A crash between the renames of the step-15 save: the step-10 folder was moved aside to
    // base.old, the complete step-15 one is still base.tmp, and base does not exist.
    std::fs::rename(&base, &tmp).unwrap();
    assert_eq!(checkpoint::resolve(&base), Some(old.clone()));
    let loaded = checkpoint::load(&base, &Device::Cpu).unwrap();
    assert_eq!(loaded.state.step, 10);
    assert!(std::fs::read(old.join("model.safetensors")).unwrap() == std::fs::read(at10.join("model.safetensors")).unwrap());

    // Resuming continues from step 10 exactly as the uninterrupted run did, and the next save
    // leaves one clean folder.
    let resumed = pretrain(options(dir.path(), &data, "crash", true, None, train_config())).unwrap();
    assert_eq!((resumed.start_step, resumed.final_step), (10, 20));
    let got: Vec<u64> = resumed.steps.iter().map(|r| r.loss.to_bits()).collect();
    let want: Vec<u64> = full.steps[10..].iter().map(|r| r.loss.to_bits()).collect();
    assert_eq!(got, want, "the resumed steps differ from the uninterrupted run's");
    assert!(
        std::fs::read(base.join("model.safetensors")).unwrap() == std::fs::read(dir.path().join("full/base/model.safetensors")).unwrap(),
        "final weights differ"
    );
    assert!(!old.exists() && !tmp.exists(), "the save after the crash leaves base.old or base.tmp behind");
    assert_eq!(checkpoint::load(&base, &Device::Cpu).unwrap().state.step, 20);
    // The steps the crashed run logged after step 10 (11-15) were dropped and logged again once.
    assert_eq!(metric_steps(&run), (1..=20).collect::<Vec<_>>());
}
