//! Pronounceable invented names, with a Chinese transliteration for each.
//!
//! A name is 2–3 syllables (onset + vowel + optional coda; four once the shorter names run out).
//! Its Chinese form writes each syllable with a character used in transliterating foreign names
//! (阿, 巴, 德, ...), chosen by the syllable itself, so the same syllable is always written the
//! same way. Names of entities that must not exist come from [`UnrelatedNames`].

use std::collections::HashSet;

use rand::Rng;

const ONSETS: [&str; 24] =
    ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th", "tr", "sh", "h", "j", "y"];
const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ai", "ei", "ou"];
const CODAS: [&str; 7] = ["", "", "", "n", "r", "s", "l"];
/// Characters commonly used to transliterate foreign names.
const HANZI: [char; 64] = [
    '阿', '巴', '达', '法', '加', '卡', '拉', '马', '纳', '帕', '萨', '塔', '瓦', '扎', '贝', '德', '菲', '格', '克', '莱', '梅', '内',
    '佩', '雷', '塞', '特', '维', '泽', '比', '迪', '基', '利', '米', '尼', '皮', '里', '西', '蒂', '博', '多', '戈', '科', '洛', '莫',
    '诺', '波', '罗', '索', '托', '沃', '布', '杜', '古', '库', '卢', '穆', '努', '普', '鲁', '苏', '图', '乌', '伊', '恩',
];

fn syllable_hanzi(s: &str) -> char {
    let h = s.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
    HANZI[(h % HANZI.len() as u32) as usize]
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
            let n = if misses > 8 {
                4
            } else if rng.random_bool(0.6) {
                2
            } else {
                3
            };
            misses += 1;
            let mut en = String::new();
            let mut zh = String::new();
            for _ in 0..n {
                let s = format!(
                    "{}{}{}",
                    ONSETS[rng.random_range(0..ONSETS.len())],
                    VOWELS[rng.random_range(0..VOWELS.len())],
                    CODAS[rng.random_range(0..CODAS.len())]
                );
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
}

/// Onsets and characters that real names never use, reserved for entities that do not exist.
const GHOST_ONSETS: [&str; 4] = ["q", "x", "qu", "xh"];
const GHOST_HANZI: [char; 16] = ['琪', '瑟', '弗', '霍', '芙', '绮', '骁', '黛', '珂', '莎', '筠', '翎', '璐', '蔻', '萱', '琦'];

/// Names for entities that do not exist. Every syllable starts with an onset, and every Chinese
/// character comes from a set, that real names never use, so no real name contains a ghost name
/// or the reverse (Chinese names have no spaces, and with a big world every short combination of
/// ordinary characters is taken). Ghost names are four syllables (16⁴ Chinese forms), and none
/// is a prefix of another, so ghosts do not contain each other either.
pub struct UnrelatedNames {
    used_en: std::collections::BTreeSet<String>,
    used_zh: HashSet<String>,
}

impl Default for UnrelatedNames {
    fn default() -> Self {
        Self::new()
    }
}

impl UnrelatedNames {
    pub fn new() -> Self {
        Self { used_en: std::collections::BTreeSet::new(), used_zh: HashSet::new() }
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> (String, String) {
        loop {
            let mut en = String::new();
            let mut zh = String::new();
            for _ in 0..4 {
                let s = format!(
                    "{}{}{}",
                    GHOST_ONSETS[rng.random_range(0..GHOST_ONSETS.len())],
                    VOWELS[rng.random_range(0..VOWELS.len())],
                    CODAS[rng.random_range(0..CODAS.len())]
                );
                let h = s.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
                zh.push(GHOST_HANZI[(h % GHOST_HANZI.len() as u32) as usize]);
                en.push_str(&s);
            }
            let mut chars = en.chars();
            let en: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect();
            let prefix_clash = self.used_en.range(en.clone()..).next().is_some_and(|n| n.starts_with(&en))
                || (1..en.len()).any(|i| self.used_en.contains(&en[..i]));
            if !prefix_clash && !self.used_zh.contains(&zh) {
                self.used_en.insert(en.clone());
                self.used_zh.insert(zh.clone());
                return (en, zh);
            }
        }
    }
}
