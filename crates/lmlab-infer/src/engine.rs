//! The generation loop: prefill, then decode from the KV cache, with timings.
//!
//! Prefill reads the whole prompt in one parallel forward pass and fills the cache; the first
//! token is sampled from its last position (time to first token). Each decode step feeds only
//! the newest token. `n` samples of one prompt share that single prefill: the cache is repeated
//! along the batch axis and the samples decode together, one batched step per token. With
//! `use_cache = false` every step recomputes the whole sequences instead, which gives identical
//! tokens and shows what the cache saves. The engine knows only token ids; stop strings are
//! checked by the caller's `stop` callback.
//!
//! The phases of one call:
//! 1. prefill: the prompt through the model into a fresh cache, once;
//! 2. fork: `n` independent copies of that cache, one per sample;
//! 3. decode: each step samples a token for every unfinished sample and feeds all of them in
//!    one batched step ([`CausalLm::decode_batch`]); finished samples leave the batch.
//!
//! [`Sequence`] and [`decode_step`] expose phases 1–2 and one step of phase 3 separately, so a
//! scheduler can let new sequences join between steps (continuous batching, `lmlab-serve`).

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use lmlab_model::{CausalLm, KvCache};
use serde::Serialize;

use crate::prefix::Prefix;
use crate::sampler::{softmax_sorted, Sampler, SamplingParams};

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends after emitting one of these.
    pub stop_ids: Vec<u32>,
    pub use_cache: bool,
    /// Samples of the prompt; sample i draws with seed `sampling.seed + i`.
    pub n: usize,
    /// Report log-probabilities with this many top alternatives per token.
    pub logprobs: Option<usize>,
}

impl GenerateRequest {
    pub fn new(prompt: Vec<u32>, max_tokens: usize, sampling: SamplingParams) -> Self {
        Self { prompt, max_tokens, sampling, stop_ids: Vec::new(), use_cache: true, n: 1, logprobs: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string was generated.
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
    /// Tokens after the first step (all samples), per second of decoding.
    pub decode_tokens_per_sec: f64,
}

/// The model's own log-probability (temperature 1, before any sampler) of a generated token,
/// and the most likely alternatives.
#[derive(Debug, Clone, Serialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f64,
    pub top: Vec<(u32, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub samples: Vec<Sample>,
    pub timings: Timings,
}

/// The rows of a [batch, vocab] logits tensor, as f32.
pub(crate) fn rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// The request fits the model: a non-empty prompt within the context and the vocabulary, and
/// valid sampler settings.
fn check_request(model: &dyn CausalLm, req: &GenerateRequest) -> Result<()> {
    req.sampling.validate()?;
    let ctx = model.context_length();
    if req.prompt.is_empty() {
        bail!("the prompt is empty (it needs at least one token)");
    }
    if req.prompt.len() > ctx {
        bail!("the prompt has {} tokens but the model's context is {ctx}", req.prompt.len());
    }
    if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= model.vocab_size()) {
        bail!("prompt token {bad} is outside the model's vocabulary of {}", model.vocab_size());
    }
    Ok(())
}

/// Where next-token logits come from: the KV caches of the samples (one each after the fork),
/// or full recomputation of their sequences when the cache is off.
struct LogitSource<'a> {
    model: &'a dyn CausalLm,
    use_cache: bool,
    caches: Vec<KvCache>,
}

impl LogitSource<'_> {
    /// Phases 1 and 2: prefill the prompt once, then fork its cache into one per sample.
    /// Returns the prompt's next-token logits.
    fn prefill(&mut self, prompt: &[u32], n: usize) -> Result<Vec<f32>> {
        let ids = Tensor::new(prompt, self.model.device())?.unsqueeze(0)?;
        if !self.use_cache {
            return Ok(rows(&self.model.logits_all(&ids)?.narrow(1, prompt.len() - 1, 1)?.squeeze(1)?)?.remove(0));
        }
        let mut cache = self.model.new_cache();
        let logits = self.model.forward_cached(&ids, &mut cache)?;
        self.caches = vec![cache; n];
        Ok(rows(&logits)?.remove(0))
    }

    /// Phase 3, one decode step: `tokens[i]` fed to sample `active[i]` (whose sequence, with
    /// that token, is `seqs[active[i]]`); logits in `active` order.
    fn step(&mut self, seqs: &[&[u32]], active: &[usize], tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        if !self.use_cache {
            // Unfinished samples have generated the same number of tokens: equal lengths.
            let len = seqs[active[0]].len();
            let flat: Vec<u32> = active.iter().flat_map(|&i| seqs[i].iter().copied()).collect();
            let ids = Tensor::from_vec(flat, (active.len(), len), self.model.device())?;
            return rows(&self.model.logits_all(&ids)?.narrow(1, len - 1, 1)?.squeeze(1)?);
        }
        let mut refs = active_caches(&mut self.caches, active, |c| c);
        rows(&self.model.decode_batch(tokens, &mut refs)?)
    }
}

/// The log-probability of `token` and the `k` most likely tokens, from raw logits at
/// temperature 1 (before any sampler).
fn token_logprob(logits: &[f32], token: u32, k: usize) -> TokenLogprob {
    let d = softmax_sorted(&logits.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), 1.0);
    let logprob = d.iter().find(|q| q.0 == token).map_or(f64::NEG_INFINITY, |q| q.1.ln());
    TokenLogprob { token, logprob, top: d.iter().take(k).map(|q| (q.0, q.1.ln())).collect() }
}

/// One sample as it is generated: its sampler, its sequence (prompt and tokens so far) and
/// what it reports.
struct SampleState {
    sampler: Sampler,
    seq: Vec<u32>,
    sample: Sample,
}

impl SampleState {
    /// Sample `i` of `req`: it draws with seed `req.sampling.seed + i`.
    fn new(req: &GenerateRequest, i: usize) -> Self {
        let sampler = Sampler::new(SamplingParams { seed: req.sampling.seed.wrapping_add(i as u64), ..req.sampling.clone() });
        Self {
            sampler,
            seq: req.prompt.clone(),
            sample: Sample { tokens: Vec::new(), finish_reason: FinishReason::Length, logprobs: Vec::new() },
        }
    }

    /// Samples the next token from `logits` and records it. Returns the token when the sample
    /// goes on (it must then be fed to the model), None when it has finished: on a stop token
    /// or when `stopped(tokens)` says so, at `max_tokens`, or at the context's end `ctx`.
    fn advance(&mut self, logits: &[f32], req: &GenerateRequest, ctx: usize, stopped: impl FnOnce(&[u32]) -> bool) -> Option<u32> {
        let token = self.sampler.sample(logits, &self.seq);
        if let Some(k) = req.logprobs {
            self.sample.logprobs.push(token_logprob(logits, token, k));
        }
        self.sample.tokens.push(token);
        self.seq.push(token);
        let finish = if req.stop_ids.contains(&token) || stopped(&self.sample.tokens) {
            Some(FinishReason::Stop)
        } else if self.sample.tokens.len() >= req.max_tokens {
            Some(FinishReason::Length)
        } else if self.seq.len() >= ctx {
            Some(FinishReason::Context)
        } else {
            None
        };
        match finish {
            Some(reason) => {
                self.sample.finish_reason = reason;
                None
            }
            None => Some(token),
        }
    }
}

/// The caches of the items at `active` (ascending indices), in that order.
fn active_caches<'a, T>(items: &'a mut [T], active: &[usize], cache: impl Fn(&mut T) -> &mut KvCache) -> Vec<&'a mut KvCache> {
    let mut wanted = vec![false; items.len()];
    active.iter().for_each(|&i| wanted[i] = true);
    items.iter_mut().zip(wanted).filter(|(_, w)| *w).map(|(item, _)| cache(item)).collect()
}

/// Generates up to `max_tokens` after the prompt for each of `n` samples. `on_token(i, id)` is
/// called for each new token of sample i; `stop(i, tokens)` may end sample i (stop strings).
pub fn generate(
    model: &dyn CausalLm,
    req: &GenerateRequest,
    mut on_token: impl FnMut(usize, u32),
    mut stop: impl FnMut(usize, &[u32]) -> bool,
) -> Result<Generation> {
    check_request(model, req)?;
    let (ctx, n) = (model.context_length(), req.n.max(1));
    let mut states: Vec<SampleState> = (0..n).map(|i| SampleState::new(req, i)).collect();
    let mut timings = Timings { prompt_tokens: req.prompt.len(), ..Default::default() };
    let mut source = LogitSource { model, use_cache: req.use_cache, caches: Vec::new() };
    let start = Instant::now();
    if req.max_tokens > 0 {
        let mut active: Vec<usize> = (0..n).collect();
        let mut logits = vec![source.prefill(&req.prompt, n)?; n];
        timings.prefill_secs = start.elapsed().as_secs_f64();
        let mut decode_start = None;
        loop {
            // Sample a token for each unfinished sample; a sample that stops leaves the batch.
            let mut next: Vec<(usize, u32)> = Vec::with_capacity(active.len());
            for (row, &i) in active.iter().enumerate() {
                let goes_on = states[i].advance(&logits[row], req, ctx, |tokens| stop(i, tokens));
                on_token(i, *states[i].sample.tokens.last().expect("a token was just added"));
                next.extend(goes_on.map(|t| (i, t)));
            }
            if timings.time_to_first_token_secs == 0.0 {
                timings.time_to_first_token_secs = start.elapsed().as_secs_f64();
                decode_start = Some(Instant::now());
            }
            if next.is_empty() {
                break;
            }
            active = next.iter().map(|p| p.0).collect();
            let tokens: Vec<u32> = next.iter().map(|p| p.1).collect();
            let seqs: Vec<&[u32]> = states.iter().map(|s| s.seq.as_slice()).collect();
            logits = source.step(&seqs, &active, &tokens)?;
        }
        timings.decode_secs = decode_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
    }
    let samples: Vec<Sample> = states.into_iter().map(|s| s.sample).collect();
    timings.generated_tokens = samples.iter().map(|s| s.tokens.len()).sum();
    timings.prefill_tokens_per_sec = timings.prompt_tokens as f64 / timings.prefill_secs.max(1e-9);
    timings.decode_tokens_per_sec = timings.generated_tokens.saturating_sub(n) as f64 / timings.decode_secs.max(1e-9);
    Ok(Generation { samples, timings })
}

/// One sequence being generated, with its own KV cache: sample `index` of a request. It is
/// the unit continuous batching schedules (`lmlab-serve` admits sequences between steps and
/// retires them as they finish); [`generate_batch`] is built from it. A finished sequence has
/// freed its cache, unless asked to keep it for a [`crate::PrefixCache`] ([`Sequence::keep_cache`]).
pub struct Sequence {
    index: usize,
    state: SampleState,
    cache: KvCache,
    /// The request's limits: max tokens, stop ids, log-probabilities (its prompt left out).
    limits: GenerateRequest,
    /// The token to feed at the next step; None once finished.
    next: Option<u32>,
    /// Keep the cache when it finishes, for [`Sequence::take_prefix`].
    keep_cache: bool,
}

impl Sequence {
    /// Phases 1 and 2 for one request: checks it, prefills its prompt once into a fresh cache,
    /// forks that into one sequence per sample, and samples each one's first token.
    /// `stop(i, tokens)` may end sample i (stop strings). `max_tokens = 0` gives no sequences.
    pub fn start(model: &dyn CausalLm, req: &GenerateRequest, stop: impl FnMut(usize, &[u32]) -> bool) -> Result<Vec<Sequence>> {
        Self::start_from(model, req, None, stop)
    }

    /// [`Sequence::start`] from a cache that already holds the prompt's first tokens
    /// ([`crate::PrefixCache::lookup`]): only the rest of the prompt is prefilled. The prefix
    /// must be a proper prefix of the prompt (at least one token is left to read).
    pub fn start_from(
        model: &dyn CausalLm,
        req: &GenerateRequest,
        prefix: Option<Prefix>,
        mut stop: impl FnMut(usize, &[u32]) -> bool,
    ) -> Result<Vec<Sequence>> {
        check_request(model, req)?;
        if !req.use_cache {
            bail!("sequences decode from the KV cache");
        }
        if req.max_tokens == 0 {
            return Ok(Vec::new());
        }
        let (reused, mut cache) = match prefix {
            Some(p) => {
                let (tokens, cache) = p.into_parts();
                if tokens.len() >= req.prompt.len() || !req.prompt.starts_with(&tokens) {
                    bail!("a cached prefix of {} tokens is not a proper prefix of the {}-token prompt", tokens.len(), req.prompt.len());
                }
                (tokens.len(), cache)
            }
            None => (0, model.new_cache()),
        };
        let ids = Tensor::new(&req.prompt[reused..], model.device())?.unsqueeze(0)?;
        let logits = rows(&model.forward_cached(&ids, &mut cache)?)?.remove(0);
        let ctx = model.context_length();
        let limits = GenerateRequest { prompt: Vec::new(), ..req.clone() };
        let mut out = Vec::with_capacity(req.n.max(1));
        for i in 0..req.n.max(1) {
            let state = SampleState::new(req, i);
            let mut seq = Sequence { index: i, state, cache: cache.clone(), limits: limits.clone(), next: None, keep_cache: false };
            seq.advance(&logits, ctx, |tokens| stop(i, tokens));
            out.push(seq);
        }
        Ok(out)
    }

    /// [`SampleState::advance`]; a finished sequence frees its cache at once, unless
    /// [`Sequence::keep_cache`] asked it to hold it for [`Sequence::take_prefix`].
    fn advance(&mut self, logits: &[f32], ctx: usize, stopped: impl FnOnce(&[u32]) -> bool) {
        self.next = self.state.advance(logits, &self.limits, ctx, stopped);
        if self.next.is_none() && !self.keep_cache {
            self.cache.clear();
        }
    }

    /// When it finishes, keep its cache for [`Sequence::take_prefix`] instead of freeing it.
    pub fn keep_cache(&mut self) {
        self.keep_cache = true;
    }

    /// A finished sequence's cache with the tokens it holds (the prompt and every generated
    /// token but the last, which was never fed back), for a [`crate::PrefixCache`]; None while
    /// it runs, or when its cache was freed.
    pub fn take_prefix(&mut self) -> Option<Prefix> {
        if self.next.is_some() || self.cache.seq_len() == 0 {
            return None;
        }
        let cache = std::mem::replace(&mut self.cache, KvCache::new(0));
        let tokens = self.state.seq[..cache.seq_len()].to_vec();
        Prefix::new(tokens, cache)
    }

    /// Which sample of its request this is.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.state.sample.tokens
    }

    /// Log-probabilities of the tokens so far (when the request asked for them).
    pub fn logprobs(&self) -> &[TokenLogprob] {
        &self.state.sample.logprobs
    }

    /// Why it ended, None while it goes on.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.next.is_none().then_some(self.state.sample.finish_reason)
    }

    pub fn is_finished(&self) -> bool {
        self.next.is_none()
    }

    /// Ends the sequence now (its client left, or asked to stop) and frees its cache; it
    /// reports `reason`.
    pub fn cancel(&mut self, reason: FinishReason) {
        if self.next.take().is_some() {
            self.state.sample.finish_reason = reason;
        }
        self.cache.clear();
    }

    /// Bytes its KV cache holds in memory now (buffers with their spare room).
    pub fn cache_bytes(&self) -> usize {
        self.cache.reserved_bytes()
    }

    /// What it generated.
    pub fn into_sample(self) -> Sample {
        self.state.sample
    }
}

/// Phase 3, one decode step of independent sequences: every unfinished one in `seqs` reads
/// its last token at its own position in its own cache, all in one batched step
/// ([`CausalLm::decode_batch`]), and samples its next token; finished ones are skipped.
/// `stop(i, tokens)` may end `seqs[i]` (stop strings). Returns how many sequences stepped.
pub fn decode_step(model: &dyn CausalLm, seqs: &mut [&mut Sequence], mut stop: impl FnMut(usize, &[u32]) -> bool) -> Result<usize> {
    let active: Vec<usize> = (0..seqs.len()).filter(|&i| !seqs[i].is_finished()).collect();
    if active.is_empty() {
        return Ok(0);
    }
    let tokens: Vec<u32> = active.iter().map(|&i| seqs[i].next.expect("unfinished")).collect();
    let mut refs = active_caches(seqs, &active, |s| &mut s.cache);
    let logits = rows(&model.decode_batch(&tokens, &mut refs)?)?;
    let ctx = model.context_length();
    for (row, &i) in active.iter().enumerate() {
        seqs[i].advance(&logits[row], ctx, |t| stop(i, t));
    }
    Ok(active.len())
}

/// Generates for several different prompts together: each is prefilled into its own cache,
/// then every unfinished sample of every request decodes in one batched step
/// ([`decode_step`]), and finished ones leave the batch at once. Sample `i` of request `r`
/// draws with seed `reqs[r].sampling.seed + i`, so its tokens are those [`generate`] gives for
/// that request alone. `stop(r, i, tokens)` may end a sample (stop strings). Requests must use
/// the KV cache; timings are left empty (the batch shares them).
pub fn generate_batch(
    model: &dyn CausalLm,
    reqs: &[GenerateRequest],
    mut stop: impl FnMut(usize, usize, &[u32]) -> bool,
) -> Result<Vec<Generation>> {
    let mut out: Vec<Generation> = reqs
        .iter()
        .map(|r| Generation { samples: Vec::new(), timings: Timings { prompt_tokens: r.prompt.len(), ..Default::default() } })
        .collect();
    // (request, sequence), in request then sample order.
    let mut running: Vec<(usize, Sequence)> = Vec::new();
    for (r, req) in reqs.iter().enumerate() {
        if !req.use_cache {
            check_request(model, req)?;
            bail!("request {r}: batched generation decodes from the KV cache");
        }
        running.extend(Sequence::start(model, req, |i, t| stop(r, i, t))?.into_iter().map(|s| (r, s)));
    }
    // 3. decode the unfinished samples of every request together.
    loop {
        let who: Vec<(usize, usize)> = running.iter().map(|(r, s)| (*r, s.index)).collect();
        let mut refs: Vec<&mut Sequence> = running.iter_mut().map(|(_, s)| s).collect();
        if decode_step(model, &mut refs, |k, t| stop(who[k].0, who[k].1, t))? == 0 {
            break;
        }
    }
    for (r, s) in running {
        out[r].timings.generated_tokens += s.tokens().len();
        out[r].samples.push(s.into_sample());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use lmlab_model::checkpoint::init_trainable;
    use lmlab_model::{Gpt, GptConfig};

    fn model() -> Gpt {
        let cfg = GptConfig { n_kv_head: 1, ..GptConfig::gpt2_style(32, 24, 2, 2, 16, 32) };
        init_trainable(&cfg, 5, DType::F32, &Device::Cpu).unwrap().0
    }

    fn request(use_cache: bool, max_tokens: usize, stop_ids: Vec<u32>) -> GenerateRequest {
        GenerateRequest {
            stop_ids,
            use_cache,
            ..GenerateRequest::new(
                vec![1, 2, 3, 4, 5],
                max_tokens,
                SamplingParams { temperature: 0.9, top_k: Some(20), top_p: Some(0.95), seed: 11, ..Default::default() },
            )
        }
    }

    fn tokens(g: &Generation) -> Vec<u32> {
        g.samples[0].tokens.clone()
    }

    #[test]
    fn cache_and_recompute_generate_the_same_tokens() {
        let m = model();
        let a = generate(&m, &request(true, 12, vec![]), |_, _| {}, |_, _| false).unwrap();
        let b = generate(&m, &request(false, 12, vec![]), |_, _| {}, |_, _| false).unwrap();
        assert_eq!(tokens(&a), tokens(&b));
        assert_eq!(tokens(&a).len(), 12);
        assert_eq!(a.samples[0].finish_reason, FinishReason::Length);
        assert_eq!(a.timings.prompt_tokens, 5);
    }

    #[test]
    fn n_samples_share_a_prefill_and_match_single_runs() {
        let m = model();
        let mut req = request(true, 10, vec![]);
        req.n = 3;
        req.logprobs = Some(2);
        let batched = generate(&m, &req, |_, _| {}, |_, _| false).unwrap();
        assert_eq!(batched.samples.len(), 3);
        for i in 0..3 {
            let mut one = request(true, 10, vec![]);
            one.sampling.seed = 11 + i as u64;
            let single = generate(&m, &one, |_, _| {}, |_, _| false).unwrap();
            assert_eq!(batched.samples[i].tokens, tokens(&single), "sample {i}");
            let lp = &batched.samples[i].logprobs;
            assert_eq!(lp.len(), 10);
            assert!(lp.iter().all(|t| t.logprob <= 0.0 && t.top.len() == 2 && t.top[0].1 >= t.logprob - 1e-9));
        }
        // Batched recomputation without the cache gives the same samples too.
        req.use_cache = false;
        let recomputed = generate(&m, &req, |_, _| {}, |_, _| false).unwrap();
        for i in 0..3 {
            assert_eq!(recomputed.samples[i].tokens, batched.samples[i].tokens);
        }
    }

    #[test]
    fn a_batch_of_different_prompts_gives_what_each_gives_alone() {
        let m = model();
        let mut reqs = vec![request(true, 9, vec![]), request(true, 4, vec![]), request(true, 12, vec![])];
        reqs[1].prompt = vec![7, 1];
        reqs[1].n = 2;
        reqs[2].prompt = vec![3, 3, 3, 9, 9, 2, 1, 0, 5];
        reqs[2].sampling.seed = 99;
        reqs[2].logprobs = Some(1);
        let together = generate_batch(&m, &reqs, |_, _, _| false).unwrap();
        for (r, req) in reqs.iter().enumerate() {
            let alone = generate(&m, req, |_, _| {}, |_, _| false).unwrap();
            assert_eq!(together[r].samples.len(), req.n);
            for (a, b) in together[r].samples.iter().zip(&alone.samples) {
                assert_eq!((&a.tokens, a.finish_reason), (&b.tokens, b.finish_reason), "request {r}");
                assert_eq!(a.logprobs.len(), b.logprobs.len());
                for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
                    // The dense model decodes a batch one sequence at a time: the same logits.
                    assert!((x.logprob - y.logprob).abs() < 1e-9);
                }
            }
        }
        // A stop callback ends one sample of one request only.
        let stopped = generate_batch(&m, &reqs, |r, i, t| r == 1 && i == 1 && t.len() == 2).unwrap();
        assert_eq!(stopped[1].samples[1].tokens.len(), 2);
        assert_eq!(stopped[1].samples[1].finish_reason, FinishReason::Stop);
        assert_eq!(stopped[1].samples[0].tokens, together[1].samples[0].tokens);
        assert_eq!(stopped[0].samples[0].tokens, together[0].samples[0].tokens);
    }

    #[test]
    fn sequences_joining_between_steps_give_what_each_gives_alone() {
        // Continuous batching: a second request starts after the first has stepped three
        // times, a third after five; each one's tokens are those it gets alone.
        let m = model();
        let mut reqs = [request(true, 10, vec![]), request(true, 6, vec![]), request(true, 8, vec![])];
        reqs[1].prompt = vec![9, 8];
        reqs[1].n = 2;
        reqs[2].sampling.seed = 5;
        let mut running: Vec<(usize, Sequence)> =
            Sequence::start(&m, &reqs[0], |_, _| false).unwrap().into_iter().map(|s| (0, s)).collect();
        for step in 0..30 {
            for (r, at) in [(1, 3), (2, 5)] {
                if step == at {
                    running.extend(Sequence::start(&m, &reqs[r], |_, _| false).unwrap().into_iter().map(|s| (r, s)));
                }
            }
            let mut refs: Vec<&mut Sequence> = running.iter_mut().map(|p| &mut p.1).collect();
            decode_step(&m, &mut refs, |_, _| false).unwrap();
            // Finished sequences leave at once and hold no cache.
            assert!(running.iter().filter(|p| p.1.is_finished()).all(|p| p.1.cache_bytes() == 0));
        }
        assert!(running.iter().all(|p| p.1.is_finished()));
        for (r, s) in &running {
            let alone = generate(&m, &reqs[*r], |_, _| {}, |_, _| false).unwrap();
            assert_eq!(s.tokens(), alone.samples[s.index()].tokens, "request {r} sample {}", s.index());
        }
        let mut one = Sequence::start(&m, &reqs[0], |_, _| false).unwrap().remove(0);
        one.cancel(FinishReason::Stop);
        assert_eq!((one.finish_reason(), one.cache_bytes()), (Some(FinishReason::Stop), 0));
    }

    #[test]
    fn stops_at_stop_tokens_stop_callbacks_and_the_context_edge() {
        let m = model();
        let free = generate(&m, &request(true, 12, vec![]), |_, _| {}, |_, _| false).unwrap();
        let free = tokens(&free);
        let stop = free[3];
        let first = free.iter().position(|&t| t == stop).unwrap();
        let stopped = generate(&m, &request(true, 12, vec![stop]), |_, _| {}, |_, _| false).unwrap();
        assert_eq!(tokens(&stopped), free[..=first]);
        assert_eq!(stopped.samples[0].finish_reason, FinishReason::Stop);
        let by_callback = generate(&m, &request(true, 12, vec![]), |_, _| {}, |_, t| t.len() == 4).unwrap();
        assert_eq!(tokens(&by_callback), free[..4]);
        let full = generate(&m, &request(true, 100, vec![]), |_, _| {}, |_, _| false).unwrap();
        assert_eq!(tokens(&full).len(), 24 - 5);
        assert_eq!(full.samples[0].finish_reason, FinishReason::Context);
        let mut long = request(true, 1, vec![]);
        long.prompt = vec![1; 25];
        let err = generate(&m, &long, |_, _| {}, |_, _| false).unwrap_err().to_string();
        assert!(err.contains("25 tokens") && err.contains("context is 24"), "{err}");
    }
}
