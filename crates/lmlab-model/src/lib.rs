//! lmlab-model: the decoder-only Transformer, on candle.
//!
//! What it does: the model's config and parameter arithmetic ([`config`]), differentiable
//! building blocks ([`ops`]), attention with grouped-query heads and weight capture
//! ([`attention`], and [`decode_attention`] for single-query decode steps), the KV cache
//! ([`kv_cache`]), dense or quantized linear layers ([`linear`], kernels in [`qmatmul`]), the
//! model ([`gpt`]), seeded parameters ([`params`]), checkpoint files ([`checkpoint`]), real
//! models from GGUF ([`gguf`]) and Hugging Face folders ([`hf`]) behind one [`loader`], and
//! the RNN encoder-decoder ([`seq2seq`]).
//!
//! What it does not do: optimisation, data or sampling. Tokenization only as far as a model
//! file carries its tokenizer (the loader hands it over from lmlab-tokenizer).

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod decode_attention;
pub mod gguf;
pub mod gpt;
pub mod hf;
pub mod kv_cache;
pub mod linear;
pub mod loader;
pub mod model_file;
pub mod ops;
pub mod params;
pub mod prefill_attention;
pub mod qmatmul;
pub mod seq2seq;
pub mod size;

pub use attention::Mode;
pub use config::{Activation, GptConfig, Norm, ParamCount, Position};
pub use gpt::Gpt;
pub use kv_cache::KvCache;
pub use params::{ParamKind, ParamSet};
