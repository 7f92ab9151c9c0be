//! Tokenizers embedded in model files: a GGUF file carries its vocabulary, merges, token types
//! and a pre-tokenizer name (`tokenizer.ggml.*`) instead of a `tokenizer.json`. This module
//! turns those parts into an ordinary Hugging Face tokenizer, so encoding goes through the same
//! `tokenizers` pipeline as any `tokenizer.json`.
//!
//! Byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) are supported with the
//! pre-tokenizers llama.cpp names `default`/`gpt2`, `smollm` (and the other models that split
//! digits one by one before the GPT-2 regex) and `llama-bpe` (Llama 3). SentencePiece BPE
//! vocabularies (`"llama"`: Llama 2, Mistral, TinyLlama) carry scores instead of merges; the
//! merges are derived from the scores the way Hugging Face converts such models (every split
//! of a token into two known pieces, highest-scoring token first), with `▁` for spaces, a
//! prepended `▁`, and `<0xXX>` byte fallback.

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::Tokenizer;

/// GGUF token types (llama.cpp's `llama_token_type`).
pub const TOKEN_TYPE_CONTROL: i32 = 3;
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The tokenizer parts a model file carries.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedVocab {
    /// `tokenizer.ggml.model`: "gpt2" for byte-level BPE.
    pub model: String,
    /// `tokenizer.ggml.pre`: which pre-tokenizer (split regex) the model was trained with.
    pub pre: String,
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    /// "left right" pairs, in merge priority order (byte-level BPE).
    pub merges: Vec<String>,
    /// Token scores (SentencePiece vocabularies).
    pub scores: Vec<f32>,
    /// Prepend a space (`▁`) to the text (SentencePiece; llama.cpp's `add_space_prefix`).
    pub add_space_prefix: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

/// The Llama 3 split regex (llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn pre_tokenizer(pre: &str) -> Result<(Value, bool)> {
    // (pre-tokenizer, ignore_merges)
    Ok(match pre {
        "" | "default" | "gpt2" | "gpt-2" => (byte_level(true), false),
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone" | "minerva-7b" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]}),
            false,
        ),
        "llama-bpe" | "llama3" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]}),
            true,
        ),
        other => bail!("GGUF pre-tokenizer {other:?} is not supported (supported: default, gpt2, smollm, starcoder, llama-bpe); pass the model's tokenizer.json with --tokenizer"),
    })
}

impl EmbeddedVocab {
    fn added_tokens(&self) -> Vec<Value> {
        self.tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let ty = self.token_types.get(i).copied().unwrap_or(1);
                (ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED).then(|| {
                    json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                           "normalized": false, "special": ty == TOKEN_TYPE_CONTROL})
                })
            })
            .collect()
    }

    /// Merges implied by a SentencePiece BPE vocabulary: for every token, each split into two
    /// tokens of the vocabulary, ordered by the merged token's score (highest first), ties by
    /// the pieces' ids.
    fn spm_merges(&self) -> Vec<(String, String)> {
        let ids: std::collections::HashMap<&str, usize> = self.tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let mut merges: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if self.token_types.get(i).is_some_and(|&ty| ty != 1) {
                continue; // only normal tokens are merge results
            }
            let score = self.scores.get(i).copied().unwrap_or(0.0);
            for (cut, _) in t.char_indices().skip(1) {
                let (l, r) = t.split_at(cut);
                if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                    merges.push((score, li, ri, l, r));
                }
            }
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        merges.into_iter().map(|(_, _, _, l, r)| (l.to_string(), r.to_string())).collect()
    }

    fn spm_tokenizer_json(&self) -> Result<Value> {
        let vocab: serde_json::Map<String, Value> = self.tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        let merges: Vec<Value> = self.spm_merges().into_iter().map(|(l, r)| json!([l, r])).collect();
        let unk = self.tokens.iter().enumerate().find(|(i, _)| self.token_types.get(*i) == Some(&2)).map(|(_, t)| t.clone());
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens(),
            // A normalizer rather than the Metaspace pre-tokenizer: Metaspace skips the prefix when
            // the text already starts with a space, llama.cpp does not. Like llama.cpp, the prefix
            // also goes after each special token.
            "normalizer": {"type": "Sequence", "normalizers": if self.add_space_prefix {
                json!([{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}])
            } else {
                json!([{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}])
            }},
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": if self.add_space_prefix { 1 } else { 0 }, "stop": 0},
            ]},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                "ignore_merges": false, "vocab": vocab, "merges": merges,
            },
        }))
    }

    /// The equivalent `tokenizer.json` document.
    pub fn to_tokenizer_json(&self) -> Result<Value> {
        if self.model == "llama" {
            return self.spm_tokenizer_json();
        }
        if self.model != "gpt2" {
            bail!("GGUF tokenizer model {:?} is not supported (byte-level BPE \"gpt2\" and SentencePiece BPE \"llama\" are); pass the model's tokenizer.json with --tokenizer", self.model);
        }
        if !self.token_types.is_empty() && self.token_types.len() != self.tokens.len() {
            bail!("GGUF has {} token types for {} tokens", self.token_types.len(), self.tokens.len());
        }
        let (pre, ignore_merges) = pre_tokenizer(&self.pre)?;
        let vocab: serde_json::Map<String, Value> = self.tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        let added = self.added_tokens();
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": ignore_merges, "vocab": vocab, "merges": self.merges,
            },
        }))
    }

    /// The tokenizer, with the file's BOS/EOS ids recorded as its begin and stop tokens.
    pub fn to_tokenizer(&self) -> Result<Tokenizer> {
        let json = self.to_tokenizer_json()?.to_string();
        let inner: tokenizers::Tokenizer = json.parse().map_err(|e| anyhow::anyhow!("building the embedded tokenizer: {e}"))?;
        let mut tok = Tokenizer::from_hf(inner);
        tok.set_model_tokens(self.add_bos.then_some(self.bos).flatten(), self.eos);
        Ok(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(pre: &str) -> EmbeddedVocab {
        // Bytes of "ab 12" in GPT-2's byte-to-char table are the same letters; space is 'Ġ'.
        let tokens: Vec<String> = ["<|end|>", "a", "b", "Ġ", "1", "2", "ab", "Ġa", "12"].iter().map(|s| s.to_string()).collect();
        EmbeddedVocab {
            model: "gpt2".into(),
            pre: pre.into(),
            token_types: vec![3, 1, 1, 1, 1, 1, 1, 1, 1],
            tokens,
            merges: vec!["a b".into(), "Ġ a".into(), "1 2".into()],
            scores: Vec::new(),
            add_space_prefix: false,
            bos: None,
            eos: Some(0),
            add_bos: false,
            chat_template: None,
        }
    }

    #[test]
    fn merges_apply_and_digit_splitting_follows_the_pre_tokenizer() {
        let gpt2 = vocab("gpt2").to_tokenizer().unwrap();
        // GPT-2's regex keeps "12" together, so the merge applies.
        assert_eq!(gpt2.encode("ab 12").unwrap(), vec![6, 3, 8]);
        let smollm = vocab("smollm").to_tokenizer().unwrap();
        // SmolLM splits digits one by one first.
        assert_eq!(smollm.encode("ab 12").unwrap(), vec![6, 3, 4, 5]);
        assert_eq!(smollm.decode(&[6, 7, 4]).unwrap(), "ab a1");
        // Control tokens are matched as a whole and end generation.
        assert_eq!(smollm.encode("a<|end|>").unwrap(), vec![1, 0]);
        assert!(smollm.special().stop_ids.contains(&0));
    }

    #[test]
    fn sentencepiece_vocabularies_merge_by_score_and_fall_back_to_bytes() {
        let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].iter().map(|s| s.to_string()).collect();
        let mut types = vec![2, 3, 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        let base = tokens.len() as u32;
        for t in ["▁", "h", "i", "▁h", "hi", "▁hi", "▁▁"] {
            tokens.push(t.to_string());
            types.push(1);
        }
        let n = tokens.len();
        // Scores: "▁hi" beats everything; "hi" beats "▁h", so "▁" + "hi" is how "▁hi" forms.
        let mut scores = vec![0.0f32; n];
        for (t, s) in [("▁h", -5.0), ("hi", -2.0), ("▁hi", -1.0), ("▁▁", -9.0)] {
            scores[tokens.iter().position(|x| x == t).unwrap()] = s;
        }
        let v = EmbeddedVocab {
            model: "llama".into(),
            pre: "default".into(),
            tokens,
            token_types: types,
            scores,
            add_space_prefix: true,
            bos: Some(1),
            eos: Some(2),
            add_bos: true,
            ..Default::default()
        };
        let tok = v.to_tokenizer().unwrap();
        let id = |t: &str| tok.token_to_id(t).unwrap();
        assert_eq!(tok.encode("hi hi").unwrap(), vec![id("▁hi"), id("▁hi")]);
        // "é" is not in the vocabulary: its UTF-8 bytes come out as byte tokens.
        assert_eq!(tok.encode("hé").unwrap(), vec![id("▁h"), 3 + 0xC3, 3 + 0xA9]);
        assert_eq!(tok.decode(&tok.encode("hi hé").unwrap()).unwrap(), "hi hé");
        assert_eq!(tok.special().bos, Some(1));
        assert!(tok.special().stop_ids.contains(&2));
        let _ = base;
    }

    #[test]
    fn unsupported_vocabularies_are_named() {
        let mut v = vocab("gpt2");
        v.model = "bert".into();
        assert!(v.to_tokenizer().err().unwrap().to_string().contains("\"bert\""));
        let e = vocab("deepseek-coder").to_tokenizer().err().unwrap().to_string();
        assert!(e.contains("deepseek-coder"), "{e}");
    }
}
