//! `lmlab bench infer`: prefill and decode throughput of the engine on one model, measured the
//! way llama.cpp's figures are (a prompt of fixed length read in one pass, then greedy decode
//! steps that ignore end tokens), so the two can be set side by side.

use anyhow::Result;
use lmlab_model::CausalLm;
use serde::Serialize;

use crate::engine::{generate, GenerateRequest};
use crate::sampler::SamplingParams;

#[derive(Debug, Clone, Serialize)]
pub struct InferBench {
    pub threads: usize,
    pub prompt_tokens: usize,
    pub prefill_tokens_per_sec: f64,
    pub time_to_first_token_secs: f64,
    pub decode_tokens: usize,
    pub decode_tokens_per_sec: f64,
}

/// Prefill `prompt`, then `decode` greedy steps. A short warm-up run goes first so that lazy
/// allocations and thread pools are not timed.
pub fn bench_infer(model: &dyn CausalLm, prompt: &[u32], decode: usize) -> Result<InferBench> {
    let greedy = SamplingParams { temperature: 0.0, ..SamplingParams::default() };
    let warm = GenerateRequest::new(prompt[..prompt.len().min(8)].to_vec(), 2, greedy.clone());
    generate(model, &warm, |_, _| {}, |_, _| false)?;
    // The first token comes from the prefill; `decode` more follow.
    let req = GenerateRequest::new(prompt.to_vec(), decode + 1, greedy);
    let g = generate(model, &req, |_, _| {}, |_, _| false)?;
    let t = g.timings;
    Ok(InferBench {
        threads: rayon_threads(),
        prompt_tokens: t.prompt_tokens,
        prefill_tokens_per_sec: t.prefill_tokens_per_sec,
        time_to_first_token_secs: t.time_to_first_token_secs,
        decode_tokens: t.generated_tokens.saturating_sub(1),
        decode_tokens_per_sec: t.decode_tokens_per_sec,
    })
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
