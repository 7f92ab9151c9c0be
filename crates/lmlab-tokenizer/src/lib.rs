//! lmlab-tokenizer: byte-level BPE for lmlab, built on the Hugging Face `tokenizers` crate.
//!
//! What it does: trains a byte-level BPE whose pre-tokenizer keeps Chinese text sensible
//! ([`train`]), loads any Hugging Face `tokenizer.json` unchanged ([`Tokenizer::from_file`]),
//! encodes and decodes arbitrary bytes exactly, including invalid UTF-8 ([`Tokenizer::encode_bytes`],
//! [`Tokenizer::decode_bytes`]), knows lmlab's special tokens ([`special`]), and measures how many
//! characters a token carries per script ([`stats`]), rebuilds tokenizers embedded in GGUF
//! files ([`embedded`]) and renders chat templates ([`chat`]).
//!
//! What it does not do: anything about tensors.

#![forbid(unsafe_code)]

pub mod bytes;
pub mod chat;
pub mod embedded;
pub mod special;
pub mod stats;
mod tokenizer;
pub mod train;

pub use special::SpecialTokens;
pub use tokenizer::Tokenizer;
pub use train::{train, TrainOptions};
