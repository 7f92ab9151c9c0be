//! `lmlab generate`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use lmlab_infer::{generate, GenerateRequest, SamplingParams};
use lmlab_model::checkpoint::load_model;
use lmlab_tokenizer::Tokenizer;

/// Sampler flags shared by `generate` and `inspect`.
#[derive(Args, Clone)]
pub struct SamplerArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub min_p: Option<f64>,
    #[arg(long)]
    pub typical_p: Option<f64>,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f64,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f64,
    /// Tokens the penalties look back over (0 = all).
    #[arg(long, default_value_t = 64)]
    pub penalty_window: usize,
    /// TOKEN_ID=BIAS, repeatable.
    #[arg(long, value_parser = parse_bias)]
    pub logit_bias: Vec<(u32, f32)>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, b) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected TOKEN_ID=BIAS"))?;
    Ok((id.trim().parse().map_err(|e| format!("{id:?}: {e}"))?, b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?))
}

impl SamplerArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            typical_p: self.typical_p,
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            penalty_window: self.penalty_window,
            logit_bias: self.logit_bias.clone(),
            seed: self.seed,
        }
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder (config.json + model.safetensors), e.g. runs/NAME/base.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 100)]
    max_tokens: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// Samples of the prompt, decoded together after one shared prefill.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Stop when the generated text contains this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Report log-probabilities with this many alternatives per token (with --json).
    #[arg(long)]
    logprobs: Option<usize>,
    /// Recompute the whole sequence at every step instead of using the KV cache.
    #[arg(long)]
    no_cache: bool,
    /// tokenizer.json (default: in the model folder, else in its parent).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object per sample (ids, text, finish reason, log-probabilities, timings).
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

/// Prompt ids: `<|bos|>` (training documents start with it) then the text.
pub fn prompt_ids(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = tok.special().bos.into_iter().collect();
    ids.extend(tok.encode(text)?);
    Ok(ids)
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let tok = Tokenizer::from_file(find_tokenizer(&a.model, a.tokenizer.as_deref())?)?;
    let model = load_model(&a.model, DType::F32, &Device::Cpu)?;
    let prompt = prompt_ids(&tok, &a.prompt)?;
    let req = GenerateRequest {
        prompt: prompt.clone(),
        max_tokens: a.max_tokens,
        sampling: a.sampler.params(),
        stop_ids: tok.special().stop_ids.clone(),
        use_cache: !a.no_cache,
        n: a.n,
        logprobs: a.logprobs,
    };
    let stream = !a.json && a.n == 1;
    let mut out = std::io::stdout().lock();
    if stream {
        write!(out, "{}", a.prompt)?;
        out.flush()?;
    }
    let stops = req.stop_ids.clone();
    let stop_strings = a.stop.clone();
    let text_of = |ids: &[u32]| -> String {
        let kept: Vec<u32> = ids.iter().copied().filter(|id| !stops.contains(id)).collect();
        tok.decode(&kept).unwrap_or_default()
    };
    let gen = generate(
        &model,
        &req,
        |_, id| {
            if stream && !stops.contains(&id) {
                if let Ok(bytes) = tok.decode_bytes(&[id]) {
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
            }
        },
        |_, ids| !stop_strings.is_empty() && stop_strings.iter().any(|s| text_of(ids).contains(s.as_str())),
    )?;
    let t = &gen.timings;
    if a.json {
        for s in &gen.samples {
            let mut text = text_of(&s.tokens);
            if let Some(cut) = stop_strings.iter().filter_map(|st| text.find(st.as_str())).min() {
                text.truncate(cut);
            }
            let logprobs: Option<Vec<serde_json::Value>> = a.logprobs.map(|_| {
                s.logprobs
                    .iter()
                    .map(|lp| {
                        serde_json::json!({
                            "token": lp.token,
                            "text": tok.decode(&[lp.token]).unwrap_or_default(),
                            "logprob": lp.logprob,
                            "top": lp.top.iter().map(|(id, l)| serde_json::json!({"token": id, "text": tok.decode(&[*id]).unwrap_or_default(), "logprob": l})).collect::<Vec<_>>(),
                        })
                    })
                    .collect()
            });
            println!(
                "{}",
                serde_json::json!({
                    "prompt_ids": prompt,
                    "ids": s.tokens,
                    "text": text,
                    "finish_reason": s.finish_reason,
                    "logprobs": logprobs,
                    "timings": t,
                    "kv_cache": !a.no_cache,
                })
            );
        }
        return Ok(());
    }
    if !stream {
        for (i, s) in gen.samples.iter().enumerate() {
            writeln!(out, "--- sample {} ---\n{}{}", i + 1, a.prompt, text_of(&s.tokens))?;
        }
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
        gen.samples.iter().map(|s| serde_json::to_value(s.finish_reason).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()).collect::<Vec<_>>().join(","),
    );
    Ok(())
}
