//! Running the stages: which to skip, resume or redo, the child processes, logs and progress.
//!
//! A stage's *key* hashes the settings tables it reads together with the *stamp* of the stage
//! before it, and a stage that finishes writes its key and a fresh stamp to `.state/NAME.json`.
//! So a stage is skipped when its marker holds the key it would run with and its outputs exist;
//! editing its table changes its key, and redoing it changes its stamp, which changes the key of
//! every stage after it. A stage that starts writes `.state/NAME.partial` with its key: when the
//! run is interrupted (Ctrl-C, kill -9) and started again with the same settings, a training
//! stage resumes from its last checkpoint instead of starting over.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::settings::RunSettings;
use crate::stages::{plan, Stage, Step, STAGE_NAMES};

/// What `lmlab run` was asked to do.
pub struct RunOptions {
    pub dir: PathBuf,
    /// The run preset for a new run folder (default `tiny`); for an existing one it must match.
    pub preset: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    /// Redo this stage and every one after it.
    pub force: Option<String>,
    /// The `lmlab` binary the stages run.
    pub exe: PathBuf,
}

/// `.state/NAME.json`: a finished stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageMarker {
    pub key: String,
    /// Changes each time the stage runs; part of the next stage's key.
    pub stamp: String,
    pub seconds: f64,
}

/// How each stage went in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Resumed,
    Skipped,
}

/// Runs the stages of `opts.dir`; returns each stage run or skipped, with how.
pub fn run(opts: &RunOptions) -> Result<Vec<(String, Outcome)>> {
    let settings = prepare_folder(opts)?;
    let _lock = RunLock::take(&opts.dir)?;
    let stages = plan(&settings);
    let index = |name: &Option<String>, default: usize| -> Result<usize> {
        match name {
            None => Ok(default),
            Some(n) => STAGE_NAMES
                .iter()
                .position(|s| s == n)
                .with_context(|| format!("unknown stage {n:?}; the stages: {}", STAGE_NAMES.join(", "))),
        }
    };
    let (from, until, force) = (index(&opts.from, 0)?, index(&opts.until, stages.len() - 1)?, index(&opts.force, usize::MAX)?);
    anyhow::ensure!(from <= until, "--from {} comes after --until {}", STAGE_NAMES[from], STAGE_NAMES[until]);
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // A second Ctrl-C is left to the default handler only by the children: the run waits for
    // the running stage to write its checkpoint and stop.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let mut prev_stamp = String::new();
    let mut outcomes = Vec::new();
    let started = Instant::now();
    for (i, stage) in stages.iter().enumerate().take(until + 1) {
        let key = stage_key(stage, &settings, &prev_stamp);
        let marker = read_marker(&opts.dir, stage.name);
        if i < from {
            let m = marker.with_context(|| {
                format!("--from {}: stage {} has not finished in {}", STAGE_NAMES[from], stage.name, opts.dir.display())
            })?;
            prev_stamp = m.stamp;
            continue;
        }
        let header = format!("[{}/{}] {}", i + 1, stages.len(), stage.name);
        if i < force {
            if let Some(m) = marker.filter(|m| m.key == key && outputs_exist(&opts.dir, stage)) {
                println!("{header}: up to date, skipped ({})", stage.what);
                prev_stamp = m.stamp;
                outcomes.push((stage.name.to_string(), Outcome::Skipped));
                continue;
            }
        }
        let resume = i < force && read_partial(&opts.dir, stage.name).as_deref() == Some(key.as_str()) && can_resume(&opts.dir, stage);
        let t = Instant::now();
        run_stage(opts, &settings, stage, &key, resume, &header, &interrupted)?;
        let m = StageMarker { key: key.clone(), stamp: format!("{key}-{}", now_nanos()), seconds: t.elapsed().as_secs_f64() };
        write_marker(&opts.dir, stage.name, &m)?;
        prev_stamp = m.stamp;
        outcomes.push((stage.name.to_string(), if resume { Outcome::Resumed } else { Outcome::Ran }));
    }
    println!("done in {}: {}", human_secs(started.elapsed().as_secs_f64()), opts.dir.display());
    Ok(outcomes)
}

/// `.state/lock`: the process running this folder, so that two runs never write into it at
/// once. A lock whose process is gone (a run killed with -9) is taken over.
struct RunLock(PathBuf);

impl RunLock {
    fn take(dir: &Path) -> Result<Self> {
        let path = dir.join(".state/lock");
        if let Some(pid) = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            let alive = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("lmlab"));
            if alive && pid != std::process::id() {
                bail!("another lmlab run (process {pid}) is working in {}; wait for it, or stop it first", dir.display());
            }
        }
        std::fs::create_dir_all(dir.join(".state"))?;
        lmlab_model::checkpoint::write_atomic(&path, std::process::id().to_string().as_bytes())?;
        Ok(Self(path))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Creates or reads the run folder's `run.toml`, and writes the training preset the stages read.
fn prepare_folder(opts: &RunOptions) -> Result<RunSettings> {
    let path = opts.dir.join("run.toml");
    let settings = if path.exists() {
        let s = RunSettings::from_file(&path)?;
        if let Some(p) = opts.preset.as_deref().filter(|p| *p != s.run.preset) {
            bail!(
                "{} was made with the run preset {:?}, not {p:?}: edit its run.toml, or choose another --out",
                opts.dir.display(),
                s.run.preset
            );
        }
        s
    } else {
        let s = RunSettings::from_preset(opts.preset.as_deref().unwrap_or("tiny"))?;
        std::fs::create_dir_all(&opts.dir).with_context(|| format!("creating {}", opts.dir.display()))?;
        lmlab_model::checkpoint::write_atomic(&path, s.to_toml().as_bytes())?;
        s
    };
    let preset = opts.dir.join("preset.toml");
    let text = format!("# Written by `lmlab run` from run.toml (edit that, not this).\n{}", settings.preset_toml());
    if std::fs::read_to_string(&preset).ok().as_deref() != Some(text.as_str()) {
        lmlab_model::checkpoint::write_atomic(&preset, text.as_bytes())?;
    }
    Ok(settings)
}

/// The key of `stage`: its tables and the stamp of the stage before it.
pub fn stage_key(stage: &Stage, settings: &RunSettings, prev_stamp: &str) -> String {
    let text = format!("{}\n{}\n{}", stage.name, settings.tables_text(stage.tables), prev_stamp);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

fn state_path(dir: &Path, stage: &str, ext: &str) -> PathBuf {
    dir.join(".state").join(format!("{stage}.{ext}"))
}

/// The marker of a finished stage, if there is one.
pub fn read_marker(dir: &Path, stage: &str) -> Option<StageMarker> {
    serde_json::from_str(&std::fs::read_to_string(state_path(dir, stage, "json")).ok()?).ok()
}

fn write_marker(dir: &Path, stage: &str, m: &StageMarker) -> Result<()> {
    lmlab_model::checkpoint::write_atomic(&state_path(dir, stage, "json"), serde_json::to_string_pretty(m)?.as_bytes())?;
    let _ = std::fs::remove_file(state_path(dir, stage, "partial"));
    Ok(())
}

fn read_partial(dir: &Path, stage: &str) -> Option<String> {
    std::fs::read_to_string(state_path(dir, stage, "partial")).ok().map(|s| s.trim().to_string())
}

fn outputs_exist(dir: &Path, stage: &Stage) -> bool {
    stage.outputs.iter().all(|o| dir.join(o).exists())
}

fn can_resume(dir: &Path, stage: &Stage) -> bool {
    stage.steps.iter().any(|s| matches!(s, Step::Lmlab { resume_from: Some(c), .. } if dir.join(c).exists()))
}

/// Runs one stage: removes what a fresh start must not find, then each step in turn.
fn run_stage(opts: &RunOptions, s: &RunSettings, stage: &Stage, key: &str, resume: bool, header: &str, stop: &AtomicBool) -> Result<()> {
    let dir = &opts.dir;
    let _ = std::fs::remove_file(state_path(dir, stage.name, "json"));
    if !resume {
        for o in &stage.outputs {
            let p = dir.join(o);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            } else if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir.join(".state"))?;
    lmlab_model::checkpoint::write_atomic(&state_path(dir, stage.name, "partial"), key.as_bytes())?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let log_path = dir.join("logs").join(format!("{}.log", stage.name));
    let mut log =
        std::fs::OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("opening {}", log_path.display()))?;
    let bar = progress_bar(header, stage, resume);
    for step in &stage.steps {
        match step {
            Step::Internal { what, run } => {
                use std::io::Write;
                writeln!(log, "== {what}")?;
                bar.set_message(what.to_string());
                run(dir, s).with_context(|| format!("stage {}: {what}", stage.name))?;
            }
            Step::Lmlab { args, stdout, resume_from } => {
                let mut args = args.clone();
                if resume && resume_from.as_ref().is_some_and(|c| dir.join(c).exists()) {
                    args.push("--resume".into());
                }
                bar.set_message(format!("lmlab {}", args.iter().take(2).cloned().collect::<Vec<_>>().join(" ")));
                run_child(opts, stage, &args, stdout.as_deref(), &log_path, &mut log, &bar, stop)?;
            }
        }
    }
    bar.finish_and_clear();
    println!("{header}: done in {} ({})", human_secs(bar.elapsed().as_secs_f64()), stage.what);
    Ok(())
}

fn progress_bar(header: &str, stage: &Stage, resume: bool) -> ProgressBar {
    let bar = match stage.metrics {
        Some((_, Some(n))) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{prefix} {bar:30.cyan/blue} {pos}/{len} steps · {elapsed_precise} · {eta} left · {msg}")
                .expect("a valid template")
                .progress_chars("━╸ "),
        ),
        _ => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{prefix} {spinner} {elapsed_precise} · {msg}").expect("a valid template")),
    };
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        eprintln!("{header}: {}{}", stage.what, if resume { " (resuming)" } else { "" });
    }
    bar.set_prefix(format!("{header}{}", if resume { " (resuming)" } else { "" }));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs `lmlab ARGS` in the run folder, its output in the stage's log, and follows its
/// progress in the run's metrics.jsonl.
#[allow(clippy::too_many_arguments)]
fn run_child(
    opts: &RunOptions,
    stage: &Stage,
    args: &[String],
    stdout: Option<&Path>,
    log_path: &Path,
    log: &mut std::fs::File,
    bar: &ProgressBar,
    stop: &AtomicBool,
) -> Result<()> {
    use std::io::Write;
    writeln!(log, "== lmlab {}", args.join(" "))?;
    let captured = stdout.map(|p| opts.dir.join(lmlab_model::checkpoint::with_suffix(p, ".tmp")));
    let out = match &captured {
        Some(p) => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Stdio::from(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Stdio::from(log.try_clone()?),
    };
    // The child's standard input is a pipe the run holds: when the run dies (even by kill -9)
    // the pipe closes and the child stops too (see LMLAB_RUN_CHILD in main.rs).
    let mut child = Command::new(&opts.exe)
        .args(args)
        .current_dir(&opts.dir)
        .env("LMLAB_RUN_CHILD", "1")
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::from(log.try_clone()?))
        .spawn()
        .with_context(|| format!("starting {}", opts.exe.display()))?;
    let status = wait(&mut child, &opts.dir, stage, bar, stop)?;
    if stop.load(Ordering::SeqCst) {
        bar.abandon();
        bail!("interrupted in stage {}: run the same command again to pick up where it stopped", stage.name);
    }
    if !status.success() {
        bar.abandon();
        bail!(
            "stage {} failed: `lmlab {}` exited with {status}; the end of {}:\n{}",
            stage.name,
            args.join(" "),
            log_path.display(),
            tail(log_path, 15)
        );
    }
    if let (Some(tmp), Some(dst)) = (captured, stdout) {
        std::fs::rename(&tmp, opts.dir.join(dst)).with_context(|| format!("renaming {}", tmp.display()))?;
    }
    Ok(())
}

fn wait(child: &mut Child, dir: &Path, stage: &Stage, bar: &ProgressBar, stop: &AtomicBool) -> Result<std::process::ExitStatus> {
    let mut asked_to_stop = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if stop.load(Ordering::SeqCst) && !asked_to_stop {
            // The terminal's Ctrl-C reaches the child too; a `kill -INT` of the run alone does
            // not, so pass it on: the child writes a checkpoint and stops.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            asked_to_stop = true;
        }
        if let Some((name, _)) = stage.metrics {
            if let Some(step) = last_step(&dir.join("metrics.jsonl"), name) {
                bar.set_position(step);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The last step `stage` logged in a metrics.jsonl.
pub fn last_step(path: &Path, stage: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["stage"] == stage && v.get("step").is_some())
        .and_then(|v| v["step"].as_u64())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Seconds as "4 min 12 s" or "12.3 s".
pub fn human_secs(s: f64) -> String {
    if s >= 60.0 {
        format!("{} min {:02} s", (s / 60.0).floor(), (s % 60.0).floor())
    } else {
        format!("{s:.1} s")
    }
}
