//! OpenAI's request fields, read and checked, and turned into an engine request.
//!
//! One struct reads both endpoints' bodies (`messages` for chat completions, `prompt` for
//! completions); a field of the wrong type is a 400 naming the field. Limits follow OpenAI's
//! where lmlab has no reason to differ (penalties in [-2, 2], at most 4 stop strings, bias in
//! [-100, 100], top_logprobs up to 20); lmlab's own samplers (top_k, min_p, typical_p,
//! repetition_penalty) are accepted beside them.

use std::collections::BTreeMap;

use lmlab_infer::{GenerateRequest, Model, SamplingParams};
use lmlab_model::CausalLm;
use lmlab_tokenizer::chat::Message;
use serde::Deserialize;

use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The body of `POST /v1/completions` or `/v1/chat/completions` (unknown fields are ignored).
#[derive(Debug, Deserialize, Default)]
pub(crate) struct Body {
    pub model: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub prompt: Option<PromptField>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub n: Option<u64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<OneOrMany>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// A bool for chat completions, an integer (top alternatives) for completions.
    pub logprobs: Option<serde_json::Value>,
    pub top_logprobs: Option<u64>,
    pub user: Option<String>,
    pub echo: Option<bool>,
    pub top_k: Option<u64>,
    pub min_p: Option<f64>,
    pub typical_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
}

/// Which endpoint a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
}

/// A checked request, ready for the scheduler.
pub(crate) struct Prepared {
    pub req: GenerateRequest,
    pub stop_strings: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Alternatives per token to report, when log-probabilities were asked for.
    pub logprobs: Option<usize>,
    /// Completions with `echo`: the prompt's text goes before the reply.
    pub echo: Option<String>,
}

/// Parses a body; malformed JSON or a field of the wrong type is a 400.
pub(crate) fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("The body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::invalid(format!("The body must be a JSON object: {inner}"))
        } else {
            ApiError::invalid_param(&path, format!("Invalid value for '{path}': {inner}"))
        }
    })
}

fn check_range(name: &str, v: Option<f64>, lo: f64, hi: f64, lo_open: bool) -> Result<(), ApiError> {
    if let Some(x) = v {
        let ok = x.is_finite() && (if lo_open { x > lo } else { x >= lo }) && x <= hi;
        if !ok {
            let open = if lo_open { "(" } else { "[" };
            return Err(ApiError::invalid_param(name, format!("'{name}' must be in {open}{lo}, {hi}], got {x}")));
        }
    }
    Ok(())
}

/// The roles a chat message may have.
const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

fn messages(list: &[ChatMessage]) -> Result<Vec<Message>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::invalid_param("messages", "'messages' must hold at least one message"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].role"),
                    format!("Unknown role '{}' in messages[{i}]; expected one of {}", m.role, ROLES.join(", ")),
                ));
            }
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(ApiError::invalid_param(
                                &format!("messages[{i}].content"),
                                format!("Content parts of type '{}' are not supported (text only)", p.kind),
                            ));
                        }
                        text.push_str(p.text.as_deref().unwrap_or(""));
                    }
                    text
                }
            };
            // Templates know system, user and assistant; OpenAI's "developer" is a system turn.
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            Ok(Message::new(role, &content))
        })
        .collect()
}

/// Checks `body` for `endpoint` and builds the engine request. `max_n` is the most samples a
/// request may ask for (the batch size).
pub(crate) fn prepare(body: Body, endpoint: Endpoint, model: &Model, max_n: usize) -> Result<Prepared, ApiError> {
    let ctx = model.context_length();
    let tok = model.tokenizer();
    if let Some(user) = &body.user {
        tracing::debug!(user = %user, "request");
    }
    let mut echo = None;
    let prompt = match endpoint {
        Endpoint::Chat => {
            let list = body.messages.as_deref().ok_or_else(|| ApiError::invalid_param("messages", "'messages' is required"))?;
            let msgs = messages(list)?;
            model.chat_prompt(&msgs).map_err(|e| ApiError::invalid_param("messages", format!("{e:#}")))?
        }
        Endpoint::Completions => {
            let text = match body.prompt {
                None => return Err(ApiError::invalid_param("prompt", "'prompt' is required")),
                Some(PromptField::Text(t)) => Ok(t),
                Some(PromptField::Texts(mut v)) if v.len() == 1 => Ok(v.remove(0)),
                Some(PromptField::Ids(ids)) => Err(ids),
                Some(PromptField::IdLists(mut v)) if v.len() == 1 => Err(v.remove(0)),
                Some(_) => {
                    return Err(ApiError::invalid_param("prompt", "Several prompts in one request are not supported; send one per request"))
                }
            };
            match text {
                Ok(t) => {
                    if body.echo == Some(true) {
                        echo = Some(t.clone());
                    }
                    lmlab_infer::prompt_ids(tok, &t).map_err(|e| ApiError::invalid_param("prompt", format!("{e:#}")))?
                }
                Err(ids) => {
                    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= model.vocab_size()) {
                        return Err(ApiError::invalid_param(
                            "prompt",
                            format!("Token {bad} is outside the vocabulary of {}", model.vocab_size()),
                        ));
                    }
                    if body.echo == Some(true) {
                        echo = Some(tok.decode(&ids).unwrap_or_default());
                    }
                    ids
                }
            }
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid_param("prompt", "The prompt is empty"));
    }
    if prompt.len() >= ctx {
        return Err(ApiError::invalid_param(
            if endpoint == Endpoint::Chat { "messages" } else { "prompt" },
            format!("This model's maximum context length is {ctx} tokens, and the prompt has {} (no room left to generate)", prompt.len()),
        )
        .with_code("context_length_exceeded"));
    }
    let room = ctx - prompt.len();
    let max_tokens = match body.max_completion_tokens.or(body.max_tokens) {
        None => room,
        Some(0) => return Err(ApiError::invalid_param("max_tokens", "'max_tokens' must be at least 1")),
        Some(m) if m as usize > room => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!(
                    "This model's maximum context length is {ctx} tokens: {} in the prompt and {m} to generate do not fit",
                    prompt.len()
                ),
            )
            .with_code("context_length_exceeded"))
        }
        Some(m) => m as usize,
    };
    let n = body.n.unwrap_or(1) as usize;
    if n == 0 || n > max_n {
        return Err(ApiError::invalid_param("n", format!("'n' must be between 1 and {max_n} (the server's batch size), got {n}")));
    }
    check_range("temperature", body.temperature, 0.0, 2.0, false)?;
    check_range("top_p", body.top_p, 0.0, 1.0, true)?;
    check_range("min_p", body.min_p, 0.0, 1.0, true)?;
    check_range("typical_p", body.typical_p, 0.0, 1.0, true)?;
    check_range("presence_penalty", body.presence_penalty, -2.0, 2.0, false)?;
    check_range("frequency_penalty", body.frequency_penalty, -2.0, 2.0, false)?;
    check_range("repetition_penalty", body.repetition_penalty, 0.0, 10.0, true)?;
    if body.top_k == Some(0) {
        return Err(ApiError::invalid_param("top_k", "'top_k' must be at least 1"));
    }
    let mut logit_bias = Vec::new();
    for (k, &v) in body.logit_bias.iter().flatten() {
        let id: u32 = k.parse().map_err(|_| ApiError::invalid_param("logit_bias", format!("logit_bias key '{k}' is not a token id")))?;
        if id as usize >= model.vocab_size() {
            return Err(ApiError::invalid_param("logit_bias", format!("Token {id} is outside the vocabulary of {}", model.vocab_size())));
        }
        check_range("logit_bias", Some(v), -100.0, 100.0, false)?;
        logit_bias.push((id, v as f32));
    }
    let stop_strings = match body.stop {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    if stop_strings.len() > 4 {
        return Err(ApiError::invalid_param("stop", "At most 4 stop sequences"));
    }
    let logprobs = match (endpoint, &body.logprobs) {
        (_, None | Some(serde_json::Value::Null)) => None,
        (Endpoint::Chat, Some(serde_json::Value::Bool(b))) => b.then(|| body.top_logprobs.unwrap_or(0) as usize),
        (Endpoint::Completions, Some(v)) if v.is_u64() => v.as_u64().map(|k| k as usize),
        (Endpoint::Chat, Some(_)) => return Err(ApiError::invalid_param("logprobs", "'logprobs' must be a boolean")),
        (Endpoint::Completions, Some(_)) => return Err(ApiError::invalid_param("logprobs", "'logprobs' must be a non-negative integer")),
    };
    if body.top_logprobs.is_some() && endpoint == Endpoint::Chat && logprobs.is_none() {
        return Err(ApiError::invalid_param("top_logprobs", "'top_logprobs' needs 'logprobs': true"));
    }
    if logprobs.is_some_and(|k| k > 20) {
        return Err(ApiError::invalid_param("top_logprobs", "At most 20 alternatives per token"));
    }
    let sampling = SamplingParams {
        temperature: body.temperature.unwrap_or(1.0),
        top_k: body.top_k.map(|k| k as usize),
        top_p: body.top_p,
        min_p: body.min_p,
        typical_p: body.typical_p,
        repetition_penalty: body.repetition_penalty.unwrap_or(1.0),
        frequency_penalty: body.frequency_penalty.unwrap_or(0.0),
        presence_penalty: body.presence_penalty.unwrap_or(0.0),
        penalty_window: 0,
        logit_bias,
        seed: body.seed.map_or_else(rand::random, |s| s as u64),
    };
    sampling.validate().map_err(|e| ApiError::invalid(format!("{e:#}")))?;
    let req = GenerateRequest { prompt, max_tokens, sampling, stop_ids: tok.special().stop_ids.clone(), use_cache: true, n, logprobs };
    let stream = body.stream.unwrap_or(false);
    let include_usage = stream && body.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    Ok(Prepared { req, stop_strings, stream, include_usage, logprobs, echo })
}
