//! Reading a model's shape from its files, without loading the weights: an lmlab checkpoint
//! folder (`config.json`), a safetensors file (its JSON header), or a GGUF file (its metadata
//! and tensor table, through candle's reader).
//!
//! Parameters are counted from the tensor table itself, grouped by name into the same
//! components as [`ParamCount`]; where the file describes the architecture (lmlab config,
//! GGUF `llama.*` metadata) a [`GptConfig`] is returned too, so the full size report applies.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::{Activation, GptConfig, Norm, ParamCount, Position};

#[derive(Debug, Clone, Serialize)]
pub struct ModelFileInfo {
    pub format: &'static str,
    /// Parameters counted from the tensors in the file (None for a config-only folder).
    pub tensor_params: Option<ParamCount>,
    pub config: Option<GptConfig>,
    pub file_bytes: u64,
}

/// Which component a tensor belongs to, by the naming conventions of lmlab, Hugging Face
/// (GPT-2, Llama) and GGUF.
fn component(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n == "output.weight" || n.starts_with("lm_head") {
        "lm_head"
    } else if n.contains("norm") || n.contains("ln_") {
        "norms"
    } else if n.contains("embd")
        || n.contains("embed")
        || n.starts_with("wte")
        || n.starts_with("wpe")
        || n.contains(".wte")
        || n.contains(".wpe")
    {
        "embeddings"
    } else if n.contains("attn")
        || n.contains("attention")
        || n.contains("q_proj")
        || n.contains("k_proj")
        || n.contains("v_proj")
        || n.contains("o_proj")
    {
        "attention"
    } else {
        "mlp"
    }
}

fn count(tensors: impl Iterator<Item = (String, usize)>) -> ParamCount {
    let mut p = ParamCount::default();
    for (name, n) in tensors {
        match component(&name) {
            "lm_head" => p.lm_head += n,
            "norms" => p.norms += n,
            "embeddings" => p.embeddings += n,
            "attention" => p.attention += n,
            _ => p.mlp += n,
        }
        p.total += n;
    }
    p
}

pub fn inspect(path: &Path) -> Result<ModelFileInfo> {
    if path.is_dir() {
        let cfg = crate::checkpoint::load_config(path)?;
        let weights = path.join(crate::checkpoint::WEIGHTS_FILE);
        let (tensor_params, file_bytes) =
            if weights.is_file() { (Some(safetensors_params(&weights)?), std::fs::metadata(&weights)?.len()) } else { (None, 0) };
        return Ok(ModelFileInfo { format: "lmlab checkpoint", tensor_params, config: Some(cfg), file_bytes });
    }
    let file_bytes = std::fs::metadata(path).with_context(|| format!("{} does not exist", path.display()))?.len();
    let mut magic = [0u8; 4];
    std::fs::File::open(path)?.read_exact(&mut magic).with_context(|| format!("{} is too short to be a model file", path.display()))?;
    if &magic == b"GGUF" {
        let mut f = std::fs::File::open(path)?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut f)
            .map_err(|e| anyhow::anyhow!("{}: not a readable GGUF file: {e}", path.display()))?;
        let params = count(content.tensor_infos.iter().map(|(n, t)| (n.clone(), t.shape.elem_count())));
        let config = gguf_config(&content, params.lm_head == 0).ok();
        return Ok(ModelFileInfo { format: "gguf", tensor_params: Some(params), config, file_bytes });
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        let params = safetensors_params(path)?;
        let config = path
            .parent()
            .map(|d| d.join(crate::checkpoint::CONFIG_FILE))
            .filter(|c| c.is_file())
            .and_then(|_| crate::checkpoint::load_config(path.parent()?).ok());
        return Ok(ModelFileInfo { format: "safetensors", tensor_params: Some(params), config, file_bytes });
    }
    bail!("{}: not a model folder, safetensors file or GGUF file", path.display())
}

/// Parameter counts from a safetensors header (8-byte length, then JSON).
fn safetensors_params(path: &Path) -> Result<ParamCount> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).with_context(|| format!("{}: truncated safetensors header", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        bail!("{}: safetensors header length {len} is implausible", path.display());
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).with_context(|| format!("{}: truncated safetensors header", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).with_context(|| format!("{}: safetensors header is not JSON", path.display()))?;
    let mut tensors = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let shape = v.get("shape").and_then(|s| s.as_array()).with_context(|| format!("{}: tensor {name} has no shape", path.display()))?;
        tensors.push((name, shape.iter().map(|d| d.as_u64().unwrap_or(0) as usize).product::<usize>()));
    }
    Ok(count(tensors.into_iter()))
}

/// A [`GptConfig`] from GGUF `llama.*` metadata.
pub(crate) fn gguf_config(c: &candle_core::quantized::gguf_file::Content, tied: bool) -> Result<GptConfig> {
    let arch = c.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let get = |k: &str| -> Result<usize> {
        Ok(c.metadata.get(&format!("{arch}.{k}")).with_context(|| format!("GGUF has no {arch}.{k}"))?.to_u32()? as usize)
    };
    let vocab = match c.metadata.get(&format!("{arch}.vocab_size")) {
        Some(v) => v.to_u32()? as usize,
        None => c.metadata.get("tokenizer.ggml.tokens").context("GGUF has no vocabulary size")?.to_vec()?.len(),
    };
    let n_head = get("attention.head_count")?;
    Ok(GptConfig {
        vocab_size: vocab,
        context_length: get("context_length")?,
        n_layer: get("block_count")?,
        n_head,
        n_kv_head: get("attention.head_count_kv").unwrap_or(n_head),
        d_model: get("embedding_length")?,
        d_ff: get("feed_forward_length")?,
        norm: Norm::RmsNorm,
        activation: Activation::SwiGlu,
        position: Position::Rope,
        rope_theta: c.metadata.get(&format!("{arch}.rope.freq_base")).and_then(|v| v.to_f32().ok()).map_or(10_000.0, f64::from),
        tie_embeddings: tied,
        dropout: 0.0,
        bias: false,
        norm_eps: c.metadata.get(&format!("{arch}.attention.layer_norm_rms_epsilon")).and_then(|v| v.to_f32().ok()).map_or(1e-5, f64::from),
    })
}
