//! [`Tokenizer`]: a Hugging Face tokenizer plus exact byte-level encoding and decoding.
//!
//! Text goes through the tokenizer's own pipeline, so any `tokenizer.json` behaves as it does in
//! Hugging Face. Bytes that are not valid UTF-8 cannot enter that pipeline; for byte-level
//! tokenizers each such byte becomes its single-byte token, and decoding maps tokens back to
//! bytes through the byte table, so every byte string round-trips exactly.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tokenizers::Model;

use crate::bytes::{byte_to_char, token_to_bytes};
use crate::special::SpecialTokens;

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    /// Token id of each single byte, when the tokenizer is byte-level. Some real vocabularies
    /// (GPT-NeoX) lack the bytes that never occur in UTF-8 (0xC0, 0xC1, 0xF5..=0xFF).
    byte_ids: Option<Vec<Option<u32>>>,
    /// Added (special) tokens by id: these decode to their literal text.
    added: std::collections::HashMap<u32, String>,
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Ok(Self::from_hf(inner))
    }

    pub fn from_hf(inner: tokenizers::Tokenizer) -> Self {
        let special = SpecialTokens::resolve(|t| inner.token_to_id(t));
        let ids: Vec<Option<u32>> = byte_to_char().iter().map(|c| inner.get_model().token_to_id(&c.to_string())).collect();
        let byte_level_decoder = matches!(inner.get_decoder(), Some(tokenizers::DecoderWrapper::ByteLevel(_)));
        let byte_ids = (byte_level_decoder || ids.iter().all(Option::is_some)).then_some(ids);
        let added = inner.get_added_tokens_decoder().into_iter().map(|(id, t)| (id, t.content)).collect();
        Self { inner, special, byte_ids, added }
    }

    /// Writes `tokenizer.json` (pretty-printed), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = self.inner.to_string(true).map_err(|e| anyhow!("cannot serialise tokenizer: {e}"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Records the begin/end tokens a model file declares: `bos` is what prompts start with
    /// (`None` when the model wants none) and `eos` also ends generation.
    pub fn set_model_tokens(&mut self, bos: Option<u32>, eos: Option<u32>) {
        self.special.bos = bos;
        if let Some(e) = eos {
            if !self.special.stop_ids.contains(&e) {
                self.special.stop_ids.push(e);
                self.special.stop_ids.sort_unstable();
            }
        }
    }

    /// Vocabulary size including added (special) tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn is_byte_level(&self) -> bool {
        self.byte_ids.is_some()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Encodes text with the tokenizer's own pipeline; no BOS/EOS are added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encoding(text)?.get_ids().to_vec())
    }

    /// The full Hugging Face encoding (ids, tokens, byte offsets).
    pub fn encoding(&self, text: &str) -> Result<tokenizers::Encoding> {
        self.inner.encode(text, false).map_err(|e| anyhow!("encoding failed: {e}"))
    }

    /// Encodes arbitrary bytes. Valid UTF-8 runs go through [`Self::encode`]; each invalid byte
    /// becomes its byte token. Fails on invalid UTF-8 for tokenizers that are not byte-level.
    pub fn encode_bytes(&self, data: &[u8]) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(data.len() / 3);
        for chunk in data.utf8_chunks() {
            if !chunk.valid().is_empty() {
                ids.extend(self.encode(chunk.valid())?);
            }
            if !chunk.invalid().is_empty() {
                let Some(byte_ids) = &self.byte_ids else {
                    bail!("input is not valid UTF-8 and this tokenizer is not byte-level");
                };
                for &b in chunk.invalid() {
                    ids.push(byte_ids[b as usize].ok_or_else(|| anyhow!("byte 0x{b:02x} has no token in this tokenizer's vocabulary"))?);
                }
            }
        }
        Ok(ids)
    }

    /// Decodes ids to the exact bytes they stand for. Special tokens decode to their text.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        if self.byte_ids.is_none() {
            return Ok(self.decode_lossy_via_hf(ids)?.into_bytes());
        }
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(content) = self.added.get(&id) {
                out.extend_from_slice(content.as_bytes());
                continue;
            }
            let token = self.inner.id_to_token(id).ok_or_else(|| anyhow!("token id {id} is not in the vocabulary"))?;
            let bytes = token_to_bytes(&token).ok_or_else(|| anyhow!("token {id} ({token:?}) is not a byte-level token"))?;
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Decodes to text, replacing invalid UTF-8 with U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    fn decode_lossy_via_hf(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| anyhow!("decoding failed: {e}"))
    }
}
