//! Streaming text out of tokens: each new token's share of the reply, as soon as it is
//! certain. A character split across tokens waits for its last byte, and text that may be the
//! start of a stop string waits until it is known not to be one, so what is streamed is
//! always a prefix of the final reply.

use lmlab_tokenizer::Tokenizer;

/// The reply's text so far, streamed piece by piece.
pub struct TextStream {
    stop_ids: Vec<u32>,
    stops: Vec<String>,
    tokens: Vec<u32>,
    /// Bytes of the text already handed out.
    sent: usize,
    /// A stop string was found: nothing more is handed out.
    stopped: bool,
}

/// The length of `bytes` without an incomplete UTF-8 character at its end.
fn complete_len(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(4) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for its lead
        }
        let need = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1, // not a lead byte: invalid, shown as U+FFFD
        };
        return if need > back { bytes.len() - back } else { bytes.len() };
    }
    bytes.len()
}

impl TextStream {
    /// A stream that leaves out `tok`'s stop tokens and ends before the first of `stops`.
    pub fn new(tok: &Tokenizer, stops: Vec<String>) -> Self {
        Self {
            stop_ids: tok.special().stop_ids.clone(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            tokens: Vec::new(),
            sent: 0,
            stopped: false,
        }
    }

    /// The text of the tokens so far (stop tokens left out, an incomplete last character
    /// held back unless `all`).
    fn text(&self, tok: &Tokenizer, all: bool) -> String {
        let kept: Vec<u32> = self.tokens.iter().copied().filter(|t| !self.stop_ids.contains(t)).collect();
        let bytes = tok.decode_bytes(&kept).unwrap_or_default();
        let end = if all { bytes.len() } else { complete_len(&bytes) };
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    /// Adds a token (decoded with the stream's tokenizer `tok`); returns the text that is now certain (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, token: u32) -> String {
        self.tokens.push(token);
        self.emit(tok, false)
    }

    /// The generation has ended: returns the rest of the text.
    pub fn finish(&mut self, tok: &Tokenizer) -> String {
        self.emit(tok, true)
    }

    /// Whether a stop string has been seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn emit(&mut self, tok: &Tokenizer, last: bool) -> String {
        if self.stopped {
            return String::new();
        }
        let text = self.text(tok, last);
        let mut end = text.len();
        if let Some(cut) = self.stops.iter().filter_map(|s| text.find(s.as_str())).min() {
            end = cut;
            self.stopped = true;
        } else if !last {
            // Hold back the longest tail that could still grow into a stop string.
            let held = text
                .char_indices()
                .map(|(i, _)| i)
                .find(|&i| self.stops.iter().any(|s| s.len() > text.len() - i && s.starts_with(&text[i..])))
                .map_or(0, |i| text.len() - i);
            end -= held;
        }
        if end <= self.sent {
            return String::new();
        }
        let piece = text[self.sent..end].to_string();
        self.sent = end;
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::{complete_len, TextStream};

    #[test]
    fn streamed_pieces_join_to_the_final_text_without_broken_characters_or_stop_strings() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.txt");
        std::fs::write(&f, "the cat sat on the mat. ".repeat(50)).unwrap();
        // A small vocabulary: Chinese characters and the emoji are split into byte tokens.
        let tok = lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions {
            files: vec![f],
            vocab_size: 300,
            min_frequency: 2,
            show_progress: false,
        })
        .unwrap();
        let text = "the cat 猫坐在垫子上 🦀 sat END on the mat";
        let ids = tok.encode(text).unwrap();
        assert!(ids.len() > text.chars().count() / 2);
        for (stops, expected) in [
            (vec![], text),
            (vec!["END".to_string()], "the cat 猫坐在垫子上 🦀 sat "),
            (vec!["ma".to_string(), "坐在".to_string()], "the cat 猫"),
        ] {
            let mut s = TextStream::new(&tok, stops.clone());
            let mut pieces: Vec<String> = ids.iter().map(|&id| s.push(&tok, id)).collect();
            pieces.push(s.finish(&tok));
            assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "a piece split a character: {pieces:?}");
            assert_eq!(pieces.concat(), expected, "stops {stops:?}");
            assert_eq!(s.stopped(), !stops.is_empty());
        }
    }

    #[test]
    fn an_incomplete_last_character_is_held_back() {
        let s = "a猫".as_bytes();
        assert_eq!(complete_len(s), 4);
        assert_eq!(complete_len(&s[..3]), 1);
        assert_eq!(complete_len(&s[..2]), 1);
        assert_eq!(complete_len(b"ab"), 2);
        assert_eq!(complete_len(&"🦀".as_bytes()[..3]), 0);
        assert_eq!(complete_len(&[0x61, 0xFF]), 2);
    }
}
