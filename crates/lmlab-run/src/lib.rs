//! The main job as one command: `lmlab run` takes the built-in world from crawl to chat model
//! and writes a report card.
//!
//! A run is a folder. Its `run.toml` holds the resolved settings of every stage ([`settings`]);
//! the stages ([`stages`]) are `lmlab` subcommands run in order as child processes, each with
//! its log in `logs/`; the runner ([`runner`]) skips a stage whose settings and inputs are
//! unchanged, resumes an interrupted training stage from its checkpoint, and redoes a stage and
//! everything after it when its settings change. [`report`] turns what the stages wrote into
//! `report.md` and a self-contained `report.html`.
//!
//! It does not train or measure anything itself: every number comes from a stage's command,
//! which a user can also run alone.
//!
//! ```no_run
//! use lmlab_run::{run, RunOptions};
//! let opts = RunOptions { dir: "runs/world".into(), preset: Some("tiny".into()), from: None, until: None, force: None, exe: "lmlab".into() };
//! for (stage, outcome) in run(&opts)? {
//!     println!("{stage}: {outcome:?}");
//! }
//! # anyhow::Ok(())
//! ```

pub mod report;
mod runner;
mod settings;
mod stages;

pub use runner::{human_secs, last_step, read_marker, run, stage_key, Outcome, RunOptions, StageMarker};
pub use settings::{RunSettings, RUN_PRESETS};
pub use stages::{plan, Stage, Step, MODEL_STAGES, STAGE_NAMES};
