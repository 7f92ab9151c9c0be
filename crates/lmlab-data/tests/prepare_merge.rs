//! `prepare` on a generated crawl (lmlab-world, tiny): the output does not depend on the
//! thread count, the filters meet their targets against the world's labels, and
//! `--shard i/n` parts merged with `merge` give what one run gives.

use std::path::{Path, PathBuf};

use lmlab_data::merge::merge;
use lmlab_data::pipeline::PipelineConfig;
use lmlab_data::prepare::{prepare, KeptDoc, Manifest, PrepareOptions, Progress};
use lmlab_data::shards::Shard;
use lmlab_data::urlfilter::UrlBlocklist;

fn run_prepare(crawl: &Path, tok: &lmlab_tokenizer::Tokenizer, out: PathBuf, part: Option<(usize, usize)>, threads: usize) -> Manifest {
    let opts = PrepareOptions {
        inputs: vec![crawl.to_path_buf()],
        out,
        config: PipelineConfig::standard(),
        blocklist: UrlBlocklist::default(),
        shard_tokens: 200_000,
        part,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| prepare(&opts, tok, |_: &Progress| {})).unwrap()
}

fn kept(dir: &Path) -> Vec<KeptDoc> {
    let f = std::fs::File::open(dir.join("kept.jsonl.gz")).unwrap();
    std::io::BufRead::lines(std::io::BufReader::new(flate2::read::GzDecoder::new(f)))
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

fn all_tokens(dir: &Path, m: &Manifest) -> Vec<u32> {
    let mut out = Vec::new();
    for (name, n) in &m.shards {
        Shard::open(&dir.join(name)).unwrap().read_into(0, *n, &mut out);
    }
    out
}

#[test]
fn thread_count_does_not_change_the_output_and_merged_parts_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    lmlab_world::generate(&world, &lmlab_world::WorldOptions::default()).unwrap();
    let crawl = world.join("crawl");
    let text = dir.path().join("train.txt");
    std::fs::write(&text, std::fs::read_to_string(world.join("kb.jsonl")).unwrap()).unwrap();
    let tok = lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions {
        files: vec![text],
        vocab_size: 2000,
        min_frequency: 2,
        show_progress: false,
    })
    .unwrap();

    let (one, two) = (dir.path().join("t1"), dir.path().join("t2"));
    let m1 = run_prepare(&crawl, &tok, one.clone(), None, 1);
    run_prepare(&crawl, &tok, two.clone(), None, 2);
    assert!(m1.counts.documents > 9000 && m1.documents_kept > 5000 && m1.shards.len() > 1, "{:?}", m1.counts);
    let mut names: Vec<String> = std::fs::read_dir(&one).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(names.contains(&"kept.jsonl.gz".to_string()) && names.contains(&"shard-00001.bin".to_string()), "{names:?}");
    for name in &names {
        // Byte-identical, compressed files included (same records in the same order).
        assert!(std::fs::read(one.join(name)).unwrap() == std::fs::read(two.join(name)).unwrap(), "{name} differs between 1 and 2 threads");
    }
    // The stored token spans are where each document's tokens are: BOS/EOS-free tokenizer, so
    // spans tile the shards exactly.
    let docs = kept(&one);
    assert_eq!(docs.len() as u64, m1.documents_kept);
    assert_eq!(docs.iter().map(|d| d.tokens as u64).sum::<u64>(), m1.total_tokens);

    // The default config against the world's labels: the targets (≥ 95% of spam,
    // clickbait, boilerplate and duplicates removed, of encyclopedia, news, forum and story
    // pages kept).
    let report = lmlab_data::filter_eval::eval_filters(&world.join("labels.jsonl"), &one).unwrap();
    assert_eq!(report.missing, 0);
    for kind in lmlab_data::filter_eval::REMOVE_TARGETS.iter().chain(&lmlab_data::filter_eval::KEEP_TARGETS) {
        let rate = report.kinds[*kind].rate();
        assert!(rate >= lmlab_data::filter_eval::TARGET, "{kind}: {rate:.3}\n{}", lmlab_data::filter_eval::render(&report));
    }

    // Two parts (one WARC file each) and their merge.
    let (p0, p1, merged) = (dir.path().join("p0"), dir.path().join("p1"), dir.path().join("merged"));
    let a = run_prepare(&crawl, &tok, p0.clone(), Some((0, 2)), 2);
    let b = run_prepare(&crawl, &tok, p1.clone(), Some((1, 2)), 2);
    assert_eq!((a.inputs.len(), b.inputs.len()), (1, 1));
    assert_ne!(a.inputs[0].path, b.inputs[0].path);
    let cross = a.documents_kept + b.documents_kept - m1.documents_kept;
    assert!(cross > 0, "the generated crawl has duplicates across its two files");
    let m = merge(&[p0, p1], &merged, 200_000, |_| {}).unwrap();
    assert_eq!(m.counts, m1.counts, "merged counts equal one run's");
    assert_eq!(
        (m.documents_kept, m.total_tokens, &m.tokens_by_language, &m.documents_by_source),
        (m1.documents_kept, m1.total_tokens, &m1.tokens_by_language, &m1.documents_by_source)
    );
    assert_eq!(all_tokens(&merged, &m), all_tokens(&one, &m1));
    let ids = |d: &[KeptDoc]| d.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&kept(&merged)), ids(&docs));
    assert_eq!(m.inputs, m1.inputs);
    let rejected = |dir: &Path| {
        std::io::BufRead::lines(std::io::BufReader::new(flate2::read::GzDecoder::new(
            std::fs::File::open(dir.join("rejected.jsonl.gz")).unwrap(),
        )))
        .count() as u64
    };
    assert_eq!(rejected(&merged), m.counts.documents - m.documents_kept);
    assert!(std::fs::read_to_string(merged.join("data-card.md")).unwrap().contains("| dedup | exact_duplicate |"));

    // Parts made with different settings are refused, naming the folder.
    let odd = dir.path().join("odd");
    let opts = PrepareOptions {
        inputs: vec![crawl.join("world-00001.warc.gz")],
        out: odd.clone(),
        config: PipelineConfig { min_chars: 10, ..PipelineConfig::standard() },
        blocklist: UrlBlocklist::default(),
        shard_tokens: 200_000,
        part: None,
    };
    prepare(&opts, &tok, |_: &Progress| {}).unwrap();
    let err = merge(&[dir.path().join("p0"), odd.clone()], &dir.path().join("m2"), 200_000, |_| {}).unwrap_err().to_string();
    assert!(err.contains("odd") && err.contains("config"), "{err}");
    let err = merge(&[dir.path().join("p0"), dir.path().join("p1")], &dir.path().join("p1"), 200_000, |_| {}).unwrap_err().to_string();
    assert!(err.contains("one of the parts"), "{err}");
    let err = merge(&[dir.path().join("nothing")], &dir.path().join("m3"), 200_000, |_| {}).unwrap_err().to_string();
    assert!(err.contains("nothing") && err.contains("manifest.json"), "{err}");
}
