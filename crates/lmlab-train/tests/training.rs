//! Training behaviour: a tiny model overfits one batch; an interrupted and resumed run is
//! bit-identical to an uninterrupted one, in f32 and in mixed precision; checkpoints and metrics
//! are consistent.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::fused::Precision;
use lmlab_model::{GptConfig, Mode};
use lmlab_train::optim::{clip_global_norm, AdamW};
use lmlab_train::shards::write_shard;
use lmlab_train::{pretrain, Preset, PretrainOptions, TrainConfig};

fn model_cfg(dropout: f64) -> GptConfig {
    GptConfig { dropout, ..GptConfig::llama_style(64, 16, 2, 4, 2, 32, 64) }
}

#[test]
fn tiny_model_overfits_one_batch() {
    let dev = Device::Cpu;
    let cfg = model_cfg(0.0);
    let (model, params) = init_trainable(&cfg, 0, DType::F32, &dev).unwrap();
    let tc = TrainConfig { weight_decay: 0.0, ..TrainConfig::default() };
    let mut opt = AdamW::new(&params, tc.adamw()).unwrap();
    let data: Vec<u32> = (0..4 * 17).map(|i| ((i * 13 + i / 5) % 64) as u32).collect();
    let all = Tensor::from_vec(data, (4, 17), &dev).unwrap();
    let x = all.narrow(1, 0, 16).unwrap();
    let y = all.narrow(1, 1, 16).unwrap();
    let mut loss = f32::MAX;
    for _ in 0..300 {
        let l = model.loss(&x, &y, &mut Mode::training_without_dropout()).unwrap();
        loss = l.to_scalar::<f32>().unwrap();
        if loss < 0.05 {
            break;
        }
        let mut grads = opt.collect_grads(&l.backward().unwrap()).unwrap();
        clip_global_norm(&mut grads, 1.0).unwrap();
        opt.step(&grads, 3e-3).unwrap();
    }
    assert!(loss < 0.05, "loss after training on one batch: {loss}");
}

fn write_data(dir: &Path) -> PathBuf {
    // A learnable stream: a repeating pattern with some variety.
    let tokens: Vec<u32> = (0..6000u32).map(|i| (i % 7) * 5 + (i / 7) % 3).collect();
    let path = dir.join("data.bin");
    write_shard(&path, &tokens, 64).unwrap();
    path
}

fn options(dir: &Path, data: &Path, out: &str, resume: bool, stop_after: Option<u64>) -> PretrainOptions {
    options_in(dir, data, out, resume, stop_after, Precision::F32)
}

fn options_in(dir: &Path, data: &Path, out: &str, resume: bool, stop_after: Option<u64>, precision: Precision) -> PretrainOptions {
    let train = TrainConfig {
        batch_size: 4,
        grad_accum: 2,
        max_steps: 20,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 5,
        eval_every: 5,
        eval_batches: 2,
        save_every: 7,
        log_every: 1,
        val_fraction: 0.1,
        seed: 42,
        precision,
        ..TrainConfig::default()
    };
    PretrainOptions {
        preset: Preset { model: model_cfg(0.1), train, world: None, sft: None, reward: None, dpo: None },
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

#[test]
fn resumed_training_is_bit_identical_to_uninterrupted() {
    check_resume(Precision::F32);
}

#[test]
fn resumed_mixed_precision_training_is_bit_identical_and_close_to_f32() {
    let bf16 = check_resume(Precision::Bf16);
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    let f32 = pretrain(options(dir.path(), &data, "f32", false, None)).unwrap();
    // bf16 products change the numbers (so the setting reached the matmuls) but not the course.
    let (a, b): (Vec<f64>, Vec<f64>) = (f32.steps.iter().map(|r| r.loss).collect(), bf16.steps.iter().map(|r| r.loss).collect());
    assert!(a != b, "bf16 training gave exactly the f32 losses");
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() < 0.02 * x, "step {}: f32 loss {x}, bf16 {y}", step + 1);
    }
}

/// Trains 20 steps straight and as 10 + 10 with a resume in between, in `precision`; checks
/// that both give the same losses, evaluation and weights bit for bit, and returns the first.
fn check_resume(precision: Precision) -> lmlab_train::PretrainReport {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());

    let full = pretrain(options_in(dir.path(), &data, "full", false, None, precision)).unwrap();
    assert_eq!(full.final_step, 20);
    assert!(!full.interrupted);

    let first = pretrain(options_in(dir.path(), &data, "split", false, Some(10), precision)).unwrap();
    assert!(first.interrupted);
    assert_eq!(first.final_step, 10);
    let second = pretrain(options_in(dir.path(), &data, "split", true, None, precision)).unwrap();
    assert_eq!(second.start_step, 10);
    assert_eq!(second.final_step, 20);

    let joined: Vec<u64> = first.steps.iter().chain(&second.steps).map(|r| r.loss.to_bits()).collect();
    let straight: Vec<u64> = full.steps.iter().map(|r| r.loss.to_bits()).collect();
    assert_eq!(
        joined,
        straight,
        "losses differ:\n{:?}\n{:?}",
        first.steps.iter().chain(&second.steps).map(|r| r.loss).collect::<Vec<_>>(),
        full.steps.iter().map(|r| r.loss).collect::<Vec<_>>()
    );
    assert_eq!(full.last_eval_loss.map(f64::to_bits), second.last_eval_loss.map(f64::to_bits));
    // Training made progress, and the final weights are identical byte for byte.
    assert!(straight.len() == 20 && full.steps[19].loss < full.steps[0].loss);
    let a = std::fs::read(dir.path().join("full/base/model.safetensors")).unwrap();
    let b = std::fs::read(dir.path().join("split/base/model.safetensors")).unwrap();
    assert!(a == b, "final weights differ");
    // metrics.jsonl of the resumed run has each step exactly once, like the uninterrupted one.
    let steps = |run: &str| -> Vec<u64> {
        std::fs::read_to_string(dir.path().join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(steps("split"), (1..=20).collect::<Vec<_>>());
    assert_eq!(steps("full"), steps("split"));
    // The checkpoint folder is complete and no temporary folders remain.
    for f in ["model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json"] {
        assert!(dir.path().join("split/base").join(f).is_file(), "{f}");
    }
    assert!(!dir.path().join("split/base.tmp").exists() && !dir.path().join("split/base.old").exists());
    full
}

#[test]
fn stop_request_writes_a_checkpoint_and_bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    let opts = options(dir.path(), &data, "stopped", false, None);
    opts.stop.store(true, std::sync::atomic::Ordering::SeqCst); // as if Ctrl-C came during step 1
    let r = pretrain(opts).unwrap();
    assert!(r.interrupted && r.final_step == 1);
    assert!(dir.path().join("stopped/base/trainer_state.json").is_file());

    let err = pretrain(options(dir.path(), &data, "nothing-here", true, None)).err().unwrap();
    assert!(format!("{err:#}").contains("no checkpoint to resume"), "{err:#}");
    let mut too_long = options(dir.path(), &data, "x", false, None);
    too_long.preset.train.seq_len = 17;
    assert!(format!("{:#}", pretrain(too_long).err().unwrap()).contains("exceeds the context length"));
}

#[test]
fn presets_parse_and_gpt2_preset_has_the_published_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    for name in ["tiny", "small", "gpt2-124m"] {
        let p = Preset::from_file(&root.join(format!("{name}.toml"))).unwrap();
        let mut m = p.model.clone();
        if m.vocab_size == 0 {
            m.vocab_size = 4096;
        }
        m.validate().unwrap();
    }
    // Published parameter counts.
    for (name, count) in [
        ("gpt2-124m", 124_439_808),
        ("gpt2-xl", 1_557_611_200),
        ("llama-2-7b", 6_738_415_616),
        ("llama-3-8b", 8_030_261_248),
        ("llama-3-70b", 70_553_706_496usize),
        ("smollm2-135m", 134_515_008),
    ] {
        let p = Preset::from_file(&root.join(format!("{name}.toml"))).unwrap();
        p.model.validate().unwrap();
        assert_eq!(p.model.param_count().total, count, "{name}");
    }
    let err = Preset::from_toml("[model]\ncontext_length = 8\n").unwrap_err();
    assert!(format!("{err:#}").contains("missing field"), "{err:#}");
}
