//! Names of entities that do not exist cannot be told from real ones by their spelling.
//!
//! A logistic regression on character 1–3-grams, trained on names alone, scores held-out names;
//! its AUROC for "does not exist" must be chance (0.5 ± 0.05). The names come from the world's
//! own procedure ([`lmlab_world::knowledge_base`] at the small scale: 35,000 entities and the
//! names held out while drawing theirs). The same classifier on names from a reserved alphabet
//! (the old q/x onsets and their own Chinese characters) must score above 0.9, which shows the
//! test can see a spelling difference when there is one.

use std::collections::HashMap;

use lmlab_world::{knowledge_base, Scale};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// (English, Chinese) name pairs.
type Names = Vec<(String, String)>;

/// Names of each class to train on, and as many more to score.
const PER_CLASS: usize = 2_500;

/// Character 1–3-grams of a name in lower case, with `^` and `$` marking its ends (so a telling
/// first or last letter is a feature of its own).
fn ngrams(name: &str) -> Vec<String> {
    let chars: Vec<char> = std::iter::once('^').chain(name.to_lowercase().chars()).chain(std::iter::once('$')).collect();
    (1..=3).flat_map(|n| chars.windows(n).map(|w| w.iter().collect::<String>()).collect::<Vec<_>>()).collect()
}

/// Logistic regression over n-gram counts; n-grams not seen in training weigh nothing.
struct Classifier {
    index: HashMap<String, usize>,
    weights: Vec<f64>,
    bias: f64,
}

impl Classifier {
    fn features(&self, name: &str) -> Vec<usize> {
        ngrams(name).iter().filter_map(|g| self.index.get(g).copied()).collect()
    }

    fn score(&self, name: &str) -> f64 {
        self.bias + self.features(name).iter().map(|&i| self.weights[i]).sum::<f64>()
    }

    /// Trained by plain SGD on the log loss, a few seeded epochs; label 1 is "does not exist".
    fn train(real: &[String], ghosts: &[String], seed: u64) -> Self {
        let mut index = HashMap::new();
        for name in real.iter().chain(ghosts) {
            for g in ngrams(name) {
                let next = index.len();
                index.entry(g).or_insert(next);
            }
        }
        let mut c = Classifier { weights: vec![0.0; index.len()], index, bias: 0.0 };
        let mut examples: Vec<(Vec<usize>, f64)> =
            real.iter().map(|n| (c.features(n), 0.0)).chain(ghosts.iter().map(|n| (c.features(n), 1.0))).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (lr, l2) = (0.05, 1e-4);
        for _ in 0..5 {
            examples.shuffle(&mut rng);
            for (x, y) in &examples {
                let z = c.bias + x.iter().map(|&i| c.weights[i]).sum::<f64>();
                let grad = 1.0 / (1.0 + (-z).exp()) - y;
                c.bias -= lr * grad;
                for &i in x {
                    c.weights[i] -= lr * (grad + l2 * c.weights[i]);
                }
            }
        }
        c
    }
}

/// Probability that a random positive scores above a random negative (ties count a half).
fn auroc(positives: &[f64], negatives: &[f64]) -> f64 {
    let mut all: Vec<(f64, bool)> = positives.iter().map(|&s| (s, true)).chain(negatives.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mann–Whitney: sum of the positives' ranks, tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let j = (i..all.len()).find(|&j| all[j].0 != all[i].0).unwrap_or(all.len());
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (p, n) = (positives.len() as f64, negatives.len() as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// AUROC on held-out names after training on others: the first `PER_CLASS` of each class
/// train, the next `PER_CLASS` are scored.
fn held_out_auroc(real: &[String], ghosts: &[String]) -> f64 {
    assert!(real.len() >= 2 * PER_CLASS && ghosts.len() >= 2 * PER_CLASS, "{} real, {} ghost names", real.len(), ghosts.len());
    let c = Classifier::train(&real[..PER_CLASS], &ghosts[..PER_CLASS], 11);
    let score = |names: &[String]| names.iter().map(|n| c.score(n)).collect::<Vec<_>>();
    auroc(&score(&ghosts[PER_CLASS..2 * PER_CLASS]), &score(&real[PER_CLASS..2 * PER_CLASS]))
}

/// (English, Chinese) of the small world's entities and of the names held out while drawing
/// them, each class in a seeded random order.
fn world_names() -> (Names, Names) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (kb, names) = knowledge_base(Scale::Small, &mut rng);
    let mut real: Names = kb.entities.iter().map(|e| (e.name.clone(), e.name_zh.clone())).collect();
    let mut ghosts = names.held_out().to_vec();
    let mut order = ChaCha8Rng::seed_from_u64(1);
    real.shuffle(&mut order);
    ghosts.shuffle(&mut order);
    (real, ghosts)
}

/// Names as the old reserved alphabet made them: onsets only non-existent names used (q, x, qu,
/// xh) and Chinese characters of their own, 2–3 syllables like real names.
fn reserved_alphabet_names(n: usize, rng: &mut impl Rng) -> Names {
    const ONSETS: [&str; 4] = ["q", "x", "qu", "xh"];
    const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ai", "ei", "ou"];
    const CODAS: [&str; 7] = ["", "", "", "n", "r", "s", "l"];
    const HANZI: [char; 16] = ['琪', '瑟', '弗', '霍', '芙', '绮', '骁', '黛', '珂', '莎', '筠', '翎', '璐', '蔻', '萱', '琦'];
    (0..n)
        .map(|_| {
            let syllables = if rng.random_bool(0.6) { 2 } else { 3 };
            let (mut en, mut zh) = (String::new(), String::new());
            for _ in 0..syllables {
                en.push_str(ONSETS[rng.random_range(0..ONSETS.len())]);
                en.push_str(VOWELS[rng.random_range(0..VOWELS.len())]);
                en.push_str(CODAS[rng.random_range(0..CODAS.len())]);
                zh.push(HANZI[rng.random_range(0..HANZI.len())]);
            }
            (en, zh)
        })
        .collect()
}

fn english(names: &[(String, String)]) -> Vec<String> {
    names.iter().map(|(en, _)| en.clone()).collect()
}

fn chinese(names: &[(String, String)]) -> Vec<String> {
    names.iter().map(|(_, zh)| zh.clone()).collect()
}

#[test]
fn held_out_names_are_not_told_apart_by_spelling() {
    let (real, ghosts) = world_names();
    let en = held_out_auroc(&english(&real), &english(&ghosts));
    let zh = held_out_auroc(&chinese(&real), &chinese(&ghosts));
    eprintln!("held-out names: AUROC English {en:.3}, Chinese {zh:.3}");
    assert!((en - 0.5).abs() <= 0.05, "English names tell non-existent entities apart: AUROC {en:.3}");
    assert!((zh - 0.5).abs() <= 0.05, "Chinese names tell non-existent entities apart: AUROC {zh:.3}");
}

#[test]
fn reserved_alphabet_names_are_told_apart_by_spelling() {
    let (real, _) = world_names();
    let reserved = reserved_alphabet_names(2 * PER_CLASS, &mut ChaCha8Rng::seed_from_u64(2));
    let en = held_out_auroc(&english(&real), &english(&reserved));
    let zh = held_out_auroc(&chinese(&real), &chinese(&reserved));
    eprintln!("reserved-alphabet names: AUROC English {en:.3}, Chinese {zh:.3}");
    assert!(en > 0.9 && zh > 0.9, "the classifier misses a reserved alphabet: AUROC English {en:.3}, Chinese {zh:.3}");
}
