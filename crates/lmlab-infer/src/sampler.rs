//! Choosing the next token from logits.
//!
//! Steps, in this order: temperature (logits / T; T = 0 means greedy argmax), top-k (keep the k
//! most likely), top-p (keep the smallest set of most likely tokens whose probability reaches
//! p), then a draw from the renormalised distribution with a seeded RNG. Ties in ranking are
//! broken by token id, so results do not depend on sort stability.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SamplingParams {
    /// 0 selects greedy decoding.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: None, top_p: None, seed: 0 }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.temperature >= 0.0 && self.temperature.is_finite(), "temperature must be >= 0, got {}", self.temperature);
        if let Some(k) = self.top_k {
            anyhow::ensure!(k > 0, "top-k must be at least 1");
        }
        if let Some(p) = self.top_p {
            anyhow::ensure!(p > 0.0 && p <= 1.0, "top-p must be in (0, 1], got {p}");
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: rand_chacha::ChaCha8Rng,
}

/// Index of the largest value (the first on ties).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    /// The distribution the draw is made from: (token, probability) pairs, most likely first.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let t = self.params.temperature.max(1e-6);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l as f64 - max) / t).exp())).collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.params.top_k {
            probs.truncate(k.min(probs.len()));
        }
        let z: f64 = probs.iter().map(|p| p.1).sum();
        for p in &mut probs {
            p.1 /= z;
        }
        if let Some(top_p) = self.params.top_p {
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p.1;
                if cum >= top_p - 1e-12 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let z: f64 = probs.iter().map(|p| p.1).sum();
            for p in &mut probs {
                p.1 /= z;
            }
        }
        probs
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature == 0.0 {
            return argmax(logits) as u32;
        }
        let dist = self.distribution(logits);
        let u: f64 = self.rng.random();
        let mut cum = 0.0;
        for &(id, p) in &dist {
            cum += p;
            if u < cum {
                return id;
            }
        }
        dist.last().expect("a non-empty vocabulary").0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits_of(probs: &[f64]) -> Vec<f32> {
        probs.iter().map(|p| p.ln() as f32).collect()
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // The article's example: green 50%, red 30%, blue 15%, other 5%.
        let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
        let s = Sampler::new(SamplingParams { top_p: Some(0.8), ..Default::default() });
        let d = s.distribution(&logits);
        assert_eq!(d.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1]);
        assert!((d[0].1 - 0.625).abs() < 1e-6);
        let s = Sampler::new(SamplingParams { top_p: Some(0.81), ..Default::default() });
        assert_eq!(s.distribution(&logits).len(), 3);
    }

    #[test]
    fn top_k_and_temperature_transform_as_defined() {
        let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
        let s = Sampler::new(SamplingParams { top_k: Some(2), ..Default::default() });
        let d = s.distribution(&logits);
        assert_eq!(d.len(), 2);
        assert!((d[1].1 - 0.375).abs() < 1e-6);
        // Temperature 0.5 squares the probabilities before renormalising.
        let s = Sampler::new(SamplingParams { temperature: 0.5, ..Default::default() });
        let d = s.distribution(&logits);
        let z = 0.25 + 0.09 + 0.0225 + 0.0025;
        assert!((d[0].1 - 0.25 / z).abs() < 1e-6);
    }

    #[test]
    fn draws_follow_the_distribution_and_repeat_with_the_seed() {
        let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
        let mut s = Sampler::new(SamplingParams { seed: 3, ..Default::default() });
        let n = 20_000;
        let mut counts = [0usize; 4];
        let draws: Vec<u32> = (0..n).map(|_| s.sample(&logits)).collect();
        for &d in &draws {
            counts[d as usize] += 1;
        }
        // Chi-square with 3 degrees of freedom; 16.27 is the 0.1% critical value.
        let expected = [0.5, 0.3, 0.15, 0.05];
        let chi2: f64 = counts.iter().zip(expected).map(|(&c, p)| (c as f64 - p * n as f64).powi(2) / (p * n as f64)).sum();
        assert!(chi2 < 16.27, "chi2 {chi2}, counts {counts:?}");
        let mut again = Sampler::new(SamplingParams { seed: 3, ..Default::default() });
        assert!(draws.iter().all(|&d| d == again.sample(&logits)));
        let mut greedy = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() });
        assert_eq!(greedy.sample(&logits), 0);
    }
}
