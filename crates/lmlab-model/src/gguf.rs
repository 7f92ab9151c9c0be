//! Loading GGUF files of the llama architecture (llama.cpp's format) into a [`Gpt`]: quantized
//! linear weights stay quantized (F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K and the other ggml block
//! types candle reads) and are multiplied by lmlab's kernels (Q4_1, Q8_0) or candle's quantized
//! matmul (the rest); norms and the token
//! embedding table (dequantized for lookups) are dense. The embedded tokenizer and chat template
//! come back as the file's metadata (`lmlab_infer` reads them into a tokenizer).
//!
//! GGUF stores llama's query and key rows permuted for llama.cpp's interleaved rotary
//! embedding; lmlab's rotary embedding rotates halves, as Hugging Face does, so the rows are
//! put back in Hugging Face order while loading. Whole quantized rows are moved, which is
//! exact. Queries, keys and values are then fused into lmlab's single `c_attn` projection.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::config::GptConfig;
use crate::linear::{Weight, WeightSource};
use crate::model_file::gguf_config;
use crate::Gpt;

pub struct GgufModel {
    pub model: Gpt,
    pub config: GptConfig,
    /// The file's metadata: the embedded tokenizer (`tokenizer.ggml.*`), chat template, etc.
    pub metadata: HashMap<String, Value>,
    /// ggml type of each tensor in the file, by GGUF name (for reports).
    pub tensor_types: Vec<(String, GgmlDType)>,
}

/// Rows of `q` [rows, cols] reordered so that row `r` of the result is row `src_row(r)` of `q`.
fn permute_rows(q: &QTensor, src_row: impl Fn(usize) -> usize) -> Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let dtype = q.dtype();
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = q.data()?;
    let mut out = Vec::with_capacity(data.len());
    for r in 0..rows {
        let s = src_row(r);
        out.extend_from_slice(&data[s * row_bytes..(s + 1) * row_bytes]);
    }
    Ok(QTensor::new(QStorage::from_data(std::borrow::Cow::Owned(out), &Device::Cpu, dtype)?, (rows, cols))?)
}

/// Undoes llama.cpp's query/key permutation for `n_head` heads: within each head, GGUF row
/// `2i + j` holds Hugging Face row `j·(d/2) + i`.
fn unpermute_heads(q: &QTensor, n_head: usize) -> Result<QTensor> {
    let rows = q.shape().dims2()?.0;
    let hd = rows / n_head;
    let half = hd / 2;
    permute_rows(q, |r| {
        let (h, within) = (r / hd, r % hd);
        let (j, i) = (within / half, within % half);
        h * hd + 2 * i + j
    })
}

/// Stacks row blocks of the same ggml type into one tensor (rows are stored independently).
fn concat_rows(parts: &[QTensor]) -> Result<Weight> {
    let dtype = parts[0].dtype();
    let cols = parts[0].shape().dims2()?.1;
    if parts.iter().all(|p| p.dtype() == dtype) {
        let mut data = Vec::new();
        let mut rows = 0;
        for p in parts {
            data.extend_from_slice(&p.data()?);
            rows += p.shape().dims2()?.0;
        }
        let q = QTensor::new(QStorage::from_data(std::borrow::Cow::Owned(data), &Device::Cpu, dtype)?, (rows, cols))?;
        return Ok(Weight::quantized(q)?);
    }
    // Mixed types (some quantization mixes give values more bits): fall back to dense.
    let dense: Vec<Tensor> = parts.iter().map(|p| p.dequantize(&Device::Cpu)).collect::<candle_core::Result<_>>()?;
    Ok(Weight::Dense(Tensor::cat(&dense, 0)?))
}

fn meta_str(c: &Content, k: &str) -> Option<String> {
    c.metadata.get(k).and_then(|v| v.to_string().ok()).cloned()
}

fn meta_u32(c: &Content, k: &str) -> Option<u32> {
    c.metadata.get(k).and_then(|v| v.to_u32().ok())
}

/// lmlab's name for a GGUF tensor, or `None` for q/k/v (fused separately) and unused tensors.
fn lmlab_name(gguf: &str) -> Option<String> {
    if let Some(rest) = gguf.strip_prefix("blk.") {
        let (layer, part) = rest.split_once('.')?;
        let mapped = match part {
            "attn_norm.weight" => "ln_1.weight",
            "ffn_norm.weight" => "ln_2.weight",
            "attn_output.weight" => "attn.c_proj.weight",
            "ffn_gate.weight" => "mlp.gate_proj.weight",
            "ffn_up.weight" => "mlp.up_proj.weight",
            "ffn_down.weight" => "mlp.down_proj.weight",
            _ => return None,
        };
        return Some(format!("h.{layer}.{mapped}"));
    }
    Some(
        match gguf {
            "token_embd.weight" => "wte.weight",
            "output_norm.weight" => "ln_f.weight",
            "output.weight" => "lm_head.weight",
            _ => return None,
        }
        .to_string(),
    )
}

/// Loads a llama-architecture GGUF file.
pub fn load_gguf(path: &Path, device: &Device) -> Result<GgufModel> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = Content::read(&mut file).map_err(|e| anyhow::anyhow!("{}: not a readable GGUF file: {e}", path.display()))?;
    let arch = meta_str(&content, "general.architecture").unwrap_or_default();
    if arch != "llama" {
        bail!("{}: GGUF architecture {arch:?} is not supported (only \"llama\")", path.display());
    }
    let tied = !content.tensor_infos.contains_key("output.weight");
    let config = gguf_config(&content, tied).with_context(|| format!("{}: reading the model shape", path.display()))?;
    if let Some(rope_dims) = meta_u32(&content, "llama.rope.dimension_count") {
        if rope_dims as usize != config.head_dim() {
            bail!("{}: rotary embedding on {rope_dims} of {} head dimensions is not supported", path.display(), config.head_dim());
        }
    }
    if let Some(Value::F32(_)) = content.metadata.get("llama.rope.scaling.factor") {
        bail!("{}: rope scaling is not supported", path.display());
    }
    let mut read = |name: &str| -> Result<QTensor> {
        content.tensor(&mut file, name, &Device::Cpu).map_err(|e| anyhow::anyhow!("{}: tensor {name}: {e}", path.display()))
    };
    let mut weights = HashMap::new();
    let mut tensor_types = Vec::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        tensor_types.push((name.clone(), content.tensor_infos[name].ggml_dtype));
        if let Some(ours) = lmlab_name(name) {
            weights.insert(ours, Weight::quantized(read(name)?)?);
        }
    }
    for layer in 0..config.n_layer {
        let q = unpermute_heads(&read(&format!("blk.{layer}.attn_q.weight"))?, config.n_head)?;
        let k = unpermute_heads(&read(&format!("blk.{layer}.attn_k.weight"))?, config.n_kv_head)?;
        let v = read(&format!("blk.{layer}.attn_v.weight"))?;
        weights.insert(format!("h.{layer}.attn.c_attn.weight"), concat_rows(&[q, k, v])?);
    }
    let weights = weights.into_iter().map(|(n, w)| Ok((n, to_device(w, device)?))).collect::<Result<HashMap<_, _>>>()?;
    let model = Gpt::from_source(&config, WeightSource::loaded(weights, DType::F32, device))
        .with_context(|| format!("{}: building the model", path.display()))?;
    Ok(GgufModel { model, config, metadata: content.metadata, tensor_types })
}

fn to_device(w: Weight, device: &Device) -> Result<Weight> {
    if device.is_cpu() {
        return Ok(w);
    }
    Ok(match w {
        Weight::Dense(t) => Weight::Dense(t.to_device(device)?),
        Weight::Quantized(q) => {
            let q = q.qtensor()?;
            let data = q.data()?;
            Weight::quantized(QTensor::new(QStorage::from_data(data, device, q.dtype())?, q.shape().clone())?)?
        }
    })
}

/// Writes `tensors` (lmlab names, dense) as a llama GGUF file with every 2-D weight quantized to
/// `dtype` (norms stay F32), query/key rows permuted as llama.cpp expects, and `metadata`.
/// For tests and for exporting lmlab models to llama.cpp.
pub fn write_llama_gguf(
    path: &Path,
    cfg: &GptConfig,
    tensors: &HashMap<String, Tensor>,
    dtype: GgmlDType,
    metadata: Vec<(String, Value)>,
) -> Result<()> {
    let (d, hd) = (cfg.d_model, cfg.head_dim());
    let permute = |w: &Tensor, heads: usize| -> Result<Tensor> {
        // Hugging Face row j·(d/2)+i of each head goes to GGUF row 2i+j.
        let cols = w.dim(1)?;
        Ok(w.reshape((heads, 2, hd / 2, cols))?.transpose(1, 2)?.reshape((heads * hd, cols))?)
    };
    let get = |n: &str| tensors.get(n).with_context(|| format!("no tensor {n}"));
    let mut out: Vec<(String, QTensor)> = Vec::new();
    let mut push = |name: String, t: &Tensor, quantize: bool| -> Result<()> {
        // quantize() reads the whole underlying storage: give it a tensor that owns exactly its
        // elements (a narrowed view would bring its neighbours along).
        let t = Tensor::from_vec(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?, t.shape(), &Device::Cpu)?;
        let q = QTensor::quantize(&t, if quantize { dtype } else { GgmlDType::F32 })?;
        out.push((name, q));
        Ok(())
    };
    push("token_embd.weight".into(), get("wte.weight")?, true)?;
    push("output_norm.weight".into(), get("ln_f.weight")?, false)?;
    if !cfg.tie_embeddings {
        push("output.weight".into(), get("lm_head.weight")?, true)?;
    }
    for l in 0..cfg.n_layer {
        let p = |s: &str| format!("h.{l}.{s}");
        let qkv = get(&p("attn.c_attn.weight"))?;
        let kv = cfg.n_kv_head * hd;
        push(format!("blk.{l}.attn_q.weight"), &permute(&qkv.narrow(0, 0, d)?, cfg.n_head)?, true)?;
        push(format!("blk.{l}.attn_k.weight"), &permute(&qkv.narrow(0, d, kv)?, cfg.n_kv_head)?, true)?;
        push(format!("blk.{l}.attn_v.weight"), &qkv.narrow(0, d + kv, kv)?, true)?;
        push(format!("blk.{l}.attn_output.weight"), get(&p("attn.c_proj.weight"))?, true)?;
        push(format!("blk.{l}.attn_norm.weight"), get(&p("ln_1.weight"))?, false)?;
        push(format!("blk.{l}.ffn_norm.weight"), get(&p("ln_2.weight"))?, false)?;
        push(format!("blk.{l}.ffn_gate.weight"), get(&p("mlp.gate_proj.weight"))?, true)?;
        push(format!("blk.{l}.ffn_up.weight"), get(&p("mlp.up_proj.weight"))?, true)?;
        push(format!("blk.{l}.ffn_down.weight"), get(&p("mlp.down_proj.weight"))?, true)?;
    }
    let u32v = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.block_count".into(), u32v(cfg.n_layer)),
        ("llama.context_length".into(), u32v(cfg.context_length)),
        ("llama.embedding_length".into(), u32v(d)),
        ("llama.feed_forward_length".into(), u32v(cfg.d_ff)),
        ("llama.attention.head_count".into(), u32v(cfg.n_head)),
        ("llama.attention.head_count_kv".into(), u32v(cfg.n_kv_head)),
        ("llama.rope.freq_base".into(), Value::F32(cfg.rope_theta as f32)),
        ("llama.rope.dimension_count".into(), u32v(hd)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(cfg.norm_eps as f32)),
        ("llama.vocab_size".into(), u32v(cfg.vocab_size)),
    ];
    meta.extend(metadata);
    let mut buf = std::io::Cursor::new(Vec::new());
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = out.iter().map(|(k, v)| (k.as_str(), v)).collect();
    candle_core::quantized::gguf_file::write(&mut buf, &meta_refs, &tensor_refs)?;
    crate::checkpoint::write_atomic(path, buf.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::init_trainable;
    use crate::Mode;

    fn dense_model(cfg: &GptConfig, tensors: &HashMap<String, Tensor>) -> Gpt {
        Gpt::new(cfg, candle_nn::VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu)).unwrap()
    }

    /// A llama-shaped model whose matrices have 256 columns (the k-quant block size).
    fn reference() -> (GptConfig, Gpt, HashMap<String, Tensor>) {
        let cfg = GptConfig { tie_embeddings: false, ..GptConfig::llama_style(64, 64, 2, 4, 2, 256, 256) };
        let (_, params) = init_trainable(&cfg, 7, DType::F32, &Device::Cpu).unwrap();
        // Larger weights than the init's 0.02 so that the logits spread out.
        let tensors: HashMap<String, Tensor> =
            params.tensors().into_iter().map(|(n, t)| if t.rank() == 2 { (n, (t * 3.0).unwrap()) } else { (n, t) }).collect();
        (cfg.clone(), dense_model(&cfg, &tensors), tensors)
    }

    fn logits(m: &Gpt, ids: &[u32]) -> Vec<f32> {
        let t = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        m.forward(&t, &mut Mode::inference()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
        let scale = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale
    }

    #[test]
    fn unquantized_gguf_round_trip_is_exact() {
        // F32 must reproduce the model exactly: names, the q/k row permutation and the fusing
        // of q|k|v are all checked by this; F16 only rounds the weights.
        let (cfg, dense, tensors) = reference();
        let ids: Vec<u32> = (0..12).map(|i| (i * 7 % 64) as u32).collect();
        let want = logits(&dense, &ids);
        let dir = tempfile::tempdir().unwrap();
        for (dtype, tol) in [(GgmlDType::F32, 1e-6), (GgmlDType::F16, 2e-3)] {
            let path = dir.path().join(format!("{dtype:?}.gguf"));
            write_llama_gguf(&path, &cfg, &tensors, dtype, vec![]).unwrap();
            let loaded = load_gguf(&path, &Device::Cpu).unwrap();
            // GGUF stores the norm epsilon as f32.
            assert!((loaded.config.norm_eps - cfg.norm_eps).abs() < 1e-12, "{dtype:?}");
            assert_eq!(GptConfig { norm_eps: cfg.norm_eps, ..loaded.config.clone() }, cfg, "{dtype:?}");
            let diff = max_rel_diff(&want, &logits(&loaded.model, &ids));
            assert!(diff < tol, "{dtype:?}: max relative logit difference {diff}");
        }
    }

    #[test]
    fn quantized_matmul_agrees_with_its_dequantized_weights_for_every_block_type() {
        // Each block type through candle's quantized matmul vs a dense model holding the same
        // (dequantized) weights: what is left is the 8-bit quantization of the activations
        // inside the matmul. A misread block layout would be off by far more.
        let (cfg, original, tensors) = reference();
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u32> = (0..10).map(|i| (i * 5 % 64) as u32).collect();
        let unquantized = logits(&original, &ids);
        let mut distance = HashMap::new();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q6K, GgmlDType::Q4K, GgmlDType::Q4_1, GgmlDType::Q4_0] {
            let path = dir.path().join(format!("{dtype:?}.gguf"));
            write_llama_gguf(&path, &cfg, &tensors, dtype, vec![]).unwrap();
            let loaded = load_gguf(&path, &Device::Cpu).unwrap();
            // Every matrix was quantized on writing; the dense twin holds the dequantized values.
            let dequantized: HashMap<String, Tensor> = tensors
                .iter()
                .map(|(n, t)| {
                    let t = if t.rank() == 2 { QTensor::quantize(t, dtype).unwrap().dequantize(&Device::Cpu).unwrap() } else { t.clone() };
                    (n.clone(), t)
                })
                .collect();
            let got = logits(&loaded.model, &ids);
            let diff = max_rel_diff(&logits(&dense_model(&cfg, &dequantized), &ids), &got);
            assert!(diff < 3e-2, "{dtype:?}: max relative logit difference {diff} to the dequantized twin");
            // And quantizing changed the model, but only moderately.
            distance.insert(format!("{dtype:?}"), max_rel_diff(&unquantized, &got));
        }
        // More bits, closer to the unquantized model: 8-bit blocks sit below 6-bit k-quants,
        // which sit below every 4-bit type (a misread scale would break the order).
        let d = |k: &str| distance[k];
        assert!(d("Q8_0") > 1e-5, "quantizing changed the model");
        assert!(d("Q8_0") < d("Q6K"), "{distance:?}");
        for four in ["Q4K", "Q4_1", "Q4_0"] {
            assert!(d("Q6K") < d(four), "{distance:?}");
        }
    }

    #[test]
    fn q_k_permutation_inverts_llama_cpp_order() {
        // 2 heads of dimension 4, one column: HF rows [h0: a0 a1 b0 b1, h1: ...] are stored by
        // llama.cpp as [a0 b0 a1 b1, ...].
        let hf: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let gguf = [0.0f32, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0];
        let q = QTensor::quantize(
            &Tensor::new(&gguf, &Device::Cpu).unwrap().reshape((8, 1)).unwrap().broadcast_as((8, 32)).unwrap().contiguous().unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        let back = unpermute_heads(&q, 2).unwrap().dequantize(&Device::Cpu).unwrap();
        let col: Vec<f32> = back.narrow(1, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(col, hf);
    }

    #[test]
    fn names_map_and_unsupported_files_are_refused() {
        assert_eq!(lmlab_name("blk.3.ffn_down.weight").unwrap(), "h.3.mlp.down_proj.weight");
        assert_eq!(lmlab_name("token_embd.weight").unwrap(), "wte.weight");
        assert!(lmlab_name("blk.0.attn_q.weight").is_none());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gguf");
        std::fs::write(&p, b"GGUF\x03\x00\x00\x00garbage").unwrap();
        assert!(load_gguf(&p, &Device::Cpu).err().unwrap().to_string().contains("x.gguf"));
    }
}
