//! Chat templates: the Jinja templates Hugging Face and GGUF models ship
//! (`tokenizer.chat_template`), rendered with `minijinja` and its Python-compatible methods, and
//! lmlab's own template for models trained here.
//!
//! A template turns a list of messages into the exact prompt text the model was fine-tuned on;
//! getting it wrong silently degrades a chat model, so the model's own template always wins.

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// lmlab's template, written with its reserved special tokens.
pub const LMLAB_TEMPLATE: &str =
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// A Jinja template with the BOS/EOS token texts it may refer to.
    pub fn new(source: impl Into<String>, bos_token: impl Into<String>, eos_token: impl Into<String>) -> Self {
        Self { source: source.into(), bos_token: bos_token.into(), eos_token: eos_token.into() }
    }

    pub fn lmlab() -> Self {
        Self::new(LMLAB_TEMPLATE, crate::special::BOS, crate::special::EOS)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text of the template's begin-of-sequence token.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The text of the template's end-of-sequence token (for a chat model, its end of turn).
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// The prompt text for `messages`; with `add_generation_prompt`, it ends where the
    /// assistant's reply begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", &self.source).map_err(|e| anyhow!("the chat template does not parse: {e}"))?;
        let tmpl = env.get_template("chat").expect("just added");
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| anyhow!("rendering the chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_template_renders_like_the_model_card() {
        // The shape of SmolLM2's template: a default system turn when none is given.
        let src = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        let t = ChatTemplate::new(src, "<|im_start|>", "<|im_end|>");
        let out = t.render(&[Message::new("user", "Hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        let out = t.render(&[Message::new("system", "S"), Message::new("user", "Hi")], false).unwrap();
        assert_eq!(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn python_methods_and_exceptions_work() {
        let t = ChatTemplate::new("{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ bos_token }}{{ messages[0].content.strip() }}", "<s>", "</s>");
        assert_eq!(t.render(&[Message::new("user", "  x ")], false).unwrap(), "<s>x");
        let e = t.render(&[Message::new("system", "x")], false).unwrap_err().to_string();
        assert!(e.contains("first must be user"), "{e}");
    }

    #[test]
    fn lmlab_template_uses_the_reserved_tokens() {
        let out = ChatTemplate::lmlab().render(&[Message::new("user", "2+2?")], true).unwrap();
        assert_eq!(out, "<|user|>2+2?<|end|><|assistant|>");
    }
}
