//! `lmlab data prepare`: inputs → [`Pipeline`] → tokens → shards, with `manifest.json` (inputs
//! with sizes and checksums, counts per stage and rule, errors with file and offset, tokens by
//! language and source), `rejected.jsonl.gz` (id, url, stage, rule of every removed document)
//! and `data-card.md` for people.
//!
//! This first version runs on one thread in input order; `--shard i/n` takes every n-th input
//! file starting at i, so a cluster array job can split a crawl. Not yet here: rayon, the merge
//! of shard outputs with cross-shard dedup, a progress bar.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lmlab_tokenizer::Tokenizer;
use serde::Serialize;

use crate::input::{self, Content, InputError, InputItem};
use crate::pipeline::{Outcome, Pipeline, PipelineConfig, StageCounts};
use crate::shards::write_shard;
use crate::urlfilter::UrlBlocklist;

pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub config: PipelineConfig,
    pub blocklist: UrlBlocklist,
    /// Tokens per shard file.
    pub shard_tokens: usize,
    /// (i, n): process input files i, i+n, i+2n, ...
    pub part: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// xxh3-64 of the file's bytes, hex.
    pub xxh3: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub inputs: Vec<InputFile>,
    pub part: Option<(usize, usize)>,
    pub config: PipelineConfig,
    pub counts: StageCounts,
    pub errors_total: usize,
    /// The first 1000 errors.
    pub errors: Vec<InputError>,
    pub documents_kept: u64,
    pub total_tokens: u64,
    pub tokens_by_language: BTreeMap<String, u64>,
    pub documents_by_source: BTreeMap<String, u64>,
    pub shards: Vec<(String, usize)>,
    pub dedup_index_bytes: usize,
    pub tokenizer_vocab_size: usize,
}

/// A few short examples per removal rule, for the data card.
type Examples = BTreeMap<String, Vec<String>>;

fn checksum(path: &Path) -> Result<InputFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(InputFile { path: path.to_path_buf(), bytes: bytes.len() as u64, xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)) })
}

fn snippet(doc: &input::Doc) -> String {
    let head = match &doc.content {
        Content::Text(t) => t.chars().take(80).collect::<String>().replace('\n', " "),
        Content::Http(_) => String::new(),
    };
    match &doc.url {
        Some(u) if head.is_empty() => u.clone(),
        Some(u) => format!("{u}: {head}"),
        None => head,
    }
}

pub fn prepare(opts: &PrepareOptions, tok: &Tokenizer, mut progress: impl FnMut(&str)) -> Result<Manifest> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let mut files = input::expand(&opts.inputs)?;
    if let Some((i, n)) = opts.part {
        anyhow::ensure!(n > 0 && i < n, "--shard {i}/{n}: need 0 <= i < n");
        files = files.into_iter().enumerate().filter(|(k, _)| k % n == i).map(|(_, f)| f).collect();
    }
    let (bos, eos) = (tok.special().bos, tok.special().eos);
    let mut pipeline = Pipeline::new(opts.config.clone(), opts.blocklist.clone());
    let rejected_path = opts.out.join("rejected.jsonl.gz");
    let mut rejected = flate2::write::GzEncoder::new(std::io::BufWriter::new(std::fs::File::create(&rejected_path)?), flate2::Compression::default());
    let (mut errors, mut errors_total) = (Vec::new(), 0usize);
    let mut examples: Examples = BTreeMap::new();
    let mut buffer: Vec<u32> = Vec::new();
    let mut shards = Vec::new();
    let mut tokens_by_language: BTreeMap<String, u64> = BTreeMap::new();
    let mut documents_by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_tokens = 0u64;
    let mut inputs = Vec::new();
    let vocab = tok.vocab_size() as u32;
    let flush = |buffer: &mut Vec<u32>, shards: &mut Vec<(String, usize)>| -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        let name = format!("shard-{:05}.bin", shards.len());
        write_shard(&opts.out.join(&name), buffer, vocab)?;
        shards.push((name, buffer.len()));
        buffer.clear();
        Ok(())
    };
    for file in &files {
        inputs.push(checksum(file)?);
        progress(&format!("{} ({} bytes)", file.display(), inputs.last().map_or(0, |i| i.bytes)));
        for item in input::read_file(file) {
            let doc = match item {
                InputItem::Error(e) => {
                    errors_total += 1;
                    if errors.len() < 1000 {
                        errors.push(e);
                    }
                    continue;
                }
                InputItem::Doc(d) => d,
            };
            match pipeline.process(&doc) {
                Outcome::Rejected { stage, rule } => {
                    let line = serde_json::json!({"id": doc.id, "url": doc.url, "file": doc.file, "offset": doc.offset, "stage": stage, "rule": rule});
                    writeln!(rejected, "{line}")?;
                    let ex = examples.entry(format!("{stage}/{rule}")).or_default();
                    if ex.len() < 3 {
                        ex.push(snippet(&doc));
                    }
                }
                Outcome::Kept { text, lang } => {
                    let mut ids: Vec<u32> = bos.into_iter().collect();
                    ids.extend(tok.encode(&text)?);
                    ids.extend(eos);
                    total_tokens += ids.len() as u64;
                    *tokens_by_language.entry(lang.to_string()).or_default() += ids.len() as u64;
                    *documents_by_source.entry(file.display().to_string()).or_default() += 1;
                    buffer.extend(ids);
                    if buffer.len() >= opts.shard_tokens {
                        flush(&mut buffer, &mut shards)?;
                    }
                }
            }
        }
    }
    flush(&mut buffer, &mut shards)?;
    rejected.finish()?.flush()?;
    let manifest = Manifest {
        inputs,
        part: opts.part,
        config: opts.config.clone(),
        documents_kept: pipeline.counts.kept,
        counts: pipeline.counts.clone(),
        errors_total,
        errors,
        total_tokens,
        tokens_by_language,
        documents_by_source,
        shards,
        dedup_index_bytes: pipeline.dedup_index_bytes(),
        tokenizer_vocab_size: tok.vocab_size(),
    };
    lmlab_write(&opts.out.join("manifest.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    lmlab_write(&opts.out.join("data-card.md"), data_card(&manifest, &examples).as_bytes())?;
    Ok(manifest)
}

/// Atomic write: temporary file, then rename.
fn lmlab_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The human-readable summary: what went in, what came out, what was removed and why.
pub fn data_card(m: &Manifest, examples: &Examples) -> String {
    let mut s = String::from("# Data card\n\n");
    let in_bytes: u64 = m.inputs.iter().map(|i| i.bytes).sum();
    s += &format!("{} input files ({in_bytes} bytes), {} documents read, {} kept, {} tokens in {} shards.\n\n", m.inputs.len(), m.counts.documents, m.documents_kept, m.total_tokens, m.shards.len());
    s += "## Language mix (kept documents, tokens)\n\n| language | documents | tokens |\n| --- | ---: | ---: |\n";
    for (lang, docs) in &m.counts.kept_by_language {
        s += &format!("| {lang} | {docs} | {} |\n", m.tokens_by_language.get(lang).copied().unwrap_or(0));
    }
    s += "\n## Removed, by stage and rule\n\n| stage | rule | documents | examples |\n| --- | --- | ---: | --- |\n";
    for (stage, rules) in &m.counts.removed {
        for (rule, n) in rules {
            let ex = examples.get(&format!("{stage}/{rule}")).map(|e| e.iter().map(|x| format!("`{}`", x.replace('`', "'").replace('|', "/"))).collect::<Vec<_>>().join("; ")).unwrap_or_default();
            s += &format!("| {stage} | {rule} | {n} | {ex} |\n");
        }
    }
    let c4 = &m.counts.c4_lines;
    s += &format!(
        "\nC4 line filter: {} lines kept; removed {} with too few words, {} without terminal punctuation, {} mentioning JavaScript, {} policy lines, {} with an over-long word.\n",
        c4.kept, c4.too_few_words, c4.no_terminal_punct, c4.javascript, c4.policy, c4.too_long_word
    );
    s += &format!("\nPersonal data replaced: {} emails, {} IP addresses, {} phone numbers.\n", m.counts.pii.emails, m.counts.pii.ips, m.counts.pii.phones);
    s += &format!("\nInput errors: {} (see manifest.json for file and offset).\n", m.errors_total);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepares_shards_manifest_card_and_rejections_from_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let corpus: Vec<u8> = ["The river runs through the old town, and the people who live there have always loved it. Every spring the water rises. \
            The fishermen wait for the best days. Children play on the banks while parents talk. In the evening the lights shine on the water. \
            The town seems quieter than it is, and the people like it that way, with their gardens and the long walks by the river."; 1]
            .iter()
            .map(|t| format!("{{\"text\": {}, \"url\": \"https://town.example/a\"}}\n{{\"text\": {}}}\n{{\"text\": \"tiny\"}}\nnot json\n", serde_json::json!(t), serde_json::json!(t)))
            .collect::<String>()
            .into_bytes();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, corpus).unwrap();
        let text = dir.path().join("train.txt");
        std::fs::write(&text, "the river runs through the old town and the people ".repeat(50)).unwrap();
        let tok = lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions { files: vec![text], vocab_size: 300, min_frequency: 2, show_progress: false }).unwrap();
        let cfg = PipelineConfig { min_chars: 20, ..PipelineConfig::standard() };
        let opts = PrepareOptions { inputs: vec![input], out: dir.path().join("data"), config: cfg, blocklist: UrlBlocklist::default(), shard_tokens: 1 << 20, part: None };
        let m = prepare(&opts, &tok, |_| {}).unwrap();
        assert_eq!(m.counts.documents, 3);
        assert_eq!(m.documents_kept, 1);
        assert_eq!(m.errors_total, 1, "the line that is not JSON");
        assert_eq!(m.counts.removed["dedup"]["exact_duplicate"], 1);
        assert_eq!(m.counts.removed["extract"]["too_short"], 1);
        let shard = crate::shards::Shard::open(&dir.path().join("data").join(&m.shards[0].0)).unwrap();
        assert_eq!(shard.len() as u64, m.total_tokens);
        for f in ["manifest.json", "data-card.md", "rejected.jsonl.gz"] {
            assert!(dir.path().join("data").join(f).is_file(), "{f}");
        }
        let mut rejected = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("data/rejected.jsonl.gz")).unwrap()), &mut rejected).unwrap();
        assert_eq!(rejected.lines().count(), 2);
        let card = std::fs::read_to_string(dir.path().join("data/data-card.md")).unwrap();
        assert!(card.contains("| dedup | exact_duplicate | 1 |"), "{card}");
    }
}
