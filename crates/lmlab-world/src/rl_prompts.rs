//! `rl_prompts.jsonl`: the questions reinforcement learning asks, a set of its own.
//!
//! Its facts are in neither the SFT set nor the evaluation sets: they are chosen after the
//! evaluation facts, from the rest, and [`crate::tasks::build`] then leaves them out of every
//! SFT example (questions, translations, summaries, city lists), as it leaves out the evaluation
//! facts. They are spread over the occurrence buckets: an equal share of [`RL_FACTS`] each,
//! and what a small bucket cannot fill goes to the others. No bucket gives more than half of
//! the facts the evaluation left it, so that SFT keeps the other half: a small bucket of
//! frequent facts would otherwise go to RL whole, and SFT would never teach answering what the
//! base model knows. Questions about entities that do not
//! exist take their names from the generator's held-out names ([`RL_GHOSTS`] of them, or fewer
//! if the names run out), which are then in no SFT example and no evaluation question.
//! Questions use the training templates, as the evaluation facts do; each carries its accepted
//! answers, so the world's grader can score an answer (`lmlab rlhf --reward grader`).

use std::collections::{BTreeMap, HashSet};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::crawl::CrawlPlan;
use crate::kb::{Kb, Kind, Relation};
use crate::page::fill;
use crate::tasks::{accepted, bucket, Question};
use crate::templates::{self, TRAIN_QUESTIONS};

/// Fact questions in the RL set (fewer if the world has fewer facts outside the evaluation sets).
pub const RL_FACTS: usize = 1_800;
/// Questions about entities that do not exist.
pub const RL_GHOSTS: usize = 200;

/// The RL set: its questions, and the facts (entity, fact index) they ask about.
pub struct RlPrompts {
    pub questions: Vec<Question>,
    pub facts: HashSet<(usize, usize)>,
}

/// Shares of `total` for buckets holding `sizes` items: equal shares, and what a bucket cannot
/// fill goes to the others (water-filling). The shares sum to min(total, Σ sizes).
pub fn spread(sizes: &[usize], total: usize) -> Vec<usize> {
    let mut take = vec![0usize; sizes.len()];
    let mut left = total.min(sizes.iter().sum());
    while left > 0 {
        let open: Vec<usize> = (0..sizes.len()).filter(|&i| take[i] < sizes[i]).collect();
        let share = (left / open.len()).max(1);
        for i in open {
            let add = share.min(sizes[i] - take[i]).min(left);
            take[i] += add;
            left -= add;
        }
    }
    take
}

/// Builds the RL set from the facts not in `exclude` (the evaluation facts) and names taken
/// from the end of `ghost_names`.
pub fn build(
    kb: &Kb,
    crawl: &CrawlPlan,
    exclude: &HashSet<(usize, usize)>,
    ghost_names: &mut Vec<(String, String)>,
    zh_share: f64,
    rng: &mut ChaCha8Rng,
) -> RlPrompts {
    let mut by_bucket: BTreeMap<&'static str, Vec<(usize, usize)>> = BTreeMap::new();
    for (ei, e) in kb.entities.iter().enumerate() {
        for fi in 0..e.facts.len() {
            if !exclude.contains(&(ei, fi)) {
                by_bucket.entry(bucket(crawl.occurrences[&e.facts[fi].id])).or_default().push((ei, fi));
            }
        }
    }
    let sizes: Vec<usize> = by_bucket.values().map(|facts| facts.len() / 2).collect();
    let shares = spread(&sizes, RL_FACTS);
    let mut out = RlPrompts { questions: Vec::new(), facts: HashSet::new() };
    let mut id = 0;
    let mut next_id = || {
        id += 1;
        format!("rl{id:06}")
    };
    for ((_, facts), n) in by_bucket.iter_mut().zip(shares) {
        facts.shuffle(rng);
        for &(ei, fi) in facts.iter().take(n) {
            out.facts.insert((ei, fi));
            let (e, f) = (&kb.entities[ei], &kb.entities[ei].facts[fi]);
            let zh = rng.random_bool(zh_share);
            let subject = if zh { &e.name_zh } else { &e.name };
            let forms = &templates::questions(f.relation, zh)[..TRAIN_QUESTIONS];
            let occ = crawl.occurrences[&f.id];
            out.questions.push(Question {
                id: next_id(),
                set: "rl".into(),
                question: fill(forms[rng.random_range(0..forms.len())], subject, ""),
                language: if zh { "zh" } else { "en" }.into(),
                entity: e.id.clone(),
                relation: f.relation.name().into(),
                answers: accepted(f),
                occurrences: occ,
                bucket: bucket(occ).into(),
            });
        }
    }
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| !Relation::of_kind(*k).is_empty()).collect();
    for _ in 0..RL_GHOSTS.min(ghost_names.len()) {
        let (en, zh_name) = ghost_names.pop().expect("counted above");
        let rels = Relation::of_kind(kinds[rng.random_range(0..kinds.len())]);
        let rel = rels[rng.random_range(0..rels.len())];
        let zh = rng.random_bool(zh_share);
        let subject = if zh { zh_name } else { en };
        let forms = &templates::questions(rel, zh)[..TRAIN_QUESTIONS];
        out.questions.push(Question {
            id: next_id(),
            set: "rl".into(),
            question: fill(forms[rng.random_range(0..forms.len())], &subject, ""),
            language: if zh { "zh" } else { "en" }.into(),
            entity: subject,
            relation: rel.name().into(),
            answers: Vec::new(),
            occurrences: 0,
            bucket: "0".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_equal_and_small_buckets_pass_on_what_they_cannot_fill() {
        assert_eq!(spread(&[2100, 4879, 53, 0], 1800), [874, 873, 53, 0]);
        assert_eq!(spread(&[1000, 1000, 1000, 1000], 1800), [450, 450, 450, 450]);
        assert_eq!(spread(&[10, 5], 100), [10, 5]);
        assert_eq!(spread(&[3, 3, 3], 4).iter().sum::<usize>(), 4);
        assert_eq!(spread(&[], 10), Vec::<usize>::new());
    }
}
