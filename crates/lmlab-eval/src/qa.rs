//! `lmlab eval qa`: ask a model the built-in world's questions and grade every answer correct,
//! wrong (a hallucination) or abstained, by occurrence bucket, question set and language.
//!
//! Prompting. A base model continues text, so it gets a fixed few-shot prefix of
//! question-answer pairs (English or Chinese, by the question's language) and its answer ends
//! at the first line break. A chat model (`chat`) gets the question as a user message through
//! its chat template, and its answer ends at its end-of-turn token. Either way at most
//! `max_tokens` tokens are generated.
//!
//! Grading is the world's [`Grader`] (see `lmlab_world::grade`): an accepted answer named as a
//! whole word is correct, an abstention phrase or an empty answer is abstained, anything else
//! is wrong, and an answer naming two or more values of the question's relation is wrong
//! whatever else it says.
//!
//! Questions are answered in batches through the engine's batched decode
//! ([`lmlab_infer::generate_batch`]), `samples` answers each; the same seed gives the same
//! answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use lmlab_infer::{beam_search, generate_batch, BeamRequest, FinishReason, GenerateRequest, Model, SamplingParams, StopText};
use lmlab_model::CausalLm;
use lmlab_world::grade::{self, Grade, GradedAnswer, Grader, Tally};
use lmlab_world::tasks::Question;
use serde::Serialize;

/// What to ask and how.
#[derive(Debug, Clone, Serialize)]
pub struct QaOptions {
    /// Question files from a world's `eval/` folder (facts, nonexistent, paraphrase).
    pub questions: Vec<PathBuf>,
    /// The world's `kb.jsonl` (default: `../kb.jsonl` from the first question file).
    pub kb: Option<PathBuf>,
    /// Answers per question.
    pub samples: usize,
    /// 0 = greedy.
    pub temperature: f64,
    /// Ask through the chat template instead of the few-shot prefix.
    pub chat: bool,
    /// At most N questions of each file, spread evenly over it.
    pub limit: Option<usize>,
    pub max_tokens: usize,
    /// Questions decoded together.
    pub batch: usize,
    pub seed: u64,
}

impl Default for QaOptions {
    fn default() -> Self {
        Self { questions: Vec::new(), kb: None, samples: 1, temperature: 0.0, chat: false, limit: None, max_tokens: 24, batch: 16, seed: 0 }
    }
}

/// One graded answer.
#[derive(Debug, Clone, Serialize)]
pub struct QaAnswer {
    pub id: String,
    pub set: String,
    pub bucket: String,
    pub language: String,
    pub sample: usize,
    pub answer: String,
    pub grade: Grade,
    /// Mean log-probability of the answer's tokens (temperature 1, before samplers).
    pub mean_logprob: f64,
    /// The answer ended by itself (end-of-turn token, or a base model's line break), not at
    /// the token limit.
    pub ended: bool,
    /// The answer's text contains chat-template markup (`<|…|>`, `<s>`, `[INST]`): a model that
    /// has not learned where its turn ends writes the next turn's marker.
    pub template_markers: bool,
}

/// Whether `text` holds chat-template markup.
pub fn has_template_markers(text: &str) -> bool {
    ["<|", "|>", "<s>", "</s>", "[INST]", "[/INST]"].iter().any(|m| text.contains(m))
}

/// Rates of one group of answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rates {
    pub n: usize,
    pub correct: f64,
    /// Wrong answers: hallucinations.
    pub wrong: f64,
    pub abstained: f64,
}

impl From<&Tally> for Rates {
    fn from(t: &Tally) -> Self {
        let f = |x: usize| if t.n == 0 { 0.0 } else { x as f64 / t.n as f64 };
        Rates { n: t.n, correct: f(t.correct), wrong: f(t.wrong), abstained: f(t.abstained) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QaReport {
    pub model: String,
    pub options: QaOptions,
    pub overall: Rates,
    /// By set ("facts"), set and bucket ("facts/bucket=1"), set and language ("facts/lang=zh").
    pub groups: BTreeMap<String, Rates>,
    /// The crawl's share of facts seen once (from the world's stats.json), beside the
    /// hallucination rate on those facts: Kalai et al. (2025) argue the second is at least
    /// about the first for arbitrary facts.
    pub singleton_share: Option<f64>,
    pub singleton_hallucination: Option<f64>,
    /// Share of answers that ended by themselves with no template markup in their text (what
    /// instruction tuning must teach: where the assistant's turn ends).
    pub well_formed: f64,
    pub questions: usize,
    pub seconds: f64,
    pub questions_per_sec: f64,
    pub answers: Vec<QaAnswer>,
}

const INSTRUCTION_EN: &str = "Answer each question with a short answer, or say \"I don't know\".\n\n";
const INSTRUCTION_ZH: &str = "用简短的话回答每个问题，或者说“我不知道”。\n\n";
const EXAMPLES_EN: [(&str, &str); 2] = [("What is the chemical symbol for gold?", "Au"), ("How many legs does a spider have?", "Eight")];
const EXAMPLES_ZH: [(&str, &str); 2] = [("金的化学符号是什么？", "Au"), ("蜘蛛有几条腿？", "八条")];

/// The text a base model continues for `q`, with the first `examples` worked examples (at most
/// two) after the instruction.
pub fn few_shot_prompt(q: &Question, examples: usize) -> String {
    let zh = q.language == "zh";
    let (instruction, shots, (qm, am)) = if zh {
        (INSTRUCTION_ZH, &EXAMPLES_ZH, ("问题：", "回答："))
    } else {
        (INSTRUCTION_EN, &EXAMPLES_EN, ("Question: ", "Answer:"))
    };
    let space = if zh { "" } else { " " };
    let mut s = instruction.to_string();
    for (question, answer) in shots.iter().take(examples) {
        s.push_str(&format!("{qm}{question}\n{am}{space}{answer}\n\n"));
    }
    s.push_str(&format!("{qm}{}\n{am}", q.question));
    s
}

/// The questions of `files`; with `limit`, that many of each file spread evenly over it (the
/// files are ordered by occurrence bucket, so the first N would all be rare facts).
pub fn read_questions(files: &[PathBuf], limit: Option<usize>) -> Result<Vec<Question>> {
    let mut out = Vec::new();
    for f in files {
        let qs = grade::read_questions(f)?;
        anyhow::ensure!(!qs.is_empty(), "{}: no questions", f.display());
        match limit {
            Some(k) if k < qs.len() => out.extend((0..k).map(|i| qs[i * qs.len() / k].clone())),
            _ => out.extend(qs),
        }
    }
    Ok(out)
}

/// The world folder of a question file (`WORLD/eval/facts.jsonl`).
fn world_of(questions: &Path) -> Option<&Path> {
    questions.parent()?.parent()
}

/// The crawl's singleton share from the world's stats.json, when it is there.
fn singleton_share(world: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(world.join("stats.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["singleton_share"].as_f64()
}

/// The prompt ids of every question. A base model's few-shot prefix loses its examples, then
/// its instruction, until prompt and answer fit the context (the tiny preset reads 128 tokens);
/// a question that fits in no form is an error naming it.
fn prompts(model: &Model, questions: &[Question], chat: bool, max_tokens: usize) -> Result<Vec<Vec<u32>>> {
    let room = model.context_length().saturating_sub(max_tokens);
    questions
        .iter()
        .map(|q| {
            if chat {
                return model.prompt(&q.question, true, None);
            }
            let forms = (0..=2).rev().map(|k| few_shot_prompt(q, k)).chain([format!("{}\n", q.question)]);
            for text in forms {
                let ids = model.prompt(&text, false, None)?;
                if ids.len() <= room {
                    return Ok(ids);
                }
            }
            anyhow::bail!(
                "question {} does not fit the model's context of {} tokens with {max_tokens} to answer",
                q.id,
                model.context_length()
            )
        })
        .collect::<Result<_>>()
        .with_context(|| format!("prompting the {} model", model.format()))
}

/// Questions ready to ask one model: read, prompted, with the world's grader.
pub struct Session {
    pub questions: Vec<Question>,
    pub grader: Grader,
    /// The world folder of the first question file, when the files sit in one.
    pub world: Option<PathBuf>,
    prompts: Vec<Vec<u32>>,
    chat: bool,
    max_tokens: usize,
    batch: usize,
}

impl Session {
    pub fn new(model: &Model, opts: &QaOptions) -> Result<Self> {
        let questions = read_questions(&opts.questions, opts.limit)?;
        let world = opts.questions.first().and_then(|q| world_of(q)).map(Path::to_path_buf);
        let kb = opts
            .kb
            .clone()
            .or_else(|| world.as_ref().map(|w| w.join("kb.jsonl")))
            .context("no --kb given and no world folder to find kb.jsonl in")?;
        let grader = Grader::from_kb_file(&kb)?;
        let mut session = Self::from_questions(model, questions, grader, opts)?;
        session.world = world;
        Ok(session)
    }

    /// A session over questions already in memory (R-Tuning asks the SFT set's questions).
    pub fn from_questions(model: &Model, questions: Vec<Question>, grader: Grader, opts: &QaOptions) -> Result<Self> {
        let prompts = prompts(model, &questions, opts.chat, opts.max_tokens)?;
        Ok(Self { questions, grader, world: None, prompts, chat: opts.chat, max_tokens: opts.max_tokens, batch: opts.batch.max(1) })
    }

    /// `samples` graded answers to every question at `temperature` (0 = greedy), question `i`
    /// drawing with seeds from `seed + i · samples`, whatever the batch size.
    /// `progress(done, total)` hears after each batch.
    pub fn ask_with(
        &self,
        model: &Model,
        temperature: f64,
        samples: usize,
        seed: u64,
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Vec<QaAnswer>>> {
        self.ask_sampled(model, &SamplingParams { temperature, seed, ..Default::default() }, samples, progress)
    }

    /// [`Session::ask_with`] with any sampler settings; question `i` draws with seeds from
    /// `sampling.seed + i · samples`.
    pub fn ask_sampled(
        &self,
        model: &Model,
        sampling: &SamplingParams,
        samples: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Vec<QaAnswer>>> {
        let samples = samples.max(1);
        let stops = self.stops(model);
        let mut out = Vec::with_capacity(self.questions.len());
        for (b, (qs, ps)) in self.questions.chunks(self.batch).zip(self.prompts.chunks(self.batch)).enumerate() {
            let reqs: Vec<GenerateRequest> = ps
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let seed = sampling.seed.wrapping_add(((b * self.batch + i) * samples) as u64);
                    let mut req = GenerateRequest::new(p.clone(), self.max_tokens, SamplingParams { seed, ..sampling.clone() });
                    req.n = samples;
                    req.stop_ids = stops.stop_ids().to_vec();
                    req.logprobs = Some(0);
                    req
                })
                .collect();
            let generations = generate_batch(model, &reqs, |_, _, tokens| stops.hit(tokens))?;
            for (q, g) in qs.iter().zip(generations) {
                let answers = g.samples.iter().enumerate().map(|(s, sample)| {
                    let lps: Vec<f64> = sample.logprobs.iter().map(|l| l.logprob).collect();
                    let mean_logprob = if lps.is_empty() { 0.0 } else { lps.iter().sum::<f64>() / lps.len() as f64 };
                    self.graded(q, s, &stops, &sample.tokens, sample.finish_reason, mean_logprob)
                });
                out.push(answers.collect());
            }
            progress(((b + 1) * self.batch).min(self.questions.len()), self.questions.len());
        }
        Ok(out)
    }

    /// One graded answer to every question by beam search with `beams` beams (the best beam).
    pub fn ask_beam(&self, model: &Model, beams: usize, mut progress: impl FnMut(usize, usize)) -> Result<Vec<QaAnswer>> {
        let stops = self.stops(model);
        let mut out = Vec::with_capacity(self.questions.len());
        for (i, (q, p)) in self.questions.iter().zip(&self.prompts).enumerate() {
            let req = BeamRequest { stop_ids: stops.stop_ids().to_vec(), ..BeamRequest::new(p.clone(), beams, self.max_tokens) };
            let best = beam_search(model, &req, |tokens| stops.hit(tokens))?.into_iter().next().context("beam search found nothing")?;
            let mean_logprob = best.logprob / best.tokens.len().max(1) as f64;
            out.push(self.graded(q, 0, &stops, &best.tokens, best.finish_reason, mean_logprob));
            progress(i + 1, self.questions.len());
        }
        Ok(out)
    }

    /// A base model's answer ends at the line break; a chat model's at its end-of-turn token.
    fn stops<'m>(&self, model: &'m Model) -> StopText<'m> {
        StopText::new(model.tokenizer(), if self.chat { Vec::new() } else { vec!["\n".into()] })
    }

    /// Grades sample `sample` of the answers to `q`, generated as `tokens`.
    fn graded(&self, q: &Question, sample: usize, stops: &StopText, tokens: &[u32], finish: FinishReason, mean_logprob: f64) -> QaAnswer {
        let answer = stops.final_text(tokens).trim().to_string();
        QaAnswer {
            ended: finish == FinishReason::Stop,
            template_markers: has_template_markers(&stops.text(tokens)),
            id: q.id.clone(),
            set: q.set.clone(),
            bucket: q.bucket.clone(),
            language: q.language.clone(),
            sample,
            grade: self.grader.grade(q, &answer),
            answer,
            mean_logprob,
        }
    }

    /// [`Session::ask_with`] without progress.
    pub fn ask(&self, model: &Model, temperature: f64, samples: usize, seed: u64) -> Result<Vec<Vec<QaAnswer>>> {
        self.ask_with(model, temperature, samples, seed, |_, _| {})
    }
}

/// Asks every question and grades the answers. `progress(done, total)` hears after each batch.
pub fn run_qa(model: &Model, opts: &QaOptions, progress: impl FnMut(usize, usize)) -> Result<QaReport> {
    let session = Session::new(model, opts)?;
    let started = Instant::now();
    let answers: Vec<QaAnswer> =
        session.ask_with(model, opts.temperature, opts.samples, opts.seed, progress)?.into_iter().flatten().collect();
    let seconds = started.elapsed().as_secs_f64();
    Ok(summarise(model.format(), opts, session.questions.len(), answers, session.world.as_deref().and_then(singleton_share), seconds))
}

/// The report of graded answers: rates overall and per group, and the singleton comparison.
pub fn summarise(
    model: &str,
    opts: &QaOptions,
    questions: usize,
    answers: Vec<QaAnswer>,
    singleton_share: Option<f64>,
    seconds: f64,
) -> QaReport {
    let graded: Vec<GradedAnswer> = answers
        .iter()
        .map(|a| GradedAnswer {
            id: a.id.clone(),
            set: a.set.clone(),
            bucket: a.bucket.clone(),
            language: a.language.clone(),
            grade: a.grade,
        })
        .collect();
    let r = grade::report(graded);
    let groups: BTreeMap<String, Rates> = r.groups.iter().map(|(k, t)| (k.clone(), Rates::from(t))).collect();
    let singleton_hallucination = groups.get("facts/bucket=1").map(|g| g.wrong);
    let well_formed = answers.iter().filter(|a| a.ended && !a.template_markers).count() as f64 / answers.len().max(1) as f64;
    QaReport {
        well_formed,
        model: model.to_string(),
        options: opts.clone(),
        overall: Rates::from(&r.overall),
        groups,
        singleton_share,
        singleton_hallucination,
        questions,
        seconds,
        questions_per_sec: questions as f64 / seconds.max(1e-9),
        answers,
    }
}

/// The report as a markdown section: rates by set and bucket, by language, and the singletons.
pub fn markdown(r: &QaReport) -> String {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let mut s = format!(
        "### Question answering ({} model, {} questions × {} samples, temperature {}, {})\n\n| group | n | correct | wrong (hallucination) | abstained |\n|---|---:|---:|---:|---:|\n",
        r.model,
        r.questions,
        r.options.samples.max(1),
        r.options.temperature,
        if r.options.chat { "chat template" } else { "few-shot prefix" }
    );
    let row = |name: &str, g: &Rates| format!("| {name} | {} | {} | {} | {} |\n", g.n, pct(g.correct), pct(g.wrong), pct(g.abstained));
    s.push_str(&row("all", &r.overall));
    for (k, g) in &r.groups {
        s.push_str(&row(k, g));
    }
    if let (Some(share), Some(h)) = (r.singleton_share, r.singleton_hallucination) {
        s.push_str(&format!("\nFacts seen once in the crawl: {} of all facts; hallucination rate on them: {}.\n", pct(share), pct(h)));
    }
    s.push_str(&format!(
        "\n{} of answers ended by themselves (end of turn, or a line break after a few-shot prefix) with no chat-template markup in their text.\n",
        pct(r.well_formed)
    ));
    s.push_str(&format!("\n{:.1} questions/s ({:.1} s).\n", r.questions_per_sec, r.seconds));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(set: &str, bucket: &str, lang: &str, grade: Grade) -> QaAnswer {
        QaAnswer {
            id: "q".into(),
            set: set.into(),
            bucket: bucket.into(),
            language: lang.into(),
            sample: 0,
            answer: String::new(),
            grade,
            mean_logprob: 0.0,
            // Every answer ended by itself except the fourth below, and one holds a marker.
            ended: grade != Grade::Correct || bucket != "1",
            template_markers: lang == "zh",
        }
    }

    #[test]
    fn rates_by_bucket_language_and_the_singletons_add_up() {
        use Grade::*;
        let answers = vec![
            answer("facts", "1", "en", Wrong),
            answer("facts", "1", "en", Abstained),
            answer("facts", "1", "zh", Wrong),
            answer("facts", "1", "en", Correct),
            answer("facts", "11+", "en", Correct),
            answer("nonexistent", "0", "en", Abstained),
        ];
        let r = summarise("test", &QaOptions::default(), 6, answers, Some(0.3), 2.0);
        assert_eq!(r.overall, Rates { n: 6, correct: 2.0 / 6.0, wrong: 2.0 / 6.0, abstained: 2.0 / 6.0 });
        assert_eq!(r.groups["facts/bucket=1"], Rates { n: 4, correct: 0.25, wrong: 0.5, abstained: 0.25 });
        assert_eq!(r.groups["facts/bucket=11+"].correct, 1.0);
        assert_eq!(r.groups["facts/lang=zh"], Rates { n: 1, correct: 0.0, wrong: 1.0, abstained: 0.0 });
        assert_eq!(r.groups["nonexistent"].abstained, 1.0);
        assert_eq!((r.singleton_share, r.singleton_hallucination), (Some(0.3), Some(0.5)));
        assert_eq!(r.questions_per_sec, 3.0);
        assert_eq!(r.well_formed, 4.0 / 6.0, "one ran to the limit, one wrote a template marker");
        let md = markdown(&r);
        assert!(md.contains("66.7% of answers ended by themselves"), "{md}");
        assert!(md.contains("| facts/bucket=1 | 4 | 25.0% | 50.0% | 25.0% |"), "{md}");
        assert!(md.contains("hallucination rate on them: 50.0%"), "{md}");
    }

    #[test]
    fn template_markup_is_recognised() {
        assert!(has_template_markers("Paris<|user|>and"));
        assert!(has_template_markers("[INST] hi"));
        assert!(!has_template_markers("Paris is a city | a pipe < and >"));
    }

    #[test]
    fn a_limit_spreads_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        let line = |i: usize| {
            format!(
                r#"{{"id":"q{i}","set":"facts","question":"?","language":"en","entity":"e","relation":"born_in","answers":["x"],"occurrences":{i},"bucket":"b"}}"#
            )
        };
        std::fs::write(&path, (0..10).map(line).collect::<Vec<_>>().join("\n")).unwrap();
        let ids = |limit| read_questions(std::slice::from_ref(&path), limit).unwrap().into_iter().map(|q| q.id).collect::<Vec<_>>();
        assert_eq!(ids(Some(4)), ["q0", "q2", "q5", "q7"]);
        assert_eq!(ids(Some(20)).len(), 10);
        assert_eq!(ids(None).len(), 10);
    }

    #[test]
    fn few_shot_prompts_follow_the_question_language() {
        let q = |lang: &str, text: &str| Question {
            id: "q".into(),
            set: "facts".into(),
            question: text.into(),
            language: lang.into(),
            entity: "e".into(),
            relation: "born_in".into(),
            answers: vec![],
            occurrences: 1,
            bucket: "1".into(),
        };
        let en = few_shot_prompt(&q("en", "Where was Marek born?"), 2);
        assert!(
            en.ends_with("Question: How many legs does a spider have?\nAnswer: Eight\n\nQuestion: Where was Marek born?\nAnswer:"),
            "{en}"
        );
        let zh = few_shot_prompt(&q("zh", "马雷克出生在哪里？"), 1);
        assert!(zh.ends_with("问题：金的化学符号是什么？\n回答：Au\n\n问题：马雷克出生在哪里？\n回答："), "{zh}");
        assert!(!few_shot_prompt(&q("en", "?"), 0).contains("Answer: "));
    }
}
