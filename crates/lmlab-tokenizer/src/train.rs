//! Training a byte-level BPE on text files.
//!
//! The pre-tokenizer splits text before BPE so that merges never cross these boundaries:
//! English contractions; runs of Han characters (Chinese has no spaces, and GPT-2's rule
//! `' ?\p{L}+'` would glue Chinese onto neighbouring Latin letters, e.g. "GPT模型" as one piece);
//! runs of other letters with an optional leading space; digits in groups of at most three;
//! punctuation runs (Chinese full-width punctuation included); and whitespace. Within a Han run
//! BPE is free to learn multi-character words such as 中国. No normalizer is used, so every
//! byte sequence survives a round trip.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::special;
use crate::Tokenizer;

/// The split pattern applied before byte-level BPE (see the module docs). "Letters but not Han"
/// is written as an intersection, `[..&&[^..]]`, which both Rust's regex and Oniguruma (what
/// Python's `tokenizers` compiles patterns with) read; the `--` difference is Rust-only and made
/// our tokenizer.json unloadable in Python.
pub const SPLIT_PATTERN: &str = concat!(
    r"'(?i:[sdmt]|ll|ve|re)",
    r"| ?\p{Han}+",
    r"| ?[\p{L}\p{M}&&[^\p{Han}]]+",
    r"| ?\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*",
    r"|\s+(?!\S)",
    r"|\s+",
);

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub files: Vec<PathBuf>,
    /// Total vocabulary size, special tokens and the 256 byte tokens included.
    pub vocab_size: usize,
    /// Pairs seen fewer times than this are not merged.
    pub min_frequency: u64,
    pub show_progress: bool,
}

/// Trains a byte-level BPE with lmlab's special tokens at ids 0..7.
pub fn train(opts: &TrainOptions) -> Result<Tokenizer> {
    let min_vocab = special::ALL.len() + 256;
    if opts.vocab_size < min_vocab {
        bail!(
            "--vocab-size {} is too small: the 256 byte tokens and {} special tokens need {min_vocab}",
            opts.vocab_size,
            special::ALL.len()
        );
    }
    if opts.files.is_empty() {
        bail!("no input files given");
    }
    for f in &opts.files {
        let meta = std::fs::metadata(f).map_err(|e| anyhow!("cannot read input {}: {e}", f.display()))?;
        if !meta.is_file() {
            bail!("input {} is not a file", f.display());
        }
    }

    let specials: Vec<AddedToken> = special::ALL.iter().map(|t| AddedToken::from(t.to_string(), true)).collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(opts.vocab_size)
        .min_frequency(opts.min_frequency)
        .show_progress(opts.show_progress)
        .special_tokens(specials.clone())
        .initial_alphabet(crate::bytes::byte_to_char().iter().copied().collect())
        .build();
    let mut trainer = TrainerWrapper::from(trainer);

    let mut tk = tokenizers::Tokenizer::new(BPE::default());
    tk.with_pre_tokenizer(Some(pre_tokenizer()?));
    tk.with_decoder(Some(ByteLevelDecoder::default()));
    let files: Vec<String> = opts.files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let names = files.join(", ");
    // `tokenizers` does not say which file failed (e.g. one that is not UTF-8 text): name them all.
    tk.train_from_files(&mut trainer, files).map_err(|e| anyhow!("BPE training on {names} failed: {e}"))?;
    tk.add_special_tokens(&specials);
    Ok(Tokenizer::from_hf(tk))
}

/// Our split, then the byte-level mapping (without GPT-2's own regex).
pub fn pre_tokenizer() -> Result<PreTokenizerWrapper> {
    let split = Split::new(SplitPattern::Regex(SPLIT_PATTERN.to_string()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| anyhow!("bad split pattern: {e}"))?;
    let byte_level = ByteLevel::new(false, false, false);
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![split.into(), byte_level.into()])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn pieces(pattern: &str, text: &str) -> Vec<String> {
        let split = Split::new(SplitPattern::Regex(pattern.to_string()), SplitDelimiterBehavior::Isolated, false).unwrap();
        let mut s = PreTokenizedString::from(text);
        split.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte).into_iter().map(|(p, _, _)| p.to_string()).collect()
    }

    #[test]
    fn portable_split_pattern_splits_like_the_set_difference_it_replaced() {
        // The pattern as first written, with Rust's `--` class difference.
        let original = SPLIT_PATTERN.replace(r"[\p{L}\p{M}&&[^\p{Han}]]", r"[\p{L}\p{M}--\p{Han}]");
        assert_ne!(original, SPLIT_PATTERN);
        let text = "GPT模型 is naïve: it's 12345 tokens, café's 中文，测试!\n\n  e\u{301}t\u{e9} Ελληνικά and 日本語かな mixed";
        let got = pieces(SPLIT_PATTERN, text);
        assert_eq!(got, pieces(&original, text));
        assert!(got.contains(&"GPT".to_string()) && got.contains(&"模型".to_string()), "{got:?}");
    }
}
