//! `lmlab eval ppl`: perplexity and bits per byte on held-out text.
//!
//! Perplexity depends on the tokenizer (a token is a different amount of text for each), so
//! models with different tokenizers are compared by bits per byte: the model's total surprise
//! in bits, divided by the UTF-8 bytes of the text it predicted. The token stream is cut into
//! windows of the model's context; each token but a window's first is predicted from the
//! tokens before it in its window, and only predicted tokens (and their bytes) count.

use anyhow::{ensure, Result};
use candle_core::{DType, Tensor};
use lmlab_model::CausalLm;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct PplStats {
    /// Tokens predicted.
    pub tokens: usize,
    /// UTF-8 bytes of those tokens.
    pub bytes: usize,
    /// Total negative log-likelihood in nats.
    pub nats: f64,
}

impl PplStats {
    /// e^(mean nats per token).
    pub fn perplexity(&self) -> f64 {
        (self.nats / self.tokens.max(1) as f64).exp()
    }

    /// Total bits over total bytes.
    pub fn bits_per_byte(&self) -> f64 {
        self.nats / std::f64::consts::LN_2 / self.bytes.max(1) as f64
    }

    pub fn add(&mut self, other: PplStats) {
        self.tokens += other.tokens;
        self.bytes += other.bytes;
        self.nats += other.nats;
    }
}

/// −Σᵢ log p(targets[i]) under row i of `logits` ([n, vocab], any float type), in nats,
/// computed in f64: the surprise of the tokens each row predicted.
pub fn target_nats(logits: &Tensor, targets: &[u32]) -> Result<f64> {
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F64)?, 1)?;
    let targets = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    let picked: Vec<f64> = logp.gather(&targets, 1)?.squeeze(1)?.to_vec1()?;
    Ok(-picked.iter().sum::<f64>())
}

/// Scores `tokens` with `model` in windows of `window` tokens (at most the context length);
/// `token_bytes(id)` is the number of bytes token `id` stands for.
pub fn score(model: &dyn CausalLm, tokens: &[u32], window: usize, token_bytes: impl Fn(u32) -> usize) -> Result<PplStats> {
    let window = window.min(model.context_length());
    ensure!(window >= 2, "a window of {window} tokens predicts nothing");
    let mut stats = PplStats::default();
    for chunk in tokens.chunks(window).filter(|c| c.len() >= 2) {
        let ids = Tensor::new(chunk, model.device())?.unsqueeze(0)?;
        let logits = model.logits_all(&ids)?.squeeze(0)?;
        stats.nats += target_nats(&logits.narrow(0, 0, chunk.len() - 1)?, &chunk[1..])?;
        stats.tokens += chunk.len() - 1;
        stats.bytes += chunk[1..].iter().map(|&t| token_bytes(t)).sum::<usize>();
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Result as CResult};
    use lmlab_model::{GptConfig, KvCache};

    /// A model that gives every next byte the same probability: 8 bits per byte.
    struct UniformBytes(GptConfig, Device);

    impl CausalLm for UniformBytes {
        fn config(&self) -> &GptConfig {
            &self.0
        }
        fn device(&self) -> &Device {
            &self.1
        }
        fn kind(&self) -> &'static str {
            "uniform"
        }
        fn new_cache(&self) -> KvCache {
            KvCache::new(0)
        }
        fn forward_cached(&self, ids: &Tensor, _: &mut KvCache) -> CResult<Tensor> {
            Tensor::zeros((ids.dim(0)?, 256), DType::F32, &self.1)
        }
        fn decode_batch(&self, tokens: &[u32], _: &mut [&mut KvCache]) -> CResult<Tensor> {
            Tensor::zeros((tokens.len(), 256), DType::F32, &self.1)
        }
        fn logits_all(&self, ids: &Tensor) -> CResult<Tensor> {
            let (b, t) = ids.dims2()?;
            Tensor::zeros((b, t, 256), DType::F32, &self.1)
        }
    }

    #[test]
    fn a_uniform_byte_model_spends_eight_bits_per_byte() {
        let m = UniformBytes(GptConfig { vocab_size: 256, ..GptConfig::gpt2_style(256, 64, 1, 1, 8, 8) }, Device::Cpu);
        let text = "Bits per byte of a uniform byte model is eight, whatever the text. 字节也一样。".as_bytes();
        let tokens: Vec<u32> = text.iter().map(|&b| u32::from(b)).collect();
        let s = score(&m, &tokens, 16, |_| 1).unwrap();
        // Windows of 16 predict 15 tokens each; the last, shorter window predicts the rest.
        let windows = tokens.len().div_ceil(16);
        assert_eq!(s.tokens, tokens.len() - windows);
        assert!((s.bits_per_byte() - 8.0).abs() < 1e-12, "{}", s.bits_per_byte());
        assert!((s.perplexity() - 256.0).abs() < 1e-9);
        // Tokens of two bytes each: the same bits over twice the bytes.
        let s2 = score(&m, &tokens, 16, |_| 2).unwrap();
        assert!((s2.bits_per_byte() - 4.0).abs() < 1e-12);
        assert!(score(&m, &tokens, 1, |_| 1).is_err());
    }
}
