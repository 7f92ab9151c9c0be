//! lmlab-data: from a web crawl to training text.
//!
//! What it does so far: reads every input format as one stream of documents ([`input`]: WARC,
//! WET, JSONL plain/gzip/zstd, text files, folders), WARC files record by record with byte offsets and recoverable
//! errors ([`warc`]), and the HTTP responses inside them, with transfer/content encodings undone
//! and text decoded by the declared charset ([`http`]), and the main text of HTML pages
//! ([`extract`]), document quality filters with FineWeb's thresholds ([`quality`]), and
//! personal-data scrubbing ([`pii`]), language identification ([`langid`]), and exact and
//! MinHash near-duplicate removal ([`dedup`]), the URL blocklist ([`urlfilter`]), and the
//! per-document chain of all of them with counts per stage and rule ([`pipeline`]), and the
//! whole run from inputs to token shards, manifest, rejections and data card ([`prepare`]). The rest of the pipeline (HTML extraction, language identification,
//! quality filters, deduplication, PII scrubbing, shards, the data card) is issue #6's work in
//! progress.
//!
//! What it does not do: tokenization or training.

pub mod dedup;
pub mod extract;
pub mod filter_eval;
pub mod http;
pub mod input;
pub mod langid;
pub mod merge;
pub mod pii;
pub mod pipeline;
pub mod prepare;
pub mod quality;
pub mod shards;
pub mod urlfilter;
pub mod warc;
