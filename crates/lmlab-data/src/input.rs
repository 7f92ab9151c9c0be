//! The pipeline's inputs, whatever their format, as one stream of documents: WARC response
//! records (HTML to extract), WET conversion records (text already extracted), JSONL lines
//! (`{"text": ..., "id"?, "url"?}`, plain, `.gz` or `.zst`), and plain-text files, one document
//! each. Folders are walked recursively in sorted order, so the same inputs always give the same
//! stream. A record or line that cannot be read becomes an [`InputItem::Error`] with its file
//! and byte offset; reading goes on with the next one.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::warc;

/// What a document's text still needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Content {
    /// A raw HTTP response (headers and body), from a WARC response record.
    Http(Vec<u8>),
    /// Text ready for filtering.
    Text(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Doc {
    /// The record id, the JSONL "id", or "file:line".
    pub id: String,
    pub url: Option<String>,
    pub content: Content,
    pub file: PathBuf,
    /// Byte offset of the record or line in its file.
    pub offset: u64,
    /// The file ends inside this WARC record (an interrupted download): the pipeline rejects
    /// it as `extract/truncated_record` rather than take a page cut at a random point.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputError {
    pub file: PathBuf,
    pub offset: u64,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum InputItem {
    Doc(Doc),
    Error(InputError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    Warc,
    Jsonl,
    Text,
}

fn name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default()
}

/// The format of a file, from its name (compression suffixes ignored).
pub fn format_of(path: &Path) -> Format {
    let name = name_of(path);
    let base = name.trim_end_matches(".gz").trim_end_matches(".zst");
    if base.ends_with(".warc") || base.ends_with(".wet") || base.ends_with(".arc") || name.contains(".warc.") {
        Format::Warc
    } else if base.ends_with(".jsonl") || base.ends_with(".json") || base.ends_with(".ndjson") {
        Format::Jsonl
    } else {
        Format::Text
    }
}

/// Every input file under `paths` (files as given, folders walked), sorted within each folder.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("listing {}", p.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()?;
            entries.sort();
            out.extend(expand(&entries)?);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            anyhow::bail!("input {} does not exist", p.display());
        }
    }
    Ok(out)
}

/// A reader that decompresses by the file's suffix (`.gz`, `.zst`; anything else is read as is).
pub(crate) fn open_decompressed(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = name_of(path);
    Ok(if name.ends_with(".gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(f))))
    } else if name.ends_with(".zst") {
        Box::new(BufReader::new(zstd::stream::read::Decoder::new(f).with_context(|| format!("{}: not zstd", path.display()))?))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// The documents of one file.
pub fn read_file(path: &Path) -> Box<dyn Iterator<Item = InputItem>> {
    read_file_with(path, &["text".to_string()])
}

/// [`read_file`], taking a JSON record's text from `text_fields` (strings, or arrays of strings
/// joined by line breaks; several fields joined by line breaks) instead of `"text"`. A `.json`
/// file that holds one array of records is read record by record too.
pub fn read_file_with(path: &Path, text_fields: &[String]) -> Box<dyn Iterator<Item = InputItem>> {
    let path = path.to_path_buf();
    let fields = std::sync::Arc::new(text_fields.to_vec());
    let err = |path: &Path, offset: u64, message: String| InputItem::Error(InputError { file: path.to_path_buf(), offset, message });
    match format_of(&path) {
        Format::Warc => match warc::open(&path) {
            Err(e) => Box::new(std::iter::once(err(&path, 0, format!("{e:#}")))),
            Ok(reader) => Box::new(reader.filter_map(move |item| match item {
                warc::Item::Error(e) => Some(err(&path, e.offset, e.message)),
                warc::Item::Record(r) => {
                    let content = match r.warc_type() {
                        "response" => Content::Http(r.body.clone()),
                        "conversion" => Content::Text(String::from_utf8_lossy(&r.body).into_owned()),
                        _ => return None,
                    };
                    // ARC records have no id: name them by file and offset.
                    let id = r.record_id().map(String::from).unwrap_or_else(|| format!("{}:{}", path.display(), r.offset));
                    let (url, truncated) = (r.target_uri().map(String::from), r.truncated);
                    Some(InputItem::Doc(Doc { id, url, content, file: path.clone(), offset: r.offset, truncated }))
                }
            })),
        },
        Format::Jsonl => match open_decompressed(&path) {
            Err(e) => Box::new(std::iter::once(err(&path, 0, format!("{e:#}")))),
            Ok(mut reader) => match reader.fill_buf().map(|b| b.iter().find(|c| !c.is_ascii_whitespace()).copied()) {
                // One JSON array of records (not JSON Lines).
                Ok(Some(b'[')) => Box::new(json_array(reader, path, fields).into_iter()),
                _ => Box::new(JsonlDocs { reader, path, offset: 0, line: 0, failed: false, fields }),
            },
        },
        Format::Text => {
            let read = open_decompressed(&path).and_then(|mut r| {
                let mut bytes = Vec::new();
                r.read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
                Ok(bytes)
            });
            Box::new(std::iter::once(match read {
                Err(e) => err(&path, 0, format!("{e:#}")),
                Ok(bytes) => InputItem::Doc(Doc {
                    id: path.display().to_string(),
                    url: None,
                    content: Content::Text(String::from_utf8_lossy(&bytes).into_owned()),
                    file: path.clone(),
                    offset: 0,
                    truncated: false,
                }),
            }))
        }
    }
}

struct JsonlDocs {
    reader: Box<dyn BufRead>,
    path: PathBuf,
    /// Offset in the decompressed stream of the next line.
    offset: u64,
    line: usize,
    failed: bool,
    /// Where a record's text is.
    fields: std::sync::Arc<Vec<String>>,
}

/// The text of a JSON record from `fields` (see [`read_file_with`]), or an error naming the
/// fields the record has.
fn record_text(v: &serde_json::Value, fields: &[String]) -> Result<String, String> {
    let mut parts = Vec::new();
    for f in fields {
        match v.get(f) {
            Some(serde_json::Value::String(s)) => parts.push(s.clone()),
            Some(serde_json::Value::Array(items)) if items.iter().all(|i| i.is_string()) => {
                parts.push(items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join("\n"));
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        let found: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        let wanted = fields.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "no text in {wanted} (a string or an array of strings); the record's fields: {} (choose with --text-field)",
            if found.is_empty() { "none".into() } else { found.join(", ") }
        ));
    }
    Ok(parts.join("\n"))
}

/// A record's document: its text, and its `id` and `url` when present (else `file:n`).
fn record_doc(v: &serde_json::Value, fields: &[String], path: &Path, n: usize, offset: u64) -> Result<Doc, String> {
    let text = record_text(v, fields)?;
    let id = match v.get("id") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => format!("{}:{}", path.display(), n),
    };
    let url = v.get("url").and_then(|u| u.as_str()).map(String::from);
    Ok(Doc { id, url, content: Content::Text(text), file: path.to_path_buf(), offset, truncated: false })
}

/// The records of a file holding one JSON array (read whole: such files are small corpora, not
/// crawls). Records are numbered from 1; their offsets are 0.
fn json_array(reader: Box<dyn BufRead>, path: PathBuf, fields: std::sync::Arc<Vec<String>>) -> Vec<InputItem> {
    let err = |message: String| InputItem::Error(InputError { file: path.clone(), offset: 0, message });
    let records: Vec<serde_json::Value> = match serde_json::from_reader(reader) {
        Ok(r) => r,
        Err(e) => return vec![err(format!("not a JSON array of records: {e}"))],
    };
    records
        .iter()
        .enumerate()
        .map(|(i, v)| match record_doc(v, &fields, &path, i + 1, 0) {
            Ok(d) => InputItem::Doc(d),
            Err(m) => err(format!("record {}: {m}", i + 1)),
        })
        .collect()
}

impl Iterator for JsonlDocs {
    type Item = InputItem;

    fn next(&mut self) -> Option<InputItem> {
        loop {
            if self.failed {
                return None;
            }
            let mut buf = Vec::new();
            let at = self.offset;
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.offset += n as u64;
                    self.line += 1;
                }
                Err(e) => {
                    self.failed = true;
                    return Some(InputItem::Error(InputError { file: self.path.clone(), offset: at, message: e.to_string() }));
                }
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let error = |message: String| Some(InputItem::Error(InputError { file: self.path.clone(), offset: at, message }));
            let v: serde_json::Value = match serde_json::from_slice(&buf) {
                Ok(v) => v,
                Err(e) => return error(format!("line {}: not JSON: {e}", self.line)),
            };
            return match record_doc(&v, &self.fields, &self.path, self.line, at) {
                Ok(d) => Some(InputItem::Doc(d)),
                Err(m) => error(format!("line {}: {m}", self.line)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(path: &Path) -> (Vec<Doc>, Vec<InputError>) {
        let (mut docs, mut errs) = (Vec::new(), Vec::new());
        for it in read_file(path) {
            match it {
                InputItem::Doc(d) => docs.push(d),
                InputItem::Error(e) => errs.push(e),
            }
        }
        (docs, errs)
    }

    #[test]
    fn json_arrays_and_other_text_fields_are_read_and_a_missing_field_names_those_found() {
        let dir = tempfile::tempdir().unwrap();
        let array = dir.path().join("poems.json");
        std::fs::write(
            &array,
            r#"[{"title": "A", "paragraphs": ["one", "two"]}, {"title": "B", "paragraphs": ["three"]}, {"title": "C"}]"#,
        )
        .unwrap();
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let items: Vec<InputItem> = read_file_with(&array, &fields(&["title", "paragraphs"])).collect();
        let texts: Vec<String> = items
            .iter()
            .filter_map(|i| if let InputItem::Doc(d) = i { Some(d.content.clone()) } else { None })
            .map(|c| match c {
                Content::Text(t) => t,
                Content::Http(_) => unreachable!(),
            })
            .collect();
        assert_eq!(texts, ["A\none\ntwo", "B\nthree", "C"]);
        // The default field is absent: each record is an error naming the fields it has.
        let errors: Vec<String> =
            read_file(&array).filter_map(|i| if let InputItem::Error(e) = i { Some(e.message) } else { None }).collect();
        assert_eq!(errors.len(), 3);
        assert!(errors[0].starts_with("record 1: no text in \"text\"") && errors[0].contains("fields: paragraphs, title"), "{}", errors[0]);
        // JSON Lines take the same fields.
        let lines = dir.path().join("x.jsonl");
        std::fs::write(&lines, "{\"body\": \"hi\"}\n{\"text\": \"no\"}\n").unwrap();
        let items: Vec<InputItem> = read_file_with(&lines, &fields(&["body"])).collect();
        assert!(matches!(&items[0], InputItem::Doc(d) if d.content == Content::Text("hi".into())));
        assert!(
            matches!(&items[1], InputItem::Error(e) if e.message.starts_with("line 2: no text in \"body\"") && e.message.contains("fields: text"))
        );
    }

    #[test]
    fn jsonl_in_every_compression_with_bad_lines_reported() {
        let dir = tempfile::tempdir().unwrap();
        let body = "{\"text\": \"first doc\", \"id\": \"a\", \"url\": \"https://x.example/1\"}\n\nnot json\n{\"id\": 5, \"text\": \"second\"}\n{\"no_text\": 1}\n{\"text\": \"third\"}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes()).unwrap();
        let zst = zstd::encode_all(body.as_bytes(), 3).unwrap();
        for (name, bytes) in [("d.jsonl", body.as_bytes().to_vec()), ("d.jsonl.gz", gz.finish().unwrap()), ("d.jsonl.zst", zst)] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let (docs, errs) = collect(&p);
            let texts: Vec<String> = docs
                .iter()
                .map(|d| match &d.content {
                    Content::Text(t) => t.clone(),
                    _ => panic!(),
                })
                .collect();
            assert_eq!(texts, vec!["first doc", "second", "third"], "{name}");
            assert_eq!(docs[0].id, "a");
            assert_eq!(docs[0].url.as_deref(), Some("https://x.example/1"));
            assert_eq!(docs[1].id, "5");
            assert!(docs[2].id.ends_with(":6"), "{}", docs[2].id);
            // Offsets point at the lines (in the decompressed stream).
            assert_eq!(
                errs.iter().map(|e| e.offset).collect::<Vec<_>>(),
                vec![body.find("not json").unwrap() as u64, body.find("{\"no_text").unwrap() as u64]
            );
            assert!(errs[0].message.contains("line 3"), "{}", errs[0].message);
        }
    }

    #[test]
    fn folders_expand_sorted_and_formats_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.txt"), "plain text file").unwrap();
        std::fs::write(dir.path().join("sub/a.jsonl"), "{\"text\": \"x\"}\n").unwrap();
        let files = expand(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["b.txt", "sub/a.jsonl"]);
        assert_eq!(format_of(Path::new("x.warc.gz")), Format::Warc);
        assert_eq!(format_of(Path::new("CC-MAIN-1.warc.wet.gz")), Format::Warc);
        assert_eq!(format_of(Path::new("x.jsonl.zst")), Format::Jsonl);
        assert_eq!(format_of(Path::new("book.txt")), Format::Text);
        let (docs, _) = collect(&dir.path().join("b.txt"));
        assert_eq!(docs[0].content, Content::Text("plain text file".into()));
        assert!(expand(&[dir.path().join("missing")]).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn a_cut_gzip_warc_gives_its_whole_records_and_a_truncated_one_marked() {
        let dir = tempfile::tempdir().unwrap();
        let record = |i: usize| {
            let page: String = (0..300).map(|j| format!("<p>{:x}</p>", (j * 2_654_435_761usize + i * 7_777_777) % 1_000_003)).collect();
            let http = format!("HTTP/1.0 200 OK\nContent-Type: text/html\n\n{page}");
            format!(
                "WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:r:{i}>\r\nContent-Length: {}\r\n\r\n{http}\r\n\r\n",
                http.len()
            )
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(format!("{}{}", record(0), record(1)).as_bytes()).unwrap();
        let mut bytes = gz.finish().unwrap();
        bytes.truncate(bytes.len() - 200);
        let p = dir.path().join("cut.warc.gz");
        std::fs::write(&p, bytes).unwrap();
        let (docs, errs) = collect(&p);
        assert_eq!(docs.iter().map(|d| (d.id.as_str(), d.truncated)).collect::<Vec<_>>(), [("<urn:r:0>", false), ("<urn:r:1>", true)]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("1 record(s) read whole"), "{}", errs[0].message);
    }
}
