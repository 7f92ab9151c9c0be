//! The GPT-2 byte-to-character table used by byte-level BPE.
//!
//! Byte-level BPE works on strings, so each of the 256 byte values is given a printable
//! stand-in character: printable Latin-1 bytes map to themselves, the others to U+0100 and up,
//! in byte order. The `tokenizers` crate keeps its copy private; lmlab needs the table to decode
//! tokens back to exact bytes (invalid UTF-8 included) and to encode stray bytes.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Whether a byte is shown as itself in the byte-level alphabet.
fn is_self_mapped(b: u8) -> bool {
    (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

/// The character standing for each byte value.
pub fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next_free = 256u32;
        for b in 0..=255u8 {
            table[b as usize] = if is_self_mapped(b) {
                char::from(b)
            } else {
                let c = char::from_u32(next_free).expect("U+0100..U+0143 are valid chars");
                next_free += 1;
                c
            };
        }
        table
    })
}

/// The byte each stand-in character represents.
pub fn char_to_byte() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| byte_to_char().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect())
}

/// Maps a byte-level token string back to its bytes; `None` if a character is not in the table
/// (the tokenizer is then not byte-level).
pub fn token_to_bytes(token: &str) -> Option<Vec<u8>> {
    let table = char_to_byte();
    token.chars().map(|c| table.get(&c).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_with_known_entries() {
        let t = byte_to_char();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ'); // U+0120: the well-known GPT-2 space
        assert_eq!(t[b'\n' as usize], 'Ċ'); // U+010A
        assert_eq!(t[0], '\u{100}');
        assert_eq!(char_to_byte().len(), 256);
        for b in 0..=255u8 {
            assert_eq!(char_to_byte()[&t[b as usize]], b);
        }
    }
}
