//! `data prepare` output read back: each kept document's span in `kept.jsonl.gz` holds
//! `<|bos|>`, the tokens of the text the pipeline kept, and `<|eos|>` (docs/formats.md), the
//! spans tile the shards in order, and rejected documents leave no tokens.

use std::collections::HashMap;
use std::io::BufRead;

use lmlab_data::pipeline::PipelineConfig;
use lmlab_data::prepare::{prepare, KeptDoc, PrepareOptions, Progress};
use lmlab_data::shards::Shard;
use lmlab_data::urlfilter::UrlBlocklist;

/// Four distinct pages, each with a two-word line ("Share this") that C4's line filter drops.
const PAGES: [&str; 4] = [
    "The river runs through the old town, and the people who live there have always loved it. Every spring the water rises with the melting snow.\nThe fishermen wait for the best days to go out, and they mend their nets on the quay while they wait.\nShare this\nChildren play on the banks while their parents talk about the weather and the prices at the market. In the evening the lights of the houses shine on the water, and the town seems quieter than it is.",
    "The library opens at eight in the morning and closes late in the evening on most days of the week. Students come to read and write.\nThe older visitors like to sit with the newspapers by the window, and some of them stay until lunch.\nOn weekends there are talks about history and art. The small garden behind the building fills with families who bring their lunch.\nShare this",
    "Share this\nA good loaf of bread needs only flour, water, salt and a little yeast, but it also needs time. The dough should rest for several hours.\nThat is how the flavour develops, and the crust turns brown and crisp in the oven.\nMany bakers keep a jar of starter in the kitchen and feed it every day. Their parents and grandparents did the same before them.",
    "The mountain road was built more than a century ago by workers who came from the valleys on both sides. It climbs through forests of pine.\nPast the small lakes the hikers stop to rest and look at the view.\nShare this\nIn winter the pass is closed because of the snow. The villages at the top are quiet until the spring returns, and then the road opens again.",
];

#[test]
fn kept_spans_decode_to_the_kept_text_between_bos_and_eos() {
    let dir = tempfile::tempdir().unwrap();
    // Input: the four pages, an exact copy of the second, and a page too short to keep.
    let mut jsonl = String::new();
    for (i, text) in PAGES.iter().enumerate() {
        jsonl += &format!("{}\n", serde_json::json!({"id": format!("page{i}"), "text": text}));
    }
    jsonl += &format!("{}\n", serde_json::json!({"id": "copy", "text": PAGES[1]}));
    jsonl += &format!("{}\n", serde_json::json!({"id": "short", "text": "Too short to keep."}));
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, jsonl).unwrap();
    let train = dir.path().join("train.txt");
    std::fs::write(&train, PAGES.join("\n")).unwrap();
    let tok = lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions {
        files: vec![train],
        vocab_size: 400,
        min_frequency: 2,
        show_progress: false,
    })
    .unwrap();
    let (bos, eos) = (tok.special().bos.unwrap(), tok.special().eos.unwrap());
    // Shards of about 60 tokens: every page lands in a shard of its own or shares one, never split.
    let out = dir.path().join("data");
    let opts = PrepareOptions {
        inputs: vec![input],
        out: out.clone(),
        config: PipelineConfig { min_chars: 100, ..PipelineConfig::standard() },
        blocklist: UrlBlocklist::default(),
        shard_tokens: 60,
        part: None,
    };
    let m = prepare(&opts, &tok, |_: &Progress| {}).unwrap();
    assert_eq!((m.counts.documents, m.documents_kept), (6, 4), "{:?}", m.counts);

    let kept: Vec<KeptDoc> = std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(out.join("kept.jsonl.gz")).unwrap()))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(kept.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["page0", "page1", "page2", "page3"]);
    let shards: Vec<Shard> = m.shards.iter().map(|(name, _)| Shard::open(&out.join(name)).unwrap()).collect();
    assert!(shards.len() >= 2, "{:?}", m.shards);
    let mut next: HashMap<usize, usize> = HashMap::new();
    for (d, page) in kept.iter().zip(PAGES) {
        let mut span = Vec::new();
        shards[d.shard].read_into(d.start, d.tokens, &mut span);
        assert_eq!(span.first(), Some(&bos), "{}: span starts with <|bos|>", d.id);
        assert_eq!(span.last(), Some(&eos), "{}: span ends with <|eos|>", d.id);
        let body = &span[1..span.len() - 1];
        assert!(!body.contains(&bos) && !body.contains(&eos), "{}: a span holds one document", d.id);
        // The text the pipeline kept: the page without its "Share this" line (C4: fewer than
        // three words), lines joined by newlines.
        let want: String = page.lines().filter(|l| *l != "Share this").collect::<Vec<_>>().join("\n");
        assert_eq!(tok.decode(body).unwrap(), want, "{}", d.id);
        assert_eq!(body, tok.encode(&want).unwrap(), "{}", d.id);
        // Spans follow each other with nothing in between.
        assert_eq!(d.start, next.get(&d.shard).copied().unwrap_or(0), "{}", d.id);
        next.insert(d.shard, d.start + d.tokens);
    }
    // The spans fill every shard exactly, and the totals agree.
    for (i, (s, (name, n))) in shards.iter().zip(&m.shards).enumerate() {
        assert_eq!((s.len(), *n), (next[&i], next[&i]), "{name}");
    }
    assert_eq!(kept.iter().map(|d| d.tokens as u64).sum::<u64>(), m.total_tokens);
}
