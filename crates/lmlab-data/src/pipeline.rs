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

use crate::dedup::{DedupKeys, Deduplicator, MinHashConfig, MinHasher, Verdict};
use crate::input::{Content, Doc};
use crate::langid::{Identifier, LanguageFilter};
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
    /// Settings that replace the ones above for documents of one language (ISO 639-3 code as
    /// the language stage reports it): FineWeb's thresholds are calibrated on English.
    pub languages: BTreeMap<String, LanguageRules>,
}

/// One language's replacements; a stage given here replaces that stage's settings whole
/// (fields it leaves out take the stage's defaults, not the top-level values).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageRules {
    pub min_chars: Option<usize>,
    pub gopher_quality: Option<GopherQuality>,
    pub c4: Option<C4Quality>,
    pub fineweb: Option<FineWebQuality>,
    pub gopher_repetition: Option<GopherRepetition>,
}

/// Rules for Mandarin text, where every Han character counts as a word
/// ([`crate::quality::words`]): about three characters carry what an English word does, words
/// are one character long, C4's "three words per line" would drop every line (there are no
/// spaces), and the stop words are Chinese function words.
pub fn mandarin_rules() -> LanguageRules {
    LanguageRules {
        min_chars: Some(60),
        gopher_quality: Some(GopherQuality {
            min_doc_words: 50,
            min_avg_word_length: 1.0,
            max_avg_word_length: 4.0,
            stop_words: ["的", "了", "是", "在", "和", "有", "也", "就", "不", "这", "与", "为", "以", "于"].map(String::from).to_vec(),
            ..Default::default()
        }),
        c4: Some(C4Quality { min_words_per_line: 0, min_num_sentences: 3, ..Default::default() }),
        fineweb: Some(FineWebQuality { short_line_length: 10, ..Default::default() }),
        gopher_repetition: None,
    }
}

impl PipelineConfig {
    /// Defaults with PII scrubbing on and a 200-character floor.
    pub fn standard() -> Self {
        Self { min_chars: 200, scrub_pii: true, languages: [("cmn".to_string(), mandarin_rules())].into(), ..Default::default() }
    }

    /// Reads a `data.toml`; fields it leaves out keep their defaults (FineWeb's thresholds),
    /// except that a file without `scrub_pii`/`min_chars`/`languages` gets the standard values.
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
        if !value.contains_key("languages") {
            cfg.languages = standard.languages;
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    pub fn reject(&mut self, stage: &'static str, rule: &str) -> Outcome {
        *self.removed.entry(stage.to_string()).or_default().entry(rule.to_string()).or_default() += 1;
        Outcome::Rejected { stage, rule: rule.to_string() }
    }

    /// Adds another run's counts (a part of the same crawl) to these.
    pub fn add(&mut self, other: &StageCounts) {
        self.documents += other.documents;
        self.kept += other.kept;
        for (stage, rules) in &other.removed {
            let mine = self.removed.entry(stage.clone()).or_default();
            for (rule, n) in rules {
                *mine.entry(rule.clone()).or_default() += n;
            }
        }
        self.c4_lines.add(&other.c4_lines);
        self.pii.add(&other.pii);
        for (lang, n) in &other.kept_by_language {
            *self.kept_by_language.entry(lang.clone()).or_default() += n;
        }
    }
}

/// A document after the stages that look at it alone, before deduplication.
#[derive(Debug, Clone)]
pub struct Filtered {
    pub verdict: Result<Candidate, (&'static str, &'static str)>,
    /// C4's line removals in this document (counted whether or not it is kept).
    pub c4_lines: C4LineStats,
}

/// A document that passed every filter: its final text (PII scrubbed), language and dedup keys.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub text: String,
    pub lang: &'static str,
    pub keys: DedupKeys,
    pub pii: pii::PiiCounts,
}

/// The per-document stages: no state, so any number of threads share one.
pub struct Filters {
    cfg: PipelineConfig,
    blocklist: UrlBlocklist,
    minhash: MinHasher,
    identifier: Identifier,
}

impl Filters {
    /// Fails only when the language identifier's model cannot be loaded.
    pub fn new(cfg: PipelineConfig, blocklist: UrlBlocklist) -> anyhow::Result<Self> {
        let minhash = MinHasher::new(cfg.minhash.clone());
        let identifier = Identifier::from_settings(&cfg.language)?;
        Ok(Self { cfg, blocklist, minhash, identifier })
    }

    /// The loaded language identifier.
    pub fn identifier(&self) -> &Identifier {
        &self.identifier
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The text the quality stages see: the document's own text, or an HTTP response's main
    /// text (an extraction rule names why there is none).
    pub fn main_text(&self, doc: &Doc) -> Result<String, &'static str> {
        match &doc.content {
            Content::Text(t) => Ok(t.clone()),
            Content::Http(block) => {
                // Old ARC files hold records with no content at all (length -1 or 0).
                if block.iter().all(u8::is_ascii_whitespace) {
                    return Err("empty_record");
                }
                let resp = http::parse_response(block).map_err(|_| "bad_http")?;
                if resp.status != 200 {
                    return Err("http_status_not_200");
                }
                // A missing or empty Content-Type (common before ~2005, and in ClueWeb09) is
                // taken as HTML, as browsers sniff it.
                let content_type = resp.content_type().filter(|t| !t.trim().is_empty());
                if !content_type.is_none_or(|t| t.to_ascii_lowercase().contains("html")) {
                    return Err("not_html");
                }
                let (html, _) = http::decode_text(&resp.payload, content_type);
                Ok(extract::main_text(&html))
            }
        }
    }

    /// URL blocklist, extraction, language, quality filters, dedup keys, PII scrubbing.
    pub fn run(&self, doc: &Doc) -> Filtered {
        let mut c4_lines = C4LineStats::default();
        let verdict = self.stages(doc, &mut c4_lines);
        Filtered { verdict, c4_lines }
    }

    fn stages(&self, doc: &Doc, c4_lines: &mut C4LineStats) -> Result<Candidate, (&'static str, &'static str)> {
        if doc.truncated {
            return Err(("extract", "truncated_record"));
        }
        if let Some(url) = &doc.url {
            self.blocklist.check(url).map_err(|rule| ("url", rule))?;
        }
        let text = self.main_text(doc).map_err(|rule| ("extract", rule))?;
        // Language first: how short is too short, and the quality thresholds, depend on it.
        let detected = self.cfg.language.check(&self.identifier, &text);
        let rules = detected.as_ref().ok().and_then(|d| self.cfg.languages.get(d.lang));
        let cfg = &self.cfg;
        if text.chars().count() < rules.and_then(|r| r.min_chars).unwrap_or(cfg.min_chars) {
            return Err(("extract", "too_short"));
        }
        let lang = detected.map_err(|rule| ("language", rule))?.lang;
        rules
            .and_then(|r| r.gopher_quality.as_ref())
            .unwrap_or(&cfg.gopher_quality)
            .check(&text)
            .map_err(|rule| ("gopher_quality", rule))?;
        let text = rules.and_then(|r| r.c4.as_ref()).unwrap_or(&cfg.c4).apply(&text, c4_lines).map_err(|rule| ("c4", rule))?;
        rules.and_then(|r| r.fineweb.as_ref()).unwrap_or(&cfg.fineweb).check(&text).map_err(|rule| ("fineweb", rule))?;
        rules
            .and_then(|r| r.gopher_repetition.as_ref())
            .unwrap_or(&cfg.gopher_repetition)
            .check(&text)
            .map_err(|rule| ("gopher_repetition", rule))?;
        // Keys before scrubbing: placeholders would make pages that differ only in an
        // address look identical.
        let keys = self.minhash.keys(&text);
        let (text, pii) = if self.cfg.scrub_pii { pii::scrub(&text) } else { (text, pii::PiiCounts::default()) };
        Ok(Candidate { text, lang, keys, pii })
    }
}

/// The filters plus the sequential part: the dedup index and the counts. Feed documents in
/// input order (compute [`Filters::run`] on any threads) for a result independent of threads.
pub struct Pipeline {
    filters: Filters,
    dedup: Deduplicator,
    pub counts: StageCounts,
    next_id: u64,
}

impl Pipeline {
    /// Fails only when the language identifier's model cannot be loaded.
    pub fn new(cfg: PipelineConfig, blocklist: UrlBlocklist) -> anyhow::Result<Self> {
        let dedup = Deduplicator::new(cfg.minhash.clone());
        Ok(Self { filters: Filters::new(cfg, blocklist)?, dedup, counts: StageCounts::default(), next_id: 0 })
    }

    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    /// Runs one document through every stage.
    pub fn process(&mut self, doc: &Doc) -> Outcome {
        let filtered = self.filters.run(doc);
        match self.commit(filtered) {
            Ok(c) => Outcome::Kept { text: c.text, lang: c.lang },
            Err((rejected, _)) => rejected,
        }
    }

    /// Counts a filtered document and deduplicates it against those committed before; gives
    /// the candidate back when it is kept, else the rejection (with the dedup keys when it
    /// got as far as dedup).
    pub fn commit(&mut self, filtered: Filtered) -> Result<Candidate, (Outcome, Option<DedupKeys>)> {
        let c = &mut self.counts;
        c.documents += 1;
        c.c4_lines.add(&filtered.c4_lines);
        let cand = filtered.verdict.map_err(|(stage, rule)| (c.reject(stage, rule), None))?;
        let id = self.next_id;
        self.next_id += 1;
        match self.dedup.check_keys(id, &cand.keys) {
            Verdict::Unique => {}
            Verdict::ExactDuplicate { .. } => return Err((c.reject("dedup", "exact_duplicate"), Some(cand.keys))),
            Verdict::NearDuplicate { .. } => return Err((c.reject("dedup", "near_duplicate"), Some(cand.keys))),
        }
        c.pii.add(&cand.pii);
        c.kept += 1;
        *c.kept_by_language.entry(cand.lang.to_string()).or_default() += 1;
        Ok(cand)
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
        Doc {
            id: "t".into(),
            url: url.map(String::from),
            content: Content::Text(text.into()),
            file: "mem".into(),
            offset: 0,
            truncated: false,
        }
    }

    const GOOD: &str = "The river runs through the old town, and the people who live there have always loved it.\n\
        Every spring the water rises with the melting snow, and the fishermen wait for the best days to go out.\n\
        Children play on the banks while their parents talk about the weather and the prices at the market.\n\
        In the evening the lights of the houses shine on the water, and the town seems quieter than it is.\n\
        Visitors who come for a day often stay for a week, because the pace of life is slow and kind.\n\
        Write to the mayor at mayor@town.example if you want to know more about the festival in August.";

    #[test]
    fn good_text_is_kept_scrubbed_and_counted_and_each_stage_rejects() {
        let mut p = Pipeline::new(PipelineConfig::standard(), UrlBlocklist::parse("spam.example\n")).unwrap();
        match p.process(&doc(GOOD, Some("https://town.example/"))) {
            Outcome::Kept { text, lang } => {
                assert_eq!(lang, "eng");
                assert!(text.contains("<EMAIL>") && !text.contains("mayor@"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.process(&doc(GOOD, Some("https://spam.example/x"))),
            Outcome::Rejected { stage: "url", rule: "blocked_domain".into() }
        );
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
    fn old_crawl_responses_are_extracted_and_truncated_records_rejected() {
        let page = format!("<html><body><p>{}</p></body></html>", GOOD.replace('\n', "</p><p>"));
        let mut p = Pipeline::new(PipelineConfig { min_chars: 200, ..Default::default() }, UrlBlocklist::default()).unwrap();
        // Bare-LF headers with no, or an empty, Content-Type, and a gzip header on a body stored
        // decoded: all extracted. (Distinct URLs in the text would not help: dedup sees the text,
        // so each variant is checked on a fresh pipeline.)
        for head in [
            "HTTP/1.0 200 OK\n\n",
            "HTTP/1.0 200 OK\nContent-Type:\n\n",
            "HTTP/1.1 200 OK\r\nContent-Type: \r\nContent-Encoding: gzip\r\n\r\n",
        ] {
            let d = Doc { content: Content::Http(format!("{head}{page}").into_bytes()), ..doc("", None) };
            let mut p = Pipeline::new(PipelineConfig { min_chars: 200, ..Default::default() }, UrlBlocklist::default()).unwrap();
            assert!(matches!(p.process(&d), Outcome::Kept { .. }), "{head:?}: {:?}", p.counts.removed);
        }
        let empty = Doc { content: Content::Http(b"\r\n".to_vec()), ..doc("", None) };
        assert_eq!(p.process(&empty), Outcome::Rejected { stage: "extract", rule: "empty_record".into() });
        let cut = Doc { content: Content::Http(format!("HTTP/1.0 200 OK\n\n{page}").into_bytes()), truncated: true, ..doc("", None) };
        assert_eq!(p.process(&cut), Outcome::Rejected { stage: "extract", rule: "truncated_record".into() });
        assert_eq!(p.counts.removed["extract"]["truncated_record"], 1);
    }

    #[test]
    fn chinese_pages_meet_mandarin_rules_not_english_ones() {
        let zh = "河流穿过古老的小镇，住在那里的人们一直很喜欢它。每年春天，河水随着融雪上涨，渔民们等待最好的日子出海。\n\
            孩子们在岸边玩耍，父母们谈论天气和市场上的价格。晚上，房屋的灯光照在水面上，小镇显得比实际更安静。\n\
            来这里游玩一天的游客常常会住上一个星期，因为这里的生活节奏缓慢而友善。";
        let mut p = Pipeline::new(PipelineConfig::standard(), UrlBlocklist::default()).unwrap();
        match p.process(&doc(zh, None)) {
            Outcome::Kept { lang, .. } => assert_eq!(lang, "cmn"),
            other => panic!("{other:?}"),
        }
        // Under the English thresholds alone it is too short (fewer than 200 characters).
        let english_only = PipelineConfig { languages: Default::default(), ..PipelineConfig::standard() };
        let mut p = Pipeline::new(english_only, UrlBlocklist::default()).unwrap();
        assert_eq!(p.process(&doc(zh, None)), Outcome::Rejected { stage: "extract", rule: "too_short".into() });
        // Chinese spam (a keyword list without function words) still goes.
        let spam = "便宜手机 最好手机 手机优惠 手机折扣 免费手机 手机促销 ".repeat(8);
        let mut p = Pipeline::new(PipelineConfig::standard(), UrlBlocklist::default()).unwrap();
        assert!(matches!(p.process(&doc(&spam, None)), Outcome::Rejected { .. }));
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let cfg: PipelineConfig = toml::from_str("min_chars = 50\n[language]\nkeep = [\"eng\"]\n[minhash]\nseed = 7\n").unwrap();
        assert_eq!(
            (cfg.min_chars, cfg.language.keep.as_slice(), cfg.minhash.seed, cfg.minhash.bands),
            (50, &["eng".to_string()][..], 7, 14)
        );
        assert!(toml::from_str::<PipelineConfig>("no_such_stage = 1").is_err());
    }
}
