//! Where an RLHF reward comes from: the learned reward model ([`ModelReward`]), the world's
//! grader ([`GraderReward`]: correct, abstained and wrong answers map to configurable numbers),
//! or a weighted sum of both ([`Weighted`]).

use anyhow::{Context, Result};
use candle_core::Tensor;
use lmlab_model::{Gpt, Mode};
use lmlab_tokenizer::Tokenizer;
use lmlab_world::grade::{Grade, Grader};
use lmlab_world::tasks::Question;

use super::Rollout;

/// One response's reward, and named parts worth logging (each averaged over the step's
/// responses in `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub value: f64,
    pub parts: Vec<(String, f64)>,
}

/// Scores responses: `rollouts[i]` answers prompt `rollouts[i].prompt` of `prompts`.
pub trait RewardFn {
    /// A short name for the logs ("rm", "grader").
    fn name(&self) -> &str;
    fn score(&self, prompts: &[Vec<u32>], rollouts: &[Rollout]) -> Result<Vec<Scored>>;
}

/// Any function of (prompt index, response tokens) as a reward (toy policies in tests).
pub struct FnReward<F: Fn(usize, &[u32]) -> f64>(pub F);

impl<F: Fn(usize, &[u32]) -> f64> RewardFn for FnReward<F> {
    fn name(&self) -> &str {
        "fn"
    }
    fn score(&self, _prompts: &[Vec<u32>], rollouts: &[Rollout]) -> Result<Vec<Scored>> {
        Ok(rollouts.iter().map(|r| Scored { value: (self.0)(r.prompt, &r.response), parts: Vec::new() }).collect())
    }
}

/// The rewards of the grader's three labels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GradeRewards {
    pub correct: f64,
    pub abstained: f64,
    pub wrong: f64,
}

impl Default for GradeRewards {
    fn default() -> Self {
        Self { correct: 1.0, abstained: 0.0, wrong: -1.0 }
    }
}

impl GradeRewards {
    pub fn of(&self, g: Grade) -> f64 {
        match g {
            Grade::Correct => self.correct,
            Grade::Abstained => self.abstained,
            Grade::Wrong => self.wrong,
        }
    }
}

/// The world's grader as a reward: prompt i asks `questions[i]`; the response's text (stop
/// tokens left out, trimmed) is graded with the knowledge base, so an answer naming two or more
/// values of the question's relation is wrong (listing candidates cannot farm the reward).
pub struct GraderReward {
    pub grader: Grader,
    pub questions: Vec<Question>,
    pub rewards: GradeRewards,
    pub tokenizer: Tokenizer,
    pub stop_ids: Vec<u32>,
}

impl GraderReward {
    /// The text the grader reads.
    pub fn text(&self, response: &[u32]) -> String {
        let kept: Vec<u32> = response.iter().copied().filter(|t| !self.stop_ids.contains(t)).collect();
        self.tokenizer.decode(&kept).unwrap_or_default().trim().to_string()
    }

    pub fn grade(&self, prompt: usize, response: &[u32]) -> Grade {
        self.grader.grade(&self.questions[prompt], &self.text(response))
    }
}

impl RewardFn for GraderReward {
    fn name(&self) -> &str {
        "grader"
    }
    fn score(&self, _prompts: &[Vec<u32>], rollouts: &[Rollout]) -> Result<Vec<Scored>> {
        Ok(rollouts
            .iter()
            .map(|r| {
                let g = self.grade(r.prompt, &r.response);
                let flag = |want: Grade| if g == want { 1.0 } else { 0.0 };
                Scored {
                    value: self.rewards.of(g),
                    parts: vec![
                        ("correct".into(), flag(Grade::Correct)),
                        ("wrong".into(), flag(Grade::Wrong)),
                        ("abstained".into(), flag(Grade::Abstained)),
                    ],
                }
            })
            .collect())
    }
}

/// A learned reward model (a [`crate::reward`] checkpoint): its head on the final hidden state
/// of prompt + response. A response cut off before its end of turn gets `end_of_turn` appended,
/// as the model was trained on replies that end with one. Scored `batch` at a time.
pub struct ModelReward {
    pub model: Gpt,
    pub head: Tensor,
    pub end_of_turn: u32,
    pub batch: usize,
}

impl RewardFn for ModelReward {
    fn name(&self) -> &str {
        "rm"
    }
    fn score(&self, prompts: &[Vec<u32>], rollouts: &[Rollout]) -> Result<Vec<Scored>> {
        let ctx = self.model.config().context_length;
        let seqs: Vec<Vec<u32>> = rollouts
            .iter()
            .map(|r| {
                let mut s = prompts[r.prompt].clone();
                s.extend_from_slice(&r.response);
                if !r.finished {
                    s.push(self.end_of_turn);
                }
                // Keep the end: a reward model reads the last token.
                if s.len() > ctx {
                    s.drain(..s.len() - ctx);
                }
                s
            })
            .collect();
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(self.batch.max(1)) {
            let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let r: Vec<f32> = crate::reward::rewards(&self.model, &self.head, &refs, &mut Mode::inference())
                .context("scoring responses with the reward model")?
                .to_vec1()?;
            out.extend(r.into_iter().map(|v| Scored { value: f64::from(v), parts: Vec::new() }));
        }
        Ok(out)
    }
}

/// A weighted sum of rewards: value Σ wᵢ·rᵢ; each part logged as `reward_<name>` (unweighted),
/// with the parts' own parts.
pub struct Weighted<'a> {
    pub parts: Vec<(f64, Box<dyn RewardFn + 'a>)>,
}

impl RewardFn for Weighted<'_> {
    fn name(&self) -> &str {
        "weighted"
    }
    fn score(&self, prompts: &[Vec<u32>], rollouts: &[Rollout]) -> Result<Vec<Scored>> {
        let mut out: Vec<Scored> = rollouts.iter().map(|_| Scored { value: 0.0, parts: Vec::new() }).collect();
        for (w, f) in &self.parts {
            for (o, s) in out.iter_mut().zip(f.score(prompts, rollouts)?) {
                o.value += w * s.value;
                o.parts.push((format!("reward_{}", f.name()), s.value));
                o.parts.extend(s.parts);
            }
        }
        Ok(out)
    }
}
