//! `lmlab run` and `lmlab report`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct RunArgs {
    /// The run preset for a new run folder: tiny (the default, the whole road in about half an
    /// hour on 2 cores), quick (every stage in a few minutes, for a first look), or a file (see
    /// presets/). An existing run folder keeps its own run.toml.
    #[arg(long)]
    preset: Option<String>,
    /// The run folder.
    #[arg(long, default_value = "runs/world")]
    out: PathBuf,
    /// Start at this stage (the ones before it must have finished).
    #[arg(long)]
    from: Option<String>,
    /// Stop after this stage.
    #[arg(long)]
    until: Option<String>,
    /// Redo this stage and every stage after it, even when up to date.
    #[arg(long)]
    force: Option<String>,
    /// The report's language: en, or zh (Chinese).
    #[arg(long, value_enum, default_value = "en")]
    lang: LangArg,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The run folder (what `lmlab run --out` wrote).
    #[arg(long, default_value = "runs/world")]
    run: PathBuf,
    #[arg(long, value_enum, default_value = "en")]
    lang: LangArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LangArg {
    En,
    Zh,
}

impl From<LangArg> for lmlab_run::report::Lang {
    fn from(l: LangArg) -> Self {
        match l {
            LangArg::En => Self::En,
            LangArg::Zh => Self::Zh,
        }
    }
}

pub fn run(a: RunArgs) -> Result<()> {
    let exe = std::env::current_exe().context("finding the lmlab binary")?;
    let opts = lmlab_run::RunOptions { dir: a.out.clone(), preset: a.preset, from: a.from, until: a.until, force: a.force, exe };
    lmlab_run::run(&opts)?;
    if matches!(a.lang, LangArg::Zh) {
        lmlab_run::report::write(&a.out, a.lang.into())?;
    }
    let report = a.out.join("report.html");
    if report.exists() {
        println!(
            "report:  {}\nchat:    lmlab chat --model {}\nserve:   lmlab serve --model {}",
            report.display(),
            a.out.join("rlhf").display(),
            a.out.join("rlhf").display()
        );
    }
    Ok(())
}

pub fn report(a: ReportArgs) -> Result<()> {
    lmlab_run::report::write(&a.run, a.lang.into())?;
    println!("{}\n{}", a.run.join("report.md").display(), a.run.join("report.html").display());
    Ok(())
}
