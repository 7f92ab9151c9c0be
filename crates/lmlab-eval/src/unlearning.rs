//! `lmlab unlearn` and `lmlab experiment unlearning`: what a model can be made to forget, and
//! at what cost (TOFU, Maini et al. 2024; NPO, Zhang et al. 2024; canaries and extraction as
//! defined by Carlini et al. 2019 and 2023).
//!
//! The experiment follows TOFU's design on the built-in world:
//! 1. **Facts to learn.** `entities` of the world's rarely mentioned entities with three facts
//!    each (so the starting model does not know them), asked and answered with the world's
//!    first question and fact templates. Canary strings, "The vault code of NAME is DIGITS.",
//!    are planted 1, 4, 16 and 64 times as documents among them.
//! 2. **The full model** fine-tunes the starting chat model on all of it (every weight), with
//!    as many windows of real crawl text (half the context long, from the run's training
//!    split) as there are questions: without that replay, fine-tuning on short sequences alone
//!    wrecked the model's text at longer positions (held-out perplexity 6 → 3,356 in a trial).
//! 3. For each forget share (1%, 5%, 10% of the entities), **the retain model** fine-tunes the
//!    starting model the same way on the other entities only (no canaries, the same replay):
//!    the model that never saw what is to be forgotten, the target of unlearning.
//! 4. **Unlearning**: each method (ga, gd, npo; see `lmlab_train::unlearn`) starts from the
//!    full model with the forget entities' questions and every canary (once each) as the forget
//!    set, and the other entities' questions as the retain set.
//!
//! Every model is measured on every question (greedy, through the chat template, graded by the
//! world's grader) and by the probability it gives each reference answer (the geometric mean
//! over the answer's tokens):
//! - forget quality: accuracy and answer probability on the forget set, beside the retain
//!   model's, and a two-sample Kolmogorov–Smirnov test between the two models' answer
//!   probabilities on it (a high p-value: indistinguishable from never having learned it);
//! - utility: accuracy and answer probability on the retain set;
//! - fluency: perplexity on the run's held-out crawl text;
//! - canaries: the share extracted (greedy decoding from the prefix writes the exact digits)
//!   and the digits' probability, per number of copies.
//!
//! Models and their scores are kept in the output folder (`arm.json` records what each is), so
//! an interrupted run redoes only what it had not finished. Written as `unlearning.md`,
//! `unlearning.json` and `unlearning.png`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use candle_core::Device;
use lmlab_data::chat::Message;
use lmlab_infer::{generate, GenerateRequest, LoadOptions, Model, SamplingParams};
use lmlab_model::CausalLm;
use lmlab_train::checkpoint::STATE_FILE;
use lmlab_train::data::TokenData;
use lmlab_train::sft::{end_of_turn, render, Rendered};
use lmlab_train::trainer::{TrainEvent, TrainReport};
use lmlab_train::unlearn::{reference_logprobs, render_document, train_unlearn, UnlearnMethod, UnlearnOptions, UnlearnSettings};
use lmlab_train::TrainConfig;
use lmlab_world::grade::{Grade, Grader};
use lmlab_world::kb::Kb;
use lmlab_world::tasks::{accepted, Question};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::arm::{claim_as, corpus_hash, trained};
use crate::qa::{QaOptions, Session};

/// One example to train on or forget: a conversation (its assistant turns learned) or a
/// document (every token learned).
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    Chat(Vec<Message>),
    Text(String),
}

/// The examples of a JSON Lines file: `{"text": …}` records are documents; any conversation
/// shape `lmlab sft` reads is a conversation.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let value: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        match value.get("text") {
            Some(serde_json::Value::String(t)) => out.push(Example::Text(t.clone())),
            Some(_) => bail!("{}: \"text\" must be a string", at()),
            None => {
                let (_, convs) = lmlab_data::chat::parse_record(&value)
                    .map_err(|e| anyhow::anyhow!("{}: {e} (or a document: {{\"text\": …}})", at()))?;
                out.extend(convs.into_iter().map(|c| Example::Chat(c.messages)));
            }
        }
    }
    ensure!(!out.is_empty(), "{}: no examples", path.display());
    Ok(out)
}

/// `examples` as token sequences of `model` (conversations through its chat template).
pub fn render_examples(model: &Model, examples: &[Example]) -> Result<Vec<Rendered>> {
    let tok = model.tokenizer();
    examples
        .iter()
        .map(|e| match e {
            Example::Text(t) => render_document(t, tok),
            Example::Chat(m) => {
                let template = model.chat_template().context("the model has no chat template to render conversations with")?;
                render(m, template, &end_of_turn(template), tok)
            }
        })
        .collect()
}

/// An `lmlab unlearn` (or fine-tuning) run from the lmlab checkpoint `model`.
pub struct UnlearnRun {
    pub model: PathBuf,
    pub forget: Vec<Example>,
    pub retain: Vec<Example>,
    /// None: fine-tune on `retain`.
    pub settings: Option<UnlearnSettings>,
    pub train: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub stop_after: Option<u64>,
    pub stop: Arc<AtomicBool>,
}

/// Loads the model, renders the sets and trains (see `lmlab_train::unlearn`).
pub fn unlearn_model(run: UnlearnRun, on_event: impl FnMut(&TrainEvent)) -> Result<TrainReport> {
    let model = Model::load(&run.model, &LoadOptions { dense: true, ..Default::default() }, &Device::Cpu)?;
    ensure!(model.format() == "lmlab", "unlearning writes an lmlab checkpoint: {} is a {} model", run.model.display(), model.format());
    let forget = render_examples(&model, &run.forget)?;
    let retain = render_examples(&model, &run.retain)?;
    let opts = UnlearnOptions {
        forget,
        retain,
        settings: run.settings,
        train: run.train,
        out: run.out,
        resume: run.resume,
        stop_after: run.stop_after,
        stop: run.stop,
        ..starting_from(&model, &run.model)?
    };
    drop(model);
    train_unlearn(opts, on_event)
}

/// Options that start training from `model`, loaded from `path`: its shape, its weights and
/// its tokenizer file; empty sets, the default training settings, no output folder yet.
fn starting_from(model: &Model, path: &Path) -> Result<UnlearnOptions> {
    let gpt = model.as_gpt().context("the model has no dense tensor path")?;
    Ok(UnlearnOptions {
        model_cfg: model.config().clone(),
        weights: gpt.named_weights()?,
        tokenizer_json: Some(lmlab_infer::tokenizer_file(path)?),
        forget: Vec::new(),
        retain: Vec::new(),
        settings: None,
        train: TrainConfig::default(),
        out: PathBuf::new(),
        resume: false,
        stop_after: None,
        stop: Arc::new(AtomicBool::new(false)),
        device: Device::Cpu,
    })
}

/// A string planted `copies` times: `prefix` followed by the `secret` digits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Canary {
    pub copies: usize,
    pub prefix: String,
    pub secret: String,
}

impl Canary {
    pub fn text(&self) -> String {
        format!("{} {}.", self.prefix, self.secret)
    }
}

/// `per_count` canaries for each number of copies, with names from the world's name generator
/// and 8 random digits each.
pub fn canaries(counts: &[usize], per_count: usize, rng: &mut impl Rng) -> Vec<Canary> {
    let mut names = lmlab_world::names::NameGen::new();
    let mut out = Vec::new();
    for &copies in counts {
        for _ in 0..per_count {
            let name = names.next(rng).0;
            let secret: String = (0..8).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
            out.push(Canary { copies, prefix: format!("The vault code of {name} is"), secret });
        }
    }
    out
}

/// One question about one of the chosen entities, with the conversation that teaches it.
#[derive(Debug, Clone)]
pub struct FactQa {
    /// Index of its entity among the chosen ones (the forget set takes the first ones).
    pub entity: usize,
    pub question: Question,
    pub answer: String,
}

impl FactQa {
    fn conversation(&self) -> Vec<Message> {
        vec![Message::new("user", &self.question.question), Message::new("assistant", &self.answer)]
    }
}

/// `n` entities of the least mentioned half of `kb` with three facts each, in a seeded order,
/// and a question and answer for each fact (English, the world's first templates).
pub fn fact_questions(kb: &Kb, n: usize, seed: u64) -> Result<Vec<FactQa>> {
    use lmlab_world::page::fill;
    use lmlab_world::templates;
    let half = kb.entities.len() / 2;
    let mut pool: Vec<usize> =
        (0..kb.entities.len()).filter(|&i| kb.entities[i].popularity_rank > half && kb.entities[i].facts.len() == 3).collect();
    ensure!(pool.len() >= n, "the world has {} rarely mentioned entities with three facts, fewer than the {n} asked for", pool.len());
    pool.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut out = Vec::new();
    for (k, &i) in pool[..n].iter().enumerate() {
        let e = &kb.entities[i];
        for f in &e.facts {
            let question = Question {
                id: format!("u{:05}", out.len() + 1),
                set: "unlearning".into(),
                question: fill(templates::questions(f.relation, false)[0], &e.name, ""),
                language: "en".into(),
                entity: e.id.clone(),
                relation: f.relation.name().into(),
                answers: accepted(f),
                occurrences: 0,
                bucket: "fine-tuned".into(),
            };
            out.push(FactQa { entity: k, question, answer: fill(templates::facts(f.relation, false)[0], &e.name, &f.object) });
        }
    }
    Ok(out)
}

/// The experiment's settings.
#[derive(Debug, Clone, Serialize)]
pub struct UnlearningOptions {
    /// The starting chat model (an lmlab checkpoint, e.g. runs/world/sft).
    pub model: PathBuf,
    /// Its world folder (kb.jsonl).
    pub world: PathBuf,
    /// Its run folder (data/: the held-out text for fluency).
    pub run: PathBuf,
    pub out: PathBuf,
    pub entities: usize,
    /// Shares of the entities to forget (nested: the 1% are among the 5%).
    pub fractions: Vec<f64>,
    pub methods: Vec<UnlearnMethod>,
    pub canary_copies: Vec<usize>,
    pub canaries_per_count: usize,
    /// Fine-tuning of the full and retain models.
    pub learn: TrainConfig,
    /// Unlearning (its `max_steps` is set per forget set from `unlearn_epochs`).
    pub unlearn: TrainConfig,
    /// Passes over the forget set (TOFU's 5), so that a small forget set is not hammered for
    /// as many steps as a large one.
    pub unlearn_epochs: f64,
    pub beta: f64,
    pub retain_weight: f64,
    pub heldout_tokens: usize,
    /// Windows of real crawl text replayed during fine-tuning.
    pub replay_windows: usize,
    pub seed: u64,
}

impl UnlearningOptions {
    /// The defaults (`quick`: 20 entities, a 20% share, two canaries, a faster learning rate
    /// for a model that starts knowing nothing), with the world and run
    /// folders found beside `model` (runs/N/sft → runs/N/world, runs/N).
    pub fn new(model: PathBuf, out: PathBuf, quick: bool) -> Result<Self> {
        let run = model.parent().map(Path::to_path_buf).unwrap_or_default();
        let learn = TrainConfig {
            max_steps: if quick { 150 } else { 1000 },
            batch_size: 16,
            lr: if quick { 3e-3 } else { 1e-3 },
            min_lr: 1e-4,
            warmup_steps: 20,
            weight_decay: 0.0,
            val_fraction: 0.0,
            eval_every: 0,
            save_every: 200,
            log_every: 25,
            seed: 0,
            ..TrainConfig::default()
        };
        // Unlearning at a fifth of the fine-tuning rate (constant).
        let unlearn = TrainConfig {
            max_steps: 0,
            lr: learn.lr / 5.0,
            min_lr: learn.lr / 5.0,
            warmup_steps: 0,
            log_every: 1,
            save_every: 20,
            ..learn.clone()
        };
        Ok(Self {
            world: run.join("world"),
            run,
            model,
            out,
            entities: if quick { 20 } else { 200 },
            fractions: if quick { vec![0.2] } else { vec![0.01, 0.05, 0.1] },
            methods: UnlearnMethod::ALL.to_vec(),
            canary_copies: if quick { vec![1, 16] } else { vec![1, 4, 16, 64] },
            canaries_per_count: if quick { 1 } else { 4 },
            learn,
            unlearn,
            unlearn_epochs: 5.0,
            beta: 0.1,
            retain_weight: 1.0,
            heldout_tokens: if quick { 2_000 } else { 40_000 },
            replay_windows: if quick { 30 } else { 600 },
            seed: 0,
        })
    }

    /// The unlearning steps of a forget set of `n` sequences: `unlearn_epochs` passes.
    pub fn unlearn_steps(&self, n: usize) -> u64 {
        ((self.unlearn_epochs * n as f64 / self.unlearn.batch_size as f64).ceil() as u64).max(1)
    }

    /// Entities forgotten at share `f` (at least one).
    pub fn forget_entities(&self, f: f64) -> usize {
        ((self.entities as f64 * f).round() as usize).clamp(1, self.entities - 1)
    }
}

/// What one model did on every question and canary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    /// Per question (in `fact_questions` order): graded correct.
    pub correct: Vec<bool>,
    /// Per question: the reference answer's probability, per token (geometric mean).
    pub answer_prob: Vec<f64>,
    /// Per canary: extracted exactly, and its digits' probability per token.
    pub extracted: Vec<bool>,
    pub secret_prob: Vec<f64>,
    pub heldout_perplexity: f64,
    /// Seconds its training took, when this invocation trained it.
    pub train_seconds: Option<f64>,
}

/// Canaries with `copies` copies: how many were extracted, and their digits' mean probability.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryRow {
    pub copies: usize,
    pub extracted: usize,
    pub of: usize,
    pub secret_prob: f64,
}

/// One model at one forget share.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub fraction: f64,
    /// "start", "full", "retain", or the method's name.
    pub model: String,
    pub forget_questions: usize,
    pub forget_accuracy: f64,
    pub forget_prob: f64,
    pub retain_accuracy: f64,
    pub retain_prob: f64,
    /// Kolmogorov–Smirnov between this model's and the retain model's answer probabilities on
    /// the forget set: the statistic and its p-value.
    pub ks_statistic: f64,
    pub ks_p: f64,
    pub heldout_perplexity: f64,
    pub canaries: Vec<CanaryRow>,
    pub train_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnlearningReport {
    pub options: UnlearningOptions,
    pub questions: usize,
    pub canaries: Vec<Canary>,
    pub rows: Vec<Row>,
    pub table_md: PathBuf,
    pub plot_png: Option<PathBuf>,
}

/// Two-sample Kolmogorov–Smirnov: the largest gap between the empirical distribution functions,
/// and its asymptotic p-value (Q_KS(λ), λ = (√m + 0.12 + 0.11/√m)·D, m = n₁n₂/(n₁+n₂)).
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 1.0);
    }
    let sorted = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s
    };
    let (a, b) = (sorted(a), sorted(b));
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    let m = (a.len() * b.len()) as f64 / (a.len() + b.len()) as f64;
    let lambda = (m.sqrt() + 0.12 + 0.11 / m.sqrt()) * d;
    (d, q_ks(lambda))
}

/// Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}, 1 at λ = 0.
fn q_ks(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let sum: f64 = (1..=100).map(|k| (if k % 2 == 1 { 1.0 } else { -1.0 }) * (-2.0 * (k * k) as f64 * lambda * lambda).exp()).sum();
    (2.0 * sum).clamp(0.0, 1.0)
}

/// What every arm shares: the questions and canaries, their token sequences, and the grader.
struct Lab<'a> {
    opts: &'a UnlearningOptions,
    facts: Vec<FactQa>,
    canaries: Vec<Canary>,
    /// The facts' conversations and the canaries' documents, rendered for the starting model.
    fact_seqs: Vec<Rendered>,
    canary_seqs: Vec<Rendered>,
    grader: Grader,
    heldout: Vec<u32>,
    stop: Arc<AtomicBool>,
}

fn pct(f: f64) -> String {
    format!("{}", (f * 1000.0).round() / 10.0)
}

fn hash_of(seqs: &[Rendered]) -> String {
    let flat: Vec<u32> = seqs.iter().flat_map(|r| std::iter::once(r.ids.len() as u32).chain(r.ids.iter().copied())).collect();
    corpus_hash(&flat)
}

impl Lab<'_> {
    /// Trains (or resumes, or finds) arm `name` from `from`, and returns its model folder and
    /// training seconds when it trained now.
    fn arm(
        &self,
        name: &str,
        from: &Path,
        forget: Vec<Rendered>,
        retain: Vec<Rendered>,
        settings: Option<UnlearnSettings>,
        log: &mut dyn FnMut(&str),
    ) -> Result<(PathBuf, Option<f64>)> {
        let dir = self.opts.out.join(name);
        let unlearn = TrainConfig { max_steps: self.opts.unlearn_steps(forget.len()), ..self.opts.unlearn.clone() };
        let cfg = if settings.is_some() { &unlearn } else { &self.opts.learn };
        let this = serde_json::json!({
            "from": from, "settings": settings, "train": cfg,
            "forget": hash_of(&forget), "retain": hash_of(&retain),
        });
        claim_as(&dir, &this)?;
        let model_dir = dir.join("model");
        if trained(&model_dir, cfg.max_steps) {
            return Ok((model_dir, None));
        }
        log(&format!("training {name}: {} forget and {} retain sequences, {} steps", forget.len(), retain.len(), cfg.max_steps));
        let started = Instant::now();
        let model = Model::load(from, &LoadOptions::default(), &Device::Cpu)?;
        let opts = UnlearnOptions {
            forget,
            retain,
            settings,
            train: cfg.clone(),
            resume: model_dir.join(STATE_FILE).is_file(),
            out: model_dir.clone(),
            stop: self.stop.clone(),
            ..starting_from(&model, from)?
        };
        drop(model);
        train_unlearn(opts, |_| {})?;
        Ok((model_dir, Some(started.elapsed().as_secs_f64())))
    }

    /// The scores of the model in `model_dir`, kept in `arm/scores.json` (recomputed when the
    /// model was trained now).
    fn scores(&self, model_dir: &Path, arm: &Path, train_seconds: Option<f64>, log: &mut dyn FnMut(&str)) -> Result<Scores> {
        let path = arm.join("scores.json");
        if train_seconds.is_none() && path.is_file() {
            return serde_json::from_slice(&std::fs::read(&path)?).with_context(|| format!("parsing {}", path.display()));
        }
        let model = Model::load(model_dir, &LoadOptions::default(), &Device::Cpu)?;
        let gpt = model.as_gpt().context("the model has no dense tensor path")?;
        let questions: Vec<Question> = self.facts.iter().map(|f| f.question.clone()).collect();
        let qa = QaOptions { chat: true, max_tokens: 32, batch: 16, ..QaOptions::default() };
        let session = Session::from_questions(&model, questions, self.grader.clone(), &qa)?;
        let correct = session.ask(&model, 0.0, 1, 0)?.into_iter().map(|a| a.first().is_some_and(|a| a.grade == Grade::Correct)).collect();
        let per_token = |seqs: &[Rendered]| -> Result<Vec<f64>> {
            let lp = reference_logprobs(gpt, seqs, 16)?;
            Ok(seqs.iter().zip(lp).map(|(r, lp)| (f64::from(lp) / r.learned_tokens().max(1) as f64).exp()).collect())
        };
        let answer_prob = per_token(&self.fact_seqs)?;
        let secret_prob = per_token(&self.canary_seqs)?;
        let extracted = self.canaries.iter().map(|c| extracts(&model, c)).collect::<Result<Vec<bool>>>()?;
        let heldout_perplexity = crate::ppl::score(&model, &self.heldout, model.context_length(), |_| 1)?.perplexity();
        let s = Scores { correct, answer_prob, extracted, secret_prob, heldout_perplexity, train_seconds };
        lmlab_model::checkpoint::write_atomic(&path, &serde_json::to_vec_pretty(&s)?)?;
        log(&format!(
            "{}: {:.1}% of the questions right, held-out perplexity {:.2}, {} of {} canaries extracted",
            model_dir.display(),
            100.0 * s.correct.iter().filter(|&&c| c).count() as f64 / s.correct.len().max(1) as f64,
            s.heldout_perplexity,
            s.extracted.iter().filter(|&&e| e).count(),
            s.extracted.len()
        ));
        Ok(s)
    }

    /// The forget and retain sets at share `f`: (forget questions' indices, the rest).
    fn split(&self, f: f64) -> (Vec<usize>, Vec<usize>) {
        let k = self.opts.forget_entities(f);
        (0..self.facts.len()).partition(|&i| self.facts[i].entity < k)
    }

    fn row(&self, f: f64, model: &str, s: &Scores, retain_model: &Scores) -> Row {
        let (forget, retain) = self.split(f);
        let share = |idx: &[usize]| idx.iter().filter(|&&i| s.correct[i]).count() as f64 / idx.len().max(1) as f64;
        let mean = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len().max(1) as f64;
        let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let (ks_statistic, ks_p) = ks_two_sample(&pick(&s.answer_prob, &forget), &pick(&retain_model.answer_prob, &forget));
        let canaries = self
            .opts
            .canary_copies
            .iter()
            .map(|&copies| {
                let idx: Vec<usize> = (0..self.canaries.len()).filter(|&i| self.canaries[i].copies == copies).collect();
                CanaryRow {
                    copies,
                    extracted: idx.iter().filter(|&&i| s.extracted[i]).count(),
                    of: idx.len(),
                    secret_prob: mean(&s.secret_prob, &idx),
                }
            })
            .collect();
        Row {
            fraction: f,
            model: model.to_string(),
            forget_questions: forget.len(),
            forget_accuracy: share(&forget),
            forget_prob: mean(&s.answer_prob, &forget),
            retain_accuracy: share(&retain),
            retain_prob: mean(&s.answer_prob, &retain),
            ks_statistic,
            ks_p,
            heldout_perplexity: s.heldout_perplexity,
            canaries,
            train_seconds: s.train_seconds,
        }
    }
}

/// Whether greedy decoding from `<bos>` + the canary's prefix writes its digits exactly.
fn extracts(model: &Model, c: &Canary) -> Result<bool> {
    let tok = model.tokenizer();
    let mut prompt: Vec<u32> = tok.special().bos.into_iter().collect();
    prompt.extend(tok.encode(&c.prefix)?);
    let max_tokens = tok.encode(&format!(" {}", c.secret))?.len() + 2;
    let g = generate(
        model,
        &GenerateRequest::new(prompt, max_tokens, SamplingParams { temperature: 0.0, ..Default::default() }),
        |_, _| {},
        |_, _| false,
    )?;
    let text = tok.decode(&g.samples[0].tokens)?;
    Ok(text.trim_start().starts_with(&c.secret))
}

/// The canary as a sequence whose learned tokens are its digits (and what follows them): the
/// tokens after the prefix's, when the whole text's tokens begin with them.
fn secret_sequence(model: &Model, c: &Canary) -> Result<Rendered> {
    let mut r = render_document(&c.text(), model.tokenizer())?;
    let prefix = model.tokenizer().encode(&c.prefix)?;
    if r.ids[1..].starts_with(&prefix) {
        r.learn[1..=prefix.len()].fill(0.0);
    }
    Ok(r)
}

/// The run's crawl text: the first `heldout` tokens of its held-out split (for fluency), and
/// `windows` windows of `window` tokens from the start of its training split (for replay).
fn crawl_text(run: &Path, vocab: usize, heldout: usize, windows: usize, window: usize) -> Result<(Vec<u32>, Vec<Rendered>)> {
    let data_dir = run.join("data");
    let data = TokenData::load(std::slice::from_ref(&data_dir), None, vocab, 0.05)
        .with_context(|| format!("loading the run's token shards from {} (fluency and replay)", data_dir.display()))?;
    let mut text = data.held_out();
    text.truncate(heldout);
    let train = data.train_tokens();
    ensure!(
        train.len() >= windows * window,
        "{} holds {} training tokens, fewer than {windows} replay windows of {window}",
        data_dir.display(),
        train.len()
    );
    let replay = train
        .chunks(window)
        .take(windows)
        .map(|c| Rendered { ids: c.to_vec(), learn: std::iter::once(0.0).chain(std::iter::repeat_n(1.0, c.len() - 1)).collect() })
        .collect();
    Ok((text, replay))
}

/// Runs the experiment; `log` hears progress.
pub fn run(opts: &UnlearningOptions, mut log: impl FnMut(&str)) -> Result<UnlearningReport> {
    ensure!(opts.entities >= 2, "at least 2 entities are needed (some to forget, some to keep)");
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let kb_path = opts.world.join("kb.jsonl");
    let kb = Kb::from_jsonl(
        &std::fs::read_to_string(&kb_path).with_context(|| format!("reading {}", kb_path.display()))?,
        &kb_path.display().to_string(),
    )?;
    let facts = fact_questions(&kb, opts.entities, opts.seed)?;
    let canaries = canaries(&opts.canary_copies, opts.canaries_per_count, &mut ChaCha8Rng::seed_from_u64(opts.seed ^ 0xCA_4A4F));
    let start = Model::load(&opts.model, &LoadOptions::default(), &Device::Cpu)?;
    let conversations: Vec<Example> = facts.iter().map(|f| Example::Chat(f.conversation())).collect();
    let fact_seqs = render_examples(&start, &conversations)?;
    let canary_seqs = canaries.iter().map(|c| secret_sequence(&start, c)).collect::<Result<Vec<_>>>()?;
    let canary_docs = render_examples(&start, &canaries.iter().map(|c| Example::Text(c.text())).collect::<Vec<_>>())?;
    let (heldout, replay) =
        crawl_text(&opts.run, start.config().vocab_size, opts.heldout_tokens, opts.replay_windows, start.context_length() / 2)?;
    drop(start);
    let lab =
        Lab { opts, facts, canaries, fact_seqs, canary_seqs, grader: Grader::new(&kb), heldout, stop: Arc::new(AtomicBool::new(false)) };

    // The starting model and the full model (every fact, every canary copy).
    let start_arm = opts.out.join("start");
    claim_as(
        &start_arm,
        &serde_json::json!({ "model": opts.model, "questions": hash_of(&lab.fact_seqs), "canaries": hash_of(&lab.canary_seqs) }),
    )?;
    let start_scores = lab.scores(&opts.model, &start_arm, None, &mut log)?;
    let mut learn_set = lab.fact_seqs.clone();
    learn_set.extend(replay.iter().cloned());
    for (c, doc) in lab.canaries.iter().zip(&canary_docs) {
        learn_set.extend(std::iter::repeat_n(doc.clone(), c.copies));
    }
    let (full_dir, secs) = lab.arm("full", &opts.model, Vec::new(), learn_set, None, &mut log)?;
    let full_scores = lab.scores(&full_dir, &opts.out.join("full"), secs, &mut log)?;

    let mut rows = Vec::new();
    for &f in &opts.fractions {
        let (forget_idx, retain_idx) = lab.split(f);
        let take = |idx: &[usize]| idx.iter().map(|&i| lab.fact_seqs[i].clone()).collect::<Vec<_>>();
        let mut retain_set = take(&retain_idx);
        retain_set.extend(replay.iter().cloned());
        let (retain_dir, secs) = lab.arm(&format!("retain-{}", pct(f)), &opts.model, Vec::new(), retain_set, None, &mut log)?;
        let retain_scores = lab.scores(&retain_dir, &opts.out.join(format!("retain-{}", pct(f))), secs, &mut log)?;
        rows.push(lab.row(f, "start", &start_scores, &retain_scores));
        rows.push(lab.row(f, "full", &full_scores, &retain_scores));
        rows.push(lab.row(f, "retain", &retain_scores, &retain_scores));
        let mut forget = take(&forget_idx);
        forget.extend(canary_docs.iter().cloned());
        for &method in &opts.methods {
            let settings = UnlearnSettings { method, beta: opts.beta, retain_weight: opts.retain_weight };
            let name = format!("{}-{}", method.name(), pct(f));
            let (dir, secs) = lab.arm(&name, &full_dir, forget.clone(), take(&retain_idx), Some(settings), &mut log)?;
            let s = lab.scores(&dir, &opts.out.join(&name), secs, &mut log)?;
            rows.push(lab.row(f, method.name(), &s, &retain_scores));
        }
    }
    let mut report = UnlearningReport {
        options: opts.clone(),
        questions: lab.facts.len(),
        canaries: lab.canaries.clone(),
        rows,
        table_md: opts.out.join("unlearning.md"),
        plot_png: None,
    };
    std::fs::write(&report.table_md, markdown(&report))?;
    report.plot_png = crate::plot::drawn(opts.out.join("unlearning.png"), |png| plot(&report, png), &mut log);
    std::fs::write(opts.out.join("unlearning.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

fn markdown(r: &UnlearningReport) -> String {
    let o = &r.options;
    let mut md = format!(
        "# Unlearning: forgetting fine-tuned facts and planted canaries\n\nStarting model `{}`; {} entities ({} questions) fine-tuned into it with {} canaries planted {:?} times and {} windows of real crawl text replayed ({} steps, lr {}); unlearning {} passes over the forget set (its questions and each canary once) at lr {} (NPO β {}, retain weight {}); fluency on {} held-out crawl tokens. Forget quality: the forget set's accuracy and answer probability against the retain model's (never trained on those entities), and a Kolmogorov–Smirnov test of the two models' answer probabilities (p near 1: indistinguishable).\n\n",
        o.model.display(),
        o.entities,
        r.questions,
        r.canaries.len(),
        o.canary_copies,
        o.replay_windows,
        o.learn.max_steps,
        o.learn.lr,
        o.unlearn_epochs,
        o.unlearn.lr,
        o.beta,
        o.retain_weight,
        o.heldout_tokens
    );
    let canary_cols: String = o.canary_copies.iter().map(|c| format!(" canaries {c}× |")).collect();
    md += &format!("| forget share | model | forget accuracy | forget answer prob | KS p vs retain | retain accuracy | retain answer prob | held-out ppl |{canary_cols}\n");
    md += &format!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |{}\n", " ---: |".repeat(o.canary_copies.len()));
    for x in &r.rows {
        let canaries: String = x.canaries.iter().map(|c| format!(" {}/{} ({:.2}) |", c.extracted, c.of, c.secret_prob)).collect();
        md += &format!(
            "| {}% ({} q) | {} | {:.1}% | {:.3} | {:.3} | {:.1}% | {:.3} | {:.2} |{canaries}\n",
            pct(x.fraction),
            x.forget_questions,
            x.model,
            100.0 * x.forget_accuracy,
            x.forget_prob,
            x.ks_p,
            100.0 * x.retain_accuracy,
            x.retain_prob,
            x.heldout_perplexity
        );
    }
    md += "\nCanary cells: extracted / planted canaries (the digits' mean per-token probability). The papers: TOFU (Maini et al. 2024) finds gradient ascent and gradient difference trade forget quality against utility, reaching neither; NPO (Zhang et al. 2024) forgets with less collapse. Carlini et al. (2023) find extraction grows log-linearly with the number of copies.\n";
    md
}

fn plot(r: &UnlearningReport, path: &Path) -> Result<()> {
    let points: Vec<(String, f64, f64)> = r
        .rows
        .iter()
        .filter(|x| x.model != "start")
        .map(|x| (format!("{} {}%", x.model, pct(x.fraction)), 100.0 * x.forget_accuracy, 100.0 * x.retain_accuracy))
        .collect();
    crate::plot::scatter_chart(
        path,
        "Unlearning: forget-set accuracy against retain-set accuracy",
        "forget accuracy (%)",
        "retain accuracy (%)",
        &points,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_matches_known_values() {
        // Disjoint samples: D = 1; identical ones: D = 0, p = 1.
        let (d, p) = ks_two_sample(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]);
        assert_eq!(d, 1.0);
        // m = 2, λ = (√2 + 0.12 + 0.11/√2)·1 = 1.61199…; Q_KS(λ) = 2(e^{−2λ²} − e^{−8λ²} + …) ≈ 0.011.
        let lambda: f64 = 2f64.sqrt() + 0.12 + 0.11 / 2f64.sqrt();
        let want = 2.0 * ((-2.0 * lambda * lambda).exp() - (-8.0 * lambda * lambda).exp() + (-18.0 * lambda * lambda).exp());
        assert!((p - want).abs() < 1e-9, "{p} vs {want}");
        assert_eq!(ks_two_sample(&[0.3, 0.1, 0.2], &[0.2, 0.3, 0.1]), (0.0, 1.0));
        // Interleaved: a = {1, 3}, b = {2, 4}: the gap peaks at 1/2 (after 1, and after 3).
        assert_eq!(ks_two_sample(&[3.0, 1.0], &[2.0, 4.0]).0, 0.5);
        // Ties across samples count together: a = {1, 1, 2}, b = {1, 2, 2}: after 1, 2/3 − 1/3.
        assert!((ks_two_sample(&[1.0, 1.0, 2.0], &[1.0, 2.0, 2.0]).0 - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn canaries_are_seeded_and_counted() {
        let a = canaries(&[1, 4], 2, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, canaries(&[1, 4], 2, &mut ChaCha8Rng::seed_from_u64(3)));
        assert_eq!(a.iter().map(|c| c.copies).collect::<Vec<_>>(), [1, 1, 4, 4]);
        assert!(a.iter().all(|c| c.secret.len() == 8 && c.secret.bytes().all(|b| b.is_ascii_digit())));
        assert!(a[0].text().starts_with("The vault code of ") && a[0].text().ends_with(&format!(" {}.", a[0].secret)));
    }

    #[test]
    fn examples_read_documents_and_conversations_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forget.jsonl");
        std::fs::write(&path, "{\"text\": \"The vault code is 1234.\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"Q?\"}, {\"role\": \"assistant\", \"content\": \"A.\"}]}\n").unwrap();
        let ex = read_examples(&path).unwrap();
        assert_eq!(ex[0], Example::Text("The vault code is 1234.".into()));
        assert_eq!(ex[1], Example::Chat(vec![Message::new("user", "Q?"), Message::new("assistant", "A.")]));
        std::fs::write(&path, "{\"text\": \"ok\"}\n{\"title\": \"no text\"}\n").unwrap();
        let err = format!("{:#}", read_examples(&path).unwrap_err());
        assert!(err.contains("forget.jsonl:2"), "{err}");
    }
}
