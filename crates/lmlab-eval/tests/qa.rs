//! `eval qa` end to end on a tiny world and a small random model: every question answered and
//! graded, in any batch size the same answers, and the same seed the same answers.

use candle_core::{DType, Device};
use lmlab_eval::consistency::{run_consistency, ConsistencyOptions};
use lmlab_eval::qa::{run_qa, QaOptions};
use lmlab_infer::Model;
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::GptConfig;
use lmlab_tokenizer::chat::ChatTemplate;
use lmlab_tokenizer::{train, TrainOptions};

#[test]
fn every_question_is_answered_and_batching_does_not_change_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    lmlab_world::generate(&world, &lmlab_world::WorldOptions { seed: 5, ..Default::default() }).unwrap();
    // A tokenizer learned from the world's SFT text, and a random model over it.
    let tok =
        train(&TrainOptions { files: vec![world.join("sft.jsonl")], vocab_size: 400, min_frequency: 2, show_progress: false }).unwrap();
    // A short context, as the tiny preset's: long few-shot prompts fall back to fewer examples.
    let cfg = GptConfig { n_kv_head: 2, ..GptConfig::llama_style(tok.vocab_size(), 96, 2, 4, 2, 32, 64) };
    let (gpt, _) = init_trainable(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
    let model = Model::from_parts(Box::new(gpt), tok, Some(ChatTemplate::lmlab()), "lmlab");
    let questions = vec![world.join("eval/facts.jsonl"), world.join("eval/nonexistent.jsonl")];
    let opts =
        QaOptions { questions, samples: 2, temperature: 1.0, limit: Some(5), max_tokens: 6, batch: 3, seed: 11, ..Default::default() };
    let mut heard = Vec::new();
    let a = run_qa(&model, &opts, |done, total| heard.push((done, total))).unwrap();
    assert_eq!((a.questions, a.answers.len()), (10, 20));
    assert_eq!(heard.last(), Some(&(10, 10)), "progress reaches the end");
    let n: usize = ["facts", "nonexistent"].iter().map(|s| a.groups[*s].n).sum();
    assert_eq!((n, a.overall.n), (20, 20));
    let rates = &a.overall;
    assert!((rates.correct + rates.wrong + rates.abstained - 1.0).abs() < 1e-12);
    assert!(a.answers.iter().all(|x| x.mean_logprob <= 0.0));
    assert!(a.singleton_share.is_some(), "read from the world's stats.json");
    // Every question its own seeds: one batch of everything gives the same answers.
    let b = run_qa(&model, &QaOptions { batch: 10, ..opts.clone() }, |_, _| {}).unwrap();
    let texts = |r: &lmlab_eval::qa::QaReport| r.answers.iter().map(|x| (x.id.clone(), x.sample, x.answer.clone())).collect::<Vec<_>>();
    assert_eq!(texts(&a), texts(&b));
    // Another seed, other samples (at temperature 1 over a random model's flat distribution).
    let c = run_qa(&model, &QaOptions { seed: 12, ..opts.clone() }, |_, _| {}).unwrap();
    assert_ne!(texts(&a), texts(&c));
    // The chat template path runs too.
    let chat = run_qa(&model, &QaOptions { chat: true, samples: 1, ..opts.clone() }, |_, _| {}).unwrap();
    assert_eq!(chat.answers.len(), 10);

    // Consistency: greedy answers agree with themselves; sampled ones need not.
    let c = ConsistencyOptions { qa: QaOptions { samples: 4, ..opts }, temperatures: vec![0.0, 1.5], detect_temperature: 1.5 };
    let r = run_consistency(&model, &c, |_, _| {}).unwrap();
    let row = |t: f64| r.rows.iter().find(|x| x.temperature == t && x.group == "all").unwrap().clone();
    assert_eq!((row(0.0).majority_agreement, row(0.0).greedy_agreement, row(0.0).semantic_entropy), (1.0, 1.0, 0.0));
    assert_eq!(row(0.0).questions, 10);
    assert!(row(1.5).distinct_answers > 1.0, "a random model at temperature 1.5 varies its answers");
    assert!(r.rows.iter().any(|x| x.group == "non-existent"));
    assert_eq!(r.detection.len(), 3);
    let again = run_consistency(&model, &c, |_, _| {}).unwrap();
    assert_eq!(again.rows, r.rows, "the same seed, the same samples");
}
