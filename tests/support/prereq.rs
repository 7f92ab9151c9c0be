//! One rule for tests whose input may be missing (shared data, the SmolLM2 GGUF, llama.cpp):
//! on a developer's machine they say SKIPPED and why; in CI (`CI=true`), where `.ci/run`
//! installs every prerequisite, a missing one fails the test instead: a skip there would hide a
//! check that never ran. Test files include this with `#[path = ...] mod prereq;`.

/// Reports that `what` is missing: panics under `CI=true`, else prints `SKIPPED: what`.
pub fn missing(what: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!in_ci, "{what} (CI=true: .ci/run provides it, so its absence is a failure, not a skip)");
    eprintln!("SKIPPED: {what}");
}
