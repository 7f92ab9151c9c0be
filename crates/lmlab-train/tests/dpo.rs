//! DPO: the sigmoid, IPO and SimPO losses against hand-computed values; a reply's
//! log-probability against one summed by hand from the logits; the gradient vanishing as β → 0;
//! the reference log-probabilities in the checkpoint equal to a recomputation with the SFT
//! model; the implicit reward starting at 0; and a resumed run, full or LoRA, bit-identical to an
//! uninterrupted one.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lmlab_model::checkpoint::{frozen_from_tensors, init_trainable};
use lmlab_model::{LoraConfig, LoraTarget, Mode};
use lmlab_train::dpo::{
    dpo_loss, reference_logprobs, sequence_logprobs, train_dpo, DpoLoss, DpoOptions, DpoReport, DpoSettings, PairLogps, ReferenceCache,
    REFERENCE_FILE,
};
use lmlab_train::optim::global_norm;
use lmlab_train::pairs::prepare;
use lmlab_train::sft::Rendered;

fn t(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn scalar(x: &Tensor) -> f64 {
    f64::from(x.to_scalar::<f32>().unwrap())
}

#[test]
fn losses_match_hand_computed_values() {
    // Two pairs: policy log-probs, reference log-probs, reply lengths.
    let (pc, pr, rc, rr, lc, lr) = (t(&[-3.0, -5.0]), t(&[-4.0, -2.0]), t(&[-3.5, -4.0]), t(&[-3.5, -3.0]), t(&[2.0, 5.0]), t(&[4.0, 1.0]));
    let policy = PairLogps { chosen: &pc, rejected: &pr, chosen_len: &lc, rejected_len: &lr };
    let reference = PairLogps { chosen: &rc, rejected: &rr, chosen_len: &lc, rejected_len: &lr };
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    let run = |loss, beta, gamma| {
        let (l, m) = dpo_loss(&DpoSettings { loss, beta, gamma }, &policy, &reference).unwrap();
        (scalar(&l), m.to_vec1::<f32>().unwrap())
    };

    // h = (π_c − ref_c) − (π_r − ref_r) = (0.5 + 0.5, −1 − 1) = (1, −2).
    // Sigmoid, β = 0.5: mean of −log σ(β·h) = softplus(−0.5), softplus(1).
    let (l, m) = run(DpoLoss::Sigmoid, 0.5, 0.0);
    assert!((l - (softplus(-0.5) + softplus(1.0)) / 2.0).abs() < 1e-6 && (l - 0.893_669_3).abs() < 1e-6, "{l}");
    assert_eq!(m, [0.5, -1.0]);
    // IPO, β = 0.5: mean of (h − 1/(2β))² = ((1 − 1)², (−2 − 1)²) = 4.5.
    let (l, m) = run(DpoLoss::Ipo, 0.5, 0.0);
    assert!((l - 4.5).abs() < 1e-6, "{l}");
    assert_eq!(m, [0.5, -1.0]);
    // SimPO, β = 0.5, γ = 0.3: β·(π_c/|y_c| − π_r/|y_r|) = 0.5·(−1.5 + 1, −1 + 2) = (−0.25, 0.5);
    // mean of −log σ(that − γ) = softplus(0.55), softplus(−0.2). No reference enters.
    let (l, m) = run(DpoLoss::Simpo, 0.5, 0.3);
    assert!((l - (softplus(0.55) + softplus(-0.2)) / 2.0).abs() < 1e-6 && (l - 0.801_815_7).abs() < 1e-6, "{l}");
    assert_eq!(m, [-0.25, 0.5]);
}

/// Two sequences of a 64-token vocabulary with their replies marked.
fn toy_sequences() -> Vec<Rendered> {
    vec![
        Rendered { ids: vec![3, 9, 14, 20, 21, 5], learn: vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0] },
        Rendered { ids: vec![7, 1, 2, 40, 41, 5, 6, 8, 30], learn: vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0] },
    ]
}

#[test]
fn a_replys_log_probability_is_the_sum_over_its_learned_tokens() {
    let (model, _) = init_trainable(&common::model_cfg(64), 3, DType::F32, &Device::Cpu).unwrap();
    let seqs = toy_sequences();
    let refs: Vec<&Rendered> = seqs.iter().collect();
    let batched: Vec<f32> = sequence_logprobs(&model, &refs, &mut Mode::inference()).unwrap().to_vec1().unwrap();
    for (s, got) in seqs.iter().zip(batched) {
        let ids = Tensor::new(s.ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits: Vec<Vec<f32>> = model.forward(&ids, &mut Mode::inference()).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        let mut expected = 0.0f64;
        for pos in 1..s.ids.len() {
            if s.learn[pos] > 0.0 {
                let row = &logits[pos - 1];
                let lse = row.iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln();
                expected += f64::from(row[s.ids[pos] as usize]) - lse;
            }
        }
        assert!((f64::from(got) - expected).abs() < 1e-4, "{got} vs {expected}");
    }
}

#[test]
fn the_gradient_vanishes_as_beta_goes_to_zero() {
    let (model, params) = init_trainable(&common::model_cfg(64), 4, DType::F32, &Device::Cpu).unwrap();
    let seqs = toy_sequences();
    let (c, r) = (&seqs[0], &seqs[1]);
    let grad_norm = |beta: f64| -> f64 {
        let lp = sequence_logprobs(&model, &[c, r], &mut Mode::training_without_dropout()).unwrap();
        let (pc, pr) = (lp.narrow(0, 0, 1).unwrap(), lp.narrow(0, 1, 1).unwrap());
        // A reference away from the policy, so that h ≠ 0 and σ(−βh) is not special.
        let (rc, rr) = ((pc.detach() - 1.5).unwrap(), (pr.detach() + 0.7).unwrap());
        let len = t(&[1.0]);
        let policy = PairLogps { chosen: &pc, rejected: &pr, chosen_len: &len, rejected_len: &len };
        let reference = PairLogps { chosen: &rc, rejected: &rr, chosen_len: &len, rejected_len: &len };
        let (loss, _) = dpo_loss(&DpoSettings { loss: DpoLoss::Sigmoid, beta, gamma: 0.0 }, &policy, &reference).unwrap();
        let grads = loss.backward().unwrap();
        global_norm(&params.params.iter().map(|(_, v)| grads.get(v).unwrap().clone()).collect::<Vec<_>>()).unwrap()
    };
    let (at_one, small, tiny) = (grad_norm(1.0), grad_norm(1e-4), grad_norm(1e-8));
    assert!(at_one > 1e-2, "the gradient at β = 1 is {at_one}");
    // −d/dθ log σ(β·h) = −β·σ(−β·h)·dh/dθ → (β/2)·dh/dθ: it vanishes, in proportion to β.
    assert!(tiny < 1e-6 && tiny / at_one < 1e-7, "β = 1e-8: {tiny} (β = 1: {at_one})");
    assert!((small / tiny / 1e4 - 1.0).abs() < 1e-2, "β = 1e-4: {small}, β = 1e-8: {tiny}");
}

fn dpo_options(dir: &Path, run: &str, lora: bool, resume: bool, stop_after: Option<u64>) -> DpoOptions {
    let tok = common::tokenizer(dir);
    let cfg = common::model_cfg(tok.vocab_size());
    let mut opts = common::options(&tok, &common::weights(&cfg, 2), &dir.join(run).join("dpo"), 8);
    opts.resume = resume;
    opts.stop_after = stop_after;
    let lora = lora.then(|| LoraConfig { rank: 2, alpha: 4.0, targets: vec![LoraTarget::Q, LoraTarget::V] });
    DpoOptions { run: opts, settings: DpoSettings { loss: DpoLoss::Sigmoid, beta: 0.5, gamma: 0.0 }, lora }
}

fn losses(r: &DpoReport) -> Vec<u64> {
    r.run.steps.iter().map(|s| s.loss.to_bits()).collect()
}

#[test]
fn the_cached_reference_equals_a_recomputation_and_the_implicit_reward_starts_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let report = train_dpo(dpo_options(dir.path(), "run", false, false, None), |_| {}).unwrap();
    let opts = dpo_options(dir.path(), "run", false, false, None);
    let out = &opts.run.out;
    let cached = ReferenceCache::read(out, &Device::Cpu).unwrap();
    let data = prepare(&opts.run, &opts.run.train, 49).unwrap();
    let sft = frozen_from_tensors(&opts.run.model_cfg, opts.run.base_weights.clone(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(cached.train, reference_logprobs(&sft, &data.train, 4).unwrap());
    assert_eq!(cached.held_out, reference_logprobs(&sft, &data.held_out, 4).unwrap());
    assert_eq!(cached.train.chosen.len(), report.train_pairs);
    // The reference numbers are the SFT model's, not the trained policy's.
    let trained = lmlab_model::checkpoint::load_model(out, DType::F32, &Device::Cpu).unwrap();
    assert_ne!(cached.train, reference_logprobs(&trained, &data.train, 4).unwrap());

    // Before the first update the policy is the reference: its margin is 0 up to rounding.
    let margins = common::metric(out, "margin");
    assert_eq!(margins.len(), 8);
    assert!(margins[0].as_f64().unwrap().abs() < 1e-4, "{margins:?}");
    assert!(common::metric(out, "accuracy").iter().all(|a| a.as_f64().is_some()));
    // DPO raised the chosen replies' implicit rewards on the training pairs.
    assert!(report.run.steps[7].extra["margin"].as_f64().unwrap() > 0.0, "{:?}", report.run.steps[7].extra);
    let held = &report.reference_prefers_chosen.all;
    assert_eq!(held.pairs, report.held_out_pairs);
    assert_eq!(report.policy_prefers_chosen.all.pairs, report.held_out_pairs);
}

#[test]
fn a_resumed_run_is_bit_identical_full_and_lora() {
    for lora in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let straight = train_dpo(dpo_options(dir.path(), "straight", lora, false, None), |_| {}).unwrap();
        let first = train_dpo(dpo_options(dir.path(), "split", lora, false, Some(3)), |_| {}).unwrap();
        assert!(first.run.interrupted);
        let second = train_dpo(dpo_options(dir.path(), "split", lora, true, None), |_| {}).unwrap();
        assert_eq!(second.run.start_step, 3);
        let joined: Vec<u64> = losses(&first).into_iter().chain(losses(&second)).collect();
        assert_eq!(joined, losses(&straight), "lora {lora}");
        let extras: Vec<_> = first.run.steps.iter().chain(&second.run.steps).map(|s| s.extra.clone()).collect();
        assert_eq!(extras, straight.run.steps.iter().map(|s| s.extra.clone()).collect::<Vec<_>>());
        assert_eq!(straight.run.last_eval_loss.map(f64::to_bits), second.run.last_eval_loss.map(f64::to_bits));
        let weights = if lora { "adapter.safetensors" } else { "model.safetensors" };
        for file in [weights, REFERENCE_FILE] {
            let read = |run: &str| std::fs::read(dir.path().join(run).join("dpo").join(file)).unwrap();
            assert!(read("straight") == read("split"), "{file} differs (lora {lora})");
        }
        assert_eq!(common::metric(&dir.path().join("split/dpo"), "step"), common::metric(&dir.path().join("straight/dpo"), "step"));
    }
}

#[test]
fn resuming_on_other_pairs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    train_dpo(dpo_options(dir.path(), "run", false, false, Some(2)), |_| {}).unwrap();
    let mut opts = dpo_options(dir.path(), "run", false, true, None);
    opts.run.pairs.truncate(45);
    let err = format!("{:#}", train_dpo(opts, |_| {}).err().unwrap());
    assert!(err.contains("the pairs differ from those"), "{err}");
    let mut opts = dpo_options(dir.path(), "fresh", false, false, None);
    opts.settings.beta = 0.0;
    assert!(format!("{:#}", train_dpo(opts, |_| {}).err().unwrap()).contains("beta must be a positive number"));
}
