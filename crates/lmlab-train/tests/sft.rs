//! Supervised fine-tuning: which tokens are learned (lmlab's template, ChatML, a real model's
//! template), that masked positions get no loss and no gradient, that packing changes no
//! conversation's loss or logits, how packing treats long conversations, exact resume of full
//! and LoRA fine-tunes, and a merged LoRA checkpoint against base + adapters.

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use lmlab_model::checkpoint::{frozen_from_tensors, init_trainable, load_safetensors};
use lmlab_model::{CausalLm, Gpt, GptConfig, LoraConfig, LoraTarget, Mode, Packing};
use lmlab_tokenizer::chat::{ChatTemplate, Message};
use lmlab_tokenizer::{special, Tokenizer};
use lmlab_train::sft::{batch_tensors, end_of_turn, fine_tune, pack, render, rows_loss, LongConversations, Rendered, Row, SftOptions};
use lmlab_train::TrainConfig;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A small byte-level BPE with lmlab's special tokens (ids 0..7), trained on a few sentences.
fn lmlab_tokenizer(dir: &Path) -> Tokenizer {
    let text = "You are a terse helper. What is two plus two? It is four. Name a colour. Blue, or green.\n\
                The quick brown fox jumps over the lazy dog. What is the capital of France? Paris is.\n"
        .repeat(20);
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions { files: vec![path], vocab_size: 320, min_frequency: 2, show_progress: false })
        .unwrap()
}

fn m(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

/// Token ids and weights built piece by piece: (text encoded on its own, weight).
fn expected(tok: &Tokenizer, pieces: &[(&str, f32)]) -> (Vec<u32>, Vec<f32>) {
    let (mut ids, mut w) = (Vec::new(), Vec::new());
    for (text, weight) in pieces {
        let enc = tok.encode(text).unwrap();
        assert!(!enc.is_empty(), "{text:?} encodes to nothing");
        w.extend(std::iter::repeat_n(*weight, enc.len()));
        ids.extend(enc);
    }
    (ids, w)
}

fn vec1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn rel_close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

// ---------------------------------------------------------------------------------------------
// 1. Which tokens are learned, and masked positions get no loss and no gradient

#[test]
fn lmlab_template_learns_exactly_the_assistant_content_and_its_end_token() {
    let dir = tempfile::tempdir().unwrap();
    let tok = lmlab_tokenizer(dir.path());
    let t = ChatTemplate::lmlab();
    let eot = end_of_turn(&t);
    assert_eq!(eot, special::END);
    let (sys, user, asst, end) = (special::SYSTEM, special::USER, special::ASSISTANT, special::END);
    // The special tokens are single tokens with lmlab's reserved ids.
    for (i, s) in special::ALL.iter().enumerate() {
        assert_eq!(tok.encode(s).unwrap(), [i as u32], "{s}");
    }

    // System + user + assistant.
    let conv = [m("system", "You are a terse helper."), m("user", "What is two plus two?"), m("assistant", "It is four.")];
    let r = render(&conv, &t, &eot, &tok).unwrap();
    let (ids, learn) = expected(
        &tok,
        &[
            (sys, 0.0),
            ("You are a terse helper.", 0.0),
            (end, 0.0),
            (user, 0.0),
            ("What is two plus two?", 0.0),
            (end, 0.0),
            (asst, 0.0),
            ("It is four.", 1.0),
            (end, 1.0),
        ],
    );
    assert_eq!(r, Rendered { ids: ids.clone(), learn });
    assert_eq!(tok.decode(&r.ids).unwrap(), t.render(&conv, false).unwrap(), "the ids are the whole rendering");
    assert_eq!(*r.ids.last().unwrap(), tok.token_to_id(end).unwrap());

    // Several turns, and a conversation that ends with the user: each assistant turn is learned
    // (content and its <|end|>), the trailing question is not.
    let conv = [
        m("system", "Be brief."),
        m("user", "Name a colour."),
        m("assistant", "Blue."),
        m("user", "Another?"),
        m("assistant", "Green, or red."),
        m("user", "Thanks."),
    ];
    let r = render(&conv, &t, &eot, &tok).unwrap();
    let (ids, learn) = expected(
        &tok,
        &[
            (sys, 0.0),
            ("Be brief.", 0.0),
            (end, 0.0),
            (user, 0.0),
            ("Name a colour.", 0.0),
            (end, 0.0),
            (asst, 0.0),
            ("Blue.", 1.0),
            (end, 1.0),
            (user, 0.0),
            ("Another?", 0.0),
            (end, 0.0),
            (asst, 0.0),
            ("Green, or red.", 1.0),
            (end, 1.0),
            (user, 0.0),
            ("Thanks.", 0.0),
            (end, 0.0),
        ],
    );
    assert_eq!(r.ids, ids);
    assert_eq!(r.learn, learn);
    // Role markers, system and user text are never learned: every learned id is assistant text
    // or <|end|>, and no <|assistant|>/<|user|>/<|system|> marker is.
    for (&id, &w) in r.ids.iter().zip(&r.learn) {
        if [sys, user, asst].iter().any(|s| tok.token_to_id(s) == Some(id)) {
            assert_eq!(w, 0.0);
        }
    }

    let e = render(&[m("user", "Hi")], &t, &eot, &tok).unwrap_err().to_string();
    assert!(e.contains("no assistant turn"), "{e}");
}

/// A tiny Llama-style model over `vocab` tokens.
fn tiny_llama(vocab: usize, context: usize) -> GptConfig {
    GptConfig::llama_style(vocab, context, 2, 4, 2, 16, 32)
}

#[test]
fn masked_positions_get_no_loss_and_no_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let tok = lmlab_tokenizer(dir.path());
    let conv = [
        m("system", "Be brief."),
        m("user", "What is the capital of France?"),
        m("assistant", "Paris."),
        m("user", "And two plus two?"),
        m("assistant", "It is four."),
    ];
    let r = render(&conv, &ChatTemplate::lmlab(), special::END, &tok).unwrap();
    let n = r.ids.len() - 1;
    let cfg = tiny_llama(tok.vocab_size(), 64);
    assert!(n <= cfg.context_length);
    let (model, params) = init_trainable(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
    let dev = Device::Cpu;
    let x = Tensor::from_slice(&r.ids[..n], (1, n), &dev).unwrap();
    let w: Vec<f32> = r.learn[1..].to_vec();
    let learned = w.iter().filter(|&&v| v == 1.0).count();
    assert!(learned > 0 && learned < n, "the conversation has both learned and masked positions");
    let wt = Tensor::from_slice(&w, (1, n), &dev).unwrap();

    let loss_and_grads = |targets: &[u32]| {
        let y = Tensor::from_slice(targets, (1, n), &dev).unwrap();
        let loss = model.masked_loss(&x, &y, Some(&wt), &mut Mode::training_without_dropout()).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<u32>> =
            params.params.iter().map(|(_, v)| vec1(grads.get(v).unwrap()).iter().map(|f| f.to_bits()).collect()).collect();
        (loss.to_scalar::<f32>().unwrap(), g)
    };
    let targets = r.ids[1..].to_vec();
    let (loss, grads) = loss_and_grads(&targets);

    // Other targets at every masked position: the same loss and gradients, bit for bit.
    let vocab = cfg.vocab_size as u32;
    let changed: Vec<u32> = targets.iter().zip(&w).map(|(&y, &w)| if w == 0.0 { (y + 1 + y % 5) % vocab } else { y }).collect();
    assert_ne!(changed, targets);
    let (loss2, grads2) = loss_and_grads(&changed);
    assert_eq!(loss.to_bits(), loss2.to_bits(), "masked targets changed the loss: {loss} vs {loss2}");
    for (i, (a, b)) in grads.iter().zip(&grads2).enumerate() {
        assert!(a == b, "masked targets changed the gradient of {}", params.params[i].0);
    }
    // The check sees targets that count: changing one learned target changes the loss.
    let mut one = targets.clone();
    let k = w.iter().position(|&v| v == 1.0).unwrap();
    one[k] = (one[k] + 1) % vocab;
    assert_ne!(loss_and_grads(&one).0, loss, "a learned target does not count");

    // The value: the mean over learned positions of −log softmax(logits)[target], in f64.
    let logits = model.forward(&x, &mut Mode::training_without_dropout()).unwrap().squeeze(0).unwrap();
    let rows = logits.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
    let mut sum = 0.0;
    for (i, row) in rows.iter().enumerate().filter(|(i, _)| w[*i] == 1.0) {
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
        sum += lse - row[targets[i] as usize];
    }
    let want = sum / learned as f64;
    assert!(rel_close(f64::from(loss), want, 1e-6), "masked loss {loss}, mean over the learned positions {want}");

    // The gradient with respect to the logits: zero on every masked row; on a learned row
    // (softmax − one-hot)/learned.
    let lv = Var::from_tensor(&logits.detach()).unwrap();
    let y = Tensor::from_slice(&targets, n, &dev).unwrap();
    let wv = Tensor::from_slice(&w, n, &dev).unwrap();
    let l = lmlab_model::ops::cross_entropy(lv.as_tensor(), &y, Some(&wv)).unwrap();
    assert_eq!(l.to_scalar::<f32>().unwrap().to_bits(), loss.to_bits(), "masked_loss is cross_entropy over its logits");
    let g = l.backward().unwrap().get(&lv).unwrap().to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
    for (i, (grow, row)) in g.iter().zip(&rows).enumerate() {
        if w[i] == 0.0 {
            assert!(grow.iter().all(|&v| v == 0.0), "masked position {i} has a logit gradient");
        } else {
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|v| (v - mx).exp()).sum();
            for (j, (&gv, &lj)) in grow.iter().zip(row).enumerate() {
                let want = ((lj - mx).exp() / z - if j == targets[i] as usize { 1.0 } else { 0.0 }) / learned as f64;
                assert!((gv - want).abs() < 1e-7, "d loss / d logit[{i}][{j}] = {gv}, want {want}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. ChatML and a real model's template

/// SmolLM2's template shape (see lmlab-tokenizer's chat tests): a default system turn when none
/// is given, and a line break after each <|im_end|>.
const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The real minimind tokenizer (byte-level BPE with <|im_start|> and <|im_end|>) and its
/// tokenizer_config.json, when ../shared/data has them.
fn minimind() -> Option<(Tokenizer, serde_json::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tokenizers");
    let (tj, cj) = (dir.join("minimind-tokenizer.json"), dir.join("minimind-tokenizer_config.json"));
    if !tj.is_file() || !cj.is_file() {
        prereq::missing(&format!("{} or {} is absent", tj.display(), cj.display()));
        return None;
    }
    let config = serde_json::from_str(&std::fs::read_to_string(cj).unwrap()).unwrap();
    Some((Tokenizer::from_file(tj).unwrap(), config))
}

#[test]
fn chatml_learns_the_reply_and_im_end_but_not_the_line_break_after_it() {
    let Some((tok, _)) = minimind() else { return };
    let im_end = tok.token_to_id("<|im_end|>").expect("the tokenizer has <|im_end|>");
    assert!(tok.token_to_id("<|im_start|>").is_some());
    let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>");
    let eot = end_of_turn(&t);
    assert_eq!(eot, "<|im_end|>");

    let conv =
        [m("system", "S"), m("user", "Name a colour."), m("assistant", "Blue."), m("user", "Another?"), m("assistant", "Green, or red.")];
    let r = render(&conv, &t, &eot, &tok).unwrap();
    let (ids, learn) = expected(
        &tok,
        &[
            ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n", 0.0),
            ("Blue.", 1.0),
            ("<|im_end|>", 1.0),
            ("\n<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\n", 0.0),
            ("Green, or red.", 1.0),
            ("<|im_end|>", 1.0),
            ("\n", 0.0),
        ],
    );
    assert_eq!(r.ids, ids);
    assert_eq!(r.learn, learn);
    assert_eq!(tok.decode(&r.ids).unwrap(), t.render(&conv, false).unwrap());
    // Each learned run is a reply followed by <|im_end|>, and the token after it (the line
    // break) is not learned.
    let mut runs: Vec<Vec<u32>> = Vec::new();
    for (i, (&id, &w)) in r.ids.iter().zip(&r.learn).enumerate() {
        if w == 1.0 {
            if i == 0 || r.learn[i - 1] == 0.0 {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(id);
        }
    }
    assert_eq!(runs.len(), 2);
    for (run, reply) in runs.iter().zip(["Blue.", "Green, or red."]) {
        assert_eq!(*run.last().unwrap(), im_end);
        assert_eq!(tok.decode(&run[..run.len() - 1]).unwrap(), reply);
    }
    assert_eq!(tok.decode(&r.ids[r.ids.len() - 1..]).unwrap(), "\n");

    // Without a system turn the template inserts its default one: not learned either.
    let r = render(&[m("user", "Hi"), m("assistant", "Hello.")], &t, &eot, &tok).unwrap();
    let (ids, learn) = expected(
        &tok,
        &[
            ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", 0.0),
            ("Hello.", 1.0),
            ("<|im_end|>", 1.0),
            ("\n", 0.0),
        ],
    );
    assert_eq!((r.ids, r.learn), (ids, learn));
}

#[test]
fn a_template_that_trims_the_reply_still_learns_only_through_its_end_token() {
    // Templates may strip what they are given (Llama 3's `content | trim`, minimind's
    // `content.lstrip('\n')`): the reply is then shorter than the message, and the end of turn
    // must still be found after it, not the line break after that learned with it.
    let Some((tok, _)) = minimind() else { return };
    let trimming = CHATML.replace("message['content']", "message['content'] | trim");
    let t = ChatTemplate::new(trimming, "<|im_start|>", "<|im_end|>");
    let conv = [m("system", "S"), m("user", " Hi "), m("assistant", "\n  Blue.  \n"), m("user", "More?"), m("assistant", "Red. ")];
    let r = render(&conv, &t, &end_of_turn(&t), &tok).unwrap();
    let (ids, learn) = expected(
        &tok,
        &[
            ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", 0.0),
            ("Blue.", 1.0),
            ("<|im_end|>", 1.0),
            ("\n<|im_start|>user\nMore?<|im_end|>\n<|im_start|>assistant\n", 0.0),
            ("Red.", 1.0),
            ("<|im_end|>", 1.0),
            ("\n", 0.0),
        ],
    );
    assert_eq!(tok.decode(&r.ids).unwrap(), t.render(&conv, false).unwrap());
    assert_eq!(r.ids, ids);
    assert_eq!(r.learn, learn);
}

#[test]
fn minimind_s_own_template_learns_the_reply_after_its_empty_think_block() {
    // minimind's template writes "<think>\n\n</think>\n\n" before every reply, and its
    // generation prompt ends with the same block: it is prompt, not learned.
    let Some((tok, config)) = minimind() else { return };
    let src = config["chat_template"].as_str().expect("a chat template");
    let (bos, eos) = (config["bos_token"].as_str().unwrap(), config["eos_token"].as_str().unwrap());
    let t = ChatTemplate::new(src, bos, eos);
    let eot = end_of_turn(&t);
    assert_eq!(eot, "<|im_end|>");
    let conv = [m("system", "S"), m("user", "Hi"), m("assistant", "Hello."), m("user", "2+2?"), m("assistant", "4")];
    let r = render(&conv, &t, &eot, &tok).unwrap();
    let (ids, learn) = expected(
        &tok,
        &[
            ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", 0.0),
            ("Hello.", 1.0),
            ("<|im_end|>", 1.0),
            ("\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", 0.0),
            ("4", 1.0),
            ("<|im_end|>", 1.0),
            ("\n", 0.0),
        ],
    );
    assert_eq!(tok.decode(&r.ids).unwrap(), t.render(&conv, false).unwrap());
    assert_eq!(r.ids, ids);
    assert_eq!(r.learn, learn);
}

// ---------------------------------------------------------------------------------------------
// 3. Packing changes no conversation's loss or logits

/// Conversations of the given token counts with pseudo-random ids, learned from their middle on.
fn synthetic(lens: &[usize], vocab: usize, salt: usize) -> Vec<Rendered> {
    lens.iter()
        .enumerate()
        .map(|(c, &len)| Rendered {
            ids: (0..len).map(|i| ((i * 7 + c * 13 + salt * 3 + i * i * (c + 1)) % vocab) as u32).collect(),
            learn: (0..len).map(|i| if i >= len / 3 && i % 4 != 1 { 1.0 } else { 0.0 }).collect(),
        })
        .collect()
}

fn packed_logits(model: &Gpt, rows: &[&Row]) -> Vec<Vec<Vec<f32>>> {
    let (x, _, _, packing) = batch_tensors(rows, DType::F32, &Device::Cpu).unwrap();
    let mut mode = Mode { grad: false, dropout: None, capture: None, packing: Some(&packing) };
    model.forward(&x, &mut mode).unwrap().to_vec3::<f32>().unwrap()
}

fn alone_logits(model: &Gpt, ids: &[u32]) -> Vec<Vec<f32>> {
    let x = Tensor::from_slice(ids, (1, ids.len()), &Device::Cpu).unwrap();
    model.forward(&x, &mut Mode::inference()).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap()
}

fn max_diff2(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

fn rope_and_learned(vocab: usize, context: usize) -> [GptConfig; 2] {
    [tiny_llama(vocab, context), GptConfig { tie_embeddings: false, ..GptConfig::gpt2_style(vocab, context, 2, 4, 16, 32) }]
}

#[test]
fn packed_conversations_have_the_loss_and_logits_they_have_alone() {
    let t = 40;
    for cfg in rope_and_learned(29, t) {
        let (model, _) = init_trainable(&cfg, 9, DType::F32, &Device::Cpu).unwrap();
        // Positions 8 + 14 + 10 = 32 of 40 in one row (8 of padding), then a second row.
        let convs = synthetic(&[9, 15, 11, 20, 13], cfg.vocab_size, 0);
        let (packed, stats) = pack(&convs, t, true, LongConversations::Skip);
        assert_eq!(packed.iter().map(|r| r.docs.clone()).collect::<Vec<_>>(), [vec![8, 14, 10], vec![19, 12]]);
        assert_eq!(stats.rows, 2);
        let (alone, _) = pack(&convs, t, false, LongConversations::Skip);
        assert_eq!(alone.len(), 5);

        // The loss: Σ loss_i·n_i / Σ n_i over the conversations alone equals the packed loss.
        let mut mode = Mode::inference();
        let packed_loss = f64::from(rows_loss(&model, &packed.iter().collect::<Vec<_>>(), &mut mode).unwrap().to_scalar::<f32>().unwrap());
        let (mut sum, mut count) = (0.0, 0.0);
        for row in &alone {
            let n: f64 = row.weights.iter().map(|&w| f64::from(w)).sum();
            let l = f64::from(rows_loss(&model, &[row], &mut mode).unwrap().to_scalar::<f32>().unwrap());
            sum += l * n;
            count += n;
        }
        let want = sum / count;
        assert!(rel_close(packed_loss, want, 1e-5), "{:?}: packed loss {packed_loss}, alone {want}", cfg.position);
        // Row by row too: the first packed row holds the first three conversations.
        let first = f64::from(rows_loss(&model, &[&packed[0]], &mut mode).unwrap().to_scalar::<f32>().unwrap());
        let (mut s3, mut n3) = (0.0, 0.0);
        for row in &alone[..3] {
            let n: f64 = row.weights.iter().map(|&w| f64::from(w)).sum();
            s3 += f64::from(rows_loss(&model, &[row], &mut mode).unwrap().to_scalar::<f32>().unwrap()) * n;
            n3 += n;
        }
        assert!(rel_close(first, s3 / n3, 1e-5), "{:?}: first row {first}, alone {}", cfg.position, s3 / n3);

        // The logits at every position of every conversation, packed (two rows in one batch)
        // against the conversation alone in a plain causal pass.
        let logits = packed_logits(&model, &packed.iter().collect::<Vec<_>>());
        let mut c = 0;
        for (r, row) in packed.iter().enumerate() {
            let mut at = 0;
            for &n in &row.docs {
                let alone = alone_logits(&model, &convs[c].ids[..n]);
                let d = max_diff2(&logits[r][at..at + n], &alone);
                assert!(d < 1e-5, "{:?}: conversation {c} packed differs from alone by {d}", cfg.position);
                at += n;
                c += 1;
            }
        }
        // The comparison sees attention across conversations: the packed row run as one plain
        // causal sequence gives the second conversation other logits.
        let x = Tensor::from_slice(&packed[0].inputs, (1, t), &Device::Cpu).unwrap();
        let plain = model.forward(&x, &mut Mode::inference()).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        let d = max_diff2(&plain[8..22], &alone_logits(&model, &convs[1].ids[..14]));
        assert!(d > 1e-3, "{:?}: without the packing mask the second conversation is unchanged ({d})", cfg.position);
    }
}

#[test]
fn a_conversation_gets_no_attention_from_the_one_packed_before_it() {
    let t = 40;
    for cfg in rope_and_learned(29, t) {
        let (model, _) = init_trainable(&cfg, 10, DType::F32, &Device::Cpu).unwrap();
        let convs = synthetic(&[9, 15, 11], cfg.vocab_size, 1);
        let (rows, _) = pack(&convs, t, true, LongConversations::Skip);
        assert_eq!(rows.len(), 1);
        let before = packed_logits(&model, &[&rows[0]]);
        // Every token of the first conversation replaced (different ids, same length).
        let mut other = convs.clone();
        other[0].ids = convs[0].ids.iter().map(|&i| (i + 5) % cfg.vocab_size as u32).collect();
        let (rows2, _) = pack(&other, t, true, LongConversations::Skip);
        let after = packed_logits(&model, &[&rows2[0]]);
        assert!(max_diff2(&before[0][..8], &after[0][..8]) > 1e-3, "the first conversation's logits did not change");
        // Conversations 2 and 3 and the padding: exactly the same logits.
        assert!(before[0][8..] == after[0][8..], "{:?}: changing conversation 1 changed the others' logits", cfg.position);
        // And the last conversation does not reach back into the second.
        let mut third = convs.clone();
        third[2].ids = convs[2].ids.iter().map(|&i| (i + 3) % cfg.vocab_size as u32).collect();
        let (rows3, _) = pack(&third, t, true, LongConversations::Skip);
        let after3 = packed_logits(&model, &[&rows3[0]]);
        assert!(before[0][..22] == after3[0][..22], "{:?}: conversation 3 changed the earlier ones", cfg.position);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Packing: long conversations, nothing left to learn, next-fit order

/// A conversation of `len` ids (value = its index `c`·100 + position) learning from `from` on.
fn conv(c: u32, len: usize, from: usize) -> Rendered {
    Rendered { ids: (0..len as u32).map(|i| c * 100 + i).collect(), learn: (0..len).map(|i| if i >= from { 1.0 } else { 0.0 }).collect() }
}

#[test]
fn packing_skips_or_truncates_long_conversations_and_drops_those_with_nothing_to_learn() {
    let t = 10;
    // n = len − 1 positions: 5; 11 (too long); 10 (exactly fits); 12 with its learned tokens
    // all past position 10 (too long; nothing left after truncation); 3.
    let convs = [conv(1, 6, 3), conv(2, 12, 4), conv(3, 11, 2), conv(4, 13, 11), conv(5, 4, 1)];

    let (rows, s) = pack(&convs, t, true, LongConversations::Skip);
    assert_eq!((s.conversations, s.skipped_long, s.truncated, s.nothing_to_learn), (5, 2, 0, 0));
    assert_eq!(rows.iter().map(|r| r.docs.clone()).collect::<Vec<_>>(), [vec![5], vec![10], vec![3]]);
    assert_eq!(rows[1].inputs, (300..310).collect::<Vec<u32>>(), "a conversation of t + 1 tokens fills a row exactly");
    assert_eq!(rows[1].targets, (301..311).collect::<Vec<u32>>());

    let (rows, s) = pack(&convs, t, true, LongConversations::Truncate);
    // Conversation 4 is truncated to its first 10 positions, where it learns nothing: dropped,
    // and counted.
    assert_eq!((s.conversations, s.skipped_long, s.truncated, s.nothing_to_learn), (5, 0, 2, 1));
    assert_eq!(rows.iter().map(|r| r.docs.clone()).collect::<Vec<_>>(), [vec![5], vec![10], vec![10], vec![3]]);
    // The truncated conversation keeps its beginning: inputs 0..10, targets 1..=10.
    assert_eq!(rows[1].inputs, (200..210).collect::<Vec<u32>>());
    assert_eq!(rows[1].targets, (201..211).collect::<Vec<u32>>());
    assert_eq!(rows[1].weights, convs[1].learn[1..=10]);
    assert!(!rows.iter().flat_map(|r| &r.inputs).any(|&i| (400..500).contains(&i)), "conversation 4 is in a row");
    assert_eq!(s.rows, 4);
    assert_eq!(s.learned_positions, rows.iter().flat_map(|r| &r.weights).filter(|&&w| w > 0.0).count());
    assert!((s.fill - 28.0 / 40.0).abs() < 1e-12, "fill {}", s.fill);
    // Padding: token 0 at weight 0.
    assert_eq!(rows[0].inputs[5..], [0; 5]);
    assert_eq!(rows[0].targets[5..], [0; 5]);
    assert_eq!(rows[0].weights[5..], [0.0; 5]);

    // A conversation whose only learned token is its first (which no position predicts).
    let (rows, s) = pack(&[conv(6, 5, 0), conv(7, 5, 4)], t, true, LongConversations::Skip);
    assert_eq!(s.nothing_to_learn, 0);
    assert_eq!(rows[0].weights[..4], [1.0; 4]);
    let only_first = Rendered { ids: vec![1, 2, 3], learn: vec![1.0, 0.0, 0.0] };
    let (rows, s) = pack(&[only_first], t, true, LongConversations::Skip);
    assert!(rows.is_empty());
    assert_eq!(s.nothing_to_learn, 1);
}

#[test]
fn packing_is_next_fit_in_the_given_order() {
    let t = 10;
    // n = 6, 5, 3, 7, 2, 4: next fit gives [6] [5 3] [7 2] [4]. (First fit would put the 3 beside
    // the 6, and best fit would differ again.)
    let convs: Vec<Rendered> = [7, 6, 4, 8, 3, 5].iter().enumerate().map(|(c, &len)| conv(c as u32 + 1, len, 1)).collect();
    let (rows, s) = pack(&convs, t, true, LongConversations::Skip);
    assert_eq!(rows.iter().map(|r| r.docs.clone()).collect::<Vec<_>>(), [vec![6], vec![5, 3], vec![7, 2], vec![4]]);
    // Conversations stay in order and whole inside each row.
    let mut want: Vec<Vec<u32>> = vec![vec![]; 4];
    let groups: [&[usize]; 4] = [&[1], &[2, 3], &[4, 5], &[6]];
    for (r, cs) in groups.iter().enumerate() {
        for &c in *cs {
            let n = convs[c - 1].ids.len() - 1;
            want[r].extend(&convs[c - 1].ids[..n]);
        }
        want[r].resize(t, 0);
    }
    assert_eq!(rows.iter().map(|r| r.inputs.clone()).collect::<Vec<_>>(), want);
    assert!((s.fill - 27.0 / 40.0).abs() < 1e-12);
    // Without packing, one conversation per row.
    let (rows, s) = pack(&convs, t, false, LongConversations::Skip);
    assert_eq!(s.rows, 6);
    assert!(rows.iter().zip(&convs).all(|(r, c)| r.docs == [c.ids.len() - 1]));
    // A row of documents longer than it is refused by the packing itself.
    assert!(Packing::new(&[vec![6, 5]], t, DType::F32, &Device::Cpu).is_err());
}

// ---------------------------------------------------------------------------------------------
// 5. Exact resume of fine_tune, full and LoRA; a merged LoRA checkpoint

fn conversations() -> Vec<(String, Vec<Message>)> {
    (0..14)
        .map(|i| {
            let (a, b) = (i % 5 + 1, i % 3 + 2);
            let mut msgs = Vec::new();
            if i % 3 == 0 {
                msgs.push(m("system", "You are a terse helper."));
            }
            msgs.push(m("user", &format!("What is {a} plus {b}?")));
            msgs.push(m("assistant", &format!("It is {}.", a + b)));
            if i % 4 == 1 {
                msgs.push(m("user", "Name a colour."));
                msgs.push(m("assistant", if i % 2 == 0 { "Blue." } else { "Green, or red." }));
            }
            (format!("conv {i}"), msgs)
        })
        .collect()
}

struct Setup {
    dir: tempfile::TempDir,
    tok: Tokenizer,
    cfg: GptConfig,
    base: HashMap<String, Tensor>,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tok = lmlab_tokenizer(dir.path());
        // Dropout on: the resumed run must draw the same masks.
        let cfg = GptConfig { dropout: 0.1, ..tiny_llama(tok.vocab_size(), 64) };
        // The base as init_trainable makes it: tensors of trainable variables.
        let base = init_trainable(&cfg, 21, DType::F32, &Device::Cpu).unwrap().1.tensors();
        // Also on disk, as `lmlab sft --base` reads it (for the merged checkpoint).
        let base_dir = dir.path().join("base");
        lmlab_model::checkpoint::save_model(&base_dir, &cfg, &base).unwrap();
        tok.save(base_dir.join("tokenizer.json")).unwrap();
        Self { dir, tok, cfg, base }
    }

    fn base_dir(&self) -> PathBuf {
        self.dir.path().join("base")
    }

    fn options(&self, run: &str, lora: Option<LoraConfig>, resume: bool, stop_after: Option<u64>) -> SftOptions {
        SftOptions {
            base: self.base_dir(),
            model_cfg: self.cfg.clone(),
            base_weights: self.base.clone(),
            tokenizer: self.tok.clone(),
            template: ChatTemplate::lmlab(),
            tokenizer_json: lora.is_none().then(|| self.base_dir().join("tokenizer.json")),
            conversations: conversations(),
            train: TrainConfig {
                batch_size: 2,
                grad_accum: 2,
                max_steps: 6,
                lr: 3e-3,
                min_lr: 3e-4,
                warmup_steps: 2,
                weight_decay: 0.1,
                eval_every: 2,
                eval_batches: 2,
                save_every: 0,
                log_every: 1,
                val_fraction: 0.2,
                seed: 5,
                ..TrainConfig::default()
            },
            lora,
            packed: true,
            long: LongConversations::Skip,
            out: self.dir.path().join(run).join("sft"),
            resume,
            stop_after,
            stop: Arc::new(AtomicBool::new(false)),
            device: Device::Cpu,
        }
    }
}

fn metric_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

/// Runs 6 steps straight and 2 + resume to 6, and checks the two end identical.
fn check_exact_resume(s: &Setup, name: &str, lora: Option<LoraConfig>, weights_file: &str) {
    let straight = fine_tune(s.options(&format!("{name}-straight"), lora.clone(), false, None), |_| {}).unwrap();
    assert_eq!((straight.run.final_step, straight.run.interrupted), (6, false));
    assert!(straight.packing.rows >= 4 && straight.packing.skipped_long == 0, "{:?}", straight.packing);
    assert!(straight.held_out_conversations >= 2);
    let first = fine_tune(s.options(&format!("{name}-split"), lora.clone(), false, Some(2)), |_| {}).unwrap();
    assert_eq!((first.run.final_step, first.run.interrupted), (2, true));
    let second = fine_tune(s.options(&format!("{name}-split"), lora.clone(), true, None), |_| {}).unwrap();
    assert_eq!((second.run.start_step, second.run.final_step), (2, 6));

    let (a, b) = (s.dir.path().join(format!("{name}-straight/sft")), s.dir.path().join(format!("{name}-split/sft")));
    for f in [weights_file, "optimizer.safetensors"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{name}: {f} differs after resuming");
    }
    // Every step of the resumed run had the straight run's loss, bit for bit.
    let bits = |r: &lmlab_train::sft::SftReport| r.run.steps.iter().map(|s| (s.step, s.loss.to_bits())).collect::<Vec<_>>();
    let mut split = bits(&first);
    split.extend(bits(&second));
    assert_eq!(split, bits(&straight), "{name}: step losses differ");
    assert_eq!(second.run.last_eval_loss.map(f64::to_bits), straight.run.last_eval_loss.map(f64::to_bits));
    assert_eq!(metric_steps(&s.dir.path().join(format!("{name}-split"))), (1..=6).collect::<Vec<_>>());
    // Training moved the weights (the comparison is not between two untouched files).
    let trained = load_safetensors(&a.join(weights_file), &Device::Cpu).unwrap();
    let moved = trained.iter().any(|(n, t)| match s.base.get(n) {
        Some(b) => vec1(t) != vec1(b),
        None => vec1(t).iter().any(|&v| v != 0.0) && n.ends_with("lora_b"),
    });
    assert!(moved, "{name}: nothing trained");
}

#[test]
fn full_fine_tune_resumes_bit_identically() {
    let s = Setup::new();
    let before: HashMap<String, Vec<f32>> = s.base.iter().map(|(n, t)| (n.clone(), vec1(t))).collect();
    check_exact_resume(&s, "full", None, "model.safetensors");
    // The caller's base weights are what every run started from, and still are.
    for (n, t) in &s.base {
        assert_eq!(vec1(t), before[n], "fine-tuning changed the caller's base tensor {n}");
    }
    // A full fine-tune is a complete checkpoint: it loads as a model with lmlab's template.
    let dir = s.dir.path().join("full-straight/sft");
    let model = lmlab_infer::Model::load(&dir, &Default::default(), &Device::Cpu).unwrap();
    assert_eq!(model.chat_template().map(|t| t.source()), Some(lmlab_tokenizer::chat::LMLAB_TEMPLATE));
    let weights = load_safetensors(&dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for (n, w) in model.as_gpt().unwrap().named_weights().unwrap() {
        assert_eq!(vec1(&w), vec1(&weights[&n]), "{n}");
    }
}

#[test]
fn lora_fine_tune_resumes_bit_identically_and_its_merge_computes_base_plus_adapters() {
    let s = Setup::new();
    let lora = LoraConfig { rank: 2, alpha: 4.0, targets: LoraTarget::parse_list("q,v,o,down").unwrap() };
    check_exact_resume(&s, "lora", Some(lora.clone()), "adapter.safetensors");

    let dir = s.dir.path().join("lora-straight/sft");
    assert!(dir.join("adapter.json").is_file() && !dir.join("model.safetensors").exists());
    let adapters = load_safetensors(&dir.join("adapter.safetensors"), &Device::Cpu).unwrap();
    let (d, kv, f) = (s.cfg.d_model, s.cfg.n_kv_head * s.cfg.head_dim(), s.cfg.d_ff);
    let want = s.cfg.n_layer * lora.rank * ((d + d) + (d + kv) + (d + d) + (f + d));
    assert_eq!(adapters.values().map(Tensor::elem_count).sum::<usize>(), want);
    assert!(adapters.keys().all(|n| n.ends_with(".lora_a") || n.ends_with(".lora_b")), "{:?}", adapters.keys());

    // The adapter folder loads as its base with the adapters merged; saved merged, it loads as
    // a plain checkpoint. Both compute what the base with the adapters on top computes.
    let adapted = lmlab_infer::Model::load(&dir, &Default::default(), &Device::Cpu).unwrap();
    let merged_dir = s.dir.path().join("merged");
    lmlab_infer::save_merged(&adapted, &merged_dir).unwrap();
    assert!(merged_dir.join("tokenizer.json").is_file() && !merged_dir.join("chat_template.json").exists());
    let merged = lmlab_infer::Model::load(&merged_dir, &Default::default(), &Device::Cpu).unwrap();
    assert_eq!(merged.format(), "lmlab");
    assert_eq!(merged.chat_template().map(|t| t.source()), Some(lmlab_tokenizer::chat::LMLAB_TEMPLATE));

    let mut on_top = frozen_from_tensors(&s.cfg, s.base.clone(), DType::F32, &Device::Cpu).unwrap();
    on_top.add_lora(&lora, &candle_nn::VarBuilder::from_tensors(adapters, DType::F32, &Device::Cpu)).unwrap();
    let plain_base = frozen_from_tensors(&s.cfg, s.base.clone(), DType::F32, &Device::Cpu).unwrap();
    let ids: Vec<u32> = s.tok.encode("<|user|>What is two plus two?<|end|><|assistant|>It is four.<|end|>").unwrap();
    let x = Tensor::from_slice(&ids, (1, ids.len()), &Device::Cpu).unwrap();
    let logits = |g: &Gpt| vec1(&g.forward(&x, &mut Mode::inference()).unwrap());
    let want = logits(&on_top);
    for (what, model) in [("loaded adapter folder", &adapted), ("merged checkpoint", &merged)] {
        let got = logits(model.as_gpt().unwrap());
        let d = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d < 1e-5, "{what}: logits differ from base + adapters by {d}");
        assert_eq!(model.config(), &s.cfg);
    }
    let moved = want.iter().zip(logits(&plain_base)).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 1e-4, "the trained adapters do not change the logits ({moved})");
}
