//! The reward model: the Bradley–Terry loss against hand-computed values and its gradient; the
//! head reads each sequence's last real token, alone or in a right-padded batch, whatever the
//! padding holds; a pair's reply is rendered through its end of turn with only the reply learned;
//! training and held-out pairs share no entity; and a short run starts at ln 2, learns a toy
//! preference, logs its margin and accuracy, and leaves a checkpoint that scores as it trained.

mod common;

use std::collections::HashSet;

use candle_core::{DType, Device, Tensor, Var};
use lmlab_model::checkpoint::{init_trainable, load_model};
use lmlab_model::{Mode, RightPadded};
use lmlab_tokenizer::chat::{ChatTemplate, Message};
use lmlab_tokenizer::special;
use lmlab_train::pairs::{prepare, render_reply};
use lmlab_train::reward::{bradley_terry_loss, read_head, rewards, score_pairs, train_reward_model, HEAD};

fn t(v: &[f32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

#[test]
fn bradley_terry_loss_matches_hand_computed_values() {
    // −log σ(d) for d = r_c − r_r = 1, 0, −4: ln(1 + e⁻¹), ln 2, ln(1 + e⁴); their mean.
    let expected = ((1.0 + (-1.0f64).exp()).ln() + 2f64.ln() + (1.0 + 4f64.exp()).ln()) / 3.0;
    assert!((expected - 1.674_852_9).abs() < 1e-7);
    let loss = bradley_terry_loss(&t(&[2.0, 0.0, -1.0]), &t(&[1.0, 0.0, 3.0])).unwrap().to_scalar::<f32>().unwrap();
    assert!((f64::from(loss) - expected).abs() < 1e-6, "{loss} vs {expected}");
    // Large margins neither overflow nor round to nothing: −log σ(−100) = 100 + ln(1 + e⁻¹⁰⁰).
    let far = bradley_terry_loss(&t(&[-50.0, 50.0]), &t(&[50.0, -50.0])).unwrap().to_scalar::<f32>().unwrap();
    assert!((far - 50.0).abs() < 1e-4, "{far}");

    // d/dr_c of −log σ(r_c − r_r) is −σ(r_r − r_c) (over the batch size); d/dr_r the opposite.
    let (c, r) = (Var::new(&[2.0f32, 0.0], &Device::Cpu).unwrap(), Var::new(&[1.0f32, 0.5], &Device::Cpu).unwrap());
    let grads = bradley_terry_loss(c.as_tensor(), r.as_tensor()).unwrap().backward().unwrap();
    let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
    let gc: Vec<f32> = grads.get(&c).unwrap().to_vec1().unwrap();
    let gr: Vec<f32> = grads.get(&r).unwrap().to_vec1().unwrap();
    for (i, d) in [1.0, -0.5].into_iter().enumerate() {
        assert!((f64::from(gc[i]) + sigma(-d) / 2.0).abs() < 1e-6, "{gc:?}");
        assert!((f64::from(gr[i]) - sigma(-d) / 2.0).abs() < 1e-6, "{gr:?}");
    }
}

#[test]
fn the_head_reads_the_last_real_token_whatever_the_padding() {
    let dev = Device::Cpu;
    let cfg = common::model_cfg(64);
    let (model, _) = init_trainable(&cfg, 5, DType::F32, &dev).unwrap();
    let head = Tensor::randn(0f32, 1.0, (1, cfg.d_model), &dev).unwrap();
    let seqs: Vec<Vec<u32>> = vec![vec![3, 9, 14], vec![7, 1, 2, 40, 41, 5, 6], vec![12, 13, 12, 13, 60]];
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();

    // Alone (no padding at all) and together in one right-padded batch: the same rewards.
    let batched: Vec<f32> = rewards(&model, &head, &refs, &mut Mode::inference()).unwrap().to_vec1().unwrap();
    for (i, s) in refs.iter().enumerate() {
        let alone: Vec<f32> = rewards(&model, &head, &[s], &mut Mode::inference()).unwrap().to_vec1().unwrap();
        assert!((alone[0] - batched[i]).abs() < 1e-4 * alone[0].abs().max(1.0), "sequence {i}: {} alone, {} batched", alone[0], batched[i]);
        // The reward is the head on the hidden state of the sequence's own last token.
        let ids = Tensor::new(*s, &dev).unwrap().unsqueeze(0).unwrap();
        let h = model.hidden(&ids, 0, None, &mut Mode::inference()).unwrap();
        let last: Vec<f32> = h.get(0).unwrap().get(s.len() - 1).unwrap().to_vec1().unwrap();
        let w: Vec<f32> = head.flatten_all().unwrap().to_vec1().unwrap();
        let dot: f32 = last.iter().zip(&w).map(|(a, b)| a * b).sum();
        assert!((dot - alone[0]).abs() < 1e-4 * dot.abs().max(1.0), "{dot} vs {}", alone[0]);
    }
    // What the padding holds changes nothing, bit for bit, in training mode too.
    for grad in [false, true] {
        let mode = || lmlab_model::Mode { grad, dropout: None, capture: None, packing: None };
        let read = |pad: u32| -> Vec<f32> {
            let batch = RightPadded::new(&refs, pad, &dev).unwrap();
            model.last_hidden(&batch, &mut mode()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(read(0), read(63), "grad {grad}");
    }
    // A reader of the last *position* instead would see padding: the rows differ there.
    let batch = RightPadded::new(&refs, 0, &dev).unwrap();
    let h = model.hidden(&batch.ids, 0, None, &mut Mode::inference()).unwrap();
    let at_end: Vec<f32> = h.get(0).unwrap().get(6).unwrap().to_vec1().unwrap();
    let at_last: Vec<f32> = model.last_hidden(&batch, &mut Mode::inference()).unwrap().get(0).unwrap().to_vec1().unwrap();
    assert_ne!(at_end, at_last);
}

#[test]
fn a_reply_is_rendered_through_its_end_of_turn_with_only_the_reply_learned() {
    let dir = tempfile::tempdir().unwrap();
    let tok = common::tokenizer(dir.path());
    let prompt = [Message::new("user", "Where is Velmora?"), Message::new("assistant", "Go away."), Message::new("user", "Where is Dask?")];
    let r = render_reply(&prompt, "It is in Ostria.", &ChatTemplate::lmlab(), &tok).unwrap();
    let end = tok.token_to_id(special::END).unwrap();
    assert_eq!(*r.ids.last().unwrap(), end, "the sequence ends with the reply's end of turn");
    let learned: Vec<u32> = r.ids.iter().zip(&r.learn).filter(|(_, &w)| w > 0.0).map(|(&id, _)| id).collect();
    let mut reply = tok.encode("It is in Ostria.").unwrap();
    reply.push(end);
    assert_eq!(learned, reply, "only the last reply is learned, not the prompt's assistant turn");
}

#[test]
fn training_and_held_out_pairs_share_no_entity() {
    let dir = tempfile::tempdir().unwrap();
    let tok = common::tokenizer(dir.path());
    let opts = common::options(&tok, &Default::default(), &dir.path().join("rm"), 1);
    let data = prepare(&opts, &opts.train, 48).unwrap();
    assert_eq!(data.train.len() + data.held_out.len(), 60);
    assert!(data.held_out.len() >= 12, "{} held out", data.held_out.len());
    let trained: HashSet<&str> = data.train.iter().map(|p| p.group.as_str()).collect();
    assert!(data.held_out.iter().all(|p| !trained.contains(p.group.as_str())));
    // Eval-only pairs join the held-out side.
    let opts = lmlab_train::pairs::PairTraining { eval_pairs: common::pairs(3), ..opts };
    assert_eq!(prepare(&opts, &opts.train, 48).unwrap().held_out.len(), data.held_out.len() + 3);
}

#[test]
fn a_short_run_learns_a_toy_preference_and_its_checkpoint_scores_as_it_trained() {
    let dir = tempfile::tempdir().unwrap();
    let tok = common::tokenizer(dir.path());
    let cfg = common::model_cfg(tok.vocab_size());
    let out = dir.path().join("run/rm");
    let report = train_reward_model(common::options(&tok, &common::weights(&cfg, 1), &out, 30), |_| {}).unwrap();
    // A zero head gives every reply reward 0: the first loss is ln 2.
    assert!((report.run.steps[0].loss - 2f64.ln()).abs() < 1e-6, "{}", report.run.steps[0].loss);
    assert!(report.run.steps[29].loss < 0.2, "final loss {}", report.run.steps[29].loss);
    assert_eq!(report.train_pairs + report.held_out_pairs, 60);
    let by_reason = &report.held_out.by_reason;
    assert_eq!(by_reason.keys().collect::<Vec<_>>(), ["abstain_vs_invent", "helpful_vs_rude"]);
    assert!(report.held_out.all.accuracy >= 0.9, "{:?}", report.held_out);
    // Each step logs its margin and accuracy.
    assert_eq!(common::metric(&out, "margin")[0], 0.0);
    assert!(common::metric(&out, "accuracy").iter().all(|a| a.as_f64().is_some()));

    // The checkpoint is an lmlab model plus the head; loaded back, it scores as at the end.
    let model = load_model(&out, DType::F32, &Device::Cpu).unwrap();
    let head = read_head(&out, &Device::Cpu).unwrap();
    let data = prepare(&common::options(&tok, &Default::default(), &out, 30), &common::train_config(30), 48).unwrap();
    let scores = score_pairs(&model, &head, &data.held_out, 4).unwrap();
    let correct = scores.iter().filter(|(c, r)| c > r).count();
    assert_eq!(correct, report.held_out.all.correct);
    let err = read_head(dir.path(), &Device::Cpu).unwrap_err();
    assert!(format!("{err:#}").contains("reading"), "{err:#}");
    assert!(candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap().contains_key(HEAD));
}

#[test]
fn a_resumed_run_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let tok = common::tokenizer(dir.path());
    let weights = common::weights(&common::model_cfg(tok.vocab_size()), 1);
    let run = |name: &str, resume: bool, stop_after: Option<u64>| {
        let mut opts = common::options(&tok, &weights, &dir.path().join(name).join("rm"), 8);
        opts.resume = resume;
        opts.stop_after = stop_after;
        train_reward_model(opts, |_| {}).unwrap()
    };
    let straight = run("straight", false, None);
    let first = run("split", false, Some(5));
    let second = run("split", true, None);
    let bits = |steps: &[lmlab_train::trainer::StepRecord]| steps.iter().map(|s| s.loss.to_bits()).collect::<Vec<_>>();
    let joined: Vec<u64> = bits(&first.run.steps).into_iter().chain(bits(&second.run.steps)).collect();
    assert_eq!(joined, bits(&straight.run.steps));
    assert_eq!(second.held_out, straight.held_out);
    let read = |name: &str| std::fs::read(dir.path().join(name).join("rm/model.safetensors")).unwrap();
    assert!(read("straight") == read("split"), "final weights (head included) differ");
}
