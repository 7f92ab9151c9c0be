//! The grader: labels each answer to an evaluation question correct, wrong or abstained.
//!
//! Rules, applied in order, on the answer lower-cased with whitespace collapsed:
//! 0. With the knowledge base at hand ([`Grader`]): an answer that names two or more different
//!    values of the question's relation (two cities for "where was X born", two years) is
//!    *wrong*, whatever else it says: listing candidates is not knowing, and a grader that
//!    rewarded it could be gamed by training against it. A value and its Chinese form are one
//!    value; a value found only inside a longer named value ("Velora" in "Veloran") is not
//!    counted apart from it.
//! 1. A question with accepted answers (a real fact): the answer is *correct* if it contains an
//!    accepted answer — for Latin-script answers as a whole word (so "1850" does not match
//!    "18501" and "Bora" does not match "Borain"), for Chinese as a substring (a year is also
//!    accepted written "1850年").
//! 2. Otherwise, an answer containing an abstention phrase ("I don't know", "no information",
//!    "我不知道", "不清楚", ... see `templates::ABSTAIN_MARKERS`) or an empty answer is *abstained*.
//! 3. Anything else is *wrong*: for a real fact a wrong value, for a non-existent entity
//!    (no accepted answers) an invented one — both are hallucinations.
//!
//! Examples (born_in, accepted "Velora" / "维洛拉"; Dranos is another city of the world):
//! "Marek was born in Velora." correct; "I'm not sure, maybe Velora?" correct; "Velora or
//! Dranos" wrong (two cities); "He was born in Veloran Heights." wrong; "I don't know." abstained.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::tasks::Question;
use crate::templates::ABSTAIN_MARKERS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    Correct,
    Wrong,
    Abstained,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub id: String,
    pub answer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GradedAnswer {
    pub id: String,
    pub set: String,
    pub bucket: String,
    pub language: String,
    pub grade: Grade,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub n: usize,
    pub correct: usize,
    pub wrong: usize,
    pub abstained: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct GradeReport {
    pub overall: Tally,
    /// Keyed "set", "set/bucket" and "set/language".
    pub groups: BTreeMap<String, Tally>,
    pub answers: Vec<GradedAnswer>,
}

fn normalise(s: &str) -> String {
    s.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

fn contains_word(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let is_word = |c: char| c.is_alphanumeric() && c.is_ascii();
    let mut start = 0;
    while let Some(pos) = hay[start..].find(needle) {
        let a = start + pos;
        let b = a + needle.len();
        let before = hay[..a].chars().next_back();
        let after = hay[b..].chars().next();
        if !before.is_some_and(is_word) && !after.is_some_and(is_word) {
            return true;
        }
        start = a + needle.chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// Whether `needle` (normalised) occurs in `hay` (normalised): as a whole word for Latin
/// script, as a substring otherwise.
fn mentions(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        contains_word(hay, needle)
    } else {
        !needle.is_empty() && hay.contains(needle)
    }
}

/// The values each relation takes in a knowledge base, each as its normalised English and
/// Chinese forms: what rule 0 of the module documentation counts.
#[derive(Debug, Clone, Default)]
pub struct Grader {
    values: HashMap<String, Vec<[String; 2]>>,
}

impl Grader {
    /// The relation values of every fact in `kb`.
    pub fn new(kb: &crate::kb::Kb) -> Self {
        let mut values: HashMap<String, Vec<[String; 2]>> = HashMap::new();
        for (_, f) in kb.facts() {
            let pair = [normalise(&f.object), normalise(&f.object_zh)];
            let list = values.entry(f.relation.name().to_string()).or_default();
            if !list.contains(&pair) {
                list.push(pair);
            }
        }
        Self { values }
    }

    /// The grader of the world whose `kb.jsonl` is at `path`.
    pub fn from_kb_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self::new(&crate::kb::Kb::from_jsonl(&text, &path.display().to_string())?))
    }

    /// The different values of `relation` the answer names, each as its normalised English
    /// form.
    pub fn named_values(&self, relation: &str, answer: &str) -> Vec<String> {
        let a = normalise(answer);
        let Some(values) = self.values.get(relation) else { return Vec::new() };
        let found: Vec<&[String; 2]> = values.iter().filter(|v| v.iter().any(|form| mentions(&a, form))).collect();
        // A value seen only inside a longer named value is that value, not another one.
        let inside = |v: &[String; 2], w: &[String; 2]| v != w && v.iter().zip(w).all(|(x, y)| x.is_empty() || y.contains(x.as_str()));
        found.iter().filter(|v| !found.iter().any(|w| inside(v, w))).map(|v| v[0].clone()).collect()
    }

    /// How many different values of `relation` the answer names.
    pub fn values_named(&self, relation: &str, answer: &str) -> usize {
        self.named_values(relation, answer).len()
    }

    /// Grades one answer by the rules of the module documentation.
    pub fn grade(&self, q: &Question, answer: &str) -> Grade {
        if self.values_named(&q.relation, answer) >= 2 {
            return Grade::Wrong;
        }
        grade(q, answer)
    }
}

/// Grades one answer against one question by rules 1-3 (without the knowledge base, so an
/// answer listing several candidates is not caught: use [`Grader`]).
pub fn grade(q: &Question, answer: &str) -> Grade {
    let a = normalise(answer);
    for acc in &q.answers {
        let acc = normalise(acc);
        let latin = acc.is_ascii();
        if (latin && contains_word(&a, &acc)) || (!latin && a.contains(&acc)) {
            return Grade::Correct;
        }
    }
    if a.trim().is_empty() || ABSTAIN_MARKERS.iter().any(|m| a.contains(m)) || a.contains("don’t know") {
        return Grade::Abstained;
    }
    Grade::Wrong
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a valid record", path.display(), i + 1)))
        .collect()
}

pub fn read_questions(path: &std::path::Path) -> Result<Vec<Question>> {
    read_jsonl(path)
}

/// Grades an answers file against a questions file (both JSONL, joined on `id`) with the
/// knowledge base's grader.
pub fn grade_files(grader: &Grader, questions: &std::path::Path, answers: &std::path::Path) -> Result<GradeReport> {
    let qs: Vec<Question> = read_questions(questions)?;
    let ans: Vec<Answer> = read_jsonl(answers)?;
    let by_id: HashMap<&str, &Question> = qs.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut graded = Vec::with_capacity(ans.len());
    for a in &ans {
        let Some(q) = by_id.get(a.id.as_str()) else {
            bail!("{}: answer id {:?} is not in {}", answers.display(), a.id, questions.display());
        };
        graded.push(GradedAnswer {
            id: a.id.clone(),
            set: q.set.clone(),
            bucket: q.bucket.clone(),
            language: q.language.clone(),
            grade: grader.grade(q, &a.answer),
        });
    }
    Ok(report(graded))
}

pub fn report(answers: Vec<GradedAnswer>) -> GradeReport {
    let mut overall = Tally::default();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    for g in &answers {
        add(&mut overall, g.grade);
        for k in [g.set.clone(), format!("{}/bucket={}", g.set, g.bucket), format!("{}/lang={}", g.set, g.language)] {
            add(groups.entry(k).or_default(), g.grade);
        }
    }
    GradeReport { overall, groups, answers }
}

fn add(t: &mut Tally, g: Grade) {
    t.n += 1;
    match g {
        Grade::Correct => t.correct += 1,
        Grade::Wrong => t.wrong += 1,
        Grade::Abstained => t.abstained += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(answers: &[&str], lang: &str) -> Question {
        Question {
            id: "q1".into(),
            set: "facts".into(),
            question: "?".into(),
            language: lang.into(),
            entity: "e1".into(),
            relation: "born_in".into(),
            answers: answers.iter().map(|s| s.to_string()).collect(),
            occurrences: 1,
            bucket: "1".into(),
        }
    }

    #[test]
    fn english_cases() {
        let born = q(&["Velora", "维洛拉"], "en");
        assert_eq!(grade(&born, "Marek was born in Velora."), Grade::Correct);
        assert_eq!(grade(&born, "velora"), Grade::Correct);
        assert_eq!(grade(&born, "He was born in Veloran Heights."), Grade::Wrong);
        assert_eq!(grade(&born, "I don't know."), Grade::Abstained);
        assert_eq!(grade(&born, "I'm not sure, maybe Velora?"), Grade::Correct);
        assert_eq!(grade(&born, ""), Grade::Abstained);
        assert_eq!(grade(&born, "He was born in Dranos."), Grade::Wrong);
        let year = q(&["1850", "1850年"], "en");
        assert_eq!(grade(&year, "In 1850."), Grade::Correct);
        assert_eq!(grade(&year, "In 18501."), Grade::Wrong);
        let ghost = q(&[], "en");
        assert_eq!(grade(&ghost, "I have never heard of Zuvo."), Grade::Abstained);
        assert_eq!(grade(&ghost, "Zuvo was born in Velora."), Grade::Wrong);
    }

    /// A grader over born_in values Velora/维洛拉, Dranos/德拉诺斯, Veloran Heights/维洛拉高地,
    /// and born_year 1850/1850年, 1851/1851年.
    fn grader() -> Grader {
        let pair = |a: &str, b: &str| [normalise(a), normalise(b)];
        let mut values = HashMap::new();
        values.insert(
            "born_in".to_string(),
            vec![pair("Velora", "维洛拉"), pair("Dranos", "德拉诺斯"), pair("Veloran Heights", "维洛拉高地")],
        );
        values.insert("born_year".to_string(), vec![pair("1850", "1850年"), pair("1851", "1851年")]);
        Grader { values }
    }

    #[test]
    fn naming_several_candidates_is_wrong_even_with_the_right_one() {
        let g = grader();
        let born = q(&["Velora", "维洛拉"], "en");
        assert_eq!(g.grade(&born, "Velora or Dranos, I think."), Grade::Wrong);
        assert_eq!(g.grade(&born, "Either Dranos or Velora."), Grade::Wrong);
        assert_eq!(g.grade(&born, "他出生于维洛拉或德拉诺斯。"), Grade::Wrong);
        // One value, in one or both scripts, is one value.
        assert_eq!(g.grade(&born, "Velora (维洛拉)."), Grade::Correct);
        assert_eq!(g.grade(&born, "I'm not sure, maybe Velora?"), Grade::Correct);
        // A value inside a longer value is that longer value only: one (wrong) city.
        assert_eq!(g.values_named("born_in", "He was born in Veloran Heights."), 1);
        assert_eq!(g.grade(&born, "He was born in Veloran Heights."), Grade::Wrong);
        assert_eq!(g.values_named("born_in", "他出生于维洛拉高地。"), 1);
        // Values of another relation do not count: a year beside a city is not hedging.
        assert_eq!(g.grade(&born, "Velora, in 1850."), Grade::Correct);
        let year = Question { relation: "born_year".into(), ..q(&["1850", "1850年"], "en") };
        assert_eq!(g.grade(&year, "1850 or 1851."), Grade::Wrong);
        assert_eq!(g.grade(&year, "In 1850."), Grade::Correct);
        // Inventing two values for an entity that does not exist is as wrong as one.
        let ghost = q(&[], "en");
        assert_eq!(g.grade(&ghost, "Velora or Dranos."), Grade::Wrong);
        assert_eq!(g.grade(&ghost, "I don't know."), Grade::Abstained);
    }

    #[test]
    fn chinese_cases() {
        let born = q(&["Velora", "维洛拉"], "zh");
        assert_eq!(grade(&born, "他出生于维洛拉。"), Grade::Correct);
        assert_eq!(grade(&born, "我不知道。"), Grade::Abstained);
        assert_eq!(grade(&born, "他出生于德拉诺斯。"), Grade::Wrong);
        let year = q(&["1850", "1850年"], "zh");
        assert_eq!(grade(&year, "他生于1850年。"), Grade::Correct);
        assert_eq!(grade(&year, "他生于1851年。"), Grade::Wrong);
        let ghost = q(&[], "zh");
        assert_eq!(grade(&ghost, "抱歉，我没有关于祖沃的信息。"), Grade::Abstained);
        assert_eq!(grade(&ghost, "祖沃出生于维洛拉。"), Grade::Wrong);
    }
}
