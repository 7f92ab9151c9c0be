//! The preference reader on the built-in world's `preferences.jsonl` (every fact pair names its
//! entity; the split by entity shares none) and on the real hh-rlhf test file in
//! ../shared/data/chat (every pair read, prompts shared, grouped by the first human turn), and its
//! errors naming file and line.

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use lmlab_data::preference::{read_preference_file, split_by_group, HH_RLHF_REASON};

#[test]
fn world_pairs_name_their_entity_and_the_split_shares_none() {
    let dir = tempfile::tempdir().unwrap();
    lmlab_world::generate(dir.path(), &lmlab_world::WorldOptions::default()).unwrap();
    let file = read_preference_file(&dir.path().join("preferences.jsonl")).unwrap();
    // Every pair names its entity (safety requests are about a person, company or city).
    assert_eq!(file.without_entity, 0);
    let mut reasons: HashMap<&str, usize> = HashMap::new();
    for p in &file.pairs {
        *reasons.entry(p.reason.as_str()).or_default() += 1;
        assert_eq!(p.prompt.len(), 1);
        assert!(!p.group.is_empty() && p.source.contains("preferences.jsonl:"));
    }
    for r in ["correct_vs_wrong_fact", "helpful_vs_rude", "answer_vs_abstain", "abstain_vs_invent", "safe_vs_unsafe"] {
        assert!(reasons.contains_key(r), "no {r} pairs: {reasons:?}");
    }
    // Several pairs share an entity (a fact asked twice, or two facts of one entity).
    let groups: HashSet<&str> = file.pairs.iter().map(|p| p.group.as_str()).collect();
    assert!(groups.len() < file.pairs.len());

    let n = file.pairs.len();
    let (train, held) = split_by_group(file.pairs, 0.2, 3);
    assert_eq!(train.len() + held.len(), n);
    assert!((held.len() as f64 / n as f64 - 0.2).abs() < 0.05, "{} of {n} held out", held.len());
    let trained: HashSet<&str> = train.iter().map(|p| p.group.as_str()).collect();
    assert!(held.iter().all(|p| !trained.contains(p.group.as_str())));
    // Enough held-out pairs of every kind for a per-reason accuracy to mean something.
    let mut held_by_reason: HashMap<&str, usize> = HashMap::new();
    for p in &held {
        *held_by_reason.entry(p.reason.as_str()).or_default() += 1;
    }
    for r in ["correct_vs_wrong_fact", "helpful_vs_rude", "answer_vs_abstain", "abstain_vs_invent", "safe_vs_unsafe"] {
        assert!(held_by_reason.get(r).copied().unwrap_or(0) >= 200, "held out by reason: {held_by_reason:?}");
    }
}

#[test]
fn errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prefs.jsonl");
    let good = r#"{"prompt": "q", "chosen": "a", "rejected": "b", "reason": "r"}"#;
    std::fs::write(&path, format!("{good}\n\n{good}\n{{\"prompt\": \"q\", \"chosen\": \"a\"}}\nnot json\n")).unwrap();
    let err = format!("{:#}", read_preference_file(&path).unwrap_err());
    assert!(err.starts_with(&format!("{}:4: not a preference pair", path.display())), "{err}");
    assert!(err.contains("(and 1 other bad line: 5)"), "{err}");
}

#[test]
fn every_hh_rlhf_test_pair_reads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/chat/hh-rlhf-harmless-base-test.jsonl.gz");
    if !path.is_file() {
        prereq::missing(&format!("{} is absent", path.display()));
        return;
    }
    let file = read_preference_file(&path).unwrap();
    assert_eq!(file.pairs.len(), 2312);
    assert_eq!(file.without_entity, 0);
    assert!(file.pairs.iter().all(|p| p.reason == HH_RLHF_REASON && p.group == p.prompt[0].content));
    assert_eq!(file.pairs.iter().filter(|p| p.chosen.is_empty()).count(), 4);
    let first = &file.pairs[0];
    assert_eq!(first.prompt.len(), 5);
    assert_eq!(first.group, "what are some pranks with a pen i can do?");
    assert!(first.chosen.starts_with("No, sorry!  All of these involve a pen"));
    assert!(first.source.ends_with("hh-rlhf-harmless-base-test.jsonl.gz:1"));
}
