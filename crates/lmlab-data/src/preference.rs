//! Preference pairs for reward models and DPO: a prompt (one or more turns), the reply people
//! preferred, the one they rejected, why, and the group a held-out split keeps together.
//!
//! Two record shapes are read, detected per record from its keys:
//!
//! - **the built-in world's `preferences.jsonl`**: `{"prompt", "chosen", "rejected", "reason",
//!   "language", "entity"}`. The prompt is one user turn; the group is the entity the pair is
//!   about, so that no held-out pair asks about an entity a training pair taught. A world written
//!   before pairs named their entity groups by the prompt instead, and
//!   [`PreferenceFile::without_entity`] counts those records so the caller can say so.
//! - **Anthropic hh-rlhf**: `{"chosen", "rejected"}`, two transcripts read with
//!   [`parse_hh_transcript`]. The prompt is every turn before the last reply, which both
//!   transcripts must share; the reason is `hh-rlhf`; the group is the first human turn.
//!
//! Files are JSON Lines or one JSON array, plain or compressed, as in [`crate::chat`], and as
//! there one bad record fails the file with its place and what is wrong. A pair whose two
//! replies are the same is an error: it teaches nothing and its "accuracy" is undefined.
//!
//! [`split_by_group`] holds out whole groups. What this module does not do: tokenize, render
//! with a chat template, or decide how pairs are batched (lmlab-train's `pairs` module does).
//! It lives here, beside `chat`, because reading published data shapes is this crate's job and
//! the two readers share the file handling and the error reporting.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::chat::{bad_records_error, for_each_record, kind_of, optional_text, parse_hh_transcript, required_text, Message, Place};

/// The reason hh-rlhf pairs are given (the dataset records none).
pub const HH_RLHF_REASON: &str = "hh-rlhf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferencePair {
    /// The conversation before the reply: user turns, and earlier assistant turns in hh-rlhf.
    pub prompt: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
    /// Why `chosen` is better (the world's kinds: correct_vs_wrong_fact, helpful_vs_rude, answer_vs_abstain,
    /// abstain_vs_invent, safe_vs_unsafe; `hh-rlhf` for hh-rlhf pairs). Accuracy is reported per
    /// reason.
    pub reason: String,
    /// What a held-out split keeps on one side: the world's entity, else the first user turn.
    pub group: String,
    /// "FILE:LINE" (or "FILE:record N" in a JSON array), for error messages.
    pub source: String,
}

/// The record shapes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreferenceFormat {
    World,
    HhRlhf,
}

/// A file's pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceFile {
    pub pairs: Vec<PreferencePair>,
    /// World records without an `entity` (grouped by their prompt instead).
    pub without_entity: usize,
}

/// Reads every record of a preference file. Any bad record fails the file; the error names the
/// first ("FILE:LINE: what") and counts the rest.
pub fn read_preference_file(path: &Path) -> Result<PreferenceFile> {
    let file = path.display().to_string();
    let mut out = PreferenceFile { pairs: Vec::new(), without_entity: 0 };
    let mut bad: Vec<(Place, String)> = Vec::new();
    let mut records = 0;
    for_each_record(path, |place, record| {
        records += 1;
        match record.and_then(|value| parse_preference(&value)) {
            Ok((format, mut pair)) => {
                out.without_entity += usize::from(format == PreferenceFormat::World && pair.group.is_empty());
                if pair.group.is_empty() {
                    pair.group = first_user_turn(&pair.prompt).to_string();
                }
                pair.source = format!("{file}:{place}");
                out.pairs.push(pair);
            }
            Err(message) => bad.push((place, message)),
        }
    })?;
    if let Some(error) = bad_records_error(&file, &bad) {
        return Err(error);
    }
    if records == 0 {
        bail!("{file}: no records (the file is empty or has only blank lines)");
    }
    Ok(out)
}

/// The pairs of several files, in order.
pub fn read_preferences(paths: &[impl AsRef<Path>]) -> Result<PreferenceFile> {
    let mut all = PreferenceFile { pairs: Vec::new(), without_entity: 0 };
    for path in paths {
        let file = read_preference_file(path.as_ref())?;
        all.pairs.extend(file.pairs);
        all.without_entity += file.without_entity;
    }
    Ok(all)
}

/// One record's shape and pair. The pair's `source` is empty (the record knows no file), and so
/// is its `group` when a world record names no entity.
pub fn parse_preference(value: &Value) -> Result<(PreferenceFormat, PreferencePair), String> {
    let record = value.as_object().ok_or_else(|| format!("a record must be a JSON object, not {}", kind_of(value)))?;
    let has = |key: &str| record.contains_key(key);
    let (format, pair) = if has("prompt") && has("chosen") && has("rejected") {
        (PreferenceFormat::World, world_pair(record)?)
    } else if has("chosen") && has("rejected") {
        (PreferenceFormat::HhRlhf, hh_pair(record)?)
    } else {
        let keys: Vec<String> = record.keys().map(|k| format!("\"{k}\"")).collect();
        let keys = if keys.is_empty() { "none".to_string() } else { keys.join(", ") };
        return Err(format!(
            "not a preference pair: its keys are {keys}; accepted: \"prompt\" + \"chosen\" + \"rejected\" + \"reason\" (the built-in world), \"chosen\" + \"rejected\" transcripts (hh-rlhf)"
        ));
    };
    if pair.chosen == pair.rejected {
        return Err("\"chosen\" and \"rejected\" are the same reply".to_string());
    }
    Ok((format, pair))
}

fn world_pair(record: &Map<String, Value>) -> Result<PreferencePair, String> {
    Ok(PreferencePair {
        prompt: vec![Message::new("user", required_text(record, "", "prompt")?)],
        chosen: required_text(record, "", "chosen")?.to_string(),
        rejected: required_text(record, "", "rejected")?.to_string(),
        reason: required_text(record, "", "reason")?.to_string(),
        group: optional_text(record, "", "entity")?.unwrap_or_default().to_string(),
        source: String::new(),
    })
}

fn hh_pair(record: &Map<String, Value>) -> Result<PreferencePair, String> {
    let transcript = |key: &str| -> Result<Vec<Message>, String> {
        let text = optional_text(record, "", key)?.ok_or_else(|| format!("\"{key}\" is null"))?;
        parse_hh_transcript(text).map_err(|e| format!("\"{key}\": {e}"))
    };
    let (mut chosen, mut rejected) = (transcript("chosen")?, transcript("rejected")?);
    let (c, r) = (chosen.pop().expect("a transcript ends with a reply"), rejected.pop().expect("a transcript ends with a reply"));
    if chosen != rejected {
        let turn = chosen.iter().zip(&rejected).position(|(a, b)| a != b).unwrap_or(chosen.len().min(rejected.len()));
        return Err(format!(
            "the \"chosen\" and \"rejected\" transcripts differ before their last reply (from turn {}), so they answer different prompts",
            turn + 1
        ));
    }
    let group = first_user_turn(&chosen).to_string();
    Ok(PreferencePair {
        prompt: chosen,
        chosen: c.content,
        rejected: r.content,
        reason: HH_RLHF_REASON.to_string(),
        group,
        source: String::new(),
    })
}

fn first_user_turn(prompt: &[Message]) -> &str {
    prompt.iter().find(|m| m.role == "user").map_or("", |m| m.content.as_str())
}

/// Splits pairs into training and held-out sets by whole groups: the groups (in order of first
/// appearance) are shuffled with `seed`, and held out one by one until the held-out pairs reach
/// `val_fraction` of all. At least one group is held out when the fraction is above 0 and there
/// are two groups or more; at least one always trains. Both sides keep the input order.
pub fn split_by_group(pairs: Vec<PreferencePair>, val_fraction: f64, seed: u64) -> (Vec<PreferencePair>, Vec<PreferencePair>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut sizes: Vec<usize> = Vec::new();
    let group_of: Vec<usize> = pairs
        .iter()
        .map(|p| {
            let next = index.len();
            let g = *index.entry(p.group.as_str()).or_insert(next);
            if g == sizes.len() {
                sizes.push(0);
            }
            sizes[g] += 1;
            g
        })
        .collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let target = (pairs.len() as f64 * val_fraction).round() as usize;
    let mut held_groups = vec![false; sizes.len()];
    let mut held = 0;
    for &g in order.iter().take(sizes.len().saturating_sub(1)) {
        if held >= target.max(usize::from(val_fraction > 0.0)) {
            break;
        }
        held_groups[g] = true;
        held += sizes[g];
    }
    let (mut train, mut held_out) = (Vec::new(), Vec::new());
    for (pair, g) in pairs.into_iter().zip(group_of) {
        if held_groups[g] {
            held_out.push(pair);
        } else {
            train.push(pair);
        }
    }
    (train, held_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pair(group: &str) -> PreferencePair {
        PreferencePair {
            prompt: vec![Message::new("user", group)],
            chosen: "a".into(),
            rejected: "b".into(),
            reason: "r".into(),
            group: group.into(),
            source: String::new(),
        }
    }

    #[test]
    fn world_and_hh_records_parse() {
        let world = json!({"prompt": "Where is Velmora?", "chosen": "In Ostria.", "rejected": "In Dask.", "reason": "correct_vs_wrong_fact", "language": "en", "entity": "e0001"});
        let (format, p) = parse_preference(&world).unwrap();
        assert_eq!(format, PreferenceFormat::World);
        assert_eq!(
            (p.prompt, p.chosen.as_str(), p.group.as_str()),
            (vec![Message::new("user", "Where is Velmora?")], "In Ostria.", "e0001")
        );

        let hh = json!({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant: Goodbye!", "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant: Go away."});
        let (format, p) = parse_preference(&hh).unwrap();
        assert_eq!(format, PreferenceFormat::HhRlhf);
        assert_eq!(p.prompt.len(), 3);
        assert_eq!(
            (p.chosen.as_str(), p.rejected.as_str(), p.reason.as_str(), p.group.as_str()),
            ("Goodbye!", "Go away.", "hh-rlhf", "Hi")
        );
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        let err = |v: Value| parse_preference(&v).unwrap_err();
        assert!(err(json!({"prompt": "q", "chosen": "a", "rejected": "a", "reason": "r"})).contains("the same reply"));
        assert!(err(json!({"prompt": "q", "chosen": "a", "rejected": "b"})).contains("\"reason\" is missing"));
        assert!(err(json!({"messages": []})).contains("not a preference pair: its keys are \"messages\""));
        let differ = json!({"chosen": "\n\nHuman: Hi\n\nAssistant: A", "rejected": "\n\nHuman: Hello\n\nAssistant: B"});
        assert!(err(differ).contains("differ before their last reply (from turn 1)"));
        assert!(err(json!({"chosen": "\n\nHuman: Hi", "rejected": "\n\nHuman: Hi\n\nAssistant: B"}))
            .starts_with("\"chosen\": ends with a Human turn"));
    }

    #[test]
    fn split_keeps_groups_whole() {
        let pairs: Vec<PreferencePair> = (0..100).map(|i| pair(&format!("g{}", i % 17))).collect();
        let (train, held) = split_by_group(pairs.clone(), 0.2, 7);
        assert_eq!(train.len() + held.len(), 100);
        assert!(held.len() >= 20 && held.len() < 30, "{}", held.len());
        assert!(held.iter().all(|h| train.iter().all(|t| t.group != h.group)));
        assert_eq!(split_by_group(pairs.clone(), 0.2, 7), (train, held), "deterministic");
        // Nothing held out at 0; one group held out however small the fraction; one kept always.
        assert!(split_by_group(pairs.clone(), 0.0, 7).1.is_empty());
        assert_eq!(split_by_group(pairs.clone(), 1e-9, 7).1.iter().map(|p| &p.group).collect::<std::collections::HashSet<_>>().len(), 1);
        assert!(!split_by_group(pairs, 1.0, 7).0.is_empty());
    }
}
