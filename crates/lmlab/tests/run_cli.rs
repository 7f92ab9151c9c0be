//! `lmlab run` through the binary, on the `quick` run preset (every stage, a few steps each):
//! every stage's outputs exist and hold numbers; a second run skips everything; editing one
//! stage's table in run.toml redoes that stage and the ones after it, and only those; `--force`
//! does the same; bad settings are named; the report opens in headless Chromium with every
//! section and every image. A run killed with -9 inside pretraining takes its stage down with
//! it, and the next run resumes that stage from its checkpoint.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../../tests/support/prereq.rs"]
mod prereq;
use cli::{clients_dir, find_chromium, lmlab, ok, python};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECTIONS: [&str; 13] =
    ["summary", "world", "data", "tokenizer", "size", "pretrain", "sft", "reward", "rlhf", "samples", "qa", "consistency", "time"];
const STAGES: [&str; 9] = ["world", "tokenizer", "data", "pretrain", "sft", "reward", "rlhf", "eval", "report"];

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The stages a run's output says it ran (not "up to date, skipped").
fn ran(out: &std::process::Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter(|l| l.contains(": done in ")).filter_map(|l| l.split("] ").nth(1)?.split(':').next().map(String::from)).collect()
}

fn skipped(out: &std::process::Output) -> usize {
    String::from_utf8_lossy(&out.stdout).matches("up to date, skipped").count()
}

fn markers(dir: &Path) -> Vec<String> {
    STAGES.iter().map(|s| read_json(&dir.join(format!(".state/{s}.json")))["stamp"].as_str().unwrap().to_string()).collect()
}

#[test]
fn run_quick_skips_what_is_done_redoes_what_changed_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let first = ok(&["run", "--preset", "quick", "--out", d]);
    assert_eq!(ran(&first), STAGES, "{}", String::from_utf8_lossy(&first.stdout));

    // Each stage's outputs hold numbers.
    let stats = read_json(&dir.join("world/stats.json"));
    assert!(stats["pages"].as_u64().unwrap() > 1000);
    let manifest = read_json(&dir.join("data/manifest.json"));
    let (docs, kept) = (manifest["counts"]["documents"].as_u64().unwrap(), manifest["counts"]["kept"].as_u64().unwrap());
    assert!(0 < kept && kept < docs, "{kept} of {docs}");
    let filters = read_json(&dir.join("data/filters.json"));
    assert!((0.5..=1.0).contains(&filters["keep_precision"].as_f64().unwrap()));
    let fertility = read_json(&dir.join("tokenizer-stats.json"));
    assert!(fertility[0]["latin"]["tokens_per_unit"].as_f64().unwrap() >= 1.0, "English: at least a token a word");
    assert!(fertility[1]["han"]["chars"].as_u64().unwrap() > 0, "Chinese text measured");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    for (stage, steps) in [("pretrain", 30), ("sft", 10), ("reward", 10), ("rlhf", 2)] {
        let last = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .rfind(|v| v["stage"] == stage)
            .unwrap_or_else(|| panic!("no {stage} lines"));
        assert_eq!(last["step"], steps, "{stage}");
        let value = if stage == "rlhf" { &last["reward"] } else { &last["loss"] };
        assert!(value.as_f64().unwrap().is_finite(), "{stage}: {last}");
    }
    let reward = read_json(&dir.join("eval/reward-train.json"));
    assert!(reward["held_out"]["all"]["pairs"].as_u64().unwrap() > 100);
    for model in ["base", "sft", "rlhf"] {
        let qa = read_json(&dir.join(format!("eval/qa/{model}/qa.json")));
        assert_eq!(qa["overall"]["n"], 30, "{model}: 10 questions from each of 3 sets");
        let r = &qa["overall"];
        let sum = r["correct"].as_f64().unwrap() + r["wrong"].as_f64().unwrap() + r["abstained"].as_f64().unwrap();
        assert!((sum - 1.0).abs() < 1e-9);
    }
    assert!(read_json(&dir.join("eval/consistency/consistency.json"))["rows"].as_array().unwrap().len() >= 2);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for heading in ["## Summary", "## 2. Data", "## 7. Reward model", "## 10. What each model knows", "## 12. Wall time per stage"] {
        assert!(report.contains(heading), "{heading} in report.md");
    }
    assert!(report.contains("majority value per relation"), "the baseline row");
    let zh = tmp.path().join("zh");
    std::fs::create_dir(&zh).unwrap();

    // Nothing changed: every stage is skipped, and their markers stay as they were.
    let stamps = markers(&dir);
    let again = ok(&["run", "--out", d]);
    assert_eq!((ran(&again).len(), skipped(&again)), (0, 9), "{}", String::from_utf8_lossy(&again.stdout));
    assert_eq!(markers(&dir), stamps);

    // Editing one stage's table redoes it and the stages after it, not those before.
    let toml_path = dir.join("run.toml");
    let text = std::fs::read_to_string(&toml_path).unwrap();
    assert!(text.contains("consistency_samples = 2"), "{text}");
    std::fs::write(&toml_path, text.replace("consistency_samples = 2", "consistency_samples = 3")).unwrap();
    let edited = ok(&["run", "--out", d]);
    assert_eq!(ran(&edited), ["eval", "report"]);
    assert_eq!(skipped(&edited), 7);
    assert_eq!(markers(&dir)[..7], stamps[..7]);
    assert_eq!(read_json(&dir.join("eval/consistency/consistency.json"))["options"]["qa"]["samples"], 3);

    // --force redoes the stage named and every one after it.
    let forced = ok(&["run", "--out", d, "--force", "rlhf"]);
    assert_eq!(ran(&forced), ["rlhf", "eval", "report"]);

    // Bad settings and arguments are named.
    let text = std::fs::read_to_string(&toml_path).unwrap();
    std::fs::write(&toml_path, text.replacen("[train]\n", "[train]\nwarmup = 3\n", 1)).unwrap();
    let bad = lmlab(&["run", "--out", d]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("run.toml") && err.contains("warmup") && err.contains("[train]"), "{err}");
    std::fs::write(&toml_path, &text).unwrap();
    let other = lmlab(&["run", "--out", d, "--preset", "tiny"]);
    assert!(String::from_utf8_lossy(&other.stderr).contains("\"quick\""), "{}", String::from_utf8_lossy(&other.stderr));
    let unknown = lmlab(&["run", "--out", d, "--from", "rhlf"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("the stages: world, tokenizer"));

    // `lmlab report --lang zh` rewrites the report in Chinese.
    ok(&["report", "--run", d, "--lang", "zh"]);
    assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains("## 2. 数据：清洗漏斗"));
    ok(&["report", "--run", d]);

    // The page as a reader sees it.
    match (python(), find_chromium()) {
        (Some(py), Some(chromium)) => {
            let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-report.png");
            let out = Command::new(py)
                .arg(clients_dir().join("report_page.py"))
                .args([&chromium, &dir.join("report.html").display().to_string(), &shot.display().to_string(), &SECTIONS.join(","), "6"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "report in Chromium:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("report page: {} (screenshot {})", String::from_utf8_lossy(&out.stdout).trim(), shot.display());
        }
        _ => prereq::missing("python3 and Chromium (apt-get install chromium), to open report.html"),
    }
}

/// Processes whose working directory is `dir` (the run's stages run there).
fn processes_in(dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir))
        .collect()
}

#[test]
fn a_run_killed_inside_pretraining_stops_its_stage_and_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_lmlab"))
        .args(["run", "--preset", "quick", "--out", d, "--until", "pretrain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for pretraining's first checkpoint (step 15 of 30), then kill the run with -9.
    let state = dir.join("base/trainer_state.json");
    let t = Instant::now();
    while !state.exists() {
        assert!(t.elapsed() < Duration::from_secs(600), "no checkpoint");
        assert!(run.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second run in the same folder meanwhile is refused.
    let twice = lmlab(&["run", "--out", d, "--until", "pretrain"]);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("another lmlab run"), "{}", String::from_utf8_lossy(&twice.stderr));
    run.kill().unwrap();
    run.wait().unwrap();
    // Its pretraining child notices and stops.
    let t = Instant::now();
    while !processes_in(&dir).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(20), "the stage outlived the run: {:?}", processes_in(&dir));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.join(".state/pretrain.json").exists(), "pretraining did not finish");

    let again = ok(&["run", "--out", d, "--until", "pretrain"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert_eq!(skipped(&again), 3, "{text}");
    assert_eq!(ran(&again), ["pretrain"]);
    let log = std::fs::read_to_string(dir.join("logs/pretrain.log")).unwrap();
    assert!(log.contains("--resume"), "{log}");
    // One line per logged step, 5 to 30, however the run was cut.
    let steps: Vec<u64> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["stage"] == "pretrain" && v.get("loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).map(|i| i * 5).collect::<Vec<_>>());
}
