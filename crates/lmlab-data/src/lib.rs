//! lmlab-data: from a web crawl to clean, deduplicated token shards.
//!
//! Inputs as one stream of documents ([`input`]: WARC/ARC and WET via [`warc`], JSONL
//! plain/gzip/zstd, text files, folders); HTTP responses decoded ([`http`]) and reduced to their
//! main text ([`extract`], scored against pages of known main text in [`extract_eval`]); language identification ([`langid`]: whatlang, or a
//! fastText model such as lid.176.ftz read by [`fasttext`], measured against fastText itself in [`lid_eval`]), the URL blocklist
//! ([`urlfilter`]), Gopher/C4/FineWeb quality filters ([`quality`]), exact and MinHash
//! near-duplicate removal ([`dedup`]) and PII scrubbing ([`pii`]), chained with counts per stage
//! and rule ([`pipeline`]); the `data prepare` run on all cores with shards, manifest, data card
//! and kept/rejected records ([`prepare`], [`shards`]); the merge of `--shard i/n` parts
//! ([`merge`]); and the evaluation of a run against a labelled crawl ([`filter_eval`]).
//!
//! Post-training data is read too, not filtered: conversations for supervised fine-tuning from
//! the shapes they are published in (OpenAI, ShareGPT, Alpaca, self-instruct, BELLE, the built-in
//! world) into one, and hh-rlhf preference transcripts into messages ([`chat`]); preference pairs
//! for reward models and DPO (the world's and hh-rlhf's), split by entity ([`preference`]).

#![forbid(unsafe_code)]

pub mod chat;
pub mod corpus;
pub mod dedup;
pub mod extract;
pub mod extract_eval;
pub mod fasttext;
pub mod filter_eval;
pub mod http;
pub mod input;
pub mod langid;
pub mod lid_eval;
pub mod merge;
pub mod pii;
pub mod pipeline;
pub mod preference;
pub mod prepare;
mod python_ref;
pub mod quality;
pub mod shards;
pub mod urlfilter;
pub mod warc;
