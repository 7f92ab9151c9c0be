//! Choosing the next token from logits: composable samplers applied in a fixed, documented order.
//!
//! 1. logit bias: `logit[t] += bias[t]`;
//! 2. penalties over the last `penalty_window` generated-or-prompt tokens (0 = all):
//!    repetition (CTRL: a seen token's logit is divided by the penalty if positive, multiplied if
//!    negative), then frequency and presence (OpenAI: `logit -= frequency·count + presence·[count>0]`);
//! 3. temperature: logits / T (T = 0 means greedy: the argmax after steps 1–2);
//! 4. top-k: keep the k most likely;
//! 5. top-p (nucleus): keep the smallest set of most likely tokens whose probability reaches p;
//! 6. min-p: keep tokens with probability ≥ min_p × the largest probability;
//! 7. typical-p: keep the tokens whose surprisal is closest to the entropy until their mass
//!    reaches p (Meister et al. 2022);
//! 8. draw from the renormalised distribution with the seeded RNG.
//!
//! Each step renormalises what it keeps. Ties in ranking are broken by token id, so results do
//! not depend on sort stability. [`Sampler::stages`] exposes the distribution after every step.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SamplingParams {
    /// 0 selects greedy decoding.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub typical_p: Option<f64>,
    /// 1.0 = off.
    pub repetition_penalty: f64,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
    /// How many of the most recent tokens the penalties look at (0 = all).
    pub penalty_window: usize,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            min_p: None,
            typical_p: None,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_window: 0,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.temperature >= 0.0 && self.temperature.is_finite(), "temperature must be >= 0, got {}", self.temperature);
        if let Some(k) = self.top_k {
            anyhow::ensure!(k > 0, "top-k must be at least 1");
        }
        for (name, v) in [("top-p", self.top_p), ("min-p", self.min_p), ("typical-p", self.typical_p)] {
            if let Some(p) = v {
                anyhow::ensure!(p > 0.0 && p <= 1.0, "{name} must be in (0, 1], got {p}");
            }
        }
        anyhow::ensure!(self.repetition_penalty > 0.0, "repetition penalty must be > 0");
        Ok(())
    }
}

/// A distribution over a subset of tokens: (token, probability), most likely first.
pub type Dist = Vec<(u32, f64)>;

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

/// Softmax of `logits / t`, sorted most likely first (ties by id).
pub fn softmax_sorted(logits: &[f64], t: f64) -> Dist {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut d: Dist = logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l - max) / t).exp())).collect();
    let z: f64 = d.iter().map(|p| p.1).sum();
    for p in &mut d {
        p.1 /= z;
    }
    d.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    d
}

fn renormalise(mut d: Dist) -> Dist {
    let z: f64 = d.iter().map(|p| p.1).sum();
    if z > 0.0 {
        for p in &mut d {
            p.1 /= z;
        }
    }
    d
}

/// Temperature 0: all mass on the largest adjusted logit (the lowest id on ties).
fn greedy(adjusted: &[f64]) -> Dist {
    let mut best = 0;
    for (i, &x) in adjusted.iter().enumerate() {
        if x > adjusted[best] {
            best = i;
        }
    }
    vec![(best as u32, 1.0)]
}

/// Entropy in bits.
pub fn entropy_bits(d: &Dist) -> f64 {
    -d.iter().filter(|p| p.1 > 0.0).map(|p| p.1 * p.1.log2()).sum::<f64>()
}

pub fn top_k(d: Dist, k: usize) -> Dist {
    renormalise(d.into_iter().take(k).collect())
}

pub fn top_p(d: Dist, p: f64) -> Dist {
    let mut cum = 0.0;
    let mut keep = d.len();
    for (i, q) in d.iter().enumerate() {
        cum += q.1;
        if cum >= p - 1e-12 {
            keep = i + 1;
            break;
        }
    }
    renormalise(d.into_iter().take(keep).collect())
}

pub fn min_p(d: Dist, p: f64) -> Dist {
    let max = d.first().map_or(0.0, |q| q.1);
    renormalise(d.into_iter().filter(|q| q.1 >= p * max).collect())
}

pub fn typical_p(d: Dist, p: f64) -> Dist {
    let h: f64 = -d.iter().filter(|q| q.1 > 0.0).map(|q| q.1 * q.1.ln()).sum::<f64>();
    let mut by_typicality: Vec<(u32, f64)> = d.clone();
    by_typicality.sort_unstable_by(|a, b| {
        let da = (-a.1.ln() - h).abs();
        let db = (-b.1.ln() - h).abs();
        da.total_cmp(&db).then(a.0.cmp(&b.0))
    });
    let mut cum = 0.0;
    let mut kept = Vec::new();
    for q in by_typicality {
        cum += q.1;
        kept.push(q);
        if cum >= p - 1e-12 {
            break;
        }
    }
    kept.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    renormalise(kept)
}

pub struct Sampler {
    params: SamplingParams,
    rng: rand_chacha::ChaCha8Rng,
}

/// The distribution after each sampler step, for `lmlab inspect next-token`.
#[derive(Debug, Clone, Serialize)]
pub struct Stages {
    /// Softmax of the raw logits (temperature 1, no bias or penalties).
    pub raw: Dist,
    /// After bias and penalties, at temperature 1.
    pub adjusted: Dist,
    pub temperature: Dist,
    pub top_k: Dist,
    pub top_p: Dist,
    pub min_p: Dist,
    pub typical_p: Dist,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Steps 1–2: logit bias and penalties given the tokens seen so far.
    pub fn adjust(&self, logits: &[f32], history: &[u32]) -> Vec<f64> {
        let p = &self.params;
        let mut l: Vec<f64> = logits.iter().map(|&x| f64::from(x)).collect();
        for &(t, b) in &p.logit_bias {
            if let Some(x) = l.get_mut(t as usize) {
                *x += f64::from(b);
            }
        }
        if p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            let window = if p.penalty_window == 0 { history } else { &history[history.len().saturating_sub(p.penalty_window)..] };
            let mut counts = std::collections::BTreeMap::new();
            for &t in window {
                *counts.entry(t).or_insert(0usize) += 1;
            }
            for (&t, &c) in &counts {
                if let Some(x) = l.get_mut(t as usize) {
                    if p.repetition_penalty != 1.0 {
                        *x = if *x > 0.0 { *x / p.repetition_penalty } else { *x * p.repetition_penalty };
                    }
                    *x -= p.frequency_penalty * c as f64 + p.presence_penalty;
                }
            }
        }
        l
    }

    /// The distribution after every step (temperature 0 is shown as temperature 1 then argmax).
    /// For inspection: it keeps a copy per step; sampling uses [`Self::distribution`].
    pub fn stages(&self, logits: &[f32], history: &[u32]) -> Stages {
        let p = &self.params;
        let raw = softmax_sorted(&logits.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), 1.0);
        let adj = self.adjust(logits, history);
        let adjusted = softmax_sorted(&adj, 1.0);
        let temperature = if p.temperature == 0.0 { greedy(&adj) } else { softmax_sorted(&adj, p.temperature) };
        let top_k_d = self.apply_top_k(temperature.clone());
        let top_p_d = self.apply_top_p(top_k_d.clone());
        let min_p_d = self.apply_min_p(top_p_d.clone());
        let typical = self.apply_typical_p(min_p_d.clone());
        Stages { raw, adjusted, temperature, top_k: top_k_d, top_p: top_p_d, min_p: min_p_d, typical_p: typical }
    }

    fn apply_top_k(&self, d: Dist) -> Dist {
        match self.params.top_k {
            Some(k) => top_k(d, k),
            None => d,
        }
    }

    fn apply_top_p(&self, d: Dist) -> Dist {
        match self.params.top_p {
            Some(x) => top_p(d, x),
            None => d,
        }
    }

    fn apply_min_p(&self, d: Dist) -> Dist {
        match self.params.min_p {
            Some(x) => min_p(d, x),
            None => d,
        }
    }

    fn apply_typical_p(&self, d: Dist) -> Dist {
        match self.params.typical_p {
            Some(x) => typical_p(d, x),
            None => d,
        }
    }

    /// The final distribution the draw is made from (steps 1–7, without the copies and the raw
    /// softmax that [`Self::stages`] keeps for display).
    pub fn distribution(&self, logits: &[f32], history: &[u32]) -> Dist {
        let adj = self.adjust(logits, history);
        if self.params.temperature == 0.0 {
            return greedy(&adj);
        }
        let d = softmax_sorted(&adj, self.params.temperature);
        self.apply_typical_p(self.apply_min_p(self.apply_top_p(self.apply_top_k(d))))
    }

    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let dist = self.distribution(logits, history);
        if self.params.temperature == 0.0 || dist.len() == 1 {
            return dist.first().map_or(0, |q| q.0);
        }
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

    /// The article's example: green 50%, red 30%, blue 15%, other 5% (+ two rare tokens).
    const COLOURS: [f64; 6] = [0.5, 0.3, 0.12, 0.05, 0.02, 0.01];

    /// Draws n tokens and compares counts with `expected` (a full distribution) by chi-square;
    /// tokens with probability 0 must never be drawn.
    fn chi_square(params: SamplingParams, history: &[u32], expected: &[f64]) {
        let logits = logits_of(&COLOURS);
        let mut s = Sampler::new(params);
        let n = 20_000;
        let mut counts = vec![0usize; expected.len()];
        for _ in 0..n {
            counts[s.sample(&logits, history) as usize] += 1;
        }
        let mut chi2 = 0.0;
        let mut dof = 0;
        for (c, &p) in counts.iter().zip(expected) {
            if p == 0.0 {
                assert_eq!(*c, 0, "a removed token was drawn: {counts:?}");
            } else {
                chi2 += (*c as f64 - p * n as f64).powi(2) / (p * n as f64);
                dof += 1;
            }
        }
        // 0.1% critical values of chi-square for 1..=5 degrees of freedom.
        let critical = [0.0, 10.83, 13.82, 16.27, 18.47, 20.52][dof - 1];
        assert!(chi2 < critical, "chi2 {chi2} (dof {}), counts {counts:?}, expected {expected:?}", dof - 1);
    }

    fn normalised(v: &[f64]) -> Vec<f64> {
        let z: f64 = v.iter().sum();
        v.iter().map(|x| x / z).collect()
    }

    #[test]
    fn plain_sampling_follows_the_softmax() {
        chi_square(SamplingParams { seed: 1, ..Default::default() }, &[], &COLOURS);
    }

    #[test]
    fn temperature_raises_probabilities_to_the_power_one_over_t() {
        let expected = normalised(&COLOURS.map(|p| p.powf(1.0 / 0.7)));
        chi_square(SamplingParams { temperature: 0.7, seed: 2, ..Default::default() }, &[], &expected);
    }

    #[test]
    fn top_k_top_p_min_p_keep_the_documented_sets() {
        chi_square(SamplingParams { top_k: Some(2), seed: 3, ..Default::default() }, &[], &normalised(&[0.5, 0.3, 0.0, 0.0, 0.0, 0.0]));
        // top-p 0.8: green + red reach exactly 0.8, so the set is those two.
        chi_square(SamplingParams { top_p: Some(0.8), seed: 4, ..Default::default() }, &[], &normalised(&[0.5, 0.3, 0.0, 0.0, 0.0, 0.0]));
        chi_square(SamplingParams { top_p: Some(0.85), seed: 5, ..Default::default() }, &[], &normalised(&[0.5, 0.3, 0.12, 0.0, 0.0, 0.0]));
        // min-p 0.09: keep p >= 0.045 (0.05 stays, 0.02 goes; no value sits on the boundary).
        chi_square(
            SamplingParams { min_p: Some(0.09), seed: 6, ..Default::default() },
            &[],
            &normalised(&[0.5, 0.3, 0.12, 0.05, 0.0, 0.0]),
        );
    }

    #[test]
    fn typical_p_keeps_tokens_nearest_the_entropy() {
        // H = 1.236 nats; surprisals: 0.69, 1.20, 2.12, 3.00, 3.91, 4.61. Ordered by
        // |surprisal − H|: red (0.03), green (0.54), blue (0.88), ... With p = 0.75 the kept
        // mass reaches 0.8 after red and green.
        chi_square(
            SamplingParams { typical_p: Some(0.75), seed: 7, ..Default::default() },
            &[],
            &normalised(&[0.5, 0.3, 0.0, 0.0, 0.0, 0.0]),
        );
    }

    #[test]
    fn penalties_and_bias_transform_logits_as_defined() {
        let logits = logits_of(&COLOURS);
        // Presence 1.0 and frequency 0.5 on green seen twice: logit − 2.0.
        let s = Sampler::new(SamplingParams { presence_penalty: 1.0, frequency_penalty: 0.5, ..Default::default() });
        let adj = s.adjust(&logits, &[0, 0]);
        assert!((adj[0] - (0.5f64.ln() - 2.0)).abs() < 1e-6);
        assert!((adj[1] - 0.3f64.ln()).abs() < 1e-6);
        let mut expected = COLOURS.to_vec();
        expected[0] *= (-2.0f64).exp();
        chi_square(
            SamplingParams { presence_penalty: 1.0, frequency_penalty: 0.5, seed: 8, ..Default::default() },
            &[0, 0],
            &normalised(&expected),
        );
        // Repetition 2.0 on negative logits multiplies them (log p × 2 squares the weight);
        // the window of 1 only sees the last token (red).
        let mut expected = COLOURS.to_vec();
        expected[1] = expected[1] * expected[1];
        chi_square(
            SamplingParams { repetition_penalty: 2.0, penalty_window: 1, seed: 9, ..Default::default() },
            &[0, 1],
            &normalised(&expected),
        );
        // A bias of ln 10 on "other" multiplies its weight by 10.
        let mut expected = COLOURS.to_vec();
        expected[3] *= 10.0;
        chi_square(SamplingParams { logit_bias: vec![(3, 10f32.ln())], seed: 10, ..Default::default() }, &[], &normalised(&expected));
    }

    #[test]
    fn greedy_and_seeds() {
        let logits = logits_of(&COLOURS);
        let mut g = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() });
        assert_eq!(g.sample(&logits, &[]), 0);
        let mut g = Sampler::new(SamplingParams { temperature: 0.0, logit_bias: vec![(2, 5.0)], ..Default::default() });
        assert_eq!(g.sample(&logits, &[]), 2);
        let draws = |seed| {
            let mut s = Sampler::new(SamplingParams { seed, ..Default::default() });
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draws(4), draws(4));
        assert_ne!(draws(4), draws(5));
        let st = Sampler::new(SamplingParams::default()).stages(&logits, &[]);
        let h = entropy_bits(&st.raw);
        let exact: f64 = -COLOURS.iter().map(|p| p * p.log2()).sum::<f64>();
        assert!((h - exact).abs() < 1e-5);
    }
}
