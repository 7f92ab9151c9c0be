//! Right-padded batches: sequences of different lengths in one [B, L] tensor, each followed by
//! padding up to the longest.
//!
//! Under causal attention a token sees only the tokens before it, so a sequence's real tokens
//! never see the padding after them: they compute what they would alone (up to the order of
//! floating-point sums in a wider matmul), and no attention mask is needed, unlike with left
//! padding. What the model computes *at* a padding position is meaningless, so readers take
//! each row's values at real positions only: the last one ([`crate::Gpt::last_hidden`], where a
//! reward model reads its score) or chosen real positions
//! ([`crate::Gpt::logprobs_at`], the tokens of a reply).

use candle_core::{Device, Result, Tensor};

/// A batch of token sequences, right-padded.
#[derive(Debug, Clone)]
pub struct RightPadded {
    /// [B, L] token ids, L the longest length; padding positions hold `pad`.
    pub ids: Tensor,
    /// Each row's real length (at least 1).
    pub lengths: Vec<usize>,
}

impl RightPadded {
    /// Pads each of `seqs` with `pad` to the longest. Every sequence needs at least one token.
    pub fn new(seqs: &[&[u32]], pad: u32, dev: &Device) -> Result<Self> {
        if seqs.is_empty() {
            candle_core::bail!("a padded batch needs at least one sequence");
        }
        if let Some(i) = seqs.iter().position(|s| s.is_empty()) {
            candle_core::bail!("sequence {i} of a padded batch is empty");
        }
        let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * width);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(pad, width - s.len()));
        }
        Ok(Self { ids: Tensor::from_vec(ids, (seqs.len(), width), dev)?, lengths: seqs.iter().map(|s| s.len()).collect() })
    }

    /// The flat index (row·L + position) of each row's last real token in a [B·L, …] view.
    pub fn last_positions(&self) -> Result<Tensor> {
        let width = self.ids.dim(1)?;
        let at: Vec<u32> = self.lengths.iter().enumerate().map(|(row, &len)| (row * width + len - 1) as u32).collect();
        Tensor::new(at, self.ids.device())
    }
}
