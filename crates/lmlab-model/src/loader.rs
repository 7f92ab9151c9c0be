//! One entry point for every model a user may point lmlab at: an lmlab checkpoint folder, a
//! GGUF file, or a Hugging Face folder (GPT-2 or Llama safetensors). It returns the model with
//! the tokenizer and chat template that belong to it, so the CLI and the server need not know
//! which format they were given.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use lmlab_tokenizer::chat::ChatTemplate;
use lmlab_tokenizer::Tokenizer;

use crate::{checkpoint, gguf, hf, Gpt, GptConfig};

pub struct LoadedModel {
    pub model: Gpt,
    pub config: GptConfig,
    pub tokenizer: Tokenizer,
    /// The model's chat template, if it has one.
    pub chat_template: Option<ChatTemplate>,
    /// "lmlab", "gguf" or "hugging face".
    pub format: &'static str,
}

/// `tokenizer.json` in the model folder or its parent (a run folder keeps it there).
fn find_tokenizer(dir: &Path) -> Result<PathBuf> {
    [dir.join("tokenizer.json"), dir.parent().map(|p| p.join("tokenizer.json")).unwrap_or_default()]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("no tokenizer.json in {} or its parent; pass --tokenizer", dir.display()))
}

/// Loads the model at `path`; `tokenizer` overrides the one that comes with it.
pub fn load(path: &Path, tokenizer: Option<&Path>, device: &Device) -> Result<LoadedModel> {
    let explicit = tokenizer.map(Tokenizer::from_file).transpose()?;
    if path.is_file() {
        let mut magic = [0u8; 4];
        std::io::Read::read_exact(&mut std::fs::File::open(path)?, &mut magic).with_context(|| format!("{} is too short to be a model", path.display()))?;
        if &magic != b"GGUF" {
            bail!("{}: a model file must be GGUF; for safetensors give the folder holding it and config.json", path.display());
        }
        let g = gguf::load_gguf(path, device)?;
        let tokenizer = match explicit {
            Some(t) => t,
            None => g.vocab.to_tokenizer().with_context(|| format!("{}: the embedded tokenizer", path.display()))?,
        };
        let token_text = |id: Option<u32>| id.and_then(|i| g.vocab.tokens.get(i as usize)).cloned().unwrap_or_default();
        let chat_template = g.vocab.chat_template.as_ref().map(|src| ChatTemplate::new(src.clone(), token_text(g.vocab.bos), token_text(g.vocab.eos)));
        return Ok(LoadedModel { model: g.model, config: g.config, tokenizer, chat_template, format: "gguf" });
    }
    if !path.is_dir() {
        bail!("{} does not exist", path.display());
    }
    if hf::is_hf_folder(path) {
        let (config, tensors) = hf::load_hf(path, DType::F32, device)?;
        let model = Gpt::new(&config, candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device))?;
        let mut tokenizer = match explicit {
            Some(t) => t,
            None => Tokenizer::from_file(path.join("tokenizer.json")).with_context(|| format!("{}: no usable tokenizer.json; pass --tokenizer", path.display()))?,
        };
        let prompt = hf::hf_prompt_config(path);
        if let Some((_, bos, eos)) = &prompt.chat {
            let bos_id = prompt.add_bos.then(|| tokenizer.token_to_id(bos)).flatten();
            let eos_id = tokenizer.token_to_id(eos);
            tokenizer.set_model_tokens(bos_id, eos_id);
        }
        let chat_template = prompt.chat.map(|(src, bos, eos)| ChatTemplate::new(src, bos, eos));
        return Ok(LoadedModel { model, config, tokenizer, chat_template, format: "hugging face" });
    }
    let config = checkpoint::load_config(path)?;
    let model = checkpoint::load_model(path, DType::F32, device)?;
    let tokenizer = match explicit {
        Some(t) => t,
        None => Tokenizer::from_file(find_tokenizer(path)?)?,
    };
    // lmlab's own template when the tokenizer has its chat tokens.
    let chat_template = tokenizer.special().user.map(|_| ChatTemplate::lmlab());
    Ok(LoadedModel { model, config, tokenizer, chat_template, format: "lmlab" })
}
