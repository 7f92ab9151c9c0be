//! Pronounceable invented names, with a Chinese transliteration for each, and the names of
//! entities that do not exist.
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
//! Names of entities that do not exist are drawn by the same procedure: [`NameGen::holding_out`]
//! sets one name aside after every few real ones, and only [`NameGen::held_out`] returns it, so
//! no page can mention it. The containment check runs against every name drawn, real or held
//! out. Checking only across the two sets would make the check depend on the set a name is drawn
//! for: held-out names are fewer, so a short held-out candidate would be inside some real name
//! far more often than a short real one inside a held-out name, and held-out names would come out
//! longer; in Chinese, where two-character names use up the 64² pairs, each pair would belong to
//! one set, and a held-out name would be told by pairs no real name has. (Tried: the character
//! n-gram classifier of `tests/names_by_spelling.rs` then tells held-out names apart with AUROC
//! 0.63 in English and 0.88 in Chinese; 0.50 and 0.54 with the caps on short names.) With one
//! check for all and the set decided by position alone, both sets are draws from one
//! distribution: AUROC 0.50 and 0.49.

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

/// Draws names (English, Chinese) from a seeded RNG, none containing another in either form,
/// and, when asked to, holds some out for entities that do not exist.
pub struct NameGen {
    english: ContainmentIndex,
    chinese: ContainmentIndex,
    /// One name is held out after every this many real ones (0: none is).
    real_per_held_out: usize,
    real_drawn: usize,
    held_out: Vec<(String, String)>,
    /// Names drawn so far (real and held out) by syllable count.
    by_syllables: [usize; 5],
}

impl Default for NameGen {
    fn default() -> Self {
        Self::new()
    }
}

impl NameGen {
    /// A generator that holds no names out.
    pub fn new() -> Self {
        Self::holding_out(0)
    }

    /// A generator that, after every `real_per_held_out` real names, draws one more and keeps it
    /// out of [`NameGen::next`]'s answers (0: none). Held-out names are spread over the whole
    /// sequence of draws, so they follow the same drift from short to long names as real ones.
    pub fn holding_out(real_per_held_out: usize) -> Self {
        Self {
            english: ContainmentIndex::new(MIN_EN_LETTERS),
            chinese: ContainmentIndex::new(MIN_ZH_CHARS),
            real_per_held_out,
            real_drawn: 0,
            held_out: Vec::new(),
            by_syllables: [0; 5],
        }
    }

    /// A fresh real (English, Chinese) name pair.
    pub fn next(&mut self, rng: &mut impl Rng) -> (String, String) {
        self.real_drawn += 1;
        if self.real_per_held_out > 0 && self.real_drawn.is_multiple_of(self.real_per_held_out) {
            let name = self.draw(rng);
            self.held_out.push(name);
        }
        self.draw(rng)
    }

    /// The names held out so far, in the order drawn: never returned by [`NameGen::next`], and
    /// neither containing nor inside any name it returned.
    pub fn held_out(&self) -> &[(String, String)] {
        &self.held_out
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

    /// The one procedure for every name, real or held out.
    fn draw(&mut self, rng: &mut impl Rng) -> (String, String) {
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
    fn no_name_contains_another_real_or_held_out() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut names = NameGen::holding_out(3);
        let real: Vec<(String, String)> = (0..2400).map(|_| names.next(&mut rng)).collect();
        assert_eq!(names.held_out().len(), 800);
        let all: Vec<&(String, String)> = real.iter().chain(names.held_out()).collect();
        let english: Vec<String> = all.iter().map(|(en, _)| en.to_lowercase()).collect();
        let chinese: Vec<String> = all.iter().map(|(_, zh)| zh.clone()).collect();
        assert_eq!(containments(&english), vec![]);
        assert_eq!(containments(&chinese), vec![]);
        // Short names are there to be checked: the check did not just make every name long.
        assert!(chinese.iter().filter(|zh| zh.chars().count() == 2).count() >= 400);
    }

    #[test]
    fn same_seed_same_names_and_none_held_out_by_default() {
        let draw = |names: &mut NameGen| {
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            (0..300).map(|_| names.next(&mut rng)).collect::<Vec<_>>()
        };
        let (mut a, mut b) = (NameGen::holding_out(3), NameGen::holding_out(3));
        assert_eq!(draw(&mut a), draw(&mut b));
        assert_eq!(a.held_out(), b.held_out());
        let mut plain = NameGen::new();
        draw(&mut plain);
        assert!(plain.held_out().is_empty());
    }
}
