//! How much text a token carries, per script: the article's point that English is cheaper.
//!
//! Each token is assigned to one script by the characters its offsets cover: Han if it covers
//! a Han character, else Latin if it covers a Latin letter, else "other" (spaces, digits,
//! punctuation, other scripts). Characters are counted the same way, one by one. Latin words
//! are maximal runs of Latin letters (apostrophes inside a word included).

use anyhow::Result;
use serde::Serialize;

use crate::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Script {
    Latin,
    Han,
    Other,
}

pub fn script_of(c: char) -> Script {
    if is_han(c) {
        Script::Han
    } else if is_latin_letter(c) {
        Script::Latin
    } else {
        Script::Other
    }
}

/// CJK Unified Ideographs (with extensions A–F and compatibility ideographs).
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Basic Latin and Latin-1/Extended letters.
pub fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || (matches!(c as u32, 0xC0..=0x24F | 0x1E00..=0x1EFF) && c.is_alphabetic())
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ScriptStats {
    pub chars: usize,
    pub tokens: usize,
    /// Latin words (only counted for Latin).
    pub words: usize,
    /// characters per token
    pub chars_per_token: f64,
    /// tokens per word (Latin) or per character (Han); for "other", tokens per character
    pub tokens_per_unit: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TextStats {
    pub name: String,
    pub bytes: usize,
    pub chars: usize,
    pub tokens: usize,
    pub chars_per_token: f64,
    pub bytes_per_token: f64,
    pub latin: ScriptStats,
    pub han: ScriptStats,
    pub other: ScriptStats,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Measures one text.
pub fn measure(tok: &Tokenizer, name: &str, text: &str) -> Result<TextStats> {
    let enc = tok.encoding(text)?;
    let mut s = TextStats { name: name.to_string(), bytes: text.len(), ..Default::default() };

    let mut in_word = false;
    for c in text.chars() {
        s.chars += 1;
        let script = script_of(c);
        match script {
            Script::Latin => s.latin.chars += 1,
            Script::Han => s.han.chars += 1,
            Script::Other => s.other.chars += 1,
        }
        let word_char = script == Script::Latin || (in_word && (c == '\'' || c == '’'));
        if word_char && !in_word {
            s.latin.words += 1;
        }
        in_word = word_char;
    }

    for &(start, end) in enc.get_offsets() {
        s.tokens += 1;
        // Offsets are byte offsets; a byte-level token inside a multi-byte character still
        // covers that whole character, so slicing on char boundaries is safe with `get`.
        let piece = text.get(start..end).unwrap_or("");
        let mut script = Script::Other;
        for c in piece.chars() {
            match script_of(c) {
                Script::Han => {
                    script = Script::Han;
                    break;
                }
                Script::Latin => script = Script::Latin,
                Script::Other => {}
            }
        }
        match script {
            Script::Latin => s.latin.tokens += 1,
            Script::Han => s.han.tokens += 1,
            Script::Other => s.other.tokens += 1,
        }
    }

    s.chars_per_token = ratio(s.chars, s.tokens);
    s.bytes_per_token = ratio(s.bytes, s.tokens);
    for (st, per_word) in [(&mut s.latin, true), (&mut s.han, false), (&mut s.other, false)] {
        st.chars_per_token = ratio(st.chars, st.tokens);
        st.tokens_per_unit = if per_word { ratio(st.tokens, st.words) } else { ratio(st.tokens, st.chars) };
    }
    Ok(s)
}

/// Reads a file and measures it. Invalid UTF-8 is replaced (stats are about text).
pub fn measure_file(tok: &Tokenizer, path: &std::path::Path) -> Result<TextStats> {
    let data = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    measure(tok, &path.display().to_string(), &String::from_utf8_lossy(&data))
}

/// A plain-text table of the stats, one row per file and script.
pub fn render_table(rows: &[TextStats]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<40} {:>7} {:>10} {:>10} {:>10} {:>12}  {}\n",
        "file", "script", "chars", "tokens", "chars/tok", "tok/unit", "unit"
    ));
    for r in rows {
        let n = r.name.chars().count();
        let name = if n > 40 { format!("…{}", r.name.chars().skip(n - 39).collect::<String>()) } else { r.name.clone() };
        out.push_str(&format!(
            "{:<40} {:>7} {:>10} {:>10} {:>10.2} {:>12}  {}\n",
            name,
            "all",
            r.chars,
            r.tokens,
            r.chars_per_token,
            "",
            format_args!("{:.2} bytes/token", r.bytes_per_token)
        ));
        for (label, st, unit) in [("latin", &r.latin, "tokens/word"), ("han", &r.han, "tokens/char"), ("other", &r.other, "tokens/char")] {
            if st.chars == 0 && st.tokens == 0 {
                continue;
            }
            out.push_str(&format!(
                "{:<40} {:>7} {:>10} {:>10} {:>10.2} {:>12.3}  {}\n",
                "", label, st.chars, st.tokens, st.chars_per_token, st.tokens_per_unit, unit
            ));
        }
    }
    out
}
