//! The server through a real HTTP client on loopback, on a tiny random model built here:
//! greedy answers equal the engine's, streams equal whole answers, OpenAI's error shapes,
//! the API key, 429 past the queue, a disconnecting client frees its sequence, graceful
//! shutdown, and a bounded load test.

mod support;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use lmlab_infer::{generate, GenerateRequest, Model, SamplingParams, StopText};
use lmlab_serve::ServeOptions;
use serde_json::{json, Value};
use support::*;

fn engine_greedy(model: &Model, prompt: Vec<u32>, max_tokens: usize) -> String {
    let stops = StopText::new(model.tokenizer(), vec![]);
    let req = GenerateRequest {
        stop_ids: stops.stop_ids().to_vec(),
        ..GenerateRequest::new(prompt, max_tokens, SamplingParams { temperature: 0.0, ..Default::default() })
    };
    let g = generate(model, &req, |_, _| {}, |_, _| false).unwrap();
    stops.final_text(&g.samples[0].tokens)
}

fn error_of(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert!(j["error"]["message"].is_string() && j["error"]["type"].is_string(), "OpenAI error shape: {j}");
    j["error"].clone()
}

#[test]
fn answers_streams_and_errors() {
    let model = Arc::new(tiny_model(64, 32));
    let server = Server::start(model.clone(), ServeOptions { name: "tiny".into(), body_limit: 4096, ..Default::default() });
    let a = server.addr;

    // Greedy completions equal the engine's greedy text for the same prompt.
    let r = post(a, "/v1/completions", &json!({"model": "tiny", "prompt": "the cat", "max_tokens": 12, "temperature": 0}));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let prompt = lmlab_infer::prompt_ids(model.tokenizer(), "the cat").unwrap();
    assert_eq!(j["choices"][0]["text"], engine_greedy(&model, prompt.clone(), 12));
    assert_eq!(j["object"], "text_completion");
    assert_eq!(j["usage"]["prompt_tokens"], prompt.len());
    assert_eq!(j["usage"]["total_tokens"], prompt.len() as u64 + j["usage"]["completion_tokens"].as_u64().unwrap());

    // Chat: the template's prompt, greedy, whole and streamed alike.
    let msgs = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]);
    let body = json!({"model": "tiny", "messages": msgs, "max_completion_tokens": 10, "temperature": 0});
    let whole = post(a, "/v1/chat/completions", &body).json();
    let chat_prompt = model
        .chat_prompt(&[
            lmlab_tokenizer::chat::Message::new("system", "Be brief."),
            lmlab_tokenizer::chat::Message::new("user", "Hello there"),
        ])
        .unwrap();
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert_eq!(text, engine_greedy(&model, chat_prompt, 10));
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let streamed = post(a, "/v1/chat/completions", &sbody);
    assert_eq!(streamed.status, 200);
    assert!(streamed.header("content-type").unwrap().starts_with("text/event-stream"));
    let events = streamed.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage, &whole["usage"], "usage in the final chunk");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"].is_string()));

    // Seeds: the same seed the same samples; n samples; log-probabilities.
    let sampled = json!({"prompt": "the dog", "max_tokens": 8, "temperature": 1.0, "seed": 3, "n": 2, "logprobs": 2});
    let (x, y) = (post(a, "/v1/completions", &sampled).json(), post(a, "/v1/completions", &sampled).json());
    assert_eq!(x["choices"], y["choices"]);
    assert_eq!(x["choices"].as_array().unwrap().len(), 2);
    assert_eq!(x["choices"][0]["logprobs"]["top_logprobs"][0].as_object().unwrap().len(), 2);
    let lp = post(
        a,
        "/v1/chat/completions",
        &json!({"messages": msgs, "max_tokens": 4, "logprobs": true, "top_logprobs": 3, "logit_bias": no_stop(&model)}),
    )
    .json();
    let first = &lp["choices"][0]["logprobs"]["content"][0];
    assert!(first["logprob"].as_f64().unwrap() <= 0.0 && first["top_logprobs"].as_array().unwrap().len() == 3, "{lp}");
    // Stop strings end the text before them.
    let free = post(a, "/v1/completions", &json!({"prompt": "the cat", "max_tokens": 12, "temperature": 0})).json();
    let free = free["choices"][0]["text"].as_str().unwrap().to_string();
    if let Some(stop) = free.chars().skip(3).take(2).collect::<String>().get(..).filter(|s| !s.trim().is_empty()) {
        let cut = post(a, "/v1/completions", &json!({"prompt": "the cat", "max_tokens": 12, "temperature": 0, "stop": stop})).json();
        assert_eq!(cut["choices"][0]["text"].as_str().unwrap(), &free[..free.find(stop).unwrap()]);
        assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    }

    // The model list, health, metrics, the page.
    assert_eq!(get(a, "/v1/models").json()["data"][0]["id"], "tiny");
    assert_eq!(get(a, "/health").json()["status"], "ok");
    let page = get(a, "/");
    assert!(page.status == 200 && page.text().contains("lmlab chat") && !page.text().contains("innerHTML"));
    assert!(metric(a, "lmlab_generated_tokens_total") > 0.0);
    assert!(get(a, "/metrics").text().contains("lmlab_time_to_first_token_seconds_bucket{le=\"+Inf\"}"));

    // Errors in OpenAI's shape.
    let raw = |body: &str| request(a, "POST", "/v1/chat/completions", &[("Content-Type", "application/json")], body.as_bytes());
    error_of(&raw("{\"messages\": [}"), 400);
    error_of(&raw("[1, 2]"), 400);
    let e = error_of(&post(a, "/v1/chat/completions", &json!({"messages": msgs, "temperature": "hot"})), 400);
    assert_eq!(e["param"], "temperature");
    let e = error_of(&post(a, "/v1/chat/completions", &json!({"messages": [{"role": "wizard", "content": "hi"}]})), 400);
    assert!(e["message"].as_str().unwrap().contains("wizard"));
    error_of(&post(a, "/v1/chat/completions", &json!({"messages": "hi"})), 400);
    error_of(&post(a, "/v1/completions", &json!({"prompt": "x", "top_p": 1.5})), 400);
    error_of(&post(a, "/v1/completions", &json!({"prompt": "x", "logit_bias": {"99999": 1}})), 400);
    let long = "the cat sat on the mat ".repeat(40);
    let e = error_of(&post(a, "/v1/completions", &json!({"prompt": long})), 400);
    assert_eq!(e["code"], "context_length_exceeded");
    let e = error_of(&post(a, "/v1/completions", &json!({"prompt": "the cat", "max_tokens": 1000})), 400);
    assert_eq!(e["code"], "context_length_exceeded");
    let e = error_of(&post(a, "/v1/completions", &json!({"model": "gpt-9", "prompt": "x"})), 404);
    assert_eq!(e["code"], "model_not_found");
    error_of(&get(a, "/v1/nothing"), 404);
    error_of(&get(a, "/v1/models/gpt-9"), 404);
    error_of(&get(a, "/v1/chat/completions"), 405);
    let big = json!({"prompt": "x".repeat(5000)});
    error_of(&post(a, "/v1/completions", &big), 413);
    let m = get(a, "/metrics").text();
    let line = m.lines().find(|l| l.starts_with("lmlab_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}")).unwrap();
    assert!(line.rsplit(' ').next().unwrap().parse::<u32>().unwrap() >= 4, "{line}");
    assert_eq!(get(a, "/health").status, 200, "still up");
    server.shutdown().unwrap();

    // With an API key: /v1/* needs it; health does not.
    let server = Server::start(model, ServeOptions { api_key: Some("sekrit".into()), ..Default::default() });
    let a = server.addr;
    let body = json!({"prompt": "the", "max_tokens": 2}).to_string();
    let with = |auth: &[(&str, &str)]| request(a, "POST", "/v1/completions", auth, body.as_bytes());
    let e = error_of(&with(&[]), 401);
    assert_eq!(e["code"], "invalid_api_key");
    error_of(&with(&[("Authorization", "Bearer wrong")]), 401);
    assert_eq!(with(&[("Authorization", "Bearer sekrit")]).status, 200);
    assert_eq!(get(a, "/health").status, 200);
    server.shutdown().unwrap();
}

/// A logit bias that keeps a random model from ending early (its stop tokens at -100).
#[test]
fn a_prompt_that_begins_like_an_earlier_one_prefills_only_the_rest() {
    use lmlab_tokenizer::chat::Message;
    let model = Arc::new(tiny_model(128, 32));
    let chat = |msgs: &[Message]| model.chat_prompt(msgs).unwrap();
    let body = |msgs: &[Message]| {
        let messages: Vec<Value> = msgs.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
        json!({"messages": messages, "max_tokens": 8, "temperature": 0})
    };
    let answer = |r: Response| r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let first = vec![Message::new("system", "Answer in one line."), Message::new("user", "Where is the cat?")];
    for entries in [None, Some(0)] {
        let server = Server::start(model.clone(), ServeOptions { prefix_cache: entries, ..Default::default() });
        let a = server.addr;
        let cached = || metric(a, "lmlab_prompt_tokens_cached_total") as usize;
        let reply = answer(post(a, "/v1/chat/completions", &body(&first)));
        assert_eq!(reply, engine_greedy(&model, chat(&first), 8));
        assert_eq!(cached(), 0, "nothing to reuse yet");
        // The next turn holds the whole first prompt (and the reply as re-tokenized).
        let second = [first.clone(), vec![Message::new("assistant", &reply), Message::new("user", "And the dog?")]].concat();
        let reply2 = answer(post(a, "/v1/chat/completions", &body(&second)));
        assert_eq!(reply2, engine_greedy(&model, chat(&second), 8), "prefix caching changes no token");
        let after_turn = cached();
        // The same request again: all of its prompt but the last token comes from the cache.
        assert_eq!(answer(post(a, "/v1/chat/completions", &body(&second))), reply2);
        if entries == Some(0) {
            assert_eq!(cached(), 0, "--prefix-cache 0 keeps nothing");
            assert_eq!(metric(a, "lmlab_prefix_cache_entries"), 0.0);
        } else {
            assert!(after_turn >= chat(&first).len(), "the first turn's {} prompt tokens were reused: {after_turn}", chat(&first).len());
            assert_eq!(cached() - after_turn, chat(&second).len() - 1);
            assert!(metric(a, "lmlab_prefix_cache_entries") >= 1.0 && metric(a, "lmlab_prefix_cache_bytes") > 0.0);
        }
        server.shutdown().unwrap();
    }
}

fn no_stop(model: &Model) -> Value {
    Value::Object(model.tokenizer().special().stop_ids.iter().map(|id| (id.to_string(), json!(-100))).collect())
}

/// A streamed completion of `max_tokens` tokens (`bias` keeps it from stopping early);
/// returns the socket after its first content chunk.
fn open_stream(addr: std::net::SocketAddr, max_tokens: usize, bias: &Value) -> std::net::TcpStream {
    let body = json!({"prompt": "the cat", "max_tokens": max_tokens, "stream": true, "temperature": 1.0, "seed": 1, "logit_bias": bias})
        .to_string();
    let mut s = send_raw(addr, "POST", "/v1/completions", &[("Content-Type", "application/json")], body.as_bytes());
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&seen).contains("\"text\"") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

#[test]
fn batching_queue_disconnects_shutdown_and_load() {
    // Long replies (stop tokens banned) at 1 ms or more a step outlast a client's hang-up and
    // the test's looks at the metrics.
    let model = Arc::new(tiny_model_with_step(2048, 64, Some(Duration::from_millis(1))));
    let bias = no_stop(&model);
    let opts = ServeOptions { max_batch: 2, queue: 1, drain: Duration::from_secs(20), ..Default::default() };
    let server = Server::start(model.clone(), opts);
    let a = server.addr;

    // A client that hangs up mid-stream frees its sequence (and its KV reservation).
    let s = open_stream(a, 2000, &bias);
    assert!(metric(a, "lmlab_running_sequences") >= 1.0);
    drop(s);
    assert!(wait_for(20, || metric(a, "lmlab_sequences_cancelled_total") >= 1.0), "the hang-up was noticed");
    assert!(wait_for(20, || metric(a, "lmlab_running_sequences") == 0.0 && metric(a, "lmlab_kv_cache_reserved_bytes") == 0.0));

    // Two running (the batch), one queued, the next refused with 429 and Retry-After.
    let (s1, s2) = (open_stream(a, 2000, &bias), open_stream(a, 2000, &bias));
    let queued = std::thread::spawn(move || post(a, "/v1/completions", &json!({"prompt": "the", "max_tokens": 3})));
    assert!(wait_for(10, || metric(a, "lmlab_queued_requests") == 1.0));
    let r = post(a, "/v1/completions", &json!({"prompt": "the", "max_tokens": 3}));
    error_of(&r, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop((s1, s2));
    assert_eq!(queued.join().unwrap().status, 200, "the queued request runs once a slot frees");

    // KV-cache memory is reserved up front: with room for one long request, a second waits in
    // the queue though slots are free, and runs once the first is gone.
    server.shutdown().unwrap();
    let per_token = lmlab_serve::kv_bytes_per_token(&model);
    let budget = 2048 * per_token; // a 3-token prompt + 2000 tokens: buffers of 256 → 2048 positions
    let mut server = Server::start(model.clone(), ServeOptions { max_batch: 4, kv_budget: Some(budget), ..Default::default() });
    let a = server.addr;
    assert_eq!(metric(a, "lmlab_kv_cache_budget_bytes"), budget as f64);
    let s1 = open_stream(a, 2000, &bias);
    assert_eq!(metric(a, "lmlab_kv_cache_reserved_bytes"), budget as f64);
    let waiting = std::thread::spawn(move || post(a, "/v1/completions", &json!({"prompt": "the", "max_tokens": 3})));
    assert!(wait_for(10, || metric(a, "lmlab_queued_requests") == 1.0));
    assert_eq!(metric(a, "lmlab_running_sequences"), 1.0, "a free slot, but no memory");
    drop(s1);
    assert_eq!(waiting.join().unwrap().status, 200);
    let e = error_of(&post(a, "/v1/completions", &json!({"prompt": "the", "max_tokens": 2000, "n": 2})), 400);
    assert!(e["message"].as_str().unwrap().contains("KV cache"), "{e}");

    // Graceful shutdown: a stream in flight finishes; new requests get 503.
    let mut s = open_stream(a, 300, &bias);
    server.begin_shutdown();
    assert!(wait_for(10, || get(a, "/health").status == 503));
    error_of(&post(a, "/v1/completions", &json!({"prompt": "the", "max_tokens": 3})), 503);
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the stream in flight finished");
    server.shutdown().unwrap();

    // Load: 32 streaming clients x 4 requests, 20 malformed, 8 hanging up; twice.
    let server = Server::start(model, ServeOptions { max_batch: 16, queue: 256, ..Default::default() });
    let a = server.addr;
    let mut rss = Vec::new();
    for round in 0..2 {
        let cancelled_before = metric(a, "lmlab_sequences_cancelled_total");
        let mut threads = Vec::new();
        for c in 0..32 {
            threads.push(std::thread::spawn(move || {
                for k in 0..4 {
                    let body = json!({"messages": [{"role": "user", "content": format!("client {c} turn {k}")}], "max_tokens": 16, "stream": true, "seed": c});
                    let r = post(a, "/v1/chat/completions", &body);
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(r.events().last().map(String::as_str), Some("[DONE]"));
                }
            }));
        }
        for m in 0..20 {
            threads.push(std::thread::spawn(move || {
                let bodies = [
                    "{",
                    "[]",
                    "{\"messages\": 5}",
                    "{\"prompt\": \"x\", \"max_tokens\": -1}",
                    "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
                ];
                let r = request(a, "POST", "/v1/chat/completions", &[], bodies[m % bodies.len()].as_bytes());
                assert!((400..500).contains(&r.status), "malformed request got {}", r.status);
            }));
        }
        for _ in 0..8 {
            let bias = bias.clone();
            threads.push(std::thread::spawn(move || drop(open_stream(a, 2000, &bias))));
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(wait_for(30, || metric(a, "lmlab_sequences_cancelled_total") >= cancelled_before + 8.0), "every hang-up freed its slot");
        assert!(wait_for(30, || metric(a, "lmlab_running_sequences") == 0.0 && metric(a, "lmlab_queued_requests") == 0.0));
        assert_eq!(get(a, "/health").status, 200, "round {round}: still up");
        rss.push(rss_kb());
    }
    assert!(rss[1] as f64 <= 1.1 * rss[0] as f64, "RSS grew from {} kB to {} kB", rss[0], rss[1]);
    eprintln!("RSS after round 1: {} kB, after round 2: {} kB", rss[0], rss[1]);
    server.shutdown().unwrap();
}
