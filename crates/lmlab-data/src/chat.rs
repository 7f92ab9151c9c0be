//! Conversations for supervised fine-tuning, read from the shapes datasets are published in into
//! one: a list of [`Message`]s (an optional system turn, then user and assistant turns
//! alternating, ending with the assistant's reply) and where it came from.
//!
//! The shape is detected per record from its keys ([`Format`]): the built-in world's `sft.jsonl`,
//! OpenAI `messages`, ShareGPT `conversations`, Alpaca, self-instruct seed tasks and BELLE. A
//! file is JSON Lines or one JSON array, plain or compressed (`.gz`, `.zst`).
//!
//! One bad record fails the whole file, like a compiler: the error names the first bad line and
//! what is wrong with it, then how many other lines are bad and which. Training on a file that was
//! quietly thinned out is worse than not starting; fix or filter the data first. The one record
//! that gives no conversation without being an error is a BELLE question with an empty
//! `std_answer` (the BELLE eval set leaves the reference out for open-ended questions):
//! [`read_chat_file`] lists those in [`ChatFile::unanswered`].
//!
//! Preference data is not SFT data: reading hh-rlhf's `chosen`/`rejected` pairs is an error that
//! says so, and [`parse_hh_transcript`] turns one of its transcripts into messages for the
//! reward-model and DPO work.

use std::fmt;
use std::io::BufRead;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
pub use lmlab_tokenizer::chat::Message;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    /// Where it came from, for error messages and reports: "FILE:LINE" (or "FILE:record N" in a
    /// JSON array), followed by ` "instances"[i]` for a self-instruct instance. [`parse_record`]
    /// knows no file: it leaves only the part within the record.
    pub source: String,
}

/// The record shapes read, detected from a record's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// The built-in world's `sft.jsonl`: OpenAI `messages` plus `task` and `language`.
    World,
    /// `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}`.
    OpenAi,
    /// `{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}` ("user" and
    /// "assistant" accepted too).
    ShareGpt,
    /// `{"instruction", "input", "output"}`: the input, when there is one, follows the
    /// instruction after a blank line.
    Alpaca,
    /// self-instruct's seed tasks: `instruction` and `instances: [{input, output}]`, one
    /// conversation per instance.
    SelfInstruct,
    /// BELLE's eval set: `{"question", "std_answer"}`.
    Belle,
}

/// What unknown-shape errors list as accepted.
const ACCEPTED: &str = "\"messages\" (OpenAI; with \"task\": the built-in world), \"conversations\" (ShareGPT), \
     \"instruction\" + \"output\" (Alpaca), \"instruction\" + \"instances\" (self-instruct), \"question\" + \"std_answer\" (BELLE)";

const PREFERENCE_DATA: &str = "a preference pair (\"chosen\" and \"rejected\" transcripts, as in Anthropic hh-rlhf), \
     not an SFT conversation: preference data is for reward models and DPO, which read each transcript with chat::parse_hh_transcript";

/// A file's conversations, and the records that gave none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatFile {
    pub conversations: Vec<Conversation>,
    /// Records read (blank lines are not records).
    pub records: usize,
    /// Where the BELLE records with an empty `std_answer` are ("FILE:LINE"): questions without a
    /// reference answer, which give no conversation.
    pub unanswered: Vec<String>,
}

/// The conversations of a file (see [`read_chat_file`]).
pub fn read_conversations(path: &Path) -> Result<Vec<Conversation>> {
    Ok(read_chat_file(path)?.conversations)
}

/// Reads every record of a JSON Lines or JSON array file (`.gz`, `.zst` decompressed) into
/// conversations. Any bad record fails the file; the error names the first and counts the rest.
pub fn read_chat_file(path: &Path) -> Result<ChatFile> {
    let file = path.display().to_string();
    let mut out = ChatFile { conversations: Vec::new(), records: 0, unanswered: Vec::new() };
    let mut bad: Vec<(Place, String)> = Vec::new();
    for_each_record(path, |place, record| {
        out.records += 1;
        match record.and_then(|value| parse_record(&value)) {
            Ok((_, conversations)) if conversations.is_empty() => out.unanswered.push(format!("{file}:{place}")),
            Ok((_, conversations)) => out.conversations.extend(conversations.into_iter().map(|c| c.located(&file, &place))),
            Err(message) => bad.push((place, message)),
        }
    })?;
    if let Some(error) = bad_records_error(&file, &bad) {
        return Err(error);
    }
    if out.records == 0 {
        bail!("{file}: no records (the file is empty or has only blank lines)");
    }
    Ok(out)
}

/// Where a record is in its file, counted from 1.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place {
    Line(usize),
    /// An element of a file that is one JSON array: its records have no lines of their own.
    Record(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "{n}"),
            Place::Record(n) => write!(f, "record {n}"),
        }
    }
}

impl Conversation {
    fn located(mut self, file: &str, place: &Place) -> Self {
        self.source = if self.source.is_empty() { format!("{file}:{place}") } else { format!("{file}:{place} {}", self.source) };
        self
    }
}

/// The first bad record's error, with how many others are bad and where (the first few).
pub(crate) fn bad_records_error(file: &str, bad: &[(Place, String)]) -> Option<anyhow::Error> {
    const LISTED: usize = 8;
    let ((place, message), rest) = bad.split_first()?;
    let mut text = format!("{file}:{place}: {message}");
    if !rest.is_empty() {
        let places: Vec<String> = rest.iter().take(LISTED).map(|(p, _)| p.to_string()).collect();
        let more = if rest.len() > LISTED { ", …" } else { "" };
        let noun = match (place, rest.len()) {
            (Place::Line(_), 1) => "line",
            (Place::Line(_), _) => "lines",
            (Place::Record(_), 1) => "record",
            (Place::Record(_), _) => "records",
        };
        text += &format!(" (and {} other bad {noun}: {}{more})", rest.len(), places.join(", "));
    }
    Some(anyhow!(text))
}

/// Calls `visit` with each record of the file: JSON Lines (blank lines skipped), or one JSON
/// array when the first character is `[`. A line that is not JSON comes as its error.
pub(crate) fn for_each_record(path: &Path, mut visit: impl FnMut(Place, Result<Value, String>)) -> Result<()> {
    let mut reader = crate::input::open_decompressed(path)?;
    let start = reader.fill_buf().with_context(|| format!("reading {}", path.display()))?;
    if start.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let records: Vec<Value> =
            serde_json::from_reader(reader).map_err(|e| anyhow!("{}: not a JSON array of records: {e}", path.display()))?;
        records.into_iter().enumerate().for_each(|(i, value)| visit(Place::Record(i + 1), Ok(value)));
        return Ok(());
    }
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        if reader.read_until(b'\n', &mut line).with_context(|| format!("{}:{n}: reading", path.display()))? == 0 {
            break;
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            visit(Place::Line(n), serde_json::from_slice(&line).map_err(|e| malformed(&e)));
        }
    }
    Ok(())
}

/// A JSON error for one line: serde's "at line 1" would be the line within the line.
fn malformed(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
    format!("malformed JSON at column {}: {message}", e.column())
}

/// One record's shape and conversations (sources hold only the place within the record, see
/// [`Conversation::source`]). A self-instruct record gives one conversation per instance; a
/// BELLE record without an answer gives none.
pub fn parse_record(value: &Value) -> Result<(Format, Vec<Conversation>), String> {
    let record = value.as_object().ok_or_else(|| format!("a record must be a JSON object, not {}", kind_of(value)))?;
    let format = detect(record)?;
    let whole = |messages| vec![Conversation { messages, source: String::new() }];
    let conversations = match format {
        Format::World | Format::OpenAi => whole(listed_turns(record, &OPENAI_TURNS)?),
        Format::ShareGpt => whole(listed_turns(record, &SHAREGPT_TURNS)?),
        Format::Alpaca => whole(alpaca_turns(record)?),
        Format::SelfInstruct => self_instruct_conversations(record)?,
        Format::Belle => belle_turns(record)?.map(whole).unwrap_or_default(),
    };
    Ok((format, conversations))
}

fn detect(record: &Map<String, Value>) -> Result<Format, String> {
    let has = |key: &str| record.contains_key(key);
    Ok(if has("messages") && has("task") {
        Format::World
    } else if has("messages") {
        Format::OpenAi
    } else if has("conversations") {
        Format::ShareGpt
    } else if has("instruction") && has("instances") {
        Format::SelfInstruct
    } else if has("instruction") && has("output") {
        Format::Alpaca
    } else if has("question") && has("std_answer") {
        Format::Belle
    } else if has("chosen") && has("rejected") {
        return Err(PREFERENCE_DATA.to_string());
    } else {
        let keys: Vec<String> = record.keys().map(|k| format!("\"{k}\"")).collect();
        let keys = if keys.is_empty() { "none".to_string() } else { keys.join(", ") };
        return Err(format!("unknown record shape: its keys are {keys}; accepted: {ACCEPTED}"));
    })
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `"key"`, or `at."key"` inside a list item, as errors name a field.
fn field_name(at: &str, key: &str) -> String {
    if at.is_empty() {
        format!("\"{key}\"")
    } else {
        format!("{at}.\"{key}\"")
    }
}

/// A string field that must be there and must not be blank.
pub(crate) fn required_text<'a>(object: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a str, String> {
    let text = optional_text(object, at, key)?.ok_or_else(|| format!("{} is missing", field_name(at, key)))?;
    if text.trim().is_empty() {
        return Err(format!("{} is empty", field_name(at, key)));
    }
    Ok(text)
}

/// A string field that may be absent or null.
pub(crate) fn optional_text<'a>(object: &'a Map<String, Value>, at: &str, key: &str) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{} is {}, not a string", field_name(at, key), kind_of(other))),
    }
}

/// How a list format names its turns and their fields.
struct TurnList {
    list: &'static str,
    role_key: &'static str,
    content_key: &'static str,
    role_of: fn(&str) -> Option<&'static str>,
    roles_accepted: &'static str,
}

const OPENAI_TURNS: TurnList = TurnList {
    list: "messages",
    role_key: "role",
    content_key: "content",
    role_of: |role| ["system", "user", "assistant"].into_iter().find(|&r| r == role),
    roles_accepted: "system, user or assistant",
};

const SHAREGPT_TURNS: TurnList = TurnList {
    list: "conversations",
    role_key: "from",
    content_key: "value",
    role_of: |from| match from {
        "human" | "user" => Some("user"),
        "gpt" | "assistant" => Some("assistant"),
        "system" => Some("system"),
        _ => None,
    },
    roles_accepted: "human, gpt, system, user or assistant",
};

/// The turns of a list of role/content objects (OpenAI, ShareGPT), checked for roles, empty
/// content and order.
fn listed_turns(record: &Map<String, Value>, shape: &TurnList) -> Result<Vec<Message>, String> {
    let list = shape.list;
    let items = match record.get(list) {
        Some(Value::Array(items)) => items,
        other => return Err(format!("\"{list}\" is {}, not a list of turns", other.map_or("missing", kind_of))),
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("\"{list}\"[{i}]");
        let turn = item.as_object().ok_or_else(|| format!("{at} is {}, not an object", kind_of(item)))?;
        let name = optional_text(turn, &at, shape.role_key)?.ok_or_else(|| format!("{} is missing", field_name(&at, shape.role_key)))?;
        let role = (shape.role_of)(name).ok_or_else(|| format!("{at} has role \"{name}\" (expected {})", shape.roles_accepted))?;
        messages.push(Message::new(role, required_text(turn, &at, shape.content_key)?));
    }
    check_order(&messages, list)?;
    Ok(messages)
}

/// An optional system turn first, then user and assistant alternating from the user, ending
/// with the assistant: the shape chat templates accept (several raise an error on anything
/// else) and the one SFT learns from, each reply answering the turn before it.
fn check_order(messages: &[Message], list: &str) -> Result<(), String> {
    if messages.is_empty() {
        return Err(format!("\"{list}\" is empty"));
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(format!("\"{list}\" has no assistant turn (nothing to learn from)"));
    }
    let first_turn = usize::from(messages[0].role == "system");
    for (i, m) in messages.iter().enumerate().skip(first_turn) {
        let expected = if (i - first_turn) % 2 == 0 { "user" } else { "assistant" };
        if m.role == "system" {
            return Err(format!("\"{list}\"[{i}] is a system turn (only the first turn may be)"));
        }
        if m.role != expected {
            return Err(format!(
                "\"{list}\"[{i}] is {} where {} belongs (after an optional system turn, user and assistant alternate, user first)",
                a_turn(&m.role),
                a_turn(expected)
            ));
        }
    }
    let last = messages.len() - 1;
    match messages[last].role.as_str() {
        "assistant" => Ok(()),
        role => Err(format!("\"{list}\" ends with {} at [{last}] (the last turn must be the assistant's reply)", a_turn(role))),
    }
}

fn a_turn(role: &str) -> String {
    let article = if role == "assistant" { "an" } else { "a" };
    format!("{article} {role} turn")
}

/// The user's turn of an instruction with an optional input: Alpaca's and self-instruct's
/// layout, the input after a blank line.
fn instruction_turn(instruction: &str, input: Option<&str>) -> Message {
    match input {
        Some(input) if !input.trim().is_empty() => Message::new("user", &format!("{instruction}\n\n{input}")),
        _ => Message::new("user", instruction),
    }
}

fn alpaca_turns(record: &Map<String, Value>) -> Result<Vec<Message>, String> {
    let user = instruction_turn(required_text(record, "", "instruction")?, optional_text(record, "", "input")?);
    Ok(vec![user, Message::new("assistant", required_text(record, "", "output")?)])
}

fn self_instruct_conversations(record: &Map<String, Value>) -> Result<Vec<Conversation>, String> {
    let instruction = required_text(record, "", "instruction")?;
    let instances = match record.get("instances") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err("\"instances\" is empty".to_string()),
        other => return Err(format!("\"instances\" is {}, not a list", other.map_or("missing", kind_of))),
    };
    let mut conversations = Vec::with_capacity(instances.len());
    for (i, item) in instances.iter().enumerate() {
        let at = format!("\"instances\"[{i}]");
        let instance = item.as_object().ok_or_else(|| format!("{at} is {}, not an object", kind_of(item)))?;
        let user = instruction_turn(instruction, optional_text(instance, &at, "input")?);
        let messages = vec![user, Message::new("assistant", required_text(instance, &at, "output")?)];
        conversations.push(Conversation { messages, source: at });
    }
    Ok(conversations)
}

/// A BELLE question and its reference answer; `None` when the answer is empty, which the eval
/// set does on purpose (369 of its 1,000 questions, open-ended ones): no answer, no conversation.
fn belle_turns(record: &Map<String, Value>) -> Result<Option<Vec<Message>>, String> {
    let question = required_text(record, "", "question")?;
    match optional_text(record, "", "std_answer")? {
        Some(answer) if !answer.trim().is_empty() => Ok(Some(vec![Message::new("user", question), Message::new("assistant", answer)])),
        Some(_) => Ok(None),
        None => Err("\"std_answer\" is null".to_string()),
    }
}

/// The speaker labels of an hh-rlhf transcript; a turn starts only where one opens a paragraph.
const HH_LABELS: [(&str, &str); 2] = [("\n\nHuman:", "user"), ("\n\nAssistant:", "assistant")];

/// The turns of one Anthropic hh-rlhf transcript ("\n\nHuman: …\n\nAssistant: …") as user and
/// assistant messages. Decided from the harmless-base test split (2,312 pairs, 4,624 transcripts):
///
/// - Only a label opening a paragraph starts a turn. 73 transcripts have "Human:" or
///   "Assistant:" inside a turn (a line break short of a paragraph, or a turn the collection ran
///   together): that text stays in its turn, since splitting there would invent turns.
/// - Consecutive turns of one speaker are joined with a blank line (13 transcripts have two
///   Assistant turns in a row). Roles then alternate, as chat templates require, and each pair's
///   chosen and rejected transcripts share their prompt (5 pairs otherwise would not).
/// - Turns are trimmed: a space follows each label, and some turns start with a second.
/// - An empty final Assistant turn is kept as an empty message: 4 chosen transcripts end so, the
///   rater preferring no answer to a harmful one. Any other empty turn is an error.
/// - Text before the first label, an Assistant turn first, or a Human turn last is an error.
///   Leading whitespace is not text, and the first label may open the transcript without its
///   blank line.
pub fn parse_hh_transcript(text: &str) -> Result<Vec<Message>, String> {
    // The first label may open the text without its blank line.
    let text = format!("\n\n{}", text.trim_start());
    let labels = hh_labels(&text);
    let Some(&(first, ..)) = labels.first() else {
        return Err("no \"Human:\" or \"Assistant:\" turn".to_string());
    };
    if first > 0 {
        return Err(format!("text before the first \"Human:\": {:?}", excerpt(&text[..first])));
    }
    let mut messages: Vec<Message> = Vec::new();
    for (k, &(at, role, label_len)) in labels.iter().enumerate() {
        let end = labels.get(k + 1).map_or(text.len(), |next| next.0);
        let content = text[at + label_len..end].trim();
        match messages.last_mut() {
            Some(last) if last.role == role => join_turns(&mut last.content, content),
            _ => messages.push(Message::new(role, content)),
        }
    }
    check_hh_turns(&messages)?;
    Ok(messages)
}

/// Every label's (byte offset, role, label length), in order.
fn hh_labels(text: &str) -> Vec<(usize, &'static str, usize)> {
    let mut labels: Vec<_> =
        HH_LABELS.iter().flat_map(|&(label, role)| text.match_indices(label).map(move |(at, _)| (at, role, label.len()))).collect();
    labels.sort_unstable_by_key(|l| l.0);
    labels
}

fn join_turns(content: &mut String, more: &str) {
    if content.is_empty() {
        *content = more.to_string();
    } else if !more.is_empty() {
        *content = format!("{content}\n\n{more}");
    }
}

fn check_hh_turns(messages: &[Message]) -> Result<(), String> {
    let speaker = |m: &Message| if m.role == "user" { "Human" } else { "Assistant" };
    if messages[0].role != "user" {
        return Err("the first turn is the Assistant's (expected a Human turn first)".to_string());
    }
    let last = messages.len() - 1;
    if messages[last].role != "assistant" {
        return Err(format!("ends with a Human turn (turn {}; expected the Assistant's reply last)", last + 1));
    }
    match messages.iter().enumerate().find(|&(i, m)| m.content.is_empty() && i != last) {
        Some((i, m)) => Err(format!("turn {} ({}) is empty", i + 1, speaker(m))),
        None => Ok(()),
    }
}

/// The start of a long text, for an error message.
fn excerpt(text: &str) -> String {
    const CHARS: usize = 60;
    let text = text.trim();
    match text.char_indices().nth(CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
