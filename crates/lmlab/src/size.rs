//! `lmlab size`: parameter, memory and compute arithmetic for a config, a preset, a model file or
//! a bare parameter count.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::Args;
use lmlab_model::model_file;
use lmlab_model::size::{human, render, size_report, weight_bytes, Dtype, SizeQuery};
use lmlab_train::Preset;

#[derive(Args)]
pub struct SizeArgs {
    /// A preset file with a [model] table.
    #[arg(long, group = "what")]
    config: Option<PathBuf>,
    /// A built-in preset: tiny, small, gpt2-124m, gpt2-xl, llama-2-7b, llama-3-8b, llama-3-70b, smollm2-135m.
    #[arg(long, group = "what")]
    preset: Option<String>,
    /// An lmlab checkpoint folder, a safetensors file or a GGUF file.
    #[arg(long, group = "what")]
    model: Option<PathBuf>,
    /// A bare parameter count (e.g. 7e9): weight memory only.
    #[arg(long, group = "what")]
    params: Option<f64>,
    #[arg(long, default_value = "bf16")]
    dtype: Dtype,
    /// Context length for the KV cache and activations (default: the model's).
    #[arg(long)]
    context: Option<usize>,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Training tokens for the compute estimate (default: Chinchilla-optimal, 20 per parameter).
    #[arg(long)]
    train_tokens: Option<f64>,
    /// Sustained GFLOP/s for the time estimate (default: this machine's f32 matmul peak, measured now).
    #[arg(long)]
    gflops: Option<f64>,
    /// Vocabulary size for presets that take it from a tokenizer.
    #[arg(long, default_value_t = 4096)]
    vocab_size: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: SizeArgs) -> Result<()> {
    if let Some(n) = a.params {
        let rows: Vec<(&str, f64)> = Dtype::ALL.iter().map(|d| (d.name(), weight_bytes(n, *d))).collect();
        if a.json {
            return crate::print_json(&serde_json::json!({"params": n, "weight_bytes": rows}));
        }
        println!("{} parameters need, for the weights alone:", human(n, ""));
        for (d, b) in rows {
            println!("  {d:<5} {}", human(b, "B"));
        }
        return Ok(());
    }
    let (mut cfg, file_info) = if let Some(p) = &a.config {
        (Preset::from_file(p)?.model, None)
    } else if let Some(name) = &a.preset {
        (Preset::builtin(name)?.model, None)
    } else if let Some(m) = &a.model {
        let info = model_file::inspect(m)?;
        let Some(cfg) = info.config.clone() else {
            let p = info.tensor_params.clone().unwrap_or_default();
            if a.json {
                return crate::print_json(&info);
            }
            println!(
                "{} ({}): {} parameters counted from its tensors; no architecture metadata, so weights only:",
                m.display(),
                info.format,
                p.total
            );
            for d in Dtype::ALL {
                println!("  {:<5} {}", d.name(), human(weight_bytes(p.total as f64, d), "B"));
            }
            return Ok(());
        };
        (cfg, Some(info))
    } else {
        bail!("say what to size: --config, --preset, --model or --params");
    };
    if cfg.vocab_size == 0 {
        cfg.vocab_size = a.vocab_size;
    }
    cfg.validate()?;
    let gflops = match a.gflops {
        Some(g) => g,
        None => lmlab_train::bench::matmul_peak_gflops(1024, 3, &Device::Cpu)?,
    };
    let q = SizeQuery {
        dtype: a.dtype,
        context: a.context.unwrap_or(cfg.context_length),
        batch: a.batch,
        train_tokens: a.train_tokens,
        gflops,
    };
    let report = size_report(&cfg, &q);
    if a.json {
        return crate::print_json(&serde_json::json!({"config": cfg, "file": file_info, "report": report}));
    }
    if let Some(info) = &file_info {
        let counted = info.tensor_params.as_ref().map_or("-".to_string(), |p| p.total.to_string());
        println!("{} file, {}; parameters counted from its tensors: {counted}", info.format, human(info.file_bytes as f64, "B"));
    }
    print!("{}", render(&report));
    if a.gflops.is_none() {
        println!("(time at this machine's f32 matmul peak, measured now; pass --gflops for another machine)");
    }
    Ok(())
}
