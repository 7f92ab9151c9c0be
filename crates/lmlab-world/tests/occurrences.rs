//! Every evaluation question's `occurrences` and `bucket`, checked one fact at a time against a
//! recount from `labels.jsonl`: the distinct documents (no mirrors or near-duplicates) that
//! state the fact truly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lmlab_world::kb::Kb;
use lmlab_world::tasks::Question;
use lmlab_world::{generate, WorldOptions};

fn read_jsonl<T: serde::de::DeserializeOwned>(p: &Path) -> Vec<T> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The buckets of docs/world.md (`1`, `2-3`, `4-10`, `11+`; `0` for entities that do not exist).
fn bucket_of(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2 | 3 => "2-3",
        4..=10 => "4-10",
        _ => "11+",
    }
}

#[test]
fn each_question_counts_the_documents_that_state_its_fact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stats = generate(d, &WorldOptions { seed: 2, ..Default::default() }).unwrap();
    let kb = Kb::from_jsonl(&std::fs::read_to_string(d.join("kb.jsonl")).unwrap(), "kb.jsonl").unwrap();

    // Recount from the labels: fact id -> distinct documents stating it truly.
    let labels: Vec<serde_json::Value> = read_jsonl(&d.join("labels.jsonl"));
    let mut stated: HashMap<String, usize> = HashMap::new();
    for l in &labels {
        let copy = !l["duplicate_of"].is_null();
        assert_eq!(copy, matches!(l["kind"].as_str().unwrap(), "mirror" | "near_duplicate"));
        for f in l["facts"].as_array().unwrap() {
            if f["true"] == true && !copy {
                *stated.entry(f["fact_id"].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(stated.len(), kb.facts().count(), "every fact is stated somewhere");

    let mut per_bucket: BTreeMap<String, usize> = BTreeMap::new();
    for set in ["facts", "paraphrase"] {
        let qs: Vec<Question> = read_jsonl(&d.join("eval").join(format!("{set}.jsonl")));
        assert!(!qs.is_empty());
        for q in &qs {
            // The question's fact: the entity's fact with this relation and these answers.
            let entity = kb.entity(&q.entity).unwrap_or_else(|| panic!("{}: entity {} not in the KB", q.id, q.entity));
            let facts: Vec<_> =
                entity.facts.iter().filter(|f| f.relation.name() == q.relation && lmlab_world::tasks::accepted(f) == q.answers).collect();
            assert_eq!(facts.len(), 1, "{}: {} facts match {} / {:?}", q.id, facts.len(), q.relation, q.answers);
            let n = stated[&facts[0].id];
            assert_eq!(
                q.occurrences, n,
                "{} ({set}, fact {}): {} occurrences claimed, {n} documents state it",
                q.id, facts[0].id, q.occurrences
            );
            assert_eq!(q.bucket, bucket_of(n), "{} ({set}): bucket for {n} documents", q.id);
            if set == "facts" {
                *per_bucket.entry(q.bucket.clone()).or_default() += 1;
            }
        }
    }
    // stats.json's histogram is the recount's, bucket by bucket.
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for &n in stated.values() {
        *histogram.entry(bucket_of(n).to_string()).or_default() += 1;
    }
    assert_eq!(stats.facts_by_occurrence_bucket, histogram);
    // Evaluation facts are drawn per bucket: 200 each at the tiny scale, but never more than
    // half of a bucket (the rest stays for SFT and RL).
    for (b, &n) in &histogram {
        assert_eq!(per_bucket.get(b).copied().unwrap_or(0), n.min(200).min(n / 2), "bucket {b}");
    }
    // The RL set takes at most half of what evaluation left in a bucket: SFT keeps the rest.
    let mut rl_per_bucket: BTreeMap<String, usize> = BTreeMap::new();
    for q in read_jsonl::<Question>(&d.join("rl_prompts.jsonl")) {
        *rl_per_bucket.entry(q.bucket).or_default() += 1;
    }
    for (b, &n) in &histogram {
        let left = n - per_bucket.get(b).copied().unwrap_or(0);
        let rl = rl_per_bucket.get(b).copied().unwrap_or(0);
        assert!(rl <= left / 2 && left - rl > 0, "bucket {b}: {rl} RL facts of the {left} evaluation left");
    }
    // Questions about entities that do not exist: zero occurrences, bucket 0, not in the KB.
    for q in read_jsonl::<Question>(&d.join("eval/nonexistent.jsonl")) {
        assert_eq!((q.occurrences, q.bucket.as_str()), (0, "0"), "{}", q.id);
        assert!(kb.entity(&q.entity).is_none() && q.answers.is_empty(), "{}", q.id);
    }
}
