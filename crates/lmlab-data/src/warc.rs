//! Reading WARC files of every era (0.17/0.18 as ClueWeb09 and the early Internet Archive wrote
//! them, 1.0, 1.1; header lines ending in CRLF or a bare LF): plain, one gzip member per record (Common Crawl's layout),
//! or gzip over the whole file, record by record with bounded memory. ARC files (versions 1 and
//! 2, WARC's predecessor) read too, their records presented as WARC records.
//!
//! Every record carries the byte offset where it starts in the file — for gzip files, the
//! offset of the gzip member it starts in, which is what a reader seeks to — so bad input can
//! be reported by file and offset. Data that is not a WARC record (garbage between records, a
//! wrong Content-Length) is skipped up to the next `WARC/` line and reported as one
//! [`Item::Error`]; a truncated record or corrupt compression ends the file with one. Everything
//! read before has already been returned. Reading never panics on bad input.
//!
//! A file cut short (an interrupted download: the last gzip member ends early, or a plain file
//! stops inside a record) keeps what precedes the cut: every record read whole up to its
//! Content-Length is returned as usual, the record the cut falls inside is returned with what
//! there is of it and [`Record::truncated`] set, and then the error that ends the file.
//!
//! Why hand-written rather than the `warc` crate: it reports no offsets, cannot tell which gzip
//! member a record came from, and stops with an opaque error on the truncated and corrupt
//! files Common Crawl readers must survive. Decompression is flate2's.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};
use flate2::bufread::GzDecoder;

/// Header lines longer than this are not WARC.
const MAX_LINE: usize = 64 * 1024;
/// Records larger than this are refused rather than loaded (Common Crawl truncates at 1 MiB).
pub const MAX_RECORD: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Record {
    /// Where the record starts in the file (for gzip files: its gzip member's offset).
    pub offset: u64,
    /// The version line as written: "WARC/1.1", "WARC/1.0", "WARC/0.18", ...; "ARC/1" or "ARC/2".
    pub version: String,
    /// Header fields in file order, names as written.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The file ends inside this record: `body` is shorter than its Content-Length.
    pub truncated: bool,
}

impl Record {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn warc_type(&self) -> &str {
        self.header("WARC-Type").unwrap_or("")
    }

    /// The target URI, without the angle brackets some writers add.
    pub fn target_uri(&self) -> Option<&str> {
        self.header("WARC-Target-URI").map(|u| u.trim().trim_start_matches('<').trim_end_matches('>'))
    }

    pub fn record_id(&self) -> Option<&str> {
        self.header("WARC-Record-ID")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub offset: u64,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum Item {
    Record(Record),
    /// The file cannot be read past this point.
    Error(ReadError),
}

/// A `BufRead` that counts the bytes consumed from it.
struct Counting<R> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.consumed += n as u64;
        self.inner.consume(n);
    }
}

/// Any byte source the reader can take.
type Input = Box<dyn Read + Send>;

/// The decompressed bytes of consecutive gzip members, with the offset of the member being read.
struct Members {
    decoder: Option<GzDecoder<Counting<BufReader<Input>>>>,
    member_start: u64,
    buf: Vec<u8>,
    pos: usize,
    /// A member that could not be decompressed to its end (cut short or corrupt): its offset
    /// and why. What decompressed before the damage has been delivered; reading ends there.
    damaged: Option<ReadError>,
}

impl Members {
    fn new(input: Input) -> Self {
        let src = Counting { inner: BufReader::new(input), consumed: 0 };
        Self { decoder: Some(GzDecoder::new(src)), member_start: 0, buf: Vec::new(), pos: 0, damaged: None }
    }
}

impl Read for Members {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Members {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.buf.len() {
            let Some(decoder) = self.decoder.as_mut() else { return Ok(&[]) };
            self.buf.resize(64 * 1024, 0);
            let n = match decoder.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    // Deliver nothing more: the data before the damage has gone out already.
                    let message = format!("gzip member cut short or corrupt ({e}); kept what decompressed before it");
                    self.damaged = Some(ReadError { offset: self.member_start, message });
                    self.decoder = None;
                    self.buf.clear();
                    self.pos = 0;
                    return Ok(&[]);
                }
            };
            if n > 0 {
                self.buf.truncate(n);
                self.pos = 0;
                break;
            }
            // This member is done: start the next one, if the file goes on.
            let mut src = self.decoder.take().expect("present").into_inner();
            self.buf.clear();
            self.pos = 0;
            if src.fill_buf()?.is_empty() {
                return Ok(&[]);
            }
            self.member_start = src.consumed;
            self.decoder = Some(GzDecoder::new(src));
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

enum Source {
    Plain(Counting<BufReader<Input>>),
    Gzip(Box<Members>),
}

impl Source {
    fn reader(&mut self) -> &mut dyn BufRead {
        match self {
            Source::Plain(r) => r,
            Source::Gzip(r) => r,
        }
    }

    /// The damage that ended a gzip file early, once reading has reached it.
    fn damaged(&mut self) -> Option<ReadError> {
        match self {
            Source::Plain(_) => None,
            Source::Gzip(m) => m.damaged.take(),
        }
    }

    /// Where the next unread byte's record would start, as a file offset.
    fn offset(&mut self) -> u64 {
        match self {
            Source::Plain(r) => r.consumed,
            Source::Gzip(m) => {
                // Open the next member first if the current one is used up.
                let _ = m.fill_buf();
                m.member_start
            }
        }
    }
}

/// Iterates over the records of one WARC file; see the module docs.
pub struct WarcReader {
    source: Source,
    done: bool,
    /// ARC version (1 or 2) once the file has begun with an ARC `filedesc://` record.
    arc: Option<u8>,
    /// An error to report after the record just returned (a short ARC record at the end).
    after: Option<ReadError>,
    /// A record's first line (and its offset) found while skipping non-WARC data.
    pending: Option<(u64, Vec<u8>)>,
    /// The offset of the last whole record returned and how many whole records began there
    /// (for gzip files, how many came out of that member), for the damage report.
    whole_at: (u64, u64),
}

/// Opens `path`, detecting gzip by its magic bytes.
pub fn open(path: &Path) -> Result<WarcReader> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).with_context(|| format!("reading {}", path.display()))?;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(from_reader(Box::new(f), n == 2 && magic == [0x1f, 0x8b]))
}

/// Reads WARC records from any byte source (`gzip`: the source is gzip members).
pub fn from_reader(input: Box<dyn Read + Send>, gzip: bool) -> WarcReader {
    let source = if gzip {
        Source::Gzip(Box::new(Members::new(input)))
    } else {
        Source::Plain(Counting { inner: BufReader::new(input), consumed: 0 })
    };
    WarcReader { source, done: false, arc: None, after: None, pending: None, whole_at: (u64::MAX, 0) }
}

/// Reads WARC records from bytes in memory, detecting gzip by its magic bytes.
pub fn from_bytes(bytes: Vec<u8>) -> WarcReader {
    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
    from_reader(Box::new(std::io::Cursor::new(bytes)), gzip)
}

/// One line without its line ending; None at end of input.
fn read_line(r: &mut dyn BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "header line longer than 64 KiB"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(line))
}

impl WarcReader {
    /// Reads to the end: every record, and every error, in file order.
    pub fn read_all(self) -> (Vec<Record>, Vec<ReadError>) {
        let (mut records, mut errors) = (Vec::new(), Vec::new());
        for item in self {
            match item {
                Item::Record(r) => records.push(r),
                Item::Error(e) => errors.push(e),
            }
        }
        (records, errors)
    }

    /// The damage that ended a gzip file, once reached, saying how many records were read
    /// whole from the damaged member before it.
    fn damaged(&mut self) -> Option<ReadError> {
        let mut d = self.source.damaged()?;
        let whole = if self.whole_at.0 == d.offset { self.whole_at.1 } else { 0 };
        d.message.push_str(&format!("; {whole} record(s) read whole from this member before the damage"));
        Some(d)
    }

    fn next_record(&mut self) -> std::result::Result<Option<Record>, ReadError> {
        // Skip the blank lines that end the previous record.
        let (offset, first) = match self.pending.take() {
            Some(p) => p,
            None => loop {
                let offset = self.source.offset();
                let line = read_line(self.source.reader()).map_err(|e| ReadError { offset, message: e.to_string() })?;
                match line {
                    None => return self.damaged().map_or(Ok(None), Err),
                    Some(l) if l.iter().all(u8::is_ascii_whitespace) => continue,
                    Some(l) => break (offset, l),
                }
            },
        };
        let err = |message: String| ReadError { offset, message };
        if self.arc.is_some() || first.starts_with(b"filedesc://") {
            return self.arc_record(offset, &first).map(Some);
        }
        let first = String::from_utf8_lossy(&first).into_owned();
        if !first.starts_with("WARC/") {
            // Skip to the next line that starts a record; report what was skipped.
            let message = format!("not a WARC record: skipped data starting {:?}", first.chars().take(60).collect::<String>());
            loop {
                let at = self.source.offset();
                match read_line(self.source.reader()) {
                    Ok(Some(l)) if l.starts_with(b"WARC/") => {
                        self.pending = Some((at, l));
                        return Err(err(message));
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(err(message)),
                    Err(e) => return Err(err(format!("{message}; then {e}"))),
                }
            }
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let line = match read_line(self.source.reader()).map_err(|e| err(e.to_string()))? {
                Some(l) => l,
                None => {
                    let why = self.damaged().map_or(String::new(), |d| format!(" (at {}: {})", d.offset, d.message));
                    return Err(err(format!("file ends inside the record's headers{why}")));
                }
            };
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.starts_with([' ', '\t']) {
                // A continuation of the previous field.
                match headers.last_mut() {
                    Some((_, v)) => {
                        v.push(' ');
                        v.push_str(line.trim());
                    }
                    None => return Err(err("continuation line before any header field".into())),
                }
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| err(format!("header line without a colon: {:?}", line.chars().take(60).collect::<String>())))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .ok_or_else(|| err("record has no Content-Length".into()))?
            .1
            .parse::<u64>()
            .map_err(|e| err(format!("Content-Length: {e}")))?;
        if length > MAX_RECORD {
            return Err(err(format!("Content-Length {length} exceeds the {MAX_RECORD}-byte limit")));
        }
        let mut body = Vec::with_capacity(length as usize);
        let got = self.source.reader().take(length).read_to_end(&mut body).map_err(|e| err(e.to_string()))?;
        let truncated = (got as u64) < length;
        if truncated {
            // Keep what there is, marked, and end the file with the reason after it.
            let message = format!("file ends inside the record body ({got} of {length} bytes); kept it marked truncated");
            self.after = Some(match self.damaged() {
                Some(d) => ReadError { offset: d.offset, message: format!("{}; {message}", d.message) },
                None => err(message),
            });
        }
        Ok(Some(Record { offset, version: first.trim().to_string(), headers, body, truncated }))
    }
}

/// `yyyymmddhhmmss` as ISO 8601 (what WARC-Date holds); anything else as written.
fn arc_date(d: &str) -> String {
    if d.len() == 14 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}T{}:{}:{}Z", &d[0..4], &d[4..6], &d[6..8], &d[8..10], &d[10..12], &d[12..14])
    } else {
        d.to_string()
    }
}

impl WarcReader {
    /// One ARC record (the Internet Archive's format before WARC), as a WARC record: the
    /// `filedesc://` header becomes warcinfo, every other record a response. The header line is
    /// `URL IP date content-type length` (version 1) or with five more fields before the
    /// length (version 2); fields are taken from the right, since URLs may contain spaces,
    /// which become %20 as warcio writes them. A length that is not a non-negative number
    /// reads as 0, as in warcio.
    fn arc_record(&mut self, offset: u64, first: &[u8]) -> std::result::Result<Record, ReadError> {
        let err = |message: String| ReadError { offset, message };
        let line = String::from_utf8_lossy(first).into_owned();
        let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
        let fixed = if self.arc == Some(2) { 9 } else { 4 };
        if fields.len() < fixed + 1 {
            return Err(err(format!("not an ARC record header: {:?}", line.chars().take(60).collect::<String>())));
        }
        let n = fields.len();
        let url = fields[..n - fixed].join(" ");
        let (ip, date, content_type, length) = (fields[n - fixed], fields[n - fixed + 1], fields[n - fixed + 2], fields[n - 1]);
        let length = length.parse::<i64>().ok().filter(|l| *l >= 0).unwrap_or(0) as u64;
        if length > MAX_RECORD {
            return Err(err(format!("ARC length {length} exceeds the {MAX_RECORD}-byte limit")));
        }
        let filedesc = url.starts_with("filedesc://");
        let mut body = Vec::with_capacity(length as usize);
        if filedesc {
            // Its version line and field-definition line belong to it whatever the length says
            // (warcio reads them so too; bad.arc declares -1).
            for _ in 0..2 {
                self.source.reader().take(MAX_LINE as u64).read_until(b'\n', &mut body).map_err(|e| err(e.to_string()))?;
            }
        }
        let rest = length.saturating_sub(body.len() as u64);
        let got = body.len() + self.source.reader().take(rest).read_to_end(&mut body).map_err(|e| err(e.to_string()))?;
        if (got as u64) < length {
            // warcio keeps such a record with what is there (warcio's own test file has one);
            // so do we, and report the shortfall after it.
            self.after = Some(err(format!("file ends inside the ARC record body ({got} of {length} bytes); kept what was there")));
        }
        if filedesc {
            // The body's first line is "<major> <minor> <origin>".
            self.arc = Some(if body.starts_with(b"2 ") { 2 } else { 1 });
        }
        let mut headers = vec![("WARC-Type".to_string(), if filedesc { "warcinfo" } else { "response" }.to_string())];
        if !filedesc {
            headers.push(("WARC-Target-URI".into(), url.replace(' ', "%20")));
        }
        headers.push(("WARC-Date".into(), arc_date(date)));
        headers.push(("WARC-IP-Address".into(), ip.to_string()));
        headers.push(("Content-Type".into(), content_type.to_string()));
        headers.push(("Content-Length".into(), length.to_string()));
        // Kept unmarked, as warcio keeps it (the error after it says it is short).
        Ok(Record { offset, version: format!("ARC/{}", self.arc.unwrap_or(1)), headers, body, truncated: false })
    }
}

impl Iterator for WarcReader {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if let Some(e) = self.after.take() {
            self.done = true;
            return Some(Item::Error(e));
        }
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => {
                if !r.truncated {
                    self.whole_at = if self.whole_at.0 == r.offset { (r.offset, self.whole_at.1 + 1) } else { (r.offset, 1) };
                }
                Some(Item::Record(r))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                // Skipped data with a record found after it: go on. Anything else ends the file.
                self.done = self.pending.is_none();
                Some(Item::Error(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn records(path: &Path) -> (Vec<Record>, Vec<ReadError>) {
        open(path).unwrap().read_all()
    }

    fn record_bytes(id: usize, body: &str) -> Vec<u8> {
        format!("WARC/1.1\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:test:{id}>\r\nWARC-Target-URI: http://example.com/{id}\r\n  continued\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n", body.len()).into_bytes()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_member_per_record_and_whole_file_gzip_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Vec<u8>> = (0..3).map(|i| record_bytes(i, &"body ".repeat(i * 100 + 1))).collect();
        let plain: Vec<u8> = recs.concat();
        let members: Vec<Vec<u8>> = recs.iter().map(|r| gzip(r)).collect();
        let files = [("plain.warc", plain.clone()), ("members.warc.gz", members.concat()), ("whole.warc.gz", gzip(&plain))];
        for (name, bytes) in files {
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            let (rs, errs) = records(&p);
            assert!(errs.is_empty(), "{name}: {errs:?}");
            assert_eq!(rs.len(), 3, "{name}");
            for (i, r) in rs.iter().enumerate() {
                assert_eq!(r.body, "body ".repeat(i * 100 + 1).into_bytes(), "{name}");
                assert_eq!(r.header("warc-record-id"), Some(format!("<urn:test:{i}>").as_str()));
                assert_eq!(r.header("WARC-Target-URI"), Some(format!("http://example.com/{i} continued").as_str()));
            }
            let offsets: Vec<u64> = rs.iter().map(|r| r.offset).collect();
            let want: Vec<u64> = match name {
                "plain.warc" => recs
                    .iter()
                    .scan(0, |o, r| {
                        let s = *o;
                        *o += r.len() as u64;
                        Some(s)
                    })
                    .collect(),
                "members.warc.gz" => members
                    .iter()
                    .scan(0, |o, m| {
                        let s = *o;
                        *o += m.len() as u64;
                        Some(s)
                    })
                    .collect(),
                _ => vec![0, 0, 0],
            };
            assert_eq!(offsets, want, "{name}");
        }
    }

    #[test]
    fn truncation_and_garbage_end_the_file_with_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let good = record_bytes(0, "complete");
        let second = record_bytes(1, "this body will be cut short");
        let mut cut = [good.clone(), second.clone()].concat();
        cut.truncate(good.len() + second.len() - 10);
        let p = dir.path().join("trunc.warc");
        std::fs::write(&p, &cut).unwrap();
        let (rs, errs) = records(&p);
        assert_eq!(rs.len(), 2);
        assert!(!rs[0].truncated && rs[1].truncated);
        assert_eq!(rs[1].body, b"this body will be cut");
        assert_eq!(errs, vec![ReadError { offset: good.len() as u64, message: errs[0].message.clone() }]);
        assert!(errs[0].message.contains("record body"), "{}", errs[0].message);

        // A corrupt gzip member after a good one.
        let mut bytes = gzip(&good);
        let at = bytes.len() as u64;
        let mut bad = gzip(&second);
        let mid = bad.len() / 2;
        bad[mid..].iter_mut().for_each(|b| *b ^= 0x5a);
        bytes.extend_from_slice(&bad);
        let p = dir.path().join("corrupt.warc.gz");
        std::fs::write(&p, &bytes).unwrap();
        let (rs, errs) = records(&p);
        assert_eq!(rs.iter().filter(|r| !r.truncated).count(), 1);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].offset, at, "{errs:?}");

        // Not WARC at all.
        let p = dir.path().join("x.warc");
        std::fs::write(&p, b"<html>hello</html>\n").unwrap();
        let (rs, errs) = records(&p);
        assert!(rs.is_empty());
        assert!(errs[0].message.contains("not a WARC record"), "{errs:?}");
    }

    #[test]
    fn clueweb09_era_records_with_bare_lf_and_empty_fields_read() {
        // WARC/0.18 as ClueWeb09 wrote it: LF line ends throughout, an empty
        // WARC-Identified-Payload-Type, an HTTP block whose headers end LF LF; then a WARC/1.0
        // record with CRLF and a WARC/1.1 one, in one file.
        let http = "HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: 13\n\n<p>hello</p>\n";
        let clueweb = format!(
            "WARC/0.18\nWARC-Type: response\nWARC-Target-URI: http://example.org/\nContent-Type: application/http;msgtype=response\nWARC-Identified-Payload-Type: \nContent-Length: {}\nWARC-Date: 2009-03-65T08:43:19-0800\nWARC-TREC-ID: clueweb09-en0000-00-00000\n\n{http}\n",
            http.len()
        );
        let bytes = [
            clueweb.into_bytes(),
            String::from_utf8(record_bytes(1, "one-oh")).unwrap().replacen("WARC/1.1", "WARC/1.0", 1).into_bytes(),
            record_bytes(2, "one-one"),
        ]
        .concat();
        for gz in [false, true] {
            let (rs, errs) = from_bytes(if gz { gzip(&bytes) } else { bytes.clone() }).read_all();
            assert!(errs.is_empty(), "{errs:?}");
            let versions: Vec<&str> = rs.iter().map(|r| r.version.as_str()).collect();
            assert_eq!(versions, ["WARC/0.18", "WARC/1.0", "WARC/1.1"]);
            assert_eq!(rs[0].body, http.as_bytes());
            assert_eq!(rs[0].header("WARC-Identified-Payload-Type"), Some(""));
            assert_eq!(rs[0].header("WARC-TREC-ID"), Some("clueweb09-en0000-00-00000"));
            assert_eq!((rs[0].warc_type(), rs[0].target_uri()), ("response", Some("http://example.org/")));
            assert_eq!(rs[1].body, b"one-oh");
            assert!(rs.iter().all(|r| !r.truncated));
        }
    }

    #[test]
    fn a_gzip_member_cut_short_keeps_the_records_before_the_cut() {
        // Bodies that compress little, so that a cut in the compressed bytes lands where it is aimed.
        let body = |i: usize| -> String { (0..400).map(|j| format!("{:x} ", (j * 2_654_435_761 + i * 97) % 1_000_003)).collect() };
        let recs: Vec<Vec<u8>> = (0..3).map(|i| record_bytes(i, &body(i))).collect();
        // Whole-file gzip cut inside the third record: two whole records, then the third
        // marked truncated, then the error at the member's offset (0).
        let whole = gzip(&recs.concat());
        for cut in [whole.len() - 30, whole.len() * 3 / 4] {
            let (rs, errs) = from_bytes(whole[..cut].to_vec()).read_all();
            assert_eq!(rs.len(), 3, "cut at {cut}: {errs:?}");
            for (i, r) in rs.iter().take(2).enumerate() {
                assert!(!r.truncated);
                assert_eq!(r.body, body(i).into_bytes());
            }
            assert!(rs[2].truncated && rs[2].body.len() < body(2).len() && body(2).as_bytes().starts_with(&rs[2].body));
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].offset, 0);
            assert!(errs[0].message.contains("gzip member cut short") && errs[0].message.contains("truncated"), "{}", errs[0].message);
            assert!(errs[0].message.contains("2 record(s) read whole from this member"), "{}", errs[0].message);
        }
        // One member per record (Common Crawl), the last member cut: offsets stay the members'.
        let members: Vec<Vec<u8>> = recs.iter().map(|r| gzip(r)).collect();
        let mut bytes = members.concat();
        bytes.truncate(bytes.len() - members[2].len() / 2);
        let (rs, errs) = from_bytes(bytes).read_all();
        assert_eq!(
            rs.iter().map(|r| (r.offset, r.truncated)).collect::<Vec<_>>(),
            [(0, false), (members[0].len() as u64, false), ((members[0].len() + members[1].len()) as u64, true)]
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].offset, (members[0].len() + members[1].len()) as u64);
        // Cut inside the third member's headers: two records and the error, nothing marked.
        let mut bytes = members.concat();
        bytes.truncate(members[0].len() + members[1].len() + 20);
        let (rs, errs) = from_bytes(bytes).read_all();
        assert_eq!(rs.len(), 2);
        assert!(rs.iter().all(|r| !r.truncated));
        assert_eq!(errs.len(), 1, "{errs:?}");
    }
}
