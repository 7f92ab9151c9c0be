//! Document quality filters with FineWeb's published thresholds: Gopher quality and Gopher
//! repetition (Rae et al. 2021, table A1) and FineWeb's own rules, computed the way datatrove
//! computes them. Each check returns `Err(rule)` naming the first rule a document breaks; the
//! rule names are datatrove's, so rejection counts compare across the two tools.
//!
//! Words: datatrove splits English with NLTK's tokenizer; [`words`] follows it closely (numbers
//! like "3.5" and "1,000" stay whole, punctuation runs are tokens of their own, so "end." is two
//! words) but keeps contractions whole where NLTK splits "it's" in two. Counts can differ from
//! datatrove's on such cases, not on ordinary prose.

use std::collections::HashSet;

use rustc_hash::{FxHashMap, FxHashSet};

use serde::{Deserialize, Serialize};

/// Han ideographs and kana: scripts written without spaces, where each character counts as a
/// word (datatrove segments them with jieba or a Japanese tokenizer instead; characters are the
/// dependency-free approximation, and per-language thresholds in the pipeline config are set
/// for it).
pub fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30ff}' | '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}' | '\u{f900}'..='\u{faff}' | '\u{20000}'..='\u{2ebef}')
}

/// Characters that end a sentence: Unicode's Sentence_Terminal property, which is the set
/// datatrove's TERMINAL_PUNCTUATION lists (".", "!", "?", "。", "！", "？", "।", ...).
pub fn is_sentence_terminal(c: char) -> bool {
    static STERM: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    if c.is_ascii() {
        return matches!(c, '.' | '!' | '?');
    }
    // Letters, digits and spaces never end a sentence: skip the regex for them (every Han
    // character of a Chinese line comes through here).
    if c.is_alphanumeric() || c.is_whitespace() {
        return false;
    }
    let mut buf = [0u8; 4];
    STERM.get_or_init(|| regex::Regex::new(r"^\p{Sentence_Terminal}$").expect("valid pattern")).is_match(c.encode_utf8(&mut buf))
}

/// A word split close to NLTK's: runs of letters and digits, joined across an inner apostrophe,
/// hyphen, or a dot/comma between digits ("it's", "well-known", "3.5", "1,000"); other
/// non-space characters group into punctuation tokens ("...", "!"); each Han or kana character
/// is a word of its own ([`is_cjk`]).
pub fn words(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if is_cjk(c) {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            i += 1;
            while i < chars.len() {
                let ch = chars[i].1;
                if is_cjk(ch) {
                    break;
                }
                let next_alnum = chars.get(i + 1).is_some_and(|n| n.1.is_alphanumeric());
                let prev_digit = chars[i - 1].1.is_ascii_digit();
                let joins = matches!(ch, '\'' | '’' | '-') && next_alnum
                    || matches!(ch, '.' | ',') && prev_digit && chars.get(i + 1).is_some_and(|n| n.1.is_ascii_digit());
                if ch.is_alphanumeric() || ch == '_' || joins {
                    i += 1;
                } else {
                    break;
                }
            }
        } else {
            i += 1;
            while i < chars.len() && !chars[i].1.is_whitespace() && !chars[i].1.is_alphanumeric() && chars[i].1 != '_' {
                i += 1;
            }
        }
        out.push(&text[chars[start].0..end_of(i)]);
    }
    out
}

fn is_punctuation_word(w: &str) -> bool {
    w.chars().all(|c| !c.is_alphanumeric())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GopherQuality {
    pub min_doc_words: usize,
    pub max_doc_words: usize,
    pub min_avg_word_length: f64,
    pub max_avg_word_length: f64,
    pub max_symbol_word_ratio: f64,
    pub max_bullet_lines_ratio: f64,
    pub max_ellipsis_lines_ratio: f64,
    /// At least this share of words must contain a letter.
    pub min_alpha_words_ratio: f64,
    pub min_stop_words: usize,
    pub stop_words: Vec<String>,
}

impl Default for GopherQuality {
    fn default() -> Self {
        Self {
            min_doc_words: 50,
            max_doc_words: 100_000,
            min_avg_word_length: 3.0,
            max_avg_word_length: 10.0,
            max_symbol_word_ratio: 0.1,
            max_bullet_lines_ratio: 0.9,
            max_ellipsis_lines_ratio: 0.3,
            min_alpha_words_ratio: 0.8,
            min_stop_words: 2,
            stop_words: ["the", "be", "to", "of", "and", "that", "have", "with"].map(String::from).to_vec(),
        }
    }
}

impl GopherQuality {
    pub fn check(&self, text: &str) -> Result<(), &'static str> {
        let ws = words(text);
        let content: Vec<&str> = ws.iter().copied().filter(|w| !is_punctuation_word(w)).collect();
        if content.len() < self.min_doc_words {
            return Err("gopher_short_doc");
        }
        if content.len() > self.max_doc_words {
            return Err("gopher_long_doc");
        }
        let avg = content.iter().map(|w| w.chars().count()).sum::<usize>() as f64 / content.len() as f64;
        if avg < self.min_avg_word_length {
            return Err("gopher_below_avg_threshold");
        }
        if avg > self.max_avg_word_length {
            return Err("gopher_above_avg_threshold");
        }
        let n = ws.len() as f64;
        if text.matches('#').count() as f64 / n > self.max_symbol_word_ratio {
            return Err("gopher_too_many_hashes");
        }
        if (text.matches("...").count() + text.matches('…').count()) as f64 / n > self.max_symbol_word_ratio {
            return Err("gopher_too_many_ellipsis");
        }
        let lines: Vec<&str> = text.lines().collect();
        let nl = lines.len().max(1) as f64;
        let bullets = lines.iter().filter(|l| l.trim_start().starts_with(['•', '-'])).count();
        if bullets as f64 / nl > self.max_bullet_lines_ratio {
            return Err("gopher_too_many_bullets");
        }
        let ellipsis = lines.iter().filter(|l| l.trim_end().ends_with("...") || l.trim_end().ends_with('…')).count();
        if ellipsis as f64 / nl > self.max_ellipsis_lines_ratio {
            return Err("gopher_too_many_end_ellipsis");
        }
        let alpha = ws.iter().filter(|w| w.chars().any(char::is_alphabetic)).count();
        if (alpha as f64) / n < self.min_alpha_words_ratio {
            return Err("gopher_below_alpha_threshold");
        }
        let stops: HashSet<&str> = self.stop_words.iter().map(String::as_str).collect();
        if ws.iter().filter(|w| stops.contains(*w)).count() < self.min_stop_words {
            return Err("gopher_enough_stop_words");
        }
        Ok(())
    }
}

/// (count, characters) of the elements that repeat an earlier one.
fn duplicates<'a>(items: impl Iterator<Item = &'a str>) -> (usize, usize) {
    let mut seen = HashSet::new();
    let (mut n, mut chars) = (0, 0);
    for it in items {
        if !seen.insert(it) {
            n += 1;
            chars += it.chars().count();
        }
    }
    (n, chars)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GopherRepetition {
    pub dup_line_frac: f64,
    pub dup_para_frac: f64,
    pub dup_line_char_frac: f64,
    pub dup_para_char_frac: f64,
    /// (n, max share of characters in the most frequent n-gram).
    pub top_n_grams: Vec<(usize, f64)>,
    /// (n, max share of characters in repeated n-grams).
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for GopherRepetition {
    fn default() -> Self {
        Self {
            dup_line_frac: 0.3,
            dup_para_frac: 0.3,
            dup_line_char_frac: 0.2,
            dup_para_char_frac: 0.2,
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        }
    }
}

impl GopherRepetition {
    pub fn check(&self, text: &str) -> Result<(), &'static str> {
        let len = text.chars().count().max(1) as f64;
        let trimmed = text.trim();
        let paragraphs: Vec<&str> = split_blank_runs(trimmed);
        let (n, chars) = duplicates(paragraphs.iter().copied());
        if n as f64 / paragraphs.len().max(1) as f64 > self.dup_para_frac {
            return Err("dup_para_frac");
        }
        if chars as f64 / len > self.dup_para_char_frac {
            return Err("dup_para_char_frac");
        }
        // Lines split at runs of newlines, as datatrove does (empty pieces only at the ends).
        let lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
        let (n, chars) = duplicates(lines.iter().copied());
        if n as f64 / lines.len().max(1) as f64 > self.dup_line_frac {
            return Err("dup_line_frac");
        }
        if chars as f64 / len > self.dup_line_char_frac {
            return Err("dup_line_char_frac");
        }
        let ws = words(text);
        let (ids, chars_of) = intern(&ws);
        for &(n, frac) in &self.top_n_grams {
            if ids.len() < n {
                continue;
            }
            let mut counts: FxHashMap<&[u32], usize> = FxHashMap::default();
            for g in ids.windows(n) {
                *counts.entry(g).or_default() += 1;
            }
            // The most frequent n-gram (ties: the longest), its characters with single spaces.
            let top =
                counts.iter().map(|(g, c)| (*c, g.iter().map(|&w| chars_of[w as usize]).sum::<usize>() + n - 1)).max().unwrap_or((0, 0));
            if (top.0 * top.1) as f64 / len > frac {
                return Err(match n {
                    2 => "top_2_gram",
                    3 => "top_3_gram",
                    4 => "top_4_gram",
                    _ => "top_n_gram",
                });
            }
        }
        for &(n, frac) in &self.dup_n_grams {
            if repeated_ngram_chars(&ids, &chars_of, n) as f64 / len > frac {
                return Err(match n {
                    5 => "duplicated_5_n_grams",
                    6 => "duplicated_6_n_grams",
                    7 => "duplicated_7_n_grams",
                    8 => "duplicated_8_n_grams",
                    9 => "duplicated_9_n_grams",
                    10 => "duplicated_10_n_grams",
                    _ => "duplicated_n_grams",
                });
            }
        }
        Ok(())
    }
}

/// Paragraphs: the text split at runs of two or more newlines.
fn split_blank_runs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\n\n") {
        out.push(&rest[..i]);
        rest = rest[i..].trim_start_matches('\n');
    }
    out.push(rest);
    out
}

/// Each distinct word as a small integer, and each id's length in characters: n-grams then
/// hash as short integer slices (with rustc-hash's Fx hash) instead of slices of strings
/// through SipHash, which was a fifth of `data prepare`'s time.
fn intern<'a>(ws: &[&'a str]) -> (Vec<u32>, Vec<usize>) {
    let mut index: FxHashMap<&'a str, u32> = FxHashMap::default();
    let mut chars_of = Vec::new();
    let ids = ws
        .iter()
        .map(|w| {
            *index.entry(w).or_insert_with(|| {
                chars_of.push(w.chars().count());
                (chars_of.len() - 1) as u32
            })
        })
        .collect();
    (ids, chars_of)
}

/// Characters (words joined without spaces) in n-grams that repeat an earlier one, skipping
/// over a repeated n-gram so overlapping repeats are not counted twice (datatrove's rule).
fn repeated_ngram_chars(ids: &[u32], chars_of: &[usize], n: usize) -> usize {
    let mut seen: FxHashSet<&[u32]> = FxHashSet::default();
    let (mut chars, mut i) = (0, 0);
    while i + n <= ids.len() {
        let g = &ids[i..i + n];
        if seen.contains(g) {
            chars += g.iter().map(|&w| chars_of[w as usize]).sum::<usize>();
            i += n;
        } else {
            seen.insert(g);
            i += 1;
        }
    }
    chars
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FineWebQuality {
    /// More than this share of lines must end in terminal punctuation.
    pub line_punct_thr: f64,
    pub short_line_thr: f64,
    pub short_line_length: usize,
    pub char_duplicates_ratio: f64,
    pub new_line_ratio: f64,
}

impl Default for FineWebQuality {
    fn default() -> Self {
        Self { line_punct_thr: 0.12, short_line_thr: 0.67, short_line_length: 30, char_duplicates_ratio: 0.01, new_line_ratio: 0.3 }
    }
}

impl FineWebQuality {
    pub fn check(&self, text: &str) -> Result<(), &'static str> {
        let lines: Vec<&str> = text.split('\n').collect();
        let nl = lines.len() as f64;
        // datatrove's stop_chars: sentence terminals (no quotes).
        let punct = lines.iter().filter(|l| l.chars().next_back().is_some_and(is_sentence_terminal)).count() as f64 / nl;
        if punct <= self.line_punct_thr {
            return Err("line_punct_ratio");
        }
        let short = lines.iter().filter(|l| l.chars().count() <= self.short_line_length).count() as f64 / nl;
        if short >= self.short_line_thr {
            return Err("short_line_ratio");
        }
        let (_, dup_chars) = duplicates(lines.iter().copied().filter(|l| !l.trim().is_empty()));
        let body = text.chars().filter(|&c| c != '\n').count().max(1);
        if dup_chars as f64 / body as f64 >= self.char_duplicates_ratio {
            return Err("char_dup_ratio");
        }
        let n_words = words(text).len().max(1);
        if text.matches('\n').count() as f64 / n_words as f64 > self.new_line_ratio {
            return Err("list_ratio");
        }
        Ok(())
    }
}

/// Line counts of what [`C4Quality::apply`] removed, by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct C4LineStats {
    pub kept: usize,
    pub too_long_word: usize,
    pub no_terminal_punct: usize,
    pub too_few_words: usize,
    pub javascript: usize,
    pub policy: usize,
}

impl C4LineStats {
    pub fn add(&mut self, o: &C4LineStats) {
        self.kept += o.kept;
        self.too_long_word += o.too_long_word;
        self.no_terminal_punct += o.no_terminal_punct;
        self.too_few_words += o.too_few_words;
        self.javascript += o.javascript;
        self.policy += o.policy;
    }
}

/// C4's rules (Raffel et al. 2020) as datatrove applies them: lines are dropped for a word over
/// 1000 characters, no terminal punctuation (FineWeb turns this one off), fewer than 3 words,
/// "javascript", or cookie/terms-of-use phrases; Wikipedia-style citations are cut; a page is
/// dropped for "lorem ipsum", a curly bracket, or fewer than 5 sentences left.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct C4Quality {
    pub filter_no_terminal_punct: bool,
    pub min_num_sentences: usize,
    pub min_words_per_line: usize,
    pub max_word_length: usize,
}

impl Default for C4Quality {
    /// FineWeb's configuration (terminal punctuation not required).
    fn default() -> Self {
        Self { filter_no_terminal_punct: false, min_num_sentences: 5, min_words_per_line: 3, max_word_length: 1000 }
    }
}

const POLICY_PHRASES: [&str; 6] = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"];

/// Removes "[12]", "[edit]" and "[citation needed]".
fn remove_citations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let close = after.find(']');
        let inner = close.map(|c| &after[..c]);
        match inner {
            Some(t) if t.chars().all(|c| c.is_ascii_digit()) || t == "edit" || t == "citation needed" => {
                rest = &after[close.unwrap() + 1..]
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Sentences in a line: runs ending in . ! or ? (at least one for a non-empty line).
fn sentence_count(line: &str) -> usize {
    let chars: Vec<char> = line.chars().collect();
    // A terminal ends a sentence before a space or the line's end; full-width ones (CJK "。")
    // anywhere, as those scripts put no space after them.
    let ends = chars
        .iter()
        .enumerate()
        .filter(|(i, &c)| {
            is_sentence_terminal(c)
                && (!c.is_ascii() && c > '\u{2e7f}' || chars.get(i + 1).is_none_or(|n| n.is_whitespace()))
                && !chars.get(i + 1).is_some_and(|&n| is_sentence_terminal(n))
        })
        .count();
    ends.max(1)
}

impl C4Quality {
    /// The page with its bad lines removed, or the rule that drops the whole page.
    pub fn apply(&self, text: &str, stats: &mut C4LineStats) -> Result<String, &'static str> {
        let mut kept: Vec<String> = Vec::new();
        let mut sentences = 0;
        for line in text.lines() {
            let line = line.trim();
            let n_words = line.split_whitespace().count();
            if line.split_whitespace().any(|w| w.chars().count() > self.max_word_length) {
                stats.too_long_word += 1;
                continue;
            }
            let line = remove_citations(line);
            if self.filter_no_terminal_punct && (!line.ends_with(['.', '?', '!', '"', '\'']) || line.ends_with("...")) {
                stats.no_terminal_punct += 1;
                continue;
            }
            if n_words < self.min_words_per_line {
                stats.too_few_words += 1;
                continue;
            }
            let lower = line.to_lowercase();
            if lower.contains("lorem ipsum") {
                return Err("lorem_ipsum");
            }
            if lower.contains("javascript") {
                stats.javascript += 1;
                continue;
            }
            if line.contains('{') {
                return Err("curly_bracket");
            }
            if POLICY_PHRASES.iter().any(|p| lower.contains(p)) {
                stats.policy += 1;
                continue;
            }
            sentences += sentence_count(&line);
            stats.kept += 1;
            kept.push(line);
        }
        if sentences < self.min_num_sentences {
            return Err("too_few_sentences");
        }
        Ok(kept.join("\n").trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "The river runs through the old town, and the people who live there have always loved it. \
        Every spring the water rises with the melting snow, and the fishermen wait for the best days to go out. \
        Children play on the banks while their parents talk about the weather and the prices at the market. \
        In the evening the lights of the houses shine on the water, and the town seems quieter than it is.";

    #[test]
    fn words_split_punctuation_like_nltk() {
        assert_eq!(
            words("Hello, world... it's 3.5! A well-known 1,000-page book."),
            vec!["Hello", ",", "world", "...", "it's", "3.5", "!", "A", "well-known", "1,000-page", "book", "."]
        );
        // Han characters are words one by one (see is_cjk).
        assert_eq!(words("中文 text"), vec!["中", "文", "text"]);
    }

    #[test]
    fn gopher_quality_keeps_prose_and_names_each_rule() {
        let g = GopherQuality::default();
        assert_eq!(g.check(PROSE), Ok(()));
        assert_eq!(g.check("Too short to be a page."), Err("gopher_short_doc"));
        let tiny = "a b c d e f g h i j ".repeat(10);
        assert_eq!(g.check(&tiny), Err("gopher_below_avg_threshold"));
        let hashes = format!("{PROSE} {}", "#tag ".repeat(20));
        assert_eq!(g.check(&hashes), Err("gopher_too_many_hashes"));
        let bullets: String = (0..60).map(|i| format!("- item number {i} of the list\n")).collect();
        assert_eq!(g.check(&bullets), Err("gopher_too_many_bullets"));
        let no_stops = "Alpha beta gamma delta epsilon zeta theta iota kappa lambda. ".repeat(6);
        assert_eq!(g.check(&no_stops), Err("gopher_enough_stop_words"));
        let numbers = format!("{} the and {}", "12345 ".repeat(60), "river town water ".repeat(4));
        assert_eq!(g.check(&numbers), Err("gopher_below_alpha_threshold"));
    }

    #[test]
    fn gopher_repetition_catches_repeats_at_each_scale() {
        let r = GopherRepetition::default();
        assert_eq!(r.check(PROSE), Ok(()));
        let para = "Buy cheap watches online today, best prices guaranteed for every customer.";
        let repeated = [para; 5].join("\n\n");
        assert_eq!(r.check(&repeated), Err("dup_para_frac"));
        let lines = format!("{PROSE}\nclick here\nclick here\nclick here\nclick here");
        assert_eq!(r.check(&lines), Err("dup_line_frac"));
        let spam = format!("{PROSE} {}", "cheap pills ".repeat(30));
        assert_eq!(r.check(&spam), Err("top_2_gram"));
        // Repeated 5-grams inside one long line.
        let looped = format!("{} {}", PROSE, "one two three four five six seven eight nine ten eleven ".repeat(8));
        assert!(r.check(&looped).is_err());
    }

    #[test]
    fn datatrove_repeated_ngram_counting_skips_over_a_repeat() {
        // "a b a b a b" with n=2: (a b) new, (b a) new, (a b) repeat -> +2, skip to index 4:
        // (a b) repeat -> +2.
        let count = |ws: &[&str], n: usize| {
            let (ids, chars_of) = intern(ws);
            repeated_ngram_chars(&ids, &chars_of, n)
        };
        assert_eq!(count(&["a", "b", "a", "b", "a", "b"], 2), 4);
        assert_eq!(count(&["a", "b", "c"], 2), 0);
        // Characters, not bytes: "né" is two.
        assert_eq!(count(&["né", "x", "né", "x"], 2), 3);
    }

    #[test]
    fn c4_drops_lines_and_pages_by_its_rules() {
        let c4 = C4Quality::default();
        let mut st = C4LineStats::default();
        let page = "Menu\nThe river runs through the town.[3] It is old.\nPlease enable JavaScript to view this page.\nThis site uses cookies to improve things.\nFishermen wait for spring. The water rises. Children play[citation needed] on the banks.";
        let out = c4.apply(page, &mut st).unwrap();
        assert_eq!(
            out,
            "The river runs through the town. It is old.\nFishermen wait for spring. The water rises. Children play on the banks."
        );
        assert_eq!(st, C4LineStats { kept: 2, too_few_words: 1, javascript: 1, policy: 1, ..Default::default() });
        assert_eq!(c4.apply("One sentence only here.", &mut st), Err("too_few_sentences"));
        assert_eq!(c4.apply(&format!("{page}\nvar x = {{ a: 1 }} is code here."), &mut st), Err("curly_bracket"));
        assert_eq!(c4.apply(&format!("Lorem ipsum dolor sit amet.\n{page}"), &mut st), Err("lorem_ipsum"));
        // With C4's original terminal-punctuation rule, lines without an ending go too.
        let strict = C4Quality { filter_no_terminal_punct: true, min_num_sentences: 1, ..Default::default() };
        let mut st = C4LineStats::default();
        assert_eq!(strict.apply("A line without an ending\nA line with one.", &mut st).unwrap(), "A line with one.");
        assert_eq!(st.no_terminal_punct, 1);
    }

    #[test]
    fn fineweb_rules() {
        let f = FineWebQuality::default();
        let doc = PROSE.replace(". ", ".\n");
        assert_eq!(f.check(&doc), Ok(()));
        let no_punct = "a line without an ending\nanother one without it\nand a third line here";
        assert_eq!(f.check(no_punct), Err("line_punct_ratio"));
        let short = "Home.\nAbout.\nContact.\nA much longer line that ends a sentence properly.";
        assert_eq!(f.check(short), Err("short_line_ratio"));
        let dup = format!("{doc}\nThe river runs through the old town, and the people who live there have always loved it.");
        assert_eq!(f.check(&dup), Err("char_dup_ratio"));
        // Long lines (not "short"), each a unique three-word item: a list, not prose.
        let list: String = (0..20).map(|i| format!("Pneumonoultramicroscopic{i} silicovolcanoconiosis.\n")).collect();
        assert_eq!(f.check(&list), Err("list_ratio"));
        // Sentence terminals of any script end a line; a closing quote does not (datatrove's
        // stop_chars).
        let zh = "河流穿过古老的小镇，住在那里的人们一直很喜欢它。\n每年春天，河水随着融雪上涨！\n孩子们在岸边玩耍吗？";
        // (Chinese lines are short in characters: the Mandarin rules count 10 as short.)
        let f_zh = FineWebQuality { short_line_length: 10, ..Default::default() };
        assert_eq!(f_zh.check(zh), Ok(()));
        assert_eq!(f.check("He said \"no\"\nShe said \"yes\"\nThey left 'now'"), Err("line_punct_ratio"));
    }

    #[test]
    fn chinese_characters_are_words_and_full_stops_end_sentences() {
        assert_eq!(words("GPT模型很好。It's 3.5"), vec!["GPT", "模", "型", "很", "好", "。", "It's", "3.5"]);
        assert_eq!(sentence_count("图博出生于罗卢。图博生于1768年！他是谁？"), 3);
        assert_eq!(sentence_count("One. Two?! Three... four"), 3);
        assert!(is_sentence_terminal('।') && is_sentence_terminal('？') && !is_sentence_terminal('"') && !is_sentence_terminal(','));
    }
}
