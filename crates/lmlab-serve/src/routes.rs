//! The HTTP side: routes, the guard every request passes (draining → 503, API key → 401,
//! request counting), OpenAI responses and server-sent-event streams.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use lmlab_infer::{FinishReason, Model, StopText, TokenLogprob};
use lmlab_model::CausalLm;
use lmlab_tokenizer::Tokenizer;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::api::{self, Endpoint, Prepared};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::scheduler::{cache_reservation, Event, Job};
use crate::text::TextStream;

/// What every handler shares.
pub(crate) struct AppState {
    pub model: Arc<Model>,
    pub name: String,
    pub api_key: Option<String>,
    pub jobs: Sender<Job>,
    pub metrics: Arc<Metrics>,
    pub queue: usize,
    pub max_batch: usize,
    pub kv_budget: usize,
    pub bytes_per_token: usize,
    pub body_limit: usize,
    pub draining: AtomicBool,
    pub in_flight: AtomicUsize,
    pub created: u64,
}

/// Counts a generation request as in flight until dropped (the end of its response or
/// stream); shutdown waits for these.
struct InFlight(Arc<AppState>);

impl InFlight {
    fn new(state: &Arc<AppState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model_info))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .with_state(state)
}

/// The endpoint label of a path (unknown paths are "other", to bound the metric's size).
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/v1/models" => "/v1/models",
        "/v1/completions" => "/v1/completions",
        "/v1/chat/completions" => "/v1/chat/completions",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

fn authorized(state: &AppState, req: &Request) -> bool {
    let Some(key) = &state.api_key else { return true };
    let got = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared in full, not stopping at the first difference.
    got.is_some_and(|g| g.len() == key.len() && g.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}

async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let label = endpoint_label(req.uri().path());
    let resp = if state.draining.load(Ordering::SeqCst) {
        ApiError::shutting_down().into_response()
    } else if req.uri().path().starts_with("/v1/") && !authorized(&state, &req) {
        ApiError::unauthorized().into_response()
    } else {
        next.run(req).await
    };
    state.metrics.request(label, resp.status().as_u16());
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("No route for {} {}", req.method(), req.uri().path()))
}

async fn page() -> Html<&'static str> {
    Html(crate::PAGE)
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let m = &state.metrics;
    Json(json!({
        "status": "ok",
        "model": state.name,
        "running_sequences": m.running.load(Ordering::Relaxed),
        "queued_requests": m.queued.load(Ordering::Relaxed),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

fn model_object(state: &AppState) -> Value {
    json!({
        "id": state.name,
        "object": "model",
        "created": state.created,
        "owned_by": "lmlab",
        "context_length": state.model.context_length(),
    })
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&state)]}))
}

async fn model_info(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if id != state.name {
        return Err(ApiError::model_not_found(&id, &state.name));
    }
    Ok(Json(model_object(&state)))
}

async fn completions(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    generate(state, body, Endpoint::Completions).await
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    generate(state, body, Endpoint::Chat).await
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn new_id(endpoint: Endpoint) -> String {
    let prefix = if endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" };
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Checks, queues, and answers one generation request.
async fn generate(state: Arc<AppState>, body: Result<Bytes, BytesRejection>, endpoint: Endpoint) -> Result<Response, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.body_limit)
        } else {
            ApiError::invalid(e.body_text())
        }
    })?;
    let body = api::parse(&bytes)?;
    if let Some(m) = &body.model {
        if *m != state.name {
            return Err(ApiError::model_not_found(m, &state.name));
        }
    }
    let prepared = {
        let model = state.model.clone();
        let max_n = state.max_batch;
        // Rendering a chat template and tokenizing are CPU work: off the async threads.
        tokio::task::spawn_blocking(move || api::prepare(body, endpoint, &model, max_n))
            .await
            .map_err(|e| ApiError::internal(format!("preparing the request: {e}")))??
    };
    let guard = InFlight::new(&state);
    let events = submit(&state, &prepared)?;
    let reply = Reply::new(&state, endpoint, &prepared);
    if prepared.stream {
        Ok(sse(reply, events, guard).into_response())
    } else {
        collect(reply, events, guard).await
    }
}

/// Hands the request to the scheduler, or refuses it: 400 when its KV cache can never fit the
/// budget, 429 when the queue is full.
fn submit(state: &AppState, p: &Prepared) -> Result<UnboundedReceiver<Event>, ApiError> {
    let prompt = p.req.prompt.len();
    let reserve = p.req.n * cache_reservation(prompt, prompt + p.req.max_tokens, state.bytes_per_token);
    if reserve > state.kv_budget {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!("This request needs {reserve} bytes of KV cache, more than the server's budget of {} (--kv-budget); ask for fewer tokens or samples", state.kv_budget),
        ));
    }
    // Queued = arrived and not yet admitted. Free slots absorb arrivals beyond --queue.
    let free = state.max_batch.saturating_sub(state.metrics.running.load(Ordering::Relaxed));
    let limit = state.queue + free;
    state
        .metrics
        .queued
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| (q < limit).then_some(q + 1))
        .map_err(|_| ApiError::busy())?;
    let (tx, rx) = unbounded_channel();
    let job = Job { req: p.req.clone(), stop_strings: p.stop_strings.clone(), reserve, arrived: Instant::now(), events: tx };
    if state.jobs.send(job).is_err() {
        state.metrics.queued.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::shutting_down());
    }
    Ok(rx)
}

/// Builds the JSON of responses and chunks for one request.
struct Reply {
    model: Arc<Model>,
    endpoint: Endpoint,
    id: String,
    name: String,
    created: u64,
    n: usize,
    prompt_tokens: usize,
    logprobs: Option<usize>,
    stop_strings: Vec<String>,
    echo: Option<String>,
    include_usage: bool,
}

fn finish_label(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Context => "length",
    }
}

impl Reply {
    fn new(state: &AppState, endpoint: Endpoint, p: &Prepared) -> Self {
        Self {
            model: state.model.clone(),
            endpoint,
            id: new_id(endpoint),
            name: state.name.clone(),
            created: now_secs(),
            n: p.req.n,
            prompt_tokens: p.req.prompt.len(),
            logprobs: p.logprobs,
            stop_strings: p.stop_strings.clone(),
            echo: p.echo.clone(),
            include_usage: p.include_usage,
        }
    }

    fn tok(&self) -> &Tokenizer {
        self.model.tokenizer()
    }

    fn usage(&self, completion: usize) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion, "total_tokens": self.prompt_tokens + completion})
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    /// Chat log-probabilities of `lps` (stop tokens left out).
    fn chat_logprobs(&self, lps: &[TokenLogprob]) -> Value {
        let tok = self.tok();
        let stop_ids = &tok.special().stop_ids;
        let entry = |id: u32, lp: f64| {
            let bytes = tok.decode_bytes(&[id]).unwrap_or_default();
            json!({"token": String::from_utf8_lossy(&bytes), "logprob": lp.max(-9999.0), "bytes": bytes})
        };
        let content: Vec<Value> = lps
            .iter()
            .filter(|l| !stop_ids.contains(&l.token))
            .map(|l| {
                let mut e = entry(l.token, l.logprob);
                e["top_logprobs"] = Value::Array(l.top.iter().map(|&(id, lp)| entry(id, lp)).collect());
                e
            })
            .collect();
        json!({"content": content})
    }

    /// Completions (legacy) log-probabilities; `offset` is the text offset of the first token.
    fn completion_logprobs(&self, lps: &[TokenLogprob], mut offset: usize) -> Value {
        let tok = self.tok();
        let stop_ids = &tok.special().stop_ids;
        let (mut tokens, mut values, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
        for l in lps.iter().filter(|l| !stop_ids.contains(&l.token)) {
            let text = tok.decode(&[l.token]).unwrap_or_default();
            offsets.push(offset);
            offset += text.len();
            tokens.push(text);
            values.push(l.logprob.max(-9999.0));
            let top: serde_json::Map<String, Value> =
                l.top.iter().map(|&(id, lp)| (tok.decode(&[id]).unwrap_or_default(), json!(lp.max(-9999.0)))).collect();
            tops.push(Value::Object(top));
        }
        json!({"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets})
    }

    /// The whole (non-streamed) response.
    fn full(&self, samples: &[(Vec<u32>, Vec<TokenLogprob>, FinishReason)]) -> Value {
        let stops = StopText::new(self.tok(), self.stop_strings.clone());
        let choices: Vec<Value> = samples
            .iter()
            .enumerate()
            .map(|(i, (tokens, lps, reason))| {
                let text = stops.final_text(tokens);
                let logprobs = self.logprobs.map(|_| match self.endpoint {
                    Endpoint::Chat => self.chat_logprobs(lps),
                    Endpoint::Completions => self.completion_logprobs(lps, self.echo.as_ref().map_or(0, String::len)),
                });
                match self.endpoint {
                    Endpoint::Chat => json!({
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": logprobs,
                        "finish_reason": finish_label(*reason),
                    }),
                    Endpoint::Completions => json!({
                        "index": i,
                        "text": format!("{}{text}", self.echo.as_deref().unwrap_or("")),
                        "logprobs": logprobs,
                        "finish_reason": finish_label(*reason),
                    }),
                }
            })
            .collect();
        let completion: usize = samples.iter().map(|s| s.0.len()).sum();
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.name,
            "choices": choices,
            "usage": self.usage(completion),
        })
    }

    /// One streamed chunk for choice `index`.
    fn chunk(&self, index: usize, text: Option<&str>, role: bool, logprobs: Option<Value>, finish: Option<FinishReason>) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish.map(finish_label)})
            }
            Endpoint::Completions => {
                json!({"index": index, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish.map(finish_label)})
            }
        };
        let mut c = json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.name, "choices": [choice]});
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    fn usage_chunk(&self, completion: usize) -> Value {
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.name, "choices": [], "usage": self.usage(completion)})
    }
}

/// Waits for every sample, then answers in one JSON body.
async fn collect(reply: Reply, mut events: UnboundedReceiver<Event>, _guard: InFlight) -> Result<Response, ApiError> {
    let mut samples: Vec<(Vec<u32>, Vec<TokenLogprob>, Option<FinishReason>)> = vec![(vec![], vec![], None); reply.n];
    while samples.iter().any(|s| s.2.is_none()) {
        match events.recv().await {
            Some(Event::Token { index, token, logprob }) => {
                samples[index].0.push(token);
                samples[index].1.extend(logprob);
            }
            Some(Event::Finished { index, reason }) => samples[index].2 = Some(reason),
            Some(Event::Error(e)) => return Err(ApiError::internal(format!("generation failed: {e}"))),
            None => return Err(ApiError::internal("generation ended without finishing (the server is shutting down?)")),
        }
    }
    let done: Vec<_> = samples.into_iter().map(|(t, l, r)| (t, l, r.expect("all finished"))).collect();
    Ok(Json(reply.full(&done)).into_response())
}

/// The state of one streamed response.
struct Streaming {
    reply: Reply,
    events: UnboundedReceiver<Event>,
    texts: Vec<TextStream>,
    /// Text bytes streamed per choice (offsets for completion log-probabilities).
    offsets: Vec<usize>,
    finished: Vec<bool>,
    completion_tokens: usize,
    out: VecDeque<SseEvent>,
    done: bool,
    _guard: InFlight,
}

fn data(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

impl Streaming {
    fn on_event(&mut self, ev: Option<Event>) {
        let r = &self.reply;
        match ev {
            Some(Event::Token { index, token, logprob }) => {
                self.completion_tokens += 1;
                let piece = self.texts[index].push(r.model.tokenizer(), token);
                let lp = match (r.logprobs, logprob) {
                    (Some(_), Some(l)) if !r.tok().special().stop_ids.contains(&l.token) => Some(match r.endpoint {
                        Endpoint::Chat => r.chat_logprobs(std::slice::from_ref(&l)),
                        Endpoint::Completions => r.completion_logprobs(std::slice::from_ref(&l), self.offsets[index]),
                    }),
                    _ => None,
                };
                self.offsets[index] += piece.len();
                if !piece.is_empty() || lp.is_some() {
                    self.out.push_back(data(&r.chunk(index, Some(&piece), false, lp, None)));
                }
            }
            Some(Event::Finished { index, reason }) => {
                let rest = self.texts[index].finish(r.model.tokenizer());
                self.finished[index] = true;
                let text = (!rest.is_empty()).then_some(rest.as_str());
                self.out.push_back(data(&r.chunk(index, text, false, None, Some(reason))));
                if self.finished.iter().all(|&f| f) {
                    if r.include_usage {
                        self.out.push_back(data(&r.usage_chunk(self.completion_tokens)));
                    }
                    self.out.push_back(SseEvent::default().data("[DONE]"));
                    self.done = true;
                }
            }
            Some(Event::Error(e)) => {
                self.out.push_back(data(&ApiError::internal(format!("generation failed: {e}")).body()));
                self.out.push_back(SseEvent::default().data("[DONE]"));
                self.done = true;
            }
            None => {
                self.out.push_back(data(&ApiError::internal("generation ended without finishing").body()));
                self.out.push_back(SseEvent::default().data("[DONE]"));
                self.done = true;
            }
        }
    }
}

/// A server-sent-event stream of chunks ending in `data: [DONE]`. Dropping it (the client
/// left) drops the event receiver, which the scheduler notices before its next step.
fn sse(reply: Reply, events: UnboundedReceiver<Event>, guard: InFlight) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let n = reply.n;
    let mut out = VecDeque::new();
    for i in 0..n {
        match reply.endpoint {
            Endpoint::Chat => out.push_back(data(&reply.chunk(i, Some(""), true, None, None))),
            Endpoint::Completions => {
                if let Some(e) = &reply.echo {
                    out.push_back(data(&reply.chunk(i, Some(e), false, None, None)));
                }
            }
        }
    }
    let offset = reply.echo.as_ref().map_or(0, String::len);
    let texts = (0..n).map(|_| TextStream::new(reply.tok(), reply.stop_strings.clone())).collect();
    let st = Streaming {
        reply,
        events,
        texts,
        offsets: vec![offset; n],
        finished: vec![false; n],
        completion_tokens: 0,
        out,
        done: false,
        _guard: guard,
    };
    let s = stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.out.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            let ev = st.events.recv().await;
            st.on_event(ev);
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}
