//! `run.toml`: the resolved settings of every stage of a run.
//!
//! A run preset (`presets/NAME.toml`) names the training preset it builds on (`[run] config`,
//! one of `configs/`) and adds the tables only a run has. Resolving it lays the preset's tables
//! under the run preset's, key by key, and the result is written to the run folder as
//! `run.toml`. From then on `run.toml` is what the run reads: edit a stage's table there and
//! that stage and the ones after it are redone.

use std::path::Path;

use anyhow::{bail, Context, Result};
use lmlab_train::Preset;
use serde::{Deserialize, Serialize};

/// The run presets shipped in `presets/`, embedded so that they work from any directory.
pub const RUN_PRESETS: [(&str, &str); 2] =
    [("tiny", include_str!("../../../presets/tiny.toml")), ("quick", include_str!("../../../presets/quick.toml"))];

/// The tables a run adds to a training preset.
const RUN_TABLES: [&str; 5] = ["run", "tokenizer", "rlhf", "eval", "report"];
/// The tables of the training preset under a run.
const PRESET_TABLES: [&str; 6] = ["world", "model", "train", "sft", "reward", "dpo"];

/// `[run]`: what the run is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunTable {
    /// The run preset this run was made from.
    pub preset: String,
    /// The training preset (a name from `configs/`) under this run's tables.
    pub config: String,
    /// The world's seed.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub description: String,
}

/// `[tokenizer]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenizerTable {
    pub vocab_size: usize,
}

/// `[eval]`: what the evaluation stage asks of each model stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalTable {
    /// Ask at most this many questions of each set (all when absent).
    pub limit: Option<usize>,
    /// Tokens an answer may run to: enough for the world's longest abstention ("I'm not aware
    /// of anything called …, so I can't answer that."), which 24 cuts short.
    pub max_tokens: usize,
    /// Questions the consistency measurement samples (several times each).
    pub consistency_limit: usize,
    pub consistency_samples: usize,
    pub consistency_temperatures: Vec<f64>,
    pub seed: u64,
}

impl Default for EvalTable {
    fn default() -> Self {
        Self {
            limit: None,
            max_tokens: 48,
            consistency_limit: 200,
            consistency_samples: 5,
            consistency_temperatures: vec![0.0, 0.7, 1.0],
            seed: 0,
        }
    }
}

/// `[report]`: the sample answers shown for each model stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReportTable {
    pub sample_questions: usize,
    pub sample_temperatures: Vec<f64>,
}

impl Default for ReportTable {
    fn default() -> Self {
        Self { sample_questions: 5, sample_temperatures: vec![0.0, 0.8] }
    }
}

/// The resolved settings of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub run: RunTable,
    pub tokenizer: TokenizerTable,
    /// `lmlab rlhf`'s flags, by name (`algo = "grpo"` is `--algo grpo`).
    pub rlhf: toml::Table,
    pub eval: EvalTable,
    pub report: ReportTable,
    /// The training preset's tables (`[world]`, `[model]`, `[train]`, `[sft]`, `[reward]`,
    /// `[dpo]`), checked as a [`Preset`].
    pub preset: toml::Table,
}

impl RunSettings {
    /// The run preset `name_or_path`: a built-in name or a file, resolved over its training preset.
    pub fn from_preset(name_or_path: &str) -> Result<Self> {
        let (name, text) = match RUN_PRESETS.iter().find(|(n, _)| *n == name_or_path) {
            Some((n, t)) => (n.to_string(), t.to_string()),
            None if Path::new(name_or_path).is_file() => {
                (name_or_path.to_string(), std::fs::read_to_string(name_or_path).with_context(|| format!("reading {name_or_path}"))?)
            }
            None => bail!("unknown run preset {name_or_path:?}: not a file, and not one of {}", builtin_names()),
        };
        let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("in run preset {name}"))?;
        let config = table
            .get("run")
            .and_then(|r| r.get("config"))
            .and_then(|c| c.as_str())
            .with_context(|| format!("run preset {name}: [run] needs config = \"NAME\", the training preset it builds on"))?
            .to_string();
        let (_, base_text) = lmlab_train::config::PRESETS
            .iter()
            .find(|(n, _)| *n == config)
            .with_context(|| format!("run preset {name}: [run] config = {config:?} is not a preset in configs/"))?;
        let mut resolved: toml::Table = toml::from_str(base_text)?;
        table
            .entry("run")
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .map(|r| r.insert("preset".into(), name.clone().into()));
        for (key, value) in table {
            match (resolved.get_mut(&key), value) {
                (Some(toml::Value::Table(under)), toml::Value::Table(over)) => under.extend(over),
                (_, value) => {
                    resolved.insert(key, value);
                }
            }
        }
        Self::from_table(resolved).with_context(|| format!("in run preset {name}"))
    }

    /// Reads a run folder's `run.toml`; errors name the file and the table.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        Self::from_table(table).with_context(|| format!("in {}", path.display()))
    }

    fn from_table(mut table: toml::Table) -> Result<Self> {
        if let Some(unknown) = table.keys().find(|k| !RUN_TABLES.contains(&k.as_str()) && !PRESET_TABLES.contains(&k.as_str())) {
            bail!("unknown table [{unknown}]; a run has the tables {}", known_tables());
        }
        let mut take = |name: &str| table.remove(name).unwrap_or_else(|| toml::Table::new().into());
        let run = take("run").try_into().context("in table [run] (takes preset, config, seed, description)")?;
        let tokenizer = take("tokenizer").try_into().context("in table [tokenizer] (takes vocab_size)")?;
        let rlhf = match take("rlhf") {
            toml::Value::Table(t) => t,
            _ => bail!("[rlhf] must be a table of `lmlab rlhf` flags"),
        };
        let eval: EvalTable = take("eval")
            .try_into()
            .context("in table [eval] (takes limit, max_tokens, consistency_limit, consistency_samples, consistency_temperatures, seed)")?;
        let report: ReportTable = take("report").try_into().context("in table [report] (takes sample_questions, sample_temperatures)")?;
        let s = Self { run, tokenizer, rlhf, eval, report, preset: table };
        s.training_preset()?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        anyhow::ensure!(
            self.tokenizer.vocab_size >= 260,
            "[tokenizer] vocab_size = {} is too small: it needs 256 bytes and the special tokens",
            self.tokenizer.vocab_size
        );
        for (key, value) in &self.rlhf {
            if matches!(key.as_str(), "policy" | "prompts" | "out" | "reward_model" | "resume" | "kb") {
                bail!("[rlhf] {key} is set by the run itself; remove it");
            }
            if value.is_table() {
                bail!("[rlhf] {key}: a flag's value is a string, number, boolean or list, not a table");
            }
        }
        anyhow::ensure!(!self.report.sample_temperatures.is_empty(), "[report] sample_temperatures is empty");
        anyhow::ensure!(!self.eval.consistency_temperatures.is_empty(), "[eval] consistency_temperatures is empty");
        Ok(())
    }

    /// The training preset's tables, checked (the model's shape, training values).
    pub fn training_preset(&self) -> Result<Preset> {
        Preset::from_toml(&self.preset_toml())
    }

    /// The training preset's tables as TOML, what `--config`/`--preset` of the stages read.
    pub fn preset_toml(&self) -> String {
        toml::to_string(&self.preset).expect("a TOML table serializes")
    }

    /// The whole of `run.toml`.
    pub fn to_toml(&self) -> String {
        let header = "# lmlab run: the resolved settings of every stage of this run.\n\
                      # Edit a stage's table and `lmlab run` redoes that stage and the ones after it.\n\n";
        format!("{header}{}", toml::to_string(&self.tables()).expect("a TOML table serializes"))
    }

    /// Every table of the run, by name.
    fn tables(&self) -> toml::Table {
        let mut t = self.preset.clone();
        t.insert("run".into(), toml::Value::try_from(&self.run).expect("serializes"));
        t.insert("tokenizer".into(), toml::Value::try_from(&self.tokenizer).expect("serializes"));
        t.insert("rlhf".into(), self.rlhf.clone().into());
        t.insert("eval".into(), toml::Value::try_from(&self.eval).expect("serializes"));
        t.insert("report".into(), toml::Value::try_from(&self.report).expect("serializes"));
        t
    }

    /// The TOML text of the tables `names`, the part of the settings a stage reads.
    pub fn tables_text(&self, names: &[&str]) -> String {
        let mut all = self.tables();
        let t: toml::Table = names.iter().filter_map(|n| Some((n.to_string(), all.remove(*n)?))).collect();
        toml::to_string(&t).expect("a TOML table serializes")
    }

    /// A training table's `max_steps`, if it names one (for the progress bar).
    pub fn max_steps(&self, table: &str) -> Option<u64> {
        let t = if table == "rlhf" { Some(&self.rlhf) } else { self.preset.get(table).and_then(|t| t.as_table()) };
        let key = if table == "rlhf" { "steps" } else { "max_steps" };
        t?.get(key)?.as_integer().map(|n| n as u64)
    }
}

/// Every table name a run.toml may hold.
fn known_tables() -> String {
    RUN_TABLES.iter().chain(&PRESET_TABLES).map(|t| format!("[{t}]")).collect::<Vec<_>>().join(", ")
}

fn builtin_names() -> String {
    RUN_PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_run_presets_resolve_over_their_training_preset() {
        for (name, _) in RUN_PRESETS {
            let s = RunSettings::from_preset(name).unwrap();
            assert_eq!(s.run.preset, name);
            let p = s.training_preset().unwrap();
            assert!(p.world.is_some(), "{name}: a run needs a [world]");
            // run.toml round-trips.
            let again = RunSettings::from_table(toml::from_str(&s.to_toml()).unwrap()).unwrap();
            assert_eq!(again, s);
        }
    }

    #[test]
    fn a_run_preset_table_is_laid_over_the_training_preset_key_by_key() {
        let s = RunSettings::from_preset("tiny").unwrap();
        let knowledge: toml::Table = toml::from_str(lmlab_train::config::PRESETS.iter().find(|p| p.0 == "knowledge").unwrap().1).unwrap();
        // The reward table keeps knowledge's val_fraction and gains the run preset's steps.
        assert_eq!(s.preset["reward"]["val_fraction"], knowledge["reward"]["val_fraction"]);
        assert!(s.max_steps("reward").is_some());
        assert_eq!(s.preset["model"], knowledge["model"]);
    }

    #[test]
    fn bad_settings_name_the_table_and_field() {
        let s = RunSettings::from_preset("quick").unwrap();
        let mut t: toml::Table = toml::from_str(&s.to_toml()).unwrap();
        t["eval"].as_table_mut().unwrap().insert("temperature".into(), 1.0.into());
        let e = format!("{:#}", RunSettings::from_table(t).unwrap_err());
        assert!(e.contains("[eval]") && e.contains("temperature"), "{e}");

        let mut t: toml::Table = toml::from_str(&s.to_toml()).unwrap();
        t["rlhf"].as_table_mut().unwrap().insert("out".into(), "x".into());
        let e = format!("{:#}", RunSettings::from_table(t).unwrap_err());
        assert!(e.contains("[rlhf] out"), "{e}");

        let mut t: toml::Table = toml::from_str(&s.to_toml()).unwrap();
        t["train"].as_table_mut().unwrap().insert("lr".into(), (-1.0).into());
        let e = format!("{:#}", RunSettings::from_table(t).unwrap_err());
        assert!(e.contains("lr"), "{e}");

        let mut t: toml::Table = toml::from_str(&s.to_toml()).unwrap();
        t.insert("rhlf".into(), toml::Table::new().into());
        let e = format!("{:#}", RunSettings::from_table(t).unwrap_err());
        assert!(e.contains("unknown table [rhlf]") && e.contains("[rlhf]"), "{e}");
    }
}
