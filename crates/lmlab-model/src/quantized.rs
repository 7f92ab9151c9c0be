//! [`QuantizedLlama`]: quantized llama-family models (GGUF, Q4_1 / Q8_0 projections) run over
//! plain buffers through lmlab's kernels. The fast inference path of [`crate::CausalLm`].
//!
//! One pass per call: norms, rotary, SwiGLU and the residuals as loops, projections as direct
//! kernel calls, attention over the KV cache in place. The same arithmetic as the tensor path
//! without its ~15 candle operations per layer (each an allocation, some a rayon dispatch, and
//! for a prompt the copies into heads, the causal mask, the f16 cache widened to f32 and the
//! masked half of the score matrix), which were a third of a decode step and half of a
//! prefill outside the matmul kernels.
//!
//! A pass takes either one sequence's new tokens (prefill, or one decode step) or one new
//! token for each of several sequences, each with its own cache at its own position (batched
//! decode: the projections run once for all of them, attention per sequence).

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use crate::causal_lm::{check_batch, CausalLm};
use crate::config::GptConfig;
use crate::kv_cache::KvCache;
use crate::linear::Linear;
use crate::ops;
use crate::qmatmul::QuantMatmul;
use crate::Gpt;

/// One layer's weights as the plain-buffer pass uses them.
pub(crate) struct QuantLayer {
    pub(crate) ln_1: Vec<f32>,
    pub(crate) qkv: QuantMatmul,
    pub(crate) proj: QuantMatmul,
    pub(crate) ln_2: Vec<f32>,
    /// Gate and up projections stacked: one matmul gives both halves.
    pub(crate) gate_up: QuantMatmul,
    pub(crate) down: QuantMatmul,
}

/// A quantized llama-shaped model. See the module documentation.
pub struct QuantizedLlama {
    layers: Vec<QuantLayer>,
    ln_f: Vec<f32>,
    eps: f32,
    /// The same weights on candle's tensor path (they share the quantized blocks, nothing is
    /// copied): attention capture and the checks that compare both paths run there.
    tensor_path: Gpt,
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
    if input.len() / width_in >= 16 {
        out.par_chunks_mut(width_out).zip(input.par_chunks(width_in)).for_each(|(o, i)| f(i, o));
    } else {
        out.chunks_mut(width_out).zip(input.chunks(width_in)).for_each(|(o, i)| f(i, o));
    }
}

/// Which rows of a pass belong to which cache: `t` new tokens of one sequence, or one token of
/// each of several.
struct Rows {
    /// Each row's position in its sequence.
    positions: Vec<usize>,
    /// New tokens per sequence.
    t: usize,
}

impl QuantizedLlama {
    /// The plain-buffer model for `model` when it fits: RMSNorm, rotary positions, SwiGLU, f32
    /// on the CPU, and every projection on lmlab's Q4_1 / Q8_0 kernels. Otherwise `model` back
    /// for the caller to run as it is (hence the large error variant). Either way its quantized
    /// matrices are first packed into huge pages, which the tensor path's kernels read too.
    #[allow(clippy::result_large_err)]
    pub fn from_gpt(mut model: Gpt) -> std::result::Result<Self, Gpt> {
        model.pack_quantized_weights();
        match model.quant_layers() {
            Some((layers, ln_f)) => Ok(Self { layers, ln_f, eps: model.config().norm_eps as f32, tensor_path: model }),
            None => Err(model),
        }
    }

    fn lm_head(&self) -> &Linear {
        self.tensor_path.lm_head()
    }

    /// The pass: `ids` are the rows (see [`Rows`]), `caches` one per sequence. Returns the
    /// final-norm hidden states of each sequence's last row, or of every row with `all_rows`.
    fn run(&self, ids: &[u32], rows: &Rows, caches: &mut [&mut KvCache], all_rows: bool) -> Result<Vec<f32>> {
        let cfg = self.config();
        let (d, h, hkv, hd, ff) = (cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim(), cfg.d_ff);
        let (n_rows, t) = (ids.len(), rows.t);
        let dev = self.device();
        // Each row's row of the rotary tables the tensor path uses.
        let rope: Vec<(Vec<f32>, Vec<f32>)> =
            rows.positions.iter().map(|&p| ops::rope_row(p, hd, cfg.rope_theta).map(|(c, s)| (c as f32, s as f32)).unzip()).collect();
        let mut x: Vec<f32> = self.tensor_path.embeddings(ids)?;
        let width = (h + 2 * hkv) * hd;
        let mut normed = vec![0.0f32; n_rows * d];
        let mut qkv = vec![0.0f32; n_rows * width];
        let mut out = vec![0.0f32; n_rows * d];
        let mut gu = vec![0.0f32; n_rows * 2 * ff];
        let mut act = vec![0.0f32; n_rows * ff];
        let scale = 1.0 / (hd as f32).sqrt();
        for (li, l) in self.layers.iter().enumerate() {
            per_row(&x, d, &mut normed, d, |row, o| rms_norm(row, &l.ln_1, self.eps, o));
            l.qkv.matmul(&normed, n_rows, &mut qkv);
            let mut q = vec![0.0f32; n_rows * h * hd];
            // Keys and values per sequence as [1, Hkv, t, Dh], the layout the cache holds.
            let mut kv_rows = vec![(vec![0.0f32; hkv * t * hd], vec![0.0f32; hkv * t * hd]); caches.len()];
            for (r, (row, (cos, sin))) in qkv.chunks_mut(width).zip(&rope).enumerate() {
                let (qr, kv) = row.split_at_mut(h * hd);
                let (kr, vr) = kv.split_at_mut(hkv * hd);
                rope_in_place(qr, hd, cos, sin);
                rope_in_place(kr, hd, cos, sin);
                q[r * h * hd..(r + 1) * h * hd].copy_from_slice(qr);
                let (seq, ti) = (r / t, r % t);
                let (k, v) = &mut kv_rows[seq];
                for g in 0..hkv {
                    let at = (g * t + ti) * hd;
                    k[at..at + hd].copy_from_slice(&kr[g * hd..(g + 1) * hd]);
                    v[at..at + hd].copy_from_slice(&vr[g * hd..(g + 1) * hd]);
                }
            }
            let mut appended = Vec::with_capacity(caches.len());
            for (cache, (k, v)) in caches.iter_mut().zip(kv_rows) {
                appended.push(
                    cache.layers[li].append(&Tensor::from_vec(k, (1, hkv, t, hd), dev)?, &Tensor::from_vec(v, (1, hkv, t, hd), dev)?)?,
                );
            }
            let y: Vec<f32> = if t == 1 {
                // One query per sequence, each over its own cache.
                let one = |(s, (kc, vc)): (usize, &(Tensor, Tensor))| -> Result<Vec<f32>> {
                    let qt = Tensor::from_slice(&q[s * h * hd..(s + 1) * h * hd], (1, h, 1, hd), dev)?;
                    crate::decode_attention::single_query_attention(&qt, kc, vc, scale)?.flatten_all()?.to_vec1()
                };
                let parts: Vec<Vec<f32>> = if appended.len() > 1 {
                    appended.par_iter().enumerate().map(one).collect::<Result<_>>()?
                } else {
                    appended.iter().enumerate().map(one).collect::<Result<_>>()?
                };
                parts.concat()
            } else {
                let (kc, vc) = &appended[0];
                crate::prefill_attention::causal_attention(&q, t, h, kc, vc, scale)?
            };
            l.proj.matmul(&y, n_rows, &mut out);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
            per_row(&x, d, &mut normed, d, |row, o| rms_norm(row, &l.ln_2, self.eps, o));
            l.gate_up.matmul(&normed, n_rows, &mut gu);
            per_row(&gu, 2 * ff, &mut act, ff, |row, o| {
                let (g, u) = row.split_at(ff);
                for ((a, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            });
            l.down.matmul(&act, n_rows, &mut out);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        }
        let picked: Vec<usize> = if all_rows { (0..n_rows).collect() } else { (0..caches.len()).map(|s| s * t + t - 1).collect() };
        let mut last = vec![0.0f32; picked.len() * d];
        for (o, &r) in last.chunks_mut(d).zip(&picked) {
            rms_norm(&x[r * d..(r + 1) * d], &self.ln_f, self.eps, o);
        }
        Ok(last)
    }

    /// Hidden states → logits [rows, V].
    fn project(&self, hidden: Vec<f32>) -> Result<Tensor> {
        let d = self.config().d_model;
        let n = hidden.len() / d;
        self.lm_head().forward(&Tensor::from_vec(hidden, (n, d), self.device())?)
    }

    /// One sequence's new tokens onto its cache: the pass on a pool thread, so that its ~120
    /// parallel kernel calls start from inside the pool instead of each parking the calling
    /// thread and waking it again (two context switches per call).
    fn extend(&self, tokens: &[u32], cache: &mut KvCache, all_rows: bool) -> Result<Tensor> {
        let pos = cache.seq_len();
        if tokens.is_empty() {
            candle_core::bail!("a forward pass needs at least one token");
        }
        if pos + tokens.len() > self.config().context_length {
            candle_core::bail!("sequence of {} tokens exceeds the context length {}", pos + tokens.len(), self.config().context_length);
        }
        if cache.batch_size() > 1 {
            candle_core::bail!("a quantized model's cache holds one sequence; decode several with decode_batch");
        }
        let rows = Rows { positions: (pos..pos + tokens.len()).collect(), t: tokens.len() };
        let hidden = rayon::scope(|_| self.run(tokens, &rows, &mut [cache], all_rows))?;
        self.project(hidden)
    }
}

impl CausalLm for QuantizedLlama {
    fn config(&self) -> &GptConfig {
        self.tensor_path.config()
    }

    fn device(&self) -> &Device {
        self.tensor_path.device()
    }

    fn kind(&self) -> &'static str {
        "quantized llama"
    }

    /// f16 keys and values, as llama.cpp's default cache: half the bytes a decode step reads at
    /// long contexts.
    fn new_cache(&self) -> KvCache {
        let cfg = self.config();
        KvCache::for_model(cfg.n_layer, cfg.n_kv_head, cfg.head_dim(), DType::F16)
    }

    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        if ids.dim(0)? == 1 {
            return self.extend(&ids.flatten_all()?.to_vec1::<u32>()?, cache, false);
        }
        // Several sequences in one shared cache take the tensor path (the plain-buffer pass
        // keeps one sequence per cache; use decode_batch for independent ones).
        self.tensor_path.forward_cached(ids, cache)
    }

    fn decode_batch(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        check_batch(self.config(), tokens, caches)?;
        let rows = Rows { positions: caches.iter().map(|c| c.seq_len()).collect(), t: 1 };
        let hidden = rayon::scope(|_| self.run(tokens, &rows, caches, false))?;
        self.project(hidden)
    }

    fn logits_all(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let mut rows = Vec::with_capacity(b);
        for i in 0..b {
            let tokens = ids.get(i)?.to_vec1::<u32>()?;
            rows.push(self.extend(&tokens, &mut self.new_cache(), true)?);
        }
        Tensor::stack(&rows, 0)?.reshape((b, t, self.vocab_size()))
    }

    fn as_gpt(&self) -> Option<&Gpt> {
        Some(&self.tensor_path)
    }
}
