//! The GRU encoder-decoder: the cell against a naive recomputation, gradients against finite
//! differences, and padding that does not change a sequence's encoding.

mod common;

use candle_core::{DType, Device, Tensor};
use lmlab_model::params::ParamBackend;
use lmlab_model::seq2seq::{GruCell, Seq2Seq, Seq2SeqConfig};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn gru_cell_matches_a_naive_recomputation() {
    let dev = Device::Cpu;
    let (input, hidden, batch) = (3, 4, 2);
    let (vb, collector) = ParamBackend::var_builder(11, None, DType::F64, &dev);
    let cell = GruCell::new(input, hidden, vb).unwrap();
    let params = collector.finish();
    let get = |n: &str| params.get(n).unwrap().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let (w_ih, w_hh, b_ih, b_hh) = (get("w_ih"), get("w_hh"), get("b_ih"), get("b_hh"));
    let x: Vec<f64> = (0..batch * input).map(|i| (i as f64 * 0.37).sin()).collect();
    let h: Vec<f64> = (0..batch * hidden).map(|i| (i as f64 * 0.71).cos() * 0.5).collect();
    let out = cell
        .step(&Tensor::from_vec(x.clone(), (batch, input), &dev).unwrap(), &Tensor::from_vec(h.clone(), (batch, hidden), &dev).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    for b in 0..batch {
        for j in 0..hidden {
            // Gate rows: r = 0..H, z = H..2H, n = 2H..3H (PyTorch's order).
            let dot_i = |row: usize| (0..input).map(|k| w_ih[row * input + k] * x[b * input + k]).sum::<f64>() + b_ih[row];
            let dot_h = |row: usize| (0..hidden).map(|k| w_hh[row * hidden + k] * h[b * hidden + k]).sum::<f64>() + b_hh[row];
            let r = sigmoid(dot_i(j) + dot_h(j));
            let z = sigmoid(dot_i(hidden + j) + dot_h(hidden + j));
            let n = (dot_i(2 * hidden + j) + r * dot_h(2 * hidden + j)).tanh();
            let expect = (1.0 - z) * n + z * h[b * hidden + j];
            assert!((out[b * hidden + j] - expect).abs() < 1e-12, "b{b} j{j}: {} vs {expect}", out[b * hidden + j]);
        }
    }
}

fn model(attention: bool, dtype: DType) -> (Seq2Seq, lmlab_model::ParamSet) {
    let cfg = Seq2SeqConfig { vocab_size: 9, d_embed: 4, d_hidden: 6, attention };
    let (vb, collector) = ParamBackend::var_builder(5, None, dtype, &Device::Cpu);
    let m = Seq2Seq::new(&cfg, vb).unwrap();
    let p = collector.finish();
    assert_eq!(p.num_elements(), cfg.param_count());
    (m, p)
}

#[test]
fn seq2seq_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let src = Tensor::new(&[[3u32, 4, 5, 6], [7, 8, 0, 0]], &dev).unwrap();
    let tgt = Tensor::new(&[[6u32, 5, 4, 3, 2], [8, 7, 2, 0, 0]], &dev).unwrap();
    for attention in [false, true] {
        let (m, params) = model(attention, DType::F64);
        let grads = m.loss(&src, &tgt).unwrap().backward().unwrap();
        common::assert_gradients_match_fd(&format!("attention={attention}"), &params, &grads, || {
            m.loss(&src, &tgt).unwrap().to_scalar::<f64>().unwrap()
        });
    }
}

#[test]
fn padding_does_not_change_the_final_state() {
    let dev = Device::Cpu;
    let (m, _) = model(false, DType::F32);
    let (_, alone, _) = m.encode(&Tensor::new(&[[3u32, 4, 5]], &dev).unwrap()).unwrap();
    let (_, padded, _) = m.encode(&Tensor::new(&[[3u32, 4, 5, 0, 0], [6, 7, 8, 3, 4]], &dev).unwrap()).unwrap();
    let a = alone.get(0).unwrap().to_vec1::<f32>().unwrap();
    let b = padded.get(0).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
}
