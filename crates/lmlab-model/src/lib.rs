//! lmlab-model: the decoder-only Transformer, on candle.
//!
//! What it does: the model's config and parameter arithmetic ([`config`]), differentiable
//! building blocks ([`ops`]) and their fused versions with hand-written backward passes ([`fused`]), attention with grouped-query heads, weight capture and packed
//! documents ([`attention`], [`Packing`], and [`decode_attention`] / [`prefill_attention`] over the KV cache), the KV
//! cache ([`kv_cache`]), dense or quantized linear layers ([`linear`], [`qmatmul`]) and LoRA
//! adapters on them ([`lora`]), the dense model ([`Gpt`]) and right-padded batches read at
//! their real positions ([`padded`]), quantized llama models run over plain buffers
//! ([`QuantizedLlama`]), the one inference interface both implement ([`CausalLm`]), seeded parameters ([`params`]),
//! checkpoint files ([`checkpoint`]), the weights of GGUF files ([`gguf`]) and Hugging Face
//! folders ([`hf`]), and the RNN encoder-decoder ([`seq2seq`]).
//!
//! What it does not do: optimisation, data, sampling or tokenization (`lmlab_infer::Model`
//! pairs a network with its tokenizer). Its SIMD kernels live in `lmlab-kernels`, the one crate
//! allowed raw-pointer code.

#![forbid(unsafe_code)]

pub mod attention;
mod causal_lm;
pub mod checkpoint;
pub mod config;
pub mod decode_attention;
pub mod fused;
pub mod gguf;
pub mod gpt;
pub mod hf;
pub mod kv_cache;
pub mod linear;
pub mod lora;
pub mod model_file;
pub mod ops;
pub mod padded;
pub mod params;
pub mod prefill_attention;
pub mod qmatmul;
mod quantized;
pub mod seq2seq;
pub mod size;

pub use attention::{Mode, Packing};
pub use causal_lm::CausalLm;
pub use config::{Activation, GptConfig, Norm, ParamCount, Position};
pub use gpt::Gpt;
pub use kv_cache::KvCache;
pub use lora::{LoraConfig, Target as LoraTarget};
pub use padded::RightPadded;
pub use params::{ParamKind, ParamSet};
pub use quantized::QuantizedLlama;
