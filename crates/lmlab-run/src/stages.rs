//! The stages of a run, in order, and what each one does: the `lmlab` commands it runs, the
//! settings tables it reads, and the files it leaves in the run folder.
//!
//! A stage is a list of [`Step`]s. Most are `lmlab` subcommands run as child processes, so that
//! each stage's output goes to its own log and a stage is exactly what a user could type.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::settings::RunSettings;

/// The stages, in the order they run.
pub const STAGE_NAMES: [&str; 9] = ["world", "tokenizer", "data", "pretrain", "sft", "reward", "rlhf", "eval", "report"];

/// The model stages the evaluation asks questions of: folder, whether it speaks the chat format.
pub const MODEL_STAGES: [(&str, bool); 3] = [("base", false), ("sft", true), ("rlhf", true)];

/// One thing a stage does.
pub enum Step {
    /// `lmlab ARGS`; its standard output is kept in `stdout` when given. A resumable step gets
    /// `--resume` when the run picks up an interrupted stage whose checkpoint `resume_from`
    /// exists.
    Lmlab { args: Vec<String>, stdout: Option<PathBuf>, resume_from: Option<PathBuf> },
    /// Work the runner does itself, on the run folder.
    Internal { what: &'static str, run: fn(&Path, &RunSettings) -> Result<()> },
}

pub struct Stage {
    pub name: &'static str,
    /// One line on what it does, for the progress display.
    pub what: &'static str,
    /// The settings tables it reads: editing one redoes this stage and the ones after it.
    pub tables: &'static [&'static str],
    /// What it writes (relative to the run folder): all must exist for it to count as done, and
    /// a fresh start removes them.
    pub outputs: Vec<&'static str>,
    /// Its name in the run's metrics.jsonl, and its step count, for the progress bar.
    pub metrics: Option<(&'static str, Option<u64>)>,
    pub steps: Vec<Step>,
}

/// `lmlab ARGS`, its output in the stage's log.
fn lmlab(args: &[&str]) -> Step {
    Step::Lmlab { args: args.iter().map(|s| s.to_string()).collect(), stdout: None, resume_from: None }
}

impl Step {
    /// The command's standard output kept in `path` instead of the log.
    fn captured(mut self, path: &str) -> Self {
        if let Step::Lmlab { stdout, .. } = &mut self {
            *stdout = Some(path.into());
        }
        self
    }

    /// The command resumes from `checkpoint` when an interrupted stage is picked up.
    fn resumable(mut self, checkpoint: &str) -> Self {
        if let Step::Lmlab { resume_from, .. } = &mut self {
            *resume_from = Some(checkpoint.into());
        }
        self
    }
}

/// The questions every model stage is graded on.
const QUESTIONS: [&str; 3] = ["world/eval/facts.jsonl", "world/eval/nonexistent.jsonl", "world/eval/paraphrase.jsonl"];

/// Every stage of a run with settings `s`. Paths in commands are relative to the run folder
/// (the runner starts each command there).
pub fn plan(s: &RunSettings) -> Vec<Stage> {
    let seed = s.run.seed.to_string();
    let vocab = s.tokenizer.vocab_size.to_string();
    vec![
        Stage {
            name: "world",
            what: "generate the world: a labelled web crawl with a known truth",
            tables: &["world", "run"],
            outputs: vec!["world"],
            metrics: None,
            steps: vec![lmlab(&["world", "generate", "--preset", "preset.toml", "--out", "world", "--seed", &seed])],
        },
        Stage {
            name: "tokenizer",
            what: "learn a byte-level BPE from the crawl",
            tables: &["tokenizer"],
            outputs: vec!["tokenizer.json", "tokenizer-sample", "tokenizer-stats.json"],
            metrics: None,
            steps: vec![
                lmlab(&["tokenizer", "train", "--input", "world/crawl", "--vocab-size", &vocab, "--out", "tokenizer.json"]),
                Step::Internal { what: "gather English and Chinese text to measure the tokenizer on", run: write_tokenizer_samples },
                lmlab(&[
                    "tokenizer",
                    "stats",
                    "--tokenizer",
                    "tokenizer.json",
                    "--json",
                    "tokenizer-sample/en.txt",
                    "tokenizer-sample/zh.txt",
                ])
                .captured("tokenizer-stats.json"),
            ],
        },
        Stage {
            name: "data",
            what: "clean the crawl into token shards; score the filters against the labels",
            tables: &[],
            outputs: vec!["data"],
            metrics: None,
            steps: vec![
                lmlab(&["data", "prepare", "--input", "world/crawl", "--tokenizer", "tokenizer.json", "--out", "data"]),
                lmlab(&["data", "eval-filters", "--labels", "world/labels.jsonl", "--data", "data", "--json"])
                    .captured("data/filters.json"),
            ],
        },
        Stage {
            name: "pretrain",
            what: "pretrain the base model on the shards",
            tables: &["model", "train"],
            outputs: vec!["base"],
            metrics: Some(("pretrain", s.max_steps("train"))),
            steps: vec![
                lmlab(&["pretrain", "--config", "preset.toml", "--data", "data", "--out", "base"]).resumable("base/trainer_state.json")
            ],
        },
        Stage {
            name: "sft",
            what: "instruction-tune the base model on the world's conversations",
            tables: &["sft"],
            outputs: vec!["sft"],
            metrics: Some(("sft", s.max_steps("sft"))),
            steps: vec![lmlab(&["sft", "--config", "preset.toml", "--base", "base", "--data", "world/sft.jsonl", "--out", "sft"])
                .resumable("sft/trainer_state.json")],
        },
        Stage {
            name: "reward",
            what: "train the reward model on preference pairs; score true against false facts",
            tables: &["reward"],
            outputs: vec!["rm", "eval/reward-train.json", "eval/reward.json"],
            metrics: Some(("reward", s.max_steps("reward"))),
            steps: vec![
                lmlab(&[
                    "reward",
                    "train",
                    "--config",
                    "preset.toml",
                    "--base",
                    "base",
                    "--data",
                    "world/preferences.jsonl",
                    "--out",
                    "rm",
                    "--json",
                ])
                .captured("eval/reward-train.json")
                .resumable("rm/trainer_state.json"),
                lmlab(&["reward", "eval", "--model", "rm", "--data", "world/eval/fact_pairs.jsonl", "--json"]).captured("eval/reward.json"),
            ],
        },
        Stage {
            name: "rlhf",
            what: "RLHF: the SFT model learns from rewards for its own answers",
            tables: &["rlhf"],
            outputs: vec!["rlhf"],
            metrics: Some(("rlhf", s.max_steps("rlhf"))),
            steps: vec![rlhf_step(s)],
        },
        Stage {
            name: "eval",
            what: "grade every model stage: QA by fact frequency, consistency, samples",
            tables: &["eval", "report"],
            outputs: vec!["eval/qa", "eval/consistency", "eval/samples"],
            metrics: None,
            steps: eval_steps(s),
        },
        Stage {
            name: "report",
            what: "write report.md and report.html",
            tables: &[],
            outputs: vec!["report.md", "report.html"],
            metrics: None,
            steps: vec![lmlab(&["report", "--run", "."])],
        },
    ]
}

/// `lmlab rlhf` with the run's paths and the `[rlhf]` table as flags.
fn rlhf_step(s: &RunSettings) -> Step {
    let mut args: Vec<String> =
        ["rlhf", "--policy", "sft", "--prompts", "world/rl_prompts.jsonl", "--out", "rlhf"].map(String::from).to_vec();
    let uses_rm = s.rlhf.get("reward").and_then(|r| r.as_str()).is_some_and(|r| r != "grader");
    if uses_rm {
        args.extend(["--reward-model".into(), "rm".into()]);
    }
    for (key, value) in &s.rlhf {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => args.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => args.extend([flag, items.iter().map(flag_value).collect::<Vec<_>>().join(",")]),
            other => args.extend([flag, flag_value(other)]),
        }
    }
    Step::Lmlab { args, stdout: None, resume_from: Some("rlhf/trainer_state.json".into()) }
}

fn flag_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn eval_steps(s: &RunSettings) -> Vec<Step> {
    let mut steps = Vec::new();
    let limit = s.eval.limit.map(|n| n.to_string());
    let max_tokens = s.eval.max_tokens.to_string();
    for (model, chat) in MODEL_STAGES {
        let out = format!("eval/qa/{model}");
        let mut args = vec!["eval", "qa", "--model", model, "--max-tokens", &max_tokens, "--out", &out, "--questions"];
        args.extend(QUESTIONS);
        if chat {
            args.push("--chat");
        }
        if let Some(n) = &limit {
            args.extend(["--limit", n]);
        }
        steps.push(lmlab(&args));
    }
    let temps = s.eval.consistency_temperatures.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
    let (n, k, seed) = (s.eval.consistency_limit.to_string(), s.eval.consistency_samples.to_string(), s.eval.seed.to_string());
    steps.push(lmlab(&[
        "eval",
        "consistency",
        "--model",
        "rlhf",
        "--chat",
        "--max-tokens",
        &max_tokens,
        "--questions",
        QUESTIONS[0],
        "--limit",
        &n,
        "--samples",
        &k,
        "--temperatures",
        &temps,
        "--seed",
        &seed,
        "--out",
        "eval/consistency",
    ]));
    steps.push(Step::Internal { what: "choose the sample questions", run: write_sample_questions });
    for (model, chat) in MODEL_STAGES {
        for t in &s.report.sample_temperatures {
            let (out, t) = (format!("eval/samples/{model}-t{t}"), t.to_string());
            let mut args = vec![
                "eval",
                "qa",
                "--model",
                model,
                "--max-tokens",
                &max_tokens,
                "--kb",
                "world/kb.jsonl",
                "--questions",
                "eval/samples/questions.jsonl",
                "--temperature",
                &t,
                "--seed",
                &seed,
                "--out",
                &out,
            ];
            if chat {
                args.push("--chat");
            }
            steps.push(lmlab(&args));
        }
    }
    steps
}

/// The questions every model stage answers in the report: frequent facts first (the ones a
/// model can know), one rarer fact, and one about an entity that does not exist.
fn write_sample_questions(run: &Path, s: &RunSettings) -> Result<()> {
    use lmlab_world::grade::read_questions;
    let facts = read_questions(&run.join(QUESTIONS[0]))?;
    let nonexistent = read_questions(&run.join(QUESTIONS[1]))?;
    let want = s.report.sample_questions.max(1);
    let mut chosen: Vec<&lmlab_world::tasks::Question> = Vec::new();
    chosen.extend(facts.iter().filter(|q| q.bucket == "11+").take(want.saturating_sub(2).max(1)));
    chosen.extend(facts.iter().filter(|q| q.bucket == "4-10").take(1));
    chosen.extend(nonexistent.iter().take(1));
    chosen.truncate(want);
    let dir = run.join("eval/samples");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = String::new();
    for q in chosen {
        text.push_str(&serde_json::to_string(q)?);
        text.push('\n');
    }
    lmlab_model::checkpoint::write_atomic(&dir.join("questions.jsonl"), text.as_bytes())
}

/// The messages of the world's conversations, split by language (Chinese: any Han character),
/// as plain text: what `tokenizer stats` measures fertility on.
fn write_tokenizer_samples(run: &Path, _: &RunSettings) -> Result<()> {
    let path = run.join("world/sft.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (mut en, mut zh) = (String::new(), String::new());
    for (i, line) in text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        for m in row["messages"].as_array().into_iter().flatten() {
            let Some(content) = m["content"].as_str() else { continue };
            let han = content.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
            let out = if han { &mut zh } else { &mut en };
            out.push_str(content);
            out.push('\n');
        }
    }
    let dir = run.join("tokenizer-sample");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    lmlab_model::checkpoint::write_atomic(&dir.join("en.txt"), en.as_bytes())?;
    lmlab_model::checkpoint::write_atomic(&dir.join("zh.txt"), zh.as_bytes())
}
