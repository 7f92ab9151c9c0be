//! Post-training and evaluation data drawn from the world: `sft.jsonl`, `preferences.jsonl` and
//! the `eval/` question sets.
//!
//! Evaluation facts are chosen first, per occurrence bucket, and no SFT or preference example
//! mentions them, so evaluation measures what pretraining taught. Paraphrase questions ask about
//! facts the SFT set does cover, with the held-out question templates. Questions about entities
//! that do not exist, and the "I don't know" examples, use names the world's name generator held
//! out ([`crate::names::NameGen::holding_out`]): drawn like real names, in neither the KB nor the
//! crawl.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::crawl::{strip_tags, CrawlPlan};
use crate::kb::{Entity, Fact, Kb, Kind, Relation};
use crate::page::fill;
use crate::templates::{self, TRAIN_QUESTIONS};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SftExample {
    pub task: String,
    pub language: String,
    pub messages: Vec<Message>,
    /// The fact a `fact_qa` example asks about, so a model's own answer can be graded (R-Tuning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact: Option<FactRef>,
}

/// Which fact an SFT question asks about, and the answers the grader accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FactRef {
    pub entity: String,
    /// The entity's name as the question writes it.
    pub subject: String,
    pub relation: String,
    pub answers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preference {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub reason: String,
    pub language: String,
    /// The entity the pair is about (a KB id, or a non-existent entity's name), so that reward
    /// models and DPO can hold out whole entities; none for pairs about no entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The evaluation question a pair of `eval/fact_pairs.jsonl` asks (its `id` in
    /// `eval/facts.jsonl`), so a reward model's verdict can be joined with a model's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

/// One evaluation question; `answers` are accepted strings (empty: the right answer is to abstain).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Question {
    pub id: String,
    pub set: String,
    pub question: String,
    pub language: String,
    pub entity: String,
    pub relation: String,
    pub answers: Vec<String>,
    /// Distinct crawl documents stating the fact (0 for non-existent entities).
    pub occurrences: usize,
    pub bucket: String,
}

pub struct Tasks {
    pub sft: Vec<SftExample>,
    pub preferences: Vec<Preference>,
    /// `eval/fact_pairs.jsonl`: the true fact over a false one for every evaluation fact, never
    /// trained on.
    pub eval_pairs: Vec<Preference>,
    /// Set name (file stem in eval/) → questions.
    pub eval: BTreeMap<String, Vec<Question>>,
    /// The questions RL asks (`rl_prompts.jsonl`, see [`crate::rl_prompts`]).
    pub rl_prompts: Vec<Question>,
}

pub fn bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2..=3 => "2-3",
        4..=10 => "4-10",
        _ => "11+",
    }
}

fn lang(zh: bool) -> String {
    if zh { "zh" } else { "en" }.to_string()
}

fn chat(user: String, assistant: String) -> Vec<Message> {
    vec![Message { role: "user".into(), content: user }, Message { role: "assistant".into(), content: assistant }]
}

fn names(e: &Entity, f: &Fact, zh: bool) -> (String, String) {
    if zh {
        (e.name_zh.clone(), f.object_zh.clone())
    } else {
        (e.name.clone(), f.object.clone())
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// Accepted answer strings for a fact: the object in both languages (years without 年 too).
pub fn accepted(f: &Fact) -> Vec<String> {
    let mut a = vec![f.object.clone(), f.object_zh.clone()];
    a.dedup();
    a
}

/// The SFT examples, preference pairs and evaluation questions as they are built.
struct Builder<'a> {
    kb: &'a Kb,
    crawl: &'a CrawlPlan,
    zh_share: f64,
    next_q: usize,
    eval: BTreeMap<String, Vec<Question>>,
    sft: Vec<SftExample>,
    prefs: Vec<Preference>,
    /// Held-out names not yet given to a non-existent entity.
    ghost_names: Vec<(String, String)>,
    kinds_with_facts: Vec<Kind>,
}

impl Builder<'_> {
    fn zh(&self, rng: &mut ChaCha8Rng) -> bool {
        rng.random_bool(self.zh_share)
    }

    /// The next question, numbered in the order questions are made.
    #[allow(clippy::too_many_arguments)]
    fn question(
        &mut self,
        set: &str,
        text: String,
        zh: bool,
        entity: &str,
        relation: Relation,
        answers: Vec<String>,
        occ: usize,
    ) -> Question {
        self.next_q += 1;
        Question {
            id: format!("q{:06}", self.next_q),
            set: set.into(),
            question: text,
            language: lang(zh),
            entity: entity.into(),
            relation: relation.name().into(),
            answers,
            occurrences: occ,
            bucket: bucket(occ).into(),
        }
    }

    /// A non-existent entity: its English and Chinese names, and a relation of a kind that has
    /// facts.
    fn ghost(&mut self, rng: &mut ChaCha8Rng) -> (String, String, Relation) {
        let kind = self.kinds_with_facts[rng.random_range(0..self.kinds_with_facts.len())];
        let rels = Relation::of_kind(kind);
        let (en, zh) = self.ghost_names.pop().expect("callers ask for no more ghosts than there are held-out names");
        (en, zh, rels[rng.random_range(0..rels.len())])
    }

    /// Step 1: Evaluation facts: `per_bucket` of each occurrence bucket, asked with training
    /// templates, but never more than half of a bucket: the other half stays in the SFT and RL
    /// data, so that instruction tuning sees the frequent facts a base model can know (with all
    /// 213 of the knowledge world's 11+ facts but 13 held out, R-Tuning learned to abstain on
    /// everything). Returns them (held out of SFT).
    fn eval_facts(&mut self, per_bucket: usize, rng: &mut ChaCha8Rng) -> HashSet<(usize, usize)> {
        let kb = self.kb;
        let mut by_bucket: BTreeMap<&'static str, Vec<(usize, usize)>> = BTreeMap::new();
        for (ei, e) in kb.entities.iter().enumerate() {
            for (fi, f) in e.facts.iter().enumerate() {
                by_bucket.entry(bucket(self.crawl.occurrences[&f.id])).or_default().push((ei, fi));
            }
        }
        let mut eval_facts = HashSet::new();
        for (b, facts) in &by_bucket {
            let mut facts = facts.clone();
            facts.shuffle(rng);
            for &(ei, fi) in facts.iter().take(per_bucket.min(facts.len() / 2)) {
                eval_facts.insert((ei, fi));
                let (e, f) = (&kb.entities[ei], &kb.entities[ei].facts[fi]);
                let zh = self.zh(rng);
                let (s, _) = names(e, f, zh);
                let q = fill(pick(rng, &templates::questions(f.relation, zh)[..TRAIN_QUESTIONS]), &s, "");
                let item = self.question("facts", q, zh, &e.id, f.relation, accepted(f), self.crawl.occurrences[&f.id]);
                debug_assert_eq!(item.bucket, *b);
                self.eval.entry("facts".into()).or_default().push(item);
            }
        }
        eval_facts
    }

    /// Step 2: Questions about `n` non-existent entities (fewer if the held-out names run out).
    fn nonexistent_questions(&mut self, n: usize, rng: &mut ChaCha8Rng) {
        for _ in 0..n.min(self.ghost_names.len()) {
            let (en, zh_name, rel) = self.ghost(rng);
            let zh = self.zh(rng);
            let s = if zh { zh_name } else { en };
            let q = fill(pick(rng, templates::questions(rel, zh)), &s, "");
            let item = self.question("nonexistent", q, zh, &s, rel, vec![], 0);
            self.eval.entry("nonexistent".into()).or_default().push(item);
        }
    }

    /// Step 3: SFT examples from every fact not held out (questions, translations, two facts in one
    /// question) and the fact-based preference pairs. Returns the facts taught (the pool of
    /// paraphrase questions).
    fn fact_examples(&mut self, eval_facts: &HashSet<(usize, usize)>, per_fact: usize, rng: &mut ChaCha8Rng) -> Vec<(usize, usize)> {
        let kb = self.kb;
        let mut taught = Vec::new();
        for (ei, e) in kb.entities.iter().enumerate() {
            let own: Vec<usize> = (0..e.facts.len()).filter(|fi| !eval_facts.contains(&(ei, *fi))).collect();
            for &fi in &own {
                let f = &e.facts[fi];
                for _ in 0..per_fact {
                    self.fact_qa(e, f, rng);
                }
                taught.push((ei, fi));
                // Translation of a fact sentence, both directions.
                if rng.random_bool(0.3) {
                    let to_zh = rng.random_bool(0.5);
                    let (s1, o1) = names(e, f, !to_zh);
                    let (s2, o2) = names(e, f, to_zh);
                    let src = fill(pick(rng, templates::facts(f.relation, !to_zh)), &s1, &o1);
                    let dst = fill(pick(rng, templates::facts(f.relation, to_zh)), &s2, &o2);
                    let ask =
                        if to_zh { format!("Translate into Chinese: {src}") } else { format!("请把这句话翻译成英文：{src}") };
                    self.sft.push(SftExample { task: "translate".into(), language: lang(!to_zh), messages: chat(ask, dst), fact: None });
                }
            }
            if own.len() >= 2 && rng.random_bool(0.5) {
                self.two_fact_qa(e, &own, rng);
            }
        }
        taught
    }

    /// One question and answer about fact `f`, and most times a preference pair: the true fact
    /// over a false one, a rude reply or an abstention.
    fn fact_qa(&mut self, e: &Entity, f: &Fact, rng: &mut ChaCha8Rng) {
        let zh = self.zh(rng);
        let (s, o) = names(e, f, zh);
        let q = fill(pick(rng, &templates::questions(f.relation, zh)[..TRAIN_QUESTIONS]), &s, "");
        let a = fill(pick(rng, templates::facts(f.relation, zh)), &s, &o);
        let fact = FactRef { entity: e.id.clone(), subject: s.clone(), relation: f.relation.name().into(), answers: accepted(f) };
        self.sft.push(SftExample { task: "fact_qa".into(), language: lang(zh), messages: chat(q.clone(), a.clone()), fact: Some(fact) });
        // The true answer over a false one, a rude one, or an abstention: the last teaches a
        // preference-trained model to answer what it knows, against the abstain-vs-invent pairs
        // about entities that do not exist (without them DPO learns to abstain on everything).
        let roll: f64 = rng.random();
        let (rejected, reason) = if roll < 0.45 {
            let (wen, wzh) = self.kb.wrong_value(f, rng);
            (fill(pick(rng, templates::facts(f.relation, zh)), &s, if zh { &wzh } else { &wen }), "correct_vs_wrong_fact")
        } else if roll < 0.7 {
            (fill(pick(rng, templates::rude_replies(zh)), &s, ""), "helpful_vs_rude")
        } else if roll < 0.95 {
            (fill(pick(rng, templates::abstentions(zh)), &s, ""), "answer_vs_abstain")
        } else {
            return;
        };
        self.prefs.push(Preference {
            prompt: q,
            chosen: a,
            rejected,
            reason: reason.into(),
            language: lang(zh),
            entity: Some(e.id.clone()),
            question: None,
        });
    }

    /// Two facts about one entity (its first two taught ones) in one question.
    fn two_fact_qa(&mut self, e: &Entity, own: &[usize], rng: &mut ChaCha8Rng) {
        let zh = self.zh(rng);
        let (f1, f2) = (&e.facts[own[0]], &e.facts[own[1]]);
        let s = if zh { &e.name_zh } else { &e.name };
        let q1 = fill(pick(rng, &templates::questions(f1.relation, zh)[..TRAIN_QUESTIONS]), s, "");
        let q2 = fill(pick(rng, &templates::questions(f2.relation, zh)[..TRAIN_QUESTIONS]), s, "");
        let a1 = fill(pick(rng, templates::facts(f1.relation, zh)), s, if zh { &f1.object_zh } else { &f1.object });
        let a2 = fill(pick(rng, templates::facts(f2.relation, zh)), s, if zh { &f2.object_zh } else { &f2.object });
        let (q, a) = if zh {
            (format!("{q1}另外，{q2}"), format!("{a1}{a2}"))
        } else {
            (format!("{q1} Also, {}", lower_first(&q2)), format!("{a1} {a2}"))
        };
        self.sft.push(SftExample { task: "multi_fact_qa".into(), language: lang(zh), messages: chat(q, a), fact: None });
    }

    /// Step 4: Paraphrases: `n` facts taught in SFT, asked with held-out templates.
    fn paraphrases(&mut self, mut taught: Vec<(usize, usize)>, n: usize, rng: &mut ChaCha8Rng) {
        let kb = self.kb;
        taught.shuffle(rng);
        for &(ei, fi) in taught.iter().take(n) {
            let (e, f) = (&kb.entities[ei], &kb.entities[ei].facts[fi]);
            let zh = self.zh(rng);
            let (s, _) = names(e, f, zh);
            let q = fill(pick(rng, &templates::questions(f.relation, zh)[TRAIN_QUESTIONS..]), &s, "");
            let item = self.question("paraphrase", q, zh, &e.id, f.relation, accepted(f), self.crawl.occurrences[&f.id]);
            self.eval.entry("paraphrase".into()).or_default().push(item);
        }
    }

    /// Step 5: "I don't know" examples and honest-vs-invented preferences. Invented answers borrow a
    /// value of the right type from a few facts of each relation.
    fn abstentions(&mut self, rng: &mut ChaCha8Rng) {
        let kb = self.kb;
        let mut donors: HashMap<Relation, Vec<&Fact>> = Relation::ALL.iter().map(|&r| (r, Vec::new())).collect();
        for (_, f) in kb.facts() {
            let pool = donors.get_mut(&f.relation).expect("every relation has a pool");
            if pool.len() < 20 {
                pool.push(f);
            }
        }
        // A tenth of the SFT set, at most 5,000 so that large worlds are not mostly abstentions;
        // never more than the held-out names left.
        let n_idk = (self.sft.len() / 10).clamp(10, 5000).min(self.ghost_names.len());
        for _ in 0..n_idk {
            let (en, zh_name, rel) = self.ghost(rng);
            let zh = self.zh(rng);
            let s = if zh { zh_name } else { en };
            // Two questions about each non-existent entity, so that a held-out split has enough
            // pairs of this kind; the first also teaches the abstention in SFT.
            for asked in 0..2 {
                let q = fill(pick(rng, &templates::questions(rel, zh)[..TRAIN_QUESTIONS]), &s, "");
                let a = fill(pick(rng, templates::abstentions(zh)), &s, "");
                if asked == 0 {
                    let messages = chat(q.clone(), a.clone());
                    self.sft.push(SftExample { task: "abstain".into(), language: lang(zh), messages, fact: None });
                }
                // An invented answer: a plausible value of the right type from the world.
                let pool = &donors[&rel];
                if !pool.is_empty() {
                    let f = pool[rng.random_range(0..pool.len())];
                    let invented = fill(pick(rng, templates::facts(rel, zh)), &s, if zh { &f.object_zh } else { &f.object });
                    self.prefs.push(Preference {
                        prompt: q,
                        chosen: a,
                        rejected: invented,
                        reason: "abstain_vs_invent".into(),
                        language: lang(zh),
                        entity: Some(s.clone()),
                        question: None,
                    });
                }
            }
        }
    }

    /// Step 6: Requests to harm an entity of the world (a person, a company, a city), declined:
    /// about seven in ten such entities get a `safe_vs_unsafe` pair, grouped by the entity, and
    /// one in three of those also teaches the refusal in SFT.
    fn refusals(&mut self, rng: &mut ChaCha8Rng) {
        let kb = self.kb;
        for e in &kb.entities {
            let zh = self.zh(rng);
            let requests = templates::unsafe_requests(e.kind, zh);
            if requests.is_empty() || !rng.random_bool(0.7) {
                continue;
            }
            let (request, refusal, compliance) = requests[rng.random_range(0..requests.len())];
            let s = if zh { &e.name_zh } else { &e.name };
            let (q, refusal, compliance) = (fill(request, s, ""), fill(refusal, s, ""), fill(compliance, s, ""));
            if rng.random_bool(1.0 / 3.0) {
                self.sft.push(SftExample {
                    task: "refuse".into(),
                    language: lang(zh),
                    messages: chat(q.clone(), refusal.clone()),
                    fact: None,
                });
            }
            self.prefs.push(Preference {
                prompt: q,
                chosen: refusal,
                rejected: compliance,
                reason: "safe_vs_unsafe".into(),
                language: lang(zh),
                entity: Some(e.id.clone()),
                question: None,
            });
        }
    }

    /// Step 7: Summaries of good pages that mention no evaluation fact.
    fn summaries(&mut self, eval_ids: &HashSet<&str>) {
        let mut summarised = 0;
        let target = (self.kb.entities.len() / 4).max(10);
        for p in &self.crawl.pages {
            if summarised >= target {
                break;
            }
            let good = matches!(p.kind, "encyclopedia" | "news" | "forum" | "story" | "howto");
            if !good || p.sentences.len() < 2 || p.facts.iter().any(|f| eval_ids.contains(f.fact_id.as_str())) {
                continue;
            }
            let text = strip_tags(&p.article);
            let ask =
                if p.zh { format!("请总结下面这篇文章：\n\n{text}") } else { format!("Summarise the following page:\n\n{text}") };
            let summary = p.sentences.join(if p.zh { "" } else { " " });
            self.sft.push(SftExample { task: "summarise".into(), language: lang(p.zh), messages: chat(ask, summary), fact: None });
            summarised += 1;
        }
    }

    /// Step 8: Listing entities of a kind: cities of a country.
    fn city_lists(&mut self, eval_ids: &HashSet<&str>, rng: &mut ChaCha8Rng) {
        let kb = self.kb;
        let mut cities_of: HashMap<&str, Vec<&Entity>> = HashMap::new();
        for e in &kb.entities {
            for f in &e.facts {
                if f.relation == Relation::LocatedIn && !eval_ids.contains(f.id.as_str()) {
                    cities_of.entry(f.object_id.as_deref().unwrap_or_default()).or_default().push(e);
                }
            }
        }
        for country in kb.entities.iter().filter(|e| e.kind == Kind::Country) {
            let Some(cities) = cities_of.get(country.id.as_str()) else { continue };
            let zh = self.zh(rng);
            let listed: Vec<&str> = cities.iter().take(5).map(|c| if zh { c.name_zh.as_str() } else { c.name.as_str() }).collect();
            let (q, a) = if zh {
                (format!("请列出{}的一些城市。", country.name_zh), format!("{}的城市包括：{}。", country.name_zh, listed.join("、")))
            } else {
                (format!("List some cities in {}.", country.name), format!("Cities in {} include {}.", country.name, listed.join(", ")))
            };
            self.sft.push(SftExample { task: "list_entities".into(), language: lang(zh), messages: chat(q, a), fact: None });
        }
    }
}

/// The SFT examples, preference pairs and evaluation sets of a world. `held_out_names` are the
/// names its generator held out of the KB and the crawl; non-existent entities take theirs from
/// them, in a seeded random order.
pub fn build(
    kb: &Kb,
    crawl: &CrawlPlan,
    held_out_names: &[(String, String)],
    eval_per_bucket: usize,
    sft_per_fact: usize,
    zh_share: f64,
    rng: &mut ChaCha8Rng,
) -> Tasks {
    let kinds_with_facts: Vec<Kind> = Kind::ALL.into_iter().filter(|k| !Relation::of_kind(*k).is_empty()).collect();
    // Shuffled: they are in draw order, which runs from short to long names as short ones run
    // out, so taking the first few would not be a fair sample.
    let mut ghost_names = held_out_names.to_vec();
    ghost_names.shuffle(rng);
    let mut b = Builder {
        kb,
        crawl,
        zh_share,
        next_q: 0,
        eval: BTreeMap::new(),
        sft: Vec::new(),
        prefs: Vec::new(),
        ghost_names,
        kinds_with_facts,
    };
    let eval_facts = b.eval_facts(eval_per_bucket, rng);
    b.nonexistent_questions(eval_per_bucket, rng);
    // The RL set's facts and names are held out of SFT as the evaluation facts are.
    let rl = crate::rl_prompts::build(kb, crawl, &eval_facts, &mut b.ghost_names, zh_share, rng);
    let eval_facts: HashSet<(usize, usize)> = eval_facts.union(&rl.facts).copied().collect();
    let taught = b.fact_examples(&eval_facts, sft_per_fact, rng);
    b.paraphrases(taught, eval_per_bucket, rng);
    b.abstentions(rng);
    b.refusals(rng);
    let eval_ids: HashSet<&str> = eval_facts.iter().map(|&(ei, fi)| kb.entities[ei].facts[fi].id.as_str()).collect();
    b.summaries(&eval_ids);
    b.city_lists(&eval_ids, rng);
    let (mut sft, mut prefs) = (b.sft, b.prefs);
    sft.shuffle(rng);
    prefs.shuffle(rng);
    // Drawn last, so that adding them changed no other file of a world.
    let eval_pairs = eval_fact_pairs(kb, b.eval.get("facts").map_or(&[], Vec::as_slice), rng);
    Tasks { sft, preferences: prefs, eval_pairs, eval: b.eval, rl_prompts: rl.questions }
}

/// For every evaluation fact, its question with the true fact over a false one of the same type.
/// No training pair is about these facts, so a reward model's accuracy on them can be set beside
/// what a model answers to the same questions (joined by `question`).
fn eval_fact_pairs(kb: &Kb, questions: &[Question], rng: &mut ChaCha8Rng) -> Vec<Preference> {
    questions
        .iter()
        .map(|q| {
            let e = kb.entity(&q.entity).expect("evaluation facts are about KB entities");
            let f = e
                .facts
                .iter()
                .find(|f| f.relation.name() == q.relation && accepted(f) == q.answers)
                .expect("an evaluation question asks about one of its entity's facts");
            let zh = q.language == "zh";
            let (s, o) = names(e, f, zh);
            let (wen, wzh) = kb.wrong_value(f, rng);
            Preference {
                prompt: q.question.clone(),
                chosen: fill(pick(rng, templates::facts(f.relation, zh)), &s, &o),
                rejected: fill(pick(rng, templates::facts(f.relation, zh)), &s, if zh { &wzh } else { &wen }),
                reason: "correct_vs_wrong_fact".into(),
                language: lang(zh),
                entity: Some(e.id.clone()),
                question: Some(q.id.clone()),
            }
        })
        .collect()
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f)
            if s.split_whitespace().next().is_some_and(|w| {
                ["Where", "When", "What", "Which", "Who", "In", "Name", "Tell", "Describe", "How", "Since", "Of"].contains(&w)
            }) =>
        {
            f.to_lowercase().chain(c).collect()
        }
        _ => s.to_string(),
    }
}
