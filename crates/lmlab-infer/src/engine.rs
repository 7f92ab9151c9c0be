//! The generation loop: prefill, then decode from the KV cache, with timings.
//!
//! Prefill reads the whole prompt in one parallel forward pass and fills the cache; the first
//! token is sampled from its last position (time to first token). Each decode step feeds only
//! the newest token. With `use_cache = false` every step recomputes the whole sequence instead,
//! which gives identical tokens and shows what the cache saves.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use lmlab_model::{Gpt, Mode};
use serde::Serialize;

use crate::sampler::{Sampler, SamplingParams};

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends after emitting one of these.
    pub stop_ids: Vec<u32>,
    pub use_cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token was generated.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The context window is full.
    Context,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub prefill_tokens_per_sec: f64,
    pub time_to_first_token_secs: f64,
    pub decode_secs: f64,
    /// Tokens after the first, per second of decoding.
    pub decode_tokens_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

fn last_logits(logits: &Tensor) -> Result<Vec<f32>> {
    Ok(logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Generates up to `max_tokens` after the prompt, calling `on_token` with each new token.
pub fn generate(model: &Gpt, req: &GenerateRequest, mut on_token: impl FnMut(u32)) -> Result<Generation> {
    req.sampling.validate()?;
    let ctx = model.config().context_length;
    if req.prompt.is_empty() {
        bail!("the prompt is empty (it needs at least one token)");
    }
    if req.prompt.len() > ctx {
        bail!("the prompt has {} tokens but the model's context is {ctx}", req.prompt.len());
    }
    let dev = model.device().clone();
    let mut sampler = Sampler::new(req.sampling.clone());
    let mut cache = model.new_cache();
    let mut seq = req.prompt.clone();
    let mut out = Vec::new();
    let mut timings = Timings { prompt_tokens: req.prompt.len(), ..Default::default() };
    let start = Instant::now();

    // Logits for the next token given `seq`; `fresh` holds the tokens the cache has not seen.
    let mut next_logits = |seq: &[u32], fresh: &[u32]| -> Result<Vec<f32>> {
        if req.use_cache {
            let ids = Tensor::new(fresh, &dev)?.unsqueeze(0)?;
            last_logits(&model.forward_cached(&ids, &mut cache, &mut Mode::inference())?)
        } else {
            let ids = Tensor::new(seq, &dev)?.unsqueeze(0)?;
            let logits = model.forward(&ids, &mut Mode::inference())?;
            last_logits(&logits.narrow(1, seq.len() - 1, 1)?)
        }
    };

    let mut finish = FinishReason::Length;
    if req.max_tokens > 0 {
        let logits = next_logits(&seq, &req.prompt)?;
        timings.prefill_secs = start.elapsed().as_secs_f64();
        let mut token = sampler.sample(&logits);
        timings.time_to_first_token_secs = start.elapsed().as_secs_f64();
        let decode_start = Instant::now();
        loop {
            out.push(token);
            seq.push(token);
            on_token(token);
            if req.stop_ids.contains(&token) {
                finish = FinishReason::Stop;
                break;
            }
            if out.len() >= req.max_tokens {
                break;
            }
            if seq.len() >= ctx {
                finish = FinishReason::Context;
                break;
            }
            let logits = next_logits(&seq, &[token])?;
            token = sampler.sample(&logits);
        }
        timings.decode_secs = decode_start.elapsed().as_secs_f64();
    }
    timings.generated_tokens = out.len();
    timings.prefill_tokens_per_sec = timings.prompt_tokens as f64 / timings.prefill_secs.max(1e-9);
    timings.decode_tokens_per_sec = out.len().saturating_sub(1) as f64 / timings.decode_secs.max(1e-9);
    Ok(Generation { tokens: out, finish_reason: finish, timings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use lmlab_model::checkpoint::init_trainable;
    use lmlab_model::{Activation, GptConfig, Norm, Position};

    fn model() -> Gpt {
        let cfg = GptConfig {
            vocab_size: 32,
            context_length: 24,
            n_layer: 2,
            n_head: 2,
            n_kv_head: 1,
            d_model: 16,
            d_ff: 32,
            norm: Norm::LayerNorm,
            activation: Activation::Gelu,
            position: Position::Learned,
            rope_theta: 10_000.0,
            tie_embeddings: true,
            dropout: 0.0,
            bias: true,
            norm_eps: 1e-5,
        };
        init_trainable(&cfg, 5, DType::F32, &Device::Cpu).unwrap().0
    }

    fn request(use_cache: bool, max_tokens: usize, stop_ids: Vec<u32>) -> GenerateRequest {
        GenerateRequest {
            prompt: vec![1, 2, 3, 4, 5],
            max_tokens,
            sampling: SamplingParams { temperature: 0.9, top_k: Some(20), top_p: Some(0.95), seed: 11 },
            stop_ids,
            use_cache,
        }
    }

    #[test]
    fn cache_and_recompute_generate_the_same_tokens() {
        let m = model();
        let a = generate(&m, &request(true, 12, vec![]), |_| {}).unwrap();
        let b = generate(&m, &request(false, 12, vec![]), |_| {}).unwrap();
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(a.tokens.len(), 12);
        assert_eq!(a.finish_reason, FinishReason::Length);
        assert_eq!(a.timings.prompt_tokens, 5);
    }

    #[test]
    fn stops_at_stop_tokens_and_at_the_context_edge() {
        let m = model();
        let free = generate(&m, &request(true, 12, vec![]), |_| {}).unwrap();
        let stop = free.tokens[3];
        let first = free.tokens.iter().position(|&t| t == stop).unwrap();
        let stopped = generate(&m, &request(true, 12, vec![stop]), |_| {}).unwrap();
        assert_eq!(stopped.tokens, free.tokens[..=first]);
        assert_eq!(stopped.finish_reason, FinishReason::Stop);
        let full = generate(&m, &request(true, 100, vec![]), |_| {}).unwrap();
        assert_eq!(full.tokens.len(), 24 - 5);
        assert_eq!(full.finish_reason, FinishReason::Context);
        let mut long = request(true, 1, vec![]);
        long.prompt = vec![1; 25];
        let err = generate(&m, &long, |_| {}).unwrap_err().to_string();
        assert!(err.contains("25 tokens") && err.contains("context is 24"), "{err}");
    }
}
