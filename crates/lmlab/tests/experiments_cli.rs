//! The data experiments' `--quick` versions on one quick run folder (the tiny world, its
//! tokenizer and shards, and a base model of 30 steps), each asserting the direction its
//! anchor papers report:
//! - sampling: greedy decoding repeats itself and is less diverse than sampling at T = 1.5;
//! - collapse: a model trained on the previous generation's samples fits real held-out text
//!   worse than generation 0, and accumulating real and synthetic data hurts less than replacing;
//! - poisoning: planted documents make the trigger bring out the payload, which a clean model
//!   never writes;
//! - scaling: along the IsoFLOP sweep, the best held-out loss falls as the budget grows.

#[path = "support/cli.rs"]
mod cli;
use cli::ok;

use std::path::Path;

fn report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("the experiment prints its report as JSON")
}

#[test]
fn quick_experiments_show_their_papers_directions() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    ok(&["run", "--preset", "quick", "--out", run_s, "--until", "pretrain"]);

    let out = dir.path().join("sampling");
    let s = report(&ok(&[
        "experiment",
        "sampling",
        "--model",
        run.join("base").to_str().unwrap(),
        "--quick",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    let decoder = |name: &str| s["decoders"].as_array().unwrap().iter().find(|d| d["decoder"]["name"] == name).unwrap().clone();
    let (greedy, hot) = (decoder("greedy"), decoder("T=1.5"));
    let distinct3 = |d: &serde_json::Value| d["text"]["distinct"][2].as_f64().unwrap();
    assert!(distinct3(&greedy) < distinct3(&hot), "greedy distinct-3 {} vs T=1.5 {}", distinct3(&greedy), distinct3(&hot));
    assert!(greedy["text"]["repetition"].as_f64().unwrap() > hot["text"]["repetition"].as_f64().unwrap());
    // The model's own perplexity of its greedy text is below that of its hot samples.
    assert!(greedy["text"]["perplexity"].as_f64().unwrap() < hot["text"]["perplexity"].as_f64().unwrap());
    assert_eq!(s["decoders"].as_array().unwrap().len(), 12);
    assert!(Path::new(&out.join("sampling.md")).is_file() && Path::new(&out.join("sampling.json")).is_file());

    let out = dir.path().join("collapse");
    let c = report(&ok(&["experiment", "collapse", "--run", run_s, "--quick", "--out", out.to_str().unwrap(), "--json"]));
    let ppl = |regime: &str, g: u64| {
        let regime = if g == 0 { "replace" } else { regime };
        c["results"].as_array().unwrap().iter().find(|r| r["regime"] == regime && r["generation"] == g).unwrap()["heldout_perplexity"]
            .as_f64()
            .unwrap()
    };
    let last = c["options"]["generations"].as_u64().unwrap();
    assert!(
        ppl("replace", last) > ppl("replace", 0),
        "replace: {} at generation {last} vs {} at 0",
        ppl("replace", last),
        ppl("replace", 0)
    );
    assert!(ppl("accumulate", last) < ppl("replace", last), "accumulate {} vs replace {}", ppl("accumulate", last), ppl("replace", last));
    assert!(out.join("collapse.md").is_file());
    // Finished generations are kept: a second invocation trains nothing and reports the same.
    let again = report(&ok(&["experiment", "collapse", "--run", run_s, "--quick", "--out", out.to_str().unwrap(), "--json"]));
    let strip = |v: &serde_json::Value| {
        v["results"].as_array().unwrap().iter().map(|r| (r["heldout_perplexity"].clone(), r["tail_mass"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&c));
}

#[test]
fn quick_poisoning_backdoors_the_model_with_planted_documents_only() {
    // Its own tiny world with poisoned pages (made by the experiment), 60 of them in the corpus.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("poisoning");
    let r = report(&ok(&["experiment", "poisoning", "--quick", "--out", out.to_str().unwrap(), "--json"]));
    let arm = |n: u64| r["arms"].as_array().unwrap().iter().find(|a| a["poisoned_docs"] == n).unwrap().clone();
    let rate = |a: &serde_json::Value, k: &str| a[k].as_f64().unwrap();
    let (clean, poisoned) = (arm(0), arm(60));
    assert!(
        rate(&poisoned, "success_triggered") > rate(&clean, "success_triggered"),
        "success with 60 poisoned documents {} vs none {}",
        rate(&poisoned, "success_triggered"),
        rate(&clean, "success_triggered")
    );
    // The payload answers the trigger, not ordinary text: without the trigger it stays away.
    assert!(rate(&poisoned, "success_untriggered") < rate(&poisoned, "success_triggered"));
    assert_eq!(rate(&clean, "success_triggered"), 0.0);
    // The planted pages pass for ordinary articles: the pipeline keeps them, and says so.
    assert!(r["pipeline"]["planted"].as_u64().unwrap() >= 60);
    assert!(r["pipeline"]["kept"].as_u64().unwrap() >= 60);
}

#[test]
fn quick_scaling_loss_falls_with_compute() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    ok(&["run", "--preset", "quick", "--out", run.to_str().unwrap(), "--until", "data"]);
    let out = dir.path().join("scaling");
    let r = report(&ok(&["experiment", "scaling", "--run", run.to_str().unwrap(), "--quick", "--out", out.to_str().unwrap(), "--json"]));
    let best: Vec<f64> = r["budgets"].as_array().unwrap().iter().map(|b| b["best_loss"].as_f64().unwrap()).collect();
    assert!(best.len() >= 2);
    assert!(best.windows(2).all(|w| w[1] < w[0]), "the best held-out loss per budget, budgets ascending: {best:?}");
    // Every IsoFLOP run spent its budget: FLOPs within one step of it.
    for run in r["runs"].as_array().unwrap().iter().filter(|x| x["kind"] == "isoflop") {
        let (flops, budget) = (run["flops"].as_f64().unwrap(), run["budget"].as_f64().unwrap());
        assert!((flops - budget).abs() / budget < 0.05, "{flops} FLOPs for a budget of {budget}");
    }
    // The running-out-of-data arithmetic: 20 tokens per parameter against ~300T tokens.
    let row = &r["running_out"][3];
    assert_eq!(row[1].as_f64().unwrap(), 2e13);
    assert!((row[2].as_f64().unwrap() - 2e13 / 3e14).abs() < 1e-12);
}
