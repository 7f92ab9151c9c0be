//! Supervised fine-tuning (SFT): teaching a base model the conversation format.
//!
//! 1. **Render** each conversation with the model's chat template ([`render`]). The loss falls
//!    on the assistant's turns only: their content and the end-of-turn token, not the role
//!    marker before them, and never on system or user text.
//! 2. **Pack** the rendered conversations into rows of the context length ([`pack`]), several
//!    to a row. Each keeps its own positions and sees only its own tokens
//!    ([`lmlab_model::Packing`]), so packing changes no conversation's loss; it only wastes
//!    less of each row on padding. Without packing, each conversation has a padded row.
//! 3. **Train** through the shared loop ([`crate::trainer`]): the whole model, or only LoRA
//!    adapters on a frozen base. Rows are drawn by a permutation seeded per epoch, so a batch
//!    depends only on (seed, step, micro-step) and resume is exact.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_model::{Gpt, Mode, Packing};
use lmlab_tokenizer::chat::{ChatTemplate, Message};
use lmlab_tokenizer::Tokenizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::TrainConfig;
use crate::data::DataSummary;
use crate::trainer::Objective;

/// A conversation as token ids, with a weight of 1 on each token the model learns to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub ids: Vec<u32>,
    /// 1.0 on the assistant's tokens (content and end of turn), 0.0 elsewhere.
    pub learn: Vec<f32>,
}

impl Rendered {
    /// The learned tokens a sequence's log-probability sums over: those after the first (which
    /// nothing predicts) with a weight above 0.
    pub fn learned_tokens(&self) -> usize {
        self.learn.iter().skip(1).filter(|&&w| w > 0.0).count()
    }
}

/// Renders `messages` with `template` and marks the assistant's tokens.
///
/// Each assistant turn `i` is found by rendering the conversation before it with the
/// generation prompt (which ends with the role marker) and the conversation through it: the
/// reply is what the second adds to the first, up to and including the template's end-of-turn
/// token (`eos_text`). Each piece is tokenized on its own, so a reply's first token never merges
/// with the role marker.
pub fn render(messages: &[Message], template: &ChatTemplate, eos_text: &str, tok: &Tokenizer) -> Result<Rendered> {
    let mut pieces: Vec<(String, bool)> = Vec::new();
    let mut done = 0; // bytes of the full rendering already in `pieces`
    let full = template.render(messages, false)?;
    for (i, m) in messages.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
        let before = template.render(&messages[..i], true)?;
        let through = template.render(&messages[..=i], false)?;
        if !through.starts_with(&before) || !full.starts_with(&through) || before.len() < done {
            bail!("the chat template does not render this conversation turn by turn (turn {i}), so its assistant tokens cannot be found");
        }
        let reply = &through[before.len()..];
        // The reply runs through the end-of-turn token after its content; what follows (a line
        // break in ChatML) belongs to the template, not to what the model writes. A template
        // may trim the content (Llama 3's `| trim`), so that the reply is shorter than the
        // message: the end of turn is then looked for after the trimmed content.
        let end_after = |start: usize| reply.get(start.min(reply.len())..).and_then(|rest| rest.find(eos_text)).map(|at| start + at);
        let reply_len = match end_after(m.content.len()).or_else(|| end_after(m.content.trim().len())) {
            Some(at) if !eos_text.is_empty() => at + eos_text.len(),
            _ => reply.len(),
        };
        pieces.push((full[done..before.len()].to_string(), false));
        pieces.push((reply[..reply_len].to_string(), true));
        done = before.len() + reply_len;
    }
    if pieces.is_empty() {
        bail!("the conversation has no assistant turn to learn from");
    }
    pieces.push((full[done..].to_string(), false));
    let mut out = Rendered { ids: Vec::new(), learn: Vec::new() };
    for (text, learn) in pieces.iter().filter(|(t, _)| !t.is_empty()) {
        let ids = tok.encode(text)?;
        out.learn.extend(std::iter::repeat_n(if *learn { 1.0 } else { 0.0 }, ids.len()));
        out.ids.extend(ids);
    }
    Ok(out)
}

/// What to do with a conversation longer than the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LongConversations {
    Skip,
    Truncate,
}

/// One row of a batch: inputs, targets and their loss weights, and the lengths of the
/// conversations packed into it (positions, not tokens: a conversation of n tokens trains n−1).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub weights: Vec<f32>,
    pub docs: Vec<usize>,
}

/// Counts of what packing did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PackStats {
    pub conversations: usize,
    pub rows: usize,
    pub skipped_long: usize,
    pub truncated: usize,
    /// Conversations left with no assistant token to learn after truncation (dropped).
    pub nothing_to_learn: usize,
    /// Share of row positions holding a conversation (the rest is padding).
    pub fill: f64,
    /// Positions with a loss (assistant tokens).
    pub learned_positions: usize,
}

/// Packs conversations (in the given order) into rows of `t` positions: next-fit, a new row
/// when the next one does not fit; one conversation per row when `packed` is false. Rows are
/// padded with token 0 at weight 0.
pub fn pack(convs: &[Rendered], t: usize, packed: bool, long: LongConversations) -> (Vec<Row>, PackStats) {
    let mut stats = PackStats { conversations: convs.len(), ..Default::default() };
    let mut rows: Vec<Row> = Vec::new();
    let mut current = Row { inputs: vec![], targets: vec![], weights: vec![], docs: vec![] };
    for c in convs {
        let mut n = c.ids.len().saturating_sub(1);
        if n > t {
            match long {
                LongConversations::Skip => {
                    stats.skipped_long += 1;
                    continue;
                }
                LongConversations::Truncate => {
                    stats.truncated += 1;
                    n = t;
                }
            }
        }
        if c.learn[1..=n].iter().all(|&w| w == 0.0) {
            stats.nothing_to_learn += 1;
            continue;
        }
        if !current.docs.is_empty() && (!packed || current.inputs.len() + n > t) {
            rows.push(std::mem::replace(&mut current, Row { inputs: vec![], targets: vec![], weights: vec![], docs: vec![] }));
        }
        current.inputs.extend_from_slice(&c.ids[..n]);
        current.targets.extend_from_slice(&c.ids[1..=n]);
        current.weights.extend_from_slice(&c.learn[1..=n]);
        current.docs.push(n);
    }
    if !current.docs.is_empty() {
        rows.push(current);
    }
    let used: usize = rows.iter().map(|r| r.inputs.len()).sum();
    stats.rows = rows.len();
    stats.fill = used as f64 / (rows.len() * t).max(1) as f64;
    stats.learned_positions = rows.iter().flat_map(|r| &r.weights).filter(|&&w| w > 0.0).count();
    for r in &mut rows {
        let pad = t - r.inputs.len();
        r.inputs.extend(std::iter::repeat_n(0, pad));
        r.targets.extend(std::iter::repeat_n(0, pad));
        r.weights.extend(std::iter::repeat_n(0.0, pad));
    }
    (rows, stats)
}

/// The tensors of a batch of rows: inputs, targets, weights and the packing.
pub fn batch_tensors(rows: &[&Row], dtype: DType, dev: &Device) -> Result<(Tensor, Tensor, Tensor, Packing)> {
    let t = rows[0].inputs.len();
    let b = rows.len();
    let cat = |f: fn(&Row) -> &Vec<u32>| rows.iter().flat_map(|r| f(r).iter().copied()).collect::<Vec<u32>>();
    let x = Tensor::from_vec(cat(|r| &r.inputs), (b, t), dev)?;
    let y = Tensor::from_vec(cat(|r| &r.targets), (b, t), dev)?;
    let w = Tensor::from_vec(rows.iter().flat_map(|r| r.weights.iter().copied()).collect::<Vec<f32>>(), (b, t), dev)?;
    let docs: Vec<Vec<usize>> = rows.iter().map(|r| r.docs.clone()).collect();
    Ok((x, y, w, Packing::new(&docs, t, dtype, dev)?))
}

/// Mean loss over the assistant positions of `rows`.
pub fn rows_loss(model: &Gpt, rows: &[&Row], mode: &mut Mode) -> Result<Tensor> {
    let (x, y, w, packing) = batch_tensors(rows, model.dtype(), model.device())?;
    let mut packed = Mode { grad: mode.grad, dropout: mode.dropout.as_deref_mut(), capture: None, packing: Some(&packing) };
    Ok(model.masked_loss(&x, &y, Some(&w), &mut packed)?)
}

/// SFT's objective: training rows drawn by a per-epoch seeded permutation, and held-out rows.
pub struct Conversations {
    pub train: Vec<Row>,
    pub held_out: Vec<Row>,
    pub summary: DataSummary,
    pub device: Device,
}

impl Conversations {
    /// The training rows of micro-batch `micro` of step `step`.
    fn batch(&self, cfg: &TrainConfig, step: u64, micro: u64) -> Vec<&Row> {
        batch_indices(self.train.len(), cfg, step, micro).into_iter().map(|i| &self.train[i]).collect()
    }
}

/// Which of `n` training examples micro-batch `micro` of step `step` holds: the examples are
/// taken in a permutation seeded per epoch, so a batch depends only on (seed, step, micro-step)
/// and a resumed run draws the batches the uninterrupted one would have.
pub fn batch_indices(n: usize, cfg: &TrainConfig, step: u64, micro: u64) -> Vec<usize> {
    let n = n as u64;
    let first = (step * cfg.grad_accum as u64 + micro) * cfg.batch_size as u64;
    let mut perm: Option<(u64, Vec<usize>)> = None;
    (first..first + cfg.batch_size as u64)
        .map(|g| {
            let epoch = g / n;
            if perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let mut order: Vec<usize> = (0..n as usize).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                perm = Some((epoch, order));
            }
            perm.as_ref().expect("just set").1[(g % n) as usize]
        })
        .collect()
}

impl Objective for Conversations {
    fn train_loss(&self, model: &Gpt, cfg: &TrainConfig, step: u64, micro: u64, dropout: &mut ChaCha8Rng) -> Result<Tensor> {
        let rows = self.batch(cfg, step, micro);
        rows_loss(model, &rows, &mut Mode { grad: true, dropout: Some(dropout), capture: None, packing: None })
    }

    /// Loss over every held-out assistant token (batches weighted by their token counts), up to
    /// `eval_batches` batches.
    fn eval_loss(&self, model: &Gpt, cfg: &TrainConfig) -> Result<f64> {
        let (mut sum, mut count) = (0.0, 0.0);
        for chunk in self.held_out.chunks(cfg.batch_size).take(cfg.eval_batches.max(1)) {
            let rows: Vec<&Row> = chunk.iter().collect();
            let n: f64 = chunk.iter().flat_map(|r| &r.weights).map(|&w| f64::from(w)).sum();
            let loss = rows_loss(model, &rows, &mut Mode::inference())?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            sum += loss * n;
            count += n;
        }
        Ok(sum / count.max(1.0))
    }

    fn has_eval(&self, _cfg: &TrainConfig) -> bool {
        !self.held_out.is_empty()
    }

    fn summary(&self) -> &DataSummary {
        &self.summary
    }

    fn tokens_per_step(&self, cfg: &TrainConfig) -> u64 {
        (cfg.batch_size * cfg.grad_accum * self.train.first().map_or(0, |r| r.inputs.len())) as u64
    }
}

/// Splits rendered conversations into training and held-out sets: a seeded shuffle, the last
/// `val_fraction` held out (at least one when there are two or more and the fraction is above 0).
pub fn split(mut convs: Vec<Rendered>, val_fraction: f64, seed: u64) -> Result<(Vec<Rendered>, Vec<Rendered>)> {
    if convs.is_empty() {
        bail!("no conversations to train on");
    }
    convs.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut k = (convs.len() as f64 * val_fraction).round() as usize;
    if val_fraction > 0.0 && convs.len() >= 2 {
        k = k.max(1);
    }
    let held = convs.split_off(convs.len() - k);
    Ok((convs, held))
}

/// The template's end-of-turn text: lmlab's `<|end|>`, or the template's EOS token.
pub fn end_of_turn(template: &ChatTemplate) -> String {
    if template.source() == lmlab_tokenizer::chat::LMLAB_TEMPLATE {
        lmlab_tokenizer::special::END.to_string()
    } else {
        template.eos_token().to_string()
    }
}

/// Renders every conversation, naming the one that fails.
pub fn render_all(convs: &[(String, Vec<Message>)], template: &ChatTemplate, tok: &Tokenizer) -> Result<Vec<Rendered>> {
    let eot = end_of_turn(template);
    convs.iter().map(|(source, m)| render(m, template, &eot, tok).with_context(|| format!("rendering {source}"))).collect()
}

/// A fine-tuning run: the base model's parts (loaded by the caller, from any format), the
/// conversations, and how to train.
pub struct SftOptions {
    /// The base model as the user named it (recorded beside LoRA adapters).
    pub base: std::path::PathBuf,
    pub model_cfg: lmlab_model::GptConfig,
    /// The base's dense weights under lmlab names.
    pub base_weights: std::collections::HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// Copied into every checkpoint (a full fine-tune of an lmlab model needs it to load).
    pub tokenizer_json: Option<std::path::PathBuf>,
    /// (source, messages) of every conversation; the source names it in errors.
    pub conversations: Vec<(String, Vec<Message>)>,
    pub train: TrainConfig,
    /// Train LoRA adapters on a frozen base instead of every weight.
    pub lora: Option<lmlab_model::LoraConfig>,
    pub packed: bool,
    pub long: LongConversations,
    pub out: std::path::PathBuf,
    pub resume: bool,
    pub stop_after: Option<u64>,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub device: Device,
}

/// What a fine-tuning invocation did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SftReport {
    pub run: crate::trainer::TrainReport,
    pub packing: PackStats,
    pub held_out_conversations: usize,
    /// Trainable parameters and all parameters of the (adapted) model.
    pub trainable_params: usize,
    pub total_params: usize,
    /// AdamW's two moments for the trainable parameters, in bytes.
    pub optimizer_bytes: usize,
}

/// Fine-tunes as `opts` says, handing each training event to `on_event`.
pub fn fine_tune(opts: SftOptions, on_event: impl FnMut(&crate::trainer::TrainEvent)) -> Result<SftReport> {
    use crate::checkpoint::{self, AdapterInfo, Extras};
    use crate::trainer::{Progress, RunSpec, Trainer};

    let loaded = if opts.resume {
        Some(checkpoint::load(&opts.out, &opts.device).with_context(|| format!("resuming {}", opts.out.display()))?)
    } else {
        None
    };
    // A resumed run keeps the checkpoint's settings (only max_steps may grow), like pretraining.
    let mut train_cfg = match &loaded {
        Some(l) => TrainConfig { max_steps: l.state.train.max_steps.max(opts.train.max_steps), ..l.state.train.clone() },
        None => opts.train.clone(),
    };
    train_cfg.validate()?;
    // Rows are the context length unless `seq_len` asks for shorter ones (a big model on a CPU).
    let context = opts.model_cfg.context_length;
    if train_cfg.seq_len > context {
        bail!("seq_len {} exceeds the model's context length {context}", train_cfg.seq_len);
    }
    let t = if train_cfg.seq_len == 0 { context } else { train_cfg.seq_len };
    train_cfg.seq_len = t;

    let rendered = render_all(&opts.conversations, &opts.template, &opts.tokenizer)?;
    let (train_convs, held) = split(rendered, train_cfg.val_fraction, train_cfg.seed)?;
    let (train_rows, stats) = pack(&train_convs, t, opts.packed, opts.long);
    let (held_rows, _) = pack(&held, t, opts.packed, opts.long);
    if train_rows.is_empty() {
        bail!("no conversation fits the context of {t} tokens (use --long truncate to keep their beginnings)");
    }
    let summary = DataSummary {
        files: vec![format!("{} conversations", opts.conversations.len())],
        total_tokens: train_convs.iter().chain(&held).map(|c| c.ids.len()).sum(),
        train_tokens: train_convs.iter().map(|c| c.ids.len()).sum(),
        val_tokens: held.iter().map(|c| c.ids.len()).sum(),
    };
    let objective = Conversations { train: train_rows, held_out: held_rows, summary, device: opts.device.clone() };

    // The model: every weight trainable, or a frozen base with trainable adapters.
    let resumed_weights = loaded.as_ref().map(|l| l.weights.clone());
    let (model, params, total_params) = match &opts.lora {
        None => {
            let weights = resumed_weights.unwrap_or_else(|| opts.base_weights.clone());
            let (model, params) = lmlab_model::checkpoint::trainable_from_tensors(&opts.model_cfg, weights, DType::F32, &opts.device)?;
            let n = params.num_elements();
            (model, params, n)
        }
        Some(lora) => {
            let mut model =
                lmlab_model::checkpoint::frozen_from_tensors(&opts.model_cfg, opts.base_weights.clone(), DType::F32, &opts.device)?;
            let (vb, collector) = lmlab_model::params::ParamBackend::var_builder(train_cfg.seed, resumed_weights, DType::F32, &opts.device);
            model.add_lora(lora, &vb)?;
            let base_n: usize = opts.base_weights.values().map(Tensor::elem_count).sum();
            let params = collector.finish();
            let n = params.num_elements();
            (model, params, base_n + n)
        }
    };
    let mut opt = crate::optim::AdamW::new(&params, train_cfg.adamw())?;
    let mut progress = Progress::fresh();
    if let Some(l) = loaded {
        opt.load_state(l.optimizer, l.state.step)?;
        progress = Progress::resumed(&l.state);
    }
    let adapter = opts.lora.clone().map(|lora| AdapterInfo { base: opts.base.clone(), lora });
    let spec = RunSpec {
        out: &opts.out,
        stage: "sft",
        resume: opts.resume,
        stop_after: opts.stop_after,
        stop: opts.stop.clone(),
        device: opts.device.clone(),
        extras: Extras { tokenizer_json: opts.tokenizer_json.as_deref(), adapter: adapter.as_ref(), tensor_files: &[] },
    };
    let trainable_params = params.num_elements();
    let trainer = Trainer::new(spec, opts.model_cfg.clone(), train_cfg, &objective, &model, params);
    let run = trainer.run(opt, progress, on_event)?;
    Ok(SftReport {
        run,
        packing: stats,
        held_out_conversations: held.len(),
        trainable_params,
        total_params,
        optimizer_bytes: trainable_params * 2 * 4,
    })
}
