//! The quantized plain-buffer model ([`QuantizedLlama`]) against the tensor path on the same
//! quantized weights: prefill, a second prompt onto a filled cache, decode steps, batched
//! decode of sequences at different positions, scoring every position, and the f16 cache.

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::gguf::{load_gguf, write_llama_gguf};
use lmlab_model::{CausalLm, Gpt, GptConfig, KvCache, Mode, QuantizedLlama};

/// A llama-shaped model whose matrices have 256 columns (the k-quant block size), with weights
/// larger than the init's 0.02 so that logits spread out and attention is far from uniform.
fn reference() -> (GptConfig, HashMap<String, Tensor>) {
    let cfg = GptConfig { tie_embeddings: false, ..GptConfig::llama_style(64, 320, 2, 4, 2, 256, 256) };
    let (_, params) = init_trainable(&cfg, 7, DType::F32, &Device::Cpu).unwrap();
    let tensors = params.tensors().into_iter().map(|(n, t)| if t.rank() == 2 { (n, (t * 3.0).unwrap()) } else { (n, t) }).collect();
    (cfg, tensors)
}

fn quantized(dtype: GgmlDType, dir: &std::path::Path) -> QuantizedLlama {
    let (cfg, tensors) = reference();
    let path = dir.join(format!("{dtype:?}.gguf"));
    write_llama_gguf(&path, &cfg, &tensors, dtype, vec![]).unwrap();
    QuantizedLlama::from_gpt(load_gguf(&path, &Device::Cpu).unwrap().model)
        .unwrap_or_else(|_| panic!("{dtype:?} fits the plain-buffer pass"))
}

fn vec1(t: Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale
}

fn ids(tokens: &[u32]) -> Tensor {
    Tensor::new(tokens, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// Layer `l`'s cached keys and values as f32.
fn layer_kv(c: &KvCache, l: usize) -> (Vec<f32>, Vec<f32>) {
    let (k, v) = c.layer(l).unwrap().keys_values().unwrap();
    (vec1(k.to_dtype(DType::F32).unwrap()), vec1(v.to_dtype(DType::F32).unwrap()))
}

/// A cache of the model's shape in f32, so that both paths' keys can be compared unrounded.
fn f32_cache(cfg: &GptConfig) -> KvCache {
    KvCache::for_model(cfg.n_layer, cfg.n_kv_head, cfg.head_dim(), DType::F32)
}

#[test]
fn only_quantized_llama_models_take_the_plain_buffer_pass() {
    let (cfg, tensors) = reference();
    let dense = Gpt::new(&cfg, candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)).unwrap();
    assert!(QuantizedLlama::from_gpt(dense).is_err(), "a dense model keeps the tensor path");
    let gpt2 = init_trainable(&GptConfig::gpt2_style(64, 32, 2, 2, 32, 64), 1, DType::F32, &Device::Cpu).unwrap().0;
    assert!(QuantizedLlama::from_gpt(gpt2).is_err());
}

#[test]
fn plain_buffer_prefill_and_decode_equal_the_tensor_path() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let m = quantized(dtype, dir.path());
        let cfg = m.config().clone();
        let tensor = m.as_gpt().unwrap();
        let prompt = ids(&[3, 9, 27, 17, 51, 2]);
        // A second prompt onto the filled cache (as a chat's next turn): 40 rows, so the row
        // loops run across threads and attention takes two blocks of query rows.
        let more: Vec<u32> = (0..40).map(|i| (i * 13 + 5) % 64).collect();
        let (mut fused_cache, mut plain_cache) = (f32_cache(&cfg), f32_cache(&cfg));
        for (chunk, what) in [(prompt.clone(), "prompt"), (ids(&more), "second prompt")] {
            let fused = vec1(m.forward_cached(&chunk, &mut fused_cache).unwrap());
            let plain = vec1(tensor.forward_cached(&chunk, &mut plain_cache).unwrap());
            // Layer 0's keys and values come from the embeddings through one norm and one
            // matmul (the same kernel on the same rows): the two paths differ only in the
            // norm's summation order, a few f32 ulps (1e-5 relative covers them).
            let ((kf, vf), (kp, vp)) = (layer_kv(&fused_cache, 0), layer_kv(&plain_cache, 0));
            assert!(max_rel_diff(&kp, &kf) < 1e-5 && max_rel_diff(&vp, &vf) < 1e-5, "{dtype:?} {what}: layer-0 keys or values differ");
            // Later layers: each matmul re-quantizes its input to 8 bits, so one ulp upstream
            // can flip a rounding; a flip moves an output by one 8-bit step of its input
            // (1/127 of the block maximum times a weight), a few of them stay under 2e-2.
            for l in 1..cfg.n_layer {
                let ((kf, vf), (kp, vp)) = (layer_kv(&fused_cache, l), layer_kv(&plain_cache, l));
                assert!(
                    max_rel_diff(&kp, &kf) < 2e-2 && max_rel_diff(&vp, &vf) < 2e-2,
                    "{dtype:?} {what}: layer-{l} keys or values differ"
                );
            }
            let diff = max_rel_diff(&plain, &fused);
            eprintln!("{dtype:?} {what}: max relative logit difference {diff}");
            // The logits sit behind every layer's re-quantization: a few steps, as above.
            assert!(diff < 3e-2, "{dtype:?} {what}: max relative logit difference {diff}");
        }
        // Decode steps from one shared cache, so that only the step itself is compared: no
        // re-quantized input differs before the step, so the logits agree to rounding.
        let mut plain_cache = fused_cache.clone();
        for (i, token) in [5u32, 60, 12, 33, 8, 41, 0, 19].into_iter().enumerate() {
            let fused = vec1(m.forward_cached(&ids(&[token]), &mut fused_cache).unwrap());
            let plain = vec1(tensor.forward_cached(&ids(&[token]), &mut plain_cache).unwrap());
            let diff = max_rel_diff(&plain, &fused);
            // Attention sums in another order (f32 rounding, ~1e-7 relative per add).
            assert!(diff < 1e-5, "{dtype:?} step {i}: max relative logit difference {diff}");
        }
        assert_eq!(fused_cache.seq_len(), 6 + 40 + 8);
    }
}

#[test]
fn batched_decode_of_sequences_at_different_positions_equals_each_alone() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let m = quantized(dtype, dir.path());
        let v = m.vocab_size();
        // Three sequences of 3, 17 and 45 tokens, each in its own cache.
        let caches: Vec<KvCache> = [3usize, 17, 45]
            .iter()
            .map(|&len| {
                let mut c = m.new_cache();
                let toks: Vec<u32> = (0..len as u32).map(|i| (i * 7 + len as u32) % 64).collect();
                m.forward_cached(&ids(&toks), &mut c).unwrap();
                c
            })
            .collect();
        let tokens = [4u32, 22, 63];
        let mut batch = caches.clone();
        let mut refs: Vec<&mut KvCache> = batch.iter_mut().collect();
        let together = vec1(m.decode_batch(&tokens, &mut refs).unwrap());
        assert_eq!(together.len(), 3 * v);
        for (i, (cache, &token)) in caches.iter().zip(&tokens).enumerate() {
            let mut alone = cache.clone();
            let one = vec1(m.forward_cached(&ids(&[token]), &mut alone).unwrap());
            // Per output the batched kernels do the lone step's operations in the same order
            // (lmlab-kernels tests the four-row kernels bit for bit).
            assert_eq!(one, together[i * v..(i + 1) * v], "{dtype:?}: sequence {i} differs from its lone step");
            assert_eq!(batch[i].seq_len(), cache.seq_len() + 1);
            // And the tensor path agrees on that sequence.
            let mut plain = cache.clone();
            let want = vec1(m.as_gpt().unwrap().forward_cached(&ids(&[token]), &mut plain).unwrap());
            // As for a single decode step: attention sums in another order.
            assert!(max_rel_diff(&want, &one) < 1e-5, "{dtype:?}: sequence {i} against the tensor path");
        }
        // A token outside the vocabulary, or fewer tokens than caches, is an error.
        let mut refs: Vec<&mut KvCache> = batch.iter_mut().collect();
        assert!(m.decode_batch(&[1, 2, 999], &mut refs).is_err());
        assert!(m.decode_batch(&[1, 2], &mut refs).is_err());
    }
}

#[test]
fn scoring_every_position_matches_prefill_and_the_f16_cache_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    let m = quantized(GgmlDType::Q4_1, dir.path());
    let v = m.vocab_size();
    let toks: Vec<u32> = (0..20).map(|i| (i * 11 + 3) % 64).collect();
    let all = vec1(m.logits_all(&ids(&toks)).unwrap());
    assert_eq!(all.len(), 20 * v);
    // The last row is the prefill's answer: the same pass.
    let last = vec1(m.forward_cached(&ids(&toks), &mut m.new_cache()).unwrap());
    assert_eq!(last, all[19 * v..]);
    // Row 9 is what a prefill of the first ten tokens gives.
    let ten = vec1(m.forward_cached(&ids(&toks[..10]), &mut m.new_cache()).unwrap());
    // Ten rows and twenty quantize alike per row; attention over a longer block sums alike.
    assert!(max_rel_diff(&ten, &all[9 * v..10 * v]) < 1e-5);
    // The default cache holds f16 (as llama.cpp's): half the bytes of an f32 one, and logits
    // close to what the same steps give with an f32 cache.
    let (mut narrow, mut wide) = (m.new_cache(), f32_cache(m.config()));
    assert_eq!(narrow.bytes_per_token().unwrap() * 2, wide.bytes_per_token().unwrap());
    let a = vec1(m.forward_cached(&ids(&toks), &mut narrow).unwrap());
    let b = vec1(m.forward_cached(&ids(&toks), &mut wide).unwrap());
    assert_eq!(wide.bytes(), 2 * narrow.bytes());
    let diff = max_rel_diff(&b, &a);
    // Every matmul re-quantizes its input to 8 bits, so an f16 rounding upstream moves logits
    // by up to a few 8-bit steps (as the layer comparisons above).
    assert!(diff > 0.0 && diff < 5e-2, "f16 vs f32 cache {diff}");
}

#[test]
fn attention_capture_runs_on_the_tensor_path_of_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let m = quantized(GgmlDType::Q8_0, dir.path());
    let mut captured = Vec::new();
    let mut mode = Mode { grad: false, dropout: None, capture: Some(&mut captured), packing: None };
    let gpt = m.as_gpt().unwrap();
    gpt.forward_cached_mode(&ids(&[1, 2, 3]), &mut gpt.new_cache(), &mut mode).unwrap();
    assert_eq!(captured.len(), m.config().n_layer);
    assert_eq!(captured[0].dims(), &[1, 4, 3, 3]);
}

#[test]
fn a_copied_prefix_then_the_rest_of_the_prompt_equals_one_prefill() {
    // Prefix caching in a server: a cache kept from an earlier prompt, copied and cut to the
    // shared tokens, then only the new tokens prefilled. The shared positions' keys and values
    // are those the model wrote (a copy, bit for bit), and the last logits agree with one
    // prefill of the whole prompt to rounding.
    let dir = tempfile::tempdir().unwrap();
    let m = quantized(GgmlDType::Q4_1, dir.path());
    let prompt: Vec<u32> = (0..46).map(|i| (i * 7 + 3) % 64).collect();
    let mut whole = m.new_cache();
    let expected = vec1(m.forward_cached(&ids(&prompt), &mut whole).unwrap());
    let earlier: Vec<u32> = [&prompt[..20], &[1, 2, 3, 4, 5]].concat();
    let mut kept = m.new_cache();
    m.forward_cached(&ids(&earlier), &mut kept).unwrap();
    let mut cache = kept.copy_prefix(20, prompt.len()).unwrap();
    assert_eq!(cache.seq_len(), 20);
    assert_eq!(cache.reserved_bytes(), whole.reserved_bytes(), "room for the prompt, as a fresh prefill makes");
    for l in 0..m.config().n_layer {
        let ((k, v), (kk, kv)) = (layer_kv(&cache, l), layer_kv(&kept, l));
        let per_pos = k.len() / 20;
        let first20 = |x: &[f32]| -> Vec<f32> {
            // [1, H_kv, S, Dh]: the first 20 positions of each head.
            let heads = m.config().n_kv_head;
            let dh = per_pos / heads;
            (0..heads).flat_map(|h| x[h * 25 * dh..h * 25 * dh + 20 * dh].to_vec()).collect()
        };
        assert_eq!((k, v), (first20(&kk), first20(&kv)), "layer {l}: the copied positions");
    }
    let got = vec1(m.forward_cached(&ids(&prompt[20..]), &mut cache).unwrap());
    let diff = max_rel_diff(&expected, &got);
    eprintln!("copied prefix + rest against one prefill: max relative logit difference {diff}");
    assert!(diff < 1e-5, "max relative logit difference {diff}");
    assert!(kept.copy_prefix(26, 30).is_err(), "more positions than the cache holds");
}
