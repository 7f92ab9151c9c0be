//! The data experiments' `--quick` versions on one quick run folder (the tiny world, its
//! tokenizer and shards, and a base model of 30 steps), each asserting the direction its
//! anchor papers report:
//! - sampling: greedy decoding repeats itself and is less diverse than sampling at T = 1.5;
//! - collapse: a model trained on the previous generation's samples fits real held-out text
//!   worse than generation 0, accumulating real and synthetic data hurts less than replacing,
//!   and under replacing the real text's rarest tokens lose probability (the tails vanish);
//! - poisoning: planted documents make the trigger bring out the payload, which a clean model
//!   never writes;
//! - scaling: along the IsoFLOP sweep, the best held-out loss falls as the budget grows;
//! - unlearning: gradient difference lowers forget-set accuracy more than retain-set accuracy.

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
    // Written with top-p 0.9 (the default), the tail thins under replace: the rare tokens'
    // probability at the last generation is below generation 0's.
    assert_eq!(c["options"]["writer"]["top_p"], 0.9);
    let tail = |g: u64| {
        c["results"].as_array().unwrap().iter().find(|r| r["regime"] == "replace" && r["generation"] == g).unwrap()["tail_mass"]
            .as_f64()
            .unwrap()
    };
    assert!(tail(last) < tail(0), "replace: tail mass {} at generation {last} vs {} at 0", tail(last), tail(0));
    assert!(out.join("collapse.md").is_file());
    // Finished generations are kept: a second invocation trains nothing and reports the same.
    let again = report(&ok(&["experiment", "collapse", "--run", run_s, "--quick", "--out", out.to_str().unwrap(), "--json"]));
    let strip = |v: &serde_json::Value| {
        v["results"].as_array().unwrap().iter().map(|r| (r["heldout_perplexity"].clone(), r["tail_mass"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&c));

    unlearning_forgets_the_forget_set_more_than_the_rest(&run, dir.path());
}

/// `experiment unlearning --quick` on the quick run's base: fine-tuned facts are learned, and
/// gradient difference takes more from the forget set than from the retain set; `lmlab
/// unlearn` on its own raises the forget set's loss and refuses a retain set for ga.
fn unlearning_forgets_the_forget_set_more_than_the_rest(run: &Path, dir: &Path) {
    let out = dir.join("unlearning");
    let base = run.join("base");
    let r =
        report(&ok(&["experiment", "unlearning", "--model", base.to_str().unwrap(), "--quick", "--out", out.to_str().unwrap(), "--json"]));
    let row = |model: &str| r["rows"].as_array().unwrap().iter().find(|x| x["model"] == model).unwrap().clone();
    let acc = |x: &serde_json::Value, k: &str| x[k].as_f64().unwrap();
    let (start, full, gd) = (row("start"), row("full"), row("gd"));
    assert!(acc(&full, "forget_accuracy") >= acc(&start, "forget_accuracy") + 0.5, "full {full} vs start {start}");
    let forget_drop = acc(&full, "forget_accuracy") - acc(&gd, "forget_accuracy");
    let retain_drop = acc(&full, "retain_accuracy") - acc(&gd, "retain_accuracy");
    assert!(forget_drop > retain_drop, "gd: forget accuracy fell {forget_drop}, retain accuracy {retain_drop}");
    // The retain model never saw the forget entities: it is where forgetting aims.
    assert!(acc(&row("retain"), "forget_accuracy") < acc(&full, "forget_accuracy"));
    assert_eq!(r["rows"].as_array().unwrap().len(), 6);
    assert!(out.join("unlearning.md").is_file() && out.join("unlearning.png").is_file());

    let forget = dir.join("forget.jsonl");
    std::fs::write(&forget, "{\"text\": \"The vault code of Ostria is 31415926.\"}\n").unwrap();
    let m = cli::json(&[
        "unlearn",
        "--model",
        base.to_str().unwrap(),
        "--forget",
        forget.to_str().unwrap(),
        "--method",
        "ga",
        "--steps",
        "4",
        "--lr",
        "1e-3",
        "--out",
        dir.join("unlearned/model").to_str().unwrap(),
        "--json",
    ]);
    let nll: Vec<f64> = m["steps"].as_array().unwrap().iter().map(|s| s["extra"]["forget_nll"].as_f64().unwrap()).collect();
    assert_eq!(nll.len(), 4);
    assert!(nll[3] > nll[0], "the forget loss per token: {nll:?}");
    assert!(dir.join("unlearned/model/model.safetensors").is_file());
    let refused = cli::lmlab(&[
        "unlearn",
        "--model",
        base.to_str().unwrap(),
        "--forget",
        forget.to_str().unwrap(),
        "--retain",
        forget.to_str().unwrap(),
        "--method",
        "ga",
        "--out",
        dir.join("refused").to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ga (gradient ascent) uses no retain set"));
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
    // Both plots: against the documents and against their share of the tokens.
    for png in ["poisoning.png", "poisoning-share.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is a PNG");
    }
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
