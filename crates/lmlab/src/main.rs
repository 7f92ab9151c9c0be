//! The `lmlab` command line: argument parsing and display only; every stage is a library call.

#![forbid(unsafe_code)]

mod bench;
mod bench_data;
mod chat;
mod data;
mod dpo;
mod eval;
mod experiment;
mod generate;
mod inspect;
mod preference;
mod pretrain;
mod reward;
mod rlhf;
mod run;
mod seq2seq;
mod serve;
mod sft;
mod size;
mod tokenizer;
mod train_flags;
mod unlearn;
mod world;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lmlab",
    version,
    about = "An end-to-end language-model lab: from a web crawl to a chat model, every stage runnable, inspectable and measured"
)]
struct Cli {
    /// Worker threads for tensor math (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: the built-in world from crawl to chat model (world, tokenizer, data,
    /// pretraining, SFT, reward model, RLHF, evaluation), then a report card. Stages whose
    /// settings are unchanged are skipped; an interrupted run picks up where it stopped.
    Run(run::RunArgs),
    /// Rebuild a run folder's report.md and report.html from what its stages wrote.
    Report(run::ReportArgs),
    /// Train, apply and measure byte-level BPE tokenizers.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokenizerCmd),
    /// Pretrain a Transformer on text files or token shards (next-token prediction).
    Pretrain(pretrain::PretrainArgs),
    /// Instruction-tune a model on conversations (supervised fine-tuning), fully or with LoRA.
    Sft(sft::SftArgs),
    /// LoRA adapters: merge them into their base.
    #[command(subcommand)]
    Lora(sft::LoraCmd),
    /// A reward model: train it on preference pairs (Bradley–Terry), score replies, measure it.
    #[command(subcommand)]
    Reward(reward::RewardCmd),
    /// Direct preference optimisation of an SFT model on preference pairs (DPO, IPO, SimPO).
    Dpo(dpo::DpoArgs),
    /// RLHF: PPO, GRPO or RLOO on an SFT policy's own answers, rewarded by a reward model, the
    /// world's grader, or both, against the frozen SFT model.
    Rlhf(rlhf::RlhfArgs),
    /// Make a model forget conversations or documents (gradient ascent, gradient difference or
    /// NPO), keeping a retain set.
    Unlearn(unlearn::UnlearnArgs),
    /// Generate text from a trained model: prefill the prompt, then decode from the KV cache.
    Generate(generate::GenerateArgs),
    /// Talk to a model in the terminal: a multi-turn chat through its chat template.
    Chat(chat::ChatArgs),
    /// Serve a model over HTTP: OpenAI-compatible API with continuous batching, and a chat page.
    Serve(serve::ServeArgs),
    /// Look inside: next-token probabilities through each sampler step, attention weights.
    #[command(subcommand)]
    Inspect(inspect::InspectCmd),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// The RNN encoder-decoder (with or without attention) and a Transformer on generated tasks.
    #[command(subcommand)]
    Seq2seq(seq2seq::Seq2SeqCmd),
    /// Experiments that train several models and compare them.
    #[command(subcommand)]
    Experiment(experiment::ExperimentCmd),
    /// Measure what a model gets wrong: graded question answering on the built-in world.
    #[command(subcommand)]
    Eval(eval::EvalCmd),
    /// Parameters, memory (weights, KV cache, training) and FLOPs of a model.
    Size(size::SizeArgs),
    /// The data pipeline: crawl or corpus to clean token shards.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// The built-in world: a generated, labelled web crawl with a known truth.
    #[command(subcommand)]
    World(world::WorldCmd),
}

fn main() {
    // html5ever warns on every page it repairs ("foster parenting not implemented"): noise to a
    // user, so only its errors are shown unless RUST_LOG asks for more.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,html5ever=error".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let cli = Cli::parse();
    if std::env::var_os("LMLAB_RUN_CHILD").is_some() {
        stop_with_parent();
    }
    // candle's CPU kernels size their thread pools from RAYON_NUM_THREADS; set it before any
    // tensor work starts. Set it even by default: when it is unset, candle counts the cores
    // again (reading /proc/cpuinfo) on every matmul, which was 4% of a decode step.
    let threads = cli
        .threads
        .or_else(|| std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    // Tensors free and reallocate the same buffers every step; keeping freed memory in the heap
    // instead of unmapping it made a training step 1.6x faster (docs/PERFORMANCE.md).
    lmlab_kernels::keep_freed_memory();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Report(a) => run::report(a),
        Command::Tokenizer(c) => tokenizer::run(c),
        Command::Pretrain(a) => pretrain::run(a),
        Command::Sft(a) => sft::run(a),
        Command::Lora(c) => sft::run_lora(c),
        Command::Reward(c) => reward::run(c),
        Command::Dpo(a) => dpo::run(a),
        Command::Rlhf(a) => rlhf::run(a),
        Command::Unlearn(a) => unlearn::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Inspect(c) => inspect::run(c),
        Command::Eval(c) => eval::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Data(c) => data::run(c),
        Command::World(c) => world::run(c),
        Command::Size(a) => size::run(a),
        Command::Seq2seq(c) => seq2seq::run(c),
        Command::Experiment(c) => experiment::run_cmd(c),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// A stage of `lmlab run` stops when the run does: its standard input is a pipe the run holds,
/// which closes when the run exits for any reason, kill -9 included. Whatever the stage has
/// written is in files written atomically, and a training stage resumes from its checkpoint.
fn stop_with_parent() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        eprintln!("lmlab run has stopped; stopping this stage too");
        std::process::exit(130);
    });
}

/// Prints a value as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
