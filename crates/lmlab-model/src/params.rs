//! Trainable parameters: seeded creation, loading from a checkpoint, and their kinds.
//!
//! candle's `VarMap` initialises from the device RNG, which cannot be seeded on CPU, and keeps
//! variables in a `HashMap` whose order varies between runs. [`ParamBackend`] plugs into a
//! `VarBuilder` instead: it draws each tensor from a ChaCha RNG keyed by (seed, parameter
//! name), so initial weights depend on nothing else, or takes it from loaded tensors, and it
//! records the variables in creation order, which makes optimizer updates and gradient norms
//! reproducible.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};

/// How the optimizer treats a parameter (weight decay applies to matrices only by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ParamKind {
    Matrix,
    Embedding,
    Norm,
    Bias,
}

impl ParamKind {
    /// Classifies by lmlab's parameter names (see `gpt.rs`).
    pub fn of(name: &str) -> Self {
        if name.ends_with(".bias") {
            ParamKind::Bias
        } else if name.starts_with("wte.") || name.starts_with("wpe.") {
            ParamKind::Embedding
        } else if name.contains("ln_") {
            ParamKind::Norm
        } else {
            ParamKind::Matrix
        }
    }
}

/// The model's variables in creation order.
#[derive(Clone, Default)]
pub struct ParamSet {
    pub params: Vec<(String, Var)>,
}

impl ParamSet {
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.params.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect()
    }

    pub fn num_elements(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A `VarBuilder` backend that creates variables (seeded, or from `loaded`) and records them.
pub struct ParamBackend {
    seed: u64,
    loaded: Option<HashMap<String, Tensor>>,
    created: Arc<Mutex<Vec<(String, Var)>>>,
}

impl ParamBackend {
    /// A `VarBuilder` whose variables are drawn from `seed`, or copied from `loaded` when given
    /// (then every requested name must be present with the right shape), plus a handle to
    /// collect the created variables once the model is built.
    pub fn var_builder(
        seed: u64,
        loaded: Option<HashMap<String, Tensor>>,
        dtype: DType,
        dev: &Device,
    ) -> (VarBuilder<'static>, ParamCollector) {
        let created = Arc::new(Mutex::new(Vec::new()));
        let backend = ParamBackend { seed, loaded, created: created.clone() };
        (VarBuilder::from_backend(Box::new(backend), dtype, dev.clone()), ParamCollector(created))
    }
}

/// Hands out the variables recorded while a model was built.
pub struct ParamCollector(Arc<Mutex<Vec<(String, Var)>>>);

impl ParamCollector {
    pub fn finish(self) -> ParamSet {
        ParamSet { params: std::mem::take(&mut *self.0.lock().expect("param list lock")) }
    }
}

/// FNV-1a: a stable hash of the parameter name (std's hasher is randomised per process).
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn draw(init: Init, shape: &Shape, seed: u64, name: &str) -> Result<Vec<f64>> {
    let n = shape.elem_count();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ stable_hash(name));
    Ok(match init {
        Init::Const(c) => vec![c; n],
        Init::Randn { mean, stdev } => {
            let dist = Normal::new(mean, stdev).map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
            (0..n).map(|_| dist.sample(&mut rng)).collect()
        }
        Init::Uniform { lo, up } => {
            let dist = Uniform::new(lo, up).map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
            (0..n).map(|_| dist.sample(&mut rng)).collect()
        }
        Init::Kaiming { .. } => candle_core::bail!("{name}: Kaiming init is not used by lmlab models"),
    })
}

impl candle_nn::var_builder::SimpleBackend for ParamBackend {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let tensor = match &self.loaded {
            Some(loaded) => {
                let t = loaded.get(name).ok_or_else(|| candle_core::Error::Msg(format!("checkpoint has no tensor {name:?}")))?;
                if t.shape() != &shape {
                    candle_core::bail!("checkpoint tensor {name:?} has shape {:?}, the config needs {:?}", t.shape(), shape);
                }
                // Detached so that the variable below gets storage of its own: `Var::from_tensor`
                // of a tensor that already is a variable shares it, and training would then
                // overwrite the caller's tensors (say, the base weights a second run starts from).
                t.to_dtype(dtype)?.to_device(dev)?.detach()
            }
            None => Tensor::from_vec(draw(init, &shape, self.seed, name)?, shape, dev)?.to_dtype(dtype)?,
        };
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        self.created.lock().expect("param list lock").push((name.to_string(), var));
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        match self.loaded.as_ref().and_then(|l| l.get(name)) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("no tensor {name:?} without a shape"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.loaded.as_ref().is_none_or(|l| l.contains_key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_names() {
        assert_eq!(ParamKind::of("h.0.attn.c_attn.weight"), ParamKind::Matrix);
        assert_eq!(ParamKind::of("h.0.attn.c_attn.bias"), ParamKind::Bias);
        assert_eq!(ParamKind::of("h.3.ln_1.weight"), ParamKind::Norm);
        assert_eq!(ParamKind::of("ln_f.weight"), ParamKind::Norm);
        assert_eq!(ParamKind::of("wte.weight"), ParamKind::Embedding);
        assert_eq!(ParamKind::of("lm_head.weight"), ParamKind::Matrix);
    }

    #[test]
    fn draws_depend_only_on_seed_and_name() {
        let s = Shape::from((3, 4));
        let init = Init::Randn { mean: 0.0, stdev: 1.0 };
        assert_eq!(draw(init, &s, 7, "a").unwrap(), draw(init, &s, 7, "a").unwrap());
        assert_ne!(draw(init, &s, 7, "a").unwrap(), draw(init, &s, 7, "b").unwrap());
        assert_ne!(draw(init, &s, 7, "a").unwrap(), draw(init, &s, 8, "a").unwrap());
    }
}
