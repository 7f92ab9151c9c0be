//! fastText inference for supervised classifiers, read from the files fastText writes: the
//! dense `.bin` and the product-quantized `.ftz` (such as `lid.176.ftz`, the language
//! identifier datatrove and FineWeb use). Prediction follows fastText's own steps, so labels and
//! probabilities agree with the Python package (`tests/fasttext_lid.rs` checks that):
//!
//! 1. the line is split into tokens at ASCII whitespace and ends with the end-of-sentence token
//!    `</s>`;
//! 2. each token contributes its own row (when it is in the dictionary) and the rows of its
//!    character n-grams (`<word>` with `minn..=maxn` UTF-8 characters, hashed into `bucket`
//!    rows), and word n-grams add rows for hashed runs of consecutive tokens;
//! 3. the hidden vector is the mean of those rows;
//! 4. the output layer scores the labels: a hierarchical softmax searched depth first with
//!    pruning (`lid.176`'s), a full softmax, or independent sigmoids (one-vs-all or negative
//!    sampling).
//!
//! Training, quantizing and word vectors are not here: lmlab only reads published models.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rustc_hash::FxHashMap;

/// The first four bytes of every fastText model file.
const MAGIC: i32 = 793_712_314;
const END_OF_SENTENCE: &[u8] = b"</s>";
const LABEL_PREFIX: &[u8] = b"__label__";
/// Centroids per sub-quantizer (fastText quantizes with 8 bits per code).
const CENTROIDS: usize = 256;

/// One label and its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction<'a> {
    /// The label without fastText's `__label__` prefix, e.g. "en", "zh", "yue".
    pub label: &'a str,
    /// Its position in [`FastText::labels`].
    pub index: usize,
    pub probability: f32,
}

/// A supervised fastText model, ready to predict.
pub struct FastText {
    dim: usize,
    word_ngrams: usize,
    bucket: u64,
    minn: usize,
    maxn: usize,
    dict: Dictionary,
    input: Matrix,
    output: Matrix,
    head: Head,
    /// Labels without the prefix, in the order of the output rows.
    labels: Vec<String>,
}

impl FastText {
    /// Reads a `.bin` or `.ftz` file; an error names the file and the field it could not read.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading fastText model {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("{}: not a readable fastText model", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.i32("magic number")?;
        if magic != MAGIC {
            bail!("magic number {magic} is not fastText's {MAGIC}");
        }
        let version = r.i32("format version")?;
        if !(11..=12).contains(&version) {
            bail!("format version {version}; versions 11 and 12 are read");
        }
        let args = Args::read(&mut r)?;
        if args.model != 3 {
            bail!("model type {} is not a supervised classifier (3); word-vector models have no labels", args.model);
        }
        let dict = Dictionary::read(&mut r)?;
        let quantized_input = r.bool("input quantization flag")?;
        let input = Matrix::read(&mut r, quantized_input, "input matrix")?;
        let quantized_output = r.bool("output quantization flag")?;
        let output = Matrix::read(&mut r, quantized_output, "output matrix")?;
        if r.pos != bytes.len() {
            bail!("{} bytes after the output matrix; the file is not one model", bytes.len() - r.pos);
        }
        // fastText before version 12 used no character n-grams in supervised models.
        let maxn = if version == 11 { 0 } else { args.maxn };
        let labels = dict.labels();
        if labels.is_empty() {
            bail!("the dictionary has no labels: not a classifier");
        }
        let (rows_in, cols_in) = input.shape();
        let (rows_out, cols_out) = output.shape();
        if cols_in != args.dim || cols_out != args.dim {
            bail!("matrix widths {cols_in} and {cols_out} differ from the dimension {}", args.dim);
        }
        let expected_rows = dict.nwords + dict.ngram_rows(args.bucket);
        if rows_in != expected_rows {
            bail!("input matrix has {rows_in} rows; the dictionary needs {expected_rows}");
        }
        let head = match args.loss {
            1 => Head::Hierarchical(HuffmanTree::build(&dict.label_counts())),
            3 => Head::Softmax,
            2 | 4 => Head::Sigmoid,
            other => bail!("loss {other} is not one of hs (1), ns (2), softmax (3), ova (4)"),
        };
        // The hierarchical softmax uses one row per inner node (labels - 1); fastText still
        // allocates one per label.
        if rows_out != labels.len() {
            bail!("output matrix has {rows_out} rows for {} labels", labels.len());
        }
        Ok(Self {
            dim: args.dim,
            word_ngrams: args.word_ngrams,
            bucket: args.bucket as u64,
            minn: args.minn,
            maxn,
            dict,
            input,
            output,
            head,
            labels,
        })
    }

    /// The labels, without prefix, in the model's order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The `k` most likely labels of one line of text with probability at least `threshold`,
    /// most likely first. As in fastText, the text ends at its first newline.
    pub fn predict(&self, text: &str, k: usize, threshold: f32) -> Vec<Prediction<'_>> {
        self.predict_tokens(tokens(first_line(text.as_bytes())), k, threshold)
    }

    /// [`FastText::predict`] of a whole document, its newlines read as spaces (as datatrove
    /// hands documents to fastText), without copying it.
    pub fn predict_text(&self, text: &str, k: usize, threshold: f32) -> Vec<Prediction<'_>> {
        self.predict_tokens(tokens(text.as_bytes()), k, threshold)
    }

    fn predict_tokens<'t>(&self, tokens: impl Iterator<Item = &'t [u8]>, k: usize, threshold: f32) -> Vec<Prediction<'_>> {
        let rows = self.input_rows(tokens);
        if rows.is_empty() || k == 0 {
            return Vec::new();
        }
        let hidden = self.hidden(&rows);
        let mut best = TopK::new(k);
        match &self.head {
            Head::Hierarchical(tree) => tree.search(&self.output, &hidden, threshold, &mut best),
            Head::Softmax => {
                let scores: Vec<f32> = (0..self.labels.len()).map(|i| self.output.dot_row(&hidden, i)).collect();
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f32 = exps.iter().sum();
                best.offer_all(exps.iter().map(|e| e / z), threshold);
            }
            Head::Sigmoid => {
                let probs = (0..self.labels.len()).map(|i| sigmoid(self.output.dot_row(&hidden, i)));
                best.offer_all(probs, threshold);
            }
        }
        best.into_sorted()
            .into_iter()
            .map(|(score, index)| Prediction { label: &self.labels[index], index, probability: score.exp() })
            .collect()
    }

    /// The input rows a line contributes (fastText's `getLine` with `addSubwords` and
    /// `addWordNgrams`).
    fn input_rows<'t>(&self, tokens: impl Iterator<Item = &'t [u8]>) -> Vec<usize> {
        let mut rows = Vec::new();
        let mut word_hashes: Vec<i32> = Vec::new();
        for token in tokens {
            let word = self.dict.index.get(token).copied();
            if word.is_some_and(|w| w >= self.dict.nwords) || (word.is_none() && token.starts_with(LABEL_PREFIX)) {
                continue; // a label, not a word
            }
            match word {
                Some(w) => {
                    rows.push(w);
                    if token != END_OF_SENTENCE {
                        self.char_ngrams(token, &mut rows);
                    }
                }
                None if token != END_OF_SENTENCE => self.char_ngrams(token, &mut rows),
                None => {}
            }
            // The hash is kept as fastText's int32 and widened with its sign below.
            word_hashes.push(fnv1a(token) as i32);
        }
        for i in 0..word_hashes.len() {
            let mut h = word_hashes[i] as i64 as u64;
            for &next in word_hashes.iter().take((i + self.word_ngrams).min(word_hashes.len())).skip(i + 1) {
                h = h.wrapping_mul(116_049_371).wrapping_add(next as i64 as u64);
                self.push_bucket(h % self.bucket, &mut rows);
            }
        }
        rows
    }

    /// Rows of the character n-grams of `<token>`.
    fn char_ngrams(&self, token: &[u8], rows: &mut Vec<usize>) {
        let mut word = Vec::with_capacity(token.len() + 2);
        word.push(b'<');
        word.extend_from_slice(token);
        word.push(b'>');
        for_each_char_ngram(&word, self.minn, self.maxn, |gram| self.push_bucket(u64::from(fnv1a(gram)) % self.bucket, rows));
    }

    /// A hashed n-gram's row: after the words, through the pruning map of a quantized model.
    fn push_bucket(&self, bucket: u64, rows: &mut Vec<usize>) {
        match &self.dict.pruned {
            None => rows.push(self.dict.nwords + bucket as usize),
            Some(kept) => {
                if let Some(&row) = kept.get(&(bucket as i32)) {
                    rows.push(self.dict.nwords + row);
                }
            }
        }
    }

    /// The mean of the input rows, accumulated in f32 in input order as fastText does.
    fn hidden(&self, rows: &[usize]) -> Vec<f32> {
        let mut hidden = vec![0f32; self.dim];
        for &row in rows {
            self.input.add_row(&mut hidden, row);
        }
        let scale = (1.0 / rows.len() as f64) as f32;
        hidden.iter_mut().for_each(|h| *h *= scale);
        hidden
    }
}

/// Calls `f` with each n-gram of `word` (already `<token>`) of `minn..=maxn` UTF-8 characters,
/// in fastText's order (by start, then length); the single characters `<` and `>` are left out.
fn for_each_char_ngram<'w>(word: &'w [u8], minn: usize, maxn: usize, mut f: impl FnMut(&'w [u8])) {
    let continuation = |b: u8| b & 0xC0 == 0x80;
    for start in 0..word.len() {
        if continuation(word[start]) {
            continue;
        }
        let mut end = start;
        for n in 1..=maxn {
            if end >= word.len() {
                break;
            }
            end += 1;
            while end < word.len() && continuation(word[end]) {
                end += 1;
            }
            if n >= minn && !(n == 1 && (start == 0 || end == word.len())) {
                f(&word[start..end]);
            }
        }
    }
}

/// fastText's 32-bit FNV-1a, with each byte sign-extended first (its `int8_t` cast).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(2_166_136_261u32, |h, &b| (h ^ (b as i8 as i32 as u32)).wrapping_mul(16_777_619))
}

/// The text before the first newline: all of it that fastText's `getLine` reads.
fn first_line(text: &[u8]) -> &[u8] {
    text.split(|&b| b == b'\n').next().unwrap_or_default()
}

/// The tokens of `text` as fastText's `readWord` splits them (a newline counts as a space),
/// ending with `</s>`.
fn tokens(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0B | 0x0C | 0))
        .filter(|t| !t.is_empty())
        .chain(std::iter::once(END_OF_SENTENCE))
}

/// fastText's log with its guard against log(0).
fn guarded_log(x: f32) -> f32 {
    (f64::from(x) + 1e-5).ln() as f32
}

/// fastText's table sigmoid (512 steps over [-8, 8]), used by its one-vs-all and
/// negative-sampling heads.
fn sigmoid(x: f32) -> f32 {
    const MAX: f32 = 8.0;
    const STEPS: f32 = 512.0;
    if x < -MAX {
        0.0
    } else if x > MAX {
        1.0
    } else {
        let i = ((x + MAX) * STEPS / MAX / 2.0) as i64;
        let t = (i as f32 * 2.0 * MAX) / STEPS - MAX;
        (1.0 / (1.0 + f64::from((-t).exp()))) as f32
    }
}

enum Head {
    Hierarchical(HuffmanTree),
    Softmax,
    Sigmoid,
}

/// The best `k` (log-probability, label) pairs seen so far.
struct TopK {
    k: usize,
    items: Vec<(f32, usize)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self { k, items: Vec::with_capacity(k + 1) }
    }

    fn full(&self) -> bool {
        self.items.len() == self.k
    }

    fn worst(&self) -> f32 {
        self.items.iter().map(|i| i.0).fold(f32::INFINITY, f32::min)
    }

    fn push(&mut self, score: f32, label: usize) {
        self.items.push((score, label));
        if self.items.len() > self.k {
            let worst = (0..self.items.len()).min_by(|&a, &b| self.items[a].0.total_cmp(&self.items[b].0)).unwrap_or(0);
            self.items.swap_remove(worst);
        }
    }

    /// Offers every label's probability (softmax and sigmoid heads: fastText's `findKBest`).
    fn offer_all(&mut self, probs: impl Iterator<Item = f32>, threshold: f32) {
        for (label, p) in probs.enumerate() {
            if p < threshold || (self.full() && guarded_log(p) < self.worst()) {
                continue;
            }
            self.push(guarded_log(p), label);
        }
    }

    fn into_sorted(mut self) -> Vec<(f32, usize)> {
        self.items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        self.items
    }
}

/// The hierarchical softmax's tree: fastText's Huffman coding of the labels by their counts.
/// Leaves are labels `0..n`; inner node `n + i` owns output row `i`.
struct HuffmanTree {
    labels: usize,
    /// (left, right) children of the inner nodes, indexed by `node - labels`.
    children: Vec<(usize, usize)>,
}

impl HuffmanTree {
    /// fastText's `buildTree`: labels come sorted by count, most frequent first, so the two
    /// least frequent are always at the end of the leaves or the start of the new nodes.
    fn build(counts: &[i64]) -> Self {
        let n = counts.len();
        let mut count: Vec<i64> = counts.to_vec();
        count.resize(2 * n.max(1) - 1, 1_000_000_000_000_000);
        let mut children = Vec::with_capacity(n.saturating_sub(1));
        let mut leaf = n as isize - 1;
        let mut node = n;
        for i in n..2 * n - 1 {
            let mut pick = [0usize; 2];
            for p in &mut pick {
                if leaf >= 0 && count[leaf as usize] < count[node] {
                    *p = leaf as usize;
                    leaf -= 1;
                } else {
                    *p = node;
                    node += 1;
                }
            }
            children.push((pick[0], pick[1]));
            count[i] = count[pick[0]] + count[pick[1]];
        }
        Self { labels: n, children }
    }

    /// Depth-first search from the root, pruned by the threshold and by the k-th best score.
    fn search(&self, output: &Matrix, hidden: &[f32], threshold: f32, best: &mut TopK) {
        if self.labels == 0 {
            return;
        }
        let floor = guarded_log(threshold);
        self.visit(2 * self.labels - 2, 0.0, floor, output, hidden, best);
    }

    fn visit(&self, node: usize, score: f32, floor: f32, output: &Matrix, hidden: &[f32], best: &mut TopK) {
        if score < floor || (best.full() && score < best.worst()) {
            return;
        }
        if node < self.labels {
            best.push(score, node);
            return;
        }
        let f = output.dot_row(hidden, node - self.labels);
        let p = (1.0 / (1.0 + f64::from((-f).exp()))) as f32;
        let (left, right) = self.children[node - self.labels];
        self.visit(left, score + guarded_log(1.0 - p), floor, output, hidden, best);
        self.visit(right, score + guarded_log(p), floor, output, hidden, best);
    }
}

struct Args {
    dim: usize,
    word_ngrams: usize,
    loss: i32,
    model: i32,
    bucket: usize,
    minn: usize,
    maxn: usize,
}

impl Args {
    fn read(r: &mut Reader) -> Result<Self> {
        let dim = r.count("args.dim")?;
        for field in ["args.ws", "args.epoch", "args.minCount", "args.neg"] {
            r.i32(field)?;
        }
        let word_ngrams = r.count("args.wordNgrams")?;
        let loss = r.i32("args.loss")?;
        let model = r.i32("args.model")?;
        let bucket = r.count("args.bucket")?;
        let minn = r.count("args.minn")?;
        let maxn = r.count("args.maxn")?;
        r.i32("args.lrUpdateRate")?;
        r.take(8, "args.t")?;
        if bucket == 0 && (maxn > 0 || word_ngrams > 1) {
            bail!("args.bucket is 0 but the model uses n-grams");
        }
        Ok(Self { dim, word_ngrams, loss, model, bucket, minn, maxn })
    }
}

struct Dictionary {
    nwords: usize,
    /// Every entry (words, then labels) by its bytes.
    index: FxHashMap<Box<[u8]>, usize>,
    entries: Vec<(Box<[u8]>, i64)>,
    /// For a pruned (quantized) model: n-gram bucket → its row among the kept ones.
    pruned: Option<FxHashMap<i32, usize>>,
}

impl Dictionary {
    fn read(r: &mut Reader) -> Result<Self> {
        let size = r.count("dictionary size")?;
        let nwords = r.count("dictionary word count")?;
        let nlabels = r.count("dictionary label count")?;
        if nwords + nlabels != size {
            bail!("dictionary of {size} entries holds {nwords} words and {nlabels} labels");
        }
        r.i64("dictionary token count")?;
        let prune_size = r.i64("dictionary pruning size")?;
        // Every entry takes at least 10 bytes: a size beyond the file cannot be real.
        let mut entries: Vec<(Box<[u8]>, i64)> = Vec::with_capacity(size.min(r.remaining() / 10));
        for i in 0..size {
            let word = r.c_string(&format!("dictionary entry {i}"))?;
            let count = r.i64(&format!("dictionary entry {i}'s count"))?;
            let kind = r.u8(&format!("dictionary entry {i}'s type"))?;
            if kind != u8::from(i >= nwords) {
                bail!("dictionary entry {i} has type {kind}; words (0) come before labels (1)");
            }
            entries.push((word.into(), count));
        }
        let pruned = if prune_size >= 0 {
            let mut kept = FxHashMap::default();
            for i in 0..prune_size {
                let bucket = r.i32(&format!("pruning entry {i}'s bucket"))?;
                let row = r.i32(&format!("pruning entry {i}'s row"))?;
                kept.insert(bucket, usize::try_from(row).with_context(|| format!("pruning entry {i}: row {row}"))?);
            }
            Some(kept)
        } else {
            None
        };
        let index = entries.iter().enumerate().map(|(i, (w, _))| (w.clone(), i)).collect();
        Ok(Self { nwords, index, entries, pruned })
    }

    fn labels(&self) -> Vec<String> {
        self.entries[self.nwords..]
            .iter()
            .map(|(w, _)| {
                let name = w.strip_prefix(LABEL_PREFIX).unwrap_or(w);
                String::from_utf8_lossy(name).into_owned()
            })
            .collect()
    }

    fn label_counts(&self) -> Vec<i64> {
        self.entries[self.nwords..].iter().map(|e| e.1).collect()
    }

    /// Rows the input matrix holds for hashed n-grams.
    fn ngram_rows(&self, bucket: usize) -> usize {
        self.pruned.as_ref().map_or(bucket, FxHashMap::len)
    }
}

/// An embedding or output matrix: plain f32 rows, or product-quantized codes.
enum Matrix {
    Dense { cols: usize, data: Vec<f32> },
    Quantized(QuantMatrix),
}

struct QuantMatrix {
    rows: usize,
    cols: usize,
    codes: Vec<u8>,
    pq: ProductQuantizer,
    /// Quantized row norms (fastText's `-qnorm`): a one-dimensional quantizer and a code per row.
    norms: Option<(Vec<u8>, ProductQuantizer)>,
}

impl Matrix {
    fn read(r: &mut Reader, quantized: bool, what: &str) -> Result<Self> {
        if !quantized {
            let rows = r.count64(&format!("{what} rows"))?;
            let cols = r.count64(&format!("{what} columns"))?;
            let n = rows.checked_mul(cols).with_context(|| format!("{what}: {rows} x {cols} values overflow"))?;
            let data = r.f32s(n, &format!("{what} values"))?;
            return Ok(Matrix::Dense { cols, data });
        }
        let has_norms = r.bool(&format!("{what} norm flag"))?;
        let rows = r.count64(&format!("{what} rows"))?;
        let cols = r.count64(&format!("{what} columns"))?;
        let code_len = r.count(&format!("{what} code size"))?;
        let codes = r.take(code_len, &format!("{what} codes"))?.to_vec();
        let pq = ProductQuantizer::read(r, &format!("{what} quantizer"))?;
        if pq.dim != cols || Some(code_len) != rows.checked_mul(pq.subquantizers) {
            bail!(
                "{what}: {code_len} codes for {rows} rows of {} sub-quantizers over {} columns (matrix has {cols})",
                pq.subquantizers,
                pq.dim
            );
        }
        let norms = if has_norms {
            let norm_codes = r.take(rows, &format!("{what} norm codes"))?.to_vec();
            Some((norm_codes, ProductQuantizer::read(r, &format!("{what} norm quantizer"))?))
        } else {
            None
        };
        Ok(Matrix::Quantized(QuantMatrix { rows, cols, codes, pq, norms }))
    }

    fn shape(&self) -> (usize, usize) {
        match self {
            Matrix::Dense { cols, data } => (data.len().checked_div(*cols).unwrap_or(0), *cols),
            Matrix::Quantized(q) => (q.rows, q.cols),
        }
    }

    fn add_row(&self, x: &mut [f32], row: usize) {
        match self {
            Matrix::Dense { cols, data } => {
                x.iter_mut().zip(&data[row * cols..(row + 1) * cols]).for_each(|(x, w)| *x += w);
            }
            Matrix::Quantized(q) => q.pq.add_code(x, q.code(row), q.norm(row)),
        }
    }

    fn dot_row(&self, x: &[f32], row: usize) -> f32 {
        match self {
            Matrix::Dense { cols, data } => data[row * cols..(row + 1) * cols].iter().zip(x).fold(0.0, |s, (w, x)| s + w * x),
            Matrix::Quantized(q) => q.pq.dot_code(x, q.code(row)) * q.norm(row),
        }
    }
}

impl QuantMatrix {
    fn code(&self, row: usize) -> &[u8] {
        let n = self.pq.subquantizers;
        &self.codes[row * n..(row + 1) * n]
    }

    fn norm(&self, row: usize) -> f32 {
        self.norms.as_ref().map_or(1.0, |(codes, npq)| npq.centroid(0, codes[row])[0])
    }
}

/// Product quantization: the row is cut into sub-vectors of `sub_dim` columns (the last one
/// `last_sub_dim`), each replaced by one of 256 centroids.
struct ProductQuantizer {
    dim: usize,
    subquantizers: usize,
    sub_dim: usize,
    last_sub_dim: usize,
    centroids: Vec<f32>,
}

impl ProductQuantizer {
    fn read(r: &mut Reader, what: &str) -> Result<Self> {
        let dim = r.count(&format!("{what} dimension"))?;
        let subquantizers = r.count(&format!("{what} sub-quantizer count"))?;
        let sub_dim = r.count(&format!("{what} sub-dimension"))?;
        let last_sub_dim = r.count(&format!("{what} last sub-dimension"))?;
        if subquantizers == 0 || (subquantizers - 1) * sub_dim + last_sub_dim != dim {
            bail!("{what}: {subquantizers} sub-quantizers of {sub_dim} (last {last_sub_dim}) do not cover {dim} columns");
        }
        let centroids = r.f32s(dim * CENTROIDS, &format!("{what} centroids"))?;
        Ok(Self { dim, subquantizers, sub_dim, last_sub_dim, centroids })
    }

    /// Centroid `code` of sub-quantizer `m` (the last one's centroids are laid out narrower).
    fn centroid(&self, m: usize, code: u8) -> &[f32] {
        let code = usize::from(code);
        if m == self.subquantizers - 1 {
            let start = m * CENTROIDS * self.sub_dim + code * self.last_sub_dim;
            &self.centroids[start..start + self.last_sub_dim]
        } else {
            let start = (m * CENTROIDS + code) * self.sub_dim;
            &self.centroids[start..start + self.sub_dim]
        }
    }

    fn add_code(&self, x: &mut [f32], code: &[u8], scale: f32) {
        for (m, &c) in code.iter().enumerate() {
            let part = &mut x[m * self.sub_dim..];
            part.iter_mut().zip(self.centroid(m, c)).for_each(|(x, c)| *x += scale * c);
        }
    }

    fn dot_code(&self, x: &[f32], code: &[u8]) -> f32 {
        let mut sum = 0f32;
        for (m, &c) in code.iter().enumerate() {
            sum = x[m * self.sub_dim..].iter().zip(self.centroid(m, c)).fold(sum, |s, (x, c)| s + x * c);
        }
        sum
    }
}

/// Little-endian reads from the model file; an error names the field and the byte offset.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            bail!("the file ends at byte {} while reading {field} ({n} bytes at byte {})", self.bytes.len(), self.pos);
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn bool(&mut self, field: &str) -> Result<bool> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => bail!("{field} is {other}, not a boolean (byte {})", self.pos - 1),
        }
    }

    fn i32(&mut self, field: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4, field)?.try_into()?))
    }

    fn i64(&mut self, field: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8, field)?.try_into()?))
    }

    /// A non-negative i32 size.
    fn count(&mut self, field: &str) -> Result<usize> {
        let v = self.i32(field)?;
        usize::try_from(v).map_err(|_| anyhow::anyhow!("{field} is {v}; it must not be negative"))
    }

    /// A non-negative i64 size.
    fn count64(&mut self, field: &str) -> Result<usize> {
        let v = self.i64(field)?;
        usize::try_from(v).map_err(|_| anyhow::anyhow!("{field} is {v}; it must not be negative"))
    }

    fn f32s(&mut self, n: usize, field: &str) -> Result<Vec<f32>> {
        let len = n.checked_mul(4).with_context(|| format!("{field}: {n} values overflow"))?;
        let raw = self.take(len, field)?;
        Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn c_string(&mut self, field: &str) -> Result<&'a [u8]> {
        let rest = &self.bytes[self.pos..];
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            bail!("the file ends inside {field} (a zero-terminated string at byte {})", self.pos);
        };
        let s = &rest[..len];
        self.pos += len + 1;
        Ok(s)
    }
}

impl std::fmt::Debug for FastText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = match self.head {
            Head::Hierarchical(_) => "hierarchical softmax",
            Head::Softmax => "softmax",
            Head::Sigmoid => "one-vs-all",
        };
        let (rows, _) = self.input.shape();
        let quantized = matches!(self.input, Matrix::Quantized(_));
        f.debug_struct("FastText")
            .field("labels", &self.labels.len())
            .field("dim", &self.dim)
            .field("input_rows", &rows)
            .field("quantized", &quantized)
            .field("head", &head)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes fastText's binary format, field by field, for models built in the tests.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn i32(&mut self, v: i32) -> &mut Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn i64(&mut self, v: i64) -> &mut Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn u8(&mut self, v: u8) -> &mut Self {
            self.0.push(v);
            self
        }
        fn f32s(&mut self, v: &[f32]) -> &mut Self {
            v.iter().for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
            self
        }
        fn entry(&mut self, word: &str, count: i64, label: bool) -> &mut Self {
            self.0.extend_from_slice(word.as_bytes());
            self.u8(0).i64(count).u8(u8::from(label))
        }
        /// Header, args (dim 2; no character or word n-grams) and a dictionary of `</s>`,
        /// "hello", "world" and labels a, b.
        fn head(&mut self, loss: i32, prune: i64) -> &mut Self {
            self.i32(MAGIC).i32(12);
            // dim, ws, epoch, minCount, neg, wordNgrams, loss, model, bucket, minn, maxn, lrUpdateRate
            for v in [2, 5, 5, 1, 5, 1, loss, 3, 4, 0, 0, 100] {
                self.i32(v);
            }
            self.0.extend_from_slice(&1e-4f64.to_le_bytes());
            self.i32(5).i32(3).i32(2).i64(10).i64(prune);
            self.entry("</s>", 4, false).entry("hello", 3, false).entry("world", 2, false);
            self.entry("__label__a", 3, true).entry("__label__b", 1, true)
        }
        fn dense(&mut self, rows: i64, values: &[f32]) -> &mut Self {
            self.u8(0).i64(rows).i64(2).f32s(values)
        }
    }

    /// Rows of the dense input matrix: 3 words then 4 buckets.
    const INPUT: [f32; 14] = [0.5, -1.0, 1.0, 2.0, -2.0, 0.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0];
    const OUTPUT: [f32; 4] = [1.0, 0.0, 0.0, 1.0];

    fn softmax2(x: [f64; 2]) -> [f64; 2] {
        let m = x[0].max(x[1]);
        let e = [(x[0] - m).exp(), (x[1] - m).exp()];
        [e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1])]
    }

    #[test]
    fn fnv1a_matches_the_published_vectors_and_sign_extends_high_bytes() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
        // fastText XORs a byte >= 0x80 as a negative int8: 0xC3 becomes 0xFFFFFFC3.
        let by_hand = ((0x811c_9dc5u64 ^ 0xFFFF_FFC3) * 16_777_619) as u32;
        assert_eq!(fnv1a(&[0xC3]), by_hand);
        assert_ne!(by_hand, ((0x811c_9dc5u64 ^ 0xC3) * 16_777_619) as u32);
    }

    #[test]
    fn character_ngrams_count_utf8_characters_and_leave_out_the_lone_brackets() {
        let grams = |w: &str, minn, maxn| -> Vec<String> {
            let mut grams = Vec::new();
            for_each_char_ngram(w.as_bytes(), minn, maxn, |g| grams.push(String::from_utf8(g.to_vec()).unwrap()));
            grams
        };
        assert_eq!(grams("<ab>", 1, 2), ["<a", "a", "ab", "b", "b>"]);
        assert_eq!(grams("<ab>", 2, 3), ["<a", "<ab", "ab", "ab>", "b>"]);
        // "é" is two bytes and one character.
        assert_eq!(grams("<é>", 1, 3), ["<é", "<é>", "é", "é>"]);
        assert_eq!(grams("<中文>", 2, 2), ["<中", "中文", "文>"]);
    }

    #[test]
    fn tokens_split_at_ascii_whitespace_end_with_eos_and_stop_at_a_newline() {
        let t: Vec<&[u8]> = tokens(first_line(b" hello\tworld\x0bx\ny z")).collect();
        assert_eq!(t, [&b"hello"[..], b"world", b"x", b"</s>"]);
        // A whole document: the newline is one more space.
        let t: Vec<&[u8]> = tokens(b"x\ny z").collect();
        assert_eq!(t, [&b"x"[..], b"y", b"z", b"</s>"]);
    }

    #[test]
    fn huffman_tree_is_fasttexts() {
        // Counts 5, 3, 2, 1 (sorted, as fastText keeps labels): 3+2 -> node 4 (count 3); the
        // tie between node 4 and leaf 1 (both 3) goes to the node; then 0 and node 5.
        let t = HuffmanTree::build(&[5, 3, 2, 1]);
        assert_eq!(t.children, [(3, 2), (4, 1), (0, 5)]);
    }

    #[test]
    fn a_dense_softmax_model_predicts_the_mean_of_its_word_rows() {
        let mut w = Writer::default();
        w.head(3, -1).dense(7, &INPUT).dense(2, &OUTPUT);
        let m = FastText::from_bytes(&w.0).unwrap();
        assert_eq!(m.labels(), ["a", "b"]);
        // "hello hello unknown" -> rows hello, hello, </s> (the unknown word has no n-grams).
        let hidden = [(2.0 * 1.0 + 0.5) / 3.0, (2.0 * 2.0 - 1.0) / 3.0];
        let p = softmax2(hidden);
        let got = m.predict("hello hello unknown", 2, 0.0);
        assert_eq!((got[0].label, got[1].label), ("b", "a"));
        assert!((f64::from(got[0].probability) - (p[1] + 1e-5)).abs() < 1e-6, "{got:?} vs {p:?}");
        assert!((f64::from(got[1].probability) - (p[0] + 1e-5)).abs() < 1e-6, "{got:?} vs {p:?}");
        // A label token is not a word; k and the threshold cut the list.
        assert_eq!(m.predict("hello __label__a", 2, 0.0), m.predict("hello", 2, 0.0));
        // A document's newlines are spaces to predict_text; predict stops at the first.
        assert_eq!(m.predict_text("hello\nhello unknown", 2, 0.0), got);
        assert_eq!(m.predict("hello\nhello unknown", 2, 0.0), m.predict("hello", 2, 0.0));
        assert_eq!(m.predict("hello", 1, 0.0).len(), 1);
        assert!(m.predict("hello", 2, 0.99).is_empty());
    }

    #[test]
    fn a_quantized_model_with_norms_and_pruned_buckets_decodes_its_codes() {
        let mut w = Writer::default();
        // Pruned to no buckets: the input matrix holds the 3 word rows only.
        w.head(1, 0);
        // Quantized input: norms on, 3 rows x 2 columns, one sub-quantizer of 2 columns.
        w.u8(1).u8(1).i64(3).i64(2).i32(3).u8(2).u8(0).u8(1);
        w.i32(2).i32(1).i32(2).i32(2);
        let mut centroids = vec![0f32; 2 * CENTROIDS];
        centroids[..6].copy_from_slice(&[1.0, 0.0, 0.0, 1.0, -1.0, -1.0]);
        w.f32s(&centroids);
        // Norm codes per row, then the one-dimensional norm quantizer.
        w.u8(0).u8(1).u8(0);
        w.i32(1).i32(1).i32(1).i32(1);
        let mut norms = vec![0f32; CENTROIDS];
        norms[..2].copy_from_slice(&[2.0, 0.5]);
        w.f32s(&norms);
        w.dense(2, &OUTPUT);
        let m = FastText::from_bytes(&w.0).unwrap();
        // Rows: </s> = 2 * centroid 2 = (-2, -2); hello = 0.5 * centroid 0 = (0.5, 0).
        let hidden: [f64; 2] = [(0.5 - 2.0) / 2.0, -2.0 / 2.0];
        // Two labels: one inner node (output row 0, scoring hidden[0]). The rarer label, b, is
        // picked first and becomes the left child (1 - sigmoid); a is the right (sigmoid).
        assert_eq!(HuffmanTree::build(&[3, 1]).children, [(1, 0)]);
        let right = 1.0 / (1.0 + (-hidden[0]).exp());
        let got = m.predict("hello", 2, 0.0);
        let p = |label: &str| f64::from(got.iter().find(|g| g.label == label).unwrap().probability);
        assert!((p("a") - (right + 1e-5)).abs() < 1e-6, "{got:?}");
        assert!((p("b") - (1.0 - right + 1e-5)).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn hierarchical_probabilities_sum_to_one() {
        let mut w = Writer::default();
        w.head(1, -1).dense(7, &INPUT).dense(2, &[0.3, -0.7, 0.0, 0.0]);
        let m = FastText::from_bytes(&w.0).unwrap();
        for line in ["hello", "world world", "nothing known"] {
            let total: f32 = m.predict(line, 2, 0.0).iter().map(|p| p.probability).sum();
            assert!((total - 1.0).abs() < 1e-4, "{line}: {total}");
        }
    }

    #[test]
    fn damaged_files_name_what_is_wrong() {
        let mut w = Writer::default();
        w.head(3, -1).dense(7, &INPUT).dense(2, &OUTPUT);
        let cut = FastText::from_bytes(&w.0[..w.0.len() - 3]).unwrap_err().to_string();
        assert!(cut.contains("output matrix values"), "{cut}");
        let mut bad = w.0.clone();
        bad[0] ^= 1;
        assert!(FastText::from_bytes(&bad).unwrap_err().to_string().contains("magic number"));
        let mut extra = w.0.clone();
        extra.push(0);
        assert!(FastText::from_bytes(&extra).unwrap_err().to_string().contains("bytes after"));
        let mut rows = Writer::default();
        rows.head(3, -1).dense(6, &INPUT[..12]).dense(2, &OUTPUT);
        assert!(FastText::from_bytes(&rows.0).unwrap_err().to_string().contains("input matrix has 6 rows"));
        // A dictionary that claims two billion entries fails on the bytes, not the allocation.
        let mut huge = w.0.clone();
        let size_at = 8 + 12 * 4 + 8;
        huge[size_at..size_at + 4].copy_from_slice(&i32::MAX.to_le_bytes());
        huge[size_at + 4..size_at + 8].copy_from_slice(&(i32::MAX - 2).to_le_bytes());
        let err = FastText::from_bytes(&huge).unwrap_err().to_string();
        assert!(err.contains("dictionary entry"), "{err}");
    }
}
