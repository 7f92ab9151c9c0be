//! Model size arithmetic: parameters by component, memory by dtype, KV cache, training memory,
//! FLOPs, and Chinchilla-optimal data — the article's "7B parameters × 2 bytes ≈ 14 GB".
//!
//! Conventions (each a documented estimate, not a measurement):
//! - Weight bytes per parameter: f32 4, bf16/f16 2, int8 as GGUF Q8_0 (34 bytes per 32
//!   weights), q4 as GGUF Q4_0 (18 bytes per 32 weights).
//! - KV cache per token: 2 (K and V) × layers × kv_heads × head_dim × bytes.
//! - Training with AdamW in f32: weights 4 + gradients 4 + two moments 8 = 16 bytes/parameter,
//!   plus activations ≈ layers · B · T · d · (34 + 5 · heads · T / d) bytes at 16-bit
//!   (Korthikanti et al. 2022, no recomputation), doubled for f32.
//! - FLOPs per token: inference 2·N + 4·L·T·d (attention at context T), training 6·N + 12·L·T·d,
//!   where N counts the parameters that take part in matrix multiplies.
//! - Chinchilla-optimal tokens ≈ 20 per parameter (Hoffmann et al. 2022).

use serde::Serialize;

use crate::config::{GptConfig, ParamCount};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    Bf16,
    F16,
    Int8,
    Q4,
}

impl Dtype {
    pub const ALL: [Dtype; 5] = [Dtype::F32, Dtype::Bf16, Dtype::F16, Dtype::Int8, Dtype::Q4];

    pub fn bytes_per_param(self) -> f64 {
        match self {
            Dtype::F32 => 4.0,
            Dtype::Bf16 | Dtype::F16 => 2.0,
            Dtype::Int8 => 34.0 / 32.0,
            Dtype::Q4 => 18.0 / 32.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
            Dtype::Int8 => "int8",
            Dtype::Q4 => "q4",
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Dtype::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| anyhow::anyhow!("unknown dtype {s:?} (f32, bf16, f16, int8, q4)"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeQuery {
    pub dtype: Dtype,
    pub context: usize,
    pub batch: usize,
    /// Training tokens for the compute estimate; default: Chinchilla-optimal.
    pub train_tokens: Option<f64>,
    /// Sustained GFLOP/s for the time estimate.
    pub gflops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    pub params: ParamCount,
    pub matmul_params: usize,
    /// Weight bytes for each dtype, in [`Dtype::ALL`] order.
    pub weight_bytes: Vec<(Dtype, f64)>,
    pub dtype: Dtype,
    pub kv_bytes_per_token: f64,
    pub context: usize,
    pub batch: usize,
    pub kv_bytes_total: f64,
    pub train_weights_bytes: f64,
    pub train_grads_bytes: f64,
    pub train_adam_bytes: f64,
    pub train_activation_bytes: f64,
    pub train_total_bytes: f64,
    pub inference_flops_per_token: f64,
    pub train_flops_per_token: f64,
    pub chinchilla_tokens: f64,
    pub train_tokens: f64,
    pub train_flops: f64,
    pub gflops: f64,
    pub train_seconds: f64,
}

/// Everything the article's size arithmetic asks, for a model config.
pub fn size_report(cfg: &GptConfig, q: &SizeQuery) -> SizeReport {
    let params = cfg.param_count();
    let n = params.total as f64;
    let l = cfg.n_layer as f64;
    let d = cfg.d_model as f64;
    let t = q.context as f64;
    let b = q.batch as f64;
    let kv_per_token = 2.0 * l * (cfg.n_kv_head * cfg.head_dim()) as f64 * q.dtype.bytes_per_param();
    let activations = 2.0 * l * b * t * d * (34.0 + 5.0 * cfg.n_head as f64 * t / d);
    let matmul = cfg.matmul_params() as f64;
    let train_per_token = 6.0 * matmul + 12.0 * l * t * d;
    let chinchilla = 20.0 * n;
    let tokens = q.train_tokens.unwrap_or(chinchilla);
    let train_flops = train_per_token * tokens;
    SizeReport {
        params: params.clone(),
        matmul_params: cfg.matmul_params(),
        weight_bytes: Dtype::ALL.iter().map(|&dt| (dt, n * dt.bytes_per_param())).collect(),
        dtype: q.dtype,
        kv_bytes_per_token: kv_per_token,
        context: q.context,
        batch: q.batch,
        kv_bytes_total: kv_per_token * t * b,
        train_weights_bytes: 4.0 * n,
        train_grads_bytes: 4.0 * n,
        train_adam_bytes: 8.0 * n,
        train_activation_bytes: activations,
        train_total_bytes: 16.0 * n + activations,
        inference_flops_per_token: 2.0 * matmul + 4.0 * l * t * d,
        train_flops_per_token: train_per_token,
        chinchilla_tokens: chinchilla,
        train_tokens: tokens,
        train_flops,
        gflops: q.gflops,
        train_seconds: train_flops / (q.gflops * 1e9),
    }
}

/// Weight memory of a bare parameter count (the article's "7B × 2 bytes").
pub fn weight_bytes(params: f64, dtype: Dtype) -> f64 {
    params * dtype.bytes_per_param()
}

/// "1.56 GB", "124.4 M": decimal units, as model cards and the article use them.
pub fn human(x: f64, unit: &str) -> String {
    let (v, p) = [(1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .iter()
        .find(|(s, _)| x.abs() >= *s)
        .map_or((x, ""), |(s, p)| (x / s, *p));
    format!("{v:.2} {p}{unit}")
}

/// Human-readable duration.
pub fn human_time(secs: f64) -> String {
    let units = [(365.25 * 86400.0, "years"), (86400.0, "days"), (3600.0, "hours"), (60.0, "minutes")];
    units.iter().find(|(s, _)| secs >= *s).map_or(format!("{secs:.1} seconds"), |(s, name)| format!("{:.1} {name}", secs / s))
}

/// The report as text.
pub fn render(r: &SizeReport) -> String {
    let p = &r.params;
    let mut s = String::new();
    let pct = |x: usize| 100.0 * x as f64 / p.total as f64;
    s.push_str(&format!("parameters: {} ({})\n", p.total, human(p.total as f64, "")));
    for (name, v) in
        [("embeddings", p.embeddings), ("attention", p.attention), ("mlp", p.mlp), ("norms", p.norms), ("lm_head (untied)", p.lm_head)]
    {
        s.push_str(&format!("  {name:<18} {v:>16} {:>6.2}%\n", pct(v)));
    }
    s.push_str("weights in memory:\n");
    for (dt, bytes) in &r.weight_bytes {
        s.push_str(&format!("  {:<6} {:>12}\n", dt.name(), human(*bytes, "B")));
    }
    s.push_str(&format!(
        "KV cache ({}): {} per token; {} for context {} x batch {}\n",
        r.dtype.name(),
        human(r.kv_bytes_per_token, "B"),
        human(r.kv_bytes_total, "B"),
        r.context,
        r.batch
    ));
    s.push_str(&format!(
        "training memory (AdamW, f32): weights {} + gradients {} + Adam moments {} + activations ~{} = ~{}\n",
        human(r.train_weights_bytes, "B"),
        human(r.train_grads_bytes, "B"),
        human(r.train_adam_bytes, "B"),
        human(r.train_activation_bytes, "B"),
        human(r.train_total_bytes, "B")
    ));
    s.push_str(&format!(
        "FLOPs per token: inference {}, training {}\n",
        human(r.inference_flops_per_token, "FLOP"),
        human(r.train_flops_per_token, "FLOP")
    ));
    s.push_str(&format!(
        "Chinchilla-optimal data: {} tokens; training on {} tokens = {} -> {} at {} GFLOP/s\n",
        human(r.chinchilla_tokens, ""),
        human(r.train_tokens, ""),
        human(r.train_flops, "FLOP"),
        human_time(r.train_seconds),
        r.gflops.round()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_articles_example_7b_at_two_bytes_is_14_gb() {
        assert_eq!(weight_bytes(7e9, Dtype::Bf16), 14e9);
        assert_eq!(human(14e9, "B"), "14.00 GB");
        assert_eq!(weight_bytes(32.0, Dtype::Q4), 18.0);
    }
}
