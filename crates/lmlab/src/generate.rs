//! `lmlab generate`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use lmlab_infer::{generate, GenerateRequest, SamplingParams};
use lmlab_model::checkpoint::load_model;
use lmlab_tokenizer::Tokenizer;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder (config.json + model.safetensors), e.g. runs/NAME/base.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 100)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Recompute the whole sequence at every step instead of using the KV cache.
    #[arg(long)]
    no_cache: bool,
    /// tokenizer.json (default: in the model folder, else in its parent).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object (ids, text, finish reason, timings) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn find_tokenizer(model: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let candidates = [model.join("tokenizer.json"), model.parent().map(|p| p.join("tokenizer.json")).unwrap_or_default()];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("no tokenizer.json in {} or its parent; pass --tokenizer", model.display()))
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let tok = Tokenizer::from_file(find_tokenizer(&a.model, a.tokenizer.as_deref())?)?;
    let model = load_model(&a.model, DType::F32, &Device::Cpu)?;
    // Training documents start with <|bos|>, so a prompt does too.
    let mut prompt: Vec<u32> = tok.special().bos.into_iter().collect();
    prompt.extend(tok.encode(&a.prompt)?);
    let req = GenerateRequest {
        prompt: prompt.clone(),
        max_tokens: a.max_tokens,
        sampling: SamplingParams { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed },
        stop_ids: tok.special().stop_ids.clone(),
        use_cache: !a.no_cache,
    };
    let mut out = std::io::stdout().lock();
    if !a.json {
        write!(out, "{}", a.prompt)?;
        out.flush()?;
    }
    let stops = req.stop_ids.clone();
    let gen = generate(&model, &req, |id| {
        if !a.json && !stops.contains(&id) {
            if let Ok(bytes) = tok.decode_bytes(&[id]) {
                let _ = out.write_all(&bytes);
                let _ = out.flush();
            }
        }
    })?;
    let t = &gen.timings;
    if a.json {
        let text_ids: Vec<u32> = gen.tokens.iter().copied().filter(|id| !stops.contains(id)).collect();
        return crate::print_json(&serde_json::json!({
            "prompt_ids": prompt,
            "ids": gen.tokens,
            "text": tok.decode(&text_ids)?,
            "finish_reason": gen.finish_reason,
            "timings": t,
            "kv_cache": !a.no_cache,
        }));
    }
    writeln!(out)?;
    eprintln!(
        "[{} prompt tokens | prefill {:.0} tok/s | first token {:.1} ms | decode {:.1} tok/s over {} tokens | {} | {}]",
        t.prompt_tokens,
        t.prefill_tokens_per_sec,
        t.time_to_first_token_secs * 1e3,
        t.decode_tokens_per_sec,
        t.generated_tokens,
        if a.no_cache { "no cache: full recompute per token" } else { "KV cache" },
        serde_json::to_value(gen.finish_reason)?.as_str().unwrap_or_default(),
    );
    Ok(())
}
