//! Writing WARC/1.1 files: one gzip member per record, as Common Crawl does, so readers can
//! seek to any record.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use flate2::Compression;
use rand::Rng;

pub struct WarcWriter {
    out: std::io::BufWriter<std::fs::File>,
    pub records: usize,
    pub bytes: u64,
}

/// A random (version 4) UUID from the seeded RNG, as WARC record ids use.
pub fn uuid(rng: &mut impl Rng) -> String {
    let b: [u8; 16] = rng.random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl WarcWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { out: std::io::BufWriter::new(f), records: 0, bytes: 0 })
    }

    /// Writes one record: named headers (Content-Length is added), then the block.
    pub fn record(&mut self, headers: &[(&str, &str)], block: &[u8]) -> Result<()> {
        let mut head = String::from("WARC/1.1\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", block.len()));
        let mut gz = GzEncoder::new(Vec::with_capacity(block.len() / 2), Compression::default());
        gz.write_all(head.as_bytes())?;
        gz.write_all(block)?;
        gz.write_all(b"\r\n\r\n")?;
        let member = gz.finish()?;
        self.out.write_all(&member)?;
        self.records += 1;
        self.bytes += member.len() as u64;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let f = self.out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(())
    }
}
