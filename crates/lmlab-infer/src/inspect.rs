//! Looking inside generation: the next-token distribution before and after each sampler step,
//! and which earlier tokens each generated token attended to.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use lmlab_model::{CausalLm, Gpt, Mode};
use serde::Serialize;

use crate::sampler::{entropy_bits, Dist, Sampler, SamplingParams};

#[derive(Debug, Clone, Serialize)]
pub struct NextTokenRow {
    pub token: u32,
    pub raw: f64,
    pub adjusted: f64,
    pub temperature: f64,
    pub top_k: f64,
    pub top_p: f64,
    pub min_p: f64,
    pub typical_p: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextTokenReport {
    pub rows: Vec<NextTokenRow>,
    pub entropy_raw_bits: f64,
    pub entropy_final_bits: f64,
    /// Tokens left with non-zero probability after all steps.
    pub candidates_final: usize,
}

fn prob(d: &Dist, t: u32) -> f64 {
    d.iter().find(|q| q.0 == t).map_or(0.0, |q| q.1)
}

/// The `top` most likely next tokens (by raw probability) with their probability after each
/// sampler step.
pub fn next_token(model: &dyn CausalLm, prompt: &[u32], params: &SamplingParams, top: usize) -> Result<NextTokenReport> {
    params.validate()?;
    if prompt.is_empty() || prompt.len() > model.config().context_length {
        bail!("the prompt has {} tokens; it needs 1..={}", prompt.len(), model.config().context_length);
    }
    let ids = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
    let logits = model.forward_cached(&ids, &mut model.new_cache())?.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let st = Sampler::new(params.clone()).stages(&logits, prompt);
    let rows = st
        .raw
        .iter()
        .take(top)
        .map(|&(t, p)| NextTokenRow {
            token: t,
            raw: p,
            adjusted: prob(&st.adjusted, t),
            temperature: prob(&st.temperature, t),
            top_k: prob(&st.top_k, t),
            top_p: prob(&st.top_p, t),
            min_p: prob(&st.min_p, t),
            typical_p: prob(&st.typical_p, t),
        })
        .collect();
    Ok(NextTokenReport {
        rows,
        entropy_raw_bits: entropy_bits(&st.raw),
        entropy_final_bits: entropy_bits(&st.typical_p),
        candidates_final: st.typical_p.len(),
    })
}

/// Attention of the forward pass that produced one generated token.
#[derive(Debug, Clone, Serialize)]
pub struct StepAttention {
    pub token: u32,
    /// Position of the generated token in the full sequence.
    pub position: usize,
    /// weights[layer][head][j] over positions j < position (the query is the previous token).
    pub weights: Vec<Vec<Vec<f32>>>,
}

impl StepAttention {
    /// Weights over earlier positions, averaged over the chosen layers and heads (None = all).
    pub fn averaged(&self, layer: Option<usize>, head: Option<usize>) -> Vec<f32> {
        let mut sum = vec![0f32; self.position];
        let mut n = 0;
        for (_, heads) in self.weights.iter().enumerate().filter(|(l, _)| layer.is_none_or(|x| x == *l)) {
            for (_, w) in heads.iter().enumerate().filter(|(h, _)| head.is_none_or(|x| x == *h)) {
                for (s, v) in sum.iter_mut().zip(w) {
                    *s += v;
                }
                n += 1;
            }
        }
        sum.iter().map(|s| s / n.max(1) as f32).collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttentionTrace {
    pub prompt_len: usize,
    /// Prompt and generated tokens.
    pub tokens: Vec<u32>,
    pub steps: Vec<StepAttention>,
}

/// Generates up to `n` tokens from the KV cache, capturing every layer's attention weights for
/// the query that produced each token.
pub fn attention_trace(model: &Gpt, prompt: &[u32], n: usize, params: &SamplingParams, stop_ids: &[u32]) -> Result<AttentionTrace> {
    params.validate()?;
    let ctx = model.config().context_length;
    if prompt.is_empty() || prompt.len() > ctx {
        bail!("the prompt has {} tokens; it needs 1..={ctx}", prompt.len());
    }
    let dev = model.device().clone();
    let mut sampler = Sampler::new(params.clone());
    let mut cache = model.new_cache();
    let mut tokens = prompt.to_vec();
    let mut steps = Vec::new();
    let mut feed = prompt.to_vec();
    while steps.len() < n && tokens.len() < ctx {
        let mut captured = Vec::new();
        let logits = {
            let mut mode = Mode { grad: false, dropout: None, capture: Some(&mut captured), packing: None };
            model.forward_cached_mode(&Tensor::new(feed.as_slice(), &dev)?.unsqueeze(0)?, &mut cache, &mut mode)?
        };
        let logits = logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let token = sampler.sample(&logits, &tokens);
        // Each capture is [1, H, T, S]; the last query row produced this token.
        let mut weights = Vec::with_capacity(captured.len());
        for w in &captured {
            let t = w.dim(2)?;
            let last = w.get(0)?.narrow(1, t - 1, 1)?.squeeze(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            weights.push(last);
        }
        steps.push(StepAttention { token, position: tokens.len(), weights });
        tokens.push(token);
        feed = vec![token];
        if stop_ids.contains(&token) {
            break;
        }
    }
    Ok(AttentionTrace { prompt_len: prompt.len(), tokens, steps })
}

/// The `k` earlier positions a step attended to most: (position, weight).
pub fn top_positions(weights: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<(usize, f32)> = weights.iter().copied().enumerate().collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use lmlab_model::checkpoint::init_trainable;
    use lmlab_model::GptConfig;

    fn model() -> Gpt {
        let cfg = GptConfig::llama_style(40, 16, 2, 4, 2, 16, 32);
        init_trainable(&cfg, 8, DType::F32, &Device::Cpu).unwrap().0
    }

    #[test]
    fn next_token_stages_are_consistent() {
        let m = model();
        let params = SamplingParams { temperature: 0.5, top_k: Some(5), top_p: Some(0.9), ..Default::default() };
        let r = next_token(&m, &[1, 2, 3], &params, 40).unwrap();
        assert_eq!(r.rows.len(), 40);
        let total_raw: f64 = r.rows.iter().map(|x| x.raw).sum();
        assert!((total_raw - 1.0).abs() < 1e-9);
        assert!(r.rows.windows(2).all(|w| w[0].raw >= w[1].raw));
        let kept: Vec<&NextTokenRow> = r.rows.iter().filter(|x| x.typical_p > 0.0).collect();
        assert!(!kept.is_empty() && kept.len() <= 5 && kept.len() == r.candidates_final);
        assert!((kept.iter().map(|x| x.typical_p).sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(r.entropy_final_bits <= r.entropy_raw_bits);
    }

    #[test]
    fn attention_trace_matches_generation_and_is_a_distribution() {
        let m = model();
        let params = SamplingParams { temperature: 0.0, ..Default::default() };
        let trace = attention_trace(&m, &[1, 2, 3, 4], 5, &params, &[]).unwrap();
        let gen = crate::generate(&m, &crate::GenerateRequest::new(vec![1, 2, 3, 4], 5, params), |_, _| {}, |_, _| false).unwrap();
        assert_eq!(&trace.tokens[4..], gen.samples[0].tokens.as_slice());
        for s in &trace.steps {
            assert_eq!(s.weights.len(), 2);
            for head in s.weights.iter().flatten() {
                assert_eq!(head.len(), s.position);
                assert!((head.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
            let avg = s.averaged(None, None);
            assert!((avg.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert_eq!(s.averaged(Some(1), Some(3)), s.weights[1][3]);
        }
        assert_eq!(top_positions(&[0.1, 0.5, 0.4], 2), vec![(1, 0.5), (2, 0.4)]);
    }
}
