//! Attention for one new position over the KV cache (a decode step): the tensor-facing side
//! of `lmlab_kernels::decode_attention`, which holds the loops, their SIMD and their tests.
//! Inference only: no gradient, no weight capture, no dropout (the caller falls back to the
//! generic path for those).

use candle_core::{DType, Result, Storage, Tensor};
use lmlab_kernels::{CacheElem, CacheView};

/// `q` [B, H, 1, Dh] f32; `k`, `v` [B, Hkv, S, Dh] in f32 or f16, with H a multiple of Hkv
/// (query head `h` reads key/value head `h / (H / Hkv)`). Returns softmax(q·kᵀ·scale)·v as
/// [B, H, 1, Dh] f32.
pub fn single_query_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (_, _, t, _) = q.dims4()?;
    if t != 1 || q.dtype() != DType::F32 || !q.device().is_cpu() {
        candle_core::bail!("single_query_attention takes one f32 CPU query position");
    }
    if k.dtype() != v.dtype() {
        candle_core::bail!("keys are {:?} but values {:?}", k.dtype(), v.dtype());
    }
    match k.dtype() {
        DType::F32 => attention_over::<f32>(q, k, v, scale),
        DType::F16 => attention_over::<half::f16>(q, k, v, scale),
        other => candle_core::bail!("single_query_attention reads f32 or f16 caches, not {other:?}"),
    }
}

/// The tensor's storage as a strided view of rows (a KV cache buffer with room to spare).
fn view<'a, T: candle_core::WithDType>(data: &'a [T], l: &candle_core::Layout) -> Result<CacheView<'a, T>> {
    let (st, d) = (l.stride(), l.dims());
    CacheView::new(data, l.start_offset(), [d[0], d[1], d[2], d[3]], [st[0], st[1], st[2]]).map_err(candle_core::Error::Msg)
}

fn attention_over<T: CacheElem + candle_core::WithDType>(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (b, h, _, hd) = q.dims4()?;
    let q = q.contiguous()?;
    let rows_contiguous = |x: &Tensor| if x.stride()[3] == 1 { Ok(x.clone()) } else { x.contiguous() };
    let (k, v) = (rows_contiguous(k)?, rows_contiguous(v)?);
    let qv: Vec<f32> = q.flatten_all()?.to_vec1()?;
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&*ks, &*vs) else { candle_core::bail!("CPU tensors expected") };
    let (kview, vview) = (view(ks.as_slice::<T>()?, kl)?, view(vs.as_slice::<T>()?, vl)?);
    let out = lmlab_kernels::decode_attention(&qv, h, kview, vview, scale).map_err(candle_core::Error::Msg)?;
    Tensor::from_vec(out, (b, h, 1, hd), q.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_softmax_attention_computed_with_tensor_ops() {
        let dev = Device::Cpu;
        // A short cache (one thread) and a long one (spread over threads).
        for s in [13, 400] {
            let (b, h, hkv, hd) = (2, 6, 2, 20);
            let q = Tensor::randn(0f32, 1.0, (b, h, 1, hd), &dev).unwrap();
            // Keys and values as views into a larger buffer, as the KV cache hands them out.
            let kbuf = Tensor::randn(0f32, 1.0, (b, hkv, s + 19, hd), &dev).unwrap();
            let vbuf = Tensor::randn(0f32, 1.0, (b, hkv, s + 19, hd), &dev).unwrap();
            let (k, v) = (kbuf.narrow(2, 0, s).unwrap(), vbuf.narrow(2, 0, s).unwrap());
            let scale = 1.0 / (hd as f32).sqrt();
            let got = single_query_attention(&q, &k, &v, scale).unwrap();
            // An f16 cache gives what f32 arithmetic gives on the f16-rounded keys and values.
            let (k16, v16) =
                (kbuf.to_dtype(DType::F16).unwrap().narrow(2, 0, s).unwrap(), vbuf.to_dtype(DType::F16).unwrap().narrow(2, 0, s).unwrap());
            let got16 = single_query_attention(&q, &k16, &v16, scale).unwrap();
            let want16 = single_query_attention(&q, &k16.to_dtype(DType::F32).unwrap(), &v16.to_dtype(DType::F32).unwrap(), scale).unwrap();
            let diff16 = (&got16 - &want16).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff16 < 1e-6, "s={s} f16: {diff16}");
            // Reference: repeat each key/value head for its query heads, then plain tensor ops.
            let rep = h / hkv;
            let expand = |t: &Tensor| t.unsqueeze(2).unwrap().repeat((1, 1, rep, 1, 1)).unwrap().reshape((b, h, s, hd)).unwrap();
            let (ke, ve) = (expand(&k.contiguous().unwrap()), expand(&v.contiguous().unwrap()));
            let scores = (q.matmul(&ke.t().unwrap()).unwrap() * scale as f64).unwrap();
            let want = candle_nn::ops::softmax_last_dim(&scores).unwrap().matmul(&ve).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "s={s}: {diff}");
        }
    }
}
