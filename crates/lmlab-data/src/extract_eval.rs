//! Main-text extraction scored on pages whose main text is known, the way each set's makers
//! score it, with trafilatura on the same pages in the same run (`lmlab bench extract`).
//!
//! Sets:
//! - **trafilatura-eval** (trafilatura's evaluation pages: `evaldata.json` and `pages/`): each
//!   page lists snippets that belong to its main text (`with`) and snippets that do not
//!   (`without`). A snippet counts as extracted when its whitespace-normalised text is in the
//!   whitespace-normalised output; at most 6 of each side per page. A `with` snippet found is a
//!   true positive, missed a false negative; a `without` snippet found is a false positive.
//!   Precision, recall and F1 are micro-averaged over all snippets.
//! - **zh-cwced** (`ground-truth.json` with each page's `articleBody`, pages in `dev/`), and any
//!   folder of `NAME.html[.gz]` pages beside `NAME.txt` main texts: word 4-gram shingles, Han
//!   characters each a word ([`words`]), counted per page; per page, precision = shared / the
//!   output's shingles and recall = shared / the truth's; both averaged over pages, and F1
//!   computed from the two means (the Scrapinghub article-extraction benchmark's method).
//!   An empty output of a page with text scores 0 and 0; a page whose truth has no shingle is
//!   left out.
//!
//! Pages are decoded as `data prepare` decodes them (`<meta>` charset, else UTF-8, else
//! a guess from the bytes) and extracted with [`crate::extract::main_text`]. Speed is pages/s and
//! MB/s of HTML over extraction alone (decoding excluded), one thread.
//!
//! trafilatura runs through `bench/trafilatura_extract.py` with datatrove's settings
//! (`favor_precision=True, include_comments=False, deduplicate=True`), on the same decoded
//! text, timed the same way.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// A page to extract, and what its main text is known to be.
#[derive(Debug, Clone)]
pub struct Page {
    pub name: String,
    pub html: String,
    pub truth: Truth,
}

#[derive(Debug, Clone)]
pub enum Truth {
    /// Snippets inside the main text, and snippets outside it.
    Snippets { with: Vec<String>, without: Vec<String> },
    /// The main text itself.
    Text(String),
}

/// The scoring rule of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    Snippets,
    Shingles,
}

/// How well one extractor did on a set.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub extractor: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub pages: usize,
    pub seconds: f64,
    pub pages_per_sec: f64,
    pub mb_per_sec: f64,
    /// Pages whose output was empty.
    pub empty: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtractBenchReport {
    pub set: String,
    pub scoring: Scoring,
    pub pages: usize,
    pub html_mb: f64,
    pub scores: Vec<Score>,
    /// trafilatura's version, when it ran.
    pub trafilatura_version: Option<String>,
    /// Why trafilatura did not run, when it did not.
    pub trafilatura_missing: Option<String>,
    /// The pages lmlab got wrong (written by `--errors`, not part of the JSON report).
    #[serde(skip)]
    pub errors: Vec<PageErrors>,
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).with_context(|| format!("decompressing {}", path.display()))?;
        return Ok(out);
    }
    Ok(bytes)
}

fn decoded(path: &Path) -> Result<String> {
    Ok(crate::http::decode_text(&read_maybe_gz(path)?, None).0)
}

#[derive(Deserialize)]
struct EvalEntry {
    file: String,
    #[serde(default)]
    with: Vec<String>,
    #[serde(default)]
    without: Vec<String>,
}

/// trafilatura's evaluation pages (a folder with `evaldata.json` and `pages/`).
pub fn trafilatura_eval(dir: &Path) -> Result<Vec<Page>> {
    let path = dir.join("evaldata.json");
    let entries: BTreeMap<String, EvalEntry> =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    entries
        .into_values()
        .map(|e| {
            let html = decoded(&dir.join("pages").join(&e.file))?;
            Ok(Page { name: e.file, html, truth: Truth::Snippets { with: e.with, without: e.without } })
        })
        .collect()
}

/// The Chinese pages with hand-extracted text (`ground-truth.json`, pages in `dev/`).
pub fn zh_cwced(dir: &Path) -> Result<Vec<Page>> {
    let path = dir.join("ground-truth.json");
    let truth: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    truth
        .into_iter()
        .map(|(id, v)| {
            let body = v
                .get("articleBody")
                .and_then(|b| b.as_str())
                .with_context(|| format!("{}: {id} has no \"articleBody\" string", path.display()))?;
            let html = decoded(&dir.join("dev").join(format!("{id}.html.gz")))?;
            Ok(Page { name: id, html, truth: Truth::Text(body.to_string()) })
        })
        .collect()
}

/// A folder of `NAME.html` (or `.html.gz`) pages, each beside `NAME.txt`, its main text.
pub fn folder(dir: &Path) -> Result<Vec<Page>> {
    let mut pages = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let Some(stem) = name.strip_suffix(".html.gz").or_else(|| name.strip_suffix(".html")) else { continue };
        let txt = dir.join(format!("{stem}.txt"));
        ensure!(txt.is_file(), "{} has no main text beside it ({} is missing)", path.display(), txt.display());
        let truth = std::fs::read_to_string(&txt).with_context(|| format!("reading {}", txt.display()))?;
        pages.push(Page { name: stem.to_string(), html: decoded(&path)?, truth: Truth::Text(truth) });
    }
    ensure!(!pages.is_empty(), "{} holds no NAME.html pages with NAME.txt main texts", dir.display());
    Ok(pages)
}

/// The pages of a set named as `lmlab bench extract --set` takes it, under `data` (the shared
/// data folder) for the named sets.
pub fn load_set(set: &str, data: &Path) -> Result<Vec<Page>> {
    match set {
        "trafilatura-eval" => trafilatura_eval(&data.join("extraction/trafilatura-eval")),
        "zh-cwced" => zh_cwced(&data.join("extraction/zh-cwced")),
        dir if Path::new(dir).is_dir() => folder(Path::new(dir)),
        other => bail!("unknown set {other:?}: trafilatura-eval, zh-cwced, or a folder of NAME.html + NAME.txt pages"),
    }
}

/// Text with every run of whitespace made one space, trimmed.
pub fn normalise_ws(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// The words of `text`: each Han character alone, and each run of other letters and digits.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_han(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Counts of the word 4-grams of `text` (a text of 1–3 words is one shingle).
pub fn shingles(text: &str) -> HashMap<Vec<String>, usize> {
    let w = words(text);
    let mut out = HashMap::new();
    if w.is_empty() {
        return out;
    }
    for g in w.windows(4.min(w.len())) {
        *out.entry(g.to_vec()).or_insert(0) += 1;
    }
    out
}

/// One page's shingle precision and recall, or None when the truth has no shingle.
pub fn shingle_pr(output: &str, truth: &str) -> Option<(f64, f64)> {
    let (p, t) = (shingles(output), shingles(truth));
    let truth_n: usize = t.values().sum();
    if truth_n == 0 {
        return None;
    }
    let out_n: usize = p.values().sum();
    if out_n == 0 {
        return Some((0.0, 0.0));
    }
    let shared: usize = p.iter().map(|(g, &n)| n.min(t.get(g).copied().unwrap_or(0))).sum();
    Some((shared as f64 / out_n as f64, shared as f64 / truth_n as f64))
}

/// The snippets of one page that an output gets wrong: the `with` snippets it misses and the
/// `without` snippets it keeps (at most 6 of each side are scored).
pub fn snippet_errors<'a>(output: &str, with: &'a [String], without: &'a [String]) -> (Vec<&'a str>, Vec<&'a str>) {
    let out = normalise_ws(output);
    let found = |s: &&String| out.contains(&normalise_ws(s));
    let missed = with.iter().take(6).filter(|s| !found(s)).map(String::as_str).collect();
    let kept = without.iter().take(6).filter(found).map(String::as_str).collect();
    (missed, kept)
}

/// (true positives, false negatives, false positives) of one page's snippets.
pub fn snippet_counts(output: &str, with: &[String], without: &[String]) -> (usize, usize, usize) {
    let (missed, kept) = snippet_errors(output, with, without);
    (with.len().min(6) - missed.len(), missed.len(), kept.len())
}

/// What an extractor got wrong on one page (`lmlab bench extract --errors`): for snippet sets,
/// the main-text snippets it missed and the boilerplate snippets it kept; for text sets, the
/// page's shingle precision and recall. Pages it got right are not listed.
#[derive(Debug, Clone, Serialize)]
pub struct PageErrors {
    pub page: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_boilerplate: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
}

/// The pages `outputs` got wrong, in page order.
pub fn page_errors(pages: &[Page], outputs: &[String]) -> Vec<PageErrors> {
    let mut errors = Vec::new();
    for (page, out) in pages.iter().zip(outputs) {
        let mut e = PageErrors { page: page.name.clone(), missed: vec![], kept_boilerplate: vec![], precision: None, recall: None };
        match &page.truth {
            Truth::Snippets { with, without } => {
                let (missed, kept) = snippet_errors(out, with, without);
                e.missed = missed.into_iter().map(String::from).collect();
                e.kept_boilerplate = kept.into_iter().map(String::from).collect();
            }
            Truth::Text(t) => match shingle_pr(out, t) {
                Some((p, r)) if p < 1.0 || r < 1.0 => (e.precision, e.recall) = (Some(p), Some(r)),
                _ => continue,
            },
        }
        if !e.missed.is_empty() || !e.kept_boilerplate.is_empty() || e.precision.is_some() {
            errors.push(e);
        }
    }
    errors
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Scores `outputs` (one per page, in order) against the pages' truths.
pub fn score(pages: &[Page], outputs: &[String]) -> (Scoring, f64, f64, f64) {
    let (mut tp, mut fn_, mut fp) = (0usize, 0usize, 0usize);
    let (mut ps, mut rs) = (Vec::new(), Vec::new());
    let mut scoring = Scoring::Snippets;
    for (page, out) in pages.iter().zip(outputs) {
        match &page.truth {
            Truth::Snippets { with, without } => {
                let (a, b, c) = snippet_counts(out, with, without);
                (tp, fn_, fp) = (tp + a, fn_ + b, fp + c);
            }
            Truth::Text(t) => {
                scoring = Scoring::Shingles;
                if let Some((p, r)) = shingle_pr(out, t) {
                    ps.push(p);
                    rs.push(r);
                }
            }
        }
    }
    let (p, r) = match scoring {
        Scoring::Snippets => (tp as f64 / (tp + fp).max(1) as f64, tp as f64 / (tp + fn_).max(1) as f64),
        Scoring::Shingles => (ps.iter().sum::<f64>() / ps.len().max(1) as f64, rs.iter().sum::<f64>() / rs.len().max(1) as f64),
    };
    (scoring, p, r, f1(p, r))
}

fn scored(extractor: &str, pages: &[Page], outputs: &[String], seconds: f64) -> Score {
    let (_, precision, recall, f1) = score(pages, outputs);
    let mb = pages.iter().map(|p| p.html.len()).sum::<usize>() as f64 / 1e6;
    Score {
        extractor: extractor.into(),
        precision,
        recall,
        f1,
        pages: pages.len(),
        seconds,
        pages_per_sec: pages.len() as f64 / seconds.max(1e-9),
        mb_per_sec: mb / seconds.max(1e-9),
        empty: outputs.iter().filter(|o| o.trim().is_empty()).count(),
    }
}

/// trafilatura's outputs on `pages` and its extraction seconds and version, through `python`
/// running `script`; Err says why it could not run.
fn trafilatura(python: &str, script: &Path, pages: &[Page]) -> Result<(Vec<String>, f64, String)> {
    #[derive(Deserialize)]
    struct Out {
        version: String,
        seconds: f64,
        texts: Vec<String>,
    }
    let records = pages.iter().map(|p| serde_json::json!({ "name": p.name, "html": p.html }));
    let out: Out = crate::python_ref::run_script(python, script, &[], records)?;
    ensure!(out.texts.len() == pages.len(), "trafilatura returned {} texts for {} pages", out.texts.len(), pages.len());
    Ok((out.texts, out.seconds, out.version))
}

/// Extracts every page with lmlab (and trafilatura through `python`, when given and it runs)
/// and scores both.
pub fn bench_extract(set: &str, pages: &[Page], python: Option<&str>, script: &Path) -> Result<ExtractBenchReport> {
    let started = Instant::now();
    let outputs: Vec<String> = pages.iter().map(|p| crate::extract::main_text(&p.html)).collect();
    let seconds = started.elapsed().as_secs_f64();
    let (scoring, ..) = score(pages, &outputs);
    let mut report = ExtractBenchReport {
        set: set.into(),
        scoring,
        pages: pages.len(),
        html_mb: pages.iter().map(|p| p.html.len()).sum::<usize>() as f64 / 1e6,
        scores: vec![scored("lmlab", pages, &outputs, seconds)],
        trafilatura_version: None,
        trafilatura_missing: None,
        errors: page_errors(pages, &outputs),
    };
    match python.map(|py| trafilatura(py, script, pages)) {
        Some(Ok((texts, secs, version))) => {
            report.scores.push(scored(&format!("trafilatura {version}"), pages, &texts, secs));
            report.trafilatura_version = Some(version);
        }
        Some(Err(e)) => report.trafilatura_missing = Some(format!("{e:#}")),
        None => report.trafilatura_missing = Some("no Python with trafilatura given (--python)".into()),
    }
    Ok(report)
}

/// The report as a markdown table.
pub fn render(r: &ExtractBenchReport) -> String {
    let mut md = format!(
        "{}: {} pages, {:.1} MB of HTML, scored by {}\n\n| extractor | precision | recall | F1 | pages/s | MB/s | empty outputs |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        r.set,
        r.pages,
        r.html_mb,
        match r.scoring {
            Scoring::Snippets => "snippets (micro-averaged)",
            Scoring::Shingles => "word 4-gram shingles (per-page means)",
        }
    );
    for s in &r.scores {
        md += &format!(
            "| {} | {:.4} | {:.4} | **{:.4}** | {:.1} | {:.2} | {} |\n",
            s.extractor, s.precision, s.recall, s.f1, s.pages_per_sec, s.mb_per_sec, s.empty
        );
    }
    if let Some(why) = &r.trafilatura_missing {
        md += &format!("\ntrafilatura did not run: {why}\n");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn han_characters_are_words_and_other_runs_are_lowercased_words() {
        assert_eq!(words("中文abc Def，12年"), ["中", "文", "abc", "def", "12", "年"]);
        assert!(words("  ,.; ").is_empty());
    }

    #[test]
    fn shingle_precision_and_recall_by_hand() {
        // Truth: a b c d e → shingles abcd, bcde. Output: a b c d x → abcd, bcdx.
        assert_eq!(shingle_pr("a b c d x", "a b c d e"), Some((0.5, 0.5)));
        // Shared shingles count up to their copies in the truth: the output's 5 shingles are
        // abcd ×2, bcda, cdab, dabc; the truth's one abcd matches one of them.
        assert_eq!(shingle_pr("a b c d a b c d", "a b c d"), Some((1.0 / 5.0, 1.0)));
        assert_eq!(shingle_pr("", "a b c d"), Some((0.0, 0.0)));
        assert_eq!(shingle_pr("a b c d", ""), None);
        assert_eq!(shingle_pr("x y", "x y"), Some((1.0, 1.0)));
    }

    #[test]
    fn snippets_are_found_whitespace_normalised_and_capped_at_six() {
        let with: Vec<String> = ["main  text", "second\npart", "absent"].map(String::from).to_vec();
        let without = vec!["Impressum".to_string()];
        assert_eq!(snippet_counts("Main text\nmain text second part Impressum", &with, &without), (2, 1, 1));
        assert_eq!(snippet_errors("Main text\nmain text second part Impressum", &with, &without), (vec!["absent"], vec!["Impressum"]));
        let many: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
        assert_eq!(snippet_counts("s0 s1 s2 s3 s4 s5 s6 s7", &many, &[]), (6, 0, 0));
    }

    #[test]
    fn micro_and_macro_averaging() {
        let page = |truth| Page { name: String::new(), html: String::new(), truth };
        let snip = |w: &[&str], wo: &[&str]| Truth::Snippets {
            with: w.iter().map(|s| s.to_string()).collect(),
            without: wo.iter().map(|s| s.to_string()).collect(),
        };
        // Page 1: 1 of 1 with found; page 2: 1 of 3 found and 1 without found: tp 2, fn 2, fp 1.
        let pages = [page(snip(&["a"], &[])), page(snip(&["b", "c", "d"], &["z"]))];
        let (scoring, p, r, f) = score(&pages, &["a".into(), "b z".into()]);
        assert_eq!(scoring, Scoring::Snippets);
        assert!((p - 2.0 / 3.0).abs() < 1e-12 && (r - 0.5).abs() < 1e-12 && (f - f1(2.0 / 3.0, 0.5)).abs() < 1e-12);
        // Shingles: page means, F1 from the means.
        let pages = [page(Truth::Text("a b c d e".into())), page(Truth::Text("x y".into()))];
        let (scoring, p, r, f) = score(&pages, &["a b c d x".into(), "".into()]);
        assert_eq!(scoring, Scoring::Shingles);
        assert_eq!((p, r), (0.25, 0.25));
        assert_eq!(f, 0.25);
    }
}
