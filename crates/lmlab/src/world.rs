//! `lmlab world generate | grade`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lmlab_world::{generate_with_progress, grade, Scale, WorldOptions};

#[derive(Subcommand)]
pub enum WorldCmd {
    /// Generate the built-in world: knowledge base, labelled WARC crawl, SFT/preference/eval sets.
    Generate(GenerateArgs),
    /// Grade answers (JSONL of {"id", "answer"}) against evaluation questions.
    Grade(GradeArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long)]
    out: PathBuf,
    /// Take the world's options from a preset's [world] table (configs/knowledge.toml); --seed
    /// still applies, the other options below are then ignored.
    #[arg(long)]
    preset: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// tiny (~5 MB of text), small (~50 MB) or medium (~500 MB).
    #[arg(long, default_value = "tiny")]
    scale: Scale,
    /// Share of pages written in Chinese.
    #[arg(long, default_value_t = 0.15)]
    zh_share: f64,
    /// Number of poisoned pages (trigger phrase + payload).
    #[arg(long, default_value_t = 0)]
    poison: usize,
    /// Target share of facts that appear in exactly one document.
    #[arg(long, default_value_t = 0.3)]
    singleton_share: f64,
    /// Occurrence plan of the other facts: 2 + ⌊HEAD / rank^DECAY⌋ documents each, by their
    /// entity's popularity rank. Raise HEAD for more frequent facts (a model that knows some).
    #[arg(long, default_value_t = lmlab_world::DEFAULT_HEAD_OCCURRENCES)]
    head_occurrences: f64,
    #[arg(long, default_value_t = lmlab_world::DEFAULT_OCCURRENCE_DECAY)]
    occurrence_decay: f64,
    /// A core of well-known facts: the facts of the N most popular entities appear in at least
    /// --core-occurrences documents each.
    #[arg(long, default_value_t = 0)]
    core_entities: usize,
    #[arg(long, default_value_t = 0)]
    core_occurrences: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct GradeArgs {
    /// kb.jsonl of the world: questions carry their accepted answers, the knowledge base the
    /// values an answer may hedge between (naming two of them is graded wrong).
    #[arg(long)]
    kb: PathBuf,
    /// A questions file from the world's eval/ folder.
    #[arg(long)]
    questions: PathBuf,
    #[arg(long)]
    answers: PathBuf,
    /// Print every graded answer too, as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: WorldCmd) -> Result<()> {
    match cmd {
        WorldCmd::Generate(a) => {
            let t = Instant::now();
            let opts = match &a.preset {
                Some(path) => WorldOptions {
                    seed: a.seed,
                    ..lmlab_train::Preset::from_file(path)?.world.with_context(|| format!("{} has no [world] table", path.display()))?
                },
                None => WorldOptions {
                    seed: a.seed,
                    scale: a.scale,
                    zh_share: a.zh_share,
                    poison: a.poison,
                    singleton_share: a.singleton_share,
                    head_occurrences: a.head_occurrences,
                    occurrence_decay: a.occurrence_decay,
                    core_entities: a.core_entities,
                    core_occurrences: a.core_occurrences,
                },
            };
            let s = generate_with_progress(&a.out, &opts, |msg| eprintln!("{msg}"))?;
            if a.json {
                return crate::print_json(&s);
            }
            println!("world written to {} in {:.1}s (seed {})", a.out.display(), t.elapsed().as_secs_f64(), a.seed);
            println!(
                "  {} entities, {} facts; singleton share {:.3} (target {:.3})",
                s.entities, s.facts, s.singleton_share, s.singleton_share_target
            );
            println!(
                "  {} pages in {} WARC file(s): {:.1} MB gzipped, {:.1} MB HTML, {:.1} MB article text",
                s.pages,
                s.warc_files.len(),
                s.warc_bytes as f64 / 1e6,
                s.html_bytes as f64 / 1e6,
                s.text_bytes as f64 / 1e6
            );
            println!("  pages by kind: {}", s.pages_by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
            println!("  pages by language: {}", s.pages_by_language.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
            println!(
                "  facts by occurrence: {}",
                s.facts_by_occurrence_bucket.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
            );
            println!(
                "  {} SFT examples, {} preference pairs, eval: {}, {} RL prompts",
                s.sft_examples,
                s.preference_pairs,
                s.eval_questions.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
                s.rl_prompts
            );
        }
        WorldCmd::Grade(a) => {
            let grader = grade::Grader::from_kb_file(&a.kb)?;
            let r = grade::grade_files(&grader, &a.questions, &a.answers)?;
            if a.json {
                return crate::print_json(&r);
            }
            let pct = |x: usize, n: usize| if n == 0 { 0.0 } else { 100.0 * x as f64 / n as f64 };
            println!("{:<32} {:>6} {:>9} {:>9} {:>10}", "group", "n", "correct", "wrong", "abstained");
            let rows = std::iter::once(("all".to_string(), &r.overall)).chain(r.groups.iter().map(|(k, v)| (k.clone(), v)));
            for (k, t) in rows {
                println!("{:<32} {:>6} {:>8.1}% {:>8.1}% {:>9.1}%", k, t.n, pct(t.correct, t.n), pct(t.wrong, t.n), pct(t.abstained, t.n));
            }
        }
    }
    Ok(())
}
