//! `metrics.jsonl`: one JSON object per logged step, for every stage of a run.
//!
//! Lines carry a `stage` field. Starting a stage afresh drops that stage's old lines; resuming
//! from step N drops only its lines after N, so a resumed run leaves the same file an
//! uninterrupted one would. The rewrite is atomic.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct MetricsLog {
    path: PathBuf,
    stage: String,
}

impl MetricsLog {
    /// Opens the log for `stage`, keeping its lines up to `keep_through_step` (none when `None`).
    pub fn open(path: &Path, stage: &str, keep_through_step: Option<u64>) -> Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { return true };
                    if v.get("stage").and_then(|s| s.as_str()) != Some(stage) {
                        return true;
                    }
                    match (keep_through_step, v.get("step").and_then(|s| s.as_u64())) {
                        (Some(keep), Some(step)) => step <= keep,
                        _ => false,
                    }
                })
                .collect();
            let mut out = kept.join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            lmlab_model::checkpoint::write_atomic(path, out.as_bytes())?;
        } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self { path: path.to_path_buf(), stage: stage.to_string() })
    }

    /// Appends one record; `fields` must be a JSON object.
    pub fn log(&self, mut fields: serde_json::Value) -> Result<()> {
        if let Some(obj) = fields.as_object_mut() {
            obj.insert("stage".into(), self.stage.clone().into());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        writeln!(f, "{fields}")?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
