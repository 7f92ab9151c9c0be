//! llama.cpp as an external reference engine: runs `bench/llamacpp.py` (llama-cpp-python) with
//! one JSON request and reads its JSON answer. Used by the agreement tests and by
//! `lmlab bench infer`, so both compare against the same program on the same token ids.
//!
//! The Python interpreter is `$LMLAB_LLAMACPP_PYTHON`, else `~/.cache/lmlab-venv/bin/python`
//! (where `.ci/run` installs llama-cpp-python), else `python3`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How llama.cpp evaluates a prompt. All three are llama.cpp computing the same model; their
/// results differ in rounding, which measures how much a second engine can be expected to agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Batches of 512 tokens, flash attention off (llama-cpp-python's defaults).
    Batch,
    /// One token per evaluation: every position computed as a decode step.
    Serial,
    /// Batches of 512 with flash attention on.
    Flash,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Batch => "batch",
            Variant::Serial => "serial",
            Variant::Flash => "flash",
        }
    }
}

/// A token's k best next tokens with their logits, best first.
pub type Top = Vec<(u32, f32)>;

/// Greedy continuations and, for each of their steps, the k best logits llama.cpp saw.
pub struct Greedy {
    pub continuations: Vec<Vec<u32>>,
    pub top: Vec<Vec<Top>>,
}

pub struct LlamaCpp {
    python: PathBuf,
    script: PathBuf,
    model: PathBuf,
    threads: usize,
}

/// The Python that runs the bench/ reference scripts: $LMLAB_LLAMACPP_PYTHON, else the venv
/// `.ci/run` builds (~/.cache/lmlab-venv), else python3.
pub fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("LMLAB_LLAMACPP_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lmlab-venv/bin/python"));
    venv.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("python3"))
}

impl LlamaCpp {
    /// The reference for `model`, or an error saying why llama-cpp-python cannot be used.
    /// `script` is `bench/llamacpp.py` of the lmlab checkout.
    pub fn find(script: &Path, model: &Path, threads: usize) -> Result<Self> {
        let python = default_python();
        if !script.is_file() {
            bail!("{} not found", script.display());
        }
        let ok = Command::new(&python).args(["-c", "import llama_cpp"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        match ok {
            Ok(s) if s.success() => Ok(Self { python, script: script.to_path_buf(), model: model.to_path_buf(), threads }),
            _ => bail!("{} cannot import llama_cpp (pip install llama-cpp-python, or set LMLAB_LLAMACPP_PYTHON)", python.display()),
        }
    }

    pub fn request(&self, req: &Value) -> Result<Value> {
        let mut child = Command::new(&self.python)
            .arg(&self.script)
            .arg(&self.model)
            .arg(self.threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.python.display()))?;
        child.stdin.take().expect("piped").write_all(req.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("llama.cpp reference failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).context("llama.cpp reference printed no JSON")
    }

    fn ids(v: &Value) -> Vec<u32> {
        v.as_array().map(|a| a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect()).unwrap_or_default()
    }

    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let ans = self.request(&serde_json::json!({"mode": "tokenize", "texts": texts}))?;
        Ok(ans["ids"].as_array().context("no ids")?.iter().map(Self::ids).collect())
    }

    fn tops(rows: &Value) -> Vec<Top> {
        rows.as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_array().into_iter().flatten().filter_map(|p| Some((p[0].as_u64()? as u32, p[1].as_f64()? as f32))).collect())
            .collect()
    }

    /// Greedy continuations of `n` tokens, with the `k` best logits at each step.
    pub fn greedy(&self, prompts: &[Vec<u32>], n: usize, k: usize, variant: Variant) -> Result<Greedy> {
        let ans = self.request(&serde_json::json!({"mode": "greedy", "prompts": prompts, "n": n, "k": k, "variant": variant.name()}))?;
        let continuations = ans["continuations"].as_array().context("no continuations")?.iter().map(Self::ids).collect();
        let top = ans["top"].as_array().context("no top")?.iter().map(Self::tops).collect();
        Ok(Greedy { continuations, top })
    }

    /// The most likely next token after every prefix of `ids`.
    pub fn argmax(&self, ids: &[u32]) -> Result<Vec<u32>> {
        let ans = self.request(&serde_json::json!({"mode": "argmax", "ids": ids}))?;
        Ok(Self::ids(&ans["argmax"]))
    }

    /// The `k` most likely next tokens with their logits, after every prefix of `ids`.
    pub fn top(&self, ids: &[u32], k: usize, variant: Variant) -> Result<Vec<Top>> {
        let ans = self.request(&serde_json::json!({"mode": "top", "ids": ids, "k": k, "variant": variant.name()}))?;
        Ok(Self::tops(ans.get("top").context("no top")?))
    }

    /// After every prefix `ids[..=i]`, the logits of the tokens `at[i]`.
    pub fn logits_at(&self, ids: &[u32], at: &[Vec<u32>], variant: Variant) -> Result<Vec<Vec<f32>>> {
        let ans = self.request(&serde_json::json!({"mode": "logits", "ids": ids, "at": at, "variant": variant.name()}))?;
        let rows = ans["logits"].as_array().context("no logits")?;
        Ok(rows.iter().map(|r| r.as_array().into_iter().flatten().filter_map(|v| v.as_f64().map(|x| x as f32)).collect()).collect())
    }

    /// Prefill of `ids`, then `decode` greedy steps, timed inside llama.cpp's process.
    pub fn bench(&self, ids: &[u32], decode: usize) -> Result<Value> {
        self.request(&serde_json::json!({"mode": "bench", "ids": ids, "decode": decode}))
    }
}
