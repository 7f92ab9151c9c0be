//! The arithmetic of RLHF as plain functions on numbers, each written as its formula reads, so
//! that tests can hold it against naive loops, closed forms and hand values. The tensor losses
//! that carry gradients are in [`super::loss`].
//!
//! Notation: a response of T tokens; `logp` are the policy's log-probabilities of the sampled
//! tokens, `logp_ref` the frozen reference model's of the same tokens.

/// Generalised advantage estimation (Schulman et al. 2016) over one response: with V_T = 0 (the
/// episode ends after its last token), δ_t = r_t + γ·V_{t+1} − V_t and
/// A_t = δ_t + γλ·A_{t+1}. Returns the advantages and the returns A_t + V_t (the value head's
/// targets).
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lambda: f64) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(rewards.len(), values.len(), "one value per reward");
    let t_len = rewards.len();
    let mut adv = vec![0.0; t_len];
    let mut next_adv = 0.0;
    for t in (0..t_len).rev() {
        let next_value = if t + 1 < t_len { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next_value - values[t];
        next_adv = delta + gamma * lambda * next_adv;
        adv[t] = next_adv;
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// Mean and population variance.
pub fn mean_var(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (mean, xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
}

/// Whitening: (x − mean) / √(var + 1e-8) over `xs`; with `shift_mean` false the mean is added
/// back (rewards are rescaled but keep their sign; advantages are whitened fully).
pub fn whiten(xs: &[f64], shift_mean: bool) -> Vec<f64> {
    let (mean, var) = mean_var(xs);
    let scale = (var + 1e-8).sqrt();
    xs.iter().map(|x| (x - mean) / scale + if shift_mean { 0.0 } else { mean }).collect()
}

/// The three per-sample estimators of KL(π ‖ π_ref) from a token sampled from π (Schulman,
/// "Approximating KL divergence", 2020). With log r = log π_ref − log π:
/// - k1 = −log r: unbiased, high variance, can be negative;
/// - k2 = ½ (log r)²: biased (second order in the log-ratio), low variance, never negative;
/// - k3 = (r − 1) − log r: unbiased (E_π[r] = 1), low variance, never negative (GRPO's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    K1,
    K2,
    K3,
}

/// The estimate of one sampled token under `est` (see [`KlEstimator`]).
pub fn kl_estimate(est: KlEstimator, logp: f64, logp_ref: f64) -> f64 {
    let log_r = logp_ref - logp;
    match est {
        KlEstimator::K1 => -log_r,
        KlEstimator::K2 => 0.5 * log_r * log_r,
        KlEstimator::K3 => log_r.exp() - 1.0 - log_r,
    }
}

/// KL(p ‖ q) = Σ p log(p/q) of two distributions over the same support (closed form).
pub fn kl_exact(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).filter(|(pi, _)| **pi > 0.0).map(|(pi, qi)| pi * (pi / qi).ln()).sum()
}

/// The PPO clipped surrogate of one token, as an objective to maximise:
/// min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) with ρ = exp(logp − logp_old).
pub fn clipped_objective(logp: f64, logp_old: f64, adv: f64, eps: f64) -> f64 {
    let ratio = (logp - logp_old).exp();
    (ratio * adv).min(ratio.clamp(1.0 - eps, 1.0 + eps) * adv)
}

/// Whether the clipped term is the one [`clipped_objective`] takes and the ratio is outside
/// [1 − ε, 1 + ε]: the token then contributes a constant, and no gradient.
pub fn is_clipped(logp: f64, logp_old: f64, adv: f64, eps: f64) -> bool {
    let ratio = (logp - logp_old).exp();
    let out = !(1.0 - eps..=1.0 + eps).contains(&ratio);
    out && ratio.clamp(1.0 - eps, 1.0 + eps) * adv < ratio * adv
}

/// The clipped value loss of one token: ½·max((V − R)², (V_clip − R)²) with
/// V_clip = V_old + clip(V − V_old, −ε, ε), R the return.
pub fn clipped_value_loss(value: f64, value_old: f64, ret: f64, eps: f64) -> f64 {
    let clipped = value_old + (value - value_old).clamp(-eps, eps);
    0.5 * (value - ret).powi(2).max((clipped - ret).powi(2))
}

/// GRPO's group-normalised advantages (Shao et al. 2024): each reward minus its group's mean,
/// over the group's standard deviation (+1e-4, so that a group of equal rewards gets zeros).
/// `rewards` holds consecutive groups of `group` samples of one prompt each.
pub fn group_normalise(rewards: &[f64], group: usize) -> Vec<f64> {
    assert!(group > 0 && rewards.len().is_multiple_of(group), "whole groups of {group}");
    rewards
        .chunks(group)
        .flat_map(|g| {
            let (mean, var) = mean_var(g);
            let std = var.sqrt();
            g.iter().map(move |r| (r - mean) / (std + 1e-4))
        })
        .collect()
}

/// RLOO's advantages (Ahmadian et al. 2024): each reward minus the mean of the other samples of
/// its prompt, r_i − (Σ_j r_j − r_i)/(G − 1). Groups of `group` ≥ 2 consecutive samples.
pub fn rloo_advantages(rewards: &[f64], group: usize) -> Vec<f64> {
    assert!(group >= 2 && rewards.len().is_multiple_of(group), "RLOO needs whole groups of at least 2");
    rewards
        .chunks(group)
        .flat_map(|g| {
            let sum: f64 = g.iter().sum();
            g.iter().map(move |r| r - (sum - r) / (group - 1) as f64)
        })
        .collect()
}

/// The KL coefficient β: fixed (InstructGPT), or the adaptive controller of Ziegler et al.
/// (2019), which moves β toward a target KL: e = clip(KL/target − 1, −0.2, 0.2),
/// β ← β·(1 + e·n/horizon) after a batch of n samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KlController {
    pub value: f64,
    /// None: β stays fixed.
    pub target: Option<f64>,
    pub horizon: f64,
}

impl KlController {
    pub fn fixed(value: f64) -> Self {
        Self { value, target: None, horizon: 10_000.0 }
    }

    pub fn adaptive(value: f64, target: f64, horizon: f64) -> Self {
        Self { value, target: Some(target), horizon }
    }

    /// Updates β after a batch of `n` samples whose mean KL (per response) was `kl`.
    pub fn update(&mut self, kl: f64, n: usize) {
        if let Some(target) = self.target {
            let error = (kl / target - 1.0).clamp(-0.2, 0.2);
            self.value *= 1.0 + error * n as f64 / self.horizon;
        }
    }
}

/// Explained variance 1 − Var(R − V)/Var(R): 1 when the values predict the returns, 0 when
/// they do no better than the mean, negative when worse. NaN-free: 0 when the returns are all
/// equal.
pub fn explained_variance(values: &[f64], returns: &[f64]) -> f64 {
    let (_, var_r) = mean_var(returns);
    if var_r == 0.0 {
        return 0.0;
    }
    let diff: Vec<f64> = returns.iter().zip(values).map(|(r, v)| r - v).collect();
    1.0 - mean_var(&diff).1 / var_r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn gae_matches_the_naive_sum_of_discounted_deltas() {
        let rewards = [0.1, -0.3, 0.0, 0.7, 1.5];
        let values = [0.2, 0.5, -0.4, 0.3, 0.9];
        for (gamma, lambda) in [(1.0, 0.95), (0.99, 0.9), (0.5, 0.0), (1.0, 1.0)] {
            let (adv, ret) = gae(&rewards, &values, gamma, lambda);
            let v = |t: usize| if t < values.len() { values[t] } else { 0.0 };
            for t in 0..rewards.len() {
                // A_t = Σ_l (γλ)^l δ_{t+l}, δ_s = r_s + γ V_{s+1} − V_s.
                let naive: f64 =
                    (t..rewards.len()).map(|s| (gamma * lambda).powi((s - t) as i32) * (rewards[s] + gamma * v(s + 1) - values[s])).sum();
                assert!(close(adv[t], naive, 1e-12), "t {t}: {} vs {naive}", adv[t]);
                assert!(close(ret[t], naive + values[t], 1e-12));
            }
            if lambda == 1.0 && gamma == 1.0 {
                // λ = 1: the return is the plain sum of the rewards to go.
                assert!(close(ret[1], rewards[1..].iter().sum(), 1e-12));
            }
        }
        // λ = 0: the one-step TD error.
        let (adv, _) = gae(&rewards, &values, 0.5, 0.0);
        assert!(close(adv[0], 0.1 + 0.5 * 0.5 - 0.2, 1e-12));
    }

    #[test]
    fn whitening_gives_zero_mean_unit_variance_or_keeps_the_mean() {
        let xs = [1.0, 2.0, 4.0, 9.0];
        let w = whiten(&xs, true);
        let (m, v) = mean_var(&w);
        assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-6);
        let (m0, _) = mean_var(&xs);
        let (m1, v1) = mean_var(&whiten(&xs, false));
        assert!((m1 - m0).abs() < 1e-12 && (v1 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn kl_estimators_have_the_closed_form_expectations() {
        // Exact expectations over the support of π (the sampling distribution).
        let cases = [([0.5, 0.3, 0.2], [0.4, 0.4, 0.2]), ([0.9, 0.05, 0.05], [0.2, 0.3, 0.5]), ([0.25; 3], [0.25; 3])];
        for (p, q) in cases {
            let (p, q) = (&p[..], &q[..]);
            let expect = |est| p.iter().zip(q).map(|(pi, qi): (&f64, &f64)| pi * kl_estimate(est, pi.ln(), qi.ln())).sum::<f64>();
            let kl = kl_exact(p, q);
            assert!(close(expect(KlEstimator::K1), kl, 1e-12), "k1 is unbiased");
            assert!(close(expect(KlEstimator::K3), kl, 1e-12), "k3 is unbiased");
            let half_sq: f64 = p.iter().zip(q).map(|(pi, qi)| 0.5 * pi * (qi / pi).ln().powi(2)).sum();
            assert!(close(expect(KlEstimator::K2), half_sq, 1e-12));
        }
        // By hand: p = (½, ½), q = (¼, ¾): KL = ½ln2 + ½ln(2/3) = 0.143841…
        let kl = kl_exact(&[0.5, 0.5], &[0.25, 0.75]);
        assert!((kl - 0.143_841_036_225_890_4).abs() < 1e-12, "{kl}");
        // k2 is a second-order approximation: close for near distributions, off for far ones.
        let (p, q): ([f64; 2], [f64; 2]) = ([0.5, 0.5], [0.49, 0.51]);
        let k2: f64 = p.iter().zip(&q).map(|(pi, qi)| pi * kl_estimate(KlEstimator::K2, pi.ln(), qi.ln())).sum();
        assert!(close(k2, kl_exact(&p, &q), 1e-3));
        // k2 and k3 are never negative; k1 is, for a token the reference likes more.
        assert!(kl_estimate(KlEstimator::K1, (0.2f64).ln(), (0.4f64).ln()) < 0.0);
        for (a, b) in [(0.2f64, 0.4f64), (0.4, 0.2), (0.3, 0.3)] {
            assert!(kl_estimate(KlEstimator::K2, a.ln(), b.ln()) >= 0.0 && kl_estimate(KlEstimator::K3, a.ln(), b.ln()) >= 0.0);
        }
    }

    #[test]
    fn clipped_objective_by_hand() {
        let eps = 0.2;
        let lp = |ratio: f64| ratio.ln();
        // Inside the range: ρ·A.
        assert!(close(clipped_objective(lp(1.1), 0.0, 2.0, eps), 2.2, 1e-12));
        assert!(!is_clipped(lp(1.1), 0.0, 2.0, eps));
        // A > 0, ρ above 1 + ε: capped at (1 + ε)·A.
        assert!(close(clipped_objective(lp(1.5), 0.0, 2.0, eps), 2.4, 1e-12));
        assert!(is_clipped(lp(1.5), 0.0, 2.0, eps));
        // A > 0, ρ below 1 − ε: the unclipped ρ·A is smaller and is taken (the gradient flows).
        assert!(close(clipped_objective(lp(0.5), 0.0, 2.0, eps), 1.0, 1e-12));
        assert!(!is_clipped(lp(0.5), 0.0, 2.0, eps));
        // A < 0, ρ below 1 − ε: capped at (1 − ε)·A.
        assert!(close(clipped_objective(lp(0.5), 0.0, -1.0, eps), -0.8, 1e-12));
        assert!(is_clipped(lp(0.5), 0.0, -1.0, eps));
        // A < 0, ρ above 1 + ε: ρ·A, pessimistic.
        assert!(close(clipped_objective(lp(1.5), 0.0, -1.0, eps), -1.5, 1e-12));
    }

    #[test]
    fn value_clipping_by_hand() {
        // Old value 0, return 1, ε = 0.2: V = 0.5 clips to 0.2, whose error is larger.
        assert!(close(clipped_value_loss(0.5, 0.0, 1.0, 0.2), 0.5 * 0.64, 1e-12));
        // V = 1.1 overshoots; clipped to 0.2 the error is 0.8: the max keeps it.
        assert!(close(clipped_value_loss(1.1, 0.0, 1.0, 0.2), 0.5 * 0.64, 1e-12));
        // Within ε both agree.
        assert!(close(clipped_value_loss(0.1, 0.0, 1.0, 0.2), 0.5 * 0.81, 1e-12));
    }

    #[test]
    fn group_normalisation_and_leave_one_out() {
        let r = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0];
        let a = group_normalise(&r, 4);
        // Group 1: mean ½, std ½.
        for (x, want) in a[..4].iter().zip([1.0, -1.0, -1.0, 1.0]) {
            assert!(close(*x, want * 0.5 / (0.5 + 1e-4), 1e-12));
        }
        assert!(a[4..].iter().all(|x| *x == 0.0), "equal rewards: no signal");
        let (m, v) = mean_var(&a[..4]);
        assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-3);
        let l = rloo_advantages(&[3.0, 1.0, 2.0], 3);
        // 3 − (1+2)/2, 1 − (3+2)/2, 2 − (3+1)/2.
        assert_eq!(l, [1.5, -1.5, 0.0]);
        // Leave-one-out advantages are G/(G−1) times the mean-centred rewards.
        let l = rloo_advantages(&r, 4);
        for (x, c) in l[..4].iter().zip([0.5, -0.5, -0.5, 0.5]) {
            assert!(close(*x, c * 4.0 / 3.0, 1e-12));
        }
    }

    #[test]
    fn the_adaptive_controller_moves_beta_toward_the_target() {
        let mut c = KlController::adaptive(0.1, 6.0, 10_000.0);
        c.update(12.0, 256); // KL twice the target: error clipped to +0.2.
        assert!(close(c.value, 0.1 * (1.0 + 0.2 * 256.0 / 10_000.0), 1e-12));
        let before = c.value;
        c.update(3.0, 256); // KL half the target: e = −0.2 (clipped from −0.5).
        assert!(close(c.value, before * (1.0 - 0.2 * 256.0 / 10_000.0), 1e-12));
        let before = c.value;
        c.update(6.3, 100); // e = 0.05.
        assert!(close(c.value, before * (1.0 + 0.05 * 100.0 / 10_000.0), 1e-12));
        let mut f = KlController::fixed(0.05);
        f.update(100.0, 1000);
        assert_eq!(f.value, 0.05);
    }

    #[test]
    fn explained_variance_by_hand() {
        let r = [1.0, 2.0, 3.0];
        assert!(close(explained_variance(&r, &r), 1.0, 1e-12));
        assert!(close(explained_variance(&[2.0; 3], &r), 0.0, 1e-12));
        assert!(explained_variance(&[3.0, 2.0, 1.0], &r) < 0.0);
        assert_eq!(explained_variance(&[0.0; 3], &[1.0; 3]), 0.0);
    }
}
