//! MinHash near-duplicate detection against its theory: for document pairs whose 5-word-shingle
//! Jaccard similarity is computed exactly here, the share caught as near duplicates follows
//! the banding curve 1 − (1 − s^rows)^bands of the configured 14 bands × 8 rows: pairs around
//! 0.4 stay, pairs below the curve's midpoint mostly stay, pairs above it mostly go.

use std::collections::HashSet;

use lmlab_data::dedup::{normalise, Deduplicator, MinHashConfig, Verdict};
use rand::{Rng, SeedableRng};

/// The 5-word shingles of a text as strings (no hashing), for the exact Jaccard similarity.
fn shingle_set(text: &str) -> HashSet<String> {
    let norm = normalise(text);
    let words: Vec<&str> = norm.split(' ').collect();
    words.windows(5).map(|w| w.join(" ")).collect()
}

fn jaccard(a: &str, b: &str) -> f64 {
    let (sa, sb) = (shingle_set(a), shingle_set(b));
    sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
}

/// `n` random lower-case words of 4–9 letters: distinct with overwhelming probability, so every
/// shingle of a document is distinct too.
fn random_words(rng: &mut impl Rng, n: usize) -> Vec<String> {
    (0..n).map(|_| (0..rng.random_range(4..10)).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect()).collect()
}

/// A pair of documents of 204 words (200 shingles each) where the second is the first shifted
/// by `d` words: they share 200 − d shingles of 200 + d, Jaccard (200 − d)/(200 + d).
fn pair(rng: &mut impl Rng, d: usize) -> (String, String) {
    let words = random_words(rng, 204 + d);
    (words[..204].join(" "), words[d..].join(" "))
}

/// A page of 300 words (296 shingles) and a copy with `r` words replaced, 14 apart: each edit
/// replaces the 5 shingles that contain it, Jaccard (296 − 5r)/(296 + 5r). Unlike a shift, this
/// similarity depends on the shingle width.
fn edited(rng: &mut impl Rng, r: usize) -> (String, String) {
    let words = random_words(rng, 300);
    let mut copy = words.clone();
    for (j, fresh) in random_words(rng, r).into_iter().enumerate() {
        copy[10 + 14 * j] = fresh;
    }
    (words.join(" "), copy.join(" "))
}

enum Pairs {
    Shift(usize),
    Edits(usize),
}

impl Pairs {
    fn make(&self, rng: &mut impl Rng) -> (String, String) {
        match *self {
            Pairs::Shift(d) => pair(rng, d),
            Pairs::Edits(r) => edited(rng, r),
        }
    }

    /// The Jaccard similarity every pair of this kind has, by construction.
    fn jaccard(&self) -> f64 {
        match *self {
            Pairs::Shift(d) => (200.0 - d as f64) / (200.0 + d as f64),
            Pairs::Edits(r) => (296.0 - 5.0 * r as f64) / (296.0 + 5.0 * r as f64),
        }
    }
}

/// The share of `n` independent pairs that MinHash calls near duplicates, and their exact
/// Jaccard similarity.
fn caught(kind: &Pairs, n: usize, seed: u64) -> (f64, f64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut hits = 0;
    for i in 0..n {
        let (a, b) = kind.make(&mut rng);
        let s = jaccard(&a, &b);
        // Every pair of a kind has the same similarity, exactly.
        assert!((s - kind.jaccard()).abs() < 1e-12, "pair {i}: Jaccard {s}, expected {} (colliding words?)", kind.jaccard());
        let mut dedup = Deduplicator::new(MinHashConfig::default());
        assert_eq!(dedup.check(0, &a), Verdict::Unique);
        match dedup.check(1, &b) {
            Verdict::NearDuplicate { of: 0 } => hits += 1,
            Verdict::Unique => {}
            v => panic!("pair {i}: {v:?}"),
        }
    }
    (hits as f64 / n as f64, kind.jaccard())
}

/// Probability that two documents of Jaccard similarity `s` agree on all rows of at least one
/// band (the LSH banding curve).
fn banding(s: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

#[test]
fn near_duplicate_rate_follows_the_banding_curve_of_14_bands_of_8_rows() {
    let cfg = MinHashConfig::default();
    assert_eq!((cfg.shingle_words, cfg.bands, cfg.rows), (5, 14, 8), "the documented configuration (as FineWeb)");
    // The curve's midpoint, where a pair is caught half the time: (1 − 0.5^(1/14))^(1/8) ≈ 0.685.
    let mid = (1.0 - 0.5f64.powf(1.0 / 14.0)).powf(1.0 / 8.0);
    assert!((banding(mid, 14, 8) - 0.5).abs() < 1e-12 && (mid - 0.685).abs() < 0.001);
    let n = 300;
    // Shifts of 86, 50, 22, 10 words give Jaccard 0.399, 0.600, 0.802, 0.905; 20 and 14 edits
    // give 0.495 and 0.617 (0.576 and 0.683 with 4-word shingles, which moves the curve's
    // 5% and 26% to 16% and 49%).
    let levels = [
        (Pairs::Shift(86), 1),
        (Pairs::Shift(50), 2),
        (Pairs::Shift(22), 3),
        (Pairs::Shift(10), 4),
        (Pairs::Edits(20), 5),
        (Pairs::Edits(14), 6),
    ];
    for (kind, seed) in &levels {
        let (rate, s) = caught(kind, n, *seed);
        let p = banding(s, 14, 8);
        // n independent pairs: the rate is binomial around p; 4 standard deviations (and 1/n
        // for the tails, where p(1 − p) is tiny) keep a false failure below 1 in 10⁴.
        let tol = 4.0 * (p * (1.0 - p) / n as f64).sqrt() + 1.0 / n as f64;
        assert!((rate - p).abs() <= tol, "Jaccard {s:.3}: {rate:.3} of pairs caught, the banding curve says {p:.3} (±{tol:.3})");
        if s < 0.45 {
            // Around 0.4 a pair stays: the curve gives 0.9%.
            assert!(rate <= 0.03, "Jaccard {s:.3}: {rate:.3} caught");
        } else if s < mid {
            // Below the midpoint most pairs stay (5% caught at 0.5, 21% at 0.6, 26% at 0.62).
            assert!(rate < 0.5, "Jaccard {s:.3}: {rate:.3} caught");
        } else if s < 0.85 {
            // Above it most go (92% caught at 0.8).
            assert!(rate > 0.5, "Jaccard {s:.3}: {rate:.3} caught");
        } else {
            assert!(rate >= 0.99, "Jaccard {s:.3}: {rate:.3} caught");
        }
    }
}

#[test]
fn curve_of_another_banding_is_told_apart() {
    // The same documents under 8 bands of 14 rows (the two numbers swapped): the curve moves
    // far to the right, and the rates follow it, so the test above pins the configuration.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let n = 300;
    let mut hits = 0;
    let mut s = 0.0;
    for _ in 0..n {
        let (a, b) = pair(&mut rng, 22);
        s = jaccard(&a, &b);
        let mut dedup = Deduplicator::new(MinHashConfig { bands: 8, rows: 14, ..MinHashConfig::default() });
        dedup.check(0, &a);
        hits += usize::from(matches!(dedup.check(1, &b), Verdict::NearDuplicate { .. }));
    }
    let rate = hits as f64 / n as f64;
    let (p, p_default) = (banding(s, 8, 14), banding(s, 14, 8));
    assert!(p < 0.35 && p_default > 0.9, "{p} {p_default}");
    // Binomial, as above.
    assert!((rate - p).abs() <= 4.0 * (p * (1.0 - p) / n as f64).sqrt() + 1.0 / n as f64, "{rate} vs {p}");
}

#[test]
fn single_pairs_below_and_above_the_threshold() {
    // One pair per level, deterministic (seeded words and hash functions), at similarities
    // where the banding curve leaves little room: 0.30 (caught with probability 0.09%) stays,
    // 0.40 (0.9%) stays, and 0.95 (caught with probability 1 − 10⁻¹⁴) and a copy with one word
    // changed go.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (d, keep) in [(108, true), (86, true), (5, false)] {
        let (a, b) = pair(&mut rng, d);
        let s = jaccard(&a, &b);
        let mut dedup = Deduplicator::new(MinHashConfig::default());
        assert_eq!(dedup.check(0, &a), Verdict::Unique);
        let v = dedup.check(1, &b);
        assert_eq!(v == Verdict::Unique, keep, "Jaccard {s:.3}: {v:?}");
    }
    let words = random_words(&mut rng, 300);
    let a = words.join(" ");
    let mut changed = words.clone();
    changed[150] = "different".into();
    let b = changed.join(" ");
    // One word changed in the middle replaces 5 of 296 shingles: (296 − 5)/(296 + 5).
    assert!((jaccard(&a, &b) - 291.0 / 301.0).abs() < 1e-12);
    let mut dedup = Deduplicator::new(MinHashConfig::default());
    assert_eq!(dedup.check(0, &a), Verdict::Unique);
    assert_eq!(dedup.check(1, &b), Verdict::NearDuplicate { of: 0 });
}
