//! lmlab-eval: experiments that train and measure, and their plots.
//!
//! What it does: the architecture comparison of the article's Seq2Seq section
//! ([`architectures`]), question answering graded against the built-in world's knowledge
//! ([`qa`]: correct, hallucinated or abstained by fact frequency), perplexity and bits per
//! byte on held-out text ([`ppl`]), whether rewarding abstention in RLHF makes a model honest
//! ([`honesty`]) and how far a learned reward can be climbed before the true score falls
//! ([`overopt`]), instruction data whose abstentions follow a model's own
//! knowledge ([`rtuning`]), what training on model-written text does ([`collapse`]), how many planted documents
//! backdoor a model ([`poisoning`]), loss against model size and data at fixed compute
//! ([`scaling`], its fits in [`fit`]), how decoding rules trade quality against diversity ([`sampling`]),
//! what unlearning removes of fine-tuned facts and planted canaries, and at what cost ([`unlearning`]),
//! the data pipeline's
//! benchmark against datatrove ([`bench_data`]), and line plots and heatmaps ([`plot`]).
//!
//! What it does not do: training loops themselves (lmlab-train) or model code (lmlab-model).

#![forbid(unsafe_code)]

pub mod architectures;
mod arm;
pub mod bench_data;
pub mod collapse;
pub mod consistency;
pub mod fit;
pub mod honesty;
pub mod overopt;
pub mod plot;
pub mod poisoning;
pub mod ppl;
pub mod qa;
pub mod rtuning;
pub mod sampling;
pub mod scaling;
pub mod unlearning;
