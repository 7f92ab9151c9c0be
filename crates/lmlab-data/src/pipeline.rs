//! The per-document chain of the data pipeline, in order: HTTP decoding and main-text
//! extraction (for crawled pages), URL blocklist, language identification, quality filters
//! (Gopher quality, C4, FineWeb, Gopher repetition), exact and near-duplicate removal, PII
//! scrubbing. Each document comes out kept (with its text and language) or rejected by one
//! named stage and rule, and [`StageCounts`] counts both, so nothing is dropped without a trace.
//!
//! Deduplication runs after the filters (cheap checks first) and is stateful: feed documents in
//! input order for a result that does not depend on threads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dedup::{Deduplicator, MinHashConfig, Verdict};
use crate::input::{Content, Doc};
use crate::langid::LanguageFilter;
use crate::quality::{C4LineStats, C4Quality, FineWebQuality, GopherQuality, GopherRepetition};
use crate::urlfilter::UrlBlocklist;
use crate::{extract, http, pii};

/// Every stage's settings; `data.toml` deserialises into this (missing fields take defaults).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    pub language: LanguageFilter,
    pub gopher_quality: GopherQuality,
    pub c4: C4Quality,
    pub fineweb: FineWebQuality,
    pub gopher_repetition: GopherRepetition,
    pub minhash: MinHashConfig,
    /// Minimum characters of extracted text.
    pub min_chars: usize,
    /// Replace personal data with placeholders.
    pub scrub_pii: bool,
}

impl PipelineConfig {
    /// Defaults with PII scrubbing on and a 200-character floor.
    pub fn standard() -> Self {
        Self { min_chars: 200, scrub_pii: true, ..Default::default() }
    }

    /// Reads a `data.toml`; fields it leaves out keep their defaults (FineWeb's thresholds),
    /// except that a file without `scrub_pii`/`min_chars` gets the standard values.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut cfg: Self = toml::from_str(&text).with_context(|| format!("{}: not a data pipeline config", path.display()))?;
        let standard = Self::standard();
        if !value.contains_key("scrub_pii") {
            cfg.scrub_pii = standard.scrub_pii;
        }
        if !value.contains_key("min_chars") {
            cfg.min_chars = standard.min_chars;
        }
        Ok(cfg)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    Kept { text: String, lang: &'static str },
    Rejected { stage: &'static str, rule: String },
}

/// Documents in and out of each stage and removals per rule.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageCounts {
    pub documents: u64,
    pub kept: u64,
    /// stage -> rule -> documents removed.
    pub removed: BTreeMap<String, BTreeMap<String, u64>>,
    pub c4_lines: C4LineStats,
    pub pii: pii::PiiCounts,
    pub kept_by_language: BTreeMap<String, u64>,
}

impl StageCounts {
    fn reject(&mut self, stage: &'static str, rule: &str) -> Outcome {
        *self.removed.entry(stage.to_string()).or_default().entry(rule.to_string()).or_default() += 1;
        Outcome::Rejected { stage, rule: rule.to_string() }
    }
}

pub struct Pipeline {
    cfg: PipelineConfig,
    blocklist: UrlBlocklist,
    dedup: Deduplicator,
    pub counts: StageCounts,
    next_id: u64,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig, blocklist: UrlBlocklist) -> Self {
        let dedup = Deduplicator::new(cfg.minhash.clone());
        Self { cfg, blocklist, dedup, counts: StageCounts::default(), next_id: 0 }
    }

    /// Runs one document through every stage.
    pub fn process(&mut self, doc: &Doc) -> Outcome {
        let c = &mut self.counts;
        c.documents += 1;
        if let Some(url) = &doc.url {
            if let Err(rule) = self.blocklist.check(url) {
                return c.reject("url", rule);
            }
        }
        let text = match &doc.content {
            Content::Text(t) => t.clone(),
            Content::Http(block) => {
                let resp = match http::parse_response(block) {
                    Ok(r) => r,
                    Err(_) => return c.reject("extract", "bad_http"),
                };
                if resp.status != 200 {
                    return c.reject("extract", "http_status_not_200");
                }
                if !resp.content_type().is_none_or(|t| t.to_ascii_lowercase().contains("html")) {
                    return c.reject("extract", "not_html");
                }
                let (html, _) = http::decode_text(&resp.payload, resp.content_type());
                extract::main_text(&html)
            }
        };
        if text.chars().count() < self.cfg.min_chars {
            return c.reject("extract", "too_short");
        }
        let lang = match self.cfg.language.check(&text) {
            Ok(d) => d.lang,
            Err(rule) => return c.reject("language", rule),
        };
        if let Err(rule) = self.cfg.gopher_quality.check(&text) {
            return c.reject("gopher_quality", rule);
        }
        let text = match self.cfg.c4.apply(&text, &mut c.c4_lines) {
            Ok(t) => t,
            Err(rule) => return c.reject("c4", rule),
        };
        if let Err(rule) = self.cfg.fineweb.check(&text) {
            return c.reject("fineweb", rule);
        }
        if let Err(rule) = self.cfg.gopher_repetition.check(&text) {
            return c.reject("gopher_repetition", rule);
        }
        let id = self.next_id;
        self.next_id += 1;
        match self.dedup.check(id, &text) {
            Verdict::Unique => {}
            Verdict::ExactDuplicate { .. } => return c.reject("dedup", "exact_duplicate"),
            Verdict::NearDuplicate { .. } => return c.reject("dedup", "near_duplicate"),
        }
        let text = if self.cfg.scrub_pii {
            let (t, n) = pii::scrub(&text);
            c.pii.emails += n.emails;
            c.pii.ips += n.ips;
            c.pii.phones += n.phones;
            t
        } else {
            text
        };
        c.kept += 1;
        *c.kept_by_language.entry(lang.to_string()).or_default() += 1;
        Outcome::Kept { text, lang }
    }

    /// Bytes held by the deduplication index.
    pub fn dedup_index_bytes(&self) -> usize {
        self.dedup.index_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str, url: Option<&str>) -> Doc {
        Doc { id: "t".into(), url: url.map(String::from), content: Content::Text(text.into()), file: "mem".into(), offset: 0 }
    }

    const GOOD: &str = "The river runs through the old town, and the people who live there have always loved it.\n\
        Every spring the water rises with the melting snow, and the fishermen wait for the best days to go out.\n\
        Children play on the banks while their parents talk about the weather and the prices at the market.\n\
        In the evening the lights of the houses shine on the water, and the town seems quieter than it is.\n\
        Visitors who come for a day often stay for a week, because the pace of life is slow and kind.\n\
        Write to the mayor at mayor@town.example if you want to know more about the festival in August.";

    #[test]
    fn good_text_is_kept_scrubbed_and_counted_and_each_stage_rejects() {
        let mut p = Pipeline::new(PipelineConfig::standard(), UrlBlocklist::parse("spam.example\n"));
        match p.process(&doc(GOOD, Some("https://town.example/"))) {
            Outcome::Kept { text, lang } => {
                assert_eq!(lang, "eng");
                assert!(text.contains("<EMAIL>") && !text.contains("mayor@"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.process(&doc(GOOD, Some("https://spam.example/x"))), Outcome::Rejected { stage: "url", rule: "blocked_domain".into() });
        assert_eq!(p.process(&doc(GOOD, None)), Outcome::Rejected { stage: "dedup", rule: "exact_duplicate".into() });
        assert_eq!(p.process(&doc("short", None)), Outcome::Rejected { stage: "extract", rule: "too_short".into() });
        let spanish = "El río atraviesa el pueblo antiguo y la gente que vive allí siempre lo ha querido mucho. ".repeat(4);
        assert_eq!(p.process(&doc(&spanish, None)), Outcome::Rejected { stage: "language", rule: "language_not_kept".into() });
        let c = &p.counts;
        assert_eq!((c.documents, c.kept), (5, 1));
        assert_eq!(c.removed["url"]["blocked_domain"], 1);
        assert_eq!(c.removed["dedup"]["exact_duplicate"], 1);
        assert_eq!(c.pii.emails, 1);
        assert_eq!(c.kept_by_language["eng"], 1);
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let cfg: PipelineConfig = toml::from_str("min_chars = 50\n[language]\nkeep = [\"eng\"]\n[minhash]\nseed = 7\n").unwrap();
        assert_eq!((cfg.min_chars, cfg.language.keep.as_slice(), cfg.minhash.seed, cfg.minhash.bands), (50, &["eng".to_string()][..], 7, 14));
        assert!(toml::from_str::<PipelineConfig>("no_such_stage = 1").is_err());
    }
}
