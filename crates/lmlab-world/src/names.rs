//! Pronounceable invented names, with a Chinese transliteration for each.
//!
//! A name is 2–3 syllables (onset + vowel + optional coda). Its Chinese form writes each
//! syllable with a character used in transliterating foreign names (阿, 巴, 德, ...), chosen by
//! the syllable itself, so the same syllable is always written the same way.

use std::collections::HashSet;

use rand::Rng;

const ONSETS: [&str; 24] = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th", "tr", "sh", "h", "j", "y"];
const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ai", "ei", "ou"];
const CODAS: [&str; 7] = ["", "", "", "n", "r", "s", "l"];
/// Characters commonly used to transliterate foreign names.
const HANZI: [char; 64] = [
    '阿', '巴', '达', '法', '加', '卡', '拉', '马', '纳', '帕', '萨', '塔', '瓦', '扎', '贝', '德', '菲', '格', '克', '莱', '梅', '内', '佩', '雷',
    '塞', '特', '维', '泽', '比', '迪', '基', '利', '米', '尼', '皮', '里', '西', '蒂', '博', '多', '戈', '科', '洛', '莫', '诺', '波', '罗', '索',
    '托', '沃', '布', '杜', '古', '库', '卢', '穆', '努', '普', '鲁', '苏', '图', '乌', '伊', '恩',
];

fn syllable_hanzi(s: &str) -> char {
    let h = s.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
    HANZI[(h % HANZI.len() as u32) as usize]
}

/// All substrings of two or more characters.
fn substrings(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    for i in 0..c.len() {
        for j in i + 2..=c.len() {
            out.push(c[i..j].iter().collect());
        }
    }
    out
}

/// Draws unique names (both forms unique) from a seeded RNG.
pub struct NameGen {
    used_en: HashSet<String>,
    used_zh: HashSet<String>,
}

impl Default for NameGen {
    fn default() -> Self {
        Self::new()
    }
}

impl NameGen {
    pub fn new() -> Self {
        Self { used_en: HashSet::new(), used_zh: HashSet::new() }
    }

    /// A fresh (English, Chinese) name pair.
    pub fn next(&mut self, rng: &mut impl Rng) -> (String, String) {
        let mut misses = 0;
        loop {
            // Short names while they last; once 2–3 syllable names run out (the Chinese forms
            // allow 64² + 64³ of them), four syllables.
            let n = if misses > 8 { 4 } else if rng.random_bool(0.6) { 2 } else { 3 };
            misses += 1;
            let mut en = String::new();
            let mut zh = String::new();
            for _ in 0..n {
                let s = format!("{}{}{}", ONSETS[rng.random_range(0..ONSETS.len())], VOWELS[rng.random_range(0..VOWELS.len())], CODAS[rng.random_range(0..CODAS.len())]);
                zh.push(syllable_hanzi(&s));
                en.push_str(&s);
            }
            let mut chars = en.chars();
            let en: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect();
            if en.len() >= 4 && !self.used_en.contains(&en) && !self.used_zh.contains(&zh) {
                self.used_en.insert(en.clone());
                self.used_zh.insert(zh.clone());
                return (en, zh);
            }
        }
    }

    /// A source of names for entities that must not exist: see [`UnrelatedNames`].
    pub fn unrelated(&self) -> UnrelatedNames {
        UnrelatedNames {
            zh_parts: self.used_zh.iter().flat_map(|z| substrings(z)).collect(),
            zh_names: self.used_zh.clone(),
            en_names: self.used_en.iter().cloned().collect(),
        }
    }
}

/// Names that are not part of any name drawn before [`NameGen::unrelated`] and contain none of
/// them, in either language, so no real name contains theirs (Chinese names have no spaces, and
/// a 2-character name could otherwise sit inside a 3-character one).
pub struct UnrelatedNames {
    zh_parts: HashSet<String>,
    zh_names: HashSet<String>,
    en_names: std::collections::BTreeSet<String>,
}

impl UnrelatedNames {
    pub fn next(&mut self, names: &mut NameGen, rng: &mut impl Rng) -> (String, String) {
        loop {
            let (en, zh) = names.next(rng);
            // English names are capitalised words, so containment means a shared prefix.
            let longer_exists = self.en_names.range(en.clone()..).next().is_some_and(|n| n.starts_with(&en));
            let shorter_exists = (4..en.len()).any(|i| en.is_char_boundary(i) && self.en_names.contains(&en[..i]));
            let zh_clash = self.zh_parts.contains(&zh) || substrings(&zh).iter().any(|p| self.zh_names.contains(p));
            if !longer_exists && !shorter_exists && !zh_clash {
                // Later unrelated names must not clash with this one either.
                self.zh_parts.extend(substrings(&zh));
                self.zh_names.insert(zh.clone());
                self.en_names.insert(en.clone());
                return (en, zh);
            }
        }
    }
}
