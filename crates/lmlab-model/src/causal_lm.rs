//! [`CausalLm`]: the one interface through which every model is run for inference.
//!
//! Generation, inspection, evaluation, serving and RL rollouts all need the same few things of
//! a model: read tokens into a KV cache and return the next-token logits (prefill of a prompt,
//! or one decode step), decode one token for each of several independent sequences at once
//! (each with its own cache, at its own position), score every position of a sequence, and a
//! fresh cache. Two types implement it:
//!
//! - [`crate::Gpt`], the differentiable model: lmlab checkpoints, Hugging Face folders and
//!   GGUF files dequantized to dense weights (LoRA and training need those). Attention capture
//!   and dropout stay its own ([`crate::Gpt::forward_cached_mode`]).
//! - [`crate::QuantizedLlama`], quantized llama-family GGUF models run over plain buffers
//!   through lmlab's kernels: the fast inference path.
//!
//! Tokenizers and chat templates are not this crate's business: `lmlab_infer::Model` pairs a
//! `CausalLm` with the tokenizer and template that came with it.

use candle_core::{Device, Result, Tensor};

use crate::config::GptConfig;
use crate::kv_cache::KvCache;
use crate::Gpt;

/// A causal language model that inference can run. See the module documentation.
pub trait CausalLm: Send + Sync {
    /// The model's shape (vocabulary size, context length, layers, heads).
    fn config(&self) -> &GptConfig;

    /// The device its weights live on.
    fn device(&self) -> &Device;

    /// Which implementation runs it: "dense" or "quantized llama".
    fn kind(&self) -> &'static str;

    /// A fresh, empty cache for one sequence (its element type is the model's choice: f16 for
    /// quantized models, as llama.cpp's default, the weights' type otherwise).
    fn new_cache(&self) -> KvCache;

    /// Reads `ids` [B, T] at the cache's next positions, appends their keys and values, and
    /// returns the logits [B, V] of each sequence's last token. Prefill is T = prompt length,
    /// a decode step T = 1. B > 1 means B sequences sharing one cache of equal lengths.
    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor>;

    /// One decode step of independent sequences: `tokens[i]` is read at the next position of
    /// `caches[i]` (each cache holds one sequence, lengths may differ). Returns logits [N, V].
    fn decode_batch(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor>;

    /// Logits [B, T, V] at every position of `ids` [B, T], with no cache kept (scoring,
    /// perplexity, generation without a cache).
    fn logits_all(&self, ids: &Tensor) -> Result<Tensor>;

    /// The dense tensor-path model behind this one, for what only it offers (attention
    /// capture, gradients), if there is one.
    fn as_gpt(&self) -> Option<&Gpt> {
        None
    }

    /// Vocabulary size.
    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    /// The longest sequence the model reads.
    fn context_length(&self) -> usize {
        self.config().context_length
    }
}

/// Checks that `caches` and `tokens` pair up and that every sequence has room for one more
/// token.
pub(crate) fn check_batch(cfg: &GptConfig, tokens: &[u32], caches: &[&mut KvCache]) -> Result<()> {
    if tokens.len() != caches.len() || tokens.is_empty() {
        candle_core::bail!("a batched decode step takes one token per cache, not {} tokens for {} caches", tokens.len(), caches.len());
    }
    for (i, c) in caches.iter().enumerate() {
        if c.batch_size() > 1 {
            candle_core::bail!("sequence {i}: a batched decode step takes caches of one sequence each, not {}", c.batch_size());
        }
        if c.seq_len() + 1 > cfg.context_length {
            candle_core::bail!("sequence {i}: {} tokens exceed the context length {}", c.seq_len() + 1, cfg.context_length);
        }
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        candle_core::bail!("token id {bad} is outside the vocabulary of {}", cfg.vocab_size);
    }
    Ok(())
}
