//! `lmlab serve`: the OpenAI-compatible server (lmlab-serve) on a model.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use lmlab_serve::ServeOptions;

use lmlab_model::CausalLm;

use crate::generate::load_model;

#[derive(Args)]
pub struct ServeArgs {
    /// An lmlab model folder, a GGUF file, or a Hugging Face folder.
    #[arg(long)]
    model: PathBuf,
    /// tokenizer.json (default: the model's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Address to listen on. The default answers this machine only; 0.0.0.0 exposes the server.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on /v1/* (also read from LMLAB_API_KEY).
    #[arg(long)]
    api_key: Option<String>,
    /// Sequences decoded together in one batched step at most.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Requests that may wait for a slot; beyond them, 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// KV-cache memory the running requests may reserve: bytes, or with K, M or G (default:
    /// --max-batch sequences of the full context).
    #[arg(long, value_parser = parse_size)]
    kv_budget: Option<usize>,
    /// Finished requests' KV caches kept so that a prompt beginning with the same tokens (a
    /// system prompt, the conversation so far) prefills only the rest; they share --kv-budget
    /// with running requests (default: --max-batch; 0: off).
    #[arg(long)]
    prefix_cache: Option<usize>,
    /// The model's id in the API (default: the model file or folder name).
    #[arg(long)]
    name: Option<String>,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// On SIGTERM or Ctrl-C, seconds requests in flight get to finish.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1usize << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v: f64 = num.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Ok((v * mult as f64) as usize)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    let model = Arc::new(load_model(&a.model, a.tokenizer.as_deref())?);
    let name = a.name.clone().unwrap_or_else(|| {
        let stem = if a.model.is_file() { a.model.file_stem() } else { a.model.file_name() };
        stem.map_or_else(|| "lmlab".into(), |s| s.to_string_lossy().into_owned())
    });
    let api_key = a.api_key.clone().or_else(|| std::env::var("LMLAB_API_KEY").ok().filter(|k| !k.is_empty()));
    let options = ServeOptions {
        name: name.clone(),
        api_key: api_key.clone(),
        max_batch: a.max_batch,
        queue: a.queue,
        kv_budget: a.kv_budget,
        prefix_cache: a.prefix_cache,
        body_limit: a.max_body,
        drain: Duration::from_secs(a.drain_secs),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("listening on {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        let reach = if addr.ip().is_loopback() { "loopback only: --host 0.0.0.0 to expose it" } else { "reachable from the network" };
        eprintln!(
            "lmlab serve: {name} ({}, {}) on http://{addr} ({reach}); API key {}; batch {}, queue {}",
            model.format(),
            model.kind(),
            if api_key.is_some() { "required" } else { "off" },
            a.max_batch,
            a.queue
        );
        lmlab_serve::run(listener, model.clone(), options, shutdown_signal()).await
    })?;
    eprintln!("lmlab serve: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_with_suffixes() {
        assert_eq!(super::parse_size("512M"), Ok(512 << 20));
        assert_eq!(super::parse_size("1.5k"), Ok(1536));
        assert_eq!(super::parse_size("100"), Ok(100));
        assert!(super::parse_size("lots").is_err());
    }
}
