//! The terminal chat's state: the conversation, the sampler settings, and the `/` commands
//! that change them. `lmlab chat` reads lines, runs them through [`ChatSession::parse`], and
//! generates each reply through the model's chat template from
//! [`ChatSession::conversation_with`].

use std::path::Path;

use anyhow::{bail, Context, Result};
use lmlab_infer::SamplingParams;
use lmlab_tokenizer::chat::Message;
use serde::{Deserialize, Serialize};

/// What a line typed into the chat asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A message to the model.
    Say(String),
    /// `/set NAME VALUE`.
    Set(String, String),
    /// `/show`.
    Show,
    /// `/system TEXT` (empty: no system message).
    System(String),
    /// `/reset`: forget the conversation.
    Reset,
    /// `/save FILE`.
    Save(String),
    /// `/load FILE`.
    Load(String),
    /// `/help`.
    Help,
    /// `/exit` or `/quit`.
    Exit,
    /// An empty line.
    Nothing,
}

/// The chat's conversation and settings; `/save` writes it as JSON and `/load` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatSession {
    pub system: Option<String>,
    /// User and assistant turns, oldest first.
    pub messages: Vec<Message>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Stop strings.
    #[serde(default)]
    pub stop: Vec<String>,
}

pub const HELP: &str = "\
Type a message and press Enter; the reply streams as it is generated. Ctrl-C stops a reply.
  /set NAME VALUE   temperature, top_k, top_p, min_p, typical_p, repetition_penalty,
                    frequency_penalty, presence_penalty, penalty_window, seed, max_tokens,
                    logit_bias ID=BIAS[,ID=BIAS...], stop TEXT (adds one); 'none' clears an option
  /show             the settings, the system message and the conversation's length
  /system TEXT      set the system message (/system alone removes it)
  /reset            forget the conversation (settings stay)
  /save FILE        write the conversation and settings as JSON
  /load FILE        read them back
  /help             this text
  /exit             leave (or Ctrl-D)";

fn parse_opt<T: std::str::FromStr>(v: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    if v == "none" || v == "off" {
        return Ok(None);
    }
    v.parse::<T>().map(Some).map_err(|e| anyhow::anyhow!("{v:?}: {e}"))
}

fn parse_num<T: std::str::FromStr>(v: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| anyhow::anyhow!("{v:?}: {e}"))
}

impl ChatSession {
    pub fn new(sampling: SamplingParams, max_tokens: usize, system: Option<String>) -> Self {
        Self { system, messages: Vec::new(), sampling, max_tokens, stop: Vec::new() }
    }

    /// Reads one typed line.
    pub fn parse(line: &str) -> Command {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Command::Nothing;
        }
        let Some(rest) = line.trim_start().strip_prefix('/') else { return Command::Say(line.to_string()) };
        let (cmd, arg) = rest.split_once(char::is_whitespace).map_or((rest, ""), |(c, a)| (c, a.trim()));
        match cmd {
            "set" => {
                let (k, v) = arg.split_once(char::is_whitespace).map_or((arg, ""), |(k, v)| (k, v.trim()));
                Command::Set(k.to_string(), v.to_string())
            }
            "show" => Command::Show,
            "system" => Command::System(arg.to_string()),
            "reset" | "clear" => Command::Reset,
            "save" => Command::Save(arg.to_string()),
            "load" => Command::Load(arg.to_string()),
            "help" | "?" => Command::Help,
            "exit" | "quit" | "bye" => Command::Exit,
            // "/..." that is no command is a message (a path, say).
            _ => Command::Say(line.to_string()),
        }
    }

    /// `/set NAME VALUE`: changes one setting, checked as the sampler checks it. Returns what
    /// it now is.
    pub fn set(&mut self, name: &str, value: &str) -> Result<String> {
        if value.is_empty() {
            bail!("/set {name} needs a value (see /help)");
        }
        let mut s = self.sampling.clone();
        let key = name.replace('-', "_");
        match key.as_str() {
            "temperature" | "temp" => s.temperature = parse_num(value)?,
            "top_k" => s.top_k = parse_opt(value)?,
            "top_p" => s.top_p = parse_opt(value)?,
            "min_p" => s.min_p = parse_opt(value)?,
            "typical_p" => s.typical_p = parse_opt(value)?,
            "repetition_penalty" => s.repetition_penalty = parse_opt(value)?.unwrap_or(1.0),
            "frequency_penalty" => s.frequency_penalty = parse_opt(value)?.unwrap_or(0.0),
            "presence_penalty" => s.presence_penalty = parse_opt(value)?.unwrap_or(0.0),
            "penalty_window" => s.penalty_window = parse_opt(value)?.unwrap_or(0),
            "seed" => s.seed = parse_num(value)?,
            "logit_bias" => {
                s.logit_bias = if value == "none" {
                    Vec::new()
                } else {
                    value
                        .split(',')
                        .map(|p| {
                            let (id, b) = p.split_once('=').with_context(|| format!("{p:?}: expected ID=BIAS"))?;
                            Ok((parse_num(id.trim())?, parse_num(b.trim())?))
                        })
                        .collect::<Result<_>>()?
                }
            }
            "max_tokens" => {
                let m: usize = parse_num(value)?;
                anyhow::ensure!(m > 0, "max_tokens must be at least 1");
                self.max_tokens = m;
                return Ok(format!("max_tokens = {m}"));
            }
            "stop" => {
                if value == "none" {
                    self.stop.clear();
                } else {
                    self.stop.push(value.to_string());
                }
                return Ok(format!("stop = {:?}", self.stop));
            }
            _ => bail!("unknown setting {name:?} (see /help)"),
        }
        s.validate()?;
        self.sampling = s;
        Ok(format!("{name} = {value}"))
    }

    /// `/show`.
    pub fn show(&self) -> String {
        let s = &self.sampling;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "none".into());
        format!(
            "temperature {}  top_k {}  top_p {}  min_p {}  typical_p {}\n\
             repetition_penalty {}  frequency_penalty {}  presence_penalty {}  penalty_window {}\n\
             seed {}  max_tokens {}  logit_bias {:?}  stop {:?}\n\
             system: {}\n\
             conversation: {} messages",
            s.temperature,
            opt(s.top_k.map(|v| v.to_string())),
            opt(s.top_p.map(|v| v.to_string())),
            opt(s.min_p.map(|v| v.to_string())),
            opt(s.typical_p.map(|v| v.to_string())),
            s.repetition_penalty,
            s.frequency_penalty,
            s.presence_penalty,
            s.penalty_window,
            s.seed,
            self.max_tokens,
            s.logit_bias,
            self.stop,
            self.system.as_deref().unwrap_or("(none)"),
            self.messages.len(),
        )
    }

    /// `/system TEXT`.
    pub fn set_system(&mut self, text: &str) {
        self.system = (!text.is_empty()).then(|| text.to_string());
    }

    /// The messages a reply to `user` is generated from: the system message, the conversation,
    /// then `user`.
    pub fn conversation_with(&self, user: &str) -> Vec<Message> {
        let mut m: Vec<Message> = self.system.iter().map(|s| Message::new("system", s)).collect();
        m.extend(self.messages.iter().cloned());
        m.push(Message::new("user", user));
        m
    }

    /// Records a finished exchange.
    pub fn add_turn(&mut self, user: &str, reply: &str) {
        self.messages.push(Message::new("user", user));
        self.messages.push(Message::new("assistant", reply));
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let s: Self = serde_json::from_str(&text).with_context(|| format!("{} is not a saved chat", path.display()))?;
        s.sampling.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_settings_apply() {
        assert_eq!(ChatSession::parse("hello /there"), Command::Say("hello /there".into()));
        assert_eq!(ChatSession::parse("/set temperature 0.7"), Command::Set("temperature".into(), "0.7".into()));
        assert_eq!(ChatSession::parse("/system Be brief.  "), Command::System("Be brief.".into()));
        assert_eq!(ChatSession::parse("  "), Command::Nothing);
        assert_eq!(ChatSession::parse("/usr/bin is a folder"), Command::Say("/usr/bin is a folder".into()));
        let mut s = ChatSession::new(SamplingParams::default(), 50, None);
        s.set("temperature", "0.7").unwrap();
        s.set("top-k", "40").unwrap();
        s.set("min_p", "0.05").unwrap();
        s.set("logit_bias", "5=-100,7=2.5").unwrap();
        s.set("max_tokens", "12").unwrap();
        assert_eq!((s.sampling.temperature, s.sampling.top_k, s.sampling.min_p), (0.7, Some(40), Some(0.05)));
        assert_eq!(s.sampling.logit_bias, vec![(5, -100.0), (7, 2.5)]);
        assert_eq!(s.max_tokens, 12);
        assert!(s.set("top_p", "1.5").is_err(), "the sampler's own check");
        assert!(s.set("nonsense", "1").is_err());
        assert_eq!(s.sampling.top_p, None, "a rejected value changes nothing");
        s.set("top_k", "none").unwrap();
        assert_eq!(s.sampling.top_k, None);
        assert!(s.show().contains("temperature 0.7"));
        s.set_system("S");
        s.add_turn("hi", "hello");
        let conv = s.conversation_with("again");
        assert_eq!(conv.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["system", "user", "assistant", "user"]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("chat.json");
        s.save(&f).unwrap();
        assert_eq!(ChatSession::load(&f).unwrap(), s);
    }
}
