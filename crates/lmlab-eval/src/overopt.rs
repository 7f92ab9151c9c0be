//! `lmlab experiment overoptimisation`: reward over-optimisation (Gao et al. 2023) in an RLHF
//! run trained on a learned reward model. The run's `metrics.jsonl` holds, per step, the
//! reward model's mean score of the step's answers (`reward_rm`, the proxy the policy climbs),
//! the world grader's mean score of the same answers (`reward_grader`, the true score, logged
//! with weight 0 when `lmlab rlhf --reward rm` finds the world's knowledge base), and the KL to
//! the reference per answer. Gao et al. plot both against √KL: the proxy keeps rising while the
//! true score rises, peaks and falls.
//!
//! Steps are grouped into `bins` runs of consecutive steps (the per-step numbers average only
//! a batch of answers), each reported at its mean √KL. Written as `overoptimisation.md`,
//! `.json` and `.png`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::plot::{line_chart, Series};

/// One group of consecutive RL steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub first_step: u64,
    pub last_step: u64,
    /// √max(KL, 0) of the mean KL per answer.
    pub sqrt_kl: f64,
    pub reward_rm: f64,
    pub reward_grader: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OveroptReport {
    pub metrics: PathBuf,
    pub points: Vec<Point>,
    /// The group where the grader's score peaked.
    pub grader_peak: Option<Point>,
    pub table_md: PathBuf,
    pub plot_png: Option<PathBuf>,
}

/// (step, kl, reward_rm, reward_grader) of every `rlhf` line of `metrics.jsonl` that has all
/// four.
pub fn read_steps(metrics: &Path) -> Result<Vec<(u64, f64, f64, f64)>> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("reading {}", metrics.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["stage"] != "rlhf" {
            continue;
        }
        let f = |k: &str| v[k].as_f64();
        if let (Some(step), Some(kl), Some(rm), Some(grader)) = (v["step"].as_u64(), f("kl"), f("reward_rm"), f("reward_grader")) {
            out.push((step, kl, rm, grader));
        }
    }
    Ok(out)
}

/// `steps` in `bins` groups of consecutive steps, each averaged.
pub fn bin(steps: &[(u64, f64, f64, f64)], bins: usize) -> Vec<Point> {
    let per = steps.len().div_ceil(bins.max(1)).max(1);
    steps
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            let mean = |f: fn(&(u64, f64, f64, f64)) -> f64| c.iter().map(f).sum::<f64>() / n;
            Point {
                first_step: c[0].0,
                last_step: c[c.len() - 1].0,
                sqrt_kl: mean(|s| s.1).max(0.0).sqrt(),
                reward_rm: mean(|s| s.2),
                reward_grader: mean(|s| s.3),
            }
        })
        .collect()
}

/// Reads `metrics`, writes the table, JSON and plot into `out`.
pub fn run(metrics: &Path, out: &Path, bins: usize) -> Result<OveroptReport> {
    let steps = read_steps(metrics)?;
    if steps.is_empty() {
        bail!(
            "{} has no rlhf lines with reward_rm, reward_grader and kl (train with lmlab rlhf --reward rm beside the world's kb.jsonl)",
            metrics.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let points = bin(&steps, bins);
    let grader_peak = points.iter().max_by(|a, b| a.reward_grader.total_cmp(&b.reward_grader)).cloned();
    let mut md = format!(
        "# Reward over-optimisation\n\n{} RL steps of {} in {} groups. `reward_rm`: the learned reward model's mean score of the step's answers (what the policy is trained on); `reward_grader`: the world grader's mean score of the same answers (+1 correct, 0 abstained, −1 wrong).\n\n| steps | √KL | reward model | grader |\n|---|---:|---:|---:|\n",
        steps.len(),
        metrics.display(),
        points.len()
    );
    for p in &points {
        md.push_str(&format!("| {}–{} | {:.3} | {:.3} | {:.3} |\n", p.first_step, p.last_step, p.sqrt_kl, p.reward_rm, p.reward_grader));
    }
    if let Some(p) = &grader_peak {
        md.push_str(&format!("\nThe grader's score peaks at √KL {:.3} (steps {}–{}).\n", p.sqrt_kl, p.first_step, p.last_step));
    }
    let table_md = out.join("overoptimisation.md");
    std::fs::write(&table_md, &md)?;
    let series = vec![
        Series { name: "reward model (proxy)".into(), points: points.iter().map(|p| (p.sqrt_kl, p.reward_rm)).collect() },
        Series { name: "grader (true)".into(), points: points.iter().map(|p| (p.sqrt_kl, p.reward_grader)).collect() },
    ];
    let ys = points.iter().flat_map(|p| [p.reward_rm, p.reward_grader]);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let pad = ((hi - lo) * 0.1).max(0.05);
    let png = out.join("overoptimisation.png");
    let plot_png = line_chart(&png, "Reward over-optimisation", "sqrt(KL to the reference)", "mean reward", &series, (lo - pad, hi + pad))
        .ok()
        .map(|()| png);
    let report = OveroptReport { metrics: metrics.to_path_buf(), points, grader_peak, table_md, plot_png };
    std::fs::write(out.join("overoptimisation.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rlhf_lines_and_bins_consecutive_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let line = |step: u64, kl: f64, rm: f64, g: f64| {
            serde_json::json!({"stage": "rlhf", "step": step, "kl": kl, "reward_rm": rm, "reward_grader": g}).to_string()
        };
        let text = [
            r#"{"stage": "sft", "step": 1, "loss": 2.0}"#.to_string(),
            line(1, 0.0, 0.1, -1.0),
            line(2, 1.0, 0.3, -0.5),
            line(3, 4.0, 0.5, 0.0),
            line(4, 4.0, 0.7, -0.5),
            r#"{"stage": "rlhf", "step": 5, "kl": 1.0, "reward": 0.2}"#.to_string(),
        ]
        .join("\n");
        std::fs::write(&path, text).unwrap();
        let steps = read_steps(&path).unwrap();
        assert_eq!(steps.len(), 4);
        let p = bin(&steps, 2);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].first_step, p[0].last_step), (1, 2));
        assert!((p[0].sqrt_kl - 0.5f64.sqrt()).abs() < 1e-12 && (p[1].sqrt_kl - 2.0).abs() < 1e-12);
        assert!((p[1].reward_rm - 0.6).abs() < 1e-12 && (p[1].reward_grader + 0.25).abs() < 1e-12);
        let r = run(&path, &dir.path().join("out"), 2).unwrap();
        assert_eq!(r.grader_peak.unwrap().last_step, 4);
        assert!(std::fs::read_to_string(r.table_md).unwrap().contains("| 3–4 | 2.000 | 0.600 | -0.250 |"));
    }
}
