//! lmlab-infer: generating text from a model, one token at a time.
//!
//! What it does: turns logits into a next token ([`sampler`]) and runs generation ([`engine`]):
//! the prompt is read in one parallel forward pass (prefill) that fills the KV cache, then each
//! new token costs one single-token pass over the cache (decode). Both phases are timed.
//!
//! What it does not do: tokenization. The engine knows nothing about text, only token ids.

pub mod bench;
pub mod engine;
pub mod inspect;
pub mod reference;
pub mod sampler;

pub use engine::{generate, FinishReason, GenerateRequest, Generation, Sample, Timings, TokenLogprob};
pub use sampler::{Sampler, SamplingParams};
