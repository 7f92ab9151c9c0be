//! The losses of a policy-gradient step as tensors that carry gradients: PPO's clipped
//! surrogate, the clipped value loss, and the k3 KL penalty GRPO adds to its loss. Each is the
//! mean over the tokens given; the forward values equal [`super::math`]'s per-token formulas.
//!
//! Clipping is written with masks computed from the (detached) numbers: a token whose clipped
//! term is the one taken contributes a constant, so its gradient is exactly zero, rather than
//! relying on how a framework differentiates `min` and `clamp` at their kinks.

use anyhow::Result;
use candle_core::{DType, Tensor};

use super::math;

fn f32s(xs: impl IntoIterator<Item = f64>) -> Vec<f32> {
    xs.into_iter().map(|x| x as f32).collect()
}

/// PPO's clipped policy loss, −mean_i min(ρ_i·A_i, clip(ρ_i, 1 − ε, 1 + ε)·A_i) with
/// ρ_i = exp(logp_i − logp_old_i), over the N tokens of `logp` [N]. Returns the loss and the
/// share of tokens clipped (whose gradient is zero).
pub fn policy_loss(logp: &Tensor, logp_old: &[f64], adv: &[f64], eps: f64) -> Result<(Tensor, f64)> {
    let dev = logp.device();
    let now: Vec<f32> = logp.to_dtype(DType::F32)?.to_vec1()?;
    let n = now.len();
    anyhow::ensure!(
        logp_old.len() == n && adv.len() == n,
        "policy_loss: {n} tokens, {} old log-probs, {} advantages",
        logp_old.len(),
        adv.len()
    );
    let (mut coef, mut constant, mut clipped) = (Vec::with_capacity(n), Vec::with_capacity(n), 0usize);
    for i in 0..n {
        if math::is_clipped(f64::from(now[i]), logp_old[i], adv[i], eps) {
            let ratio = (f64::from(now[i]) - logp_old[i]).exp();
            coef.push(0.0);
            constant.push(ratio.clamp(1.0 - eps, 1.0 + eps) * adv[i]);
            clipped += 1;
        } else {
            coef.push(adv[i]);
            constant.push(0.0);
        }
    }
    let old = Tensor::new(f32s(logp_old.iter().copied()), dev)?;
    let ratio = (logp - old)?.exp()?;
    let objective = ((ratio * Tensor::new(f32s(coef), dev)?)? + Tensor::new(f32s(constant), dev)?)?;
    Ok((objective.mean_all()?.neg()?, clipped as f64 / n.max(1) as f64))
}

/// The clipped value loss, mean_i ½·max((V_i − R_i)², (V_clip,i − R_i)²) with
/// V_clip = V_old + clip(V − V_old, −ε, ε), over `values` [N].
pub fn value_loss(values: &Tensor, values_old: &[f64], returns: &[f64], eps: f64) -> Result<Tensor> {
    let dev = values.device();
    let now: Vec<f32> = values.to_dtype(DType::F32)?.to_vec1()?;
    let n = now.len();
    let (mut keep, mut constant) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let v = f64::from(now[i]);
        let clipped = values_old[i] + (v - values_old[i]).clamp(-eps, eps);
        if (clipped - returns[i]).powi(2) > (v - returns[i]).powi(2) && (v - values_old[i]).abs() > eps {
            keep.push(0.0);
            constant.push(0.5 * (clipped - returns[i]).powi(2));
        } else {
            keep.push(1.0);
            constant.push(0.0);
        }
    }
    let ret = Tensor::new(f32s(returns.iter().copied()), dev)?;
    let sq = ((values - ret)?.sqr()? * 0.5)?;
    Ok(((sq * Tensor::new(f32s(keep), dev)?)? + Tensor::new(f32s(constant), dev)?)?.mean_all()?)
}

/// The mean k3 estimate of KL(π ‖ π_ref), exp(log π_ref − log π) − 1 − (log π_ref − log π), over
/// the sampled tokens of `logp` [N] (GRPO's penalty; its gradient pulls toward the reference).
pub fn k3_penalty(logp: &Tensor, logp_ref: &[f64]) -> Result<Tensor> {
    let log_r = (Tensor::new(f32s(logp_ref.iter().copied()), logp.device())? - logp)?;
    Ok(((log_r.exp()? - 1.0)? - log_r)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn grads_of(loss: impl Fn(&Tensor) -> Tensor, x: &[f32]) -> (f64, Vec<f32>) {
        let v = Var::new(x, &Device::Cpu).unwrap();
        let l = loss(v.as_tensor());
        let g = l.backward().unwrap();
        (f64::from(l.to_scalar::<f32>().unwrap()), g.get(v.as_tensor()).unwrap().to_vec1().unwrap())
    }

    #[test]
    fn the_clipped_objective_has_no_gradient_outside_the_clip_range() {
        let eps = 0.2;
        // Ratios 1.5 (A>0: clipped), 0.5 (A>0: not clipped), 0.5 (A<0: clipped), 1.1 (inside),
        // 1.5 (A<0: not clipped).
        let ratios = [1.5f64, 0.5, 0.5, 1.1, 1.5];
        let adv = [2.0, 2.0, -1.0, 0.5, -1.0];
        let old = [-1.0, -2.0, -0.5, -3.0, -1.2];
        let logp: Vec<f32> = ratios.iter().zip(&old).map(|(r, o)| (r.ln() + o) as f32).collect();
        let (loss, g) = grads_of(|t| policy_loss(t, &old, &adv, eps).unwrap().0, &logp);
        let want: f64 = -(0..5).map(|i| math::clipped_objective(f64::from(logp[i]), old[i], adv[i], eps)).sum::<f64>() / 5.0;
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
        assert_eq!(g[0], 0.0, "ratio above 1 + ε with a positive advantage");
        assert_eq!(g[2], 0.0, "ratio below 1 − ε with a negative advantage");
        // Elsewhere d/dlogp of −ρA/N is −ρA/N.
        for i in [1, 3, 4] {
            let want = -(ratios[i] * adv[i]) / 5.0;
            assert!((f64::from(g[i]) - want).abs() < 1e-5, "token {i}: {} vs {want}", g[i]);
        }
        let (_, frac) = policy_loss(&Tensor::new(logp.as_slice(), &Device::Cpu).unwrap(), &old, &adv, eps).unwrap();
        assert_eq!(frac, 0.4);
    }

    #[test]
    fn value_loss_matches_the_formula_and_stops_clipped_gradients() {
        let (old, ret) = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]);
        let v = [0.5f32, 1.1, 0.1];
        let (loss, g) = grads_of(|t| value_loss(t, &old, &ret, 0.2).unwrap(), &v);
        let want: f64 = (0..3).map(|i| math::clipped_value_loss(f64::from(v[i]), old[i], ret[i], 0.2)).sum::<f64>() / 3.0;
        assert!((loss - want).abs() < 1e-6);
        // 0.5 and 1.1 take the clipped (constant) term; 0.1 is inside and gets (V − R)/N.
        assert_eq!((g[0], g[1]), (0.0, 0.0));
        assert!((f64::from(g[2]) - (0.1 - 1.0) / 3.0).abs() < 1e-6);
    }

    #[test]
    fn the_k3_penalty_is_zero_with_zero_gradient_at_the_reference() {
        let lp = [-1.0f32, -0.3, -2.0];
        let refs: Vec<f64> = lp.iter().map(|&x| f64::from(x)).collect();
        let (loss, g) = grads_of(|t| k3_penalty(t, &refs).unwrap(), &lp);
        assert!(loss.abs() < 1e-7 && g.iter().all(|x| x.abs() < 1e-7));
        // Away from it, the mean of k3 and a gradient 1 − r per token (over N).
        let shifted = [-0.5f32, -0.3, -2.5];
        let (loss, g) = grads_of(|t| k3_penalty(t, &refs).unwrap(), &shifted);
        let want: f64 = (0..3).map(|i| math::kl_estimate(math::KlEstimator::K3, f64::from(shifted[i]), refs[i])).sum::<f64>() / 3.0;
        assert!((loss - want).abs() < 1e-6);
        for i in 0..3 {
            let r = (refs[i] - f64::from(shifted[i])).exp();
            assert!((f64::from(g[i]) - (1.0 - r) / 3.0).abs() < 1e-5);
        }
    }
}
