//! `lmlab experiment sampling`: how the decoding rule trades quality against diversity
//! (Holtzman et al. 2020; min-p, Nguyen et al. 2024).
//!
//! One model continues the first `prompt_tokens` tokens of held-out documents (the held-out
//! split of the very data it was trained on, read from its checkpoint's trainer state) for
//! `new_tokens` tokens with each decoder: greedy, beam search, pure sampling at three
//! temperatures, top-k, top-p, min-p and typical-p (the last three also at temperature 1.5,
//! where min-p is claimed to hold up). The documents' true continuations are measured the same
//! way, as "human". Each decoder also answers the world's fact questions.
//!
//! Measured on token ids, for every decoder and for human text:
//! - repetition: the share of each text's 4-grams that repeat an earlier 4-gram of the same text
//!   (seq-rep-4, Welleck et al. 2019), averaged over texts;
//! - distinct-n: distinct n-grams over all n-grams, all texts pooled (Li et al. 2016);
//! - self-BLEU: each text's BLEU-4 against all the others as references, averaged (Zhu et al.
//!   2018); high means the texts resemble each other;
//! - perplexity of the continuations under the model (temperature 1, no sampler);
//! - QA: accuracy and hallucination (wrong answers) on `eval/facts.jsonl`.
//!
//! Written as `sampling.md`, `sampling.json` and `sampling.png` (perplexity against distinct-3)
//! in the output folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::{Device, Tensor};
use lmlab_infer::{beam_search, generate_batch, BeamRequest, GenerateRequest, LoadOptions, Model, SamplingParams};
use lmlab_model::CausalLm;
use lmlab_train::checkpoint::TrainerState;
use lmlab_train::data::TokenData;
use lmlab_world::grade::Grade;
use serde::Serialize;

use crate::qa::{QaAnswer, QaOptions, Session};

#[derive(Debug, Clone, Serialize)]
pub struct SamplingOptions {
    /// The model: an lmlab checkpoint whose trainer state names its training data.
    pub model: PathBuf,
    /// The world folder (`eval/facts.jsonl`, `kb.jsonl`).
    pub world: PathBuf,
    pub out: PathBuf,
    /// Held-out documents continued.
    pub prompts: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Fact questions asked per decoder.
    pub questions: usize,
    /// Ask through the chat template (an instruction-tuned model) instead of few-shot.
    pub chat: bool,
    pub beams: usize,
    pub seed: u64,
}

impl SamplingOptions {
    /// The full experiment's settings, or `quick` ones (seconds on a micro model).
    pub fn new(model: PathBuf, world: PathBuf, out: PathBuf, quick: bool) -> Self {
        Self {
            model,
            world,
            out,
            prompts: if quick { 24 } else { 200 },
            prompt_tokens: if quick { 16 } else { 32 },
            new_tokens: if quick { 32 } else { 64 },
            questions: if quick { 20 } else { 400 },
            chat: false,
            beams: 4,
            seed: 0,
        }
    }
}

/// A decoding rule.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Sample(SamplingParams),
    Beam(usize),
}

#[derive(Debug, Clone, Serialize)]
pub struct Decoder {
    pub name: String,
    pub rule: Rule,
}

/// The decoders compared: greedy, beam search, and sampling rules at temperatures 1 and 1.5.
pub fn decoders(beams: usize) -> Vec<Decoder> {
    let s = |name: &str, temperature: f64, f: fn(&mut SamplingParams)| {
        let mut p = SamplingParams { temperature, ..Default::default() };
        f(&mut p);
        Decoder { name: name.into(), rule: Rule::Sample(p) }
    };
    vec![
        s("greedy", 0.0, |_| {}),
        Decoder { name: format!("beam {beams}"), rule: Rule::Beam(beams) },
        s("T=0.7", 0.7, |_| {}),
        s("T=1 (pure sampling)", 1.0, |_| {}),
        s("T=1.5", 1.5, |_| {}),
        s("top-k 40", 1.0, |p| p.top_k = Some(40)),
        s("top-p 0.9", 1.0, |p| p.top_p = Some(0.9)),
        s("min-p 0.1", 1.0, |p| p.min_p = Some(0.1)),
        s("typical-p 0.9", 1.0, |p| p.typical_p = Some(0.9)),
        s("top-p 0.9, T=1.5", 1.5, |p| p.top_p = Some(0.9)),
        s("min-p 0.1, T=1.5", 1.5, |p| p.min_p = Some(0.1)),
        s("typical-p 0.9, T=1.5", 1.5, |p| p.typical_p = Some(0.9)),
    ]
}

/// The diversity and fit of a set of texts (token ids).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TextStats {
    pub texts: usize,
    pub tokens: usize,
    pub repetition: f64,
    /// distinct-1, -2, -3.
    pub distinct: [f64; 3],
    pub self_bleu: f64,
    pub perplexity: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecoderResult {
    pub decoder: Decoder,
    pub text: TextStats,
    pub qa_accuracy: f64,
    pub qa_hallucination: f64,
    pub qa_questions: usize,
    /// Two continuations, decoded, for the record.
    pub examples: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SamplingReport {
    pub options: SamplingOptions,
    pub human: TextStats,
    pub human_examples: Vec<String>,
    pub decoders: Vec<DecoderResult>,
    pub table_md: PathBuf,
    pub plot_png: Option<PathBuf>,
}

impl SamplingReport {
    pub fn decoder(&self, name: &str) -> Option<&DecoderResult> {
        self.decoders.iter().find(|d| d.decoder.name == name)
    }
}

fn ngrams(text: &[u32], n: usize) -> impl Iterator<Item = &[u32]> {
    text.windows(n)
}

/// seq-rep-n: the share of a text's n-grams that repeat an earlier one, averaged over texts
/// that have any n-gram.
pub fn repetition(texts: &[Vec<u32>], n: usize) -> f64 {
    let rates: Vec<f64> = texts
        .iter()
        .filter(|t| t.len() >= n)
        .map(|t| {
            let total = t.len() + 1 - n;
            let unique = ngrams(t, n).collect::<std::collections::HashSet<_>>().len();
            1.0 - unique as f64 / total as f64
        })
        .collect();
    rates.iter().sum::<f64>() / rates.len().max(1) as f64
}

/// distinct-n: distinct n-grams over all n-grams of all texts.
pub fn distinct(texts: &[Vec<u32>], n: usize) -> f64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0usize;
    for t in texts {
        for g in ngrams(t, n) {
            seen.insert(g);
            total += 1;
        }
    }
    seen.len() as f64 / total.max(1) as f64
}

fn counts(text: &[u32], n: usize) -> HashMap<&[u32], usize> {
    let mut c = HashMap::new();
    for g in ngrams(text, n) {
        *c.entry(g).or_insert(0) += 1;
    }
    c
}

/// BLEU-4 of `hyp` against `refs`: clipped n-gram precisions (n = 1..4, uniform weights), a
/// zero count smoothed to 0.1 (Chen & Cherry 2014, method 1), and the brevity penalty against the
/// reference length closest to the hypothesis's.
pub fn bleu(hyp: &[u32], refs: &[&[u32]]) -> f64 {
    if hyp.is_empty() || refs.is_empty() {
        return 0.0;
    }
    let mut log_p = 0.0;
    for n in 1..=4 {
        let total = hyp.len().saturating_sub(n - 1);
        if total == 0 {
            return 0.0;
        }
        let mut max_ref: HashMap<&[u32], usize> = HashMap::new();
        for r in refs {
            for (g, c) in counts(r, n) {
                let m = max_ref.entry(g).or_insert(0);
                *m = (*m).max(c);
            }
        }
        let clipped: usize = counts(hyp, n).into_iter().map(|(g, c)| c.min(max_ref.get(g).copied().unwrap_or(0))).sum();
        log_p += (if clipped == 0 { 0.1 } else { clipped as f64 }).ln() - (total as f64).ln();
    }
    let closest = refs.iter().map(|r| r.len()).min_by_key(|&l| (l.abs_diff(hyp.len()), l)).unwrap_or(0);
    let bp = if hyp.len() >= closest { 1.0 } else { (1.0 - closest as f64 / hyp.len() as f64).exp() };
    bp * (log_p / 4.0).exp()
}

/// Mean BLEU-4 of each text against all the others.
pub fn self_bleu(texts: &[Vec<u32>]) -> f64 {
    if texts.len() < 2 {
        return 0.0;
    }
    let scores: Vec<f64> = (0..texts.len())
        .map(|i| {
            let refs: Vec<&[u32]> = texts.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, t)| t.as_slice()).collect();
            bleu(&texts[i], &refs)
        })
        .collect();
    scores.iter().sum::<f64>() / scores.len() as f64
}

fn text_stats(texts: &[Vec<u32>], nats: f64) -> TextStats {
    let tokens: usize = texts.iter().map(Vec::len).sum();
    TextStats {
        texts: texts.len(),
        tokens,
        repetition: repetition(texts, 4),
        distinct: [distinct(texts, 1), distinct(texts, 2), distinct(texts, 3)],
        self_bleu: self_bleu(texts),
        perplexity: (nats / tokens.max(1) as f64).exp(),
    }
}

/// −log p(cont | prompt) in nats, from one forward pass.
fn continuation_nats(model: &dyn CausalLm, prompt: &[u32], cont: &[u32]) -> Result<f64> {
    let all: Vec<u32> = prompt.iter().chain(cont).copied().collect();
    let ids = Tensor::new(all.as_slice(), model.device())?.unsqueeze(0)?;
    let logits = model.logits_all(&ids)?.squeeze(0)?;
    crate::ppl::target_nats(&logits.narrow(0, prompt.len() - 1, cont.len())?, cont)
}

/// (prompt, true continuation) pairs: the starts of held-out documents at least
/// `prompt_tokens + new_tokens` long, spread evenly over the held-out split.
fn held_out_prompts(opts: &SamplingOptions, model: &Model) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let state_path = opts.model.join(lmlab_train::checkpoint::STATE_FILE);
    let state: TrainerState = serde_json::from_slice(&std::fs::read(&state_path).with_context(|| {
        format!("reading {} (the experiment needs an lmlab checkpoint, whose trainer state names its data)", state_path.display())
    })?)
    .with_context(|| format!("parsing {}", state_path.display()))?;
    let run = opts.model.parent().unwrap_or(Path::new("."));
    let files: Vec<PathBuf> = state.data.files.iter().map(|f| if Path::new(f).exists() { PathBuf::from(f) } else { run.join(f) }).collect();
    let data = TokenData::load(&files, Some(model.tokenizer()), model.vocab_size(), state.train.val_fraction)
        .with_context(|| format!("loading the training data named in {}", state_path.display()))?;
    let held = data.held_out();
    let bos = model.tokenizer().special().bos.context("the tokenizer has no beginning-of-text token to find documents by")?;
    let eos = model.tokenizer().special().eos;
    let need = opts.prompt_tokens + opts.new_tokens;
    let docs: Vec<&[u32]> = held
        .split(|&t| t == bos)
        .skip(1) // what precedes the first document start in the split is a document's tail
        .map(|d| d.split(|&t| Some(t) == eos).next().unwrap_or(d))
        .filter(|d| d.len() >= need)
        .collect();
    ensure!(!docs.is_empty(), "the held-out split of {} has no document of {need} tokens or more", files[0].display());
    let n = opts.prompts.min(docs.len());
    Ok((0..n)
        .map(|i| {
            let d = docs[i * docs.len() / n];
            let prompt: Vec<u32> = std::iter::once(bos).chain(d[..opts.prompt_tokens].iter().copied()).collect();
            (prompt, d[opts.prompt_tokens..need].to_vec())
        })
        .collect())
}

/// Continuations of every prompt by `rule`, and their total negative log-likelihood.
fn continue_all(model: &Model, rule: &Rule, prompts: &[Vec<u32>], new_tokens: usize, seed: u64) -> Result<(Vec<Vec<u32>>, f64)> {
    let mut texts = Vec::with_capacity(prompts.len());
    let mut nats = 0.0;
    match rule {
        Rule::Beam(beams) => {
            for p in prompts {
                let best = beam_search(model, &BeamRequest::new(p.clone(), *beams, new_tokens), |_| false)?
                    .into_iter()
                    .next()
                    .context("beam search found nothing")?;
                nats -= best.logprob;
                texts.push(best.tokens);
            }
        }
        Rule::Sample(params) => {
            for (b, chunk) in prompts.chunks(16).enumerate() {
                let reqs: Vec<GenerateRequest> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let sampling = SamplingParams { seed: seed.wrapping_add((b * 16 + i) as u64), ..params.clone() };
                        GenerateRequest { logprobs: Some(0), ..GenerateRequest::new(p.clone(), new_tokens, sampling) }
                    })
                    .collect();
                for g in generate_batch(model, &reqs, |_, _, _| false)? {
                    let s = g.samples.into_iter().next().context("a request gave no sample")?;
                    nats -= s.logprobs.iter().map(|l| l.logprob).sum::<f64>();
                    texts.push(s.tokens);
                }
            }
        }
    }
    Ok((texts, nats))
}

fn qa_rates(answers: &[QaAnswer]) -> (f64, f64) {
    let n = answers.len().max(1) as f64;
    let share = |g: Grade| answers.iter().filter(|a| a.grade == g).count() as f64 / n;
    (share(Grade::Correct), share(Grade::Wrong))
}

fn examples(model: &Model, texts: &[Vec<u32>]) -> Result<Vec<String>> {
    texts.iter().take(2).map(|t| Ok(String::from_utf8_lossy(&model.tokenizer().decode_bytes(t)?).into_owned())).collect()
}

/// Runs the experiment; `log` hears progress.
pub fn run(opts: &SamplingOptions, mut log: impl FnMut(&str)) -> Result<SamplingReport> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let model = Model::load(&opts.model, &LoadOptions::default(), &Device::Cpu)?;
    ensure!(
        1 + opts.prompt_tokens + opts.new_tokens <= model.context_length(),
        "{} prompt tokens and {} new ones (and the beginning-of-text token) do not fit the model's context of {}",
        opts.prompt_tokens,
        opts.new_tokens,
        model.context_length()
    );
    let pairs = held_out_prompts(opts, &model)?;
    let prompts: Vec<Vec<u32>> = pairs.iter().map(|p| p.0.clone()).collect();
    let truth: Vec<Vec<u32>> = pairs.iter().map(|p| p.1.clone()).collect();
    let mut human_nats = 0.0;
    for (p, c) in &pairs {
        human_nats += continuation_nats(&model, p, c)?;
    }
    let human = text_stats(&truth, human_nats);
    log(&format!(
        "{} held-out documents; human text: perplexity {:.2}, distinct-3 {:.3}",
        pairs.len(),
        human.perplexity,
        human.distinct[2]
    ));
    let qa = QaOptions {
        questions: vec![opts.world.join("eval/facts.jsonl")],
        chat: opts.chat,
        limit: Some(opts.questions),
        max_tokens: 16,
        seed: opts.seed,
        ..QaOptions::default()
    };
    let session = Session::new(&model, &qa)?;
    let mut results = Vec::new();
    for d in decoders(opts.beams) {
        let started = Instant::now();
        let (texts, nats) = continue_all(&model, &d.rule, &prompts, opts.new_tokens, opts.seed)?;
        let answers: Vec<QaAnswer> = match &d.rule {
            Rule::Beam(b) => session.ask_beam(&model, *b, |_, _| {})?,
            Rule::Sample(p) => {
                session.ask_sampled(&model, &SamplingParams { seed: opts.seed, ..p.clone() }, 1, |_, _| {})?.into_iter().flatten().collect()
            }
        };
        let (qa_accuracy, qa_hallucination) = qa_rates(&answers);
        let r = DecoderResult {
            text: text_stats(&texts, nats),
            examples: examples(&model, &texts)?,
            decoder: d,
            qa_accuracy,
            qa_hallucination,
            qa_questions: answers.len(),
            seconds: started.elapsed().as_secs_f64(),
        };
        log(&format!(
            "{}: perplexity {:.2}, distinct-3 {:.3}, repetition {:.3}, self-BLEU {:.3}, QA {:.1}% ({:.0} s)",
            r.decoder.name,
            r.text.perplexity,
            r.text.distinct[2],
            r.text.repetition,
            r.text.self_bleu,
            100.0 * r.qa_accuracy,
            r.seconds
        ));
        results.push(r);
    }
    let mut report = SamplingReport {
        options: opts.clone(),
        human_examples: examples(&model, &truth)?,
        human,
        decoders: results,
        table_md: opts.out.join("sampling.md"),
        plot_png: None,
    };
    std::fs::write(&report.table_md, markdown(&report))?;
    report.plot_png = crate::plot::drawn(opts.out.join("sampling.png"), |png| plot(&report, png), &mut log);
    std::fs::write(opts.out.join("sampling.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

/// Holtzman et al. (2020), Table 1 (GPT-2 Large continuing WebText): perplexity, self-BLEU-4
/// and repetition (% of generations ending in a repeating loop; not our seq-rep-4).
const HOLTZMAN: [(&str, &str); 6] = [
    ("human", "12.38 / 0.31 / 0.28%"),
    ("greedy", "1.50 / 0.50 / 73.66%"),
    ("beam 4", "beam 16: 1.48 / 0.44 / 28.94%"),
    ("T=1 (pure sampling)", "22.73 / 0.28 / 0.22%"),
    ("top-k 40", "6.88 / 0.39 / 0.78%"),
    ("top-p 0.9", "p=0.95: 13.13 / 0.32 / 0.36%"),
];

fn markdown(r: &SamplingReport) -> String {
    let o = &r.options;
    let mut md = format!(
        "# Sampling: quality against diversity\n\nModel `{}`; {} held-out documents, {} prompt tokens, {} new tokens each; {} fact questions per decoder (seed {}).\n\n",
        o.model.display(),
        r.human.texts,
        o.prompt_tokens,
        o.new_tokens,
        r.decoders.first().map_or(0, |d| d.qa_questions),
        o.seed
    );
    md += "| decoder | perplexity | repetition (seq-rep-4) | distinct-1 / 2 / 3 | self-BLEU-4 | QA correct | QA wrong | Holtzman et al. 2020: ppl / self-BLEU / rep |\n| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |\n";
    let anchor = |name: &str| HOLTZMAN.iter().find(|a| a.0 == name).map_or("", |a| a.1);
    let row = |name: &str, t: &TextStats, qa: Option<(f64, f64)>| {
        let (c, w) = qa.map_or(("".into(), "".into()), |(c, w)| (format!("{:.1}%", 100.0 * c), format!("{:.1}%", 100.0 * w)));
        format!(
            "| {name} | {:.2} | {:.3} | {:.3} / {:.3} / {:.3} | {:.3} | {c} | {w} | {} |\n",
            t.perplexity,
            t.repetition,
            t.distinct[0],
            t.distinct[1],
            t.distinct[2],
            t.self_bleu,
            anchor(name)
        )
    };
    md += &row("human", &r.human, None);
    for d in &r.decoders {
        md += &row(&d.decoder.name, &d.text, Some((d.qa_accuracy, d.qa_hallucination)));
    }
    md += "\nPerplexity is the model's own, of the continuations it was given or wrote (temperature 1, no sampler). Holtzman et al.'s repetition counts generations stuck in a loop, ours the share of repeated 4-grams; compare directions, not values.\n\n## Examples\n\n";
    md += &format!("- human: {}\n", r.human_examples.first().map_or("", String::as_str).replace('\n', " "));
    for d in &r.decoders {
        md += &format!("- {}: {}\n", d.decoder.name, d.examples.first().map_or("", String::as_str).replace('\n', " "));
    }
    md
}

fn plot(r: &SamplingReport, path: &Path) -> Result<()> {
    let mut points: Vec<(String, f64, f64)> = vec![("human".into(), r.human.distinct[2], r.human.perplexity.ln())];
    points.extend(r.decoders.iter().map(|d| (d.decoder.name.clone(), d.text.distinct[2], d.text.perplexity.ln())));
    crate::plot::scatter_chart(path, "Decoders: fit against diversity", "distinct-3 (diversity)", "ln perplexity under the model", &points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_and_distinct_count_ngrams() {
        // 1 2 1 2 1 2: 4-grams 1212, 2121, 1212 -> one of three repeats.
        let looped = vec![vec![1, 2, 1, 2, 1, 2]];
        assert!((repetition(&looped, 4) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(repetition(&[vec![1, 2, 3, 4, 5]], 4), 0.0);
        // distinct-1 of {1 2 1} and {3}: 3 distinct of 4.
        assert!((distinct(&[vec![1, 2, 1], vec![3]], 1) - 0.75).abs() < 1e-12);
        // distinct-2 pools texts: 12, 21 | 12 -> 2 of 3.
        assert!((distinct(&[vec![1, 2, 1], vec![1, 2]], 2) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn bleu_matches_hand_computed_values() {
        let a = [1u32, 2, 3, 4, 5, 6];
        assert!((bleu(&a, &[&a]) - 1.0).abs() < 1e-12);
        // Nothing shared: every precision smoothed to 0.1 / count.
        let b = [7u32, 8, 9, 10, 11, 12];
        let expect = ((0.1f64 / 6.0).ln() + (0.1f64 / 5.0).ln() + (0.1f64 / 4.0).ln() + (0.1f64 / 3.0).ln()) / 4.0;
        assert!((bleu(&a, &[&b]) - expect.exp()).abs() < 1e-12);
        // Clipping: "1 1 1 1" against "1 2 3 4": unigram 1/4, no 2-, 3- or 4-gram matches.
        let h = [1u32, 1, 1, 1];
        let r = [1u32, 2, 3, 4];
        let expect = ((0.25f64).ln() + (0.1f64 / 3.0).ln() + (0.1f64 / 2.0).ln() + (0.1f64).ln()) / 4.0;
        assert!((bleu(&h, &[&r]) - expect.exp()).abs() < 1e-12);
        // Brevity: a 4-token prefix of a 6-token reference: precisions 1, penalty e^(1 - 6/4).
        assert!((bleu(&a[..4], &[&a]) - (1.0f64 - 1.5).exp()).abs() < 1e-12);
        // Identical texts are as self-similar as can be; disjoint ones nearly not at all.
        assert!((self_bleu(&[a.to_vec(), a.to_vec(), a.to_vec()]) - 1.0).abs() < 1e-12);
        assert!(self_bleu(&[a.to_vec(), b.to_vec()]) < 0.05);
    }
}
