//! Sequence-to-sequence tasks and their training: copy, reverse and sort of symbol strings, and
//! English→Chinese translation of fact sentences from the built-in world, learned by a GRU
//! encoder-decoder (with or without attention) or by the decoder-only Transformer reading the
//! source as a prefix.
//!
//! Token ids are shared by all architectures: 0 padding, 1 begin/separator, 2 end, then the
//! task's vocabulary. The Transformer sees `source <sep> target <end>` and is trained only on
//! the target positions.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::{init_trainable, load_safetensors, save_safetensors, trainable_from_tensors, write_atomic};
use lmlab_model::params::{ParamBackend, ParamSet};
use lmlab_model::seq2seq::{Seq2Seq, Seq2SeqConfig, BOS, EOS, PAD};
use lmlab_model::{ops, CausalLm, Gpt, GptConfig, Mode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::optim::{clip_global_norm, AdamW};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Copy,
    Reverse,
    Sort,
    Translate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Rnn,
    RnnAttention,
    Transformer,
}

impl std::str::FromStr for Task {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "copy" => Task::Copy,
            "reverse" => Task::Reverse,
            "sort" => Task::Sort,
            "translate" => Task::Translate,
            _ => bail!("unknown task {s:?} (copy, reverse, sort, translate)"),
        })
    }
}

impl std::str::FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "rnn" => Arch::Rnn,
            "rnn-attention" => Arch::RnnAttention,
            "transformer" => Arch::Transformer,
            _ => bail!("unknown architecture {s:?} (rnn, rnn-attention, transformer)"),
        })
    }
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Rnn => "rnn",
            Arch::RnnAttention => "rnn-attention",
            Arch::Transformer => "transformer",
        }
    }
}

/// Symbols of the string tasks.
const SYMBOLS: &str = "abcdefghijklmnopqrst";

/// The task's vocabulary (strings for ids 3..) and example generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vocab {
    pub symbols: Vec<String>,
}

impl Vocab {
    pub fn size(&self) -> usize {
        self.symbols.len() + 3
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                let s = c.to_string();
                self.symbols
                    .iter()
                    .position(|x| *x == s)
                    .map(|i| i as u32 + 3)
                    .with_context(|| format!("character {c:?} is not in the task's vocabulary"))
            })
            .collect()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().filter(|&&i| i >= 3).filter_map(|&i| self.symbols.get(i as usize - 3)).cloned().collect()
    }
}

/// A source of examples for a task.
pub struct TaskData {
    pub task: Task,
    pub vocab: Vocab,
    /// Sentence pairs for translation (English, Chinese).
    pairs: Vec<(String, String)>,
}

impl TaskData {
    pub fn new(task: Task, seed: u64) -> Result<Self> {
        if task != Task::Translate {
            return Ok(Self { task, vocab: Vocab { symbols: SYMBOLS.chars().map(String::from).collect() }, pairs: vec![] });
        }
        // English→Chinese fact sentences from a small world: the same fact, each side in a
        // randomly chosen template, so the pair means the same but is not word for word.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut names = lmlab_world::names::NameGen::new();
        let kb = lmlab_world::kb::Kb::generate_with(300, &mut names, &mut rng);
        let mut pairs = Vec::new();
        for (e, f) in kb.facts() {
            for _ in 0..4 {
                let en_t = lmlab_world::templates::facts(f.relation, false);
                let zh_t = lmlab_world::templates::facts(f.relation, true);
                let en = lmlab_world::page::fill(en_t[rng.random_range(0..en_t.len())], &e.name, &f.object);
                let zh = lmlab_world::page::fill(zh_t[rng.random_range(0..zh_t.len())], &e.name_zh, &f.object_zh);
                pairs.push((en, zh));
            }
        }
        let mut chars: Vec<char> = pairs.iter().flat_map(|(a, b)| a.chars().chain(b.chars())).collect();
        chars.sort_unstable();
        chars.dedup();
        Ok(Self { task, vocab: Vocab { symbols: chars.into_iter().map(String::from).collect() }, pairs })
    }

    /// One (source, target) example whose source has `len` tokens (for translation, a random
    /// pair whose English side is at most `len` characters).
    pub fn example(&self, len: usize, rng: &mut ChaCha8Rng) -> (Vec<u32>, Vec<u32>) {
        match self.task {
            Task::Translate => {
                let fits: Vec<&(String, String)> = self.pairs.iter().filter(|(en, _)| en.chars().count() <= len).collect();
                let (en, zh) = if fits.is_empty() {
                    &self.pairs[rng.random_range(0..self.pairs.len())]
                } else {
                    fits[rng.random_range(0..fits.len())]
                };
                (self.vocab.encode(en).expect("vocab covers the pairs"), self.vocab.encode(zh).expect("vocab covers the pairs"))
            }
            _ => {
                let src: Vec<u32> = (0..len).map(|_| 3 + rng.random_range(0..SYMBOLS.len() as u32)).collect();
                let tgt = match self.task {
                    Task::Copy => src.clone(),
                    Task::Reverse => src.iter().rev().copied().collect(),
                    _ => {
                        let mut s = src.clone();
                        s.sort_unstable();
                        s
                    }
                };
                (src, tgt)
            }
        }
    }

    /// Lengths of translation sources span the English sentences; symbol tasks use any length.
    pub fn length_range(&self) -> Option<(usize, usize)> {
        (self.task == Task::Translate).then(|| {
            let l: Vec<usize> = self.pairs.iter().map(|(en, _)| en.chars().count()).collect();
            (*l.iter().min().unwrap_or(&1), *l.iter().max().unwrap_or(&1))
        })
    }
}

/// Batches padded to the longest row: sources [B, S], targets [B, T] ending with EOS.
fn pad(rows: &[Vec<u32>], extra_eos: bool, dev: &Device) -> Result<Tensor> {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0) + usize::from(extra_eos);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for r in rows {
        flat.extend_from_slice(r);
        if extra_eos {
            flat.push(EOS);
        }
        flat.extend(std::iter::repeat_n(PAD, width - r.len() - usize::from(extra_eos)));
    }
    Ok(Tensor::from_vec(flat, (rows.len(), width), dev)?)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seq2SeqSpec {
    pub task: Task,
    pub arch: Arch,
    pub vocab: Vocab,
    pub rnn: Option<Seq2SeqConfig>,
    pub transformer: Option<GptConfig>,
    /// Longest source the model accepts (the Transformer's context bounds it).
    pub max_len: usize,
}

/// A trained (or training) model of any of the three architectures.
pub struct Seq2SeqModel {
    pub spec: Seq2SeqSpec,
    rnn: Option<Seq2Seq>,
    transformer: Option<Gpt>,
    pub params: ParamSet,
}

impl Seq2SeqModel {
    /// A fresh model of about `hidden`-sized layers; the three architectures get comparable
    /// parameter counts at the same `hidden`.
    pub fn new(task: &TaskData, arch: Arch, hidden: usize, max_len: usize, seed: u64, dev: &Device) -> Result<Self> {
        let v = task.vocab.size();
        let spec_of = |rnn, transformer| Seq2SeqSpec { task: task.task, arch, vocab: task.vocab.clone(), rnn, transformer, max_len };
        match arch {
            Arch::Rnn | Arch::RnnAttention => {
                let cfg = Seq2SeqConfig { vocab_size: v, d_embed: hidden / 2, d_hidden: hidden, attention: arch == Arch::RnnAttention };
                let (vb, collector) = ParamBackend::var_builder(seed, None, DType::F32, dev);
                let m = Seq2Seq::new(&cfg, vb)?;
                Ok(Self { spec: spec_of(Some(cfg), None), rnn: Some(m), transformer: None, params: collector.finish() })
            }
            Arch::Transformer => {
                let cfg = transformer_config(v, hidden, max_len);
                let (m, params) = init_trainable(&cfg, seed, DType::F32, dev)?;
                Ok(Self { spec: spec_of(None, Some(cfg)), rnn: None, transformer: Some(m), params })
            }
        }
    }

    pub fn loss(&self, src: &[Vec<u32>], tgt: &[Vec<u32>], dev: &Device) -> Result<Tensor> {
        if let Some(m) = &self.rnn {
            return Ok(m.loss(&pad(src, false, dev)?, &pad(tgt, true, dev)?)?);
        }
        let m = self.transformer.as_ref().expect("one architecture");
        // source <sep> target <end>, trained on the target and <end> positions only.
        let rows: Vec<Vec<u32>> =
            src.iter().zip(tgt).map(|(s, t)| s.iter().copied().chain([BOS]).chain(t.iter().copied()).chain([EOS]).collect()).collect();
        let width = rows.iter().map(Vec::len).max().unwrap_or(1);
        let (mut x, mut y, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for (r, s) in rows.iter().zip(src) {
            for i in 0..width - 1 {
                x.push(*r.get(i).unwrap_or(&PAD));
                y.push(*r.get(i + 1).unwrap_or(&PAD));
                mask.push(u8::from(i >= s.len() && i + 1 < r.len()));
            }
        }
        let b = rows.len();
        let x = Tensor::from_vec(x, (b, width - 1), dev)?;
        let logits = m.forward(&x, &mut Mode::training_without_dropout())?;
        let v = logits.dim(2)?;
        let y = Tensor::from_vec(y, b * (width - 1), dev)?;
        let mask = Tensor::from_vec(mask, b * (width - 1), dev)?;
        Ok(ops::cross_entropy(&logits.reshape((b * (width - 1), v))?, &y, Some(&mask))?)
    }

    /// Greedy outputs for a batch of sources.
    pub fn greedy(&self, src: &[Vec<u32>], max_out: usize, dev: &Device) -> Result<Vec<Vec<u32>>> {
        if let Some(m) = &self.rnn {
            return Ok(m.greedy(&pad(src, false, dev)?, max_out)?);
        }
        let m = self.transformer.as_ref().expect("one architecture");
        let ctx = m.config().context_length;
        let mut outs = Vec::with_capacity(src.len());
        for s in src {
            let mut seq: Vec<u32> = s.iter().copied().chain([BOS]).collect();
            if seq.len() > ctx {
                bail!("source of {} tokens exceeds the Transformer's context ({ctx})", s.len());
            }
            let mut cache = m.new_cache();
            let mut logits = m.forward_cached_mode(&Tensor::new(seq.as_slice(), dev)?.unsqueeze(0)?, &mut cache, &mut Mode::inference())?;
            let mut out = Vec::new();
            while out.len() < max_out && seq.len() < ctx {
                let next = logits.argmax(candle_core::D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?[0];
                if next == EOS {
                    break;
                }
                out.push(next);
                seq.push(next);
                logits = m.forward_cached_mode(&Tensor::new(&[next], dev)?.unsqueeze(0)?, &mut cache, &mut Mode::inference())?;
            }
            outs.push(out);
        }
        Ok(outs)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        save_safetensors(&dir.join("model.safetensors"), &self.params.tensors())?;
        write_atomic(&dir.join("seq2seq.json"), serde_json::to_string_pretty(&self.spec)?.as_bytes())
    }

    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        let spec_path = dir.join("seq2seq.json");
        let spec: Seq2SeqSpec =
            serde_json::from_str(&std::fs::read_to_string(&spec_path).with_context(|| format!("reading {}", spec_path.display()))?)
                .with_context(|| format!("parsing {}", spec_path.display()))?;
        let tensors = load_safetensors(&dir.join("model.safetensors"), dev)?;
        match (&spec.rnn, &spec.transformer) {
            (Some(cfg), _) => {
                let (vb, collector) = ParamBackend::var_builder(0, Some(tensors), DType::F32, dev);
                let m = Seq2Seq::new(cfg, vb)?;
                Ok(Self { rnn: Some(m), transformer: None, params: collector.finish(), spec })
            }
            (None, Some(cfg)) => {
                let (m, params) = trainable_from_tensors(cfg, tensors, DType::F32, dev)?;
                Ok(Self { rnn: None, transformer: Some(m), params, spec })
            }
            (None, None) => bail!("{}: names no architecture", spec_path.display()),
        }
    }
}

/// The Transformer used beside the RNNs: 2 layers, width ≈ 3/4 of the RNN hidden size, which
/// gives a parameter count close to the RNN encoder-decoder's.
pub fn transformer_config(vocab: usize, hidden: usize, max_len: usize) -> GptConfig {
    let d = (hidden * 3 / 4).div_ceil(8) * 8;
    GptConfig::llama_style(vocab, 2 * max_len + 2, 2, 4, 4, d, 2 * d + d / 2)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSpec {
    pub steps: usize,
    pub batch: usize,
    pub min_len: usize,
    pub max_len: usize,
    pub lr: f64,
    pub seed: u64,
    /// Evaluate in-range accuracy every this many steps (0: never) to find when it reaches 95%.
    pub eval_every: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Seq2SeqTrainReport {
    pub arch: Arch,
    pub params: usize,
    pub steps: usize,
    pub final_loss: f64,
    pub seconds: f64,
    /// Source + target tokens processed per second of training.
    pub tokens_per_sec: f64,
    pub tokens_seen: usize,
    /// Tokens and estimated FLOPs (6 · params · tokens) when in-range accuracy first reached 95%.
    pub tokens_to_95: Option<usize>,
    pub flops_to_95: Option<f64>,
    /// (step, in-range exact-match accuracy) at each evaluation.
    pub curve: Vec<(usize, f64)>,
}

/// Exact-match accuracy over `n` fresh examples of source length `len` each.
pub fn accuracy(model: &Seq2SeqModel, data: &TaskData, lens: &[usize], n: usize, seed: u64, dev: &Device) -> Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut right = 0;
    let mut total = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let ex: Vec<(Vec<u32>, Vec<u32>)> = chunk.iter().map(|_| data.example(lens[rng.random_range(0..lens.len())], &mut rng)).collect();
        let src: Vec<Vec<u32>> = ex.iter().map(|e| e.0.clone()).collect();
        let max_out = ex.iter().map(|e| e.1.len()).max().unwrap_or(1) + 5;
        let out = model.greedy(&src, max_out, dev)?;
        right += out.iter().zip(&ex).filter(|(o, e)| **o == e.1).count();
        total += ex.len();
    }
    Ok(right as f64 / total.max(1) as f64)
}

pub fn train(
    model: &Seq2SeqModel,
    data: &TaskData,
    spec: &TrainSpec,
    dev: &Device,
    mut progress: impl FnMut(usize, f64),
) -> Result<Seq2SeqTrainReport> {
    let cfg = crate::TrainConfig { weight_decay: 0.0, ..Default::default() };
    let mut opt = AdamW::new(&model.params, cfg.adamw())?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let lens: Vec<usize> = (spec.min_len..=spec.max_len).collect();
    let params = model.params.num_elements();
    let (mut tokens, mut loss_v, mut train_secs) = (0usize, f64::NAN, 0.0);
    let (mut tokens_to_95, mut curve) = (None, Vec::new());
    for step in 1..=spec.steps {
        let t0 = Instant::now();
        let ex: Vec<(Vec<u32>, Vec<u32>)> =
            (0..spec.batch).map(|_| data.example(lens[rng.random_range(0..lens.len())], &mut rng)).collect();
        let (src, tgt): (Vec<Vec<u32>>, Vec<Vec<u32>>) = ex.into_iter().unzip();
        tokens += src.iter().chain(&tgt).map(Vec::len).sum::<usize>();
        let loss = model.loss(&src, &tgt, dev)?;
        loss_v = loss.to_scalar::<f32>()? as f64;
        let mut grads = opt.collect_grads(&loss.backward()?)?;
        clip_global_norm(&mut grads, 1.0)?;
        let lr = crate::schedule::lr_at(step as u64 - 1, spec.steps as u64, (spec.steps / 20) as u64, spec.lr, spec.lr / 10.0);
        opt.step(&grads, lr)?;
        train_secs += t0.elapsed().as_secs_f64();
        progress(step, loss_v);
        if spec.eval_every > 0 && (step % spec.eval_every == 0 || step == spec.steps) {
            let acc = accuracy(model, data, &lens, 128, spec.seed ^ 0x5eed, dev)?;
            curve.push((step, acc));
            if acc >= 0.95 && tokens_to_95.is_none() {
                tokens_to_95 = Some(tokens);
            }
        }
    }
    Ok(Seq2SeqTrainReport {
        arch: model.spec.arch,
        params,
        steps: spec.steps,
        final_loss: loss_v,
        seconds: train_secs,
        tokens_per_sec: tokens as f64 / train_secs.max(1e-9),
        tokens_seen: tokens,
        tokens_to_95,
        flops_to_95: tokens_to_95.map(|t| 6.0 * params as f64 * t as f64),
        curve,
    })
}
