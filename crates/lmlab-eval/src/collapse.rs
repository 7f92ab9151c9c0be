//! `lmlab experiment collapse`: models trained on model-written text (Shumailov et al. 2024;
//! Gerstgrasser et al. 2024).
//!
//! Generation 0 trains on `real_tokens` tokens of a run's cleaned crawl. Each later generation
//! trains from scratch, for the same number of steps, on text sampled from the generation before
//! it (documents from the beginning-of-text token, sampled by the [`Writer`]: top-p 0.9 by
//! default, as Shumailov et al.'s beam search never wrote the unlikely tokens either; or pure
//! ancestral sampling at temperature 1), in three regimes:
//! - replace: only the previous generation's text;
//! - replace + 10% real: nine parts of it and one part of the real tokens;
//! - accumulate: the real tokens and every synthetic corpus so far.
//!
//! Every generation writes as many synthetic tokens as there are real ones. Reported per
//! generation and regime (and per seed):
//! - perplexity on real held-out text (the crawl's held-out split);
//! - distinct-2 and distinct-3 of the model's own samples, beside the real text's;
//! - the tail: the rarest tokens of the real training text that together make up at most
//!   `TAIL_SHARE` of it; the probability the model puts on them, averaged over the held-out
//!   positions, and their share of the model's sampled tokens (beginning-of-text tokens left
//!   out);
//! - the share of the world's facts the model states correctly (few-shot, greedy).
//!
//! Each generation's model and corpus are kept in the output folder, so an interrupted run
//! (Ctrl-C, kill -9) redoes only what it had not finished. Written as `collapse.md`,
//! `collapse.json` and `collapse.png`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_infer::{generate, GenerateRequest, LoadOptions, Model, SamplingParams};
use lmlab_model::CausalLm;
use lmlab_train::data::TokenData;
use lmlab_train::Preset;
use lmlab_world::grade::Grade;
use serde::{Deserialize, Serialize};

use crate::arm::{cached_shard, train_on};
use crate::plot::{line_chart, Series};
use crate::qa::{QaOptions, Session};

/// The tail: the rarest tokens making up this share of the real training text.
pub const TAIL_SHARE: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    Replace,
    ReplaceKeep10,
    Accumulate,
}

impl Regime {
    pub const ALL: [Regime; 3] = [Regime::Replace, Regime::ReplaceKeep10, Regime::Accumulate];

    pub fn name(self) -> &'static str {
        match self {
            Regime::Replace => "replace",
            Regime::ReplaceKeep10 => "replace + 10% real",
            Regime::Accumulate => "accumulate",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Regime::Replace => "replace",
            Regime::ReplaceKeep10 => "keep10",
            Regime::Accumulate => "accumulate",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CollapseOptions {
    /// A run folder: `tokenizer.json`, `data/` (token shards), `world/`.
    pub run: PathBuf,
    pub out: PathBuf,
    /// The model and its training (the built-in `tiny` unless a preset file is given);
    /// `max_steps` is the steps of every generation.
    pub preset: Preset,
    pub generations: usize,
    pub seeds: Vec<u64>,
    /// Real training tokens, and the synthetic tokens each generation writes.
    pub real_tokens: usize,
    /// Held-out tokens scored for perplexity and the tail.
    pub heldout_tokens: usize,
    /// Fact questions asked each model.
    pub questions: usize,
    /// How each generation writes the next one's text.
    pub writer: Writer,
}

/// The decoder that writes each generation's synthetic text. Truncating it (top-p < 1, or a
/// temperature below 1) never writes the tokens the model finds unlikely, as Shumailov et al.'s
/// beam-searched generations did not: the tails can only shrink. Pure sampling (temperature 1,
/// top-p 1) writes them at the model's own rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Writer {
    pub temperature: f64,
    pub top_p: f64,
}

impl Writer {
    pub const PURE: Writer = Writer { temperature: 1.0, top_p: 1.0 };
    /// The experiment's writer: nucleus sampling at 0.9, which leaves out the tokens that
    /// together make the least likely tenth of each step's distribution.
    pub const DEFAULT: Writer = Writer { temperature: 1.0, top_p: 0.9 };

    /// A folder-name suffix, empty for pure sampling (so its results stay where they were).
    fn slug(self) -> String {
        if self == Self::PURE {
            String::new()
        } else {
            format!("-t{}-p{}", self.temperature, self.top_p)
        }
    }

    fn describe(self) -> String {
        if self == Self::PURE {
            "pure sampling (temperature 1)".into()
        } else {
            format!("temperature {}, top-p {}", self.temperature, self.top_p)
        }
    }
}

impl CollapseOptions {
    /// The full experiment's settings, or `quick` ones (about a minute on 2 cores).
    pub fn new(run: PathBuf, out: PathBuf, quick: bool) -> Result<Self> {
        let mut preset = Preset::builtin("tiny")?;
        preset.train.max_steps = if quick { 80 } else { 500 };
        if quick {
            preset.model.n_layer = 2;
            preset.model.d_model = 64;
            preset.model.d_ff = 192;
            preset.model.context_length = 64;
            preset.train.batch_size = 8;
        }
        preset.train.eval_every = preset.train.max_steps;
        preset.train.save_every = preset.train.max_steps;
        preset.train.log_every = 50;
        preset.train.val_fraction = 0.0;
        preset.train.eval_batches = 0;
        Ok(Self {
            run,
            out,
            preset,
            generations: if quick { 2 } else { 5 },
            seeds: vec![0],
            real_tokens: if quick { 24_000 } else { 200_000 },
            heldout_tokens: if quick { 4_000 } else { 40_000 },
            questions: if quick { 20 } else { 300 },
            // Written by pure sampling, an under-fitted model's text grows more diverse each
            // generation and its tails do not vanish; truncated as the paper's were, they do
            // (docs/experiments/collapse.md has both).
            writer: Writer::DEFAULT,
        })
    }
}

/// One model's measurements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationResult {
    pub seed: u64,
    pub regime: Regime,
    pub generation: usize,
    /// Tokens it trained on (distinct corpus tokens, before epochs).
    pub train_tokens: usize,
    pub heldout_perplexity: f64,
    /// distinct-2, distinct-3 of its samples.
    pub distinct: [f64; 2],
    /// Mean probability it puts on the real tail at held-out positions.
    pub tail_mass: f64,
    /// The tail's share of its sampled tokens.
    pub tail_share_in_samples: f64,
    pub facts_correct: f64,
    pub train_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollapseReport {
    pub options: CollapseOptions,
    /// distinct-2 and -3 of real documents (as many tokens as one synthetic corpus).
    pub real_distinct: [f64; 2],
    pub tail_tokens: usize,
    pub results: Vec<GenerationResult>,
    pub table_md: PathBuf,
    pub plot_png: Option<PathBuf>,
}

impl CollapseReport {
    /// The result of (seed, regime, generation); generation 0 is shared by the regimes.
    pub fn get(&self, seed: u64, regime: Regime, generation: usize) -> Option<&GenerationResult> {
        let regime = if generation == 0 { Regime::Replace } else { regime };
        self.results.iter().find(|r| r.seed == seed && r.regime == regime && r.generation == generation)
    }
}

/// The real text: training documents, the held-out tokens, and the tail set.
struct RealText {
    train: Vec<u32>,
    heldout: Vec<u32>,
    tail: Vec<bool>,
    vocab: usize,
}

fn read_real(opts: &CollapseOptions, vocab: usize) -> Result<RealText> {
    let data_dir = opts.run.join("data");
    let data = TokenData::load(std::slice::from_ref(&data_dir), None, vocab, 0.05)
        .with_context(|| format!("loading the run's token shards from {}", data_dir.display()))?;
    let mut heldout = data.held_out();
    heldout.truncate(opts.heldout_tokens);
    ensure!(
        data.summary.train_tokens >= opts.real_tokens,
        "{} holds {} training tokens, fewer than the {} real tokens asked for (--real-tokens)",
        data_dir.display(),
        data.summary.train_tokens,
        opts.real_tokens
    );
    // The first real tokens of the training split: never the held-out split's.
    let mut all = data.train_tokens();
    all.truncate(opts.real_tokens);
    let tail = tail_set(&all, vocab, TAIL_SHARE);
    Ok(RealText { train: all, heldout, tail, vocab })
}

/// The rarest tokens of `text` (fewest occurrences first, ties by id) whose occurrences
/// together stay within `share` of the text; tokens that never occur are in the tail too.
pub fn tail_set(text: &[u32], vocab: usize, share: f64) -> Vec<bool> {
    let mut counts = vec![0usize; vocab];
    for &t in text {
        counts[t as usize] += 1;
    }
    let mut order: Vec<usize> = (0..vocab).collect();
    order.sort_by_key(|&t| (counts[t], t));
    let budget = (text.len() as f64 * share) as usize;
    let mut tail = vec![false; vocab];
    let mut used = 0;
    for t in order {
        if used + counts[t] > budget {
            break;
        }
        used += counts[t];
        tail[t] = true;
    }
    tail
}

/// Mean probability on the tail over the positions of `heldout` (windows of the context).
fn tail_mass_and_ppl(model: &dyn CausalLm, heldout: &[u32], tail: &[bool]) -> Result<(f64, f64)> {
    let window = model.context_length();
    let tail_mask = Tensor::new(tail.iter().map(|&b| if b { 1f32 } else { 0.0 }).collect::<Vec<_>>(), model.device())?;
    let (mut mass, mut nats, mut n) = (0.0, 0.0, 0usize);
    for chunk in heldout.chunks(window).filter(|c| c.len() >= 2) {
        let ids = Tensor::new(chunk, model.device())?.unsqueeze(0)?;
        let logits = model.logits_all(&ids)?.squeeze(0)?.to_dtype(DType::F32)?.narrow(0, 0, chunk.len() - 1)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?;
        mass += probs.broadcast_mul(&tail_mask)?.sum_all()?.to_scalar::<f32>()? as f64;
        nats += crate::ppl::target_nats(&logits, &chunk[1..])?;
        n += chunk.len() - 1;
    }
    Ok((mass / n.max(1) as f64, (nats / n.max(1) as f64).exp()))
}

/// `tokens` synthetic tokens from `model`: documents `<bos> … <eos>` written by `writer`.
fn sample_corpus(model: &Model, tokens: usize, writer: Writer, seed: u64) -> Result<Vec<u32>> {
    let special = model.tokenizer().special();
    let bos = special.bos.context("the tokenizer has no beginning-of-text token")?;
    let eos = special.eos.context("the tokenizer has no end-of-text token")?;
    let max_tokens = model.context_length() - 1;
    let mut out = Vec::with_capacity(tokens + max_tokens);
    let mut round = 0u64;
    while out.len() < tokens {
        let sampling = SamplingParams {
            temperature: writer.temperature,
            top_p: (writer.top_p < 1.0).then_some(writer.top_p),
            seed: seed.wrapping_mul(1_000_003).wrapping_add(round * 64),
            ..Default::default()
        };
        let req = GenerateRequest { n: 64, stop_ids: vec![eos], ..GenerateRequest::new(vec![bos], max_tokens, sampling) };
        for s in generate(model, &req, |_, _| {}, |_, _| false)?.samples {
            out.push(bos);
            out.extend(&s.tokens);
            if s.tokens.last() != Some(&eos) {
                out.push(eos);
            }
        }
        round += 1;
    }
    out.truncate(tokens);
    Ok(out)
}

/// Documents of a token stream (what lies between beginning-of-text tokens).
fn documents(stream: &[u32], bos: u32) -> Vec<Vec<u32>> {
    stream.split(|&t| t == bos).filter(|d| !d.is_empty()).map(<[u32]>::to_vec).collect()
}

fn distinct23(stream: &[u32], bos: u32) -> [f64; 2] {
    let docs = documents(stream, bos);
    [crate::sampling::distinct(&docs, 2), crate::sampling::distinct(&docs, 3)]
}

struct Lab<'a> {
    opts: &'a CollapseOptions,
    real: &'a RealText,
    tokenizer: PathBuf,
    bos: u32,
    session_questions: QaOptions,
    stop: Arc<AtomicBool>,
}

impl Lab<'_> {
    /// Trains (or finds) the model of `dir` on `corpus`, then measures it and samples its
    /// corpus for the next generation.
    fn generation(&self, dir: &Path, corpus: &[u32], seed: u64, log: &mut dyn FnMut(&str)) -> Result<(GenerationResult, Vec<u32>)> {
        std::fs::create_dir_all(dir)?;
        let model_dir = dir.join("model");
        let started = Instant::now();
        let mut preset = self.opts.preset.clone();
        preset.train.seed = seed;
        train_on(dir, &preset, corpus, self.real.vocab, &self.tokenizer, &self.stop)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let model = Model::load(&model_dir, &LoadOptions::default(), &Device::Cpu)?;
        let samples = cached_shard(&dir.join("samples.bin"), self.real.vocab, || {
            sample_corpus(&model, self.opts.real_tokens, self.opts.writer, seed)
        })?;
        let (tail_mass, heldout_perplexity) = tail_mass_and_ppl(&model, &self.real.heldout, &self.real.tail)?;
        let sampled = samples.iter().filter(|&&t| t != self.bos);
        let (in_tail, counted) = sampled.fold((0usize, 0usize), |(k, n), &t| (k + usize::from(self.real.tail[t as usize]), n + 1));
        let session = Session::new(&model, &self.session_questions)?;
        let answers: Vec<_> = session.ask(&model, 0.0, 1, seed)?.into_iter().flatten().collect();
        let facts_correct = answers.iter().filter(|a| a.grade == Grade::Correct).count() as f64 / answers.len().max(1) as f64;
        let r = GenerationResult {
            seed,
            regime: Regime::Replace,
            generation: 0,
            train_tokens: corpus.len(),
            heldout_perplexity,
            distinct: distinct23(&samples, self.bos),
            tail_mass,
            tail_share_in_samples: in_tail as f64 / counted.max(1) as f64,
            facts_correct,
            train_seconds,
        };
        log(&format!(
            "{}: held-out perplexity {:.2}, tail mass {:.4}, distinct-3 {:.3}, facts {:.1}%",
            dir.display(),
            r.heldout_perplexity,
            r.tail_mass,
            r.distinct[1],
            100.0 * r.facts_correct
        ));
        Ok((r, samples))
    }
}

/// The training corpus of generation `g` (≥ 1) in `regime`: `synthetic[k]` is generation k's
/// samples.
fn corpus_for(regime: Regime, real: &[u32], synthetic: &[Vec<u32>], g: usize) -> Vec<u32> {
    let last = &synthetic[g - 1];
    match regime {
        Regime::Replace => last.clone(),
        Regime::ReplaceKeep10 => {
            let keep = real.len() / 10;
            let mut c = last[..last.len() - keep].to_vec();
            c.extend_from_slice(&real[..keep]);
            c
        }
        Regime::Accumulate => {
            let mut c = real.to_vec();
            synthetic[..g].iter().for_each(|s| c.extend_from_slice(s));
            c
        }
    }
}

/// Runs the experiment; `log` hears progress.
pub fn run(opts: &CollapseOptions, mut log: impl FnMut(&str)) -> Result<CollapseReport> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let tokenizer = opts.run.join("tokenizer.json");
    let tok = lmlab_tokenizer::Tokenizer::from_file(&tokenizer).with_context(|| format!("the run's tokenizer {}", tokenizer.display()))?;
    let vocab = if opts.preset.model.vocab_size == 0 { tok.vocab_size() } else { opts.preset.model.vocab_size };
    let bos = tok.special().bos.context("the tokenizer has no beginning-of-text token")?;
    let real = read_real(opts, vocab)?;
    let ctx = Lab {
        opts,
        real: &real,
        tokenizer,
        bos,
        session_questions: QaOptions {
            questions: vec![opts.run.join("world/eval/facts.jsonl")],
            limit: Some(opts.questions),
            max_tokens: 16,
            ..QaOptions::default()
        },
        stop: Arc::new(AtomicBool::new(false)),
    };
    let mut results = Vec::new();
    for &seed in &opts.seeds {
        let root = opts.out.join(format!("seed-{seed}{}", opts.writer.slug()));
        let (gen0, samples0) = ctx.generation(&root.join("gen-0"), &real.train, seed, &mut log)?;
        results.push(gen0);
        for regime in Regime::ALL {
            let mut synthetic = vec![samples0.clone()];
            for g in 1..=opts.generations {
                let corpus = corpus_for(regime, &real.train, &synthetic, g);
                let dir = root.join(regime.slug()).join(format!("gen-{g}"));
                let (mut r, samples) = ctx.generation(&dir, &corpus, seed.wrapping_add(1000 * g as u64), &mut log)?;
                r.seed = seed;
                r.regime = regime;
                r.generation = g;
                results.push(r);
                synthetic.push(samples);
            }
        }
    }
    let mut report = CollapseReport {
        options: opts.clone(),
        real_distinct: distinct23(&real.train[..real.train.len().min(opts.real_tokens)], bos),
        tail_tokens: real.tail.iter().filter(|&&b| b).count(),
        results,
        table_md: opts.out.join("collapse.md"),
        plot_png: None,
    };
    std::fs::write(&report.table_md, markdown(&report))?;
    report.plot_png = crate::plot::drawn(opts.out.join("collapse.png"), |png| plot(&report, png), &mut log);
    std::fs::write(opts.out.join("collapse.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

fn markdown(r: &CollapseReport) -> String {
    let o = &r.options;
    let m = &o.preset.model;
    let mut md = format!(
        "# Model collapse: training on model-written text\n\nRun `{}`; {} real training tokens (and as many sampled per generation), {} held-out tokens; model d_model {} × {} layers, context {}, {} steps of {} × {} tokens per generation, from scratch; seeds {:?}; each generation's text written by {}. The tail: the {} rarest tokens, {:.0}% of the real text. Real text's distinct-2 / 3: {:.3} / {:.3}.\n\n",
        o.run.display(),
        o.real_tokens,
        o.heldout_tokens,
        m.d_model,
        m.n_layer,
        m.context_length,
        o.preset.train.max_steps,
        o.preset.train.batch_size,
        m.context_length,
        o.seeds,
        o.writer.describe(),
        r.tail_tokens,
        100.0 * TAIL_SHARE,
        r.real_distinct[0],
        r.real_distinct[1]
    );
    md += "| regime | generation | seed | held-out perplexity | tail mass | tail share in samples | distinct-2 / 3 | facts correct |\n| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n";
    let mut rows: BTreeMap<(usize, usize, u64), &GenerationResult> = BTreeMap::new();
    for x in &r.results {
        let ri = Regime::ALL.iter().position(|&g| g == x.regime).unwrap_or(0);
        rows.insert((if x.generation == 0 { 0 } else { ri + 1 }, x.generation, x.seed), x);
    }
    for x in rows.values() {
        let name = if x.generation == 0 { "real data (all regimes)" } else { x.regime.name() };
        md += &format!(
            "| {name} | {} | {} | {:.3} | {:.4} | {:.4} | {:.3} / {:.3} | {:.1}% |\n",
            x.generation,
            x.seed,
            x.heldout_perplexity,
            x.tail_mass,
            x.tail_share_in_samples,
            x.distinct[0],
            x.distinct[1],
            100.0 * x.facts_correct
        );
    }
    md += "\nThe papers: Shumailov et al. (2024) find that replacing the data with each generation's output degrades models steadily, the tails of the distribution vanishing first; Gerstgrasser et al. (2024) find that accumulating real and synthetic data bounds the damage (test loss stays near generation 0's), while replacing grows it with every generation.\n";
    md
}

fn plot(r: &CollapseReport, path: &Path) -> Result<()> {
    let series: Vec<Series> = Regime::ALL
        .iter()
        .flat_map(|&regime| {
            r.options.seeds.iter().map(move |&seed| Series {
                name: format!("{} (seed {seed})", regime.name()),
                points: (0..=r.options.generations)
                    .filter_map(|g| r.get(seed, regime, g).map(|x| (g as f64, x.heldout_perplexity)))
                    .collect(),
            })
        })
        .collect();
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    line_chart(path, "Perplexity on real held-out text, by generation", "generation", "perplexity", &series, (lo * 0.95, hi * 1.05))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_the_rarest_tokens_within_its_share() {
        // Counts: token 0 ×50, 1 ×30, 2 ×15, 3 ×4, 4 ×1, 5 ×0 (100 tokens). A 5% tail holds 5, 4
        // and 3 (0 + 1 + 4 = 5 occurrences); adding 2 would pass it.
        let mut text = vec![0u32; 50];
        text.extend([1; 30]);
        text.extend([2; 15]);
        text.extend([3; 4]);
        text.push(4);
        assert_eq!(tail_set(&text, 6, 0.05), vec![false, false, false, true, true, true]);
        assert_eq!(tail_set(&text, 6, 0.0), vec![false, false, false, false, false, true]);
    }

    #[test]
    fn regimes_build_their_corpora() {
        let real: Vec<u32> = (0..100).collect();
        let synthetic = vec![vec![1000; 100], vec![2000; 100]];
        assert_eq!(corpus_for(Regime::Replace, &real, &synthetic, 2), vec![2000; 100]);
        let keep = corpus_for(Regime::ReplaceKeep10, &real, &synthetic, 1);
        assert_eq!(keep.len(), 100);
        assert_eq!(&keep[90..], &real[..10]);
        assert!(keep[..90].iter().all(|&t| t == 1000));
        let acc = corpus_for(Regime::Accumulate, &real, &synthetic, 2);
        assert_eq!(acc.len(), 300);
        assert_eq!(&acc[..100], real.as_slice());
        assert_eq!(&acc[200..], synthetic[1].as_slice());
    }
}
