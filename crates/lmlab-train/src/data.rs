//! Training data as one long token stream, split into train and held-out parts, and the
//! batches drawn from it.
//!
//! Inputs are token shards (`*.bin`, see [`crate::shards`]) or plain-text files, each text file
//! becoming one document `<|bos|> text <|eos|>`; a folder contributes its shards if it has any,
//! else its `*.txt` files. Batches are random windows of T+1 tokens whose positions depend only
//! on (seed, step, micro-step): a resumed run draws exactly the batches the uninterrupted run
//! would have drawn, and no loader state needs saving. The held-out split is the last
//! `val_fraction` of the stream; its evaluation windows are fixed, so eval losses compare.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use lmlab_tokenizer::Tokenizer;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::shards::{is_shard, Shard};

enum Source {
    Memory(Vec<u32>),
    Mapped(Shard),
}

impl Source {
    fn len(&self) -> usize {
        match self {
            Source::Memory(v) => v.len(),
            Source::Mapped(s) => s.len(),
        }
    }

    fn read_into(&self, start: usize, n: usize, out: &mut Vec<u32>) {
        match self {
            Source::Memory(v) => out.extend_from_slice(&v[start..start + n]),
            Source::Mapped(s) => s.read_into(start, n, out),
        }
    }
}

/// What was loaded, for logs and the trainer state.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DataSummary {
    pub files: Vec<String>,
    pub total_tokens: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
}

pub struct TokenData {
    sources: Vec<Source>,
    /// Start of each source in the concatenated stream.
    starts: Vec<usize>,
    total: usize,
    train_len: usize,
    pub summary: DataSummary,
}

/// Expands folders into their shard files, or failing that their text files, sorted.
fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).with_context(|| format!("data path {} does not exist", input.display()))?;
        if meta.is_file() {
            files.push(input.clone());
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
            .with_context(|| format!("reading folder {}", input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let shards: Vec<PathBuf> = entries.iter().filter(|p| p.extension().is_some_and(|e| e == "bin")).cloned().collect();
        let chosen =
            if shards.is_empty() { entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "txt")).collect() } else { shards };
        if chosen.is_empty() {
            bail!("folder {} holds no token shards (*.bin) and no text files (*.txt)", input.display());
        }
        files.extend(chosen);
    }
    Ok(files)
}

impl TokenData {
    /// Loads shards and text files; `tokenizer` is needed only for text.
    pub fn load(inputs: &[PathBuf], tokenizer: Option<&Tokenizer>, vocab_size: usize, val_fraction: f64) -> Result<Self> {
        let files = expand_inputs(inputs)?;
        let mut sources = Vec::with_capacity(files.len());
        for file in &files {
            let source = if is_shard(file) {
                let shard = Shard::open(file)?;
                if shard.header.vocab_size as usize > vocab_size {
                    bail!("{}: shard vocabulary {} is larger than the model's {vocab_size}", file.display(), shard.header.vocab_size);
                }
                Source::Mapped(shard)
            } else {
                let tok = tokenizer.with_context(|| format!("{} is text and needs a tokenizer (--tokenizer)", file.display()))?;
                Source::Memory(tokenize_document(tok, file)?)
            };
            sources.push(source);
        }
        Self::from_sources(sources, files.iter().map(|f| f.display().to_string()).collect(), vocab_size, val_fraction)
    }

    /// In-memory tokens (tests, benchmarks).
    pub fn from_tokens(tokens: Vec<u32>, vocab_size: usize, val_fraction: f64) -> Result<Self> {
        Self::from_sources(vec![Source::Memory(tokens)], vec!["<memory>".into()], vocab_size, val_fraction)
    }

    fn from_sources(sources: Vec<Source>, files: Vec<String>, vocab_size: usize, val_fraction: f64) -> Result<Self> {
        if !(0.0..0.5).contains(&val_fraction) {
            bail!("val_fraction must be in [0, 0.5), got {val_fraction}");
        }
        let mut starts = Vec::with_capacity(sources.len());
        let mut total = 0;
        for s in &sources {
            starts.push(total);
            total += s.len();
        }
        let val = (total as f64 * val_fraction).round() as usize;
        let data = Self {
            sources,
            starts,
            total,
            train_len: total - val,
            summary: DataSummary { files, total_tokens: total, train_tokens: total - val, val_tokens: val },
        };
        // Text sources were checked by the tokenizer; check in-memory ids against the model too.
        for s in &data.sources {
            if let Source::Memory(v) = s {
                if let Some(t) = v.iter().find(|&&t| t as usize >= vocab_size) {
                    bail!("token id {t} is outside the model vocabulary of {vocab_size}");
                }
            }
        }
        Ok(data)
    }

    /// Copies stream tokens `start..start+n` (which may span sources).
    fn read(&self, mut start: usize, mut n: usize, out: &mut Vec<u32>) {
        let mut i = self.starts.partition_point(|&s| s <= start) - 1;
        while n > 0 {
            let local = start - self.starts[i];
            let take = n.min(self.sources[i].len() - local);
            self.sources[i].read_into(local, take, out);
            start += take;
            n -= take;
            i += 1;
        }
    }

    /// The training split's tokens, in stream order.
    pub fn train_tokens(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.train_len);
        self.read(0, self.train_len, &mut out);
        out
    }

    /// The held-out split's tokens, in stream order.
    pub fn held_out(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.total - self.train_len);
        self.read(self.train_len, self.total - self.train_len, &mut out);
        out
    }

    /// Checks that both splits hold at least one window of `seq_len + 1` tokens.
    pub fn check_fits(&self, seq_len: usize, need_val: bool) -> Result<()> {
        if self.train_len < seq_len + 1 {
            bail!(
                "the training split has {} tokens, fewer than one sequence of {} (+1); use more data or a shorter context",
                self.train_len,
                seq_len
            );
        }
        if need_val && self.total - self.train_len < seq_len + 1 {
            bail!(
                "the held-out split has {} tokens, fewer than one sequence of {} (+1); raise val_fraction or add data",
                self.total - self.train_len,
                seq_len
            );
        }
        Ok(())
    }

    /// The training batch for (step, micro): inputs and targets [B, T].
    pub fn train_batch(&self, seed: u64, step: u64, micro: u64, batch: usize, seq_len: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(step.wrapping_mul(1 << 16).wrapping_add(micro));
        let max_start = self.train_len - (seq_len + 1);
        let starts: Vec<usize> = (0..batch).map(|_| rng.random_range(0..=max_start)).collect();
        self.windows(&starts, seq_len, dev)
    }

    /// Evaluation batch `i` of `n`: fixed windows spread evenly over the held-out split.
    pub fn val_batch(&self, i: usize, n: usize, batch: usize, seq_len: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let val_len = self.total - self.train_len;
        let span = val_len.saturating_sub(seq_len + 1);
        let windows = n * batch;
        let starts: Vec<usize> = (0..batch)
            .map(|j| {
                let k = i * batch + j;
                self.train_len + if windows > 1 { span * k / (windows - 1) } else { 0 }
            })
            .collect();
        self.windows(&starts, seq_len, dev)
    }

    fn windows(&self, starts: &[usize], seq_len: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let mut buf = Vec::with_capacity(seq_len + 1);
        let mut x = Vec::with_capacity(starts.len() * seq_len);
        let mut y = Vec::with_capacity(starts.len() * seq_len);
        for &s in starts {
            buf.clear();
            self.read(s, seq_len + 1, &mut buf);
            x.extend_from_slice(&buf[..seq_len]);
            y.extend_from_slice(&buf[1..]);
        }
        let b = starts.len();
        Ok((Tensor::from_vec(x, (b, seq_len), dev)?, Tensor::from_vec(y, (b, seq_len), dev)?))
    }
}

/// One text file as `<|bos|> tokens <|eos|>`; bytes are tokenized exactly (no lossy decoding).
pub fn tokenize_document(tok: &Tokenizer, path: &Path) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut ids = Vec::with_capacity(bytes.len() / 3 + 2);
    ids.extend(tok.special().bos);
    ids.extend(tok.encode_bytes(&bytes).with_context(|| format!("tokenizing {}", path.display()))?);
    ids.extend(tok.special().eos);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_span_sources_and_batches_are_reproducible() {
        let a: Vec<u32> = (0..50).collect();
        let b: Vec<u32> = (50..100).collect();
        let data = TokenData::from_sources(vec![Source::Memory(a), Source::Memory(b)], vec![], 100, 0.2).unwrap();
        assert_eq!(data.summary.train_tokens, 80);
        let mut out = Vec::new();
        data.read(45, 10, &mut out);
        assert_eq!(out, (45..55).collect::<Vec<u32>>());
        let dev = Device::Cpu;
        let (x1, y1) = data.train_batch(7, 3, 0, 4, 8, &dev).unwrap();
        let (x2, _) = data.train_batch(7, 3, 0, 4, 8, &dev).unwrap();
        let (x3, _) = data.train_batch(7, 4, 0, 4, 8, &dev).unwrap();
        assert_eq!(x1.to_vec2::<u32>().unwrap(), x2.to_vec2::<u32>().unwrap());
        assert_ne!(x1.to_vec2::<u32>().unwrap(), x3.to_vec2::<u32>().unwrap());
        // Targets are inputs shifted by one, and training windows stay in the train split.
        for (xr, yr) in x1.to_vec2::<u32>().unwrap().iter().zip(y1.to_vec2::<u32>().unwrap()) {
            assert_eq!(&xr[1..], &yr[..7]);
            assert!(*yr.last().unwrap() < 80);
        }
        let (vx, _) = data.val_batch(0, 1, 2, 8, &dev).unwrap();
        let vx = vx.to_vec2::<u32>().unwrap();
        assert_eq!(vx[0][0], 80);
        assert_eq!(vx[1][0], 91);
        assert!(data.check_fits(30, true).is_err());
    }
}
