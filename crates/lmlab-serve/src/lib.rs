//! lmlab-serve: talking to a model.
//!
//! What it does:
//! - an OpenAI-compatible HTTP server ([`run`]) on axum and tokio: `GET /v1/models`,
//!   `POST /v1/completions`, `POST /v1/chat/completions` (whole or streamed as server-sent
//!   events ending in `data: [DONE]`), `GET /health`, `GET /metrics` (Prometheus text) and a
//!   chat page at `/` (plain HTML/CSS/JS embedded in the binary; model output is only ever set
//!   as text, never parsed as HTML). Errors have OpenAI's shape and status codes; an optional
//!   API key guards `/v1/*`; on shutdown new requests get 503 while those in flight finish,
//!   up to a deadline.
//! - continuous batching: one thread owns the model; requests join the running batch between
//!   decode steps, every running sequence (each with its own KV cache, reserved up front
//!   against a memory budget) decodes in one batched step, finished ones leave at once, and a
//!   client that disconnects frees its sequence before the next step. Requests beyond the
//!   batch or the memory wait in a bounded queue; beyond it they get 429 with Retry-After.
//!   Finished requests' caches are kept (within the same budget) so that a prompt beginning
//!   with the same tokens prefills only the rest (prefix caching).
//! - [`bench`]: a load test of any OpenAI-compatible server (`lmlab bench serve`), with
//!   llama-cpp-python's server and llama.cpp's `llama-server` as references.
//! - [`TextStream`]: a reply's text streamed token by token without splitting characters or
//!   leaking the start of a stop string (the server and `lmlab chat` use it), and
//!   [`ChatSession`]: the terminal chat's conversation and `/` commands.
//!
//! What it does not do: sampling or decoding of its own (`lmlab-infer`'s engine and sampler
//! do it: [`lmlab_infer::Sequence`], [`lmlab_infer::decode_step`]), TLS, several models per
//! server, tools/function calling, or speculative decoding.

#![forbid(unsafe_code)]

mod api;
pub mod bench;
mod chat;
mod error;
mod metrics;
mod routes;
mod scheduler;
mod text;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lmlab_infer::Model;
use lmlab_model::CausalLm;

pub use chat::{ChatSession, Command as ChatCommand, HELP as CHAT_HELP};
pub use text::TextStream;

/// The chat page served at `/`.
pub(crate) const PAGE: &str = include_str!("page.html");

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The model's id in the API (requests naming another model get 404).
    pub name: String,
    /// When set, `/v1/*` needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Sequences decoding together at most.
    pub max_batch: usize,
    /// Requests that may wait for a slot; more get 429.
    pub queue: usize,
    /// Bytes of KV cache the running requests may reserve together (None: enough for
    /// `max_batch` sequences of the full context).
    pub kv_budget: Option<usize>,
    /// Finished requests' KV caches kept for prompts that begin with the same tokens (None:
    /// `max_batch`; 0: no prefix caching). They share `kv_budget` with running requests.
    pub prefix_cache: Option<usize>,
    /// Largest request body in bytes (larger: 413).
    pub body_limit: usize,
    /// On shutdown, how long requests in flight may take to finish.
    pub drain: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            name: "lmlab".into(),
            api_key: None,
            max_batch: 8,
            queue: 64,
            kv_budget: None,
            prefix_cache: None,
            body_limit: 1 << 20,
            drain: Duration::from_secs(30),
        }
    }
}

/// KV-cache bytes per position of one sequence for `model`.
pub fn kv_bytes_per_token(model: &Model) -> usize {
    model.new_cache().bytes_per_token().unwrap_or_else(|| {
        let c = model.config();
        c.n_layer * 2 * c.n_kv_head.max(1) * c.head_dim() * 4
    })
}

/// Serves `model` on `listener` until `shutdown` resolves; then new requests get 503 while
/// those in flight finish (for up to `options.drain`), and it returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    model: Arc<Model>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    anyhow::ensure!(options.max_batch > 0, "--max-batch must be at least 1");
    let bytes_per_token = kv_bytes_per_token(&model);
    let kv_budget =
        options.kv_budget.unwrap_or(options.max_batch * scheduler::cache_reservation(1, model.context_length(), bytes_per_token));
    let metrics = Arc::new(metrics::Metrics::new(kv_budget));
    let (jobs, receiver) = std::sync::mpsc::channel();
    {
        let (model, metrics) = (model.clone(), metrics.clone());
        let prefix_entries = options.prefix_cache.unwrap_or(options.max_batch);
        let limits = scheduler::Limits { max_batch: options.max_batch, kv_budget, prefix_entries };
        std::thread::Builder::new().name("lmlab-scheduler".into()).spawn(move || scheduler::run(model, receiver, limits, metrics))?;
    }
    let state = Arc::new(routes::AppState {
        model,
        name: options.name.clone(),
        api_key: options.api_key.clone(),
        jobs,
        metrics,
        queue: options.queue,
        max_batch: options.max_batch,
        kv_budget,
        bytes_per_token,
        body_limit: options.body_limit,
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    });
    let app = routes::router(state.clone());
    let drained = Arc::new(tokio::sync::Notify::new());
    let drain = options.drain;
    let on_shutdown = {
        let (state, drained) = (state.clone(), drained.clone());
        async move {
            shutdown.await;
            state.draining.store(true, Ordering::SeqCst);
            let n = state.in_flight.load(Ordering::SeqCst);
            tracing::info!("shutting down: new requests get 503; waiting up to {:?} for {n} in flight", drain);
            let deadline = tokio::time::Instant::now() + drain;
            while state.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drained.notify_one();
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(on_shutdown);
    // Connections still open a moment after draining (a stream past the deadline, an idle
    // keep-alive) do not hold the process.
    let hard_stop = async move {
        drained.notified().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::select! {
        r = server => r.context("serving")?,
        () = hard_stop => tracing::info!("stopped with connections still open"),
    }
    Ok(())
}
