//! Running a Python reference on the same inputs as lmlab (`bench extract`'s trafilatura,
//! `bench lid`'s fastText): the records go to the script as a JSON Lines file, and the script
//! writes one JSON object back.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde::de::DeserializeOwned;

/// Runs `python script ARGS... INPUT.jsonl OUTPUT.json` on `records` and reads its output; the
/// files live in a temporary folder, removed on errors too.
pub(crate) fn run_script<T: DeserializeOwned>(
    python: &str,
    script: &Path,
    args: &[&OsStr],
    records: impl Iterator<Item = serde_json::Value>,
) -> Result<T> {
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("input.jsonl");
    let mut lines = String::new();
    for record in records {
        lines.push_str(&serde_json::to_string(&record)?);
        lines.push('\n');
    }
    std::fs::write(&input, lines)?;
    let output = tmp.path().join("output.json");
    let status = Command::new(python)
        .arg(script)
        .args(args)
        .arg(&input)
        .arg(&output)
        .status()
        .with_context(|| format!("running {python} {}", script.display()))?;
    ensure!(status.success(), "{python} {} failed ({status})", script.display());
    let bytes = std::fs::read(&output).with_context(|| format!("{} wrote no output", script.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading the output of {}", script.display()))
}
