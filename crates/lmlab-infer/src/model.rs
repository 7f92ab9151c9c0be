//! [`Model`]: any model a user may point lmlab at, loaded from one place — an lmlab checkpoint
//! folder, a GGUF file, or a Hugging Face folder (GPT-2 or Llama safetensors) — with the
//! tokenizer and chat template that belong to it, so that generation, inspection, evaluation
//! and serving need not know which format they were given.
//!
//! The network itself is a [`CausalLm`]: quantized llama GGUF files run as a
//! [`QuantizedLlama`] (unless `LoadOptions::dense` asks for dequantized weights), everything
//! else as a dense [`Gpt`].

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device, Tensor};
use lmlab_model::{checkpoint, gguf, hf, lora, CausalLm, Gpt, GptConfig, KvCache, QuantizedLlama};
use lmlab_tokenizer::chat::ChatTemplate;
use lmlab_tokenizer::embedded::EmbeddedVocab;
use lmlab_tokenizer::Tokenizer;

/// A loaded model: its network, tokenizer and chat template. It is itself a [`CausalLm`]
/// (every call goes to the network), so generation takes it directly.
pub struct Model {
    network: Box<dyn CausalLm>,
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
    format: &'static str,
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions<'a> {
    /// A tokenizer.json to use instead of the one that comes with the model.
    pub tokenizer: Option<&'a Path>,
    /// Dequantize a GGUF model's weights into a dense [`Gpt`] (for fine-tuning, or to run the
    /// tensor path) instead of running it quantized.
    pub dense: bool,
}

impl Model {
    /// Loads the model at `path` on `device`.
    pub fn load(path: &Path, options: &LoadOptions, device: &Device) -> Result<Self> {
        load(path, options, device).with_context(|| format!("loading {}", path.display()))
    }

    /// A model from parts (a network built in memory, say in a test).
    pub fn from_parts(network: Box<dyn CausalLm>, tokenizer: Tokenizer, chat_template: Option<ChatTemplate>, format: &'static str) -> Self {
        Self { network, tokenizer, chat_template, format }
    }

    /// The network.
    pub fn network(&self) -> &dyn CausalLm {
        self.network.as_ref()
    }

    /// The tokenizer that came with the model (or the one given instead).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's chat template, if it has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// "lmlab", "gguf" or "hugging face".
    pub fn format(&self) -> &'static str {
        self.format
    }
}

impl CausalLm for Model {
    fn config(&self) -> &GptConfig {
        self.network.config()
    }
    fn device(&self) -> &Device {
        self.network.device()
    }
    fn kind(&self) -> &'static str {
        self.network.kind()
    }
    fn new_cache(&self) -> KvCache {
        self.network.new_cache()
    }
    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> candle_core::Result<Tensor> {
        self.network.forward_cached(ids, cache)
    }
    fn decode_batch(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> candle_core::Result<Tensor> {
        self.network.decode_batch(tokens, caches)
    }
    fn logits_all(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.network.logits_all(ids)
    }
    fn as_gpt(&self) -> Option<&Gpt> {
        self.network.as_gpt()
    }
}

/// `tokenizer.json` in the model folder or its parent (a run folder keeps it there).
pub fn tokenizer_file(dir: &Path) -> Result<PathBuf> {
    [dir.join("tokenizer.json"), dir.parent().map(|p| p.join("tokenizer.json")).unwrap_or_default()]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("no tokenizer.json in {} or its parent; pass --tokenizer", dir.display()))
}

fn meta_str(m: &HashMap<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(|v| v.to_string().ok()).cloned()
}

fn string_list(m: &HashMap<String, Value>, k: &str) -> Result<Vec<String>> {
    match m.get(k) {
        None => Ok(Vec::new()),
        Some(v) => v.to_vec()?.iter().map(|s| Ok(s.to_string()?.clone())).collect(),
    }
}

/// The tokenizer parts of a GGUF file's metadata.
pub fn embedded_vocab(m: &HashMap<String, Value>) -> Result<EmbeddedVocab> {
    let token_types = match m.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(v) => v.to_vec()?.iter().map(|t| t.to_i32()).collect::<candle_core::Result<_>>()?,
    };
    let id = |k: &str| m.get(k).and_then(|v| v.to_u32().ok());
    Ok(EmbeddedVocab {
        model: meta_str(m, "tokenizer.ggml.model").unwrap_or_default(),
        pre: meta_str(m, "tokenizer.ggml.pre").unwrap_or_default(),
        tokens: string_list(m, "tokenizer.ggml.tokens")?,
        token_types,
        merges: string_list(m, "tokenizer.ggml.merges")?,
        scores: match m.get("tokenizer.ggml.scores") {
            None => Vec::new(),
            Some(v) => v.to_vec()?.iter().map(|s| s.to_f32()).collect::<candle_core::Result<_>>()?,
        },
        add_space_prefix: m.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.to_bool().ok()).unwrap_or(true),
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        // llama.cpp's default: SentencePiece vocabularies want a BOS, byte-level BPE ones not.
        add_bos: m
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(meta_str(m, "tokenizer.ggml.model").as_deref() == Some("llama")),
        chat_template: meta_str(m, "tokenizer.chat_template"),
    })
}

/// A GGUF model runs quantized when it fits the plain-buffer pass, else (or when `dense` is
/// asked for) as a dense model with dequantized weights.
fn gguf_network(model: Gpt, dense: bool) -> Result<Box<dyn CausalLm>> {
    if dense {
        return Ok(Box::new(model.dequantized()?));
    }
    Ok(match QuantizedLlama::from_gpt(model) {
        Ok(q) => Box::new(q),
        Err(gpt) => Box::new(gpt),
    })
}

fn load(path: &Path, options: &LoadOptions, device: &Device) -> Result<Model> {
    let explicit = options.tokenizer.map(Tokenizer::from_file).transpose()?;
    if path.is_file() {
        let mut magic = [0u8; 4];
        std::io::Read::read_exact(&mut std::fs::File::open(path)?, &mut magic)
            .with_context(|| format!("{} is too short to be a model", path.display()))?;
        if &magic != b"GGUF" {
            bail!("{}: a model file must be GGUF; for safetensors give the folder holding it and config.json", path.display());
        }
        let g = gguf::load_gguf(path, device)?;
        let vocab = embedded_vocab(&g.metadata)?;
        let tokenizer = match explicit {
            Some(t) => t,
            None => vocab.to_tokenizer().with_context(|| format!("{}: the embedded tokenizer", path.display()))?,
        };
        let token_text = |id: Option<u32>| id.and_then(|i| vocab.tokens.get(i as usize)).cloned().unwrap_or_default();
        let chat_template =
            vocab.chat_template.as_ref().map(|src| ChatTemplate::new(src.clone(), token_text(vocab.bos), token_text(vocab.eos)));
        return Ok(Model { network: gguf_network(g.model, options.dense)?, tokenizer, chat_template, format: "gguf" });
    }
    if !path.is_dir() {
        bail!("{} does not exist", path.display());
    }
    if let Some(info) = lora::adapter_info(path)? {
        return load_adapted(path, &info, options, device);
    }
    if hf::is_hf_folder(path) {
        let (config, tensors) = hf::load_hf(path, DType::F32, device)?;
        let model = Gpt::new(&config, candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device))?;
        let mut tokenizer = match explicit {
            Some(t) => t,
            None => Tokenizer::from_file(path.join("tokenizer.json"))
                .with_context(|| format!("{}: no usable tokenizer.json; pass --tokenizer", path.display()))?,
        };
        let prompt = hf::hf_prompt_config(path);
        if let Some((_, bos, eos)) = &prompt.chat {
            let bos_id = prompt.add_bos.then(|| tokenizer.token_to_id(bos)).flatten();
            let eos_id = tokenizer.token_to_id(eos);
            tokenizer.set_model_tokens(bos_id, eos_id);
        }
        let chat_template = prompt.chat.map(|(src, bos, eos)| ChatTemplate::new(src, bos, eos));
        return Ok(Model { network: Box::new(model), tokenizer, chat_template, format: "hugging face" });
    }
    let model = checkpoint::load_model(path, DType::F32, device)?;
    let tokenizer = match explicit {
        Some(t) => t,
        None => Tokenizer::from_file(tokenizer_file(path)?)?,
    };
    // A merged foreign model keeps its template beside it; otherwise lmlab's own template when
    // the tokenizer has its chat tokens.
    let chat_template = match read_template_file(path)? {
        Some(t) => Some(t),
        None => tokenizer.special().user.map(|_| ChatTemplate::lmlab()),
    };
    Ok(Model { network: Box::new(model), tokenizer, chat_template, format: "lmlab" })
}

/// A folder of LoRA adapters: its base, loaded dense, with the adapters merged into the
/// weights (so it runs as fast as the base does dense), and the base's tokenizer and template.
fn load_adapted(path: &Path, info: &lora::AdapterInfo, options: &LoadOptions, device: &Device) -> Result<Model> {
    let base = Model::load(&info.base, &LoadOptions { dense: true, ..options.clone() }, device)
        .with_context(|| format!("the base named in {}", path.join(lora::ADAPTER_INFO_FILE).display()))?;
    let gpt = base.as_gpt().context("the base has no dense tensor path")?;
    let cfg = gpt.config().clone();
    let mut adapted = checkpoint::frozen_from_tensors(&cfg, gpt.named_weights()?, DType::F32, device)?;
    let adapters = checkpoint::load_safetensors(&path.join(lora::ADAPTER_FILE), device)?;
    adapted.add_lora(&info.lora, &candle_nn::VarBuilder::from_tensors(adapters, DType::F32, device))?;
    let merged = checkpoint::frozen_from_tensors(&cfg, adapted.named_weights()?, DType::F32, device)?;
    Ok(Model { network: Box::new(merged), tokenizer: base.tokenizer, chat_template: base.chat_template, format: base.format })
}

/// `chat_template.json` of a checkpoint folder: a foreign model's template kept through a merge.
const TEMPLATE_FILE: &str = "chat_template.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct TemplateFile {
    template: String,
    bos_token: String,
    eos_token: String,
}

fn read_template_file(dir: &Path) -> Result<Option<ChatTemplate>> {
    let path = dir.join(TEMPLATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let t: TemplateFile = serde_json::from_str(&std::fs::read_to_string(&path)?).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(ChatTemplate::new(t.template, t.bos_token, t.eos_token)))
}

/// Writes `model` as a full lmlab checkpoint in `out`: config, dense weights (adapters merged),
/// its tokenizer, and its chat template when it is not lmlab's own.
pub fn save_merged(model: &Model, out: &Path) -> Result<()> {
    let gpt = model.as_gpt().context("the model has no dense tensor path to save")?;
    checkpoint::save_model(out, gpt.config(), &gpt.named_weights()?)?;
    model.tokenizer().save(out.join("tokenizer.json"))?;
    if let Some(t) = model.chat_template().filter(|t| t.source() != lmlab_tokenizer::chat::LMLAB_TEMPLATE) {
        let file =
            TemplateFile { template: t.source().to_string(), bos_token: t.bos_token().to_string(), eos_token: t.eos_token().to_string() };
        checkpoint::write_atomic(&out.join(TEMPLATE_FILE), serde_json::to_string_pretty(&file)?.as_bytes())?;
    }
    Ok(())
}
