//! `lmlab experiment architectures`, `honesty` and `overoptimisation`.

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
    /// SFT against PPO with abstention rewarded (+1/0/−1), PPO with abstention as bad as a
    /// wrong answer, and GRPO: accuracy, hallucination and abstention per fact frequency and on
    /// entities that do not exist, and selective prediction (markdown table, JSON, PNG plot).
    Honesty(HonestyArgs),
    /// Reward over-optimisation (Gao et al. 2023) in an `lmlab rlhf --reward rm` run: the
    /// reward model's and the world grader's scores against √KL (table, JSON, PNG plot).
    Overoptimisation(OveroptArgs),
}

#[derive(Args)]
pub struct OveroptArgs {
    /// The run's metrics.jsonl (beside its checkpoint folder).
    #[arg(long)]
    metrics: PathBuf,
    /// Groups of consecutive steps to average.
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// Output folder (default: the metrics file's folder).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct HonestyArgs {
    /// The SFT model every arm starts from.
    #[arg(long)]
    policy: PathBuf,
    /// The world folder (rl_prompts.jsonl, eval/, kb.jsonl).
    #[arg(long)]
    world: PathBuf,
    /// Small and fast: 12 RL steps of 8 prompts per arm, 60 questions per evaluation file.
    #[arg(long)]
    quick: bool,
    /// RL steps per arm (overrides the preset of --quick or the full run).
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long)]
    lr: Option<f64>,
    /// Questions per evaluation file.
    #[arg(long)]
    eval_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (default runs/experiment-honesty).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
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
        ExperimentCmd::Overoptimisation(a) => {
            let out = a.out.unwrap_or_else(|| a.metrics.parent().map(PathBuf::from).unwrap_or_default());
            let report = lmlab_eval::overopt::run(&a.metrics, &out, a.bins)?;
            if a.json {
                return crate::print_json(&report);
            }
            print!("{}", std::fs::read_to_string(&report.table_md)?);
            println!("\nwritten: {}{}", report.table_md.display(), report.plot_png.map_or(String::new(), |p| format!(", {}", p.display())));
        }
        ExperimentCmd::Honesty(a) => {
            use lmlab_eval::honesty;
            let mut opts = honesty::HonestyOptions::new(a.policy, a.world, a.out.unwrap_or_else(honesty::default_out), a.quick);
            opts.steps = a.steps.unwrap_or(opts.steps);
            opts.lr = a.lr.unwrap_or(opts.lr);
            opts.eval_limit = a.eval_limit.or(opts.eval_limit);
            opts.seed = a.seed;
            let report = honesty::run(&opts, |msg| eprintln!("{msg}"))?;
            if a.json {
                return crate::print_json(&report);
            }
            print!("{}", std::fs::read_to_string(&report.table_md)?);
            println!("\nwritten: {}{}", report.table_md.display(), report.plot_png.map_or(String::new(), |p| format!(", {}", p.display())));
        }
    }
    Ok(())
}
