//! `lmlab bench train`.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::{Args, Subcommand};
use lmlab_train::bench::bench_train;
use lmlab_train::Preset;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Training-step throughput, FLOPs and MFU against this machine's measured matmul peak.
    Train(TrainArgs),
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
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Train(a) => {
            let preset = Preset::from_file(&a.config)?;
            let mut cfg = preset.model.clone();
            if cfg.vocab_size == 0 {
                cfg.vocab_size = a.vocab_size;
            }
            let seq = a.seq_len.unwrap_or(cfg.context_length);
            let r = bench_train(&cfg, &preset.train, a.batch_size, seq, a.warmup, a.steps, &Device::Cpu)?;
            if a.json {
                return crate::print_json(&r);
            }
            println!("lmlab train step: {} params, B={} T={} V={}, {} threads, {} timed steps", r.params, r.batch_size, r.seq_len, cfg.vocab_size, r.threads, r.steps);
            println!("  {:.1} ms/step (forward {:.1}, backward {:.1}, clip+AdamW {:.1})", r.ms_per_step, r.forward_ms, r.backward_ms, r.optimizer_ms);
            println!("  {:.0} tokens/s", r.tokens_per_sec);
            println!("  {:.3} MFLOP/token (6N + attention), {:.2} GFLOP/s achieved", r.flops_per_token / 1e6, r.achieved_gflops);
            println!("  f32 matmul peak measured now: {:.2} GFLOP/s -> MFU {:.1}%", r.peak_matmul_gflops, r.mfu * 100.0);
        }
    }
    Ok(())
}
