//! The decoder-only Transformer ([`Gpt`]): embeddings, blocks of attention + MLP with pre-norm
//! residuals, a final norm and the output projection to vocabulary logits.
//!
//! Parameter names (what `model.safetensors` holds):
//! `wte.weight` [V, D], `wpe.weight` [C, D] (learned positions only), and per layer `i`:
//! `h.i.ln_1.{weight,bias}`, `h.i.attn.c_attn.{weight,bias}` (queries, then keys, then values),
//! `h.i.attn.c_proj.*`, `h.i.ln_2.*`, and `h.i.mlp.{c_fc,c_proj}.*` (GELU) or
//! `h.i.mlp.{gate_proj,up_proj,down_proj}.*` (SwiGLU); `ln_f.*`; `lm_head.weight` when untied.
//! Linear weights are [out, in]. The model knows nothing about tokenization, only token ids.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::attention::{positions, CausalSelfAttention, Mode, Rotary};
use crate::config::{Activation, GptConfig, Norm, Position};
use crate::kv_cache::KvCache;
use crate::linear::{Linear, WeightSource};
use crate::ops;
use crate::qmatmul::QuantMatmul;

struct NormLayer {
    w: Tensor,
    b: Option<Tensor>,
    /// Zeros for the fused LayerNorm kernel when the model has no norm bias.
    zero_b: Option<Tensor>,
    kind: Norm,
    eps: f64,
}

impl NormLayer {
    fn new(cfg: &GptConfig, vb: WeightSource) -> Result<Self> {
        let d = cfg.d_model;
        let w = vb.tensor(d, "weight", Init::Const(1.0))?;
        let b = if cfg.bias && cfg.norm == Norm::LayerNorm { Some(vb.tensor(d, "bias", Init::Const(0.0))?) } else { None };
        let zero_b = if b.is_none() { Some(Tensor::zeros(d, w.dtype(), w.device())?) } else { None };
        Ok(Self { w, b, zero_b, kind: cfg.norm, eps: cfg.norm_eps })
    }

    fn forward(&self, x: &Tensor, grad: bool) -> Result<Tensor> {
        match (self.kind, grad) {
            (kind, true) => ops::norm(x, &self.w, self.b.as_ref(), kind, self.eps),
            (Norm::LayerNorm, false) => {
                let b = self.b.as_ref().or(self.zero_b.as_ref()).expect("a bias or its zeros");
                ops::layer_norm_infer(x, &self.w, b, self.eps)
            }
            (Norm::RmsNorm, false) => ops::rms_norm_infer(x, &self.w, self.eps),
        }
    }
}

enum Mlp {
    Gelu {
        c_fc: Linear,
        c_proj: Linear,
    },
    SwiGlu {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// SwiGLU of a quantized model with gate and up stacked into one matmul.
    SwiGluFused {
        gate_up: Linear,
        d_ff: usize,
        down: Linear,
    },
}

impl Mlp {
    fn new(cfg: &GptConfig, vb: WeightSource) -> Result<Self> {
        let (d, f, bias) = (cfg.d_model, cfg.d_ff, cfg.bias);
        let std = 0.02;
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        Ok(match cfg.activation {
            Activation::Gelu => {
                Mlp::Gelu { c_fc: vb.pp("c_fc").linear(f, d, std, bias)?, c_proj: vb.pp("c_proj").linear(d, f, proj_std, bias)? }
            }
            Activation::SwiGlu => {
                let gate = vb.pp("gate_proj").linear(f, d, std, bias)?;
                let up = vb.pp("up_proj").linear(f, d, std, bias)?;
                let down = vb.pp("down_proj").linear(d, f, proj_std, bias)?;
                match crate::linear::stack_quantized(&gate, &up) {
                    Some(gate_up) => Mlp::SwiGluFused { gate_up, d_ff: f, down },
                    None => Mlp::SwiGlu { gate, up, down },
                }
            }
        })
    }

    /// With `grad`, the activation runs as one fused op with its own backward where it can.
    fn forward(&self, x: &Tensor, grad: bool) -> Result<Tensor> {
        match self {
            Mlp::Gelu { c_fc, c_proj } if grad && crate::fused::fusable(x) => c_proj.forward(&crate::fused::gelu(&c_fc.forward(x)?)?),
            Mlp::Gelu { c_fc, c_proj } => c_proj.forward(&c_fc.forward(x)?.gelu()?),
            Mlp::SwiGlu { gate, up, down } if grad && crate::fused::fusable(x) => {
                down.forward(&crate::fused::swiglu(&gate.forward(x)?, &up.forward(x)?)?)
            }
            Mlp::SwiGlu { gate, up, down } => down.forward(&(gate.forward(x)?.silu()? * up.forward(x)?)?),
            Mlp::SwiGluFused { gate_up, d_ff, down } => {
                let gu = gate_up.forward(x)?;
                let last = gu.rank() - 1;
                down.forward(&(gu.narrow(last, 0, *d_ff)?.silu()? * gu.narrow(last, *d_ff, *d_ff)?)?)
            }
        }
    }
}

struct Block {
    ln_1: NormLayer,
    attn: CausalSelfAttention,
    ln_2: NormLayer,
    mlp: Mlp,
    dropout: f64,
}

impl Block {
    fn forward(&self, x: &Tensor, offset: usize, cache: Option<&mut crate::kv_cache::LayerCache>, mode: &mut Mode) -> Result<Tensor> {
        let a = self.attn.forward(&self.ln_1.forward(x, mode.grad)?, offset, cache, mode)?;
        let x = (x + a)?;
        let m = self.mlp.forward(&self.ln_2.forward(&x, mode.grad)?, mode.grad)?;
        let m = mode.dropout(&m, self.dropout)?;
        x + m
    }
}

pub struct Gpt {
    cfg: GptConfig,
    wte: Tensor,
    wpe: Option<Tensor>,
    blocks: Vec<Block>,
    ln_f: NormLayer,
    /// The output projection: `wte` itself when embeddings are tied (for a quantized model,
    /// the quantized original, while `wte` is its dequantized copy for lookups).
    lm_head: Linear,
}

fn quant_kernel(l: &Linear) -> Option<QuantMatmul> {
    match (&l.w, &l.b) {
        (crate::linear::Weight::Quantized(crate::linear::QuantWeight::Lmlab(k)), None) => Some(k.clone()),
        _ => None,
    }
}

impl Gpt {
    /// A model whose parameters come from (or are created in) a candle `VarBuilder`.
    pub fn new(cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        Self::from_source(cfg, WeightSource::Vars(vb))
    }

    pub fn from_source(cfg: &GptConfig, vb: WeightSource) -> Result<Self> {
        cfg.validate().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let d = cfg.d_model;
        let emb = Init::Randn { mean: 0.0, stdev: 0.02 };
        let wte = vb.tensor((cfg.vocab_size, d), "wte.weight", emb)?;
        let wpe = match cfg.position {
            Position::Learned => Some(vb.tensor((cfg.context_length, d), "wpe.weight", emb)?),
            Position::Rope => None,
        };
        let rotary = match cfg.position {
            Position::Rope => Some(Rotary::new(cfg, vb.dtype(), vb.device())?),
            Position::Learned => None,
        };
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let vb = vb.pp(format!("h.{i}"));
            blocks.push(Block {
                ln_1: NormLayer::new(cfg, vb.pp("ln_1"))?,
                attn: CausalSelfAttention::new(cfg, rotary.clone(), vb.pp("attn"))?,
                ln_2: NormLayer::new(cfg, vb.pp("ln_2"))?,
                mlp: Mlp::new(cfg, vb.pp("mlp"))?,
                dropout: cfg.dropout,
            });
        }
        let ln_f = NormLayer::new(cfg, vb.pp("ln_f"))?;
        let lm_head = match (&vb, cfg.tie_embeddings) {
            (WeightSource::Vars(_), true) => Linear { w: crate::linear::Weight::Dense(wte.clone()), b: None, lora: Vec::new() },
            (_, true) => Linear { w: vb.weight((cfg.vocab_size, d), "wte.weight", emb)?, b: None, lora: Vec::new() },
            (_, false) => Linear { w: vb.weight((cfg.vocab_size, d), "lm_head.weight", emb)?, b: None, lora: Vec::new() },
        };
        Ok(Self { cfg: cfg.clone(), wte, wpe, blocks, ln_f, lm_head })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.wte.device()
    }

    pub fn dtype(&self) -> DType {
        self.wte.dtype()
    }

    /// Hidden states [B, T, D] after the final norm, for `ids` [B, T] at positions
    /// `offset..offset+T`, reading and extending `cache` when given.
    pub fn hidden(&self, ids: &Tensor, offset: usize, mut cache: Option<&mut KvCache>, mode: &mut Mode) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if offset + t > self.cfg.context_length {
            candle_core::bail!("sequence of {} tokens exceeds the context length {}", offset + t, self.cfg.context_length);
        }
        let mut x = self.wte.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, self.cfg.d_model))?;
        if let Some(wpe) = &self.wpe {
            x = match mode.packing {
                Some(p) => (x + wpe.index_select(&p.positions.flatten_all()?, 0)?.reshape((b, t, self.cfg.d_model))?)?,
                None => x.broadcast_add(&wpe.index_select(&positions(offset, t, self.cfg.context_length, ids.device())?, 0)?)?,
            };
        }
        x = mode.dropout(&x, self.cfg.dropout)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = block.forward(&x, offset, layer_cache, mode)?;
        }
        self.ln_f.forward(&x, mode.grad)
    }

    /// Logits [B, T, V] for every position (training, evaluation, full recomputation).
    pub fn forward(&self, ids: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let h = self.hidden(ids, 0, None, mode)?;
        self.lm_head.forward(&h)
    }

    /// The hidden state [B, D] (after the final norm) of each row's last real token in a
    /// right-padded batch: what a scalar head on top of the model reads (a reward model). The
    /// padding after a row changes nothing here (see [`crate::padded`]).
    pub fn last_hidden(&self, batch: &crate::RightPadded, mode: &mut Mode) -> Result<Tensor> {
        let h = self.hidden(&batch.ids, 0, None, mode)?;
        let (b, l, d) = h.dims3()?;
        h.reshape((b * l, d))?.index_select(&batch.last_positions()?, 0)
    }

    /// log p(`targets`[i] | the tokens up to position `at`[i]) [N] for `inputs` [B, T], where
    /// `at` holds flat positions (row·T + t): the terms of a reply's log-likelihood (DPO). Only
    /// the N positions asked for go through the output projection, not all B·T, which for a
    /// short reply after a long prompt is most of the memory a full `forward` would take.
    pub fn logprobs_at(&self, inputs: &Tensor, at: &Tensor, targets: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let h = self.hidden(inputs, 0, None, mode)?;
        let (b, t, d) = h.dims3()?;
        let picked = h.reshape((b * t, d))?.index_select(at, 0)?;
        let logp = ops::log_softmax(&self.lm_head.forward(&picked)?)?;
        logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)
    }

    /// What a policy-gradient step reads at N chosen positions of `inputs` [B, T] (flat
    /// positions row·T + t, as [`Gpt::logprobs_at`]), from one forward pass: log p(`targets`[i])
    /// [N], the entropy −Σ p log p of each position's next-token distribution [N], and the
    /// hidden states [N, D] there (where a value head reads its estimate).
    pub fn token_stats_at(&self, inputs: &Tensor, at: &Tensor, targets: &Tensor, mode: &mut Mode) -> Result<(Tensor, Tensor, Tensor)> {
        let h = self.hidden(inputs, 0, None, mode)?;
        let (b, t, d) = h.dims3()?;
        let picked = h.reshape((b * t, d))?.index_select(at, 0)?;
        let logp_all = ops::log_softmax(&self.lm_head.forward(&picked)?)?;
        let entropy = (logp_all.exp()? * &logp_all)?.sum(1)?.neg()?;
        let logp = logp_all.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
        Ok((logp, entropy, picked))
    }

    /// Runs `ids` [B, T] through the model at the cache's current offset, appending to the cache,
    /// and returns logits [B, V] of the last position only: prefill (T = prompt length) and each
    /// decode step (T = 1) are the same call. `mode` may capture attention weights.
    pub fn forward_cached_mode(&self, ids: &Tensor, cache: &mut KvCache, mode: &mut Mode) -> Result<Tensor> {
        let offset = cache.seq_len();
        let t = ids.dim(1)?;
        if t == 0 {
            candle_core::bail!("forward_cached was given no tokens");
        }
        let h = self.hidden(ids, offset, Some(cache), mode)?;
        let last = h.narrow(1, t - 1, 1)?.squeeze(1)?;
        self.lm_head.forward(&last)
    }

    /// Every parameter under its lmlab name (see the module documentation), dense: quantized
    /// weights are dequantized, a stacked gate|up projection is split back into its two.
    pub fn named_weights(&self) -> Result<std::collections::HashMap<String, Tensor>> {
        let dev = self.wte.device();
        let mut out = std::collections::HashMap::new();
        // An adapted layer's weight is the merged one: what the model computes with.
        let dense = |l: &Linear| crate::lora::merged(&l.w.dense(dev)?, &l.lora)?.to_dtype(self.dtype());
        let linear = |out: &mut std::collections::HashMap<String, Tensor>, name: String, l: &Linear| -> Result<()> {
            out.insert(format!("{name}.weight"), dense(l)?);
            if let Some(b) = &l.b {
                out.insert(format!("{name}.bias"), b.clone());
            }
            Ok(())
        };
        for (i, b) in self.blocks.iter().enumerate() {
            linear(&mut out, format!("h.{i}.attn.c_attn"), &b.attn.c_attn)?;
            linear(&mut out, format!("h.{i}.attn.c_proj"), &b.attn.c_proj)?;
            match &b.mlp {
                Mlp::Gelu { c_fc, c_proj } => {
                    linear(&mut out, format!("h.{i}.mlp.c_fc"), c_fc)?;
                    linear(&mut out, format!("h.{i}.mlp.c_proj"), c_proj)?;
                }
                Mlp::SwiGlu { gate, up, down } => {
                    linear(&mut out, format!("h.{i}.mlp.gate_proj"), gate)?;
                    linear(&mut out, format!("h.{i}.mlp.up_proj"), up)?;
                    linear(&mut out, format!("h.{i}.mlp.down_proj"), down)?;
                }
                Mlp::SwiGluFused { gate_up, d_ff, down } => {
                    let w = dense(gate_up)?;
                    linear(&mut out, format!("h.{i}.mlp.down_proj"), down)?;
                    out.insert(format!("h.{i}.mlp.gate_proj.weight"), w.narrow(0, 0, *d_ff)?.contiguous()?);
                    out.insert(format!("h.{i}.mlp.up_proj.weight"), w.narrow(0, *d_ff, *d_ff)?.contiguous()?);
                }
            }
            for (n, norm) in [("ln_1", &b.ln_1), ("ln_2", &b.ln_2)] {
                out.insert(format!("h.{i}.{n}.weight"), norm.w.clone());
                if let Some(bias) = &norm.b {
                    out.insert(format!("h.{i}.{n}.bias"), bias.clone());
                }
            }
        }
        out.insert("ln_f.weight".into(), self.ln_f.w.clone());
        if let Some(bias) = &self.ln_f.b {
            out.insert("ln_f.bias".into(), bias.clone());
        }
        out.insert("wte.weight".into(), self.wte.clone());
        if let Some(wpe) = &self.wpe {
            out.insert("wpe.weight".into(), wpe.clone());
        }
        if !self.cfg.tie_embeddings {
            out.insert("lm_head.weight".into(), dense(&self.lm_head)?);
        }
        Ok(out)
    }

    /// Puts LoRA adapters on the projections `cfg` names, in every layer, taking them from `vb`
    /// (fresh ones from a trainable builder, or stored ones); returns how many parameters they
    /// hold. The base must be dense. See [`crate::lora`] for the names.
    pub fn add_lora(&mut self, cfg: &crate::lora::LoraConfig, vb: &VarBuilder) -> Result<usize> {
        use crate::lora::{Adapter, Target};
        if cfg.rank == 0 {
            candle_core::bail!("LoRA rank must be at least 1");
        }
        let (d, f) = (self.cfg.d_model, self.cfg.d_ff);
        let kv = self.cfg.n_kv_head * self.cfg.head_dim();
        let mut count = 0;
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for &t in &cfg.targets {
                let (layer, name, start, rows, in_dim) = match (t, &mut block.mlp) {
                    (Target::Q, _) => (&mut block.attn.c_attn, "attn.c_attn.q", 0, d, d),
                    (Target::K, _) => (&mut block.attn.c_attn, "attn.c_attn.k", d, kv, d),
                    (Target::V, _) => (&mut block.attn.c_attn, "attn.c_attn.v", d + kv, kv, d),
                    (Target::O, _) => (&mut block.attn.c_proj, "attn.c_proj", 0, d, d),
                    (Target::Gate, Mlp::SwiGlu { gate, .. }) => (gate, "mlp.gate_proj", 0, f, d),
                    (Target::Up, Mlp::SwiGlu { up, .. }) => (up, "mlp.up_proj", 0, f, d),
                    (Target::Down, Mlp::SwiGlu { down, .. }) => (down, "mlp.down_proj", 0, d, f),
                    (Target::Up, Mlp::Gelu { c_fc, .. }) => (c_fc, "mlp.c_fc", 0, f, d),
                    (Target::Down, Mlp::Gelu { c_proj, .. }) => (c_proj, "mlp.c_proj", 0, d, f),
                    (Target::Gate, Mlp::Gelu { .. }) => {
                        candle_core::bail!("LoRA target gate: a GELU model has no gate projection (use up, down or mlp)")
                    }
                    (_, Mlp::SwiGluFused { .. }) => candle_core::bail!("LoRA needs a dense base; dequantize the model first"),
                };
                if !matches!(layer.w, crate::linear::Weight::Dense(_)) {
                    candle_core::bail!("LoRA needs a dense base; dequantize the model first");
                }
                let adapter = Adapter::new(vb, &format!("h.{i}.{name}"), start, rows, in_dim, cfg)?;
                count += adapter.a.elem_count() + adapter.b.elem_count();
                layer.lora.push(adapter);
                layer.lora.sort_by_key(|a| a.start);
            }
        }
        Ok(count)
    }

    /// A dense copy of this model: quantized weights dequantized (to fine-tune a GGUF model, or
    /// to run its tensor path on plain matmuls).
    pub fn dequantized(&self) -> Result<Gpt> {
        let vb = VarBuilder::from_tensors(self.named_weights()?, self.dtype(), self.device());
        Gpt::new(&self.cfg, vb)
    }

    /// The output projection.
    pub(crate) fn lm_head(&self) -> &Linear {
        &self.lm_head
    }

    /// The embedding rows of `ids`, flattened (inputs of the plain-buffer pass).
    pub(crate) fn embeddings(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.wte.index_select(&Tensor::new(ids, self.wte.device())?, 0)?.flatten_all()?.to_vec1()
    }

    /// Moves every quantized matrix in lmlab's layout (attention, MLP, the output projection)
    /// into one huge-page buffer ([`crate::qmatmul::pack_into_huge_pages`]); the quantized
    /// plain-buffer pass and this tensor path then share it.
    pub(crate) fn pack_quantized_weights(&mut self) {
        let mut linears: Vec<&mut Linear> = Vec::new();
        for b in &mut self.blocks {
            linears.push(&mut b.attn.c_attn);
            linears.push(&mut b.attn.c_proj);
            match &mut b.mlp {
                Mlp::Gelu { c_fc, c_proj } => linears.extend([c_fc, c_proj]),
                Mlp::SwiGlu { gate, up, down } => linears.extend([gate, up, down]),
                Mlp::SwiGluFused { gate_up, down, .. } => linears.extend([gate_up, down]),
            }
        }
        linears.push(&mut self.lm_head);
        let mut mats: Vec<&mut QuantMatmul> = linears
            .into_iter()
            .filter_map(|l| match &mut l.w {
                crate::linear::Weight::Quantized(crate::linear::QuantWeight::Lmlab(k)) => Some(k),
                _ => None,
            })
            .collect();
        crate::qmatmul::pack_into_huge_pages(&mut mats);
    }

    /// Each layer's weights for [`crate::QuantizedLlama`] and the final norm's, when every
    /// projection runs on lmlab's quantized kernels and the model is llama-shaped (RMSNorm,
    /// rotary positions, stacked SwiGLU, f32 on the CPU).
    pub(crate) fn quant_layers(&self) -> Option<(Vec<crate::quantized::QuantLayer>, Vec<f32>)> {
        let cfg = &self.cfg;
        let fits =
            cfg.norm == Norm::RmsNorm && cfg.position == Position::Rope && self.wte.dtype() == DType::F32 && self.wte.device().is_cpu();
        if !fits {
            return None;
        }
        let vec = |t: &Tensor| t.to_vec1::<f32>().ok();
        let layers = self
            .blocks
            .iter()
            .map(|b| {
                let Mlp::SwiGluFused { gate_up, down, .. } = &b.mlp else { return None };
                Some(crate::quantized::QuantLayer {
                    ln_1: vec(&b.ln_1.w)?,
                    qkv: quant_kernel(&b.attn.c_attn)?,
                    proj: quant_kernel(&b.attn.c_proj)?,
                    ln_2: vec(&b.ln_2.w)?,
                    gate_up: quant_kernel(gate_up)?,
                    down: quant_kernel(down)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some((layers, vec(&self.ln_f.w)?))
    }

    /// Mean next-token cross-entropy of `inputs` [B, T] predicting `targets` [B, T].
    pub fn loss(&self, inputs: &Tensor, targets: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        self.masked_loss(inputs, targets, None, mode)
    }

    /// [`Gpt::loss`] over the positions where `weights` [B, T] is 1 only (fine-tuning: the
    /// assistant's tokens); the others get no loss and no gradient.
    pub fn masked_loss(&self, inputs: &Tensor, targets: &Tensor, weights: Option<&Tensor>, mode: &mut Mode) -> Result<Tensor> {
        let logits = self.forward(inputs, mode)?;
        let (b, t, v) = logits.dims3()?;
        let weights = weights.map(|w| w.reshape(b * t)).transpose()?;
        ops::cross_entropy(&logits.reshape((b * t, v))?, &targets.reshape(b * t)?, weights.as_ref())
    }
}

impl crate::CausalLm for Gpt {
    fn config(&self) -> &GptConfig {
        &self.cfg
    }

    fn device(&self) -> &Device {
        self.wte.device()
    }

    fn kind(&self) -> &'static str {
        "dense"
    }

    fn new_cache(&self) -> KvCache {
        KvCache::for_model(self.cfg.n_layer, self.cfg.n_kv_head, self.cfg.head_dim(), self.dtype())
    }

    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.forward_cached_mode(ids, cache, &mut Mode::inference())
    }

    /// One sequence after another: the tensor path has no per-sequence positions. (Quantized
    /// models decode the batch in one pass.)
    fn decode_batch(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        crate::causal_lm::check_batch(&self.cfg, tokens, caches)?;
        let rows = tokens
            .iter()
            .zip(caches.iter_mut())
            .map(|(&t, c)| self.forward_cached_mode(&Tensor::new(&[[t]], self.device())?, c, &mut Mode::inference()))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&rows, 0)
    }

    fn logits_all(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward(ids, &mut Mode::inference())
    }

    fn as_gpt(&self) -> Option<&Gpt> {
        Some(self)
    }
}
