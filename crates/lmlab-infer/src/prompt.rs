//! From text to prompt ids and back: the model's chat template or its begin token, and stop
//! strings checked against the decoded text.

use anyhow::{Context, Result};
use lmlab_tokenizer::chat::Message;
use lmlab_tokenizer::Tokenizer;

use crate::model::Model;

/// Prompt ids: the tokenizer's `<|bos|>` if it has one (training documents start with it),
/// then the text.
pub fn prompt_ids(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = tok.special().bos.into_iter().collect();
    ids.extend(tok.encode(text)?);
    Ok(ids)
}

impl Model {
    /// Prompt ids for `text`: through the model's chat template as a user message (after an
    /// optional system message) when `chat`, else [`prompt_ids`].
    pub fn prompt(&self, text: &str, chat: bool, system: Option<&str>) -> Result<Vec<u32>> {
        if !chat {
            return prompt_ids(self.tokenizer(), text);
        }
        let mut messages: Vec<Message> = system.map(|s| Message::new("system", s)).into_iter().collect();
        messages.push(Message::new("user", text));
        self.chat_prompt(&messages)
    }

    /// Prompt ids for a conversation, rendered with the model's chat template and ending in
    /// the assistant's turn.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let template = self.chat_template().with_context(|| format!("this {} model has no chat template", self.format()))?;
        self.tokenizer().encode(&template.render(messages, true)?)
    }
}

/// Decoding generated ids for display and checking stop strings: stop tokens are left out of
/// the text, and the text ends before the first stop string.
pub struct StopText<'a> {
    tok: &'a Tokenizer,
    stop_ids: Vec<u32>,
    strings: Vec<String>,
}

impl<'a> StopText<'a> {
    /// Stops at `tok`'s stop tokens and at any of `strings`.
    pub fn new(tok: &'a Tokenizer, strings: Vec<String>) -> Self {
        Self { tok, stop_ids: tok.special().stop_ids.clone(), strings }
    }

    /// The ids that end generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The text of `ids` without stop tokens (stop strings left in).
    pub fn text(&self, ids: &[u32]) -> String {
        let kept: Vec<u32> = ids.iter().copied().filter(|id| !self.stop_ids.contains(id)).collect();
        self.tok.decode(&kept).unwrap_or_default()
    }

    /// Whether the text of `ids` contains a stop string.
    pub fn hit(&self, ids: &[u32]) -> bool {
        !self.strings.is_empty() && {
            let text = self.text(ids);
            self.strings.iter().any(|s| text.contains(s.as_str()))
        }
    }

    /// The text of `ids` cut before the first stop string.
    pub fn final_text(&self, ids: &[u32]) -> String {
        let mut text = self.text(ids);
        if let Some(cut) = self.strings.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
        }
        text
    }
}
