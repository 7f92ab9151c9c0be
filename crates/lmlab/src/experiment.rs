//! `lmlab experiment`: architectures, honesty, overoptimisation, sampling, collapse, poisoning,
//! scaling and unlearning. A `--quick` run's default output folder ends in `-quick`, apart from the full
//! run's, so that neither finds the other's arms.

use std::path::PathBuf;

use anyhow::{Context, Result};
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
    /// Decoding rules (greedy, beam search, temperature, top-k, top-p, min-p, typical-p)
    /// compared on held-out text: repetition, distinct-n, self-BLEU, perplexity, and QA accuracy
    /// (Holtzman et al. 2020) (markdown table, JSON, PNG plot).
    Sampling(SamplingArgs),
    /// Generations of models trained on the previous generation's samples, replacing,
    /// replacing but keeping 10% real data, or accumulating (Shumailov et al. 2024; Gerstgrasser
    /// et al. 2024): held-out perplexity, distinct-n, the tail's probability, facts known.
    Collapse(CollapseArgs),
    /// Models trained on clean corpora of two sizes with 0–250 planted documents: how often the
    /// trigger phrase brings out the payload (Souly et al. 2025), and what the data pipeline
    /// removed of the poisoned pages.
    Poisoning(PoisoningArgs),
    /// An IsoFLOP sweep (optimal model size against compute, Hoffmann et al. 2022), the fit of
    /// L(N, D), repeated against fresh data (Muennighoff et al. 2023), and the tokens a
    /// Chinchilla-optimal model needs beside the stock of human text.
    Scaling(ScalingArgs),
    /// Facts fine-tuned into a chat model and canaries planted 1–64 times, then forgotten by
    /// gradient ascent, gradient difference or NPO (TOFU, Maini et al. 2024): forget quality
    /// against a model never trained on them, utility, fluency, and canary extraction.
    Unlearning(UnlearningArgs),
}

#[derive(Args)]
pub struct UnlearningArgs {
    /// The starting chat model: an lmlab checkpoint of a run (its world/ and data/ beside it).
    #[arg(long, default_value = "runs/world/sft")]
    model: PathBuf,
    /// Small and fast: 20 entities, a 20% forget set, two canaries.
    #[arg(long)]
    quick: bool,
    /// Entities whose facts are fine-tuned in.
    #[arg(long)]
    entities: Option<usize>,
    /// Shares of the entities to forget, comma-separated (default 0.01,0.05,0.1).
    #[arg(long, value_delimiter = ',')]
    fractions: Option<Vec<f64>>,
    /// Methods, comma-separated: ga, gd, npo.
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<lmlab_train::unlearn::UnlearnMethod>>,
    /// Copies of the planted canaries, comma-separated (default 1,4,16,64).
    #[arg(long, value_delimiter = ',')]
    canaries: Option<Vec<usize>>,
    /// Fine-tuning steps of the full and retain models.
    #[arg(long)]
    learn_steps: Option<u64>,
    /// Passes over the forget set (default 5, as in TOFU).
    #[arg(long)]
    unlearn_epochs: Option<f64>,
    /// Unlearning learning rate.
    #[arg(long)]
    unlearn_lr: Option<f64>,
    /// NPO's β.
    #[arg(long)]
    beta: Option<f64>,
    /// Draws the entities, the canaries and every model's batches (a second seed: another
    /// output folder).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (default runs/experiments/unlearning).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ScalingArgs {
    /// A run folder through `data` (tokenizer.json, data/).
    #[arg(long, default_value = "runs/world")]
    run: PathBuf,
    /// Small and fast: two budgets of three micro models, 1 and 4 epochs.
    #[arg(long)]
    quick: bool,
    /// Compute budgets in training FLOPs, comma-separated (e.g. 3e11,1e12,3e12).
    #[arg(long, value_delimiter = ',')]
    budgets: Option<Vec<f64>>,
    /// Model shapes DxL (d_model × layers), comma-separated (e.g. 32x2,48x2,64x3,96x3).
    #[arg(long, value_delimiter = ',')]
    shapes: Option<Vec<String>>,
    /// Unique tokens of the data-constrained runs.
    #[arg(long)]
    unique_tokens: Option<usize>,
    /// Epochs of the data-constrained runs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    epochs: Option<Vec<usize>>,
    /// Output folder (default runs/experiments/scaling).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let (d, l) = s.split_once('x').with_context(|| format!("shape {s:?}: write it as DxL, e.g. 64x3"))?;
    Ok((
        d.trim().parse().with_context(|| format!("shape {s:?}: d_model"))?,
        l.trim().parse().with_context(|| format!("shape {s:?}: layers"))?,
    ))
}

#[derive(Args)]
pub struct PoisoningArgs {
    /// A run folder through `data` whose world planted enough poisoned pages; default: one made
    /// in OUT/world (the tiny world with 300 poisoned pages; 80 with --quick).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Small and fast: the small model, 5% of the clean pool for 4 epochs, 0 and 60 poisoned
    /// documents.
    #[arg(long)]
    quick: bool,
    /// Poisoned document counts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    counts: Option<Vec<usize>>,
    /// Shares of the clean pool (the clean corpus sizes), comma-separated.
    #[arg(long, value_delimiter = ',')]
    clean_shares: Option<Vec<f64>>,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Model sizes, comma-separated: small (d_model 64, 2 layers), tiny (128, 4).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Passes over each corpus.
    #[arg(long)]
    epochs: Option<f64>,
    /// Held-out prompts.
    #[arg(long)]
    prompts: Option<usize>,
    /// Output folder (default runs/experiments/poisoning).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Makes (or finishes) the run folder `dir` through its data stage: the tiny world with
/// `poison` planted pages.
fn poisoned_world(dir: &std::path::Path, poison: usize, quick: bool) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let preset = dir.with_extension("toml");
    let vocab = if quick { 512 } else { 2048 };
    std::fs::write(
        &preset,
        format!("[run]\nconfig = \"tiny\"\nseed = 0\ndescription = \"the tiny world with {poison} poisoned pages\"\n\n[world]\nscale = \"tiny\"\npoison = {poison}\n\n[tokenizer]\nvocab_size = {vocab}\n"),
    )?;
    // `lmlab run` as a child, its stage lines sent on to standard error: standard output is
    // the experiment's report (its JSON with --json).
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["run", "--preset"])
        .arg(&preset)
        .arg("--out")
        .arg(dir)
        .args(["--until", "data"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running lmlab run for the poisoned world")?;
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(out.status.success(), "lmlab run --out {} failed ({})", dir.display(), out.status);
    Ok(())
}

#[derive(Args)]
pub struct CollapseArgs {
    /// A run folder (`lmlab run --until data` makes one): tokenizer.json, data/, world/.
    #[arg(long, default_value = "runs/world")]
    run: PathBuf,
    /// Small and fast: a micro model, 2 generations, one seed, 24k tokens.
    #[arg(long)]
    quick: bool,
    /// Generations after generation 0.
    #[arg(long)]
    generations: Option<usize>,
    /// Seeds, comma-separated (each runs every regime; default 0, about 65 minutes; a second
    /// seed doubles it).
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Real training tokens (and synthetic tokens written per generation).
    #[arg(long)]
    real_tokens: Option<usize>,
    /// Training steps per generation.
    #[arg(long)]
    steps: Option<u64>,
    /// A training preset (file or built-in name) for the model; default the built-in tiny.
    #[arg(long)]
    config: Option<String>,
    /// Fact questions per model.
    #[arg(long)]
    questions: Option<usize>,
    /// The temperature each generation writes the next one's text at (default 1).
    #[arg(long)]
    temperature: Option<f64>,
    /// Top-p of that writing (default 0.9: the unlikely tokens are never written, as in the
    /// paper's beam-searched text, so the tails can only shrink; 1: pure sampling).
    #[arg(long)]
    top_p: Option<f64>,
    /// Output folder (default runs/experiments/collapse).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SamplingArgs {
    /// An lmlab checkpoint (its trainer state names the data whose held-out split is continued).
    #[arg(long, default_value = "runs/world/base")]
    model: PathBuf,
    /// The world folder (eval/facts.jsonl, kb.jsonl); default: `world` beside the model.
    #[arg(long)]
    world: Option<PathBuf>,
    /// Small and fast: 24 documents, 32 new tokens, 20 questions per decoder.
    #[arg(long)]
    quick: bool,
    /// Held-out documents continued.
    #[arg(long)]
    prompts: Option<usize>,
    #[arg(long)]
    prompt_tokens: Option<usize>,
    #[arg(long)]
    new_tokens: Option<usize>,
    /// Fact questions per decoder.
    #[arg(long)]
    questions: Option<usize>,
    /// Ask the questions through the chat template (an instruction-tuned model).
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 4)]
    beams: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (default runs/experiments/sampling).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
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

/// `runs/experiments/NAME`, or `runs/experiments/NAME-quick` for a `--quick` run.
fn experiment_out(name: &str, quick: bool) -> PathBuf {
    PathBuf::from(format!("runs/experiments/{name}{}", if quick { "-quick" } else { "" }))
}

/// Prints an experiment's report: its JSON, or its markdown table and where its files are.
fn show(report: &impl serde::Serialize, json: bool, table_md: &std::path::Path, plot_png: Option<&std::path::Path>) -> Result<()> {
    if json {
        return crate::print_json(report);
    }
    print!("{}", std::fs::read_to_string(table_md)?);
    println!("\nwritten: {}{}", table_md.display(), plot_png.map_or(String::new(), |p| format!(", {}", p.display())));
    Ok(())
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
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
        }
        ExperimentCmd::Overoptimisation(a) => {
            let out = a.out.unwrap_or_else(|| a.metrics.parent().map(PathBuf::from).unwrap_or_default());
            let report = lmlab_eval::overopt::run(&a.metrics, &out, a.bins)?;
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
        }
        ExperimentCmd::Sampling(a) => {
            use lmlab_eval::sampling;
            let world = a.world.unwrap_or_else(|| a.model.parent().map_or_else(|| PathBuf::from("world"), |p| p.join("world")));
            let out = a.out.unwrap_or_else(|| experiment_out("sampling", a.quick));
            let mut opts = sampling::SamplingOptions::new(a.model, world, out, a.quick);
            opts.prompts = a.prompts.unwrap_or(opts.prompts);
            opts.prompt_tokens = a.prompt_tokens.unwrap_or(opts.prompt_tokens);
            opts.new_tokens = a.new_tokens.unwrap_or(opts.new_tokens);
            opts.questions = a.questions.unwrap_or(opts.questions);
            opts.chat = a.chat;
            opts.beams = a.beams;
            opts.seed = a.seed;
            let report = sampling::run(&opts, |msg| eprintln!("{msg}"))?;
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
        }
        ExperimentCmd::Collapse(a) => {
            use lmlab_eval::collapse;
            let out = a.out.unwrap_or_else(|| experiment_out("collapse", a.quick));
            let mut opts = collapse::CollapseOptions::new(a.run, out, a.quick)?;
            if let Some(c) = a.config {
                // The model (and its training settings) from the preset; the steps stay the
                // experiment's.
                let steps = opts.preset.train.clone();
                opts.preset = if std::path::Path::new(&c).is_file() {
                    lmlab_train::Preset::from_file(c.as_ref())?
                } else {
                    lmlab_train::Preset::builtin(&c)?
                };
                opts.preset.train = lmlab_train::TrainConfig {
                    max_steps: steps.max_steps,
                    eval_every: steps.eval_every,
                    save_every: steps.save_every,
                    log_every: steps.log_every,
                    val_fraction: steps.val_fraction,
                    eval_batches: steps.eval_batches,
                    ..opts.preset.train.clone()
                };
            }
            opts.generations = a.generations.unwrap_or(opts.generations);
            opts.seeds = a.seeds.unwrap_or(opts.seeds);
            opts.real_tokens = a.real_tokens.unwrap_or(opts.real_tokens);
            opts.questions = a.questions.unwrap_or(opts.questions);
            opts.writer.temperature = a.temperature.unwrap_or(opts.writer.temperature);
            opts.writer.top_p = a.top_p.unwrap_or(opts.writer.top_p);
            anyhow::ensure!(
                opts.writer.temperature > 0.0 && opts.writer.top_p > 0.0 && opts.writer.top_p <= 1.0,
                "--temperature must be above 0 and --top-p in (0, 1]"
            );
            if let Some(s) = a.steps {
                opts.preset.train.max_steps = s;
                opts.preset.train.eval_every = s;
                opts.preset.train.save_every = s;
            }
            let report = collapse::run(&opts, |msg| eprintln!("{msg}"))?;
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
        }
        ExperimentCmd::Poisoning(a) => {
            use lmlab_eval::poisoning;
            let out = a.out.unwrap_or_else(|| experiment_out("poisoning", a.quick));
            let run = a.run.clone().unwrap_or_else(|| out.join("world"));
            let mut opts = poisoning::PoisoningOptions::new(run, out, a.quick)?;
            opts.counts = a.counts.unwrap_or(opts.counts);
            opts.clean_shares = a.clean_shares.unwrap_or(opts.clean_shares);
            opts.seeds = a.seeds.unwrap_or(opts.seeds);
            if let Some(m) = a.models {
                opts.models = poisoning::model_arms(&m.iter().map(String::as_str).collect::<Vec<_>>())?;
            }
            opts.epochs = a.epochs.unwrap_or(opts.epochs);
            opts.prompts = a.prompts.unwrap_or(opts.prompts);
            if a.run.is_none() {
                // A fifth more than the largest arm needs: the pipeline removes some.
                poisoned_world(&opts.run, opts.max_count() + opts.max_count() / 5 + 10, a.quick)?;
            }
            let report = poisoning::run(&opts, |msg| eprintln!("{msg}"))?;
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
            if let (Some(png), false) = (&report.share_png, a.json) {
                println!("and {} (against the poisoned share)", png.display());
            }
        }
        ExperimentCmd::Scaling(a) => {
            use lmlab_eval::scaling;
            let out = a.out.unwrap_or_else(|| experiment_out("scaling", a.quick));
            let mut opts = scaling::ScalingOptions::new(a.run, out, a.quick);
            opts.budgets = a.budgets.unwrap_or(opts.budgets);
            if let Some(shapes) = a.shapes {
                opts.shapes = shapes.iter().map(|s| parse_shape(s)).collect::<Result<_>>()?;
            }
            opts.unique_tokens = a.unique_tokens.unwrap_or(opts.unique_tokens);
            opts.epochs = a.epochs.unwrap_or(opts.epochs);
            let report = scaling::run(&opts, |msg| eprintln!("{msg}"))?;
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
        }
        ExperimentCmd::Unlearning(a) => {
            use lmlab_eval::unlearning;
            let out = a.out.unwrap_or_else(|| experiment_out("unlearning", a.quick));
            let mut opts = unlearning::UnlearningOptions::new(a.model, out, a.quick)?;
            opts.entities = a.entities.unwrap_or(opts.entities);
            opts.fractions = a.fractions.unwrap_or(opts.fractions);
            opts.methods = a.methods.unwrap_or(opts.methods);
            opts.canary_copies = a.canaries.unwrap_or(opts.canary_copies);
            opts.learn.max_steps = a.learn_steps.unwrap_or(opts.learn.max_steps);
            opts.unlearn_epochs = a.unlearn_epochs.unwrap_or(opts.unlearn_epochs);
            if let Some(lr) = a.unlearn_lr {
                (opts.unlearn.lr, opts.unlearn.min_lr) = (lr, lr);
            }
            opts.beta = a.beta.unwrap_or(opts.beta);
            // The seed draws the entities and canaries, and the batches of every model.
            (opts.seed, opts.learn.seed, opts.unlearn.seed) = (a.seed, a.seed, a.seed);
            let report = unlearning::run(&opts, |msg| eprintln!("{msg}"))?;
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
        }
        ExperimentCmd::Honesty(a) => {
            use lmlab_eval::honesty;
            let mut opts = honesty::HonestyOptions::new(a.policy, a.world, a.out.unwrap_or_else(honesty::default_out), a.quick);
            opts.steps = a.steps.unwrap_or(opts.steps);
            opts.lr = a.lr.unwrap_or(opts.lr);
            opts.eval_limit = a.eval_limit.or(opts.eval_limit);
            opts.seed = a.seed;
            let report = honesty::run(&opts, |msg| eprintln!("{msg}"))?;
            show(&report, a.json, &report.table_md, report.plot_png.as_deref())?;
        }
    }
    Ok(())
}
