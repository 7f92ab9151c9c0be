//! `lmlab rlhf` through the binary on a micro model: PPO with the grader, GRPO with a reward
//! model and the grader together, PPO on the reward model alone with the grader's score logged
//! beside it (and `experiment overoptimisation` on that run), and the error a user meets first
//! (a reward model asked for but not given).

#[path = "support/cli.rs"]
mod cli;
use cli::{json, lmlab, micro_llama};

const KB: &str = concat!(
    r#"{"id":"e1","kind":"person","name":"Marek","name_zh":"马雷克","popularity_rank":1,"facts":[{"id":"f1","relation":"born_in","object":"Velora","object_zh":"维洛拉","object_id":"e2"}]}"#,
    "\n",
    r#"{"id":"e2","kind":"city","name":"Velora","name_zh":"维洛拉","popularity_rank":2,"facts":[]}"#,
    "\n"
);

fn question(id: &str, q: &str, answers: &[&str], bucket: &str) -> String {
    serde_json::json!({"id": id, "set": "rl", "question": q, "language": "en", "entity": "e1", "relation": "born_in",
        "answers": answers, "occurrences": if answers.is_empty() { 0 } else { 2 }, "bucket": bucket})
    .to_string()
        + "\n"
}

#[test]
fn rlhf_with_the_grader_and_a_reward_model_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).display().to_string();
    std::fs::write(d.join("corpus.txt"), "Where was Marek born? Marek was born in Velora. I do not know. Who is Zuvo?\n".repeat(120))
        .unwrap();
    std::fs::write(d.join("micro.toml"), micro_llama(64, "batch_size = 4\nmax_steps = 2\nwarmup_steps = 1")).unwrap();
    std::fs::create_dir_all(d.join("world")).unwrap();
    std::fs::write(d.join("world/kb.jsonl"), KB).unwrap();
    let prompts =
        question("rl1", "Where was Marek born?", &["Velora", "维洛拉"], "2-3") + &question("rl2", "Where was Zuvo born?", &[], "0");
    std::fs::write(d.join("world/rl_prompts.jsonl"), prompts).unwrap();
    let prefs = (0..8)
        .map(|i| {
            serde_json::json!({"prompt": format!("Where was Marek {i} born?"), "chosen": "Marek was born in Velora.", "rejected": "I do not know.",
                "reason": "correct_vs_wrong_fact", "language": "en", "entity": format!("e{i}")})
            .to_string()
                + "\n"
        })
        .collect::<String>();
    std::fs::write(d.join("prefs.jsonl"), prefs).unwrap();
    for args in [
        vec!["tokenizer", "train", "--input", &p("corpus.txt"), "--vocab-size", "300", "--out", &p("run/tokenizer.json")],
        vec!["pretrain", "--config", &p("micro.toml"), "--data", &p("corpus.txt"), "--out", &p("run/base")],
    ] {
        let out = lmlab(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    let (base, rl) = (p("run/base"), p("world/rl_prompts.jsonl"));
    let common = ["--prompts", &rl, "--steps", "2", "--batch-size", "2", "--max-new-tokens", "4", "--lr", "1e-3", "--json"];
    let mut args = vec!["rlhf", "--policy", &base, "--algo", "ppo", "--reward", "grader", "--grade-rewards", "1,-0.5,-1"];
    let ppo_out = p("ppo/rlhf");
    args.extend(["--out", &ppo_out]);
    args.extend(common);
    let ppo = json(&args);
    assert_eq!(ppo["final_step"], 2);
    let step = &ppo["steps"][1];
    for k in ["reward", "kl", "entropy", "clip_frac", "value_loss", "explained_variance", "response_length", "tokens_per_sec", "correct"] {
        assert!(step[k].is_number(), "{k}: {step}");
    }
    assert!(d.join("ppo/rlhf/rl_state.safetensors").is_file() && d.join("ppo/metrics.jsonl").is_file());

    let rm_out = p("run/rm");
    json(&[
        "reward",
        "train",
        "--base",
        &base,
        "--data",
        &p("prefs.jsonl"),
        "--out",
        &rm_out,
        "--steps",
        "2",
        "--val-fraction",
        "0.25",
        "--json",
    ]);
    let grpo_out = p("grpo/rlhf");
    let mut args = vec!["rlhf", "--policy", &base, "--algo", "grpo", "--group-size", "2", "--reward", "both", "--reward-model", &rm_out];
    args.extend(["--reward-weights", "0.5,1", "--out", &grpo_out]);
    args.extend(common);
    let grpo = json(&args);
    let step = &grpo["steps"][0];
    assert!(step["reward_rm"].is_number() && step["reward_grader"].is_number(), "{step}");
    assert_eq!(grpo["settings"]["group_size"], 2);

    // With the reward model alone, the grader's score is logged beside it (weight 0), and the
    // over-optimisation experiment reads both from the metrics.
    let rm_only = p("rm-only/rlhf");
    let mut args = vec!["rlhf", "--policy", &base, "--reward", "rm", "--reward-model", &rm_out, "--out", &rm_only];
    args.extend(common);
    let report = json(&args);
    let step = &report["steps"][1];
    assert!(step["reward_rm"].is_number() && step["reward_grader"].is_number(), "{step}");
    assert_eq!(step["reward"], step["reward_rm"]);
    let over = json(&["experiment", "overoptimisation", "--metrics", &p("rm-only/metrics.jsonl"), "--bins", "2", "--json"]);
    assert_eq!(over["points"].as_array().unwrap().len(), 2);
    assert!(d.join("rm-only/overoptimisation.md").is_file());

    let out = lmlab(&["rlhf", "--policy", &base, "--reward", "rm", "--prompts", &rl, "--out", &p("bad/rlhf")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("need --reward-model"), "{err}");
}
