//! Seq2seq tasks and training: targets are right, a small model learns, saved models reload.

use candle_core::Device;
use lmlab_train::seq2seq::{accuracy, train, Arch, Seq2SeqModel, Task, TaskData, TrainSpec};
use rand::SeedableRng;

#[test]
fn task_targets_are_what_the_task_says() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for (task, f) in [(Task::Copy, 0), (Task::Reverse, 1), (Task::Sort, 2)] {
        let data = TaskData::new(task, 0).unwrap();
        let (src, tgt) = data.example(12, &mut rng);
        assert_eq!(src.len(), 12);
        let mut expect = src.clone();
        match f {
            1 => expect.reverse(),
            2 => expect.sort_unstable(),
            _ => {}
        }
        assert_eq!(tgt, expect);
    }
    let tr = TaskData::new(Task::Translate, 0).unwrap();
    let (src, tgt) = tr.example(60, &mut rng);
    let (en, zh) = (tr.vocab.decode(&src), tr.vocab.decode(&tgt));
    assert!(en.is_ascii() && !zh.is_ascii(), "{en} / {zh}");
}

#[test]
fn attention_model_learns_to_reverse_short_strings_and_reloads() {
    let dev = Device::Cpu;
    let data = TaskData::new(Task::Reverse, 0).unwrap();
    let model = Seq2SeqModel::new(&data, Arch::RnnAttention, 64, 8, 3, &dev).unwrap();
    let spec = TrainSpec { steps: 400, batch: 32, min_len: 2, max_len: 4, lr: 1e-2, seed: 3, eval_every: 0 };
    let report = train(&model, &data, &spec, &dev, |_, _| {}).unwrap();
    let lens = [2, 3, 4];
    let acc = accuracy(&model, &data, &lens, 128, 9, &dev).unwrap();
    assert!(acc >= 0.9, "accuracy {acc}, final loss {}", report.final_loss);
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let again = Seq2SeqModel::load(dir.path(), &dev).unwrap();
    let src = vec![vec![3, 4, 5], vec![9, 8, 7, 6]];
    assert_eq!(model.greedy(&src, 8, &dev).unwrap(), again.greedy(&src, 8, &dev).unwrap());
}

#[test]
fn transformer_learns_to_copy_short_strings() {
    let dev = Device::Cpu;
    let data = TaskData::new(Task::Copy, 0).unwrap();
    let model = Seq2SeqModel::new(&data, Arch::Transformer, 64, 8, 3, &dev).unwrap();
    let spec = TrainSpec { steps: 400, batch: 32, min_len: 2, max_len: 4, lr: 1e-2, seed: 3, eval_every: 0 };
    train(&model, &data, &spec, &dev, |_, _| {}).unwrap();
    let acc = accuracy(&model, &data, &[2, 3, 4], 64, 9, &dev).unwrap();
    assert!(acc >= 0.9, "accuracy {acc}");
}
