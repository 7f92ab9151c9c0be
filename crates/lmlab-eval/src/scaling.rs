//! `lmlab experiment scaling`: how loss falls with model size and data at fixed compute
//! (Hoffmann et al. 2022), what repeating data costs (Muennighoff et al. 2023), and the
//! arithmetic of running out of human text.
//!
//! 1. IsoFLOP sweep: for each compute budget C and model shape, the model trains on
//!    D = C / (training FLOPs per token) tokens of a run's cleaned crawl (its learning-rate
//!    schedule spans exactly those steps), and its loss on the crawl's held-out split is
//!    measured. Per budget a parabola in ln N gives the optimal size; a line through
//!    (ln C, ln N_opt) gives the exponent of N_opt ∝ C^a (Chinchilla ≈ 0.50, Kaplan ≈ 0.73), and
//!    D_opt / N_opt the tokens per parameter at the optimum (Chinchilla ≈ 20). N counts the
//!    parameters outside the embedding (at these sizes the embedding is most of the model), so
//!    the tokens-per-parameter figure compares only loosely.
//! 2. L(N, D) = E + A/N^α + B/D^β fitted to every run with a Huber loss, as Hoffmann et al. did.
//! 3. Data-constrained runs: one model on U unique tokens repeated for 1, 2, 4, … epochs, against
//!    the same number of fresh tokens.
//! 4. The tokens a Chinchilla-optimal model of 1B to 10T parameters needs, beside Epoch AI's
//!    estimate of the stock of public human text (about 300T tokens).
//!
//! Every model is an arm kept in the output folder ([`crate::arm`]); an interrupted run
//! redoes only unfinished arms. Written as `scaling.md`, `scaling.json` and `scaling.png`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::Device;
use lmlab_infer::{LoadOptions, Model};
use lmlab_train::data::TokenData;
use lmlab_train::Preset;
use serde::Serialize;

use crate::arm::train_on;
use crate::fit::{fit_chinchilla, line, parabola, Chinchilla};
use crate::plot::{line_chart, Series};

/// Epoch AI's estimate of the stock of public human-written text, in tokens (Villalobos et al.
/// 2024: about 300 trillion).
pub const HUMAN_TEXT_STOCK: f64 = 3e14;

#[derive(Debug, Clone, Serialize)]
pub struct ScalingOptions {
    /// A run folder through `data`: `tokenizer.json`, `data/`.
    pub run: PathBuf,
    pub out: PathBuf,
    /// Compute budgets in training FLOPs.
    pub budgets: Vec<f64>,
    /// Model shapes (d_model, layers); heads of 16 dimensions, d_ff = 3·d_model.
    pub shapes: Vec<(usize, usize)>,
    pub batch_size: usize,
    pub seq_len: usize,
    /// The data-constrained runs: unique tokens, epochs, and the model shape.
    pub unique_tokens: usize,
    pub epochs: Vec<usize>,
    pub constrained_shape: (usize, usize),
    pub heldout_tokens: usize,
    pub seed: u64,
}

impl ScalingOptions {
    /// The full experiment's settings, or `quick` ones (about a minute on 2 cores).
    pub fn new(run: PathBuf, out: PathBuf, quick: bool) -> Self {
        if quick {
            return Self {
                run,
                out,
                budgets: vec![2e10, 6e10],
                shapes: vec![(16, 1), (32, 1), (48, 1)],
                batch_size: 8,
                seq_len: 64,
                unique_tokens: 20_000,
                epochs: vec![1, 4],
                constrained_shape: (32, 1),
                heldout_tokens: 8_000,
                seed: 0,
            };
        }
        Self {
            run,
            out,
            budgets: vec![3e11, 1e12, 3e12],
            shapes: vec![(32, 2), (48, 2), (64, 3), (96, 3)],
            batch_size: 16,
            seq_len: 128,
            unique_tokens: 100_000,
            epochs: vec![1, 2, 4, 8, 16],
            constrained_shape: (64, 3),
            heldout_tokens: 40_000,
            seed: 0,
        }
    }
}

/// One trained model.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingRun {
    /// "isoflop" or "repeated" or "fresh".
    pub kind: String,
    pub d_model: usize,
    pub n_layer: usize,
    /// Parameters outside the embedding.
    pub params: usize,
    pub params_total: usize,
    /// Training FLOPs (per token × tokens).
    pub flops: f64,
    pub budget: Option<f64>,
    pub tokens: usize,
    /// Unique tokens in the corpus it drew from.
    pub unique_tokens: usize,
    pub steps: u64,
    /// For the data-constrained runs: the epochs of the unique tokens this run's total equals.
    pub epochs: Option<usize>,
    pub heldout_loss: f64,
    pub seconds: f64,
}

/// A budget's parabola and its optimum.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetFit {
    pub budget: f64,
    /// loss = a·(ln N)² + b·ln N + c.
    pub coefficients: (f64, f64, f64),
    /// The parabola's minimum; None when it opens downward.
    pub n_opt: Option<f64>,
    /// Whether that minimum lies within the sweep's sizes (else it is an extrapolation, and
    /// left out of the exponent).
    pub inside: bool,
    pub d_opt: Option<f64>,
    pub best_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScalingReport {
    pub options: ScalingOptions,
    pub runs: Vec<ScalingRun>,
    pub budgets: Vec<BudgetFit>,
    /// N_opt ∝ C^exponent, from budgets with an optimum.
    pub n_opt_exponent: Option<f64>,
    pub tokens_per_param_at_opt: Vec<f64>,
    /// The fit of L(N, D) over the runs that saw no token twice; None with fewer than five.
    pub chinchilla: Option<Chinchilla>,
    /// (parameters, Chinchilla-optimal tokens, share of the human text stock).
    pub running_out: Vec<(f64, f64, f64)>,
    pub table_md: PathBuf,
    pub plot_png: Option<PathBuf>,
}

fn preset_for(shape: (usize, usize), opts: &ScalingOptions, vocab: usize) -> Result<Preset> {
    let mut p = Preset::builtin("tiny")?;
    let (d, layers) = shape;
    p.model.vocab_size = vocab;
    p.model.d_model = d;
    p.model.n_layer = layers;
    p.model.n_head = (d / 16).max(1);
    p.model.n_kv_head = p.model.n_head;
    p.model.d_ff = 3 * d;
    p.model.context_length = opts.seq_len;
    p.train.batch_size = opts.batch_size;
    p.train.seq_len = opts.seq_len;
    p.train.val_fraction = 0.0;
    p.train.eval_batches = 0;
    p.train.log_every = 50;
    p.train.seed = opts.seed;
    Ok(p)
}

fn with_steps(mut p: Preset, tokens: usize) -> Preset {
    let steps = (tokens / (p.train.batch_size * p.train.seq_len)).max(1) as u64;
    p.train.max_steps = steps;
    p.train.warmup_steps = p.train.warmup_steps.min(steps / 10);
    p.train.eval_every = steps;
    p.train.save_every = steps;
    p
}

struct Lab<'a> {
    opts: &'a ScalingOptions,
    tokenizer: PathBuf,
    vocab: usize,
    train: Vec<u32>,
    heldout: Vec<u32>,
    stop: Arc<AtomicBool>,
}

impl Lab<'_> {
    /// Trains `shape` for `tokens` tokens drawn from the first `unique` training tokens.
    fn run(&self, kind: &str, shape: (usize, usize), tokens: usize, unique: usize, budget: Option<f64>, dir: &Path) -> Result<ScalingRun> {
        let started = Instant::now();
        let preset = with_steps(preset_for(shape, self.opts, self.vocab)?, tokens);
        let unique = unique.min(self.train.len());
        train_on(dir, &preset, &self.train[..unique], self.vocab, &self.tokenizer, &self.stop)?;
        let model = Model::load(&dir.join("model"), &LoadOptions::default(), &Device::Cpu)?;
        let stats = crate::ppl::score(&model, &self.heldout, self.opts.seq_len, |_| 1)?;
        let m = &preset.model;
        let counts = m.param_count();
        let steps = preset.train.max_steps;
        let trained = steps as usize * preset.train.batch_size * preset.train.seq_len;
        Ok(ScalingRun {
            kind: kind.into(),
            d_model: shape.0,
            n_layer: shape.1,
            params: counts.total - counts.embeddings,
            params_total: counts.total,
            flops: m.train_flops_per_token(preset.train.seq_len) * trained as f64,
            budget,
            tokens: trained,
            unique_tokens: unique,
            steps,
            epochs: None,
            heldout_loss: stats.nats / stats.tokens.max(1) as f64,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Each budget's parabola in ln N through its runs' held-out losses.
pub fn budget_fits(runs: &[ScalingRun], budgets: &[f64]) -> Vec<BudgetFit> {
    budgets
        .iter()
        .map(|&c| {
            let here: Vec<&ScalingRun> = runs.iter().filter(|r| r.kind == "isoflop" && r.budget == Some(c)).collect();
            let xs: Vec<f64> = here.iter().map(|r| (r.params as f64).ln()).collect();
            let ys: Vec<f64> = here.iter().map(|r| r.heldout_loss).collect();
            let coefficients = if here.len() >= 3 { parabola(&xs, &ys) } else { (0.0, 0.0, 0.0) };
            let n_opt = (coefficients.0 > 0.0).then(|| (-coefficients.1 / (2.0 * coefficients.0)).exp());
            // D at the optimum: at fixed C, ln D against ln N through the budget's runs (the
            // FLOPs per token are not proportional to N: the output layer's V·d is most of them).
            let d_opt = n_opt.filter(|_| here.len() >= 2).map(|n| {
                let (slope, at) = line(&xs, &here.iter().map(|r| (r.tokens as f64).ln()).collect::<Vec<_>>());
                (slope * n.ln() + at).exp()
            });
            let (lo, hi) = here.iter().fold((f64::MAX, 0f64), |(a, b), r| (a.min(r.params as f64), b.max(r.params as f64)));
            let inside = n_opt.is_some_and(|n| n >= lo && n <= hi);
            BudgetFit { budget: c, coefficients, n_opt, d_opt, inside, best_loss: ys.iter().copied().fold(f64::INFINITY, f64::min) }
        })
        .collect()
}

/// Runs the experiment; `log` hears progress.
pub fn run(opts: &ScalingOptions, mut log: impl FnMut(&str)) -> Result<ScalingReport> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let tokenizer = opts.run.join("tokenizer.json");
    let tok = lmlab_tokenizer::Tokenizer::from_file(&tokenizer).with_context(|| format!("the run's tokenizer {}", tokenizer.display()))?;
    let vocab = tok.vocab_size();
    let data = TokenData::load(&[opts.run.join("data")], None, vocab, 0.05).context("loading the run's token shards")?;
    let mut heldout = data.held_out();
    heldout.truncate(opts.heldout_tokens);
    let all = data.train_tokens();
    ensure!(
        all.len() >= opts.unique_tokens,
        "the run has {} training tokens, fewer than --unique-tokens {}",
        all.len(),
        opts.unique_tokens
    );
    let lab = Lab { opts, tokenizer, vocab, train: all, heldout, stop: Arc::new(AtomicBool::new(false)) };
    let mut runs = Vec::new();
    for &c in &opts.budgets {
        for &shape in &opts.shapes {
            let per_token = preset_for(shape, opts, vocab)?.model.train_flops_per_token(opts.seq_len);
            let tokens = (c / per_token) as usize;
            ensure!(
                tokens >= opts.batch_size * opts.seq_len,
                "a budget of {c:e} FLOPs buys d{}×{} less than one step; raise the budget or drop the shape",
                shape.0,
                shape.1
            );
            let dir = opts.out.join(format!("isoflop/C{c:e}/d{}x{}", shape.0, shape.1));
            let r = lab.run("isoflop", shape, tokens, lab.train.len(), Some(c), &dir)?;
            log(&format!(
                "C = {c:.0e}: d{}×{} (N = {}), {} tokens ({:.1} passes): held-out loss {:.4} ({:.0} s)",
                shape.0,
                shape.1,
                r.params,
                r.tokens,
                r.tokens as f64 / lab.train.len() as f64,
                r.heldout_loss,
                r.seconds
            ));
            runs.push(r);
        }
    }
    for &e in &opts.epochs {
        let total = opts.unique_tokens * e;
        for (kind, unique) in [("repeated", opts.unique_tokens), ("fresh", total)] {
            if kind == "fresh" && (e == 1 || total > lab.train.len()) {
                continue; // one epoch is fresh data; beyond the crawl there is no fresh data
            }
            let dir = opts.out.join(format!("constrained/{kind}-{e}"));
            let mut r = lab.run(kind, opts.constrained_shape, total, unique, None, &dir)?;
            r.epochs = Some(e);
            log(&format!("{kind}: {} unique tokens × {e} epochs: held-out loss {:.4}", r.unique_tokens, r.heldout_loss));
            runs.push(r);
        }
    }
    let budgets = budget_fits(&runs, &opts.budgets);
    let optima: Vec<(f64, f64)> = budgets.iter().filter(|b| b.inside).filter_map(|b| b.n_opt.map(|n| (b.budget.ln(), n.ln()))).collect();
    let n_opt_exponent = (optima.len() >= 2)
        .then(|| line(&optima.iter().map(|p| p.0).collect::<Vec<_>>(), &optima.iter().map(|p| p.1).collect::<Vec<_>>()).0);
    let tokens_per_param_at_opt = budgets.iter().filter(|b| b.inside).filter_map(|b| Some(b.d_opt? / b.n_opt?)).collect();
    // L(N, D) assumes D fresh tokens: runs that repeated their data are left out of the fit.
    let points: Vec<(f64, f64, f64)> =
        runs.iter().filter(|r| r.tokens <= r.unique_tokens).map(|r| (r.params as f64, r.tokens as f64, r.heldout_loss)).collect();
    let chinchilla = (points.len() >= 5).then(|| fit_chinchilla(&points));
    let running_out = [1e9, 1e10, 1e11, 1e12, 1e13].iter().map(|&n| (n, 20.0 * n, 20.0 * n / HUMAN_TEXT_STOCK)).collect();
    let mut report = ScalingReport {
        options: opts.clone(),
        runs,
        budgets,
        n_opt_exponent,
        tokens_per_param_at_opt,
        chinchilla,
        running_out,
        table_md: opts.out.join("scaling.md"),
        plot_png: None,
    };
    std::fs::write(&report.table_md, markdown(&report))?;
    report.plot_png = crate::plot::drawn(opts.out.join("scaling.png"), |png| plot(&report, png), &mut log);
    std::fs::write(opts.out.join("scaling.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

fn markdown(r: &ScalingReport) -> String {
    let o = &r.options;
    let mut md = format!(
        "# Scaling: loss against model size and data at fixed compute\n\nRun `{}`; batches of {} × {} tokens; held-out loss (nats per token) on {} tokens of the crawl's held-out split. N: parameters outside the embedding.\n\n## IsoFLOP sweep\n\n| budget (FLOPs) | model | N | tokens | tokens / N | held-out loss |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
        o.run.display(),
        o.batch_size,
        o.seq_len,
        o.heldout_tokens
    );
    for x in r.runs.iter().filter(|x| x.kind == "isoflop") {
        md += &format!(
            "| {:.0e} | d{}×{} | {} | {} | {:.1} | {:.4} |\n",
            x.budget.unwrap_or(0.0),
            x.d_model,
            x.n_layer,
            x.params,
            x.tokens,
            x.tokens as f64 / x.params as f64,
            x.heldout_loss
        );
    }
    md += "\n| budget | parabola's N_opt | D_opt | D_opt / N_opt | best loss |\n| --- | ---: | ---: | ---: | ---: |\n";
    for b in &r.budgets {
        let outside = if b.inside || b.n_opt.is_none() { "" } else { " (outside the sweep)" };
        let f = |x: Option<f64>| x.map_or("none (no minimum)".into(), |v| format!("{v:.0}{outside}"));
        let ratio = b.n_opt.zip(b.d_opt).map_or("".into(), |(n, d)| format!("{:.1}", d / n));
        md += &format!("| {:.0e} | {} | {} | {ratio} | {:.4} |\n", b.budget, f(b.n_opt), f(b.d_opt), b.best_loss);
    }
    let exponent = r.n_opt_exponent.map_or("(needs two budgets with an optimum inside the sweep)".into(), |a| format!("{a:.2}"));
    let ratios = r.tokens_per_param_at_opt.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(", ");
    let (alpha, beta, fitted) = match &r.chinchilla {
        Some(c) => (
            format!("{:.3}", c.alpha),
            format!("{:.3}", c.beta),
            format!("Fitted on the runs that saw no token twice: L(N, D) = {:.3} + {:.3e}/N^{:.3} + {:.3e}/D^{:.3} (E, A and B depend on the data and tokenizer; not compared).", c.e, c.a, c.alpha, c.b, c.beta),
        ),
        None => ("".into(), "".into(), "Fewer than five runs saw no token twice: L(N, D) is not fitted.".into()),
    };
    md += &format!(
        "\n| measure | ours | Chinchilla (Hoffmann et al. 2022) | Kaplan et al. 2020 |\n| --- | ---: | ---: | ---: |\n| exponent a in N_opt ∝ C^a | {exponent} | 0.50 | 0.73 |\n| tokens per parameter at the optimum | {ratios} | ≈ 20 | |\n| α in A/N^α | {alpha} | 0.34 | |\n| β in B/D^β | {beta} | 0.28 | |\n\n{fitted}\n"
    );
    md += "\n## Repeated data\n\n| epochs | held-out loss, repeated | held-out loss, fresh |\n| ---: | ---: | ---: |\n";
    for &e in &o.epochs {
        let get = |kind: &str| {
            r.runs.iter().find(|x| x.kind == kind && x.epochs == Some(e)).map_or(String::new(), |x| format!("{:.4}", x.heldout_loss))
        };
        md += &format!("| {e} | {} | {} |\n", get("repeated"), if e == 1 { get("repeated") } else { get("fresh") });
    }
    md += "\nMuennighoff et al. (2023): up to about 4 epochs, repeated data is nearly as good as fresh; beyond that its value decays.\n\n## Running out of data\n\n| parameters | Chinchilla-optimal tokens (20 per parameter) | share of the ~300T-token stock of public human text (Epoch AI) |\n| ---: | ---: | ---: |\n";
    for (n, d, share) in &r.running_out {
        md += &format!("| {n:.0e} | {d:.0e} | {:.2}% |\n", 100.0 * share);
    }
    md
}

fn plot(r: &ScalingReport, path: &Path) -> Result<()> {
    let series: Vec<Series> = r
        .options
        .budgets
        .iter()
        .map(|&c| Series {
            name: format!("C = {c:.0e}"),
            points: r
                .runs
                .iter()
                .filter(|x| x.kind == "isoflop" && x.budget == Some(c))
                .map(|x| ((x.params as f64).log10(), x.heldout_loss))
                .collect(),
        })
        .collect();
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    line_chart(
        path,
        "IsoFLOP curves: held-out loss against model size",
        "log10 N (non-embedding parameters)",
        "held-out loss (nats/token)",
        &series,
        (lo - 0.05, hi + 0.05),
    )
}
