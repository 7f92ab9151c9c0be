//! `lmlab inspect next-token | attention`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use lmlab_infer::inspect::{attention_trace, next_token, top_positions};
use lmlab_tokenizer::Tokenizer;

use crate::generate::{load_model, SamplerArgs};
use lmlab_model::CausalLm;

#[derive(Subcommand)]
pub enum InspectCmd {
    /// The most likely next tokens, with probabilities raw and after each sampler step, and entropy.
    NextToken(NextTokenArgs),
    /// For each generated token, the earlier tokens it attended to (table and heatmap PNG).
    Attention(AttentionArgs),
}

#[derive(Args)]
pub struct NextTokenArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    /// Send the prompt as a user message through the model's chat template (a tuned model).
    #[arg(long)]
    chat: bool,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// Rows to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AttentionArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    /// Send the prompt as a user message through the model's chat template (a tuned model).
    #[arg(long)]
    chat: bool,
    /// Tokens to generate.
    #[arg(long, default_value_t = 10)]
    generate: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// Show one layer (default: the average over layers).
    #[arg(long)]
    layer: Option<usize>,
    /// Show one head (default: the average over heads).
    #[arg(long)]
    head: Option<usize>,
    /// Earlier tokens listed per generated token.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Heatmap PNG (default: attention.png in the current folder).
    #[arg(long, default_value = "attention.png")]
    png: PathBuf,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn piece(tok: &Tokenizer, id: u32) -> String {
    format!("{:?}", tok.decode(&[id]).unwrap_or_default())
}

pub fn run(cmd: InspectCmd) -> Result<()> {
    match cmd {
        InspectCmd::NextToken(a) => {
            let model = load_model(&a.model, a.tokenizer.as_deref())?;
            let tok = model.tokenizer();
            let r = next_token(&model, &model.prompt(&a.prompt, a.chat, None)?, &a.sampler.params(), a.top)?;
            if a.json {
                let rows: Vec<serde_json::Value> = r
                    .rows
                    .iter()
                    .map(|x| {
                        let mut v = serde_json::to_value(x).unwrap_or_default();
                        v["text"] = tok.decode(&[x.token]).unwrap_or_default().into();
                        v
                    })
                    .collect();
                return crate::print_json(
                    &serde_json::json!({"rows": rows, "entropy_raw_bits": r.entropy_raw_bits, "entropy_final_bits": r.entropy_final_bits, "candidates_final": r.candidates_final}),
                );
            }
            println!(
                "{:<18} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8}",
                "token", "raw", "bias/pen", "temp", "top-k", "top-p", "min-p", "typical"
            );
            let pct = |p: f64| format!("{:.1}%", p * 100.0);
            for x in &r.rows {
                println!(
                    "{:<18} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8}",
                    piece(tok, x.token),
                    pct(x.raw),
                    pct(x.adjusted),
                    pct(x.temperature),
                    pct(x.top_k),
                    pct(x.top_p),
                    pct(x.min_p),
                    pct(x.typical_p)
                );
            }
            println!(
                "entropy: {:.2} bits raw, {:.2} bits after sampling steps; {} candidate tokens left",
                r.entropy_raw_bits, r.entropy_final_bits, r.candidates_final
            );
        }
        InspectCmd::Attention(a) => {
            let loaded = load_model(&a.model, a.tokenizer.as_deref())?;
            let tok = loaded.tokenizer();
            // Attention weights are captured on the tensor path (a quantized model's shares
            // its weights).
            let model = loaded
                .as_gpt()
                .ok_or_else(|| anyhow::anyhow!("{}: this model has no tensor path to capture attention from", a.model.display()))?;
            let cfg = model.config().clone();
            if let Some(l) = a.layer {
                anyhow::ensure!(l < cfg.n_layer, "--layer {l}: the model has {} layers", cfg.n_layer);
            }
            if let Some(h) = a.head {
                anyhow::ensure!(h < cfg.n_head, "--head {h}: the model has {} heads", cfg.n_head);
            }
            let prompt = loaded.prompt(&a.prompt, a.chat, None)?;
            let trace = attention_trace(model, &prompt, a.generate, &a.sampler.params(), &tok.special().stop_ids)?;
            let which = format!(
                "{} / {}",
                a.layer.map_or("all layers".into(), |l| format!("layer {l}")),
                a.head.map_or("all heads".into(), |h| format!("head {h}"))
            );
            if a.json {
                return crate::print_json(&serde_json::json!({
                    "tokens": trace.tokens,
                    "texts": trace.tokens.iter().map(|&t| tok.decode(&[t]).unwrap_or_default()).collect::<Vec<_>>(),
                    "prompt_len": trace.prompt_len,
                    "steps": trace.steps,
                }));
            }
            println!("attention of each generated token ({which}), top {} earlier tokens:", a.top);
            let mut values = Vec::new();
            for s in &trace.steps {
                let avg = s.averaged(a.layer, a.head);
                let tops: Vec<String> =
                    top_positions(&avg, a.top).iter().map(|&(j, w)| format!("{} {:.0}%", piece(tok, trace.tokens[j]), w * 100.0)).collect();
                println!("{:<18} <- {}", piece(tok, s.token), tops.join(", "));
                values.push(avg);
            }
            let rows: Vec<String> = trace.steps.iter().map(|s| tok.decode(&[s.token]).unwrap_or_default()).collect();
            let cols: Vec<String> =
                trace.tokens[..trace.tokens.len().saturating_sub(1)].iter().map(|&t| tok.decode(&[t]).unwrap_or_default()).collect();
            match lmlab_eval::plot::heatmap(&a.png, &format!("attention ({which})"), &rows, &cols, &values) {
                Ok(()) => println!("heatmap: {}", a.png.display()),
                Err(e) => eprintln!("no heatmap: {e}"),
            }
        }
    }
    Ok(())
}
