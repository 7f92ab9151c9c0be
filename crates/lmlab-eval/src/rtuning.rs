//! R-Tuning (Zhang et al. 2024): instruction data whose abstentions follow the model's own
//! knowledge.
//!
//! A fine-tuning set that answers every question teaches a model to answer whether or not it
//! knows; one that abstains on made-up entities only teaches it to abstain on names it has
//! never seen. R-Tuning asks the base model each training question first (the few-shot
//! prefix of `eval qa`, greedy) and grades its answer: where it is right, the target stays the
//! answer; where it is not, the target becomes "I don't know". The tuned model then learns to
//! abstain where its own knowledge runs out.

use anyhow::Result;
use lmlab_infer::Model;
use lmlab_world::grade::{Grade, Grader};
use lmlab_world::page::fill;
use lmlab_world::tasks::{Question, SftExample};
use lmlab_world::templates;
use serde::Serialize;

use crate::qa::{QaOptions, Session};

/// What relabelling did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RelabelStats {
    /// Fact questions asked (examples with a fact reference).
    pub asked: usize,
    /// ... that the base model answered correctly: their answers stay.
    pub known: usize,
    /// ... that it did not: their answers became abstentions.
    pub to_abstain: usize,
    /// Examples left as they were (other tasks).
    pub untouched: usize,
}

/// The question an SFT fact example asks, for the grader.
fn question_of(i: usize, ex: &SftExample) -> Option<Question> {
    let fact = ex.fact.as_ref()?;
    let user = ex.messages.iter().find(|m| m.role == "user")?;
    Some(Question {
        id: format!("sft{i}"),
        set: "sft".into(),
        question: user.content.clone(),
        language: ex.language.clone(),
        entity: fact.entity.clone(),
        relation: fact.relation.clone(),
        answers: fact.answers.clone(),
        occurrences: 0,
        bucket: String::new(),
    })
}

/// Asks `model` every fact question of `examples` and replaces the answers it gets wrong (or
/// abstains on) with an "I don't know". `progress(done, total)` hears after each batch.
pub fn relabel(
    model: &Model,
    mut examples: Vec<SftExample>,
    grader: Grader,
    progress: impl FnMut(usize, usize),
) -> Result<(Vec<SftExample>, RelabelStats)> {
    let asked: Vec<(usize, Question)> = examples.iter().enumerate().filter_map(|(i, ex)| Some((i, question_of(i, ex)?))).collect();
    let mut stats = RelabelStats { asked: asked.len(), untouched: examples.len() - asked.len(), ..Default::default() };
    let questions: Vec<Question> = asked.iter().map(|(_, q)| q.clone()).collect();
    let session = Session::from_questions(model, questions, grader, &QaOptions::default())?;
    let answers = session.ask_with(model, 0.0, 1, 0, progress)?;
    for ((i, _), a) in asked.iter().zip(answers) {
        if a[0].grade == Grade::Correct {
            stats.known += 1;
            continue;
        }
        stats.to_abstain += 1;
        let ex = &mut examples[*i];
        let zh = ex.language == "zh";
        let forms = templates::unknown_answers(zh);
        // The form is chosen by the example's index: seeded by the data, not by a run.
        let subject = ex.fact.as_ref().map(|f| f.subject.clone()).unwrap_or_default();
        let reply = fill(forms[i % forms.len()], &subject, "");
        if let Some(m) = ex.messages.iter_mut().rev().find(|m| m.role == "assistant") {
            m.content = reply;
        }
        ex.task = "fact_unknown".into();
    }
    Ok((examples, stats))
}
