//! A tiny model built in the test, a server on loopback, and a plain HTTP/1.1 client over a
//! TCP socket (so a test can read a stream part way and hang up).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use lmlab_infer::Model;
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::{CausalLm, Gpt, GptConfig, KvCache};
use lmlab_serve::ServeOptions;
use lmlab_tokenizer::chat::ChatTemplate;
use lmlab_tokenizer::{train, TrainOptions};

/// A random llama-style model over a small BPE vocabulary with lmlab's chat template.
pub fn tiny_model(context: usize, d_model: usize) -> Model {
    tiny_model_with_step(context, d_model, None)
}

/// A network whose decode steps take at least `delay`: the tiny model decodes thousands of
/// tokens a second, too fast for a test to see a stream while it runs.
struct Slow {
    inner: Gpt,
    delay: Duration,
}

impl CausalLm for Slow {
    fn config(&self) -> &GptConfig {
        self.inner.config()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn kind(&self) -> &'static str {
        "slowed dense"
    }
    fn new_cache(&self) -> KvCache {
        self.inner.new_cache()
    }
    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> candle_core::Result<Tensor> {
        self.inner.forward_cached(ids, cache)
    }
    fn decode_batch(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> candle_core::Result<Tensor> {
        std::thread::sleep(self.delay);
        self.inner.decode_batch(tokens, caches)
    }
    fn logits_all(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.logits_all(ids)
    }
}

/// [`tiny_model`] whose decode steps take at least `step` (when given).
pub fn tiny_model_with_step(context: usize, d_model: usize, step: Option<Duration>) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..200).map(|i| format!("Line {i}: the cat sat on the mat. The dog ran. 猫坐在垫子上。\n")).collect();
    let f = dir.path().join("corpus.txt");
    std::fs::write(&f, text).unwrap();
    let tok = train(&TrainOptions { files: vec![f], vocab_size: 320, min_frequency: 2, show_progress: false }).unwrap();
    let cfg = GptConfig { n_kv_head: 2, ..GptConfig::llama_style(tok.vocab_size(), context, 2, 4, 2, d_model, 2 * d_model) };
    let (gpt, _) = init_trainable(&cfg, 7, DType::F32, &Device::Cpu).unwrap();
    let network: Box<dyn CausalLm> = match step {
        Some(delay) => Box::new(Slow { inner: gpt, delay }),
        None => Box::new(gpt),
    };
    Model::from_parts(network, tok, Some(ChatTemplate::lmlab()), "lmlab")
}

/// A server running on its own thread until dropped (or [`Server::shutdown`]).
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub fn start(model: Arc<Model>, options: ServeOptions) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?).unwrap();
                lmlab_serve::run(listener, model, options, async move {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("server started");
        Self { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// Begins a graceful shutdown (returns at once).
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shuts down and waits until the server has stopped.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.0.eq_ignore_ascii_case(name)).map(|h| h.1.as_str())
    }
    /// The `data:` payloads of a server-sent-event body.
    pub fn events(&self) -> Vec<String> {
        self.text().lines().filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))).map(String::from).collect()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

pub fn send_raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = send_raw(addr, method, path, headers, body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|h| h.0.eq_ignore_ascii_case("transfer-encoding") && h.1.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

pub fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Response {
    request(addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// One value of the Prometheus text at /metrics.
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = get(addr, "/metrics").text();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `cond` holds (polling), up to `secs`.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
