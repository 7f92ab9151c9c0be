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
            (Norm::LayerNorm, true) => ops::composed_layer_norm(x, &self.w, self.b.as_ref(), self.eps),
            (Norm::RmsNorm, true) => ops::composed_rms_norm(x, &self.w, self.eps),
            (Norm::LayerNorm, false) => {
                let b = self.b.as_ref().or(self.zero_b.as_ref()).expect("a bias or its zeros");
                ops::layer_norm_infer(x, &self.w, b, self.eps)
            }
            (Norm::RmsNorm, false) => ops::rms_norm_infer(x, &self.w, self.eps),
        }
    }
}

enum Mlp {
    Gelu { c_fc: Linear, c_proj: Linear },
    SwiGlu { gate: Linear, up: Linear, down: Linear },
    /// SwiGLU of a quantized model with gate and up stacked into one matmul.
    SwiGluFused { gate_up: Linear, d_ff: usize, down: Linear },
}

impl Mlp {
    fn new(cfg: &GptConfig, vb: WeightSource) -> Result<Self> {
        let (d, f, bias) = (cfg.d_model, cfg.d_ff, cfg.bias);
        let std = 0.02;
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        Ok(match cfg.activation {
            Activation::Gelu => Mlp::Gelu {
                c_fc: vb.pp("c_fc").linear(f, d, std, bias)?,
                c_proj: vb.pp("c_proj").linear(d, f, proj_std, bias)?,
            },
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

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Mlp::Gelu { c_fc, c_proj } => c_proj.forward(&c_fc.forward(x)?.gelu()?),
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
        let m = self.mlp.forward(&self.ln_2.forward(&x, mode.grad)?)?;
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
    /// The plain-buffer prefill and decode, when this model fits it (built on first use).
    fused: std::sync::OnceLock<Option<FusedForward>>,
}

/// One layer's weights as the fused pass uses them.
struct FusedLayer {
    ln_1: Vec<f32>,
    qkv: QuantMatmul,
    proj: QuantMatmul,
    ln_2: Vec<f32>,
    gate_up: QuantMatmul,
    down: QuantMatmul,
}

/// Prefill of one sequence and decode steps of one or several, on the CPU over plain buffers: norms, rotary, SwiGLU and
/// the residuals as loops, projections as direct kernel calls, attention over the KV cache in
/// place. The same arithmetic as the tensor path without its ~15 candle operations per layer
/// (each an allocation, some a rayon dispatch, and for a prompt the copies into heads, the
/// causal mask, the f16 cache widened to f32 and the masked half of the score matrix), which
/// were a third of a decode step and half of a prefill outside the matmul kernels. Built for
/// llama-shaped models whose projections use lmlab's quantized kernels.
struct FusedForward {
    layers: Vec<FusedLayer>,
    ln_f: Vec<f32>,
    eps: f32,
}

fn quant_kernel(l: &Linear) -> Option<QuantMatmul> {
    match (&l.w, &l.b) {
        (crate::linear::Weight::Quantized(crate::linear::QuantWeight::Lmlab(k)), None) => Some(k.clone()),
        _ => None,
    }
}

/// `x / sqrt(mean(x²) + eps) * w`, as candle's fused RmsNorm computes it.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mean = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * r * g;
    }
}

/// Rotary ("rotate half") on each head of `x` at one position.
fn rope_in_place(x: &mut [f32], hd: usize, cos: &[f32], sin: &[f32]) {
    let half = hd / 2;
    for head in x.chunks_mut(hd) {
        for i in 0..half {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos[i] - b * sin[i];
            head[i + half] = a * sin[i] + b * cos[i];
        }
    }
}

/// `f` on each pair of `width_in`-wide input row and `width_out`-wide output row, across the
/// threads when there are enough rows to pay for the dispatch (a decode step has one).
fn per_row(input: &[f32], width_in: usize, out: &mut [f32], width_out: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if input.len() / width_in >= 16 {
        out.par_chunks_mut(width_out).zip(input.par_chunks(width_in)).for_each(|(o, i)| f(i, o));
    } else {
        out.chunks_mut(width_out).zip(input.chunks(width_in)).for_each(|(o, i)| f(i, o));
    }
}

impl FusedForward {
    fn new(m: &Gpt) -> Option<Self> {
        let cfg = &m.cfg;
        let fits = cfg.norm == Norm::RmsNorm && cfg.position == Position::Rope && m.wte.dtype() == DType::F32 && m.wte.device().is_cpu();
        if !fits {
            return None;
        }
        let vec = |t: &Tensor| t.to_vec1::<f32>().ok();
        let layers = m
            .blocks
            .iter()
            .map(|b| {
                let Mlp::SwiGluFused { gate_up, down, .. } = &b.mlp else { return None };
                Some(FusedLayer {
                    ln_1: vec(&b.ln_1.w)?,
                    qkv: quant_kernel(&b.attn.c_attn)?,
                    proj: quant_kernel(&b.attn.c_proj)?,
                    ln_2: vec(&b.ln_2.w)?,
                    gate_up: quant_kernel(gate_up)?,
                    down: quant_kernel(down)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { layers, ln_f: vec(&m.ln_f.w)?, eps: cfg.norm_eps as f32 })
    }

    /// `ids` [b, t] with b = 1 (a prompt, or one sequence's decode step) or t = 1 (one decode
    /// step of b sequences that share a cache length, e.g. n samples of one prompt): logits
    /// [b, V] of each sequence's last token. The tokens sit at the cache's next positions;
    /// their keys and values are appended.
    fn run(&self, m: &Gpt, ids: &[u32], (b, t): (usize, usize), cache: &mut KvCache) -> Result<Tensor> {
        let cfg = &m.cfg;
        let (d, h, hkv, hd, ff) = (cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim(), cfg.d_ff);
        let (rows, pos) = (ids.len(), cache.seq_len());
        if rows != b * t || !(b == 1 || t == 1) {
            candle_core::bail!("the fused pass takes one sequence or one token per sequence, not [{b}, {t}]");
        }
        if pos + t > cfg.context_length {
            candle_core::bail!("sequence of {} tokens exceeds the context length {}", pos + t, cfg.context_length);
        }
        // Each row's position, and its row of the rotary tables the tensor path uses.
        let rope: Vec<(Vec<f32>, Vec<f32>)> = (0..rows)
            .map(|r| ops::rope_row(pos + r % t, hd, cfg.rope_theta).map(|(c, s)| (c as f32, s as f32)).unzip())
            .collect();
        let dev = m.wte.device();
        let mut x: Vec<f32> = m.wte.index_select(&Tensor::new(ids, dev)?, 0)?.flatten_all()?.to_vec1()?;
        let width = (h + 2 * hkv) * hd;
        let mut normed = vec![0.0f32; rows * d];
        let mut qkv = vec![0.0f32; rows * width];
        let mut q = vec![0.0f32; rows * h * hd];
        let mut out = vec![0.0f32; rows * d];
        let mut gu = vec![0.0f32; rows * 2 * ff];
        let mut act = vec![0.0f32; rows * ff];
        let scale = 1.0 / (hd as f32).sqrt();
        for (l, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            per_row(&x, d, &mut normed, d, |row, o| rms_norm(row, &l.ln_1, self.eps, o));
            l.qkv.matmul(&normed, rows, &mut qkv);
            // Queries stay by row; keys and values go [b, head, t, Dh], as the cache holds them.
            let (mut k, mut v) = (vec![0.0f32; rows * hkv * hd], vec![0.0f32; rows * hkv * hd]);
            for (r, (row, (cos, sin))) in qkv.chunks_mut(width).zip(&rope).enumerate() {
                let (qr, kv) = row.split_at_mut(h * hd);
                let (kr, vr) = kv.split_at_mut(hkv * hd);
                rope_in_place(qr, hd, cos, sin);
                rope_in_place(kr, hd, cos, sin);
                q[r * h * hd..(r + 1) * h * hd].copy_from_slice(qr);
                let (bi, ti) = (r / t, r % t);
                for g in 0..hkv {
                    let at = ((bi * hkv + g) * t + ti) * hd;
                    k[at..at + hd].copy_from_slice(&kr[g * hd..(g + 1) * hd]);
                    v[at..at + hd].copy_from_slice(&vr[g * hd..(g + 1) * hd]);
                }
            }
            let (kc, vc) = layer_cache.append(&Tensor::from_vec(k, (b, hkv, t, hd), dev)?, &Tensor::from_vec(v, (b, hkv, t, hd), dev)?)?;
            let y: Vec<f32> = if t == 1 {
                let qt = Tensor::from_slice(&q, (b, h, 1, hd), dev)?;
                crate::decode_attention::single_query_attention(&qt, &kc, &vc, scale)?.flatten_all()?.to_vec1()?
            } else {
                crate::prefill_attention::causal_attention(&q, t, h, &kc, &vc, scale)?
            };
            l.proj.matmul(&y, rows, &mut out);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
            per_row(&x, d, &mut normed, d, |row, o| rms_norm(row, &l.ln_2, self.eps, o));
            l.gate_up.matmul(&normed, rows, &mut gu);
            per_row(&gu, 2 * ff, &mut act, ff, |row, o| {
                let (g, u) = row.split_at(ff);
                for ((a, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            });
            l.down.matmul(&act, rows, &mut out);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        }
        // Each sequence's last row.
        let mut last = vec![0.0f32; b * d];
        for (bi, o) in last.chunks_mut(d).enumerate() {
            let r = bi * t + t - 1;
            rms_norm(&x[r * d..(r + 1) * d], &self.ln_f, self.eps, o);
        }
        m.lm_head.forward(&Tensor::from_vec(last, (b, d), dev)?)
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
            (WeightSource::Vars(_), true) => Linear { w: crate::linear::Weight::Dense(wte.clone()), b: None },
            (_, true) => Linear { w: vb.weight((cfg.vocab_size, d), "wte.weight", emb)?, b: None },
            (_, false) => Linear { w: vb.weight((cfg.vocab_size, d), "lm_head.weight", emb)?, b: None },
        };
        Ok(Self { cfg: cfg.clone(), wte, wpe, blocks, ln_f, lm_head, fused: std::sync::OnceLock::new() })
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
            let pos = positions(offset, t, self.cfg.context_length, ids.device())?;
            x = x.broadcast_add(&wpe.index_select(&pos, 0)?)?;
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

    /// Runs `ids` [B, T] through the model at the cache's current offset, appending to the cache,
    /// and returns logits [B, V] of the last position only: prefill (T = prompt length) and each
    /// decode step (T = 1) are the same call.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache, mode: &mut Mode) -> Result<Tensor> {
        let offset = cache.seq_len();
        let t = ids.dim(1)?;
        if t == 0 {
            candle_core::bail!("forward_cached was given no tokens");
        }
        // The fused pass has no dropout, capture or gradient: those passes take the tensor ops.
        let b = ids.dim(0)?;
        if (b == 1 || t == 1) && !mode.grad && mode.capture.is_none() && mode.dropout.is_none() {
            if let Some(fused) = self.fused.get_or_init(|| FusedForward::new(self)) {
                let tokens = ids.flatten_all()?.to_vec1::<u32>()?;
                // The whole pass on a pool thread: its ~120 parallel kernel calls then start
                // from inside the pool instead of each parking the calling thread and waking it
                // again (two context switches per call).
                return rayon::scope(|_| fused.run(self, &tokens, (b, t), cache));
            }
        }
        let h = self.hidden(ids, offset, Some(cache), mode)?;
        let last = h.narrow(1, t - 1, 1)?.squeeze(1)?;
        self.lm_head.forward(&last)
    }

    /// Whether prefill of one sequence and decode steps (of one or several sequences) take the
    /// plain-buffer path (quantized llama-shaped models with lmlab's kernels), rather than the
    /// tensor ops.
    pub fn uses_fused_decode(&self) -> bool {
        self.fused.get_or_init(|| FusedForward::new(self)).is_some()
    }

    /// A fresh, empty cache for this model: f16 keys and values for the quantized models that
    /// decode through [`FusedForward`] (as llama.cpp's default cache; half the bytes a decode
    /// step reads at long contexts), the model's own precision otherwise.
    pub fn new_cache(&self) -> KvCache {
        if self.uses_fused_decode() {
            KvCache::with_dtype(self.cfg.n_layer, DType::F16)
        } else {
            KvCache::new(self.cfg.n_layer)
        }
    }

    /// Mean next-token cross-entropy of `inputs` [B, T] predicting `targets` [B, T].
    pub fn loss(&self, inputs: &Tensor, targets: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let logits = self.forward(inputs, mode)?;
        let (b, t, v) = logits.dims3()?;
        ops::cross_entropy(&logits.reshape((b * t, v))?, &targets.reshape(b * t)?, None)
    }
}
