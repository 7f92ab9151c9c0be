//! `lmlab rlhf`: PPO, GRPO or RLOO on an SFT policy's own answers to the world's RL prompts,
//! rewarded by a reward model, the world's grader, or both.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use lmlab_infer::{LoadOptions, Model};
use lmlab_model::CausalLm;
use lmlab_train::rl::math::KlController;
use lmlab_train::rl::reward::{GradeRewards, GraderReward, ModelReward, RewardFn, Weighted};
use lmlab_train::rl::{train_rl, Algo, Critic, RlRun, RlSettings};
use lmlab_world::grade::Grader;

#[derive(Args)]
pub struct RlhfArgs {
    /// The SFT model (an lmlab checkpoint): the policy starts from it and it is the frozen
    /// reference.
    #[arg(long)]
    policy: PathBuf,
    #[arg(long, value_enum, default_value = "ppo")]
    algo: AlgoArg,
    /// rm: the reward model's score (the grader's is logged beside it, weight 0, when the
    /// world's kb.jsonl is found); grader: the world's grader (correct, abstained, wrong); both:
    /// a weighted sum (--reward-weights).
    #[arg(long, value_enum, default_value = "grader")]
    reward: RewardArg,
    /// The reward model's folder (what `lmlab reward train` wrote); needed for --reward rm|both.
    #[arg(long)]
    reward_model: Option<PathBuf>,
    /// Weights of the reward model's and the grader's rewards in --reward both.
    #[arg(long, default_value = "1,1")]
    reward_weights: String,
    /// The grader's rewards for a correct, an abstained and a wrong answer.
    #[arg(long, default_value = "1,0,-1", allow_hyphen_values = true)]
    grade_rewards: String,
    /// The RL questions: the world's rl_prompts.jsonl.
    #[arg(long)]
    prompts: PathBuf,
    /// The world's kb.jsonl, for the grader (default: beside the prompts file).
    #[arg(long)]
    kb: Option<PathBuf>,
    /// Use N prompts of the file, spread evenly over it.
    #[arg(long)]
    limit: Option<usize>,
    /// Ask only the questions of these occurrence buckets, comma-separated: 1, 2-3, 4-10, 11+
    /// (how often the fact is in the crawl) and 0 (entities that do not exist). RL on facts the
    /// model cannot know teaches it to decline everything; this keeps RL to what it can learn.
    #[arg(long)]
    buckets: Option<String>,
    /// Checkpoint folder, e.g. runs/N/rlhf (metrics.jsonl goes beside it).
    #[arg(long)]
    out: PathBuf,
    /// RL steps (each: rollouts, rewards, updates).
    #[arg(long, default_value_t = 100)]
    steps: u64,
    /// Prompts per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Samples per prompt (default: 1 for PPO, 4 for GRPO and RLOO).
    #[arg(long)]
    group_size: Option<usize>,
    /// Peak learning rate (it decays to a tenth).
    #[arg(long, default_value_t = 1e-5)]
    lr: f64,
    #[arg(long, default_value_t = 24)]
    max_new_tokens: usize,
    /// Sampling temperature of the rollouts.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// β, the KL coefficient (its start, with --target-kl).
    #[arg(long, default_value_t = 0.05)]
    kl_coef: f64,
    /// Adapt β toward this KL per response (Ziegler et al. 2019); without it β is fixed.
    #[arg(long)]
    target_kl: Option<f64>,
    /// The adaptive controller's horizon in samples.
    #[arg(long, default_value_t = 10_000.0)]
    kl_horizon: f64,
    /// Stop (with a checkpoint) when a step's mean KL per response exceeds this.
    #[arg(long)]
    max_kl: Option<f64>,
    /// PPO's value estimates: a head on the policy (shared) or a separate critic initialised
    /// from the reward model (or the policy without one).
    #[arg(long, value_enum, default_value = "shared")]
    critic: CriticArg,
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    #[arg(long, default_value_t = 0.95)]
    lambda: f64,
    #[arg(long, default_value_t = 0.2)]
    clip_ratio: f64,
    #[arg(long, default_value_t = 0.2)]
    clip_value: f64,
    #[arg(long, default_value_t = 0.1)]
    vf_coef: f64,
    /// Passes over each step's rollouts (default: 4 for PPO, 1 otherwise).
    #[arg(long)]
    epochs: Option<usize>,
    /// Minibatches per pass (default: 2 for PPO, 1 otherwise).
    #[arg(long)]
    minibatches: Option<usize>,
    /// PPO: whiten each step's scores (keeping their mean).
    #[arg(long)]
    whiten_rewards: bool,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// A checkpoint every N steps.
    #[arg(long, default_value_t = 20)]
    save_every: u64,
    /// Continue from the checkpoint in --out exactly where it stopped.
    #[arg(long)]
    resume: bool,
    /// Write a checkpoint and stop after this many steps.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AlgoArg {
    Ppo,
    Grpo,
    Rloo,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum RewardArg {
    Rm,
    Grader,
    Both,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CriticArg {
    Shared,
    Separate,
}

fn numbers(s: &str, n: usize, what: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = s.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>().with_context(|| format!("{what}: {s:?}"))?;
    if v.len() != n {
        bail!("{what} takes {n} comma-separated numbers, not {s:?}");
    }
    Ok(v)
}

/// The reward model at `dir` for scoring: its network (frozen), head, and whole weights.
fn reward_model(dir: &Path, policy: &Model) -> Result<(ModelReward, std::collections::HashMap<String, candle_core::Tensor>)> {
    let dev = Device::Cpu;
    let rm = Model::load(dir, &LoadOptions { dense: true, ..Default::default() }, &dev)?;
    if rm.vocab_size() != policy.vocab_size() {
        bail!(
            "the reward model's vocabulary ({}) is not the policy's ({}): it must share its tokenizer",
            rm.vocab_size(),
            policy.vocab_size()
        );
    }
    let head = lmlab_train::reward::read_head(dir, &dev)?;
    let mut weights = rm.as_gpt().context("the reward model has no dense tensor path")?.named_weights()?;
    let model = lmlab_model::checkpoint::frozen_from_tensors(rm.config(), weights.clone(), DType::F32, &dev)?;
    let template = policy.chat_template().context("the policy has no chat template")?;
    let eot = lmlab_train::sft::end_of_turn(template);
    let end_of_turn = policy.tokenizer().token_to_id(&eot).with_context(|| format!("the tokenizer has no end-of-turn token {eot:?}"))?;
    weights.insert(lmlab_train::reward::HEAD.to_string(), head.clone());
    Ok((ModelReward { model, head, end_of_turn, batch: 16 }, weights))
}

pub fn run(a: RlhfArgs) -> Result<()> {
    let dev = Device::Cpu;
    let policy = Model::load(&a.policy, &LoadOptions { dense: true, ..Default::default() }, &dev)?;
    if policy.format() != "lmlab" {
        bail!("RLHF trains every weight and writes an lmlab checkpoint: start from an lmlab model, not a {} one", policy.format());
    }
    if policy.chat_template().is_none() {
        bail!("{} has no chat template to ask the prompts with", a.policy.display());
    }
    let mut questions = lmlab_eval::qa::read_questions(std::slice::from_ref(&a.prompts), a.limit)?;
    if let Some(list) = &a.buckets {
        let wanted = parse_buckets(list)?;
        questions.retain(|q| wanted.contains(&q.bucket.as_str()));
        if questions.is_empty() {
            bail!("{} has no questions in the buckets {list}", a.prompts.display());
        }
    }
    let prompts = questions.iter().map(|q| policy.prompt(&q.question, true, None)).collect::<Result<Vec<_>>>()?;
    let stop_ids = policy.tokenizer().special().stop_ids.clone();
    let algo = match a.algo {
        AlgoArg::Ppo => Algo::Ppo,
        AlgoArg::Grpo => Algo::Grpo,
        AlgoArg::Rloo => Algo::Rloo,
    };
    let d = RlSettings::defaults(algo);
    let settings = RlSettings {
        group_size: a.group_size.unwrap_or(d.group_size),
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        kl: match a.target_kl {
            Some(t) => KlController::adaptive(a.kl_coef, t, a.kl_horizon),
            None => KlController::fixed(a.kl_coef),
        },
        gamma: a.gamma,
        lambda: a.lambda,
        clip_ratio: a.clip_ratio,
        clip_value: a.clip_value,
        vf_coef: a.vf_coef,
        epochs: a.epochs.unwrap_or(d.epochs),
        minibatches: a.minibatches.unwrap_or(d.minibatches),
        whiten_rewards: a.whiten_rewards,
        critic: match a.critic {
            CriticArg::Shared => Critic::Shared,
            CriticArg::Separate => Critic::Separate,
        },
        max_kl: a.max_kl,
        ..d
    };

    let grade = numbers(&a.grade_rewards, 3, "--grade-rewards")?;
    let grader_reward = || -> Result<GraderReward> {
        let kb = match &a.kb {
            Some(k) => k.clone(),
            None => a.prompts.parent().map(|p| p.join("kb.jsonl")).context("no --kb and no folder around the prompts file")?,
        };
        Ok(GraderReward {
            grader: Grader::from_kb_file(&kb)?,
            questions: questions.clone(),
            rewards: GradeRewards { correct: grade[0], abstained: grade[1], wrong: grade[2] },
            tokenizer: policy.tokenizer().clone(),
            stop_ids: stop_ids.clone(),
        })
    };
    let mut critic_weights = None;
    let reward: Box<dyn RewardFn> = match a.reward {
        RewardArg::Grader => Box::new(grader_reward()?),
        RewardArg::Rm | RewardArg::Both => {
            let dir = a.reward_model.as_ref().context("--reward rm and both need --reward-model")?;
            let (rm, weights) = reward_model(dir, &policy)?;
            critic_weights = Some(weights);
            if a.reward == RewardArg::Rm {
                // The grader's score rides along with weight 0 where the world's knowledge base
                // is at hand: the true score beside the proxy (experiment overoptimisation).
                match grader_reward() {
                    Ok(g) => Box::new(Weighted { parts: vec![(1.0, Box::new(rm)), (0.0, Box::new(g))] }),
                    Err(_) => Box::new(rm),
                }
            } else {
                let w = numbers(&a.reward_weights, 2, "--reward-weights")?;
                Box::new(Weighted { parts: vec![(w[0], Box::new(rm)), (w[1], Box::new(grader_reward()?))] })
            }
        }
    };
    let gpt = policy.as_gpt().context("the policy has no dense tensor path")?;
    let train = lmlab_train::rl::train_config(a.batch_size, a.steps, a.lr, a.save_every, a.seed);
    let run = RlRun {
        model_cfg: policy.config().clone(),
        policy_weights: gpt.named_weights()?,
        critic_weights,
        prompts,
        stop_ids,
        reward: reward.as_ref(),
        settings,
        train,
        out: a.out.clone(),
        resume: a.resume,
        stop_after: a.stop_after,
        stop: crate::sft::stop_on_ctrl_c()?,
        tokenizer_json: Some(lmlab_infer::tokenizer_file(&a.policy)?),
        device: dev,
    };
    let json = a.json;
    let report = train_rl(run, |line| {
        if !json {
            let f = |k: &str| line.get(k).and_then(|v| v.as_f64()).map_or("-".to_string(), |v| format!("{v:.3}"));
            eprintln!(
                "step {:>4}  reward {}  kl {}  β {}  entropy {}  clip {}  len {}  {} tok/s",
                line["step"],
                f("reward"),
                f("kl"),
                f("kl_coef"),
                f("entropy"),
                f("clip_frac"),
                f("response_length"),
                f("tokens_per_sec")
            );
        }
    })?;
    if json {
        return crate::print_json(&report);
    }
    if report.stopped_by_kl {
        println!("stopped by --max-kl at step {}: the policy drifted too far from the reference", report.final_step);
    } else {
        println!("{} at step {}/{}", if report.interrupted { "stopped" } else { "finished" }, report.final_step, report.max_steps);
    }
    println!("checkpoint: {}\nmetrics:    {}", report.checkpoint.display(), report.metrics.display());
    Ok(())
}

/// The bucket names of a `--buckets` list, each checked against the world's buckets.
fn parse_buckets(list: &str) -> Result<Vec<&str>> {
    const BUCKETS: [&str; 5] = ["0", "1", "2-3", "4-10", "11+"];
    list.split(',')
        .map(str::trim)
        .map(|b| match BUCKETS.contains(&b) {
            true => Ok(b),
            false => Err(anyhow::anyhow!("--buckets: unknown bucket {b:?}; the buckets are {}", BUCKETS.join(", "))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_buckets;

    #[test]
    fn buckets_are_the_worlds_and_an_unknown_one_is_named() {
        assert_eq!(parse_buckets("11+, 4-10,0").unwrap(), ["11+", "4-10", "0"]);
        let err = parse_buckets("11+,5-9").unwrap_err().to_string();
        assert!(err.contains("\"5-9\"") && err.contains("2-3"), "{err}");
    }
}
