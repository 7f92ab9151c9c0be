//! lmlab-model: the decoder-only Transformer, on candle.
//!
//! What it does: the model's config and parameter arithmetic ([`config`]), differentiable
//! building blocks ([`ops`]), attention with grouped-query heads and weight capture
//! ([`attention`]), the KV cache ([`kv_cache`]), the model ([`gpt`]), seeded parameters
//! ([`params`]) and checkpoint files ([`checkpoint`]).
//!
//! What it does not do: optimisation, data, sampling or tokenization.

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
pub mod qmatmul;
pub mod seq2seq;
pub mod size;

pub use attention::Mode;
pub use config::{Activation, GptConfig, Norm, ParamCount, Position};
pub use gpt::Gpt;
pub use kv_cache::KvCache;
pub use params::{ParamKind, ParamSet};
