//! Pronounceable invented names, with a Chinese transliteration for each.
//!
//! A name is syllables of onset + vowel + optional coda: two or three while the short ones last
//! (at most 512 of two, 100,000 of three), then four. Its Chinese form writes each syllable with
//! a character used in transliterating foreign names (阿, 巴, 德, ...), chosen by the syllable
//! itself, so the same syllable is always written the same way.
//!
//! No name contains another, in either form: English compared case-insensitively as a substring
//! ("Bada" would be inside "Kobadar"), Chinese as a substring (巴达 inside 巴达拉). A mention of one
//! name is then never a mention of another. The caps on short names keep room for long ones: a
//! two-character Chinese name bars every longer name holding its pair of characters.
//!
//! Names of entities that must not exist come from [`UnrelatedNames`].

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
/// The shortest English name, in letters.
const MIN_EN_LETTERS: usize = 4;
/// The shortest Chinese name, in characters (two syllables).
const MIN_ZH_CHARS: usize = 2;
/// Two-syllable names at most: an eighth of the 64² Chinese pairs. No name may hold another, so
/// each short name bars every longer one holding its characters. Without the caps, drawing the
/// medium world's names did not finish in ten minutes: two-character names had taken half the
/// pairs (the commonest first), three-character ones 50,000 triples, and one four-character
/// candidate in a thousand passed. With the caps: 20 s for 570,000 names.
const MAX_TWO_SYLLABLES: usize = 512;
/// Three-syllable names at most (about 40% of 64³), for the same reason.
const MAX_THREE_SYLLABLES: usize = 100_000;
/// Rejected candidates in one draw before it falls back to four syllables.
const MISSES_BEFORE_FOUR_SYLLABLES: usize = 8;

/// 64-bit FNV-1a, one step per byte: deterministic across runs and platforms.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
fn fnv_step(h: u64, byte: u8) -> u64 {
    (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
}

fn syllable_hanzi(s: &str) -> char {
    let h = s.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
    HANZI[(h % HANZI.len() as u32) as usize]
}

/// A candidate name of `syllables` syllables: (English in lower case, Chinese).
fn candidate(syllables: usize, rng: &mut impl Rng) -> (String, String) {
    let mut en = String::new();
    let mut zh = String::new();
    for _ in 0..syllables {
        let s = format!(
            "{}{}{}",
            ONSETS[rng.random_range(0..ONSETS.len())],
            VOWELS[rng.random_range(0..VOWELS.len())],
            CODAS[rng.random_range(0..CODAS.len())]
        );
        zh.push(syllable_hanzi(&s));
        en.push_str(&s);
    }
    (en, zh)
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect()
}

/// Hashes of every substring of `s` at least `min_chars` characters long (`s` itself included).
fn substring_hashes(s: &str, min_chars: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for (start, _) in s.char_indices() {
        let mut h = FNV_OFFSET;
        for (n, c) in s[start..].chars().enumerate() {
            let mut buf = [0; 4];
            h = c.encode_utf8(&mut buf).bytes().fold(h, fnv_step);
            if n + 1 >= min_chars {
                out.push(h);
            }
        }
    }
    out
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(FNV_OFFSET, fnv_step)
}

/// Names in one script, indexed so that a candidate equal to one of them, inside one, or holding
/// one is found with a few set lookups. Kept as 64-bit hashes (a collision can only reject a
/// candidate, never let a clash through).
struct ContainmentIndex {
    min_chars: usize,
    names: HashSet<u64>,
    /// Every substring of every name, at least `min_chars` long (shorter ones cannot be a name).
    parts: HashSet<u64>,
}

impl ContainmentIndex {
    fn new(min_chars: usize) -> Self {
        Self { min_chars, names: HashSet::new(), parts: HashSet::new() }
    }

    /// Whether `candidate` equals, is inside, or contains a name already here.
    fn clashes(&self, candidate: &str) -> bool {
        self.parts.contains(&hash(candidate)) || substring_hashes(candidate, self.min_chars).iter().any(|h| self.names.contains(h))
    }

    fn insert(&mut self, name: &str) {
        self.names.insert(hash(name));
        self.parts.extend(substring_hashes(name, self.min_chars));
    }
}

/// Draws names (English, Chinese) from a seeded RNG, none containing another in either form.
pub struct NameGen {
    english: ContainmentIndex,
    chinese: ContainmentIndex,
    /// Names drawn so far by syllable count.
    by_syllables: [usize; 5],
}

impl Default for NameGen {
    fn default() -> Self {
        Self::new()
    }
}

impl NameGen {
    pub fn new() -> Self {
        Self { english: ContainmentIndex::new(MIN_EN_LETTERS), chinese: ContainmentIndex::new(MIN_ZH_CHARS), by_syllables: [0; 5] }
    }

    /// A fresh (English, Chinese) name pair.
    pub fn next(&mut self, rng: &mut impl Rng) -> (String, String) {
        let mut misses = 0;
        loop {
            let syllables = self.syllables(misses, rng);
            misses += 1;
            let (en, zh) = candidate(syllables, rng);
            if en.len() >= MIN_EN_LETTERS && !self.chinese.clashes(&zh) && !self.english.clashes(&en) {
                self.english.insert(&en);
                self.chinese.insert(&zh);
                self.by_syllables[syllables] += 1;
                return (capitalise(&en), zh);
            }
        }
    }

    /// Two syllables (with probability 0.6) while there are fewer than [`MAX_TWO_SYLLABLES`],
    /// otherwise three while there are fewer than [`MAX_THREE_SYLLABLES`], otherwise (or after
    /// a run of rejected candidates) four.
    fn syllables(&self, misses: usize, rng: &mut impl Rng) -> usize {
        if misses > MISSES_BEFORE_FOUR_SYLLABLES {
            4
        } else if self.by_syllables[2] < MAX_TWO_SYLLABLES && rng.random_bool(0.6) {
            2
        } else if self.by_syllables[3] < MAX_THREE_SYLLABLES {
            3
        } else {
            4
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Pairs (a, b) of distinct names where `a` is inside `b`, found by brute force.
    fn containments(names: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, a) in names.iter().enumerate() {
            for (j, b) in names.iter().enumerate() {
                if i != j && b.contains(a.as_str()) {
                    out.push((a.clone(), b.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn no_name_contains_another() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut names = NameGen::new();
        let all: Vec<(String, String)> = (0..3200).map(|_| names.next(&mut rng)).collect();
        let english: Vec<String> = all.iter().map(|(en, _)| en.to_lowercase()).collect();
        let chinese: Vec<String> = all.iter().map(|(_, zh)| zh.clone()).collect();
        assert_eq!(containments(&english), vec![]);
        assert_eq!(containments(&chinese), vec![]);
        // Short names are there to be checked: the check did not just make every name long.
        assert!(chinese.iter().filter(|zh| zh.chars().count() == 2).count() >= 400);
    }
}
