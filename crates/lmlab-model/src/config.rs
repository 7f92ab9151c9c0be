//! The Transformer's shape: [`GptConfig`], its validation, and parameter counting.
//!
//! The config is what `config.json` in a checkpoint holds and what the `[model]` table of a
//! preset in `configs/` describes. It says nothing about training (see lmlab-train).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    LayerNorm,
    RmsNorm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// GELU (tanh approximation, as GPT-2) between two projections.
    Gelu,
    /// SiLU-gated linear unit (gate, up, down projections), as Llama.
    SwiGlu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// A learned embedding per absolute position (GPT-2).
    Learned,
    /// Rotary position embedding applied to queries and keys (Llama).
    Rope,
}

fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    /// Vocabulary size. 0 in a preset means "take it from the tokenizer".
    #[serde(default)]
    pub vocab_size: usize,
    pub context_length: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Key/value heads; fewer than `n_head` is grouped-query attention. Defaults to `n_head`.
    #[serde(default)]
    pub n_kv_head: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub norm: Norm,
    pub activation: Activation,
    pub position: Position,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    #[serde(default)]
    pub dropout: f64,
    /// Biases in linear layers and LayerNorm.
    #[serde(default)]
    pub bias: bool,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
}

/// Parameter counts by component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParamCount {
    pub embeddings: usize,
    pub attention: usize,
    pub mlp: usize,
    pub norms: usize,
    /// The output projection when it is not tied to the token embedding.
    pub lm_head: usize,
    pub total: usize,
}

impl GptConfig {
    /// A Llama-style shape: RMSNorm, SwiGLU, rotary positions, tied embeddings, no biases.
    pub fn llama_style(
        vocab_size: usize,
        context_length: usize,
        n_layer: usize,
        n_head: usize,
        n_kv_head: usize,
        d_model: usize,
        d_ff: usize,
    ) -> Self {
        Self {
            vocab_size,
            context_length,
            n_layer,
            n_head,
            n_kv_head,
            d_model,
            d_ff,
            norm: Norm::RmsNorm,
            activation: Activation::SwiGlu,
            position: Position::Rope,
            rope_theta: default_rope_theta(),
            tie_embeddings: true,
            dropout: 0.0,
            bias: false,
            norm_eps: default_norm_eps(),
        }
    }

    /// A GPT-2-style shape: LayerNorm, GELU, learned positions, biases, tied embeddings.
    pub fn gpt2_style(vocab_size: usize, context_length: usize, n_layer: usize, n_head: usize, d_model: usize, d_ff: usize) -> Self {
        Self {
            norm: Norm::LayerNorm,
            activation: Activation::Gelu,
            position: Position::Learned,
            bias: true,
            ..Self::llama_style(vocab_size, context_length, n_layer, n_head, n_head, d_model, d_ff)
        }
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }

    /// Fills defaults that depend on other fields (`n_kv_head` 0 means `n_head`).
    pub fn resolved(mut self) -> Self {
        if self.n_kv_head == 0 {
            self.n_kv_head = self.n_head;
        }
        self
    }

    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.vocab_size == 0 {
            bail!("model.vocab_size is 0: set it, or let the tokenizer decide");
        }
        for (name, v) in
            [("context_length", c.context_length), ("n_layer", c.n_layer), ("n_head", c.n_head), ("d_model", c.d_model), ("d_ff", c.d_ff)]
        {
            if v == 0 {
                bail!("model.{name} must be positive");
            }
        }
        if !c.d_model.is_multiple_of(c.n_head) {
            bail!("model.d_model ({}) must be divisible by model.n_head ({})", c.d_model, c.n_head);
        }
        if c.n_kv_head == 0 || !c.n_head.is_multiple_of(c.n_kv_head) {
            bail!("model.n_head ({}) must be a multiple of model.n_kv_head ({})", c.n_head, c.n_kv_head);
        }
        if c.position == Position::Rope && !c.head_dim().is_multiple_of(2) {
            bail!("rope needs an even head dimension, got {}", c.head_dim());
        }
        if !(0.0..1.0).contains(&c.dropout) {
            bail!("model.dropout must be in [0, 1), got {}", c.dropout);
        }
        Ok(())
    }

    /// Counts parameters exactly as the model allocates them.
    pub fn param_count(&self) -> ParamCount {
        let c = self;
        let d = c.d_model;
        let kv = c.n_kv_head * c.head_dim();
        let b = usize::from(c.bias);
        let norm_params = d * (1 + b * usize::from(c.norm == Norm::LayerNorm));
        let qkv_out = d + 2 * kv;
        let attention = d * qkv_out + b * qkv_out + d * d + b * d;
        let mlp = match c.activation {
            Activation::Gelu => d * c.d_ff + b * c.d_ff + c.d_ff * d + b * d,
            Activation::SwiGlu => 2 * (d * c.d_ff + b * c.d_ff) + c.d_ff * d + b * d,
        };
        let mut p = ParamCount {
            embeddings: c.vocab_size * d + if c.position == Position::Learned { c.context_length * d } else { 0 },
            attention: c.n_layer * attention,
            mlp: c.n_layer * mlp,
            norms: (2 * c.n_layer + 1) * norm_params,
            lm_head: if c.tie_embeddings { 0 } else { c.vocab_size * d },
            total: 0,
        };
        p.total = p.embeddings + p.attention + p.mlp + p.norms + p.lm_head;
        p
    }

    /// Parameters that take part in matrix multiplies per token: everything but the position
    /// table and norms, with the (tied or untied) output projection counted once.
    pub fn matmul_params(&self) -> usize {
        let p = self.param_count();
        p.attention + p.mlp + self.vocab_size * self.d_model
    }

    /// Training FLOPs per token at sequence length `seq`: 6 per matmul parameter (forward and
    /// backward), plus attention scores and weighted sums (2·2·seq·d per layer forward, ×3).
    pub fn train_flops_per_token(&self, seq: usize) -> f64 {
        6.0 * self.matmul_params() as f64 + 12.0 * (self.n_layer * seq * self.d_model) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn gpt2_small() -> GptConfig {
        GptConfig::gpt2_style(50257, 1024, 12, 12, 768, 3072)
    }

    #[test]
    fn gpt2_small_has_its_published_parameter_count() {
        assert_eq!(gpt2_small().param_count().total, 124_439_808);
    }
}
