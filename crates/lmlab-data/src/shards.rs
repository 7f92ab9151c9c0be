//! Token shards: the on-disk format for tokenized training data (see docs/formats.md).
//!
//! A shard is a 32-byte little-endian header followed by the tokens:
//! magic `LMLABTOK`, version u32 (1), token width u32 (2 for u16, 4 for u32), token count u64,
//! vocabulary size u32 (0 if unknown), reserved u32 (0). Shards are memory-mapped when read, so
//! corpora larger than memory train fine. Writing is atomic (temporary file, then rename).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const MAGIC: &[u8; 8] = b"LMLABTOK";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub token_bytes: u32,
    pub count: u64,
    pub vocab_size: u32,
}

impl ShardHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.token_bytes.to_le_bytes());
        h[16..24].copy_from_slice(&self.count.to_le_bytes());
        h[24..28].copy_from_slice(&self.vocab_size.to_le_bytes());
        h
    }

    /// Parses and checks a header; `what` names the file in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self> {
        if bytes.len() < HEADER_LEN || &bytes[0..8] != MAGIC {
            bail!("{what}: not an lmlab token shard (missing LMLABTOK magic)");
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            bail!("{what}: shard version {version} is not supported (this lmlab reads version {VERSION})");
        }
        let token_bytes = u32_at(12);
        if token_bytes != 2 && token_bytes != 4 {
            bail!("{what}: token width {token_bytes} bytes is invalid (must be 2 or 4)");
        }
        let count = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        Ok(Self { token_bytes, count, vocab_size: u32_at(24) })
    }
}

/// Whether a file starts with the shard magic.
pub fn is_shard(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok() && &magic == MAGIC
}

/// Writes tokens as a shard, u16 when the vocabulary fits, else u32.
pub fn write_shard(path: &Path, tokens: &[u32], vocab_size: u32) -> Result<()> {
    let fits_u16 = vocab_size != 0 && vocab_size <= 1 << 16;
    let token_bytes = if fits_u16 { 2 } else { 4 };
    if fits_u16 {
        if let Some(t) = tokens.iter().find(|&&t| t >= vocab_size) {
            bail!("token {t} is outside the vocabulary of {vocab_size}");
        }
    }
    let header = ShardHeader { token_bytes, count: tokens.len() as u64, vocab_size };
    let tmp = path.with_extension("bin.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(&header.encode())?;
    for &t in tokens {
        if fits_u16 {
            w.write_all(&(t as u16).to_le_bytes())?;
        } else {
            w.write_all(&t.to_le_bytes())?;
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// A memory-mapped shard.
pub struct Shard {
    map: memmap2::Mmap,
    pub header: ShardHeader,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening shard {}", path.display()))?;
        // lmlab never rewrites a shard in place (writes go to a temporary file that is renamed),
        // which is the contract `map_readonly` asks for.
        let map = lmlab_kernels::map_readonly(&file).with_context(|| format!("mapping {}", path.display()))?;
        let what = path.display().to_string();
        let header = ShardHeader::decode(&map, &what)?;
        let expected = HEADER_LEN as u64 + header.count * u64::from(header.token_bytes);
        if map.len() as u64 != expected {
            bail!(
                "{what}: header says {} tokens ({expected} bytes) but the file has {} bytes (truncated or corrupt)",
                header.count,
                map.len()
            );
        }
        Ok(Self { map, header })
    }

    pub fn len(&self) -> usize {
        self.header.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends tokens `start..start+n` to `out`.
    pub fn read_into(&self, start: usize, n: usize, out: &mut Vec<u32>) {
        let body = &self.map[HEADER_LEN..];
        match self.header.token_bytes {
            2 => out.extend(body[start * 2..(start + n) * 2].chunks_exact(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))),
            _ => out.extend(body[start * 4..(start + n) * 4].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_in_both_widths_and_reject_corruption() {
        let dir = tempfile::tempdir().unwrap();
        for (vocab, width) in [(5000u32, 2u32), (100_000, 4)] {
            let path = dir.path().join(format!("s{vocab}.bin"));
            let tokens: Vec<u32> = (0..1000).map(|i| (i * 37) % vocab).collect();
            write_shard(&path, &tokens, vocab).unwrap();
            assert!(is_shard(&path));
            let s = Shard::open(&path).unwrap();
            assert_eq!(s.header, ShardHeader { token_bytes: width, count: 1000, vocab_size: vocab });
            let mut out = Vec::new();
            s.read_into(10, 5, &mut out);
            assert_eq!(out, &tokens[10..15]);
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len(), HEADER_LEN + 1000 * width as usize);
            // Truncated file: a clear error naming the file.
            std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
            let err = Shard::open(&path).err().unwrap().to_string();
            assert!(err.contains("truncated") && err.contains(&path.display().to_string()), "{err}");
        }
        assert!(write_shard(&dir.path().join("bad.bin"), &[7, 9], 8).is_err());
    }
}
