//! The RNN encoder-decoder that came before the Transformer: a GRU encoder reads the source one
//! token at a time; a GRU decoder writes the target one token at a time, either from the
//! encoder's final state alone (the fixed-vector bottleneck of Cho et al. / Sutskever et al.
//! 2014) or with additive attention over all encoder states (Bahdanau et al. 2015).
//!
//! The GRU cell is built from differentiable tensor ops: candle-nn's GRU returns a wrongly
//! shaped state (candle issue #1723) and its fused helpers have no backward pass. Token ids:
//! 0 = padding, 1 = begin-of-sequence for the decoder, 2 = end-of-sequence.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::ops;

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Seq2SeqConfig {
    pub vocab_size: usize,
    pub d_embed: usize,
    pub d_hidden: usize,
    /// Additive (Bahdanau) attention over the encoder states.
    pub attention: bool,
}

impl Seq2SeqConfig {
    /// Parameters, as allocated.
    pub fn param_count(&self) -> usize {
        let (v, e, h) = (self.vocab_size, self.d_embed, self.d_hidden);
        let gru = |input: usize| 3 * h * input + 3 * h * h + 6 * h;
        let attn = if self.attention { 2 * h * h + h } else { 0 };
        // The decoder reads [embedding; context] and the output layer [state; context].
        2 * v * e + gru(e) + gru(e + h) + attn + v * 2 * h + v
    }
}

/// A GRU cell: r = σ(W_ir x + U_hr h + b), z = σ(W_iz x + U_hz h + b),
/// n = tanh(W_in x + b_in + r ⊙ (U_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.
pub struct GruCell {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

impl GruCell {
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let k = 1.0 / (hidden as f64).sqrt();
        let u = Init::Uniform { lo: -k, up: k };
        Ok(Self {
            w_ih: vb.get_with_hints((3 * hidden, input), "w_ih", u)?,
            w_hh: vb.get_with_hints((3 * hidden, hidden), "w_hh", u)?,
            b_ih: vb.get_with_hints(3 * hidden, "b_ih", u)?,
            b_hh: vb.get_with_hints(3 * hidden, "b_hh", u)?,
            hidden,
        })
    }

    /// One step: x [B, input], h [B, hidden] → h' [B, hidden].
    pub fn step(&self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        let gi = ops::linear(x, &self.w_ih, Some(&self.b_ih))?;
        let gh = ops::linear(h, &self.w_hh, Some(&self.b_hh))?;
        let hs = self.hidden;
        let part = |t: &Tensor, i: usize| t.narrow(1, i * hs, hs);
        let r = candle_nn::ops::sigmoid(&(part(&gi, 0)? + part(&gh, 0)?)?)?;
        let z = candle_nn::ops::sigmoid(&(part(&gi, 1)? + part(&gh, 1)?)?)?;
        let n = (part(&gi, 2)? + (r * part(&gh, 2)?)?)?.tanh()?;
        let one_minus_z = z.affine(-1.0, 1.0)?;
        (one_minus_z * n)? + (z * h)?
    }
}

pub struct Seq2Seq {
    pub cfg: Seq2SeqConfig,
    src_embed: Tensor,
    tgt_embed: Tensor,
    encoder: GruCell,
    decoder: GruCell,
    /// Attention: W_a (decoder state), U_a (encoder states), v.
    attn: Option<(Tensor, Tensor, Tensor)>,
    out_w: Tensor,
    out_b: Tensor,
}

impl Seq2Seq {
    pub fn new(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        let (v, e, h) = (cfg.vocab_size, cfg.d_embed, cfg.d_hidden);
        let emb = Init::Randn { mean: 0.0, stdev: 0.1 };
        let k = 1.0 / (h as f64).sqrt();
        let u = Init::Uniform { lo: -k, up: k };
        let attn = if cfg.attention {
            Some((
                vb.get_with_hints((h, h), "attn.w_a", u)?,
                vb.get_with_hints((h, h), "attn.u_a", u)?,
                vb.get_with_hints((1, h), "attn.v", u)?,
            ))
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            src_embed: vb.get_with_hints((v, e), "src_embed", emb)?,
            tgt_embed: vb.get_with_hints((v, e), "tgt_embed", emb)?,
            encoder: GruCell::new(e, h, vb.pp("encoder"))?,
            decoder: GruCell::new(e + h, h, vb.pp("decoder"))?,
            attn,
            out_w: vb.get_with_hints((v, 2 * h), "out.weight", u)?,
            out_b: vb.get_with_hints(v, "out.bias", Init::Const(0.0))?,
        })
    }

    fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        table.index_select(ids, 0)
    }

    /// Encodes `src` [B, S] (0-padded): all states [B, S, H] and the final state [B, H] (the
    /// state after each row's last real token), plus the source mask [B, S].
    pub fn encode(&self, src: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, s) = src.dims2()?;
        let mask = src.ne(PAD)?.to_dtype(self.out_w.dtype())?;
        let mut h = Tensor::zeros((b, self.cfg.d_hidden), self.out_w.dtype(), src.device())?;
        let mut states = Vec::with_capacity(s);
        for t in 0..s {
            let x = Self::embed(&self.src_embed, &src.narrow(1, t, 1)?.squeeze(1)?)?;
            let next = self.encoder.step(&x, &h)?;
            // Padding leaves the state unchanged, so the final state is the last real one.
            let m = mask.narrow(1, t, 1)?;
            h = (next.broadcast_mul(&m)? + h.broadcast_mul(&m.affine(-1.0, 1.0)?)?)?;
            states.push(h.clone());
        }
        Ok((Tensor::stack(&states, 1)?, h, mask))
    }

    /// Context for one decoder step: the final encoder state (no attention), or the attention
    /// over encoder states given the previous decoder state. Also returns the weights [B, S].
    fn context(
        &self,
        enc: &Tensor,
        enc_proj: Option<&Tensor>,
        final_state: &Tensor,
        mask: &Tensor,
        h: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let Some((w_a, _, v)) = &self.attn else { return Ok((final_state.clone(), None)) };
        let q = ops::linear(h, w_a, None)?.unsqueeze(1)?; // [B, 1, H]
        let e = enc_proj.expect("projected encoder states").broadcast_add(&q)?.tanh()?; // [B, S, H]
        let scores = ops::linear(&e, v, None)?.squeeze(D::Minus1)?; // [B, S]
        let neg = ((mask.affine(-1.0, 1.0)?) * -1e9)?;
        let weights = ops::softmax(&(scores + neg)?)?;
        let ctx = weights.unsqueeze(1)?.matmul(enc)?.squeeze(1)?; // [B, H]
        Ok((ctx, Some(weights)))
    }

    fn start(&self, src: &Tensor) -> Result<(Tensor, Option<Tensor>, Tensor, Tensor)> {
        let (enc, final_state, mask) = self.encode(src)?;
        let enc_proj = match &self.attn {
            Some((_, u_a, _)) => Some(ops::linear(&enc, u_a, None)?),
            None => None,
        };
        Ok((enc, enc_proj, final_state, mask))
    }

    fn decode_step(
        &self,
        prev: &Tensor,
        h: &Tensor,
        enc: &Tensor,
        enc_proj: Option<&Tensor>,
        final_state: &Tensor,
        mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (ctx, _) = self.context(enc, enc_proj, final_state, mask, h)?;
        let x = Tensor::cat(&[Self::embed(&self.tgt_embed, prev)?, ctx.clone()], 1)?;
        let h = self.decoder.step(&x, h)?;
        let logits = ops::linear(&Tensor::cat(&[h.clone(), ctx], 1)?, &self.out_w, Some(&self.out_b))?;
        Ok((logits, h))
    }

    /// Teacher-forced loss: `tgt` [B, T] holds the target tokens followed by EOS and padding.
    pub fn loss(&self, src: &Tensor, tgt: &Tensor) -> Result<Tensor> {
        let (b, t) = tgt.dims2()?;
        let (enc, enc_proj, final_state, mask) = self.start(src)?;
        let mut h = final_state.clone();
        let mut prev = Tensor::full(BOS, b, src.device())?;
        let mut logits = Vec::with_capacity(t);
        for i in 0..t {
            let (l, nh) = self.decode_step(&prev, &h, &enc, enc_proj.as_ref(), &final_state, &mask)?;
            logits.push(l);
            h = nh;
            prev = tgt.narrow(1, i, 1)?.squeeze(1)?;
        }
        let logits = Tensor::stack(&logits, 1)?.reshape((b * t, self.cfg.vocab_size))?;
        let targets = tgt.reshape(b * t)?;
        let tmask = targets.ne(PAD)?;
        ops::cross_entropy(&logits, &targets, Some(&tmask))
    }

    /// Greedy decoding of up to `max_len` tokens per row (EOS excluded from the output).
    pub fn greedy(&self, src: &Tensor, max_len: usize) -> Result<Vec<Vec<u32>>> {
        let b = src.dim(0)?;
        let (enc, enc_proj, final_state, mask) = self.start(src)?;
        let mut h = final_state.clone();
        let mut prev = Tensor::full(BOS, b, src.device())?;
        let mut out = vec![Vec::new(); b];
        let mut done = vec![false; b];
        for _ in 0..max_len {
            let (l, nh) = self.decode_step(&prev, &h, &enc, enc_proj.as_ref(), &final_state, &mask)?;
            h = nh;
            let next = l.argmax(D::Minus1)?.to_dtype(DType::U32)?;
            for (i, &tok) in next.to_vec1::<u32>()?.iter().enumerate() {
                if !done[i] {
                    if tok == EOS {
                        done[i] = true;
                    } else {
                        out[i].push(tok);
                    }
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            prev = next;
        }
        Ok(out)
    }
}
