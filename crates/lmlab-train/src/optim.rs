//! AdamW with decoupled weight decay, parameter groups and global-norm gradient clipping.
//!
//! candle-nn's AdamW has no parameter groups and no clipping. Here weight decay applies to
//! matrices only, unless configured for embeddings too; norms and biases never decay. The update
//! is PyTorch's `torch.optim.AdamW` step, so results compare one to one:
//! p ← p·(1 − lr·wd); p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
//! Moments are kept in the parameters' order, so their state saves and loads by name.

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::{backprop::GradStore, DType, Tensor, Var};
use lmlab_model::{ParamKind, ParamSet};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Apply weight decay to token/position embeddings too.
    pub decay_embeddings: bool,
}

struct Slot {
    name: String,
    var: Var,
    decay: bool,
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    /// Optimizer steps taken (t in the bias corrections).
    pub t: u64,
}

impl AdamW {
    pub fn new(params: &ParamSet, cfg: AdamWConfig) -> Result<Self> {
        let slots = params
            .params
            .iter()
            .map(|(name, var)| {
                let decay = match ParamKind::of(name) {
                    ParamKind::Matrix => true,
                    ParamKind::Embedding => cfg.decay_embeddings,
                    ParamKind::Norm | ParamKind::Bias => false,
                };
                Ok(Slot { name: name.clone(), var: var.clone(), decay, m: var.zeros_like()?, v: var.zeros_like()? })
            })
            .collect::<Result<_>>()?;
        Ok(Self { cfg, slots, t: 0 })
    }

    /// Names of the parameters that receive weight decay.
    pub fn decayed(&self) -> Vec<&str> {
        self.slots.iter().filter(|s| s.decay).map(|s| s.name.as_str()).collect()
    }

    /// Gradients of every parameter, in order; a parameter without one is an error (it would
    /// silently stay untrained).
    pub fn collect_grads(&self, grads: &GradStore) -> Result<Vec<Tensor>> {
        self.slots
            .iter()
            .map(|s| match grads.get(&s.var) {
                Some(g) => Ok(g.clone()),
                None => bail!("parameter {} received no gradient", s.name),
            })
            .collect()
    }

    /// One update with `lr` from the given gradients (already accumulated and clipped).
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2_sqrt = (1.0 - b2.powi(self.t as i32)).sqrt();
        for (slot, g) in self.slots.iter_mut().zip(grads) {
            slot.m = ((&slot.m * b1)? + (g * (1.0 - b1))?)?;
            slot.v = ((&slot.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mut p = slot.var.as_tensor().clone();
            if slot.decay && self.cfg.weight_decay > 0.0 {
                p = (p * (1.0 - lr * self.cfg.weight_decay))?;
            }
            let denom = ((slot.v.sqrt()? / bc2_sqrt)? + self.cfg.eps)?;
            let update = (slot.m.div(&denom)? * (lr / bc1))?;
            slot.var.set(&(p - update)?)?;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.<param>`, `v.<param>`) for `optimizer.safetensors`.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        self.slots.iter().flat_map(|s| [(format!("m.{}", s.name), s.m.clone()), (format!("v.{}", s.name), s.v.clone())]).collect()
    }

    /// Restores moments saved by [`Self::state_tensors`] and the step count.
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, t: u64) -> Result<()> {
        for slot in &mut self.slots {
            for (key, dst) in [(format!("m.{}", slot.name), &mut slot.m), (format!("v.{}", slot.name), &mut slot.v)] {
                let src = tensors.remove(&key).ok_or_else(|| anyhow::anyhow!("optimizer state has no {key}"))?;
                if src.shape() != dst.shape() {
                    bail!("optimizer state {key} has shape {:?}, expected {:?}", src.shape(), dst.shape());
                }
                *dst = src.to_dtype(dst.dtype())?;
            }
        }
        self.t = t;
        Ok(())
    }
}

/// Global L2 norm of the gradients, summed in f64 in parameter order (deterministic).
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0f64;
    for g in grads {
        sum += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

/// Scales gradients so their global norm is at most `max_norm` (as torch's clip_grad_norm_);
/// returns the norm before clipping. `max_norm` ≤ 0 disables clipping.
pub fn clip_global_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn one_param(name: &str, values: &[f32]) -> ParamSet {
        let var = Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap();
        ParamSet { params: vec![(name.to_string(), var)] }
    }

    #[test]
    fn first_step_matches_hand_computed_adamw() {
        // With m̂ = g and v̂ = g², the first Adam step moves each weight by lr·g/(|g| + ε).
        let params = one_param("h.0.mlp.c_fc.weight", &[1.0, -2.0]);
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, decay_embeddings: false };
        let mut opt = AdamW::new(&params, cfg).unwrap();
        let g = Tensor::new(&[0.5f32, -0.25], &Device::Cpu).unwrap();
        opt.step(&[g], 0.01).unwrap();
        let p = params.params[0].1.as_tensor().to_vec1::<f32>().unwrap();
        let expect = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (a, e) in p.iter().zip(expect) {
            assert!((a - e).abs() < 1e-6, "{p:?} vs {expect:?}");
        }
    }

    #[test]
    fn norms_biases_and_embeddings_are_not_decayed_by_default() {
        let mut ps = one_param("h.0.ln_1.weight", &[1.0]);
        ps.params.extend(one_param("h.0.attn.c_attn.bias", &[1.0]).params);
        ps.params.extend(one_param("wte.weight", &[1.0]).params);
        ps.params.extend(one_param("h.0.attn.c_attn.weight", &[1.0]).params);
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, decay_embeddings: false };
        assert_eq!(AdamW::new(&ps, cfg.clone()).unwrap().decayed(), vec!["h.0.attn.c_attn.weight"]);
        let cfg = AdamWConfig { decay_embeddings: true, ..cfg };
        assert_eq!(AdamW::new(&ps, cfg).unwrap().decayed(), vec!["wte.weight", "h.0.attn.c_attn.weight"]);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = vec![Tensor::new(&[3.0f32], &Device::Cpu).unwrap(), Tensor::new(&[4.0f32], &Device::Cpu).unwrap()];
        let before = clip_global_norm(&mut g, 1.0).unwrap();
        assert!((before - 5.0).abs() < 1e-9);
        assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-5);
    }
}
