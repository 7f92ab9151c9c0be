//! Continuous batching. One thread owns the model and loops: it takes newly arrived requests
//! into a queue, admits queued ones while there are free slots (`--max-batch` sequences) and
//! KV-cache memory (`--kv-budget`, reserved up front per request), prefills each admitted
//! request into its own cache (its `n` samples fork it), then runs one batched decode step
//! over every running sequence ([`lmlab_infer::decode_step`]). A sequence that finishes leaves
//! at once; a request whose client has gone (its event receiver dropped) is cancelled before
//! the next step. Tokens go back to the request's handler as events.
//!
//! Prefix caching: a finished request's first sample hands its KV cache (prompt and answer)
//! to a [`PrefixCache`], and an admitted request whose prompt begins with the same tokens
//! (the same system prompt, the conversation so far) starts from a copy of it and prefills
//! only the rest. The kept caches count against the memory budget and are evicted, least
//! recently used first, when a request needs the room.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use lmlab_infer::{decode_step, FinishReason, GenerateRequest, Model, PrefixCache, Sequence, StopText, TokenLogprob};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// What a request's handler hears from the scheduler.
#[derive(Debug)]
pub(crate) enum Event {
    /// Sample `index` generated `token`.
    Token { index: usize, token: u32, logprob: Option<TokenLogprob> },
    /// Sample `index` has ended.
    Finished { index: usize, reason: FinishReason },
    /// The request failed (the engine refused it).
    Error(String),
}

/// A request handed to the scheduler.
pub(crate) struct Job {
    pub req: GenerateRequest,
    pub stop_strings: Vec<String>,
    /// KV-cache bytes to reserve for all its samples.
    pub reserve: usize,
    pub arrived: Instant,
    pub events: UnboundedSender<Event>,
}

/// An admitted request and its sequences.
struct Active {
    job: Job,
    seqs: Vec<Sequence>,
    /// Tokens of each sequence already sent.
    sent: Vec<usize>,
    reported: Vec<bool>,
    first_token_seen: bool,
}

/// Scheduler limits.
pub(crate) struct Limits {
    pub max_batch: usize,
    pub kv_budget: usize,
    /// Finished requests' caches kept for reuse (0: no prefix caching).
    pub prefix_entries: usize,
}

/// Bytes of KV cache one sequence of a `prompt`-token prompt takes to reach `total`
/// positions: the cache's buffers start at max(prompt, 256) positions and double when full,
/// and the whole buffer is copied when `n` samples fork one prefill.
pub(crate) fn cache_reservation(prompt: usize, total: usize, bytes_per_token: usize) -> usize {
    let mut positions = prompt.max(256);
    while positions < total {
        positions *= 2;
    }
    positions * bytes_per_token
}

/// Runs until every sender of `jobs` is gone.
pub(crate) fn run(model: Arc<Model>, jobs: Receiver<Job>, limits: Limits, metrics: Arc<Metrics>) {
    let tok = model.tokenizer();
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut active: Vec<Active> = Vec::new();
    let mut reserved = 0usize;
    let mut prefixes = PrefixCache::new(limits.prefix_entries);
    // When the last step ended, while sequences keep running (the time between two tokens of
    // a sequence includes the prefills of requests admitted in between).
    let mut prev_end: Option<Instant> = None;
    loop {
        // Take what has arrived; with nothing to do, sleep until something does.
        loop {
            let got =
                if active.is_empty() && waiting.is_empty() { jobs.recv().map_err(|_| TryRecvError::Disconnected) } else { jobs.try_recv() };
            match got {
                Ok(job) => waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if active.is_empty() && waiting.is_empty() {
                        return;
                    }
                    break;
                }
            }
        }
        // A client that left while queued: forget its request.
        waiting.retain(|j| {
            let gone = j.events.is_closed();
            if gone {
                metrics.queued.fetch_sub(1, Ordering::Relaxed);
            }
            !gone
        });
        // Admit in arrival order while slots and memory allow.
        let mut running: usize = active.iter().map(|a| a.seqs.iter().filter(|s| !s.is_finished()).count()).sum();
        while let Some(job) = waiting.front() {
            let n = job.req.n.max(1);
            // A request waits for slots and for running requests' memory; kept caches give
            // way to it only when it can then start.
            if running + n > limits.max_batch || reserved + job.reserve > limits.kv_budget {
                break;
            }
            while reserved + prefixes.bytes() + job.reserve > limits.kv_budget && prefixes.evict_oldest() {}
            let job = waiting.pop_front().expect("front exists");
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
            let stops = StopText::new(tok, job.stop_strings.clone());
            // A failed copy only costs the reuse.
            let prefix = prefixes.lookup(&job.req.prompt).unwrap_or(None);
            let reused = prefix.as_ref().map_or(0, |p| p.len());
            match Sequence::start_from(&*model, &job.req, prefix, |_, t| stops.hit(t)) {
                Ok(mut seqs) => {
                    if let Some(first) = seqs.first_mut() {
                        first.keep_cache();
                    }
                    metrics.prompt_tokens.fetch_add(job.req.prompt.len() as u64, Ordering::Relaxed);
                    metrics.prompt_tokens_cached.fetch_add(reused as u64, Ordering::Relaxed);
                    reserved += job.reserve;
                    running += seqs.iter().filter(|s| !s.is_finished()).count();
                    let k = seqs.len();
                    active.push(Active { job, seqs, sent: vec![0; k], reported: vec![false; k], first_token_seen: false });
                }
                Err(e) => {
                    let _ = job.events.send(Event::Error(format!("{e:#}")));
                }
            }
        }
        // Send what admission produced (the first tokens), drop departed clients. The gauges
        // are updated before a client can see its tokens, and again after retiring.
        publish(&active, &metrics, reserved, &prefixes);
        report(&mut active, &metrics, &mut reserved, &mut prefixes);
        publish(&active, &metrics, reserved, &prefixes);
        if active.is_empty() {
            prev_end = None;
            continue;
        }
        // One batched step over every running sequence.
        let step_start = Instant::now();
        let mut owners: Vec<&StopText> = Vec::new();
        let stop_texts: Vec<StopText> = active.iter().map(|a| StopText::new(tok, a.job.stop_strings.clone())).collect();
        let mut refs: Vec<&mut Sequence> = Vec::new();
        for (a, st) in active.iter_mut().zip(&stop_texts) {
            for s in a.seqs.iter_mut().filter(|s| !s.is_finished()) {
                refs.push(s);
                owners.push(st);
            }
        }
        let stepped = match decode_step(&*model, &mut refs, |k, t| owners[k].hit(t)) {
            Ok(n) => n,
            Err(e) => {
                // The engine failed mid-step: every running request ends with the error.
                for a in active.drain(..) {
                    let _ = a.job.events.send(Event::Error(format!("{e:#}")));
                }
                reserved = 0;
                publish(&active, &metrics, reserved, &prefixes);
                continue;
            }
        };
        let now = Instant::now();
        metrics.per_token.observe_n(now.duration_since(prev_end.unwrap_or(step_start)).as_secs_f64(), stepped as u64);
        prev_end = Some(now);
        metrics.steps.fetch_add(1, Ordering::Relaxed);
        publish(&active, &metrics, reserved, &prefixes);
        report(&mut active, &metrics, &mut reserved, &mut prefixes);
        publish(&active, &metrics, reserved, &prefixes);
    }
}

/// Sends each request its new tokens and finished samples; cancels requests whose client has
/// gone; retires requests whose samples have all finished (releasing their reservation, and
/// keeping the first sample's cache in `prefixes` while the budget has room for it).
fn report(active: &mut Vec<Active>, metrics: &Metrics, reserved: &mut usize, prefixes: &mut PrefixCache) {
    active.retain_mut(|a| {
        let mut gone = a.job.events.is_closed();
        for (i, s) in a.seqs.iter().enumerate() {
            if gone {
                break;
            }
            let new = &s.tokens()[a.sent[i]..];
            if !new.is_empty() && !a.first_token_seen {
                a.first_token_seen = true;
                metrics.ttft.observe_n(a.job.arrived.elapsed().as_secs_f64(), 1);
            }
            metrics.generated_tokens.fetch_add(new.len() as u64, Ordering::Relaxed);
            for (k, &token) in new.iter().enumerate() {
                let logprob = s.logprobs().get(a.sent[i] + k).cloned();
                gone |= a.job.events.send(Event::Token { index: s.index(), token, logprob }).is_err();
            }
            a.sent[i] = s.tokens().len();
            if let (Some(reason), false) = (s.finish_reason(), a.reported[i]) {
                a.reported[i] = true;
                gone |= a.job.events.send(Event::Finished { index: s.index(), reason }).is_err();
            }
        }
        if gone {
            let cancelled = a.seqs.iter().filter(|s| !s.is_finished()).count();
            metrics.cancelled.fetch_add(cancelled as u64, Ordering::Relaxed);
            a.seqs.iter_mut().for_each(|s| s.cancel(FinishReason::Stop));
        }
        let done = a.seqs.iter().all(Sequence::is_finished);
        if done {
            *reserved -= a.job.reserve;
            if let Some(prefix) = a.seqs.first_mut().and_then(Sequence::take_prefix) {
                prefixes.insert(prefix);
            }
        }
        !done
    });
    while *reserved + prefixes.bytes() > metrics.kv_budget.load(Ordering::Relaxed) && prefixes.evict_oldest() {}
}

/// Updates the gauges.
fn publish(active: &[Active], metrics: &Metrics, reserved: usize, prefixes: &PrefixCache) {
    let running = active.iter().flat_map(|a| &a.seqs).filter(|s| !s.is_finished());
    let (n, bytes) = running.fold((0, 0), |(n, b), s| (n + 1, b + s.cache_bytes()));
    metrics.running.store(n, Ordering::Relaxed);
    metrics.kv_used.store(bytes, Ordering::Relaxed);
    metrics.kv_reserved.store(reserved, Ordering::Relaxed);
    metrics.prefix_entries.store(prefixes.len(), Ordering::Relaxed);
    metrics.prefix_bytes.store(prefixes.bytes(), Ordering::Relaxed);
}
