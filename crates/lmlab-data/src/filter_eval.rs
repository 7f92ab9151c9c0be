//! `lmlab data eval-filters`: how well a `data prepare` run separated good pages from bad ones,
//! against a labelled crawl — the built-in world's `labels.jsonl` (one line per page: `url`,
//! `kind`, `language`, `duplicate_of`, `record_id`, ...), or any file with those fields.
//!
//! Each labelled page is found in the run's `kept.jsonl.gz` or `rejected.jsonl.gz` by its WARC
//! record id (else its URL). Kinds are either to keep (encyclopedia, news, forum, story, howto,
//! domain) or to remove (spam, clickbait, boilerplate, propaganda, misinformation, mirror,
//! near_duplicate). Duplicates are judged by group: when a copy was kept and the page it copies
//! was removed as a duplicate, the pipeline merely kept the other member of the pair, and both
//! count as handled right. Poisoned pages are counted as a row of their own whatever their kind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::prepare::{read_gz_lines, KeptDoc, RejectedDoc};

/// Kinds the pipeline should keep; every other labelled kind should be removed.
pub const KEEP_KINDS: [&str; 6] = ["encyclopedia", "news", "forum", "story", "howto", "domain"];
/// The targets: these kinds removed at ≥ 95%, ...
pub const REMOVE_TARGETS: [&str; 5] = ["spam", "clickbait", "boilerplate", "mirror", "near_duplicate"];
/// ... and these kept at ≥ 95%.
pub const KEEP_TARGETS: [&str; 4] = ["encyclopedia", "news", "forum", "story"];
pub const TARGET: f64 = 0.95;

#[derive(Debug, Clone, Deserialize)]
struct Label {
    url: String,
    kind: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    record_id: Option<String>,
    #[serde(default)]
    duplicate_of: Option<String>,
    #[serde(default)]
    poisoned: bool,
}

/// One row of the report: a page kind (with `poisoned` as an extra row).
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindRow {
    pub pages: u64,
    pub kept: u64,
    pub removed: u64,
    /// Labelled pages the run never saw (not in its inputs).
    pub missing: u64,
    /// Kept pages of a keep kind, or removed pages of a remove kind (duplicate pairs by group).
    pub correct: u64,
    pub should_keep: bool,
    /// stage/rule -> pages removed by it.
    pub removed_by: BTreeMap<String, u64>,
    /// pages by language -> (pages, kept).
    pub by_language: BTreeMap<String, (u64, u64)>,
}

impl KindRow {
    /// The share handled right: kept for a keep kind, removed for a remove kind.
    pub fn rate(&self) -> f64 {
        let seen = self.pages - self.missing;
        if seen == 0 {
            f64::NAN
        } else {
            self.correct as f64 / seen as f64
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FilterReport {
    pub kinds: BTreeMap<String, KindRow>,
    /// Removal as a detector of pages to remove: precision and recall.
    pub removal_precision: f64,
    pub removal_recall: f64,
    /// Keeping as a detector of pages to keep.
    pub keep_precision: f64,
    pub keep_recall: f64,
    pub pages: u64,
    pub missing: u64,
}

/// What happened to a page: kept, or removed by stage/rule.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    Kept,
    Removed(String),
}

pub fn eval_filters(labels: &Path, data: &Path) -> Result<FilterReport> {
    // Fates by record id and by URL.
    let mut fate: HashMap<String, Fate> = HashMap::new();
    for d in read_gz_lines::<KeptDoc>(&data.join("kept.jsonl.gz"))? {
        let d = d?;
        if let Some(u) = d.url {
            fate.insert(u, Fate::Kept);
        }
        fate.insert(d.id, Fate::Kept);
    }
    for r in read_gz_lines::<RejectedDoc>(&data.join("rejected.jsonl.gz"))? {
        let r = r?;
        let f = Fate::Removed(format!("{}/{}", r.stage, r.rule));
        if let Some(u) = r.url {
            fate.insert(u, f.clone());
        }
        fate.insert(r.id, f);
    }
    let text = std::fs::read_to_string(labels).with_context(|| format!("reading {}", labels.display()))?;
    let labels: Vec<Label> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}: line {} is not a page label (url, kind, ...)", labels.display(), i + 1))
        })
        .collect::<Result<_>>()?;
    let fate_of = |l: &Label| l.record_id.as_ref().and_then(|id| fate.get(id)).or_else(|| fate.get(&l.url)).cloned();
    let url_fate: HashMap<&str, Option<Fate>> = labels.iter().map(|l| (l.url.as_str(), fate_of(l))).collect();
    // Originals with a kept copy: their removal as a duplicate is the pair's one removal.
    let copy_kept: HashSet<&str> = labels
        .iter()
        .filter(|l| url_fate.get(l.url.as_str()) == Some(&Some(Fate::Kept)))
        .filter_map(|l| l.duplicate_of.as_deref())
        .collect();
    let removed_as_dup = |f: &Option<Fate>| matches!(f, Some(Fate::Removed(r)) if r.starts_with("dedup/"));
    let mut report = FilterReport::default();
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for l in &labels {
        let f = url_fate[l.url.as_str()].clone();
        let should_keep = KEEP_KINDS.contains(&l.kind.as_str()) && !l.poisoned;
        let kind = if l.poisoned { "poisoned".to_string() } else { l.kind.clone() };
        let row = report.kinds.entry(kind).or_default();
        row.should_keep = should_keep;
        row.pages += 1;
        report.pages += 1;
        let lang = row.by_language.entry(l.language.clone().unwrap_or_default()).or_default();
        lang.0 += 1;
        let Some(f) = f else {
            row.missing += 1;
            report.missing += 1;
            continue;
        };
        let kept = f == Fate::Kept;
        if kept {
            row.kept += 1;
            lang.1 += 1;
        } else if let Fate::Removed(rule) = &f {
            row.removed += 1;
            *row.removed_by.entry(rule.clone()).or_default() += 1;
        }
        // Duplicate pairs: a kept copy whose original went as a duplicate stands in for it.
        let swapped = match &l.duplicate_of {
            Some(orig) => kept && url_fate.get(orig.as_str()).is_some_and(removed_as_dup),
            None => !kept && removed_as_dup(&Some(f.clone())) && copy_kept.contains(l.url.as_str()),
        };
        let effectively_kept = kept != swapped;
        let correct = effectively_kept == should_keep;
        if correct {
            row.correct += 1;
        }
        match (should_keep, effectively_kept) {
            (false, false) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (true, true) => tn += 1,
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    report.removal_precision = ratio(tp, tp + fp);
    report.removal_recall = ratio(tp, tp + fn_);
    report.keep_precision = ratio(tn, tn + fn_);
    report.keep_recall = ratio(tn, tn + fp);
    Ok(report)
}

/// The report as a table, with the targets marked.
pub fn render(r: &FilterReport) -> String {
    let mut s = format!(
        "{:<16} {:>6} {:>6} {:>7} {:>8}  {:<6} {:>8}  top removal rules\n",
        "kind", "pages", "kept", "removed", "should", "right", "target"
    );
    for (kind, row) in &r.kinds {
        let target = if REMOVE_TARGETS.contains(&kind.as_str()) || KEEP_TARGETS.contains(&kind.as_str()) {
            if row.rate() >= TARGET {
                "met"
            } else {
                "MISSED"
            }
        } else {
            ""
        };
        let mut rules: Vec<(&String, &u64)> = row.removed_by.iter().collect();
        rules.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top = rules.iter().take(3).map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        s += &format!(
            "{:<16} {:>6} {:>6} {:>7} {:>8}  {:>5.1}% {:>8}  {top}\n",
            kind,
            row.pages,
            row.kept,
            row.removed,
            if row.should_keep { "keep" } else { "remove" },
            row.rate() * 100.0,
            target
        );
    }
    s += &format!(
        "\nremoval: precision {:.3}, recall {:.3}; keeping: precision {:.3}, recall {:.3}; {} pages, {} not in the run\n",
        r.removal_precision, r.removal_recall, r.keep_precision, r.keep_recall, r.pages, r.missing
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(path: &Path, lines: &[serde_json::Value]) {
        let mut w = crate::prepare::gz_writer(path).unwrap();
        for l in lines {
            writeln!(w, "{l}").unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn kinds_are_scored_with_duplicate_pairs_judged_by_group() {
        let dir = tempfile::tempdir().unwrap();
        let label = |url: &str, kind: &str, dup: Option<&str>| serde_json::json!({"url": url, "kind": kind, "language": "en", "duplicate_of": dup, "record_id": format!("<{url}>")});
        let labels = [
            label("a", "encyclopedia", None),
            label("b", "encyclopedia", None),
            label("c", "spam", None),
            label("d", "spam", None),
            // e's mirror m1 came first and was kept; e went as its duplicate: both right.
            label("e", "news", None),
            label("m1", "mirror", Some("e")),
            // f and its mirror m2 both kept: the mirror is wrong.
            label("f", "news", None),
            label("m2", "mirror", Some("f")),
            label("z", "story", None),
        ];
        std::fs::write(dir.path().join("labels.jsonl"), labels.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let kept = |id: &str| serde_json::json!({"id": format!("<{id}>"), "url": id, "file": "f", "offset": 0, "lang": "eng", "shard": 0, "start": 0, "tokens": 1, "keys": {"exact": 1, "bands": []}, "pii": {"emails": 0, "ips": 0, "phones": 0}});
        let rejected = |id: &str, stage: &str, rule: &str| serde_json::json!({"id": format!("<{id}>"), "url": id, "file": "f", "offset": 0, "stage": stage, "rule": rule});
        gz(&dir.path().join("kept.jsonl.gz"), &[kept("a"), kept("d"), kept("m1"), kept("f"), kept("m2")]);
        gz(
            &dir.path().join("rejected.jsonl.gz"),
            &[rejected("b", "gopher_quality", "x"), rejected("c", "url", "blocked_domain"), rejected("e", "dedup", "exact_duplicate")],
        );
        let r = eval_filters(&dir.path().join("labels.jsonl"), dir.path()).unwrap();
        let row = |k: &str| &r.kinds[k];
        assert_eq!((row("encyclopedia").kept, row("encyclopedia").removed, row("encyclopedia").correct), (1, 1, 1));
        assert_eq!((row("spam").correct, row("spam").rate()), (1, 0.5));
        assert_eq!((row("news").correct, row("mirror").correct), (2, 1));
        assert_eq!(row("mirror").removed_by.len(), 0);
        assert_eq!((row("story").missing, r.missing), (1, 1));
        assert!(row("story").rate().is_nan());
        // m1, kept in e's place, counts as removed and e as kept. Should remove: c, d, m1, m2;
        // effectively removed: b, c, m1. TP = c, m1; FP = b; FN = d, m2. Keeping: a, b, e, f
        // should stay (z is missing); a, d, e, f, m2 stay.
        assert_eq!((r.removal_precision, r.removal_recall), (2.0 / 3.0, 2.0 / 4.0));
        assert_eq!((r.keep_precision, r.keep_recall), (3.0 / 5.0, 3.0 / 4.0));
        let table = render(&r);
        assert!(table.contains("spam") && table.contains("MISSED"), "{table}");
        // A labels file that is not one names the line.
        std::fs::write(dir.path().join("bad.jsonl"), "{\"url\": \"a\", \"kind\": \"news\"}\n{\"nope\": 1}\n").unwrap();
        let err = format!("{:#}", eval_filters(&dir.path().join("bad.jsonl"), dir.path()).unwrap_err());
        assert!(err.contains("line 2"), "{err}");
    }
}
