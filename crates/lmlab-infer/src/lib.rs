//! lmlab-infer: generating text from a model, one token at a time.
//!
//! What it does: loads any model — an lmlab checkpoint, a GGUF file, a Hugging Face folder —
//! with its tokenizer and chat template ([`Model`]); turns text into prompt ids and checks stop
//! strings ([`prompt_ids`], [`StopText`]); turns logits into a next token ([`sampler`]); and
//! runs generation ([`engine`]): the prompt is read in one parallel forward pass (prefill) that
//! fills the KV cache, then each new token costs one single-token pass over the cache (decode),
//! several samples in one batched step. Both phases are timed. Beam search ([`beam`]) keeps the
//! most likely continuations instead of sampling one. [`Sequence`] and [`decode_step`]
//! expose those steps one at a time, so a scheduler can admit sequences between decode steps
//! (continuous batching, in `lmlab-serve`), and [`PrefixCache`] keeps finished sequences' KV
//! caches so that a prompt beginning with the same tokens prefills only the rest.
//!
//! What it does not do: the networks themselves (`lmlab-model`), training, or serving.
//!
//! ```no_run
//! use lmlab_infer::{generate, GenerateRequest, LoadOptions, Model, SamplingParams};
//! let model = Model::load("runs/world/base".as_ref(), &LoadOptions::default(), &candle_core::Device::Cpu)?;
//! let prompt = model.prompt("The capital of", false, None)?;
//! let req = GenerateRequest::new(prompt, 20, SamplingParams { temperature: 0.0, ..Default::default() });
//! let out = generate(&model, &req, |_, _| {}, |_, _| false)?;
//! println!("{}", model.tokenizer().decode(&out.samples[0].tokens)?);
//! # anyhow::Ok(())
//! ```

#![forbid(unsafe_code)]

pub mod beam;
pub mod bench;
pub mod engine;
pub mod inspect;
mod model;
mod prefix;
mod prompt;
pub mod reference;
pub mod sampler;

pub use beam::{beam_search, Beam, BeamRequest};
pub use engine::{
    decode_step, generate, generate_batch, FinishReason, GenerateRequest, Generation, Sample, Sequence, Timings, TokenLogprob,
};
pub use model::{embedded_vocab, save_merged, tokenizer_file, LoadOptions, Model};
pub use prefix::{Prefix, PrefixCache, MIN_SHARED_TOKENS};
pub use prompt::{prompt_ids, StopText};
pub use sampler::{Sampler, SamplingParams};
