//! Sampler and engine properties on exact inputs: reported log-probabilities are the model's
//! own (temperature 1, before any sampler), the repetition penalty's sign rule, the documented
//! order of the filters, `stages()` against `distribution()`, the top-p boundary, and n samples
//! that stop at different steps.

use candle_core::{DType, Device, Tensor};
use lmlab_infer::sampler::{softmax_sorted, top_k, top_p, Dist};
use lmlab_infer::{generate, FinishReason, GenerateRequest, Sampler, SamplingParams};
use lmlab_model::checkpoint::init_trainable;
use lmlab_model::{Gpt, GptConfig, Mode};
use rand::{Rng, SeedableRng};

fn model() -> Gpt {
    let cfg = GptConfig { n_kv_head: 1, ..GptConfig::gpt2_style(32, 24, 2, 2, 16, 32) };
    init_trainable(&cfg, 5, DType::F32, &Device::Cpu).unwrap().0
}

/// The kept token ids of a distribution, in its order.
fn ids(d: &Dist) -> Vec<u32> {
    d.iter().map(|q| q.0).collect()
}

/// log-softmax in f64 by log-sum-exp, written here independently of the sampler.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let l: Vec<f64> = logits.iter().map(|&x| f64::from(x)).collect();
    let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + l.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    l.iter().map(|x| x - lse).collect()
}

/// Next-token logits after `seq`, from a full forward pass (no cache).
fn next_logits(m: &Gpt, seq: &[u32]) -> Vec<f32> {
    let ids = Tensor::new(seq, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = m.forward(&ids, &mut Mode::inference()).unwrap();
    logits.squeeze(0).unwrap().get(seq.len() - 1).unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn reported_logprobs_are_the_log_softmax_at_temperature_one_whatever_the_samplers() {
    let m = model();
    let prompt = vec![1, 2, 3, 4, 5];
    let sampling = SamplingParams {
        temperature: 0.5,
        top_k: Some(3),
        top_p: Some(0.9),
        repetition_penalty: 1.5,
        presence_penalty: 0.5,
        logit_bias: vec![(7, 2.0)],
        seed: 3,
        ..Default::default()
    };
    let mut req = GenerateRequest::new(prompt.clone(), 8, sampling.clone());
    req.n = 2;
    req.logprobs = Some(5);
    let g = generate(&m, &req, |_, _| {}, |_, _| false).unwrap();
    let mut sampler_moved_it = 0;
    for (i, s) in g.samples.iter().enumerate() {
        assert_eq!(s.tokens.len(), 8);
        assert_eq!(s.logprobs.len(), s.tokens.len(), "one entry per generated token");
        let mut seq = prompt.clone();
        for (step, (lp, &token)) in s.logprobs.iter().zip(&s.tokens).enumerate() {
            let logits = next_logits(&m, &seq);
            let want = log_softmax(&logits);
            assert_eq!(lp.token, token);
            // The engine's logits come from the KV-cache decode, ours from a full forward pass:
            // the same f32 arithmetic in another order, a few ulps (1e-7) of logits of order 1
            // (3e-8 measured); a sampler's change is of order 1.
            let tol = 1e-6;
            assert!(
                (lp.logprob - want[token as usize]).abs() < tol,
                "sample {i} step {step}: {} vs log-softmax {}",
                lp.logprob,
                want[token as usize]
            );
            let mut best: Vec<u32> = (0..want.len() as u32).collect();
            best.sort_by(|&a, &b| want[b as usize].total_cmp(&want[a as usize]));
            assert_eq!(lp.top.len(), 5);
            for (&(id, l), &want_id) in lp.top.iter().zip(&best) {
                assert_eq!(id, want_id, "sample {i} step {step}: top alternatives {:?}", lp.top);
                assert!((l - want[id as usize]).abs() < tol);
            }
            // The sampler's own distribution is far from it, so reporting that would fail.
            let d = Sampler::new(sampling.clone()).distribution(&logits, &seq);
            let sampled = d.iter().find(|q| q.0 == token).expect("the token was drawn from the filtered distribution").1.ln();
            if (sampled - want[token as usize]).abs() > 0.1 {
                sampler_moved_it += 1;
            }
            seq.push(token);
        }
    }
    assert!(
        sampler_moved_it >= 8,
        "the samplers changed only {sampler_moved_it} of 16 log-probabilities: the test would not see the difference"
    );
}

#[test]
fn repetition_penalty_divides_positive_logits_and_multiplies_negative_ones() {
    let logits = [2.0f32, -2.0, 1.0, 0.5, 0.0];
    // Seen: 0 once, 1 twice, 4 once. Unseen tokens keep their logits.
    let history = [0, 1, 1, 4];
    let adj = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..Default::default() }).adjust(&logits, &history);
    assert_eq!(adj, vec![1.0, -4.0, 1.0, 0.5, 0.0]);
    // A penalty below 1 rewards repetition, by the same rule.
    let adj = Sampler::new(SamplingParams { repetition_penalty: 0.5, ..Default::default() }).adjust(&logits, &history);
    assert_eq!(adj, vec![4.0, -1.0, 1.0, 0.5, 0.0]);
    // Repetition first, then frequency (per occurrence) and presence (once): token 0 is
    // 2/2 − 0.5·1 − 1 = −0.5, token 1 is −2·2 − 0.5·2 − 1 = −6 (the other order would give 0.25
    // and −8).
    let adj = Sampler::new(SamplingParams { repetition_penalty: 2.0, frequency_penalty: 0.5, presence_penalty: 1.0, ..Default::default() })
        .adjust(&logits, &history);
    assert_eq!(adj, vec![-0.5, -6.0, 1.0, 0.5, -1.5]);
    // The draw uses the adjusted logits: softmax of (1, −4, 1, 0.5, 0).
    let d = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..Default::default() }).distribution(&logits, &history);
    let z: f64 = [1.0f64, -4.0, 1.0, 0.5, 0.0].iter().map(|x| x.exp()).sum();
    for (id, p) in d {
        let l = [1.0f64, -4.0, 1.0, 0.5, 0.0][id as usize];
        // f64 softmax of five terms: a few ulps.
        assert!((p - l.exp() / z).abs() < 1e-15, "token {id}: {p}");
    }
}

/// Logits whose softmax is (0.5, 0.3, 0.12, 0.05, 0.02, 0.01).
fn colours() -> Vec<f32> {
    [0.5f64, 0.3, 0.12, 0.05, 0.02, 0.01].iter().map(|p| p.ln() as f32).collect()
}

#[test]
fn filters_apply_in_the_documented_order() {
    let logits = colours();
    let raw = softmax_sorted(&logits.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), 1.0);
    // top-k then top-p (documented): top-2 renormalises to 0.625/0.375, so top-p 0.6 keeps the
    // first alone. top-p first would keep 0.5 + 0.3 (reaching 0.6), then top-2 both.
    assert_eq!(ids(&top_p(top_k(raw.clone(), 2), 0.6)), [0]);
    assert_eq!(ids(&top_k(top_p(raw.clone(), 0.6), 2)), [0, 1]);
    let s = Sampler::new(SamplingParams { top_k: Some(2), top_p: Some(0.6), ..Default::default() });
    let d = s.distribution(&logits, &[]);
    assert_eq!(ids(&d), [0]);
    assert!((d[0].1 - 1.0).abs() < 1e-12);
    // Temperature before top-p: at T = 2 the probabilities are ∝ √p = 0.342, 0.265, 0.168,
    // 0.108, ..., so top-p 0.8 needs four tokens (cumulative 0.883); top-p at T = 1 first
    // would keep two (0.5 + 0.3 reaches 0.8).
    let d = Sampler::new(SamplingParams { temperature: 2.0, top_p: Some(0.8), ..Default::default() }).distribution(&logits, &[]);
    assert_eq!(ids(&d), [0, 1, 2, 3]);
    let sq: Vec<f64> = [0.5f64, 0.3, 0.12, 0.05].iter().map(|p| p.sqrt()).collect();
    let z: f64 = sq.iter().sum();
    for (q, w) in d.iter().zip(&sq) {
        // The logits are f32 roundings of ln p: relative 1e-7.
        assert!((q.1 - w / z).abs() < 1e-6, "{d:?}");
    }
    // Penalties before temperature and the filters: a bias that makes token 5 the likeliest
    // leaves it the only token top-k 1 keeps.
    let d = Sampler::new(SamplingParams { top_k: Some(1), logit_bias: vec![(5, 10.0)], ..Default::default() }).distribution(&logits, &[]);
    assert_eq!(ids(&d), [5]);
}

#[test]
fn stages_end_in_the_distribution_that_is_drawn_from() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let settings = [
        SamplingParams::default(),
        SamplingParams { temperature: 0.0, logit_bias: vec![(3, 1.5)], repetition_penalty: 1.3, ..Default::default() },
        SamplingParams { temperature: 0.7, top_k: Some(10), top_p: Some(0.8), ..Default::default() },
        SamplingParams { temperature: 1.3, top_p: Some(0.9), min_p: Some(0.05), typical_p: Some(0.8), ..Default::default() },
        SamplingParams {
            temperature: 0.9,
            top_k: Some(20),
            min_p: Some(0.1),
            repetition_penalty: 1.2,
            frequency_penalty: 0.3,
            presence_penalty: 0.2,
            penalty_window: 4,
            logit_bias: vec![(0, -3.0), (7, 2.0)],
            ..Default::default()
        },
        SamplingParams { temperature: 0.5, typical_p: Some(0.5), ..Default::default() },
    ];
    let mut filtered = 0;
    for params in settings {
        let s = Sampler::new(params.clone());
        for _ in 0..5 {
            let logits: Vec<f32> = (0..40).map(|_| rng.random_range(-4.0f32..4.0)).collect();
            let history: Vec<u32> = (0..8).map(|_| rng.random_range(0..40)).collect();
            let st = s.stages(&logits, &history);
            let d = s.distribution(&logits, &history);
            // The same f64 operations in the same order: equal, not merely close.
            assert_eq!(st.typical_p, d, "{params:?}");
            assert_eq!(st.raw, softmax_sorted(&logits.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), 1.0));
            assert_eq!(st.adjusted, softmax_sorted(&s.adjust(&logits, &history), 1.0));
            // Each stage keeps a subset of the one before.
            for (a, b) in [(&st.temperature, &st.top_k), (&st.top_k, &st.top_p), (&st.top_p, &st.min_p), (&st.min_p, &st.typical_p)] {
                assert!(ids(b).iter().all(|t| ids(a).contains(t)), "{params:?}");
            }
            let total: f64 = d.iter().map(|q| q.1).sum();
            // Renormalised: a sum of at most 40 f64 terms.
            assert!((total - 1.0).abs() < 1e-12);
            filtered += usize::from(d.len() < 40);
        }
    }
    assert!(filtered >= 20, "the filters removed tokens in only {filtered} of 30 cases");
}

#[test]
fn top_p_keeps_the_smallest_set_that_reaches_p_inclusive() {
    // 0.5, 0.25, 0.25 are exact in binary, so the cumulative sum hits 0.75 exactly.
    let d: Dist = vec![(0, 0.5), (1, 0.25), (2, 0.25)];
    let kept = top_p(d.clone(), 0.75);
    assert_eq!(ids(&kept), [0, 1], "0.5 + 0.25 reaches p = 0.75: the third token is not needed");
    assert_eq!(kept.iter().map(|q| q.1).collect::<Vec<_>>(), [0.5 / 0.75, 0.25 / 0.75]);
    assert_eq!(ids(&top_p(d.clone(), 0.5)), [0]);
    // Just above the boundary the next token is needed.
    assert_eq!(ids(&top_p(d.clone(), 0.75 + 1e-9)), [0, 1, 2]);
    assert_eq!(ids(&top_p(d, 0.5 + 1e-9)), [0, 1]);
    // Through the sampler with logits whose probabilities are exact: four equal logits give
    // exactly 0.25 each (exp(0) = 1 and a sum of 4), ties go to the lower id.
    let logits = [0.0f32; 4];
    for (p, want) in [(0.25, vec![0]), (0.5, vec![0, 1]), (0.75, vec![0, 1, 2]), (0.7500001, vec![0, 1, 2, 3]), (1.0, vec![0, 1, 2, 3])] {
        let d = Sampler::new(SamplingParams { top_p: Some(p), ..Default::default() }).distribution(&logits, &[]);
        assert_eq!(ids(&d), want, "top-p {p}");
    }
}

#[test]
fn n_samples_stop_at_their_own_stop_tokens() {
    let m = model();
    let sampling = SamplingParams { temperature: 1.0, seed: 21, ..Default::default() };
    let mut free_req = GenerateRequest::new(vec![1, 2, 3], 12, sampling.clone());
    free_req.n = 4;
    free_req.logprobs = Some(1);
    let free = generate(&m, &free_req, |_, _| {}, |_, _| false).unwrap();
    let free: Vec<Vec<u32>> = free.samples.iter().map(|s| s.tokens.clone()).collect();
    assert!(free.iter().all(|t| t.len() == 12));
    // Stop tokens at which the samples end at different steps (some maybe not at all): each
    // sample ends at the first stop token it draws.
    let first_stop = |t: &[u32], stops: &[u32]| t.iter().position(|x| stops.contains(x));
    let stops: Vec<u32> = (0..32u32)
        .flat_map(|a| (a + 1..32).map(move |b| vec![a, b]))
        .find(|stops| {
            let ends: Vec<Option<usize>> = free.iter().map(|t| first_stop(t, stops)).collect();
            let mut distinct: Vec<usize> = ends.iter().flatten().copied().collect();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len() >= 3 && ends.iter().any(Option::is_none) && distinct[0] < 11
        })
        .expect("two stop tokens at which the samples end at three different steps and one runs to the end");
    let mut req = free_req.clone();
    req.stop_ids = stops.clone();
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); 4];
    let g = generate(&m, &req, |i, t| seen[i].push(t), |_, _| false).unwrap();
    let mut lengths = Vec::new();
    for (i, s) in g.samples.iter().enumerate() {
        match first_stop(&free[i], &stops) {
            Some(at) => {
                assert_eq!(s.tokens, free[i][..=at], "sample {i} ends at its own first stop token");
                assert_eq!(s.finish_reason, FinishReason::Stop, "sample {i}");
            }
            None => {
                assert_eq!(s.tokens, free[i], "sample {i} never draws a stop token");
                assert_eq!(s.finish_reason, FinishReason::Length, "sample {i}");
            }
        }
        assert_eq!(s.logprobs.len(), s.tokens.len(), "sample {i}");
        assert_eq!(seen[i], s.tokens, "sample {i}: tokens streamed after its stop");
        lengths.push(s.tokens.len());
    }
    lengths.sort_unstable();
    lengths.dedup();
    assert!(lengths.len() >= 3, "{lengths:?}");
    assert_eq!(g.timings.generated_tokens, g.samples.iter().map(|s| s.tokens.len()).sum::<usize>());
}
