//! What the server measures, in Prometheus' text format (`GET /metrics`): requests by endpoint
//! and status, prompt and generated tokens, time to first token and time per generated token
//! (histograms), running and queued sequences, sequences cancelled because their client left,
//! KV-cache memory (budget, reserved by admitted requests, held by buffers now), and the prefix
//! cache (prompt tokens it saved from prefill, caches and bytes it keeps).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A cumulative histogram with fixed upper bounds (seconds).
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in microseconds.
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(), sum_us: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    /// Records `n` observations of `secs`.
    pub(crate) fn observe_n(&self, secs: f64, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(n, Ordering::Relaxed);
        }
        self.sum_us.fetch_add((secs * 1e6) as u64 * n, Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every figure `GET /metrics` reports.
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens read from the prefix cache instead of prefilled.
    pub prompt_tokens_cached: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub ttft: Histogram,
    pub per_token: Histogram,
    pub running: AtomicUsize,
    pub queued: AtomicUsize,
    pub cancelled: AtomicU64,
    pub kv_budget: AtomicUsize,
    pub kv_reserved: AtomicUsize,
    pub kv_used: AtomicUsize,
    pub prefix_entries: AtomicUsize,
    pub prefix_bytes: AtomicUsize,
    pub steps: AtomicU64,
}

const TTFT_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const TOKEN_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Metrics {
    pub(crate) fn new(kv_budget: usize) -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            prompt_tokens_cached: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BOUNDS),
            per_token: Histogram::new(TOKEN_BOUNDS),
            running: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            cancelled: AtomicU64::new(0),
            kv_budget: AtomicUsize::new(kv_budget),
            kv_reserved: AtomicUsize::new(0),
            kv_used: AtomicUsize::new(0),
            prefix_entries: AtomicUsize::new(0),
            prefix_bytes: AtomicUsize::new(0),
            steps: AtomicU64::new(0),
        }
    }

    /// Counts a finished request.
    pub(crate) fn request(&self, endpoint: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((endpoint.to_string(), status)).or_insert(0) += 1;
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ =
            writeln!(out, "# HELP lmlab_requests_total HTTP requests by endpoint and status code.\n# TYPE lmlab_requests_total counter");
        for ((endpoint, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "lmlab_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(&mut out, "lmlab_prompt_tokens_total", "Prompt tokens of admitted requests.", self.prompt_tokens.load(Ordering::Relaxed));
        counter(
            &mut out,
            "lmlab_prompt_tokens_cached_total",
            "Prompt tokens taken from the prefix cache instead of prefilled.",
            self.prompt_tokens_cached.load(Ordering::Relaxed),
        );
        counter(&mut out, "lmlab_generated_tokens_total", "Tokens generated.", self.generated_tokens.load(Ordering::Relaxed));
        counter(&mut out, "lmlab_decode_steps_total", "Batched decode steps.", self.steps.load(Ordering::Relaxed));
        counter(
            &mut out,
            "lmlab_sequences_cancelled_total",
            "Sequences ended early because their client went away.",
            self.cancelled.load(Ordering::Relaxed),
        );
        self.ttft.render(&mut out, "lmlab_time_to_first_token_seconds", "From a request's arrival to its first generated token.");
        self.per_token.render(
            &mut out,
            "lmlab_time_per_output_token_seconds",
            "Time between consecutive tokens of a sequence (one decode step).",
        );
        gauge(&mut out, "lmlab_running_sequences", "Sequences decoding now.", self.running.load(Ordering::Relaxed));
        gauge(&mut out, "lmlab_queued_requests", "Requests waiting for a slot or KV-cache memory.", self.queued.load(Ordering::Relaxed));
        gauge(
            &mut out,
            "lmlab_kv_cache_budget_bytes",
            "KV-cache memory the server may reserve (--kv-budget).",
            self.kv_budget.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "lmlab_kv_cache_reserved_bytes",
            "KV-cache memory reserved up front by admitted requests.",
            self.kv_reserved.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "lmlab_kv_cache_used_bytes",
            "KV-cache memory the running sequences' buffers hold now.",
            self.kv_used.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "lmlab_prefix_cache_entries",
            "Finished requests' KV caches kept for prompts that begin the same way.",
            self.prefix_entries.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "lmlab_prefix_cache_bytes",
            "Memory of the kept caches (counted against the budget, evicted when a request needs it).",
            self.prefix_bytes.load(Ordering::Relaxed),
        );
        out
    }
}
