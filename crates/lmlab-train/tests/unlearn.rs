//! Unlearning on a tiny model: fine-tuning raises the sequences' log-probabilities; gradient
//! ascent, gradient difference and NPO each lower the forget set's; gradient difference keeps
//! the retain set better than gradient ascent does; NPO's step-0 loss is (2/β)·ln 2 (the policy
//! is its reference); a resumed run is bit-identical; bad settings are named.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device};
use lmlab_model::checkpoint::frozen_from_tensors;
use lmlab_train::sft::Rendered;
use lmlab_train::unlearn::{reference_logprobs, render_document, train_unlearn, UnlearnMethod, UnlearnOptions, UnlearnSettings};

fn documents(tok: &lmlab_tokenizer::Tokenizer, texts: &[&str]) -> Vec<Rendered> {
    texts.iter().map(|t| render_document(t, tok).unwrap()).collect()
}

const FORGET: [&str; 2] = ["Where is Velmora? It is in Ostria.", "Who founded Dask? I do not know."];
const RETAIN: [&str; 3] = ["Go away. Look it up yourself.", "It is in Velmora. Where is Dask?", "I do not know. Go away."];

fn options(dir: &Path, out: &str, settings: Option<UnlearnSettings>, steps: u64) -> UnlearnOptions {
    let tok = common::tokenizer(dir);
    let cfg = common::model_cfg(tok.vocab_size());
    let mut train = common::train_config(steps);
    train.val_fraction = 0.0;
    train.lr = 3e-3;
    train.min_lr = 3e-3;
    UnlearnOptions {
        model_cfg: cfg.clone(),
        weights: common::weights(&cfg, 5),
        tokenizer_json: None,
        forget: if settings.is_some() { documents(&tok, &FORGET) } else { Vec::new() },
        retain: documents(&tok, &RETAIN),
        settings,
        train,
        out: dir.join(out).join("model"),
        resume: false,
        stop_after: None,
        stop: Arc::new(AtomicBool::new(false)),
        device: Device::Cpu,
    }
}

/// Mean log π per sequence of `set` under the checkpoint in `out`, and under the start weights.
fn mean_logprob(opts: &UnlearnOptions, set: &[Rendered], trained: bool) -> f64 {
    let model = if trained {
        lmlab_model::checkpoint::load_model(&opts.out, DType::F32, &Device::Cpu).unwrap()
    } else {
        frozen_from_tensors(&opts.model_cfg, opts.weights.clone(), DType::F32, &Device::Cpu).unwrap()
    };
    let lp = reference_logprobs(&model, set, 8).unwrap();
    lp.iter().map(|&x| f64::from(x)).sum::<f64>() / lp.len() as f64
}

fn settings(method: UnlearnMethod) -> Option<UnlearnSettings> {
    Some(UnlearnSettings { method, beta: 0.5, retain_weight: 1.0 })
}

#[test]
fn a_document_learns_every_token_after_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let tok = common::tokenizer(dir.path());
    let r = render_document("Where is Velmora?", &tok).unwrap();
    let special = tok.special();
    assert_eq!(r.ids.first().copied(), special.bos);
    assert_eq!(r.ids.last().copied(), special.eos);
    assert_eq!(r.ids[1..r.ids.len() - 1], tok.encode("Where is Velmora?").unwrap()[..]);
    assert_eq!(r.learn[0], 0.0);
    assert!(r.learn[1..].iter().all(|&w| w == 1.0));
}

#[test]
fn fine_tuning_raises_and_each_method_lowers_the_forget_set() {
    let dir = tempfile::tempdir().unwrap();
    let learn = options(dir.path(), "learn", None, 8);
    train_unlearn(options(dir.path(), "learn", None, 8), |_| {}).unwrap();
    let retain = learn.retain.clone();
    assert!(mean_logprob(&learn, &retain, true) > mean_logprob(&learn, &retain, false) + 1.0);

    let mut retain_after = Vec::new();
    for method in UnlearnMethod::ALL {
        let opts = options(dir.path(), method.name(), settings(method), 6);
        let (forget, retain) = (opts.forget.clone(), opts.retain.clone());
        let report = train_unlearn(options(dir.path(), method.name(), settings(method), 6), |_| {}).unwrap();
        let (before, after) = (mean_logprob(&opts, &forget, false), mean_logprob(&opts, &forget, true));
        assert!(after < before - 1.0, "{}: forget log π {before} → {after}", method.name());
        // The per-token forget loss is logged every step, and rises.
        let nll: Vec<f64> = report.steps.iter().map(|s| s.extra["forget_nll"].as_f64().unwrap()).collect();
        assert!(nll.last() > nll.first(), "{}: {nll:?}", method.name());
        assert_eq!(report.steps[0].extra.contains_key("retain_nll"), method != UnlearnMethod::Ga);
        if method == UnlearnMethod::Npo {
            // Step 0: the policy is its reference, so every r is 0 and the loss is (2/β)·ln 2 + the retain loss.
            let first = &report.steps[0];
            let retain_nll = first.extra["retain_nll"].as_f64().unwrap();
            assert!((first.loss - retain_nll - 4.0 * 2f64.ln()).abs() < 1e-3, "{} vs {}", first.loss, retain_nll);
        }
        retain_after.push(mean_logprob(&opts, &retain, true));
    }
    // Gradient difference keeps the retain set more likely than gradient ascent does.
    assert!(retain_after[1] > retain_after[0], "retain log π: ga {} gd {}", retain_after[0], retain_after[1]);
}

#[test]
fn a_resumed_npo_run_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let straight = train_unlearn(options(dir.path(), "straight", settings(UnlearnMethod::Npo), 6), |_| {}).unwrap();
    let mut first = options(dir.path(), "split", settings(UnlearnMethod::Npo), 6);
    first.stop_after = Some(2);
    let first = train_unlearn(first, |_| {}).unwrap();
    assert!(first.interrupted);
    let mut second = options(dir.path(), "split", settings(UnlearnMethod::Npo), 6);
    second.resume = true;
    let second = train_unlearn(second, |_| {}).unwrap();
    let losses = |r: &[&lmlab_train::trainer::StepRecord]| r.iter().map(|s| s.loss.to_bits()).collect::<Vec<_>>();
    let joined: Vec<_> = first.steps.iter().chain(&second.steps).collect();
    assert_eq!(losses(&joined), losses(&straight.steps.iter().collect::<Vec<_>>()));
    let read = |run: &str| std::fs::read(dir.path().join(run).join("model/model.safetensors")).unwrap();
    assert!(read("straight") == read("split"));
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut gd = options(dir.path(), "gd", settings(UnlearnMethod::Gd), 2);
    gd.retain.clear();
    assert!(format!("{:#}", train_unlearn(gd, |_| {}).unwrap_err()).contains("gd (gradient difference) needs a retain set"));
    let mut npo = options(dir.path(), "npo", settings(UnlearnMethod::Npo), 2);
    npo.forget.clear();
    assert!(format!("{:#}", train_unlearn(npo, |_| {}).unwrap_err()).contains("the forget set is empty"));
    let npo = options(dir.path(), "npo0", Some(UnlearnSettings { method: UnlearnMethod::Npo, beta: 0.0, retain_weight: 1.0 }), 2);
    assert!(format!("{:#}", train_unlearn(npo, |_| {}).unwrap_err()).contains("beta must be a positive number"));
}
