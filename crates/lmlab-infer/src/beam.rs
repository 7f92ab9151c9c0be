//! Beam search: the `beams` most likely continuations found so far are kept at every step.
//!
//! Greedy decoding keeps one hypothesis; beam search keeps the `beams` best partial sequences
//! by their summed log-probability, extends each by its `2·beams` most likely next tokens, and
//! keeps the best `beams` of those. A hypothesis that emits a stop token (or that the caller's
//! `stop` ends) is finished and set aside; the search ends when `beams` hypotheses have
//! finished, none is left alive, or `max_tokens` are reached (the live ones then finish too).
//! Finished hypotheses are ranked by `logprob / len^length_penalty` (Wu et al. 2016's simple
//! form; 0 ranks by the summed log-probability alone, which favours short answers).
//!
//! The phases:
//! 1. prefill: the prompt through the model into one cache;
//! 2. expand: every live hypothesis proposes its `2·beams` best next tokens, scored by the sum of
//!    log-probabilities (temperature 1, no sampler);
//! 3. select: the best candidates, in score order (ties: parent, then token id), finish or go on;
//!    a surviving candidate takes a copy of its parent's cache;
//! 4. step: the survivors' new tokens go through the model in one batched decode step.
//!
//! With `beams = 1` this is greedy decoding. With `beams` at least the vocabulary size to the
//! power `max_tokens - 1` no prefix is ever dropped, and the search is exact (a test checks it
//! against every sequence).

use anyhow::{ensure, Result};
use candle_core::Tensor;
use lmlab_model::{CausalLm, KvCache};
use serde::Serialize;

use crate::engine::{rows, FinishReason};

#[derive(Debug, Clone)]
pub struct BeamRequest {
    pub prompt: Vec<u32>,
    pub beams: usize,
    pub max_tokens: usize,
    /// A hypothesis ends after emitting one of these (the token is kept and scored).
    pub stop_ids: Vec<u32>,
    /// Finished hypotheses are ranked by `logprob / len^length_penalty`.
    pub length_penalty: f64,
}

impl BeamRequest {
    pub fn new(prompt: Vec<u32>, beams: usize, max_tokens: usize) -> Self {
        Self { prompt, beams, max_tokens, stop_ids: Vec::new(), length_penalty: 1.0 }
    }
}

/// One finished hypothesis.
#[derive(Debug, Clone, Serialize)]
pub struct Beam {
    pub tokens: Vec<u32>,
    /// Summed log-probability of its tokens under the model (temperature 1).
    pub logprob: f64,
    /// `logprob / len^length_penalty`, by which the beams are ranked.
    pub score: f64,
    pub finish_reason: FinishReason,
}

/// A hypothesis still being extended.
struct Live {
    tokens: Vec<u32>,
    logprob: f64,
    cache: KvCache,
}

/// Log-softmax of one row of logits, in f64.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let lse = max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// The `k` largest entries of `row` as (token, value), largest first, ties by token id.
fn top_tokens(row: &[f64], k: usize) -> Vec<(u32, f64)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let by_value = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    let k = k.min(idx.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, by_value);
        idx.truncate(k);
    }
    idx.sort_by(by_value);
    idx.into_iter().map(|t| (t, row[t as usize])).collect()
}

fn finished(tokens: Vec<u32>, logprob: f64, length_penalty: f64, reason: FinishReason) -> Beam {
    let score = logprob / (tokens.len().max(1) as f64).powf(length_penalty);
    Beam { tokens, logprob, score, finish_reason: reason }
}

/// Runs beam search; returns the finished hypotheses, best first (at most `beams`).
/// `stop(tokens)` may end a hypothesis (stop strings).
pub fn beam_search(model: &dyn CausalLm, req: &BeamRequest, mut stop: impl FnMut(&[u32]) -> bool) -> Result<Vec<Beam>> {
    ensure!(req.beams >= 1, "beam search needs at least one beam");
    ensure!(!req.prompt.is_empty(), "the prompt is empty (it needs at least one token)");
    let ctx = model.context_length();
    ensure!(req.prompt.len() < ctx, "the prompt has {} tokens, leaving no room in the model's context of {ctx}", req.prompt.len());
    if req.max_tokens == 0 {
        return Ok(Vec::new());
    }
    // 1. prefill.
    let mut cache = model.new_cache();
    let ids = Tensor::new(req.prompt.as_slice(), model.device())?.unsqueeze(0)?;
    let mut logits = rows(&model.forward_cached(&ids, &mut cache)?)?;
    let mut live = vec![Live { tokens: Vec::new(), logprob: 0.0, cache }];
    let mut done: Vec<Beam> = Vec::new();
    loop {
        // 2. expand (twice the beams from each, so that `beams` can go on when some finish).
        let mut candidates: Vec<(usize, u32, f64)> = Vec::new();
        for (parent, (hyp, row)) in live.iter().zip(&logits).enumerate() {
            for (token, lp) in top_tokens(&log_softmax(row), 2 * req.beams) {
                candidates.push((parent, token, hyp.logprob + lp));
            }
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        // 3. select.
        let mut next: Vec<Live> = Vec::new();
        for (parent, token, logprob) in candidates {
            if next.len() == req.beams || done.len() >= req.beams {
                break;
            }
            let mut tokens = live[parent].tokens.clone();
            tokens.push(token);
            let at_length = tokens.len() >= req.max_tokens;
            let at_context = req.prompt.len() + tokens.len() >= ctx;
            if req.stop_ids.contains(&token) || stop(&tokens) {
                done.push(finished(tokens, logprob, req.length_penalty, FinishReason::Stop));
            } else if at_length || at_context {
                let reason = if at_length { FinishReason::Length } else { FinishReason::Context };
                done.push(finished(tokens, logprob, req.length_penalty, reason));
            } else {
                next.push(Live { tokens, logprob, cache: live[parent].cache.clone() });
            }
        }
        if next.is_empty() || done.len() >= req.beams {
            break;
        }
        // 4. step.
        let tokens: Vec<u32> = next.iter().map(|h| *h.tokens.last().expect("a token was just added")).collect();
        let mut caches: Vec<&mut KvCache> = next.iter_mut().map(|h| &mut h.cache).collect();
        logits = rows(&model.decode_batch(&tokens, &mut caches)?)?;
        live = next;
    }
    done.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.tokens.cmp(&b.tokens)));
    done.truncate(req.beams);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, GenerateRequest, SamplingParams};
    use candle_core::{DType, Device};
    use lmlab_model::checkpoint::init_trainable;
    use lmlab_model::{Gpt, GptConfig};

    fn model(vocab: usize) -> Gpt {
        let cfg = GptConfig { n_kv_head: 1, ..GptConfig::gpt2_style(vocab, 24, 2, 2, 16, 32) };
        init_trainable(&cfg, 3, DType::F32, &Device::Cpu).unwrap().0
    }

    /// log p(continuation | prompt), from one full forward pass.
    fn sequence_logprob(m: &Gpt, prompt: &[u32], cont: &[u32]) -> f64 {
        let all: Vec<u32> = prompt.iter().chain(cont).copied().collect();
        let ids = Tensor::new(all.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits = rows(&m.logits_all(&ids).unwrap().squeeze(0).unwrap()).unwrap();
        cont.iter().enumerate().map(|(i, &t)| log_softmax(&logits[prompt.len() - 1 + i])[t as usize]).sum()
    }

    #[test]
    fn one_beam_is_greedy_decoding() {
        let m = model(32);
        let prompt = vec![1, 5, 9];
        let beam = beam_search(&m, &BeamRequest::new(prompt.clone(), 1, 10), |_| false).unwrap();
        let greedy = generate(
            &m,
            &GenerateRequest::new(prompt.clone(), 10, SamplingParams { temperature: 0.0, ..Default::default() }),
            |_, _| {},
            |_, _| false,
        )
        .unwrap();
        assert_eq!(beam.len(), 1);
        assert_eq!(beam[0].tokens, greedy.samples[0].tokens);
        assert!((beam[0].logprob - sequence_logprob(&m, &prompt, &beam[0].tokens)).abs() < 1e-4);
    }

    #[test]
    fn enough_beams_find_the_most_likely_sequence_of_all() {
        // Vocabulary 6, three tokens: 36 beams keep every two-token prefix, so the search is
        // exhaustive; it must agree with scoring all 216 sequences one by one.
        let (v, len) = (6u32, 3);
        let m = model(v as usize);
        let prompt = vec![2, 4];
        let mut best = (f64::NEG_INFINITY, vec![]);
        for code in 0..v.pow(len) {
            let cont: Vec<u32> = (0..len).map(|i| (code / v.pow(i)) % v).collect();
            let lp = sequence_logprob(&m, &prompt, &cont);
            if lp > best.0 {
                best = (lp, cont);
            }
        }
        let req = BeamRequest { length_penalty: 0.0, ..BeamRequest::new(prompt.clone(), 36, len as usize) };
        let beams = beam_search(&m, &req, |_| false).unwrap();
        assert_eq!(beams[0].tokens, best.1);
        assert!((beams[0].logprob - best.0).abs() < 1e-4, "{} vs {}", beams[0].logprob, best.0);
        // Best first, and every beam's score is its own sequence's log-probability.
        for w in beams.windows(2) {
            assert!(w[0].score >= w[1].score);
        }
        for b in &beams {
            assert!((b.logprob - sequence_logprob(&m, &prompt, &b.tokens)).abs() < 1e-4);
        }
        // A wider search never finds a worse best sequence than greedy's.
        let greedy = beam_search(&m, &BeamRequest { length_penalty: 0.0, ..BeamRequest::new(prompt, 1, len as usize) }, |_| false).unwrap();
        assert!(beams[0].logprob >= greedy[0].logprob - 1e-9);
    }

    #[test]
    fn stop_tokens_and_callbacks_finish_hypotheses() {
        let m = model(32);
        let prompt = vec![3, 1];
        let free = beam_search(&m, &BeamRequest::new(prompt.clone(), 4, 6), |_| false).unwrap();
        // Make the best free beam's second token a stop token: some hypothesis now ends there.
        let stop_token = free[0].tokens[1];
        let req = BeamRequest { stop_ids: vec![stop_token], ..BeamRequest::new(prompt.clone(), 4, 6) };
        let stopped = beam_search(&m, &req, |_| false).unwrap();
        assert!(stopped.iter().any(|b| b.finish_reason == FinishReason::Stop && b.tokens.last() == Some(&stop_token)));
        assert!(stopped.iter().all(|b| b.finish_reason != FinishReason::Stop || b.tokens.last() == Some(&stop_token)));
        // A callback that ends every hypothesis at two tokens.
        let short = beam_search(&m, &BeamRequest::new(prompt, 3, 6), |t| t.len() == 2).unwrap();
        assert_eq!(short.len(), 3);
        assert!(short.iter().all(|b| b.tokens.len() == 2 && b.finish_reason == FinishReason::Stop));
    }
}
