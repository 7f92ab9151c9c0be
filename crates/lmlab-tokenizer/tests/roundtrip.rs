//! Tokenizer behaviour: training, byte-exact round trips, special tokens, foreign tokenizers.

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::path::PathBuf;

use lmlab_tokenizer::{special, stats, train, Tokenizer, TrainOptions};

fn shared_data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        prereq::missing(&format!("../shared/data is absent ({}), real-data checks not run", p.display()));
        None
    }
}

/// A small mixed English/Chinese corpus of words in varied order, written to a temp file.
fn corpus_file(dir: &tempfile::TempDir) -> PathBuf {
    let en = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "it's", "a", "fine", "day"];
    let zh = ["机器", "学习", "模型", "通过", "大量", "文本", "进行", "训练", "语言", "预测", "下一个", "词"];
    let mut text = String::new();
    let mut state = 12345u64; // a fixed LCG: varied word order, so words (not lines) are frequent
    let mut next = |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    for i in 0..300 {
        for _ in 0..8 {
            text.push_str(en[next(en.len())]);
            text.push(' ');
        }
        text.push_str(&format!("{i}.\n"));
        for _ in 0..8 {
            text.push_str(zh[next(zh.len())]);
        }
        text.push_str("。\n");
    }
    let path = dir.path().join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn trained(vocab: usize) -> (tempfile::TempDir, Tokenizer) {
    let dir = tempfile::tempdir().unwrap();
    let file = corpus_file(&dir);
    let tok = train(&TrainOptions { files: vec![file], vocab_size: vocab, min_frequency: 2, show_progress: false }).unwrap();
    (dir, tok)
}

#[test]
fn special_tokens_are_reserved_first() {
    let (_d, tok) = trained(600);
    for (i, t) in special::ALL.iter().enumerate() {
        assert_eq!(tok.token_to_id(t), Some(i as u32), "{t}");
    }
    assert!(tok.is_byte_level());
    assert!(tok.vocab_size() <= 600 && tok.vocab_size() > 263 + 20, "{}", tok.vocab_size());
    let sp = tok.special();
    assert_eq!(sp.eos, Some(1));
    assert!(sp.stop_ids.contains(&1) && sp.stop_ids.contains(&6));
}

#[test]
fn round_trips_any_bytes() {
    let (_d, tok) = trained(600);
    let cases: Vec<Vec<u8>> = vec![
        b"Hello, world! It's 2026.\n\tIndented  double  spaces".to_vec(),
        "语言模型预测下一个词，然后再预测下一个。".as_bytes().to_vec(),
        "emoji 🦀🚀 and a family 👨‍👩‍👧 ZWJ sequence".as_bytes().to_vec(),
        vec![0xff, 0xfe, b'a', 0xc3, 0x28, 0x80, 0xe4, 0xb8], // invalid UTF-8 everywhere
        (0..=255u8).collect(),
        b"".to_vec(),
        "mixed <|eos|> special text".as_bytes().to_vec(),
    ];
    for bytes in cases {
        let ids = tok.encode_bytes(&bytes).unwrap();
        assert_eq!(tok.decode_bytes(&ids).unwrap(), bytes, "round trip of {bytes:?} via {ids:?}");
    }
}

#[test]
fn learned_merges_compress_and_han_stays_apart_from_latin() {
    let (_d, tok) = trained(800);
    let text = "the quick brown fox";
    let ids = tok.encode(text).unwrap();
    assert!(ids.len() == 4, "frequent English words should be single tokens: {ids:?}");
    // Han and Latin never share a token under our pre-tokenizer.
    let enc = tok.encoding("GPT模型").unwrap();
    for &(s, e) in enc.get_offsets() {
        let piece = &"GPT模型"[s..e];
        let has_han = piece.chars().any(stats::is_han);
        let has_latin = piece.chars().any(stats::is_latin_letter);
        assert!(!(has_han && has_latin), "token {piece:?} mixes scripts");
    }
    // A frequent Chinese word in the corpus is learned as one token.
    assert_eq!(tok.encode("模型").unwrap().len(), 1);
}

#[test]
fn stats_partition_tokens_and_characters_by_script() {
    let (_d, tok) = trained(800);
    let s = stats::measure(&tok, "mixed", "The quick brown fox jumps. It's 机器学习模型通过大量文本进行训练。").unwrap();
    assert_eq!(s.latin.words, 6);
    assert_eq!(s.han.chars, 16);
    assert_eq!(s.latin.tokens + s.han.tokens + s.other.tokens, s.tokens);
    assert_eq!(s.latin.chars + s.han.chars + s.other.chars, s.chars);
    assert_eq!(s.latin.chars, 24);
    assert_eq!(s.chars, 49);
    assert!((s.han.tokens_per_unit - s.han.tokens as f64 / 16.0).abs() < 1e-12);
    assert!((s.latin.tokens_per_unit - s.latin.tokens as f64 / 6.0).abs() < 1e-12);
}

#[test]
fn foreign_hf_tokenizers_load_unchanged() {
    let Some(data) = shared_data() else { return };
    let neox = Tokenizer::from_file(data.join("tokenizers/gpt-neox-tokenizer.json")).unwrap();
    assert!(neox.is_byte_level());
    // "Hello world" is [12092, 1533] in GPT-NeoX's published vocabulary.
    assert_eq!(neox.encode("Hello world").unwrap(), vec![12092, 1533]);
    assert_eq!(neox.special().stop_ids, vec![neox.token_to_id("<|endoftext|>").unwrap()]);
    let mini = Tokenizer::from_file(data.join("tokenizers/minimind-tokenizer.json")).unwrap();
    assert_eq!(mini.vocab_size(), 6400);
    for tok in [&neox, &mini] {
        let bytes = "混合 text 🦀 \u{0}\u{7f}".as_bytes();
        assert_eq!(tok.decode_bytes(&tok.encode_bytes(bytes).unwrap()).unwrap(), bytes);
        let mut invalid = b"ok".to_vec();
        invalid.extend([0x80, 0xc3, b'!', 0xe4, 0xb8]);
        assert_eq!(tok.decode_bytes(&tok.encode_bytes(&invalid).unwrap()).unwrap(), invalid);
    }
    // GPT-NeoX has no token for bytes that never occur in UTF-8: a clear error, not a panic.
    let err = neox.encode_bytes(&[b'a', 0xff]).unwrap_err().to_string();
    assert!(err.contains("0xff"), "{err}");
}

#[test]
fn save_and_reload_gives_same_ids() {
    let (dir, tok) = trained(600);
    let path = dir.path().join("out/tokenizer.json");
    tok.save(&path).unwrap();
    let again = Tokenizer::from_file(&path).unwrap();
    let text = "It's the fox's day: 模型 123456";
    assert_eq!(tok.encode(text).unwrap(), again.encode(text).unwrap());
}
