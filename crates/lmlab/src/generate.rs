//! `lmlab generate`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::Device;
use clap::Args;
use lmlab_infer::{generate, GenerateRequest, LoadOptions, Model, SamplingParams, StopText};

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
    /// An lmlab model folder (e.g. runs/NAME/base), a GGUF file, or a Hugging Face folder.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    /// Send the prompt as a user message through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
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
    /// tokenizer.json (default: the model's own: in its folder or parent, or inside the GGUF).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object per sample (ids, text, finish reason, log-probabilities, timings).
    #[arg(long)]
    json: bool,
}

/// Loads the model the user named, with its tokenizer.
pub fn load_model(model: &Path, tokenizer: Option<&Path>) -> Result<Model> {
    Model::load(model, &LoadOptions { tokenizer, ..Default::default() }, &Device::Cpu)
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let model = load_model(&a.model, a.tokenizer.as_deref())?;
    let prompt = model.prompt(&a.prompt, a.chat, a.system.as_deref())?;
    let tok = model.tokenizer();
    let stops = StopText::new(tok, a.stop.clone());
    let req = GenerateRequest {
        prompt: prompt.clone(),
        max_tokens: a.max_tokens,
        sampling: a.sampler.params(),
        stop_ids: stops.stop_ids().to_vec(),
        use_cache: !a.no_cache,
        n: a.n,
        logprobs: a.logprobs,
    };
    let stream = !a.json && a.n == 1;
    let mut out = std::io::stdout().lock();
    // In chat mode only the reply is shown.
    let shown_prompt = if a.chat { "" } else { a.prompt.as_str() };
    if stream {
        write!(out, "{shown_prompt}")?;
        out.flush()?;
    }
    let gen = generate(
        &model,
        &req,
        |_, id| {
            if stream && !stops.stop_ids().contains(&id) {
                if let Ok(bytes) = tok.decode_bytes(&[id]) {
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
            }
        },
        |_, ids| stops.hit(ids),
    )?;
    let t = &gen.timings;
    if a.json {
        for s in &gen.samples {
            let text = stops.final_text(&s.tokens);
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
            writeln!(out, "--- sample {} ---\n{}{}", i + 1, shown_prompt, stops.text(&s.tokens))?;
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
        gen.samples
            .iter()
            .map(|s| serde_json::to_value(s.finish_reason).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
    );
    Ok(())
}
