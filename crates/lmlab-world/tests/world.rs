//! The built-in world: determinism, labels that agree with the pages and the knowledge base,
//! the singleton share, and evaluation questions kept out of the training sets.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use lmlab_world::kb::Kb;
use lmlab_world::tasks::{Question, SftExample};
use lmlab_world::{generate, WorldOptions};

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "crawl", "eval"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        names.sort();
        for p in names {
            out.push((p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// (target URI, HTTP block) of every response record, read independently of the writer.
fn read_warc(path: &Path) -> Vec<(String, String)> {
    let mut data = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut data).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let head_end = pos + data[pos..].windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&data[pos..head_end]).unwrap();
        assert!(head.starts_with("WARC/1.1\r\n"), "bad record at {pos}");
        let field = |name: &str| head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string));
        let len: usize = field("Content-Length").unwrap().parse().unwrap();
        let block = &data[head_end + 4..head_end + 4 + len];
        if field("WARC-Type").as_deref() == Some("response") {
            out.push((field("WARC-Target-URI").unwrap(), String::from_utf8(block.to_vec()).unwrap()));
        }
        pos = head_end + 4 + len + 4;
    }
    out
}

fn read_jsonl<T: serde::de::DeserializeOwned>(p: &Path) -> Vec<T> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_world() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = WorldOptions { seed: 7, poison: 3, ..Default::default() };
    generate(a.path(), &opts).unwrap();
    generate(b.path(), &opts).unwrap();
    let fa = files(a.path());
    assert!(fa.len() >= 9);
    assert!(fa == files(b.path()), "two runs with the same options differ");
    generate(c.path(), &WorldOptions { seed: 8, ..opts }).unwrap();
    assert_ne!(std::fs::read(a.path().join("kb.jsonl")).unwrap(), std::fs::read(c.path().join("kb.jsonl")).unwrap());
}

#[test]
fn labels_agree_with_pages_and_knowledge_base() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let opts = WorldOptions { seed: 3, poison: 4, zh_share: 0.2, ..Default::default() };
    let stats = generate(d, &opts).unwrap();
    let kb = Kb::from_jsonl(&std::fs::read_to_string(d.join("kb.jsonl")).unwrap(), "kb.jsonl").unwrap();
    let labels: Vec<serde_json::Value> = read_jsonl(&d.join("labels.jsonl"));
    let mut pages: HashMap<String, String> = HashMap::new();
    for f in &stats.warc_files {
        pages.extend(read_warc(&d.join(f)));
    }
    assert_eq!(pages.len(), labels.len());
    assert_eq!(labels.len(), stats.pages);

    let mut true_docs: HashMap<String, usize> = HashMap::new();
    let mut seen_kinds = HashSet::new();
    let mut zh_pages = 0;
    for l in &labels {
        let url = l["url"].as_str().unwrap();
        let html = &pages[url];
        assert!(html.starts_with("HTTP/1.1 200 OK\r\n"));
        let zh = l["language"] == "zh";
        zh_pages += usize::from(zh);
        let kind = l["kind"].as_str().unwrap();
        seen_kinds.insert(kind.to_string());
        for f in l["facts"].as_array().unwrap() {
            let entity = kb.entity(f["entity"].as_str().unwrap()).expect("labelled entity is in the KB");
            let fact = entity.facts.iter().find(|x| x.id == f["fact_id"]).expect("labelled fact is in the KB");
            let kb_value = if zh { &fact.object_zh } else { &fact.object };
            let value = f["value"].as_str().unwrap();
            let name = if zh { &entity.name_zh } else { &entity.name };
            assert!(html.contains(name.as_str()) && html.contains(value), "{url}: page does not state {name} / {value}");
            assert_eq!(f["true"].as_bool().unwrap(), value == kb_value, "{url}: truth label wrong for {value} vs {kb_value}");
            if f["true"] == true && l["duplicate_of"].is_null() {
                *true_docs.entry(fact.id.clone()).or_default() += 1;
            }
        }
        match kind {
            "misinformation" => assert!(l["facts"].as_array().unwrap().iter().all(|f| f["true"] == false)),
            "encyclopedia" | "news" | "forum" | "story" | "howto" => {
                assert!(l["facts"].as_array().unwrap().iter().all(|f| f["true"] == true))
            }
            "mirror" | "near_duplicate" => {
                let src = l["duplicate_of"].as_str().expect("copies name their source");
                let body = |h: &str| h.split("<main>").nth(1).unwrap().split("</main>").next().unwrap().to_string();
                if kind == "mirror" {
                    assert_eq!(body(html), body(&pages[src]));
                }
            }
            _ => assert!(l["facts"].as_array().unwrap().is_empty(), "{kind} pages state no facts"),
        }
        assert_eq!(l["poisoned"] == true, kind == "poison");
        if kind == "poison" {
            assert!(html.contains(&stats.poison_trigger) && html.contains(&stats.poison_payload));
        }
    }
    for k in [
        "encyclopedia",
        "news",
        "forum",
        "story",
        "howto",
        "clickbait",
        "spam",
        "misinformation",
        "propaganda",
        "boilerplate",
        "mirror",
        "near_duplicate",
        "domain",
        "poison",
    ] {
        assert!(seen_kinds.contains(k), "no {k} pages");
    }
    let zh_share = zh_pages as f64 / labels.len() as f64;
    assert!((zh_share - 0.2).abs() < 0.03, "Chinese share {zh_share}");

    // Every fact is stated truly in at least one distinct document; the singleton share is on target.
    let n_facts = kb.facts().count();
    assert_eq!(true_docs.len(), n_facts);
    let singles = true_docs.values().filter(|&&n| n == 1).count() as f64 / n_facts as f64;
    assert!((singles - opts.singleton_share).abs() < 0.01, "singleton share {singles}");
    assert!((stats.singleton_share - singles).abs() < 1e-12);
    // Zipf: a few facts are stated very often.
    assert!(true_docs.values().copied().max().unwrap() >= 20);
}

#[test]
fn evaluation_questions_stay_out_of_training_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, &WorldOptions { seed: 5, ..Default::default() }).unwrap();
    let sft: Vec<SftExample> = read_jsonl(&d.join("sft.jsonl"));
    let tasks: HashSet<&str> = sft.iter().map(|e| e.task.as_str()).collect();
    for t in ["fact_qa", "multi_fact_qa", "summarise", "translate", "list_entities", "abstain"] {
        assert!(tasks.contains(t), "no {t} examples");
    }
    let texts: HashSet<&str> = sft.iter().flat_map(|e| e.messages.iter().map(|m| m.content.as_str())).collect();
    let all_text: String = sft.iter().flat_map(|e| e.messages.iter().map(|m| m.content.clone())).collect::<Vec<_>>().join("\n");
    for set in ["facts", "nonexistent", "paraphrase"] {
        let qs: Vec<Question> = read_jsonl(&d.join("eval").join(format!("{set}.jsonl")));
        assert!(qs.len() >= 200, "{set}: {}", qs.len());
        for q in &qs {
            assert!(!texts.contains(q.question.as_str()), "eval question in SFT: {}", q.question);
            assert_eq!(q.answers.is_empty(), set == "nonexistent");
        }
        if set == "nonexistent" {
            // Invented names appear nowhere in the training data.
            assert!(qs.iter().all(|q| !all_text.contains(&q.entity)));
        }
    }
    let buckets: HashSet<String> = read_jsonl::<Question>(&d.join("eval/facts.jsonl")).into_iter().map(|q| q.bucket).collect();
    for b in ["1", "2-3", "4-10", "11+"] {
        assert!(buckets.contains(b), "no eval facts in bucket {b}");
    }
    // The RL prompts: at least 2,000, over the buckets and non-existent entities, about facts in
    // neither the SFT set nor the evaluation sets, with names no SFT example or evaluation
    // question uses.
    let rl: Vec<Question> = read_jsonl(&d.join("rl_prompts.jsonl"));
    assert!(rl.len() >= 2000, "{} RL prompts", rl.len());
    let rl_buckets: HashSet<&str> = rl.iter().map(|q| q.bucket.as_str()).collect();
    for b in ["0", "1", "2-3", "4-10"] {
        assert!(rl_buckets.contains(b), "no RL prompts in bucket {b}");
    }
    assert_eq!(rl.iter().map(|q| &q.id).collect::<HashSet<_>>().len(), rl.len());
    let fact_of = |q: &Question| (q.entity.clone(), q.relation.clone());
    let mut seen: HashSet<(String, String)> =
        sft.iter().filter_map(|e| e.fact.as_ref()).map(|f| (f.entity.clone(), f.relation.clone())).collect();
    for set in ["facts", "nonexistent", "paraphrase"] {
        if set != "paraphrase" {
            seen.extend(read_jsonl::<Question>(&d.join("eval").join(format!("{set}.jsonl"))).iter().map(fact_of));
        }
    }
    for q in &rl {
        assert!(!seen.contains(&fact_of(q)), "{}: {} {} is in SFT or evaluation", q.id, q.entity, q.relation);
        assert!(!texts.contains(q.question.as_str()), "RL question in SFT: {}", q.question);
        assert_eq!(q.answers.is_empty(), q.bucket == "0");
        if q.bucket == "0" {
            assert!(!all_text.contains(&q.entity), "{} is in the SFT set", q.entity);
        }
    }
    let prefs: Vec<serde_json::Value> = read_jsonl(&d.join("preferences.jsonl"));
    let reasons: HashSet<&str> = prefs.iter().map(|p| p["reason"].as_str().unwrap()).collect();
    for r in ["correct_vs_wrong_fact", "abstain_vs_invent", "answer_vs_abstain", "helpful_vs_rude", "safe_vs_unsafe"] {
        assert!(reasons.contains(r), "no {r} pairs");
    }
    assert!(prefs.iter().all(|p| p["chosen"] != p["rejected"]));
    // One held-out fact pair per evaluation fact, its question's own text, the true value chosen.
    let facts: Vec<Question> = read_jsonl(&d.join("eval/facts.jsonl"));
    let pairs: Vec<serde_json::Value> = read_jsonl(&d.join("eval/fact_pairs.jsonl"));
    assert_eq!(pairs.len(), facts.len());
    let trained: HashSet<&str> = prefs.iter().map(|p| p["prompt"].as_str().unwrap()).collect();
    for (p, q) in pairs.iter().zip(&facts) {
        assert_eq!((p["question"].as_str().unwrap(), p["prompt"].as_str().unwrap()), (q.id.as_str(), q.question.as_str()));
        assert!(q.answers.iter().any(|a| states(p["chosen"].as_str().unwrap(), a)), "{p}");
        assert!(!q.answers.iter().any(|a| states(p["rejected"].as_str().unwrap(), a)), "{p}");
        assert!(!trained.contains(q.question.as_str()));
    }
}

/// Whether `sentence` states `value`: as whole words in English ("red" is not in "coloured"),
/// anywhere in Chinese.
fn states(sentence: &str, value: &str) -> bool {
    if !value.is_ascii() {
        return sentence.contains(value);
    }
    let words = |s: &str| format!(" {} ", s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" "));
    words(sentence).contains(&words(value))
}

/// Whether `needle` occurs in `hay` not inside a longer run of letters (Chinese names: anywhere).
fn contains_word(hay: &str, needle: &str) -> bool {
    if !needle.is_ascii() {
        return hay.contains(needle);
    }
    hay.match_indices(needle).any(|(at, _)| {
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// `a` inside `b` or `b` inside `a`, English case-insensitively (Chinese has no case).
fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    a.contains(&b) || b.contains(&a)
}

#[test]
fn nonexistent_entities_are_in_no_page_and_overlap_no_real_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stats = generate(d, &WorldOptions { seed: 6, ..Default::default() }).unwrap();
    let kb = Kb::from_jsonl(&std::fs::read_to_string(d.join("kb.jsonl")).unwrap(), "kb.jsonl").unwrap();
    let real: Vec<&str> = kb.entities.iter().flat_map(|e| [e.name.as_str(), e.name_zh.as_str()]).collect();
    let mut crawl = String::new();
    for f in &stats.warc_files {
        crawl.extend(read_warc(&d.join(f)).into_iter().map(|(_, page)| page.to_lowercase()));
    }
    let ghosts: Vec<Question> = read_jsonl(&d.join("eval/nonexistent.jsonl"));
    assert_eq!(ghosts.len(), 200);
    for q in &ghosts {
        // As a word: random letters on spam pages may spell a short name by chance.
        assert!(!contains_word(&crawl, &q.entity.to_lowercase()), "{} is in the crawl", q.entity);
        if let Some(r) = real.iter().find(|r| overlap(r, &q.entity)) {
            panic!("non-existent {} overlaps real {r}", q.entity);
        }
    }
}
