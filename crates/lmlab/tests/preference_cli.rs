//! Preference learning through the binary: `reward train` (with eval-only hh-rlhf pairs),
//! `reward score`, `reward eval`, and `dpo` with each loss, full and LoRA, on a micro model; and
//! the errors a user meets first (a file that is not preference data, a model without a head).

#[path = "support/cli.rs"]
mod cli;
use cli::{json, lmlab, micro_llama, ok};

/// World-shaped pairs about a few entities, two reasons.
fn world_pairs() -> String {
    (0..24)
        .map(|i| {
            let (prompt, chosen, rejected, reason) = if i % 2 == 0 {
                (format!("Where is Velmora {i}?"), "It is in Ostria.", "Go away.", "helpful_vs_rude")
            } else {
                (format!("Who founded Dask {i}?"), "I do not know.", "It was Velmora.", "abstain_vs_invent")
            };
            serde_json::json!({"prompt": prompt, "chosen": chosen, "rejected": rejected, "reason": reason, "language": "en", "entity": format!("e{}", i / 4)})
                .to_string()
                + "\n"
        })
        .collect()
}

#[test]
fn reward_train_score_eval_and_dpo_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).display().to_string();
    std::fs::write(d.join("corpus.txt"), "Where is Velmora? It is in Ostria. Go away. I do not know. Who founded Dask?\n".repeat(40))
        .unwrap();
    std::fs::write(d.join("micro.toml"), micro_llama(64, "batch_size = 4\nmax_steps = 2\nwarmup_steps = 1")).unwrap();
    std::fs::write(d.join("prefs.jsonl"), world_pairs()).unwrap();
    let hh = r#"{"chosen": "\n\nHuman: Where is Velmora?\n\nAssistant: It is in Ostria.", "rejected": "\n\nHuman: Where is Velmora?\n\nAssistant: Go away."}"#;
    std::fs::write(d.join("hh.jsonl"), format!("{hh}\n")).unwrap();
    ok(&["tokenizer", "train", "--input", &p("corpus.txt"), "--vocab-size", "300", "--out", &p("run/tokenizer.json")]);
    ok(&["pretrain", "--config", &p("micro.toml"), "--data", &p("corpus.txt"), "--out", &p("run/base")]);

    let rm = json(&[
        "reward",
        "train",
        "--base",
        &p("run/base"),
        "--data",
        &p("prefs.jsonl"),
        "--eval-data",
        &p("hh.jsonl"),
        "--out",
        &p("run/rm"),
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--val-fraction",
        "0.25",
        "--json",
    ]);
    assert_eq!(rm["run"]["final_step"], 3);
    assert_eq!(rm["train_pairs"].as_u64().unwrap() + rm["held_out_pairs"].as_u64().unwrap(), 25);
    for reason in ["helpful_vs_rude", "abstain_vs_invent", "hh-rlhf"] {
        assert!(rm["held_out"]["by_reason"][reason]["pairs"].as_u64().unwrap() >= 1, "{reason}: {}", rm["held_out"]);
    }
    let scored =
        ok(&["reward", "score", "--model", &p("run/rm"), "--prompt", "Where is Velmora?", "--response", "It is in Ostria.", "Go away."]);
    let lines: Vec<String> = String::from_utf8(scored.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("\tIt is in Ostria.") && lines[0].split('\t').next().unwrap().parse::<f32>().is_ok(), "{lines:?}");
    let scores = p("scores.jsonl");
    let eval =
        json(&["reward", "eval", "--model", &p("run/rm"), "--data", &p("prefs.jsonl"), &p("hh.jsonl"), "--scores", &scores, "--json"]);
    assert_eq!(eval["accuracy"]["all"]["pairs"], 25);
    // Every pair's two rewards, agreeing with the accuracy the report gives.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&scores).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 25);
    let preferred = lines.iter().filter(|l| l["chosen"].as_f64().unwrap() > l["rejected"].as_f64().unwrap()).count();
    assert_eq!(preferred as u64, eval["accuracy"]["all"]["correct"].as_u64().unwrap());
    assert!(lines[0]["source"].as_str().unwrap().contains("prefs.jsonl:"), "{}", lines[0]);

    let (base, prefs) = (p("run/base"), p("prefs.jsonl"));
    for (loss, lora) in [("sigmoid", false), ("ipo", false), ("simpo", true)] {
        let out = p(&format!("{loss}/dpo"));
        let mut args =
            vec!["dpo", "--policy", &base, "--data", &prefs, "--beta", "0.5", "--loss", loss, "--out", &out, "--steps", "2", "--json"];
        if lora {
            args.extend(["--lora-rank", "2"]);
        }
        let report = json(&args);
        assert_eq!(report["settings"]["loss"], loss);
        assert!(report["run"]["steps"][1]["extra"]["margin"].is_number(), "{}", report["run"]["steps"]);
        assert!(report["policy_prefers_chosen"]["all"]["pairs"].as_u64().unwrap() > 0);
        assert!(d.join(format!("{loss}/dpo/reference_logprobs.safetensors")).is_file());
        assert_eq!(d.join(format!("{loss}/dpo/adapter.json")).is_file(), lora);
    }

    // Errors: SFT data given as preferences, and a model that is not a reward model.
    std::fs::write(d.join("sft.jsonl"), r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}"#)
        .unwrap();
    let out = lmlab(&["reward", "train", "--base", &p("run/base"), "--data", &p("sft.jsonl"), "--out", &p("bad/rm")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sft.jsonl:1: not a preference pair"), "{err}");
    let out = lmlab(&["reward", "score", "--model", &p("run/base"), "--prompt", "Hi", "--response", "Hello."]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is not a reward model"), "{err}");
}
