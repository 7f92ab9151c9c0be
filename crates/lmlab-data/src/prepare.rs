//! `lmlab data prepare`: inputs → [`Pipeline`] → tokens → shards, with `manifest.json` (inputs
//! with sizes and checksums, counts per stage and rule, errors with file and offset, tokens by
//! language and source), `rejected.jsonl.gz` (id, url, stage, rule of every removed document),
//! `kept.jsonl.gz` (where each kept document's tokens are, and its dedup keys, for `merge`) and
//! `data-card.md` for people.
//!
//! Threads: one reader streams documents in input order in batches; rayon runs the per-document
//! stages and the tokenizer on a batch; then dedup, counting and writing go through the batch in
//! input order. Memory is bounded by a few batches, one shard buffer and the dedup index, and
//! the output is byte-identical whatever the thread count. `--shard i/n` takes the i-th of n
//! contiguous runs of input files, so that merging the parts in order sees the crawl in the
//! same order as one run over everything.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context, Result};
use lmlab_tokenizer::Tokenizer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dedup::DedupKeys;
use crate::input::{self, Content, Doc, InputError, InputItem};
use crate::pipeline::{Candidate, Filtered, Pipeline, PipelineConfig, StageCounts};
use crate::shards::write_shard;
use crate::urlfilter::UrlBlocklist;

pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub config: PipelineConfig,
    pub blocklist: UrlBlocklist,
    /// Tokens per shard file.
    pub shard_tokens: usize,
    /// (i, n): process the i-th of n contiguous parts of the input files.
    pub part: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// xxh3-64 of the file's bytes, hex.
    pub xxh3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub inputs: Vec<InputFile>,
    pub part: Option<(usize, usize)>,
    /// The parts a `merge` combined, in order (empty for a single run).
    #[serde(default)]
    pub merged_from: Vec<PathBuf>,
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
    /// Up to three short examples per `stage/rule`, for the data card.
    pub removal_examples: Examples,
}

/// One line of `kept.jsonl.gz`: a kept document, where its tokens are, and its dedup keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeptDoc {
    pub id: String,
    pub url: Option<String>,
    pub file: PathBuf,
    pub offset: u64,
    pub lang: String,
    pub shard: usize,
    /// First token (BOS when the tokenizer has one) within the shard, and the token count.
    pub start: usize,
    pub tokens: usize,
    pub keys: DedupKeys,
    /// Personal data replaced in it (a merge that drops it takes these off the totals).
    pub pii: crate::pii::PiiCounts,
}

/// One line of `rejected.jsonl.gz`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RejectedDoc {
    pub id: String,
    pub url: Option<String>,
    pub file: PathBuf,
    pub offset: u64,
    pub stage: String,
    pub rule: String,
    /// For near duplicates: the hash of the normalised text, which `merge` remembers so that
    /// a later copy counts as an exact duplicate, as in a single run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_key: Option<u64>,
}

/// A few short examples per removal rule, for the data card.
pub type Examples = BTreeMap<String, Vec<String>>;

/// How far a run has got, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub documents: u64,
    pub kept: u64,
}

fn checksum(path: &Path) -> Result<InputFile> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(InputFile { path: path.to_path_buf(), bytes, xxh3: format!("{:016x}", hasher.digest()) })
}

fn snippet(doc: &Doc) -> String {
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

/// The i-th of n contiguous runs of `files` (sizes differ by at most one file).
pub fn part_of(files: Vec<PathBuf>, i: usize, n: usize) -> Result<Vec<PathBuf>> {
    anyhow::ensure!(n > 0 && i < n, "--shard {i}/{n}: need 0 <= i < n");
    let len = files.len();
    Ok(files.into_iter().skip(i * len / n).take((i + 1) * len / n - i * len / n).collect())
}

/// A document after the per-document stages, with its tokens when it passed them.
type FilteredTokens = (Filtered, Vec<u32>);

/// What the reader thread sends: documents and errors in input order, with where they came from.
enum Batch {
    File(InputFile),
    Items(Vec<InputItem>, u64),
}

const BATCH_DOCS: usize = 256;
const BATCH_BYTES: usize = 32 << 20;

/// Reads every file in order, sending checksums and batches of items; stops when the receiver
/// hangs up.
fn read_inputs(files: Vec<PathBuf>, tx: mpsc::SyncSender<Result<Batch>>) {
    for file in files {
        let info = match checksum(&file) {
            Ok(i) => i,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let size = info.bytes;
        if tx.send(Ok(Batch::File(info))).is_err() {
            return;
        }
        let (mut items, mut bytes, mut last_offset) = (Vec::new(), 0usize, 0u64);
        for item in input::read_file(&file) {
            if let InputItem::Doc(d) = &item {
                bytes += match &d.content {
                    Content::Http(b) => b.len(),
                    Content::Text(t) => t.len(),
                };
                last_offset = d.offset.min(size);
            }
            items.push(item);
            if items.len() >= BATCH_DOCS || bytes >= BATCH_BYTES {
                if tx.send(Ok(Batch::Items(std::mem::take(&mut items), last_offset))).is_err() {
                    return;
                }
                bytes = 0;
            }
        }
        if tx.send(Ok(Batch::Items(items, size))).is_err() {
            return;
        }
    }
}

/// Writes kept tokens into shards of about `shard_tokens`, documents never split.
pub struct ShardWriter {
    out: PathBuf,
    vocab: u32,
    shard_tokens: usize,
    buffer: Vec<u32>,
    pub shards: Vec<(String, usize)>,
}

impl ShardWriter {
    pub fn new(out: &Path, vocab: u32, shard_tokens: usize) -> Self {
        Self { out: out.to_path_buf(), vocab, shard_tokens, buffer: Vec::new(), shards: Vec::new() }
    }

    /// Appends one document; returns (shard index, start within it).
    pub fn push(&mut self, ids: &[u32]) -> Result<(usize, usize)> {
        let at = (self.shards.len(), self.buffer.len());
        self.buffer.extend_from_slice(ids);
        if self.buffer.len() >= self.shard_tokens {
            self.flush()?;
        }
        Ok(at)
    }

    pub fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let name = format!("shard-{:05}.bin", self.shards.len());
        write_shard(&self.out.join(&name), &self.buffer, self.vocab)?;
        self.shards.push((name, self.buffer.len()));
        self.buffer.clear();
        Ok(())
    }
}

/// The lines of a `.jsonl.gz` file as records of type T, with the file and line in errors.
pub fn read_gz_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<impl Iterator<Item = Result<T>>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let path = path.to_path_buf();
    Ok(std::io::BufRead::lines(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f))).enumerate().map(move |(i, line)| {
        let line = line.with_context(|| format!("{}: reading line {}", path.display(), i + 1))?;
        serde_json::from_str(&line).with_context(|| format!("{}: line {} is not a valid record", path.display(), i + 1))
    }))
}

pub fn gz_writer(path: &Path) -> Result<flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast()))
}

/// Removes an earlier run's manifest and shards from `out`: its shards would otherwise sit beside
/// this run's (a reader taking `shard-*.bin` would train on both), and its manifest would claim
/// the folder is finished before this run is.
pub fn clear_previous_run(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let _ = std::fs::remove_file(out.join("manifest.json"));
    for entry in std::fs::read_dir(out).with_context(|| format!("listing {}", out.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("shard-") && (name.ends_with(".bin") || name.ends_with(".bin.tmp")) {
            std::fs::remove_file(&path).with_context(|| format!("removing the earlier run's {}", path.display()))?;
        }
    }
    Ok(())
}

/// The per-document stages and the tokenizer on all cores: for each item, its filter result
/// and (when kept so far) its tokens between BOS and EOS; errors have no result. Pure: the
/// output depends only on the items, never on the thread count.
fn filter_and_tokenize(items: &[InputItem], filters: &crate::pipeline::Filters, tok: &Tokenizer) -> Vec<Option<Result<FilteredTokens>>> {
    let (bos, eos) = (tok.special().bos, tok.special().eos);
    items
        .par_iter()
        .map(|item| match item {
            InputItem::Error(_) => None,
            InputItem::Doc(doc) => Some((|| {
                let f = filters.run(doc);
                let ids = match &f.verdict {
                    Ok(c) => {
                        let mut ids: Vec<u32> = bos.into_iter().collect();
                        ids.extend(tok.encode(&c.text)?);
                        ids.extend(eos);
                        ids
                    }
                    Err(_) => Vec::new(),
                };
                Ok((f, ids))
            })()),
        })
        .collect()
}

type GzFile = flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>;

/// The sequential side of a run: everything written or counted in input order (rejections,
/// kept documents and their shard spans, read errors, removal examples, token counts).
struct Sink {
    rejected: GzFile,
    kept: GzFile,
    errors: Vec<InputError>,
    errors_total: usize,
    examples: Examples,
    writer: ShardWriter,
    tokens_by_language: BTreeMap<String, u64>,
    documents_by_source: BTreeMap<String, u64>,
    total_tokens: u64,
}

impl Sink {
    fn new(out: &Path, vocab_size: u32, shard_tokens: usize) -> Result<Self> {
        Ok(Self {
            rejected: gz_writer(&out.join("rejected.jsonl.gz"))?,
            kept: gz_writer(&out.join("kept.jsonl.gz"))?,
            errors: Vec::new(),
            errors_total: 0,
            examples: BTreeMap::new(),
            writer: ShardWriter::new(out, vocab_size, shard_tokens),
            tokens_by_language: BTreeMap::new(),
            documents_by_source: BTreeMap::new(),
            total_tokens: 0,
        })
    }

    /// A read error: counted, and the first thousand kept for the manifest.
    fn error(&mut self, e: InputError) {
        self.errors_total += 1;
        if self.errors.len() < 1000 {
            self.errors.push(e);
        }
    }

    /// A document the pipeline rejected (dedup keys kept for near duplicates, so a merge can
    /// remove their copies in other parts).
    fn reject(&mut self, doc: &Doc, outcome: crate::pipeline::Outcome, keys: Option<DedupKeys>) -> Result<()> {
        let crate::pipeline::Outcome::Rejected { stage, rule } = outcome else { unreachable!("commit rejects") };
        let exact_key = keys.filter(|_| rule == "near_duplicate").map(|k| k.exact);
        let line = RejectedDoc {
            id: doc.id.clone(),
            url: doc.url.clone(),
            file: doc.file.clone(),
            offset: doc.offset,
            stage: stage.into(),
            rule: rule.clone(),
            exact_key,
        };
        writeln!(self.rejected, "{}", serde_json::to_string(&line)?)?;
        let ex = self.examples.entry(format!("{stage}/{rule}")).or_default();
        if ex.len() < 3 {
            ex.push(snippet(doc));
        }
        Ok(())
    }

    /// A kept document: its tokens into the shards, its record into kept.jsonl.gz.
    fn keep(&mut self, doc: Doc, candidate: Candidate, ids: &[u32]) -> Result<()> {
        let Candidate { lang, keys, pii, .. } = candidate;
        let (shard, start) = self.writer.push(ids)?;
        self.total_tokens += ids.len() as u64;
        *self.tokens_by_language.entry(lang.to_string()).or_default() += ids.len() as u64;
        *self.documents_by_source.entry(doc.file.display().to_string()).or_default() += 1;
        let line = KeptDoc {
            id: doc.id,
            url: doc.url,
            file: doc.file,
            offset: doc.offset,
            lang: lang.into(),
            shard,
            start,
            tokens: ids.len(),
            keys,
            pii,
        };
        writeln!(self.kept, "{}", serde_json::to_string(&line)?)?;
        Ok(())
    }

    /// Flushes everything and builds the run's manifest.
    fn finish(mut self, opts: &PrepareOptions, pipeline: &Pipeline, inputs: Vec<InputFile>, vocab_size: usize) -> Result<Manifest> {
        self.writer.flush()?;
        self.rejected.finish()?.flush()?;
        self.kept.finish()?.flush()?;
        Ok(Manifest {
            inputs,
            part: opts.part,
            merged_from: Vec::new(),
            config: opts.config.clone(),
            documents_kept: pipeline.counts.kept,
            counts: pipeline.counts.clone(),
            errors_total: self.errors_total,
            errors: self.errors,
            total_tokens: self.total_tokens,
            tokens_by_language: self.tokens_by_language,
            documents_by_source: self.documents_by_source,
            shards: self.writer.shards,
            dedup_index_bytes: pipeline.dedup_index_bytes(),
            tokenizer_vocab_size: vocab_size,
            removal_examples: self.examples,
        })
    }
}

pub fn prepare(opts: &PrepareOptions, tok: &Tokenizer, progress: impl Fn(&Progress)) -> Result<Manifest> {
    // 1. The inputs (this part's share of them), and a reader thread that parses them in order.
    clear_previous_run(&opts.out)?;
    let mut files = input::expand(&opts.inputs)?;
    if let Some((i, n)) = opts.part {
        files = part_of(files, i, n)?;
    }
    let mut prog = Progress { bytes_total: files.iter().map(|f| f.metadata().map_or(0, |m| m.len())).sum(), ..Default::default() };
    let mut pipeline = Pipeline::new(opts.config.clone(), opts.blocklist.clone())?;
    let mut sink = Sink::new(&opts.out, tok.vocab_size() as u32, opts.shard_tokens)?;
    let mut inputs = Vec::new();
    let (tx, rx) = mpsc::sync_channel(2);
    let reader = std::thread::spawn(move || read_inputs(files, tx));
    let mut done_before_file = 0u64;
    for batch in rx {
        let (items, file_offset) = match batch? {
            Batch::File(info) => {
                done_before_file = prog.bytes_done;
                inputs.push(info);
                continue;
            }
            Batch::Items(items, off) => (items, off),
        };
        // 2. The per-document stages on all cores; 3. dedup, counts and writes in input order.
        let results = filter_and_tokenize(&items, pipeline.filters(), tok);
        for (item, result) in items.into_iter().zip(results) {
            let doc = match item {
                InputItem::Error(e) => {
                    sink.error(e);
                    continue;
                }
                InputItem::Doc(d) => d,
            };
            let (filtered, ids) = result.expect("a document has a result")?;
            match pipeline.commit(filtered) {
                Err((outcome, keys)) => sink.reject(&doc, outcome, keys)?,
                Ok(candidate) => sink.keep(doc, candidate, &ids)?,
            }
        }
        prog.bytes_done = done_before_file + file_offset;
        prog.documents = pipeline.counts.documents;
        prog.kept = pipeline.counts.kept;
        progress(&prog);
    }
    reader.join().map_err(|_| anyhow::anyhow!("the input reader thread panicked"))?;
    // 4. Shards flushed, then the data card and the manifest (last: it marks a finished run).
    let manifest = sink.finish(opts, &pipeline, inputs, tok.vocab_size())?;
    write_outputs(&opts.out, &manifest)?;
    Ok(manifest)
}

/// The data card, then the manifest: a folder with a manifest is a finished run.
pub fn write_outputs(out: &Path, manifest: &Manifest) -> Result<()> {
    lmlab_write(&out.join("data-card.md"), data_card(manifest).as_bytes())?;
    lmlab_write(&out.join("manifest.json"), serde_json::to_string_pretty(manifest)?.as_bytes())
}

/// Atomic write: temporary file, then rename.
fn lmlab_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The human-readable summary: what went in, what came out, what was removed and why.
pub fn data_card(m: &Manifest) -> String {
    let examples = &m.removal_examples;
    let mut s = String::from("# Data card\n\n");
    let in_bytes: u64 = m.inputs.iter().map(|i| i.bytes).sum();
    s += &format!(
        "{} input files ({in_bytes} bytes), {} documents read, {} kept, {} tokens in {} shards.\n\n",
        m.inputs.len(),
        m.counts.documents,
        m.documents_kept,
        m.total_tokens,
        m.shards.len()
    );
    s += "## Language mix (kept documents, tokens)\n\n";
    let language = &m.config.language;
    s += &format!("Identified by {}. Kept: {:?} at confidence ≥ {}.\n\n", language.describe(), language.keep, language.min_confidence);
    s += "| language | documents | tokens |\n| --- | ---: | ---: |\n";
    for (lang, docs) in &m.counts.kept_by_language {
        s += &format!("| {lang} | {docs} | {} |\n", m.tokens_by_language.get(lang).copied().unwrap_or(0));
    }
    s += "\n## Removed, by stage and rule\n\n| stage | rule | documents | examples |\n| --- | --- | ---: | --- |\n";
    for (stage, rules) in &m.counts.removed {
        for (rule, n) in rules {
            let ex = examples
                .get(&format!("{stage}/{rule}"))
                .map(|e| e.iter().map(|x| format!("`{}`", x.replace('`', "'").replace('|', "/"))).collect::<Vec<_>>().join("; "))
                .unwrap_or_default();
            s += &format!("| {stage} | {rule} | {n} | {ex} |\n");
        }
    }
    let c4 = &m.counts.c4_lines;
    s += &format!(
        "\nC4 line filter: {} lines kept; removed {} with too few words, {} without terminal punctuation, {} mentioning JavaScript, {} policy lines, {} with an over-long word.\n",
        c4.kept, c4.too_few_words, c4.no_terminal_punct, c4.javascript, c4.policy, c4.too_long_word
    );
    s += &format!(
        "\nPersonal data replaced: {} emails, {} IP addresses, {} phone numbers.\n",
        m.counts.pii.emails, m.counts.pii.ips, m.counts.pii.phones
    );
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
        let tok = lmlab_tokenizer::train(&lmlab_tokenizer::TrainOptions {
            files: vec![text],
            vocab_size: 300,
            min_frequency: 2,
            show_progress: false,
        })
        .unwrap();
        let cfg = PipelineConfig { min_chars: 20, ..PipelineConfig::standard() };
        let opts = PrepareOptions {
            inputs: vec![input],
            out: dir.path().join("data"),
            config: cfg,
            blocklist: UrlBlocklist::default(),
            shard_tokens: 1 << 20,
            part: None,
        };
        // An earlier run's shard in the folder goes (it would otherwise be read as data).
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/shard-00007.bin"), b"stale").unwrap();
        let m = prepare(&opts, &tok, |_: &Progress| {}).unwrap();
        assert_eq!(m.counts.documents, 3);
        assert_eq!(m.documents_kept, 1);
        assert_eq!(m.errors_total, 1, "the line that is not JSON");
        assert_eq!(m.counts.removed["dedup"]["exact_duplicate"], 1);
        assert_eq!(m.counts.removed["extract"]["too_short"], 1);
        let shard = crate::shards::Shard::open(&dir.path().join("data").join(&m.shards[0].0)).unwrap();
        assert_eq!(shard.len() as u64, m.total_tokens);
        assert!(!dir.path().join("data/shard-00007.bin").exists());
        for f in ["manifest.json", "data-card.md", "rejected.jsonl.gz"] {
            assert!(dir.path().join("data").join(f).is_file(), "{f}");
        }
        let mut rejected = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("data/rejected.jsonl.gz")).unwrap()),
            &mut rejected,
        )
        .unwrap();
        assert_eq!(rejected.lines().count(), 2);
        let card = std::fs::read_to_string(dir.path().join("data/data-card.md")).unwrap();
        assert!(card.contains("| dedup | exact_duplicate | 1 |"), "{card}");
    }
}
