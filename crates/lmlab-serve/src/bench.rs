//! `lmlab bench serve`: a load test of any OpenAI-compatible server, and the servers to load.
//!
//! Each client is a thread that sends streamed chat completions one after another (greedy, the
//! same questions in the same order for every server). A streamed chunk with text is one token:
//! that is how llama.cpp's server and lmlab's stream. Measured per concurrency level: aggregate
//! output tokens/s over the level's wall time, time to first token (request sent → first
//! text), and inter-token latency (gaps between a request's chunks).
//!
//! The servers ([`ServerKind`]) are started as child processes on a free local port and stopped
//! after their levels, so that one server's threads never compete with the next one's.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Questions the clients ask, in turn; answers run to `max_tokens`.
const QUESTIONS: [&str; 8] = [
    "Explain how a bicycle works, step by step.",
    "Write a short story about a lighthouse keeper.",
    "What are the main causes of the seasons on Earth?",
    "Describe how bread is made, from flour to loaf.",
    "Give me a detailed plan for learning to play the piano.",
    "Why is the sky blue? Explain it to a child.",
    "List the planets of the solar system and one fact about each.",
    "How does a refrigerator keep food cold?",
];

/// A server to benchmark, and how to start it.
#[derive(Debug, Clone)]
pub enum ServerKind {
    /// `lmlab serve` (this binary).
    Lmlab { exe: PathBuf, max_batch: usize },
    /// llama-cpp-python's OpenAI server (`python -m llama_cpp.server`): one request at a time.
    LlamaCppPython { python: PathBuf },
    /// llama.cpp's `llama-server` with `slots` parallel sequences (continuous batching).
    LlamaServer { bin: PathBuf, slots: usize },
}

impl ServerKind {
    pub fn name(&self) -> String {
        match self {
            Self::Lmlab { max_batch, .. } => format!("lmlab serve (batch {max_batch})"),
            Self::LlamaCppPython { .. } => "llama-cpp-python server".into(),
            Self::LlamaServer { slots, .. } => format!("llama-server -np {slots}"),
        }
    }

    fn command(&self, model: &Path, port: u16, threads: usize) -> Command {
        let (port, threads) = (port.to_string(), threads.to_string());
        let model = model.display().to_string();
        match self {
            Self::Lmlab { exe, max_batch } => {
                let mut c = Command::new(exe);
                c.args(["--threads", &threads, "serve", "--model", &model, "--port", &port, "--max-batch", &max_batch.to_string()]);
                c
            }
            Self::LlamaCppPython { python } => {
                let mut c = Command::new(python);
                c.args([
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    &model,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "--n_ctx",
                    "2048",
                    "--n_threads",
                    &threads,
                    // By default a new request interrupts the one running; queue them instead.
                    "--interrupt_requests",
                    "False",
                ]);
                c
            }
            Self::LlamaServer { bin, slots } => {
                let mut c = Command::new(bin);
                // Each slot gets an equal share of the context.
                let ctx = (slots * 1024).to_string();
                c.args([
                    "-m",
                    &model,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "-np",
                    &slots.to_string(),
                    "-c",
                    &ctx,
                    "-t",
                    &threads,
                    "-tb",
                    &threads,
                ]);
                c
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchServeOptions {
    pub model: PathBuf,
    pub clients: Vec<usize>,
    /// Requests per level (at least one per client).
    pub requests: usize,
    pub max_tokens: usize,
    pub threads: usize,
}

/// One server at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct LevelResult {
    pub server: String,
    pub clients: usize,
    pub requests: usize,
    pub output_tokens: usize,
    pub seconds: f64,
    pub tokens_per_sec: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub itl_p50_ms: f64,
}

/// What one request saw.
struct Timing {
    ttft: Option<Duration>,
    gaps: Vec<Duration>,
    tokens: usize,
}

/// Starts `kind`, loads it at each level of `opts.clients`, stops it.
pub fn bench_server(kind: &ServerKind, opts: &BenchServeOptions, mut progress: impl FnMut(&str)) -> Result<Vec<LevelResult>> {
    let port = free_port()?;
    // The server's output goes to a file: a pipe nobody reads fills up and stalls a chatty server.
    let log_path = std::env::temp_dir().join(format!("lmlab-bench-serve-{port}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = kind
        .command(&opts.model, port, opts.threads)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    let base = format!("http://127.0.0.1:{port}");
    let result = (|| {
        wait_ready(&base, &mut child, Duration::from_secs(120))
            .with_context(|| format!("{} did not come up (its output: {})", kind.name(), log_path.display()))?;
        let models: serde_json::Value = ureq::get(&format!("{base}/v1/models")).call()?.into_json()?;
        let model = models["data"][0]["id"].as_str().context("/v1/models lists no model")?.to_string();
        progress(&format!("{}: warming up", kind.name()));
        request(&base, &model, QUESTIONS[0], opts.max_tokens.min(8))?;
        let mut rows = Vec::new();
        for &c in &opts.clients {
            progress(&format!("{}: {c} client(s)", kind.name()));
            rows.push(level(&base, &model, kind, c, opts)?);
        }
        Ok(rows)
    })();
    let _ = child.kill();
    let _ = child.wait();
    if result.is_ok() {
        let _ = std::fs::remove_file(&log_path);
    }
    result
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_ready(base: &str, child: &mut Child, limit: Duration) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            bail!("it exited with {status}");
        }
        if ureq::get(&format!("{base}/v1/models")).timeout(Duration::from_secs(2)).call().is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no answer on {base}/v1/models in {} s", limit.as_secs())
}

/// `clients` threads share `opts.requests` requests (at least one each).
fn level(base: &str, model: &str, kind: &ServerKind, clients: usize, opts: &BenchServeOptions) -> Result<LevelResult> {
    let per_client = opts.requests.div_ceil(clients).max(1);
    let start = Instant::now();
    let timings: Vec<Result<Vec<Timing>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    (0..per_client)
                        .map(|i| request(base, model, QUESTIONS[(c * per_client + i) % QUESTIONS.len()], opts.max_tokens))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a client thread panicked")).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let timings: Vec<Timing> = timings.into_iter().collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
    let mut ttft: Vec<f64> = timings.iter().filter_map(|t| t.ttft).map(|d| d.as_secs_f64() * 1e3).collect();
    let mut gaps: Vec<f64> = timings.iter().flat_map(|t| t.gaps.iter().map(|d| d.as_secs_f64() * 1e3)).collect();
    let output_tokens = timings.iter().map(|t| t.tokens).sum();
    Ok(LevelResult {
        server: kind.name(),
        clients,
        requests: timings.len(),
        output_tokens,
        seconds,
        tokens_per_sec: output_tokens as f64 / seconds,
        ttft_p50_ms: percentile(&mut ttft, 0.5),
        ttft_p95_ms: percentile(&mut ttft, 0.95),
        itl_p50_ms: percentile(&mut gaps, 0.5),
    })
}

/// The `q` quantile (nearest rank) of `xs`; NaN when empty.
pub fn percentile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// One streamed, greedy chat completion; every chunk with text counts as a token.
fn request(base: &str, model: &str, question: &str, max_tokens: usize) -> Result<Timing> {
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": true,
    });
    let sent = Instant::now();
    let response = ureq::post(&format!("{base}/v1/chat/completions"))
        .timeout(Duration::from_secs(600))
        .send_json(body)
        .with_context(|| format!("POST {base}/v1/chat/completions"))?;
    let mut timing = Timing { ttft: None, gaps: Vec::new(), tokens: 0 };
    let mut last = sent;
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
        if data == "[DONE]" {
            break;
        }
        let chunk: serde_json::Value = serde_json::from_str(data).with_context(|| format!("a stream chunk that is not JSON: {data}"))?;
        let text = chunk["choices"][0]["delta"]["content"].as_str().unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        let now = Instant::now();
        match timing.ttft {
            None => timing.ttft = Some(now - sent),
            Some(_) => timing.gaps.push(now - last),
        }
        last = now;
        timing.tokens += 1;
    }
    Ok(timing)
}

/// The results as a markdown table, and the ratios the benchmark is read by.
pub fn render(rows: &[LevelResult]) -> String {
    let mut out = String::from("| server | clients | requests | output tokens | tokens/s | TTFT p50 (ms) | TTFT p95 (ms) | inter-token p50 (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.1} |\n",
            r.server, r.clients, r.requests, r.output_tokens, r.tokens_per_sec, r.ttft_p50_ms, r.ttft_p95_ms, r.itl_p50_ms
        ));
    }
    let at = |prefix: &str, c: usize| rows.iter().find(|r| r.server.starts_with(prefix) && r.clients == c).map(|r| r.tokens_per_sec);
    for c in [1, 8] {
        if let Some(ours) = at("lmlab", c) {
            for (prefix, name) in [("llama-server", "llama-server"), ("llama-cpp-python", "llama-cpp-python's server")] {
                if let Some(theirs) = at(prefix, c) {
                    out.push_str(&format!(
                        "\nAt {c} client(s): lmlab {:.2}× {name} ({ours:.1} against {theirs:.1} tokens/s).",
                        ours / theirs
                    ));
                }
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut xs = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&mut xs, 0.5), 3.0);
        assert_eq!(percentile(&mut xs, 0.95), 5.0);
        assert_eq!(percentile(&mut xs, 0.0), 1.0);
        assert!(percentile(&mut [], 0.5).is_nan());
    }
}
