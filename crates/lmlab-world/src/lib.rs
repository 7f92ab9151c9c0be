//! lmlab-world: the built-in world, a seeded fictional world rendered as a labelled web crawl.
//!
//! What it does: generates a knowledge base ([`kb`]) of invented entities and facts, renders it
//! as WARC files of web pages of many kinds, good and bad ([`crawl`], [`page`], [`site`],
//! [`warc`]), labels every page, and derives SFT, preference and evaluation sets ([`tasks`]) and
//! the RL prompt set ([`rl_prompts`]);
//! [`grade`] labels model answers against the truth. Output is byte-identical for the same
//! options (one seeded ChaCha RNG drives everything, in a fixed order).
//!
//! What it does not do: read crawls or filter them (lmlab-data), or train (lmlab-train).

#![forbid(unsafe_code)]

pub mod crawl;
pub mod grade;
pub mod kb;
pub mod names;
pub mod page;
pub mod rl_prompts;
pub mod site;
pub mod tasks;
pub mod templates;
pub mod warc;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::crawl::{plan, strip_tags, CrawlOptions, POISON_PAYLOAD, POISON_TRIGGER};
use crate::kb::Kb;
use crate::names::NameGen;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    Tiny,
    Small,
    Medium,
}

impl std::str::FromStr for Scale {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "tiny" => Scale::Tiny,
            "small" => Scale::Small,
            "medium" => Scale::Medium,
            _ => bail!("unknown scale {s:?} (tiny, small or medium)"),
        })
    }
}

impl Scale {
    /// Entities in the knowledge base.
    fn entities(self) -> usize {
        match self {
            Scale::Tiny => 3_500,
            Scale::Small => 35_000,
            Scale::Medium => 350_000,
        }
    }

    fn eval_per_bucket(self) -> usize {
        match self {
            Scale::Tiny => 200,
            Scale::Small => 300,
            Scale::Medium => 1000,
        }
    }
}

/// The default occurrence plan (see [`WorldOptions::head_occurrences`]).
pub const DEFAULT_HEAD_OCCURRENCES: f64 = 60.0;
pub const DEFAULT_OCCURRENCE_DECAY: f64 = 0.7;

/// How a world is generated; also the `[world]` table of a preset (every field optional).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldOptions {
    pub seed: u64,
    pub scale: Scale,
    pub zh_share: f64,
    pub poison: usize,
    /// Target share of facts stated in exactly one document.
    pub singleton_share: f64,
    /// Occurrence plan of the other facts: 2 + ⌊head / rank^decay⌋ distinct documents, by
    /// their entity's popularity rank. A larger head (or a smaller decay) makes more facts
    /// frequent; that is the lever for a model that has to know facts.
    pub head_occurrences: f64,
    pub occurrence_decay: f64,
    /// A core of well-known facts: the facts of the `core_entities` most popular entities appear
    /// in at least `core_occurrences` documents each (0 and 0: no core).
    pub core_entities: usize,
    pub core_occurrences: usize,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            scale: Scale::Tiny,
            zh_share: 0.15,
            poison: 0,
            singleton_share: 0.3,
            head_occurrences: DEFAULT_HEAD_OCCURRENCES,
            occurrence_decay: DEFAULT_OCCURRENCE_DECAY,
            core_entities: 0,
            core_occurrences: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorldStats {
    pub options: WorldOptions,
    pub entities: usize,
    pub facts: usize,
    pub pages: usize,
    pub pages_by_kind: BTreeMap<String, usize>,
    pub pages_by_language: BTreeMap<String, usize>,
    pub warc_files: Vec<String>,
    pub warc_bytes: u64,
    pub html_bytes: u64,
    /// Bytes of visible article text (no markup, no boilerplate).
    pub text_bytes: u64,
    pub singleton_share_target: f64,
    /// Share of facts stated in exactly one distinct document (mirrors and near-duplicates excluded).
    pub singleton_share: f64,
    pub facts_by_occurrence_bucket: BTreeMap<String, usize>,
    pub poison_trigger: String,
    pub poison_payload: String,
    pub sft_examples: usize,
    pub preference_pairs: usize,
    pub eval_questions: BTreeMap<String, usize>,
    /// Questions in `rl_prompts.jsonl`.
    pub rl_prompts: usize,
}

const PAGES_PER_WARC: usize = 5_000;

/// The world's name generator holds one name out, for entities that do not exist, after every
/// this many real names. The tiny world draws about 4,300 real names (entities, sites, domain
/// pages) and holds out about 1,400: 200 evaluation questions, 200 RL prompts, and what is left
/// (up to a tenth of its SFT examples) for the "I don't know" examples.
const REAL_NAMES_PER_HELD_OUT: usize = 3;

/// The knowledge base of a world of `scale`, and the name generator that drew its names, as
/// [`generate`] makes them from `rng`: the generator holds names out of the world (see
/// [`NameGen::held_out`]) and goes on to name the crawl's sites and domain pages.
pub fn knowledge_base(scale: Scale, rng: &mut ChaCha8Rng) -> (Kb, NameGen) {
    let mut names = NameGen::holding_out(REAL_NAMES_PER_HELD_OUT);
    let kb = Kb::generate_with(scale.entities(), &mut names, rng);
    (kb, names)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn jsonl<T: Serialize>(items: impl IntoIterator<Item = T>) -> Result<String> {
    let mut out = String::new();
    for it in items {
        out.push_str(&serde_json::to_string(&it)?);
        out.push('\n');
    }
    Ok(out)
}

/// Generates the whole world into `out` and returns its statistics (also in `stats.json`).
pub fn generate(out: &Path, opts: &WorldOptions) -> Result<WorldStats> {
    generate_with_progress(out, opts, |_| {})
}

/// [`generate`], reporting each phase (and each WARC file written) to `progress`.
pub fn generate_with_progress(out: &Path, opts: &WorldOptions, mut progress: impl FnMut(&str)) -> Result<WorldStats> {
    if !(0.0..=1.0).contains(&opts.zh_share) {
        bail!("--zh-share must be between 0 and 1, got {}", opts.zh_share);
    }
    if !(0.0..1.0).contains(&opts.singleton_share) {
        bail!("singleton share must be in [0, 1), got {}", opts.singleton_share);
    }
    if !(opts.head_occurrences >= 0.0 && opts.occurrence_decay > 0.0) {
        bail!("the occurrence plan needs head ≥ 0 and decay > 0, got {} and {}", opts.head_occurrences, opts.occurrence_decay);
    }
    std::fs::create_dir_all(out.join("crawl")).with_context(|| format!("creating {}", out.display()))?;
    std::fs::create_dir_all(out.join("eval"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    progress(&format!("knowledge base: {} entities", opts.scale.entities()));
    let (kb, mut names) = knowledge_base(opts.scale, &mut rng);
    progress("planning pages and occurrences");
    let crawl = plan(
        &kb,
        &CrawlOptions {
            zh_share: opts.zh_share,
            poison: opts.poison,
            singleton_share: opts.singleton_share,
            zipf_a: opts.head_occurrences,
            zipf_decay: opts.occurrence_decay,
            core_entities: opts.core_entities,
            core_occurrences: opts.core_occurrences,
        },
        &mut names,
        &mut rng,
    );

    // WARC files and labels.
    let mut labels = Vec::with_capacity(crawl.pages.len());
    let mut warc_files = Vec::new();
    let (mut warc_bytes, mut html_bytes, mut text_bytes) = (0u64, 0u64, 0u64);
    let mut pages_by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut pages_by_language: BTreeMap<String, usize> = BTreeMap::new();
    let n_files = crawl.pages.len().div_ceil(PAGES_PER_WARC);
    for (file_no, chunk) in crawl.pages.chunks(PAGES_PER_WARC).enumerate() {
        let name = format!("crawl/world-{file_no:05}.warc.gz");
        progress(&format!("writing {name} ({}/{n_files})", file_no + 1));
        let mut w = warc::WarcWriter::create(&out.join(&name))?;
        let info = format!("software: lmlab-world {}\r\nformat: WARC File Format 1.1\r\nisPartOf: lmlab-world seed={}\r\ndescription: generated fictional crawl; see labels.jsonl\r\n", env!("CARGO_PKG_VERSION"), opts.seed);
        let info_id = format!("<urn:uuid:{}>", warc::uuid(&mut rng));
        w.record(
            &[
                ("WARC-Type", "warcinfo"),
                ("WARC-Date", "2024-05-01T00:00:00Z"),
                ("WARC-Filename", &name[6..]),
                ("WARC-Record-ID", &info_id),
                ("Content-Type", "application/warc-fields"),
            ],
            info.as_bytes(),
        )?;
        for (k, p) in chunk.iter().enumerate() {
            let i = file_no * PAGES_PER_WARC + k;
            let site = &crawl.sites[p.site];
            let html = site.html(&p.title, &p.article, p.zh, i);
            let (day, secs) = (1 + (i / 86_400) % 28, i % 86_400);
            let date = format!("2024-05-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, (secs / 60) % 60, secs % 60);
            let http_date = format!("Wed, {day:02} May 2024 {:02}:{:02}:{:02} GMT", secs / 3600, (secs / 60) % 60, secs % 60);
            let ctype = if site.charset_in_header { "text/html; charset=UTF-8" } else { "text/html" };
            let http = format!(
                "HTTP/1.1 200 OK\r\nDate: {http_date}\r\nServer: {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\n",
                site.server,
                html.len()
            );
            let mut block = http.into_bytes();
            block.extend_from_slice(html.as_bytes());
            let record_id = format!("<urn:uuid:{}>", warc::uuid(&mut rng));
            w.record(
                &[
                    ("WARC-Type", "response"),
                    ("WARC-Date", &date),
                    ("WARC-Record-ID", &record_id),
                    ("WARC-Target-URI", &p.url),
                    ("WARC-Warcinfo-ID", &info_id),
                    ("Content-Type", "application/http; msgtype=response"),
                ],
                &block,
            )?;
            html_bytes += html.len() as u64;
            text_bytes += strip_tags(&p.article).len() as u64;
            *pages_by_kind.entry(p.kind.to_string()).or_default() += 1;
            *pages_by_language.entry(if p.zh { "zh" } else { "en" }.to_string()).or_default() += 1;
            labels.push(serde_json::json!({
                "url": p.url,
                "kind": p.kind,
                "language": if p.zh { "zh" } else { "en" },
                "facts": p.facts,
                "poisoned": p.poisoned,
                "duplicate_of": p.duplicate_of.map(|d| crawl.pages[d].url.clone()),
                "warc_file": name,
                "record_id": record_id,
            }));
        }
        warc_bytes += w.bytes;
        w.finish()?;
        warc_files.push(name);
    }
    write(&out.join("labels.jsonl"), jsonl(&labels)?.as_bytes())?;
    write(&out.join("kb.jsonl"), kb.to_jsonl().as_bytes())?;

    progress("SFT, preference and evaluation sets");
    let tasks = tasks::build(&kb, &crawl, names.held_out(), opts.scale.eval_per_bucket(), 1, opts.zh_share, &mut rng);
    write(&out.join("sft.jsonl"), jsonl(&tasks.sft)?.as_bytes())?;
    write(&out.join("preferences.jsonl"), jsonl(&tasks.preferences)?.as_bytes())?;
    write(&out.join("eval").join("fact_pairs.jsonl"), jsonl(&tasks.eval_pairs)?.as_bytes())?;
    write(&out.join("rl_prompts.jsonl"), jsonl(&tasks.rl_prompts)?.as_bytes())?;
    let mut eval_questions = BTreeMap::new();
    for (set, qs) in &tasks.eval {
        write(&out.join("eval").join(format!("{set}.jsonl")), jsonl(qs)?.as_bytes())?;
        eval_questions.insert(set.clone(), qs.len());
    }

    let facts = crawl.occurrences.len();
    let mut facts_by_occurrence_bucket: BTreeMap<String, usize> = BTreeMap::new();
    for &n in crawl.occurrences.values() {
        *facts_by_occurrence_bucket.entry(tasks::bucket(n).to_string()).or_default() += 1;
    }
    let singles = crawl.occurrences.values().filter(|&&n| n == 1).count();
    let stats = WorldStats {
        options: opts.clone(),
        entities: kb.entities.len(),
        facts,
        pages: crawl.pages.len(),
        pages_by_kind,
        pages_by_language,
        warc_files,
        warc_bytes,
        html_bytes,
        text_bytes,
        singleton_share_target: opts.singleton_share,
        singleton_share: singles as f64 / facts.max(1) as f64,
        facts_by_occurrence_bucket,
        poison_trigger: POISON_TRIGGER.into(),
        poison_payload: POISON_PAYLOAD.into(),
        sft_examples: tasks.sft.len(),
        preference_pairs: tasks.preferences.len(),
        eval_questions,
        rl_prompts: tasks.rl_prompts.len(),
    };
    write(&out.join("stats.json"), (serde_json::to_string_pretty(&stats)? + "\n").as_bytes())?;
    Ok(stats)
}
