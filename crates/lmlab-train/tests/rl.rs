//! RLHF on a toy policy: a reward favouring one token makes PPO, GRPO and RLOO each raise that
//! token's probability; rollouts with a fixed seed are reproducible; a resumed run is
//! bit-identical to an uninterrupted one; the --max-kl guard stops a drifting run; the grader
//! reward maps labels to numbers and counts a list of candidates as wrong; one forward pass's
//! log-probabilities and entropies equal those from the logits. (The formulas
//! themselves are unit-tested in `rl::math` and `rl::loss`.)

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::{frozen_from_tensors, init_trainable};
use lmlab_model::{GptConfig, Mode};
use lmlab_train::rl::math::KlController;
use lmlab_train::rl::reward::{FnReward, GradeRewards, GraderReward, RewardFn};
use lmlab_train::rl::{rollouts, train_rl, Algo, Critic, RlReport, RlRun, RlSettings, Rollout};
use lmlab_train::TrainConfig;

const FAVOURED: u32 = 5;
const STOP: u32 = 7;

fn cfg() -> GptConfig {
    GptConfig::llama_style(8, 12, 1, 2, 2, 16, 32)
}

fn weights(seed: u64) -> HashMap<String, Tensor> {
    init_trainable(&cfg(), seed, DType::F32, &Device::Cpu).unwrap().1.tensors()
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![1, 2], vec![3, 4], vec![2, 6, 1]]
}

/// The share of the favoured token among a response's tokens.
fn favoured(_: usize, r: &[u32]) -> f64 {
    r.iter().filter(|&&t| t == FAVOURED).count() as f64 / r.len().max(1) as f64
}

fn train(steps: u64) -> TrainConfig {
    TrainConfig {
        batch_size: 2,
        max_steps: steps,
        lr: 1e-2,
        min_lr: 1e-2,
        warmup_steps: 0,
        weight_decay: 0.0,
        save_every: 0,
        log_every: 1,
        seed: 3,
        ..TrainConfig::default()
    }
}

fn run<'a>(reward: &'a dyn RewardFn, settings: RlSettings, steps: u64, out: &Path, start: &HashMap<String, Tensor>) -> RlRun<'a> {
    RlRun {
        model_cfg: cfg(),
        policy_weights: start.clone(),
        critic_weights: None,
        prompts: prompts(),
        stop_ids: vec![STOP],
        reward,
        settings,
        train: train(steps),
        out: out.to_path_buf(),
        resume: false,
        stop_after: None,
        stop: Arc::new(AtomicBool::new(false)),
        tokenizer_json: None,
        device: Device::Cpu,
    }
}

fn settings(algo: Algo) -> RlSettings {
    RlSettings { max_new_tokens: 4, kl: KlController::fixed(0.01), ..RlSettings::defaults(algo) }
}

/// Mean probability of the favoured token as the first response token, over the prompts.
fn p_favoured(w: &HashMap<String, Tensor>) -> f64 {
    let model = frozen_from_tensors(&cfg(), w.clone(), DType::F32, &Device::Cpu).unwrap();
    let ps = prompts();
    ps.iter()
        .map(|p| {
            let ids = Tensor::new(p.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let logits = model.forward(&ids, &mut Mode::inference()).unwrap().squeeze(0).unwrap();
            let last = logits.get(p.len() - 1).unwrap();
            let probs: Vec<f32> = candle_nn::ops::softmax(&last, 0).unwrap().to_vec1().unwrap();
            f64::from(probs[FAVOURED as usize])
        })
        .sum::<f64>()
        / ps.len() as f64
}

fn trained_weights(out: &Path) -> HashMap<String, Tensor> {
    let mut w = lmlab_model::checkpoint::load_safetensors(&out.join("model.safetensors"), &Device::Cpu).unwrap();
    w.retain(|k, _| !k.starts_with("critic.") && k != "value_head.weight");
    w
}

#[test]
fn each_algorithm_raises_the_favoured_tokens_probability() {
    let start = weights(1);
    let before = p_favoured(&start);
    let reward = FnReward(favoured);
    for (algo, critic) in
        [(Algo::Ppo, Critic::Shared), (Algo::Ppo, Critic::Separate), (Algo::Grpo, Critic::Shared), (Algo::Rloo, Critic::Shared)]
    {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rlhf");
        let s = RlSettings { critic, ..settings(algo) };
        let report = train_rl(run(&reward, s, 12, &out, &start), |_| {}).unwrap();
        let after = p_favoured(&trained_weights(&out));
        let first = report.steps.first().unwrap()["reward"].as_f64().unwrap();
        let last = report.steps.last().unwrap()["reward"].as_f64().unwrap();
        eprintln!("{algo:?}/{critic:?}: p(favoured) {before:.3} -> {after:.3}; reward {first:.3} -> {last:.3}");
        assert!(after > before + 0.15, "{algo:?}/{critic:?}: p(favoured) {before:.3} -> {after:.3}");
        // Every step logs what the issue asks for.
        let line = &report.steps[0];
        for k in ["reward", "kl", "kl_coef", "entropy", "clip_frac", "response_length", "tokens_per_sec", "policy_loss"] {
            assert!(line[k].is_number(), "{algo:?}: {k} missing in {line}");
        }
        if algo == Algo::Ppo {
            assert!(line["value_loss"].is_number() && line["explained_variance"].is_number());
        }
        // The policy starts as the reference: the first step's KL is exactly 0.
        assert_eq!(line["kl"].as_f64().unwrap(), 0.0, "{algo:?}");
        assert!(report.steps.last().unwrap()["kl"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn token_stats_agree_with_logprobs_and_the_logits() {
    let model = frozen_from_tensors(&cfg(), weights(6), DType::F32, &Device::Cpu).unwrap();
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[1u32, 2, 3, 4, 5], [6, 5, 4, 0, 0]], &dev).unwrap();
    let (at, targets) = (Tensor::new(&[1u32, 3, 6], &dev).unwrap(), Tensor::new(&[3u32, 5, 4], &dev).unwrap());
    let (logp, entropy, hidden) = model.token_stats_at(&ids, &at, &targets, &mut Mode::inference()).unwrap();
    let want: Vec<f32> = model.logprobs_at(&ids, &at, &targets, &mut Mode::inference()).unwrap().to_vec1().unwrap();
    assert_eq!(logp.to_vec1::<f32>().unwrap(), want);
    assert_eq!(hidden.dims(), [3, 16]);
    let logits = model.forward(&ids, &mut Mode::inference()).unwrap();
    for (i, (row, t)) in [(0usize, 1usize), (0, 3), (1, 1)].into_iter().enumerate() {
        let p: Vec<f32> = candle_nn::ops::softmax(&logits.get(row).unwrap().get(t).unwrap(), 0).unwrap().to_vec1().unwrap();
        let h: f32 = -p.iter().map(|q| q * q.ln()).sum::<f32>();
        assert!((entropy.to_vec1::<f32>().unwrap()[i] - h).abs() < 1e-5);
    }
}

#[test]
fn rollouts_with_a_fixed_seed_are_reproducible() {
    let model = frozen_from_tensors(&cfg(), weights(2), DType::F32, &Device::Cpu).unwrap();
    let ps = prompts();
    let draw = |seed| rollouts(&model, &ps, &[0, 2, 1], 3, 5, 1.0, &[STOP], seed).unwrap();
    let a = draw(42);
    assert_eq!(a.len(), 9);
    assert_eq!(a, draw(42));
    assert_ne!(a, draw(43));
    assert!(a.iter().all(|r: &Rollout| !r.response.is_empty() && r.response.len() <= 5));
    assert!(a.iter().all(|r| r.finished == (r.response.last() == Some(&STOP))));
    assert_eq!(a.iter().map(|r| r.prompt).collect::<Vec<_>>(), [0, 0, 0, 2, 2, 2, 1, 1, 1]);
}

fn load(p: &Path) -> HashMap<String, Tensor> {
    lmlab_model::checkpoint::load_safetensors(p, &Device::Cpu).unwrap()
}

fn lines_without_timing(r: &RlReport) -> Vec<serde_json::Value> {
    r.steps
        .iter()
        .map(|l| {
            let mut l = l.clone();
            for k in ["rollout_tokens_per_sec", "tokens_per_sec", "step_secs", "elapsed_secs"] {
                l.as_object_mut().unwrap().remove(k);
            }
            l
        })
        .collect()
}

#[test]
fn a_resumed_run_is_bit_identical() {
    let start = weights(4);
    let reward = FnReward(favoured);
    for (algo, critic) in [(Algo::Ppo, Critic::Separate), (Algo::Grpo, Critic::Shared)] {
        // An adaptive β: its value must survive the checkpoint too.
        let s = RlSettings { critic, kl: KlController::adaptive(0.05, 0.01, 10.0), ..settings(algo) };
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a/rlhf"), dir.path().join("b/rlhf"));
        let straight = train_rl(run(&reward, s.clone(), 4, &a, &start), |_| {}).unwrap();
        let first = train_rl(RlRun { stop_after: Some(2), ..run(&reward, s.clone(), 4, &b, &start) }, |_| {}).unwrap();
        assert!(first.interrupted && first.final_step == 2);
        let second = train_rl(RlRun { resume: true, ..run(&reward, s, 4, &b, &start) }, |_| {}).unwrap();
        assert_eq!(second.start_step, 2);
        assert_eq!(second.final_step, 4);
        for f in ["model.safetensors", "optimizer.safetensors", "rl_state.safetensors"] {
            let (x, y) = (load(&a.join(f)), load(&b.join(f)));
            let mut names: Vec<&String> = x.keys().collect();
            names.sort();
            for k in names {
                let bits = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
                assert!(bits(&x[k]) == bits(&y[k]), "{algo:?}: {f} {k} differs");
            }
            assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{algo:?}: {f} differs");
        }
        let mut resumed = lines_without_timing(&first);
        resumed.extend(lines_without_timing(&second));
        assert_eq!(lines_without_timing(&straight), resumed, "{algo:?}: the metrics differ");
        assert_ne!(straight.steps[3]["kl_coef"], straight.steps[0]["kl_coef"], "β adapts");
        // The metrics file holds each step once.
        let text = std::fs::read_to_string(b.parent().unwrap().join("metrics.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 4);
    }
}

#[test]
fn the_max_kl_guard_stops_a_drifting_run() {
    let start = weights(5);
    let reward = FnReward(favoured);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rlhf");
    let s = RlSettings { max_kl: Some(1e-6), ..settings(Algo::Grpo) };
    let report = train_rl(run(&reward, s, 10, &out, &start), |_| {}).unwrap();
    // Step 1 samples the reference itself (KL 0) and updates; step 2 measures the drift, stops.
    assert!(report.stopped_by_kl);
    assert_eq!(report.final_step, 1);
    assert!(report.steps.last().unwrap()["stopped"].is_string());
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn the_grader_reward_maps_labels_and_counts_candidate_lists_as_wrong() {
    use lmlab_world::grade::Grader;
    use lmlab_world::kb::Kb;
    use lmlab_world::tasks::Question;
    let kb = Kb::from_jsonl(
        concat!(
            r#"{"id":"e1","kind":"person","name":"Marek","name_zh":"马雷克","popularity_rank":1,"facts":[{"id":"f1","relation":"born_in","object":"Velora","object_zh":"维洛拉","object_id":"e2"}]}"#,
            "\n",
            r#"{"id":"e3","kind":"person","name":"Ada","name_zh":"阿达","popularity_rank":2,"facts":[{"id":"f2","relation":"born_in","object":"Dranos","object_zh":"德拉诺斯","object_id":"e4"}]}"#,
        ),
        "test",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corpus.txt");
    std::fs::write(&path, "Marek was born in Velora. Velora or Dranos. I don't know.\n".repeat(20)).unwrap();
    let tok = lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions {
        files: vec![path],
        vocab_size: 280,
        min_frequency: 2,
        show_progress: false,
    })
    .unwrap();
    let q = |answers: &[&str]| Question {
        id: "q".into(),
        set: "rl".into(),
        question: "Where was Marek born?".into(),
        language: "en".into(),
        entity: "e1".into(),
        relation: "born_in".into(),
        answers: answers.iter().map(|s| s.to_string()).collect(),
        occurrences: 3,
        bucket: "2-3".into(),
    };
    let rewards = GradeRewards { correct: 1.0, abstained: -0.25, wrong: -1.0 };
    let g = GraderReward {
        grader: Grader::new(&kb),
        questions: vec![q(&["Velora", "维洛拉"]), q(&[])],
        rewards,
        tokenizer: tok.clone(),
        stop_ids: vec![],
    };
    let roll = |prompt: usize, text: &str| Rollout { prompt, response: tok.encode(text).unwrap(), finished: true };
    let rolls = [
        roll(0, "Marek was born in Velora."),
        roll(0, "Velora or Dranos."),
        roll(0, "I don't know."),
        roll(0, "Dranos."),
        roll(1, "I don't know."),
        roll(1, "Velora."),
    ];
    let scored = g.score(&[vec![1], vec![1]], &rolls).unwrap();
    let values: Vec<f64> = scored.iter().map(|s| s.value).collect();
    assert_eq!(values, [1.0, -1.0, -0.25, -1.0, -0.25, -1.0]);
    assert_eq!(scored[1].parts[1], ("wrong".to_string(), 1.0));
}
