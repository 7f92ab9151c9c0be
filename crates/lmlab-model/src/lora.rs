//! LoRA (Hu et al. 2021): low-rank adapters on a frozen model's linear layers.
//!
//! An adapted projection computes `y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ` with A [r, in] and B [out, r].
//! W stays frozen; only A and B train. B starts at zero, so an adapted model starts out equal to
//! its base; A starts uniform in ±1/√in (as PEFT's default). Merging writes W + (α/r)·B·A.
//!
//! Target names follow the usual Hugging Face projection names and map onto lmlab's layers:
//! - `q`, `k`, `v`: row blocks of lmlab's fused `attn.c_attn` (queries, then keys, then values).
//!   Each gets its own adapter on its own rows, which is exactly PEFT's separate `q_proj`,
//!   `k_proj`, `v_proj` adapters;
//! - `o`: `attn.c_proj`;
//! - `gate`, `up`, `down`: SwiGLU's `mlp.gate_proj`, `mlp.up_proj`, `mlp.down_proj`. A GELU model
//!   has no gate: `up` is its `mlp.c_fc` and `down` its `mlp.c_proj`, and `gate` is an error;
//! - groups: `attn` = q,k,v,o and `mlp` = gate,up,down (up,down on GELU models).
//!
//! Adapters need a dense base: a GGUF model is dequantized first.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// A projection an adapter can sit on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::O, Target::Gate, Target::Up, Target::Down];

    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// Targets from a list such as "attn,mlp" or "q,v": sorted, without repeats. The groups
    /// `mlp` and `all` include `gate`, as on a SwiGLU model; [`Target::parse_list_for`] reads
    /// them for a given model.
    pub fn parse_list(list: &str) -> std::result::Result<Vec<Target>, String> {
        Self::parse_list_for(list, crate::Activation::SwiGlu)
    }

    /// [`Target::parse_list`] for a model with this MLP: on a GELU model, which has no gate, the
    /// groups `mlp` and `all` mean its up and down projections (a `gate` named on its own stays,
    /// and adding it to such a model is an error).
    pub fn parse_list_for(list: &str, activation: crate::Activation) -> std::result::Result<Vec<Target>, String> {
        let mlp: &[Target] = match activation {
            crate::Activation::SwiGlu => &[Target::Gate, Target::Up, Target::Down],
            crate::Activation::Gelu => &[Target::Up, Target::Down],
        };
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "attn" => out.extend([Target::Q, Target::K, Target::V, Target::O]),
                "mlp" => out.extend(mlp),
                "all" => out.extend([Target::Q, Target::K, Target::V, Target::O].iter().chain(mlp)),
                _ => {
                    out.push(Target::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| {
                        format!("unknown LoRA target {name:?} (q, k, v, o, gate, up, down, or the groups attn, mlp, all)")
                    })?)
                }
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err("no LoRA targets given".into());
        }
        Ok(out)
    }
}

/// The shape of an adapter set: rank, scale and where the adapters sit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<Target>,
}

impl LoraConfig {
    /// α / r, the factor on every adapter's output.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One adapter on rows `start..start+len` of a projection's output.
#[derive(Clone)]
pub(crate) struct Adapter {
    pub(crate) start: usize,
    pub(crate) a: Tensor,
    pub(crate) b: Tensor,
    pub(crate) scale: f64,
}

impl Adapter {
    /// A fresh adapter (B = 0) named `name` in `vb`, or the stored one when `vb` loads tensors.
    pub(crate) fn new(vb: &VarBuilder, name: &str, start: usize, rows: usize, in_dim: usize, cfg: &LoraConfig) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = vb.get_with_hints((cfg.rank, in_dim), &format!("{name}.lora_a"), Init::Uniform { lo: -bound, up: bound })?;
        let b = vb.get_with_hints((rows, cfg.rank), &format!("{name}.lora_b"), Init::Const(0.0))?;
        Ok(Self { start, a, b, scale: cfg.scale() })
    }

    fn rows(&self) -> Result<usize> {
        self.b.dim(0)
    }

    /// (α/r)·(x·Aᵀ)·Bᵀ for x of any rank.
    fn delta(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::linear(&crate::ops::linear(x, &self.a, None)?, &self.b, None)? * self.scale
    }
}

/// The summed output of `adapters` (sorted by `start`) for a projection with `out` rows: each
/// adapter's rows in place, zeros where none sits.
pub(crate) fn delta(adapters: &[Adapter], x: &Tensor, out: usize) -> Result<Tensor> {
    if let [only] = adapters {
        if only.start == 0 && only.rows()? == out {
            return only.delta(x);
        }
    }
    let last = x.rank() - 1;
    let mut shape = x.dims().to_vec();
    let mut pieces = Vec::new();
    let mut at = 0;
    for ad in adapters {
        if ad.start > at {
            shape[last] = ad.start - at;
            pieces.push(Tensor::zeros(shape.as_slice(), x.dtype(), x.device())?);
        }
        pieces.push(ad.delta(x)?);
        at = ad.start + ad.rows()?;
    }
    if at < out {
        shape[last] = out - at;
        pieces.push(Tensor::zeros(shape.as_slice(), x.dtype(), x.device())?);
    }
    Tensor::cat(&pieces, last)
}

/// W + Σ (α/r)·B·A, each adapter added to its own rows.
pub(crate) fn merged(w: &Tensor, adapters: &[Adapter]) -> Result<Tensor> {
    let mut w = w.clone();
    for ad in adapters {
        let rows = ad.rows()?;
        let update = (ad.b.matmul(&ad.a)? * ad.scale)?.to_dtype(w.dtype())?;
        let block = (w.narrow(0, ad.start, rows)? + update)?;
        w = w.slice_assign(&[ad.start..ad.start + rows, 0..w.dim(1)?], &block)?;
    }
    Ok(w)
}

/// `adapter.json`: which base a folder of LoRA adapters belongs on, and their shape. The
/// adapters themselves are in `adapter.safetensors` beside it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdapterInfo {
    /// The base model as it was given (a checkpoint folder, Hugging Face folder or GGUF file).
    pub base: PathBuf,
    pub lora: LoraConfig,
}

pub const ADAPTER_FILE: &str = "adapter.safetensors";
pub const ADAPTER_INFO_FILE: &str = "adapter.json";

/// The adapter description of folder `dir`, when it holds adapters.
pub fn adapter_info(dir: &Path) -> anyhow::Result<Option<AdapterInfo>> {
    let path = dir.join(ADAPTER_INFO_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
}
