//! The grader: labels each answer to an evaluation question correct, wrong or abstained.
//!
//! Rules, applied in order, on the answer lower-cased with whitespace collapsed:
//! 1. A question with accepted answers (a real fact): the answer is *correct* if it contains an
//!    accepted answer — for Latin-script answers as a whole word (so "1850" does not match
//!    "18501" and "Bora" does not match "Borain"), for Chinese as a substring (a year is also
//!    accepted written "1850年"). Containing the right value wins even beside hedging.
//! 2. Otherwise, an answer containing an abstention phrase ("I don't know", "no information",
//!    "我不知道", "不清楚", ... see `templates::ABSTAIN_MARKERS`) or an empty answer is *abstained*.
//! 3. Anything else is *wrong*: for a real fact a wrong value, for a non-existent entity
//!    (no accepted answers) an invented one — both are hallucinations.

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

/// Grades one answer against one question.
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

/// Grades an answers file against a questions file (both JSONL, joined on `id`).
pub fn grade_files(questions: &std::path::Path, answers: &std::path::Path) -> Result<GradeReport> {
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
            grade: grade(q, &a.answer),
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
