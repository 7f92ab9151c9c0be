//! Hugging Face checkpoints of GPT-2 and Llama shape: a folder with `config.json` (the
//! transformers config), `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), and usually `tokenizer.json` and `tokenizer_config.json`.
//!
//! Tensors are renamed to lmlab's names (see [`crate::gpt`]); GPT-2's `Conv1D` weights are
//! stored [in, out] and are transposed; Llama's separate q/k/v projections are fused into
//! `c_attn`. Hugging Face Llama already uses the rotate-half rotary layout lmlab uses, so no
//! row permutation is needed (unlike GGUF).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::config::{Activation, GptConfig, Norm, Position};

/// The architectures this loader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfArch {
    Gpt2,
    Llama,
}

/// Whether `dir/config.json` is a transformers config (it names a `model_type`).
pub fn is_hf_folder(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| v.get("model_type").is_some())
}

fn field(cfg: &Value, key: &str, path: &Path) -> Result<usize> {
    cfg.get(key).and_then(Value::as_u64).map(|v| v as usize).with_context(|| format!("{}: no integer field {key:?}", path.display()))
}

/// The lmlab config of a transformers `config.json`.
pub fn hf_config(path: &Path) -> Result<(HfArch, GptConfig)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or_default();
    let f = |k: &str| field(&v, k, path);
    let float = |k: &str, default: f64| v.get(k).and_then(Value::as_f64).unwrap_or(default);
    match model_type {
        "gpt2" => {
            let d = f("n_embd")?;
            let d_ff = v.get("n_inner").and_then(Value::as_u64).map_or(4 * d, |x| x as usize);
            let act = v.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new");
            if !matches!(act, "gelu_new" | "gelu_pytorch_tanh") {
                bail!("{}: activation {act:?} is not supported (lmlab's GELU is the tanh approximation)", path.display());
            }
            Ok((
                HfArch::Gpt2,
                GptConfig {
                    vocab_size: f("vocab_size")?,
                    context_length: f("n_positions")?,
                    n_layer: f("n_layer")?,
                    n_head: f("n_head")?,
                    n_kv_head: f("n_head")?,
                    d_model: d,
                    d_ff,
                    norm: Norm::LayerNorm,
                    activation: Activation::Gelu,
                    position: Position::Learned,
                    rope_theta: 10_000.0,
                    tie_embeddings: true,
                    dropout: 0.0,
                    bias: true,
                    norm_eps: float("layer_norm_epsilon", 1e-5),
                },
            ))
        }
        "llama" | "mistral" => {
            if v.get("rope_scaling").is_some_and(|s| !s.is_null()) {
                bail!("{}: rope_scaling is not supported", path.display());
            }
            if v.get("attention_bias").and_then(Value::as_bool).unwrap_or(false)
                || v.get("mlp_bias").and_then(Value::as_bool).unwrap_or(false)
            {
                bail!("{}: biases in attention or MLP are not supported for llama", path.display());
            }
            let n_head = f("num_attention_heads")?;
            Ok((
                HfArch::Llama,
                GptConfig {
                    vocab_size: f("vocab_size")?,
                    context_length: f("max_position_embeddings")?,
                    n_layer: f("num_hidden_layers")?,
                    n_head,
                    n_kv_head: v.get("num_key_value_heads").and_then(Value::as_u64).map_or(n_head, |x| x as usize),
                    d_model: f("hidden_size")?,
                    d_ff: f("intermediate_size")?,
                    norm: Norm::RmsNorm,
                    activation: Activation::SwiGlu,
                    position: Position::Rope,
                    rope_theta: float("rope_theta", 10_000.0),
                    tie_embeddings: v.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
                    dropout: 0.0,
                    bias: false,
                    norm_eps: float("rms_norm_eps", 1e-6),
                },
            ))
        }
        other => bail!("{}: model_type {other:?} is not supported (gpt2, llama, mistral)", path.display()),
    }
}

/// The safetensors files of a folder: `model.safetensors`, or the shards its index names.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)
        .with_context(|| format!("{} has neither model.safetensors nor model.safetensors.index.json", dir.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", index.display()))?;
    let map = v.get("weight_map").and_then(Value::as_object).with_context(|| format!("{}: no weight_map", index.display()))?;
    let mut files: Vec<PathBuf> = map.values().filter_map(Value::as_str).map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Strips the wrapper prefixes transformers adds (`transformer.`, `model.`).
fn base_name(name: &str) -> &str {
    name.strip_prefix("transformer.").or_else(|| name.strip_prefix("model.")).unwrap_or(name)
}

/// Renames (and transposes or fuses) Hugging Face tensors into lmlab's names.
pub fn to_lmlab(arch: HfArch, cfg: &GptConfig, hf: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut by_base: HashMap<String, Tensor> = hf.into_iter().map(|(n, t)| (base_name(&n).to_string(), t)).collect();
    let mut take = |n: &str| by_base.remove(n).with_context(|| format!("the checkpoint has no tensor {n}"));
    let mut out = HashMap::new();
    match arch {
        HfArch::Gpt2 => {
            out.insert("wte.weight".to_string(), take("wte.weight")?);
            out.insert("wpe.weight".to_string(), take("wpe.weight")?);
            for l in 0..cfg.n_layer {
                for ln in ["ln_1", "ln_2"] {
                    for p in ["weight", "bias"] {
                        out.insert(format!("h.{l}.{ln}.{p}"), take(&format!("h.{l}.{ln}.{p}"))?);
                    }
                }
                for lin in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
                    // Conv1D keeps weights as [in, out].
                    out.insert(format!("h.{l}.{lin}.weight"), take(&format!("h.{l}.{lin}.weight"))?.t()?.contiguous()?);
                    out.insert(format!("h.{l}.{lin}.bias"), take(&format!("h.{l}.{lin}.bias"))?);
                }
            }
            out.insert("ln_f.weight".to_string(), take("ln_f.weight")?);
            out.insert("ln_f.bias".to_string(), take("ln_f.bias")?);
        }
        HfArch::Llama => {
            out.insert("wte.weight".to_string(), take("embed_tokens.weight")?);
            for l in 0..cfg.n_layer {
                let p = |s: &str| format!("layers.{l}.{s}");
                let qkv =
                    [take(&p("self_attn.q_proj.weight"))?, take(&p("self_attn.k_proj.weight"))?, take(&p("self_attn.v_proj.weight"))?];
                out.insert(format!("h.{l}.attn.c_attn.weight"), Tensor::cat(&qkv, 0)?);
                out.insert(format!("h.{l}.attn.c_proj.weight"), take(&p("self_attn.o_proj.weight"))?);
                out.insert(format!("h.{l}.ln_1.weight"), take(&p("input_layernorm.weight"))?);
                out.insert(format!("h.{l}.ln_2.weight"), take(&p("post_attention_layernorm.weight"))?);
                for m in ["gate_proj", "up_proj", "down_proj"] {
                    out.insert(format!("h.{l}.mlp.{m}.weight"), take(&p(&format!("mlp.{m}.weight")))?);
                }
            }
            out.insert("ln_f.weight".to_string(), take("norm.weight")?);
            if !cfg.tie_embeddings {
                out.insert("lm_head.weight".to_string(), take("lm_head.weight")?);
            }
        }
    }
    Ok(out)
}

/// Loads a Hugging Face GPT-2 or Llama folder as lmlab tensors (any float dtype → `dtype`).
pub fn load_hf(dir: &Path, dtype: DType, dev: &Device) -> Result<(GptConfig, HashMap<String, Tensor>)> {
    let (arch, cfg) = hf_config(&dir.join("config.json"))?;
    let mut hf = HashMap::new();
    for f in weight_files(dir)? {
        for (n, t) in candle_core::safetensors::load(&f, dev).with_context(|| format!("reading {}", f.display()))? {
            hf.insert(n, t.to_dtype(dtype)?);
        }
    }
    let tensors = to_lmlab(arch, &cfg, hf).with_context(|| format!("{}", dir.display()))?;
    Ok((cfg, tensors))
}

/// What `tokenizer_config.json` says about prompts: the chat template with the text of its
/// BOS/EOS tokens, and whether a BOS token starts every prompt.
#[derive(Debug, Clone, Default)]
pub struct HfPromptConfig {
    pub chat: Option<(String, String, String)>,
    pub add_bos: bool,
}

/// Reads `dir/tokenizer_config.json` once; defaults when it is absent or unreadable.
pub fn hf_prompt_config(dir: &Path) -> HfPromptConfig {
    let Some(v) = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
    else {
        return HfPromptConfig::default();
    };
    let token = |k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).unwrap_or_default().to_string(),
        _ => String::new(),
    };
    let chat = v.get("chat_template").and_then(Value::as_str).map(|t| (t.to_string(), token("bos_token"), token("eos_token")));
    HfPromptConfig { chat, add_bos: v.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::init_trainable;
    use crate::{Gpt, Mode};

    fn logits(m: &Gpt) -> Vec<f32> {
        let ids = Tensor::new(&[3u32, 1, 4, 1, 5, 9, 2, 6], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        m.forward(&ids, &mut Mode::inference()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Writes `tensors` in the Hugging Face layout, the inverse of [`to_lmlab`], written
    /// independently from the transformers naming documentation.
    fn write_hf(dir: &Path, arch: HfArch, cfg: &GptConfig, t: &HashMap<String, Tensor>) {
        let mut hf: HashMap<String, Tensor> = HashMap::new();
        let config = match arch {
            HfArch::Gpt2 => {
                for (n, v) in t {
                    let is_conv = n.ends_with(".weight") && (n.contains("c_attn") || n.contains("c_proj") || n.contains("c_fc"));
                    hf.insert(format!("transformer.{n}"), if is_conv { v.t().unwrap().contiguous().unwrap() } else { v.clone() });
                }
                serde_json::json!({"model_type": "gpt2", "n_embd": cfg.d_model, "n_head": cfg.n_head, "n_layer": cfg.n_layer,
                    "n_positions": cfg.context_length, "vocab_size": cfg.vocab_size, "layer_norm_epsilon": cfg.norm_eps,
                    "activation_function": "gelu_new", "n_inner": null})
            }
            HfArch::Llama => {
                let hd = cfg.head_dim();
                let (d, kv) = (cfg.d_model, cfg.n_kv_head * hd);
                hf.insert("model.embed_tokens.weight".into(), t["wte.weight"].clone());
                hf.insert("model.norm.weight".into(), t["ln_f.weight"].clone());
                hf.insert("lm_head.weight".into(), t["lm_head.weight"].clone());
                for l in 0..cfg.n_layer {
                    let g = |s: &str| t[&format!("h.{l}.{s}")].clone();
                    let qkv = g("attn.c_attn.weight");
                    let mut put = |s: &str, v: Tensor| hf.insert(format!("model.layers.{l}.{s}"), v.contiguous().unwrap());
                    put("self_attn.q_proj.weight", qkv.narrow(0, 0, d).unwrap());
                    put("self_attn.k_proj.weight", qkv.narrow(0, d, kv).unwrap());
                    put("self_attn.v_proj.weight", qkv.narrow(0, d + kv, kv).unwrap());
                    put("self_attn.o_proj.weight", g("attn.c_proj.weight"));
                    put("input_layernorm.weight", g("ln_1.weight"));
                    put("post_attention_layernorm.weight", g("ln_2.weight"));
                    put("mlp.gate_proj.weight", g("mlp.gate_proj.weight"));
                    put("mlp.up_proj.weight", g("mlp.up_proj.weight"));
                    put("mlp.down_proj.weight", g("mlp.down_proj.weight"));
                }
                serde_json::json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": cfg.d_model,
                    "intermediate_size": cfg.d_ff, "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head,
                    "num_hidden_layers": cfg.n_layer, "max_position_embeddings": cfg.context_length, "vocab_size": cfg.vocab_size,
                    "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "tie_word_embeddings": false, "rope_scaling": null})
            }
        };
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        candle_core::safetensors::save(&hf, dir.join("model.safetensors")).unwrap();
    }

    #[test]
    fn gpt2_and_llama_checkpoints_load_to_the_same_model() {
        let cases = [
            (HfArch::Gpt2, GptConfig::gpt2_style(40, 16, 2, 4, 32, 128)),
            (HfArch::Llama, GptConfig { tie_embeddings: false, rope_theta: 500_000.0, ..GptConfig::llama_style(40, 16, 2, 4, 2, 32, 64) }),
        ];
        for (arch, cfg) in cases {
            let (model, params) = init_trainable(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
            let dir = tempfile::tempdir().unwrap();
            write_hf(dir.path(), arch, &cfg, &params.tensors());
            assert!(is_hf_folder(dir.path()));
            let (loaded_cfg, tensors) = load_hf(dir.path(), DType::F32, &Device::Cpu).unwrap();
            assert_eq!(loaded_cfg, cfg, "{arch:?}");
            let loaded = Gpt::new(&loaded_cfg, candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)).unwrap();
            assert_eq!(logits(&model), logits(&loaded), "{arch:?}");
        }
    }

    /// GPT-2's forward pass in f64 straight from the Hugging Face tensors (Conv1D weights
    /// [in, out], y = x·W + b, tanh GELU, learned positions, tied output), written from the
    /// transformers model description and sharing no code with lmlab's model: logits [T, V].
    fn gpt2_forward_f64(cfg: &GptConfig, hf: &HashMap<String, Tensor>, ids: &[usize]) -> Vec<Vec<f64>> {
        let get = |n: &str| -> Vec<f64> {
            hf[&format!("transformer.{n}")].flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
        };
        let (d, nh, t) = (cfg.d_model, cfg.n_head, ids.len());
        let hd = d / nh;
        let (wte, wpe) = (get("wte.weight"), get("wpe.weight"));
        let mut h: Vec<Vec<f64>> =
            ids.iter().enumerate().map(|(p, &i)| (0..d).map(|c| wte[i * d + c] + wpe[p * d + c]).collect()).collect();
        let layer_norm = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
            let mean = x.iter().sum::<f64>() / x.len() as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
            x.iter().enumerate().map(|(i, v)| (v - mean) / (var + cfg.norm_eps).sqrt() * w[i] + b[i]).collect()
        };
        let conv1d = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
            let out = b.len();
            (0..out).map(|o| b[o] + x.iter().enumerate().map(|(i, v)| v * w[i * out + o]).sum::<f64>()).collect()
        };
        let gelu = |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
        for l in 0..cfg.n_layer {
            let p = |s: &str| get(&format!("h.{l}.{s}"));
            let qkv: Vec<Vec<f64>> = h
                .iter()
                .map(|x| conv1d(&layer_norm(x, &p("ln_1.weight"), &p("ln_1.bias")), &p("attn.c_attn.weight"), &p("attn.c_attn.bias")))
                .collect();
            let mut y = vec![vec![0.0; d]; t];
            for head in 0..nh {
                for i in 0..t {
                    let q = &qkv[i][head * hd..(head + 1) * hd];
                    let scores: Vec<f64> = (0..=i)
                        .map(|j| {
                            q.iter().zip(&qkv[j][d + head * hd..d + (head + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                    for (j, sc) in scores.iter().enumerate() {
                        for c in 0..hd {
                            y[i][head * hd + c] += (sc - max).exp() / z * qkv[j][2 * d + head * hd + c];
                        }
                    }
                }
            }
            for (x, yi) in h.iter_mut().zip(&y) {
                let o = conv1d(yi, &p("attn.c_proj.weight"), &p("attn.c_proj.bias"));
                x.iter_mut().zip(o).for_each(|(a, b)| *a += b);
                let f: Vec<f64> = conv1d(&layer_norm(x, &p("ln_2.weight"), &p("ln_2.bias")), &p("mlp.c_fc.weight"), &p("mlp.c_fc.bias"))
                    .into_iter()
                    .map(gelu)
                    .collect();
                let m = conv1d(&f, &p("mlp.c_proj.weight"), &p("mlp.c_proj.bias"));
                x.iter_mut().zip(m).for_each(|(a, b)| *a += b);
            }
        }
        let (wf, bf) = (get("ln_f.weight"), get("ln_f.bias"));
        h.iter()
            .map(|x| layer_norm(x, &wf, &bf))
            .map(|x| (0..cfg.vocab_size).map(|v| (0..d).map(|c| x[c] * wte[v * d + c]).sum()).collect())
            .collect()
    }

    #[test]
    fn gpt2_from_a_hugging_face_folder_matches_an_independent_f64_forward_pass() {
        let cfg = GptConfig::gpt2_style(40, 16, 2, 4, 32, 128);
        let (_, params) = init_trainable(&cfg, 11, DType::F32, &Device::Cpu).unwrap();
        // Matrices ×5 (and non-zero biases and norm gains) so that attention and GELU work away
        // from their near-linear, near-uniform regime at the init's std 0.02.
        let tensors: HashMap<String, Tensor> = params
            .tensors()
            .into_iter()
            .map(|(n, t)| {
                // A fixed, seed-free pattern in [-0.1, 0.1].
                let shift =
                    Tensor::from_vec((0..t.elem_count()).map(|i| (i as f32 * 0.7).sin() * 0.1).collect(), t.shape(), &Device::Cpu).unwrap();
                let t = if t.rank() == 2 { (t * 5.0).unwrap() } else { (t + shift).unwrap() };
                (n, t)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_hf(dir.path(), HfArch::Gpt2, &cfg, &tensors);
        let (loaded_cfg, loaded) = load_hf(dir.path(), DType::F32, &Device::Cpu).unwrap();
        let model = Gpt::new(&loaded_cfg, candle_nn::VarBuilder::from_tensors(loaded, DType::F32, &Device::Cpu)).unwrap();
        let hf = candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
        let ids = [3usize, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3];
        let want = gpt2_forward_f64(&cfg, &hf, &ids);
        let input = Tensor::new(&ids.map(|i| i as u32), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        for mode in [Mode::inference(), Mode::training_without_dropout()] {
            let mut mode = mode;
            let got: Vec<Vec<f32>> = model.forward(&input, &mut mode).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
            let scale = want.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(scale > 1.0, "logits up to {scale}: too flat to test");
            for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                for (v, (a, b)) in g.iter().zip(w).enumerate() {
                    // f32 against f64 through two layers: ~1e-6 relative per op, well under 1e-4.
                    assert!((*a as f64 - b).abs() < 1e-4 * scale, "position {p} token {v}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn unsupported_configs_and_missing_tensors_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
        assert!(load_hf(dir.path(), DType::F32, &Device::Cpu).unwrap_err().to_string().contains("bert"));
        let cfg = GptConfig::gpt2_style(40, 16, 1, 4, 32, 128);
        let (_, params) = init_trainable(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
        let mut t = params.tensors();
        t.remove("h.0.ln_2.bias");
        write_hf(dir.path(), HfArch::Gpt2, &cfg, &t);
        let e = format!("{:#}", load_hf(dir.path(), DType::F32, &Device::Cpu).unwrap_err());
        assert!(e.contains("h.0.ln_2.bias"), "{e}");
    }
}
