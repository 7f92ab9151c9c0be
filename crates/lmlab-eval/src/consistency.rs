//! `lmlab eval consistency`: the explainer's inconsistency (the same question, different
//! answers) and hallucination detection from the model alone.
//!
//! Each question is asked `samples` times at each temperature. Answers are grouped by meaning,
//! as semantic entropy does (Farquhar et al. 2024): the knowledge base value of the question's
//! relation that the answer names; else "abstain" for an abstention; else the normalised text.
//! Per temperature and occurrence bucket the report gives the agreement with the majority
//! meaning and with the greedy answer, the number of distinct answers, and the entropy over
//! meanings.
//!
//! Detection: three signals computed without the truth are scored against the grader's labels
//! by AUROC, the positive class being a *wrong* greedy answer among greedy answers that did
//! not abstain: disagreement across the samples at `detect_temperature`, semantic entropy
//! there, and the greedy answer's negated mean token log-probability. A bootstrap (seeded)
//! gives each AUROC a 95% interval.

use std::collections::{BTreeMap, HashMap};

use anyhow::{ensure, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use lmlab_infer::Model;
use lmlab_world::grade::{Grade, Grader};
use lmlab_world::tasks::Question;

use crate::plot::{line_chart, Series};
use crate::qa::{QaOptions, Session};

/// The meaning an answer asserts: the relation value it names (when exactly one), "abstain",
/// or its normalised text.
pub fn meaning(grader: &Grader, q: &Question, answer: &str, grade: Grade) -> String {
    let named = grader.named_values(&q.relation, answer);
    if named.len() == 1 {
        return format!("value:{}", named[0]);
    }
    if grade == Grade::Abstained {
        return "abstain".into();
    }
    format!("text:{}", answer.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Entropy in nats of the empirical distribution of `items`.
pub fn entropy<T: Ord>(items: &[T]) -> f64 {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    for x in items {
        *counts.entry(x).or_default() += 1;
    }
    let n = items.len() as f64;
    // abs: a single class sums to -0.0, which would print as "-0.000".
    counts.values().map(|&c| c as f64 / n).map(|p| -p * p.ln()).sum::<f64>().abs()
}

/// The most frequent item (ties: the smallest) and the share of items equal to it.
pub fn majority<T: Ord + Clone>(items: &[T]) -> Option<(T, f64)> {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    for x in items {
        *counts.entry(x).or_default() += 1;
    }
    // max_by_key keeps the last maximum; iterate in reverse so that ties go to the smallest.
    let (top, c) = counts.iter().rev().max_by_key(|(_, &c)| c)?;
    Some(((*top).clone(), *c as f64 / items.len() as f64))
}

/// Area under the ROC curve of `scores` for `labels` (true = positive): the probability that a
/// positive scores above a negative, ties counting one half. None without both classes.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    let pos = pairs.iter().filter(|p| p.1).count();
    let neg = pairs.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Rank-sum (Mann-Whitney U) with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos * neg) as f64)
}

/// AUROC with a 95% percentile bootstrap interval over `resamples` resamples drawn with `seed`.
pub fn auroc_with_interval(scores: &[f64], labels: &[bool], resamples: usize, seed: u64) -> Option<(f64, f64, f64)> {
    let point = auroc(scores, labels)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = scores.len();
    let mut values: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
            let l: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
            auroc(&s, &l)
        })
        .collect();
    if values.is_empty() {
        return Some((point, point, point));
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
    Some((point, at(0.025), at(0.975)))
}

/// One question's answers at one temperature.
#[derive(Debug, Clone)]
pub struct Asked {
    pub question: usize,
    pub temperature: f64,
    pub meanings: Vec<String>,
    pub texts: Vec<String>,
}

/// Consistency at one temperature, over one group of questions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsistencyRow {
    pub temperature: f64,
    pub group: String,
    pub questions: usize,
    /// Mean share of a question's samples that assert its majority meaning.
    pub majority_agreement: f64,
    /// Mean share of a question's samples that assert its greedy answer's meaning.
    pub greedy_agreement: f64,
    /// Mean number of distinct answer texts per question.
    pub distinct_answers: f64,
    /// Mean entropy (nats) over a question's answer meanings.
    pub semantic_entropy: f64,
}

/// The rows for every temperature, overall and per bucket. `greedy[q]` is question q's greedy
/// meaning; `bucket[q]` its occurrence bucket.
pub fn consistency_rows(asked: &[Asked], greedy: &[String], bucket: &[String]) -> Vec<ConsistencyRow> {
    let mut groups: BTreeMap<(u64, String), Vec<&Asked>> = BTreeMap::new();
    for a in asked {
        let key = a.temperature.to_bits();
        groups.entry((key, "all".into())).or_default().push(a);
        groups.entry((key, bucket[a.question].clone())).or_default().push(a);
    }
    groups
        .into_iter()
        .map(|((t, group), items)| {
            let n = items.len() as f64;
            let mean = |f: &dyn Fn(&Asked) -> f64| items.iter().map(|a| f(a)).sum::<f64>() / n;
            ConsistencyRow {
                temperature: f64::from_bits(t),
                group,
                questions: items.len(),
                majority_agreement: mean(&|a| majority(&a.meanings).map_or(0.0, |m| m.1)),
                greedy_agreement: mean(&|a| {
                    a.meanings.iter().filter(|m| **m == greedy[a.question]).count() as f64 / a.meanings.len() as f64
                }),
                distinct_answers: mean(&|a| {
                    let mut t = a.texts.clone();
                    t.sort();
                    t.dedup();
                    t.len() as f64
                }),
                semantic_entropy: mean(&|a| entropy(&a.meanings)),
            }
        })
        .collect()
}

/// A detector's AUROC with its interval and the number of answers scored.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub signal: String,
    pub n: usize,
    pub positives: usize,
    pub auroc: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// The three detectors of the module documentation, over questions whose greedy answer did not
/// abstain: `greedy_grade[q]`, `greedy_logprob[q]`, and each question's samples at the
/// detection temperature in `sampled` (indexed by question).
pub fn detection(
    greedy_grade: &[Grade],
    greedy_logprob: &[f64],
    sampled: &HashMap<usize, &Asked>,
    greedy: &[String],
    seed: u64,
) -> Vec<Detection> {
    let mut labels = Vec::new();
    let (mut disagreement, mut sem_entropy, mut low_logprob) = (Vec::new(), Vec::new(), Vec::new());
    for (q, g) in greedy_grade.iter().enumerate() {
        let Some(a) = sampled.get(&q) else { continue };
        if *g == Grade::Abstained {
            continue;
        }
        labels.push(*g == Grade::Wrong);
        disagreement.push(1.0 - a.meanings.iter().filter(|m| **m == greedy[q]).count() as f64 / a.meanings.len() as f64);
        sem_entropy.push(entropy(&a.meanings));
        low_logprob.push(-greedy_logprob[q]);
    }
    let positives = labels.iter().filter(|&&l| l).count();
    [
        ("disagreement with the greedy answer across samples", disagreement),
        ("semantic entropy", sem_entropy),
        ("negated mean token log-probability of the greedy answer", low_logprob),
    ]
    .into_iter()
    .map(|(name, scores)| {
        let r = auroc_with_interval(&scores, &labels, 1000, seed);
        Detection { signal: name.into(), n: labels.len(), positives, auroc: r.map(|x| x.0), low: r.map(|x| x.1), high: r.map(|x| x.2) }
    })
    .collect()
}

/// Checks the temperatures and sample count of a run.
pub fn check(temperatures: &[f64], samples: usize) -> Result<()> {
    ensure!(samples >= 2, "consistency needs at least 2 samples per question, not {samples}");
    ensure!(temperatures.iter().all(|t| t.is_finite() && *t >= 0.0), "temperatures must be finite and >= 0: {temperatures:?}");
    Ok(())
}

/// What to ask and how: the questions, prompting and batching of [`QaOptions`] (its `samples`
/// per temperature), the temperatures, and where detection samples.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyOptions {
    pub qa: QaOptions,
    pub temperatures: Vec<f64>,
    pub detect_temperature: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyReport {
    pub model: String,
    pub options: ConsistencyOptions,
    pub questions: usize,
    pub rows: Vec<ConsistencyRow>,
    pub detection: Vec<Detection>,
    pub seconds: f64,
}

/// Asks every question greedily and `samples` times at each temperature, and measures.
/// `progress(done, total)` counts (temperature, batch) rounds.
pub fn run_consistency(model: &Model, opts: &ConsistencyOptions, mut progress: impl FnMut(usize, usize)) -> Result<ConsistencyReport> {
    check(&opts.temperatures, opts.qa.samples)?;
    let started = std::time::Instant::now();
    let session = Session::new(model, &opts.qa)?;
    let qs = &session.questions;
    let rounds = 1 + opts.temperatures.iter().filter(|&&t| t > 0.0).count();
    let greedy_answers = session.ask(model, 0.0, 1, opts.qa.seed)?;
    progress(1, rounds);
    let greedy_grade: Vec<Grade> = greedy_answers.iter().map(|a| a[0].grade).collect();
    let greedy_logprob: Vec<f64> = greedy_answers.iter().map(|a| a[0].mean_logprob).collect();
    let greedy: Vec<String> = greedy_answers.iter().zip(qs).map(|(a, q)| meaning(&session.grader, q, &a[0].answer, a[0].grade)).collect();
    let mut asked = Vec::new();
    let mut round = 1;
    for &t in &opts.temperatures {
        let answers = if t > 0.0 {
            round += 1;
            let a = session.ask(model, t, opts.qa.samples, opts.qa.seed.wrapping_add(round as u64 * 1_000_003))?;
            progress(round, rounds);
            a
        } else {
            // Greedy decoding gives one answer, every time.
            greedy_answers.iter().map(|a| vec![a[0].clone(); opts.qa.samples]).collect()
        };
        for (qi, (q, list)) in qs.iter().zip(answers).enumerate() {
            let meanings = list.iter().map(|a| meaning(&session.grader, q, &a.answer, a.grade)).collect();
            let texts = list.iter().map(|a| a.answer.to_lowercase()).collect();
            asked.push(Asked { question: qi, temperature: t, meanings, texts });
        }
    }
    let buckets: Vec<String> =
        qs.iter().map(|q| if q.set == "nonexistent" { "non-existent".to_string() } else { q.bucket.clone() }).collect();
    let rows = consistency_rows(&asked, &greedy, &buckets);
    let at_detect: HashMap<usize, &Asked> =
        asked.iter().filter(|a| a.temperature == opts.detect_temperature).map(|a| (a.question, a)).collect();
    let detection = detection(&greedy_grade, &greedy_logprob, &at_detect, &greedy, opts.qa.seed);
    Ok(ConsistencyReport {
        model: model.format().into(),
        options: opts.clone(),
        questions: qs.len(),
        rows,
        detection,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The report as markdown: consistency by temperature (all questions), then the detectors.
pub fn markdown(r: &ConsistencyReport) -> String {
    let mut s = format!(
        "### Consistency ({} model, {} questions, {} samples per temperature)\n\n| temperature | group | majority agreement | greedy agreement | distinct answers | semantic entropy (nats) |\n|---:|---|---:|---:|---:|---:|\n",
        r.model, r.questions, r.options.qa.samples
    );
    for row in &r.rows {
        s.push_str(&format!(
            "| {} | {} | {:.1}% | {:.1}% | {:.2} | {:.3} |\n",
            row.temperature,
            row.group,
            100.0 * row.majority_agreement,
            100.0 * row.greedy_agreement,
            row.distinct_answers,
            row.semantic_entropy
        ));
    }
    s.push_str(&format!("\n### Detecting hallucinations from the model alone (samples at temperature {})\n\n| signal | n | wrong | AUROC (95% bootstrap interval) |\n|---|---:|---:|---|\n", r.options.detect_temperature));
    for d in &r.detection {
        let a = match (d.auroc, d.low, d.high) {
            (Some(a), Some(l), Some(h)) => format!("{a:.3} ({l:.3}-{h:.3})"),
            _ => "undefined (one class only)".into(),
        };
        s.push_str(&format!("| {} | {} | {} | {a} |\n", d.signal, d.n, d.positives));
    }
    s.push_str("\nFarquhar et al. (2024) report AUROC of about 0.79 for semantic entropy and 0.69 for naive entropy on their models and datasets.\n");
    s
}

/// Majority agreement against temperature, one line per bucket, as a PNG.
pub fn plot(r: &ConsistencyReport, path: &std::path::Path) -> Result<()> {
    let mut by_group: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for row in &r.rows {
        by_group.entry(row.group.as_str()).or_default().push((row.temperature, 100.0 * row.majority_agreement));
    }
    let series: Vec<Series> = by_group
        .into_iter()
        .map(|(g, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name: format!("bucket {g}"), points }
        })
        .collect();
    line_chart(
        path,
        "Agreement with the majority answer against temperature",
        "temperature",
        "majority agreement (%)",
        &series,
        (0.0, 100.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_and_majority_of_known_distributions() {
        assert_eq!(entropy(&["a", "a", "a"]), 0.0);
        assert!((entropy(&["a", "b", "a", "b"]) - 2f64.ln()).abs() < 1e-12);
        assert!((entropy(&["a", "b", "c", "d"]) - 4f64.ln()).abs() < 1e-12);
        assert_eq!(majority(&["b", "a", "b", "c"]), Some(("b", 0.5)));
        assert_eq!(majority(&["b", "a"]), Some(("a", 0.5)), "ties go to the smallest");
        assert_eq!(majority::<&str>(&[]), None);
    }

    #[test]
    fn auroc_of_perfect_inverted_and_random_detectors() {
        let labels = [true, true, false, false, false];
        assert_eq!(auroc(&[0.9, 0.8, 0.1, 0.2, 0.3], &labels), Some(1.0));
        assert_eq!(auroc(&[0.1, 0.2, 0.9, 0.8, 0.7], &labels), Some(0.0));
        assert_eq!(auroc(&[0.5; 5], &labels), Some(0.5), "all ties: one half");
        assert_eq!(auroc(&[0.5, 0.5], &[true, true]), None, "one class only");
        // Scores independent of the labels: about one half.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let scores: Vec<f64> = (0..4000).map(|_| rng.random()).collect();
        let labels: Vec<bool> = (0..4000).map(|_| rng.random_bool(0.3)).collect();
        let a = auroc(&scores, &labels).unwrap();
        // Standard error of an AUROC at n = 4000 with 30% positives: about 0.01.
        assert!((a - 0.5).abs() < 0.04, "{a}");
        let (p, lo, hi) = auroc_with_interval(&scores, &labels, 200, 1).unwrap();
        assert!(lo <= p && p <= hi && lo < 0.5 && hi > 0.5, "{lo} {p} {hi}");
        // The same seed, the same interval.
        assert_eq!(auroc_with_interval(&scores, &labels, 200, 1), Some((p, lo, hi)));
    }

    #[test]
    fn agreement_and_distinct_answers_on_a_hand_built_set() {
        let asked = |q: usize, t: f64, m: &[&str], x: &[&str]| Asked {
            question: q,
            temperature: t,
            meanings: m.iter().map(|s| s.to_string()).collect(),
            texts: x.iter().map(|s| s.to_string()).collect(),
        };
        let greedy = vec!["value:velora".to_string(), "abstain".to_string()];
        let bucket = vec!["1".to_string(), "11+".to_string()];
        let rows = consistency_rows(
            &[
                // Question 0: three of four samples name Velora (two in other words), one Dranos.
                asked(
                    0,
                    1.0,
                    &["value:velora", "value:velora", "value:velora", "value:dranos"],
                    &["Velora", "In Velora.", "Velora", "Dranos"],
                ),
                // Question 1: two abstain, two invent.
                asked(1, 1.0, &["abstain", "abstain", "value:dranos", "text:blue"], &["I don't know", "I don't know", "Dranos", "blue"]),
            ],
            &greedy,
            &bucket,
        );
        let all = rows.iter().find(|r| r.group == "all").unwrap();
        assert_eq!(all.questions, 2);
        assert!((all.majority_agreement - (0.75 + 0.5) / 2.0).abs() < 1e-12);
        assert!((all.greedy_agreement - (0.75 + 0.5) / 2.0).abs() < 1e-12);
        assert!((all.distinct_answers - (3.0 + 3.0) / 2.0).abs() < 1e-12);
        let h0 = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        let h1 = -(0.5f64 * 0.5f64.ln() + 2.0 * 0.25 * 0.25f64.ln());
        assert!((all.semantic_entropy - (h0 + h1) / 2.0).abs() < 1e-12);
        let b1 = rows.iter().find(|r| r.group == "1").unwrap();
        assert_eq!((b1.questions, b1.majority_agreement), (1, 0.75));
    }
}
