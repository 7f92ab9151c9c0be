//! Shared test helper: analytic gradients against central finite differences, in f64.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use lmlab_model::ParamSet;

/// Checks three entries (first, middle, last) of every parameter. Central differences at
/// eps = 1e-5 carry ~1e-11 of rounding noise in f64, hence a relative tolerance with a small
/// absolute floor for near-zero gradients. `loss` must recompute the loss from the variables.
pub fn assert_gradients_match_fd(what: &str, params: &ParamSet, grads: &GradStore, loss: impl Fn() -> f64) {
    let dev = Device::Cpu;
    for (name, var) in &params.params {
        let g = grads.get(var).unwrap_or_else(|| panic!("{what}: {name} has no gradient")).flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for k in [0, base.len() / 2, base.len() - 1] {
            let eval = |d: f64| {
                let mut p = base.clone();
                p[k] += d;
                var.set(&Tensor::from_vec(p, var.shape(), &dev).unwrap()).unwrap();
                loss()
            };
            let numeric = (eval(1e-5) - eval(-1e-5)) / 2e-5;
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &dev).unwrap()).unwrap();
            let err = (numeric - g[k]).abs();
            assert!(err <= 1e-8 + 1e-5 * numeric.abs(), "{what}: {name}[{k}]: analytic {:e} numeric {numeric:e} (abs err {err:e})", g[k]);
        }
    }
}
