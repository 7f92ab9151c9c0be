//! `lmlab experiment architectures`: the RNN encoder-decoder, the same with attention, and a
//! Transformer, at similar parameter counts, trained on sources of 5–30 tokens and tested on
//! 5–60 — the analogue of Bahdanau et al. 2015, figure 2. Reports exact-match accuracy per
//! length bucket, training throughput, and the training compute needed to reach 95% accuracy
//! on the training lengths; writes a markdown table, JSON and a PNG plot.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use lmlab_train::seq2seq::{accuracy, train, Arch, Seq2SeqModel, Seq2SeqTrainReport, Task, TaskData, TrainSpec};
use serde::Serialize;

use crate::plot::{line_chart, Series};

#[derive(Debug, Clone, Serialize)]
pub struct ArchitecturesOptions {
    pub task: Task,
    pub hidden: usize,
    pub steps: usize,
    pub batch: usize,
    pub train_min: usize,
    pub train_max: usize,
    pub test_max: usize,
    /// Test examples per length bucket.
    pub samples: usize,
    pub lr: f64,
    pub seed: u64,
    pub out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchResult {
    pub arch: &'static str,
    pub train: Seq2SeqTrainReport,
    /// (bucket label, bucket centre, accuracy).
    pub accuracy: Vec<(String, f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchitecturesReport {
    pub options: ArchitecturesOptions,
    pub results: Vec<ArchResult>,
    pub table_md: PathBuf,
    pub plot_png: Option<PathBuf>,
}

/// Buckets of source lengths: train_min..=10, 11..=20, ... up to test_max.
fn buckets(lo: usize, hi: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut a = lo;
    while a <= hi {
        let b = ((a / 10) * 10 + 10).min(hi);
        out.push((a, b));
        a = b + 1;
    }
    out
}

pub fn run(opts: &ArchitecturesOptions, mut log: impl FnMut(&str)) -> Result<ArchitecturesReport> {
    let dev = Device::Cpu;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let data = TaskData::new(opts.task, opts.seed)?;
    let mut results = Vec::new();
    for arch in [Arch::Rnn, Arch::RnnAttention, Arch::Transformer] {
        let model = Seq2SeqModel::new(&data, arch, opts.hidden, opts.test_max, opts.seed, &dev)?;
        log(&format!(
            "{}: {} parameters, training {} steps on lengths {}..={}",
            arch.name(),
            model.params.num_elements(),
            opts.steps,
            opts.train_min,
            opts.train_max
        ));
        let spec = TrainSpec {
            steps: opts.steps,
            batch: opts.batch,
            min_len: opts.train_min,
            max_len: opts.train_max,
            lr: opts.lr,
            seed: opts.seed,
            eval_every: (opts.steps / 20).max(1),
        };
        let report = train(&model, &data, &spec, &dev, |step, loss| {
            if step % 250 == 0 {
                log(&format!("  step {step}: loss {loss:.4}"));
            }
        })?;
        let mut acc = Vec::new();
        for (a, b) in buckets(opts.train_min, opts.test_max) {
            let lens: Vec<usize> = (a..=b).collect();
            let v = accuracy(&model, &data, &lens, opts.samples, opts.seed.wrapping_add(1000 + a as u64), &dev)?;
            acc.push((format!("{a}-{b}"), (a + b) as f64 / 2.0, v));
        }
        log(&format!(
            "  {:.0} tokens/s; accuracy by length: {}",
            report.tokens_per_sec,
            acc.iter().map(|(l, _, v)| format!("{l} {:.0}%", v * 100.0)).collect::<Vec<_>>().join(", ")
        ));
        model.save(&opts.out.join(arch.name()))?;
        results.push(ArchResult { arch: arch.name(), train: report, accuracy: acc });
    }

    let table_md = opts.out.join("architectures.md");
    std::fs::write(&table_md, markdown(opts, &results)).with_context(|| format!("writing {}", table_md.display()))?;
    std::fs::write(opts.out.join("architectures.json"), serde_json::to_string_pretty(&results)?)?;
    let png = opts.out.join("architectures.png");
    let series: Vec<Series> = results
        .iter()
        .map(|r| Series { name: r.arch.to_string(), points: r.accuracy.iter().map(|(_, x, y)| (*x, y * 100.0)).collect() })
        .collect();
    let title = format!("{:?}: exact match vs source length (trained on {}-{})", opts.task, opts.train_min, opts.train_max);
    let plot_png = match line_chart(&png, &title, "source length", "exact match (%)", &series, (0.0, 100.0)) {
        Ok(()) => Some(png),
        Err(e) => {
            log(&format!("no plot: {e}"));
            None
        }
    };
    Ok(ArchitecturesReport { options: opts.clone(), results, table_md, plot_png })
}

fn markdown(opts: &ArchitecturesOptions, results: &[ArchResult]) -> String {
    let mut s = format!(
        "# Architectures on `{:?}`: trained on lengths {}–{}, tested on {}–{}\n\n{} steps of {} examples, hidden size {}, seed {}. Accuracy is exact match of the greedy output.\n\n",
        opts.task, opts.train_min, opts.train_max, opts.train_min, opts.test_max, opts.steps, opts.batch, opts.hidden, opts.seed
    );
    let heads: Vec<String> = results[0].accuracy.iter().map(|(l, _, _)| l.clone()).collect();
    s.push_str(&format!("| architecture | parameters | train tokens/s | {} | tokens to 95% | FLOPs to 95% |\n", heads.join(" | ")));
    s.push_str(&format!("|---|---:|---:|{}---:|---:|\n", "---:|".repeat(heads.len())));
    for r in results {
        let accs: Vec<String> = r.accuracy.iter().map(|(_, _, v)| format!("{:.1}%", v * 100.0)).collect();
        let to95 = r.train.tokens_to_95.map_or("not reached".into(), |t| t.to_string());
        let f95 = r.train.flops_to_95.map_or("not reached".into(), |f| format!("{f:.2e}"));
        s.push_str(&format!(
            "| {} | {} | {:.0} | {} | {to95} | {f95} |\n",
            r.arch,
            r.train.params,
            r.train.tokens_per_sec,
            accs.join(" | ")
        ));
    }
    s.push_str("\nFLOPs to 95% are estimated as 6 × parameters × tokens processed (source + target) when the in-range accuracy, checked every 5% of training on 128 examples, first reached 95%.\n");
    s
}

/// Where the experiment writes by default.
pub fn default_out(task: Task) -> PathBuf {
    Path::new("runs").join(format!("experiment-architectures-{task:?}").to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_buckets_cover_the_range_in_tens() {
        assert_eq!(buckets(5, 60), [(5, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60)]);
        assert_eq!(buckets(5, 33), [(5, 10), (11, 20), (21, 30), (31, 33)]);
        assert_eq!(buckets(12, 12), [(12, 12)]);
    }

    #[test]
    fn the_table_has_a_row_per_architecture_and_says_when_95_percent_was_not_reached() {
        let opts = ArchitecturesOptions {
            task: Task::Reverse,
            hidden: 8,
            steps: 10,
            batch: 4,
            train_min: 5,
            train_max: 10,
            test_max: 20,
            samples: 2,
            lr: 1e-3,
            seed: 1,
            out: PathBuf::from("x"),
        };
        let report = |arch: Arch, to95: Option<usize>| Seq2SeqTrainReport {
            arch,
            params: 1234,
            steps: 10,
            final_loss: 0.5,
            seconds: 1.0,
            tokens_per_sec: 99.6,
            tokens_seen: 100,
            tokens_to_95: to95,
            flops_to_95: to95.map(|t| 6.0 * 1234.0 * t as f64),
            curve: vec![],
        };
        let acc = vec![("5-10".to_string(), 7.5, 0.96), ("11-20".to_string(), 15.5, 0.125)];
        let results = vec![
            ArchResult { arch: "rnn", train: report(Arch::Rnn, None), accuracy: acc.clone() },
            ArchResult { arch: "transformer", train: report(Arch::Transformer, Some(50)), accuracy: acc },
        ];
        let md = markdown(&opts, &results);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 3, "a header and one row per architecture:\n{md}");
        assert_eq!(rows[1], "| rnn | 1234 | 100 | 96.0% | 12.5% | not reached | not reached |");
        assert_eq!(rows[2], "| transformer | 1234 | 100 | 96.0% | 12.5% | 50 | 3.70e5 |");
    }
}
