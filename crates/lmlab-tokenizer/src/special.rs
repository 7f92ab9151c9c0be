//! lmlab's reserved special tokens and their ids in a given tokenizer.
//!
//! A trained lmlab tokenizer reserves them first, so they get ids 0..7 in this order. A foreign
//! tokenizer may lack some of them; their ids are then `None` and callers fall back to the
//! tokenizer's own end-of-text token where one is known.

/// The special tokens every lmlab tokenizer reserves, in id order.
pub const ALL: [&str; 7] = [BOS, EOS, PAD, SYSTEM, USER, ASSISTANT, END];
pub const BOS: &str = "<|bos|>";
pub const EOS: &str = "<|eos|>";
pub const PAD: &str = "<|pad|>";
pub const SYSTEM: &str = "<|system|>";
pub const USER: &str = "<|user|>";
pub const ASSISTANT: &str = "<|assistant|>";
pub const END: &str = "<|end|>";

/// End-of-text tokens used by common foreign tokenizers (GPT-2/NeoX, Llama, ChatML).
const FOREIGN_STOPS: [&str; 5] = ["<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>"];

/// Ids of the special tokens present in one tokenizer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub system: Option<u32>,
    pub user: Option<u32>,
    pub assistant: Option<u32>,
    pub end: Option<u32>,
    /// Every id at which generation stops: `<|eos|>`, `<|end|>` and known foreign end tokens.
    pub stop_ids: Vec<u32>,
}

impl SpecialTokens {
    /// Looks the tokens up with `token_to_id`.
    pub fn resolve(token_to_id: impl Fn(&str) -> Option<u32>) -> Self {
        let mut stop_ids: Vec<u32> = [EOS, END].iter().chain(FOREIGN_STOPS.iter()).filter_map(|t| token_to_id(t)).collect();
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Self {
            bos: token_to_id(BOS),
            eos: token_to_id(EOS),
            pad: token_to_id(PAD),
            system: token_to_id(SYSTEM),
            user: token_to_id(USER),
            assistant: token_to_id(ASSISTANT),
            end: token_to_id(END),
            stop_ids,
        }
    }
}
