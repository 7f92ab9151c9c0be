//! lmlab-eval: experiments that train and measure, and their plots.
//!
//! What it does: the architecture comparison of the article's Seq2Seq section
//! ([`architectures`]) and line plots ([`plot`]).
//!
//! What it does not do: training loops themselves (lmlab-train) or model code (lmlab-model).

#![forbid(unsafe_code)]

pub mod architectures;
pub mod plot;
