//! The helpers every test of the `lmlab` binary uses: run it, require success, read its JSON,
//! and find the real clients (Python, Chromium) the tests drive. Included with
//! `#[path = "support/cli.rs"] mod cli;`; each test file uses what it needs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `lmlab ARGS` to completion (logging at warn, so stderr holds only what matters).
pub fn lmlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lmlab")).args(args).env("RUST_LOG", "warn").output().expect("running lmlab")
}

/// `lmlab ARGS`, which must succeed; a failure shows its stderr.
pub fn ok(args: &[&str]) -> Output {
    let out = lmlab(args);
    assert!(out.status.success(), "lmlab {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The JSON `lmlab ARGS` prints (it must succeed).
pub fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&ok(args).stdout).unwrap()
}

/// A config for a one-layer Llama-style micro model (RMSNorm, SwiGLU, RoPE, width 32) of
/// `context_length` tokens, whose `[train]` table holds the lines `train`.
pub fn micro_llama(context_length: usize, train: &str) -> String {
    format!(
        "[model]\ncontext_length = {context_length}\nn_layer = 1\nn_head = 2\nd_model = 32\nd_ff = 64\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\nposition = \"rope\"\n\n[train]\n{train}\n"
    )
}

pub fn python() -> Option<&'static str> {
    Command::new("python3").arg("--version").output().ok().filter(|o| o.status.success()).map(|_| "python3")
}

pub fn find_chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .map(String::from)
}

/// The Python clients and page drivers beside the tests.
pub fn clients_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}
