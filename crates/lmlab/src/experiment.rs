//! `lmlab experiment architectures`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use lmlab_eval::architectures::{default_out, run, ArchitecturesOptions};
use lmlab_train::seq2seq::Task;

#[derive(Subcommand)]
pub enum ExperimentCmd {
    /// RNN encoder-decoder vs RNN with attention vs Transformer: accuracy by source length,
    /// throughput, and compute to 95% (markdown table, JSON, PNG plot).
    Architectures(ArchArgs),
}

#[derive(Args)]
pub struct ArchArgs {
    #[arg(long, default_value = "reverse")]
    task: Task,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    train_min: usize,
    #[arg(long, default_value_t = 30)]
    train_max: usize,
    #[arg(long, default_value_t = 60)]
    test_max: usize,
    #[arg(long, default_value_t = 200)]
    samples: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (default runs/experiment-architectures-TASK).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run_cmd(cmd: ExperimentCmd) -> Result<()> {
    match cmd {
        ExperimentCmd::Architectures(a) => {
            let opts = ArchitecturesOptions {
                task: a.task,
                hidden: a.hidden,
                steps: a.steps,
                batch: a.batch,
                train_min: a.train_min,
                train_max: a.train_max,
                test_max: a.test_max,
                samples: a.samples,
                lr: a.lr,
                seed: a.seed,
                out: a.out.unwrap_or_else(|| default_out(a.task)),
            };
            let report = run(&opts, |msg| eprintln!("{msg}"))?;
            if a.json {
                return crate::print_json(&report);
            }
            print!("{}", std::fs::read_to_string(&report.table_md)?);
            println!("\nwritten: {}{}", report.table_md.display(), report.plot_png.map_or(String::new(), |p| format!(", {}", p.display())));
        }
    }
    Ok(())
}
