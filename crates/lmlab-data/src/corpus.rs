//! The text a tokenizer is trained on: plain text files as they are, and the documents of
//! crawls and JSONL files (what `data prepare` reads) as their main text, web pages through the
//! same extractor as the pipeline, so that no markup reaches the vocabulary.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::input::{self, Format, InputError, InputItem};
use crate::pipeline::{Filters, PipelineConfig};
use crate::urlfilter::UrlBlocklist;

/// What [`training_files`] read from crawls and JSONL files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorpusCounts {
    /// Crawl and JSONL files read.
    pub files: usize,
    /// Documents whose main text was written.
    pub documents: usize,
    /// Bytes of that text.
    pub bytes: usize,
    /// Records with no text (or unreadable ones, each also passed to `on_error`).
    pub without_text: usize,
}

/// The files to train on, and the temporary file holding the documents' text (removed when
/// this value drops).
pub struct TrainingCorpus {
    pub files: Vec<PathBuf>,
    /// Counts of the documents read, when there were crawl or JSONL inputs.
    pub counts: Option<CorpusCounts>,
    _temporary: Option<tempfile::NamedTempFile>,
}

/// The files the trainer reads for `inputs` (files or folders). Plain text goes as it is;
/// crawls and JSON records (JSON Lines, or a JSON array) are turned into their documents' main
/// text, written to one temporary file beside `out` (the tokenizer's path); a record's text is
/// read from `text_fields` (see [`crate::input::read_file_with`]). The first few unreadable
/// records go to `on_error`; all are counted and skipped. Crawl or JSON inputs with no text at
/// all are an error that quotes the first problem.
pub fn training_files(
    inputs: &[PathBuf],
    out: &Path,
    text_fields: &[String],
    mut on_error: impl FnMut(&InputError),
) -> Result<TrainingCorpus> {
    let (mut files, documents): (Vec<PathBuf>, Vec<PathBuf>) =
        input::expand(inputs)?.into_iter().partition(|f| input::format_of(f) == Format::Text);
    if documents.is_empty() {
        return Ok(TrainingCorpus { files, counts: None, _temporary: None });
    }
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut corpus = tempfile::Builder::new()
        .prefix(".tokenizer-corpus-")
        .suffix(".txt")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let filters = Filters::new(PipelineConfig::standard(), UrlBlocklist::default())?;
    let mut counts = CorpusCounts { files: documents.len(), documents: 0, bytes: 0, without_text: 0 };
    let mut first_error: Option<InputError> = None;
    {
        let mut w = BufWriter::new(corpus.as_file_mut());
        for file in &documents {
            for item in input::read_file_with(file, text_fields) {
                match item {
                    InputItem::Doc(doc) => match filters.main_text(&doc) {
                        Ok(text) if !text.trim().is_empty() => {
                            w.write_all(text.as_bytes())?;
                            w.write_all(b"\n\n")?;
                            counts.documents += 1;
                            counts.bytes += text.len();
                        }
                        _ => counts.without_text += 1,
                    },
                    InputItem::Error(e) => {
                        if counts.without_text < 5 {
                            on_error(&e);
                        }
                        first_error.get_or_insert(e);
                        counts.without_text += 1;
                    }
                }
            }
        }
        w.flush()?;
    }
    if counts.documents == 0 {
        let first = first_error.map(|e| format!("; the first: {}: {}", e.file.display(), e.message)).unwrap_or_default();
        anyhow::bail!(
            "no text found in the {} crawl/JSON file(s) given ({} records without text{first})",
            documents.len(),
            counts.without_text
        );
    }
    files.push(corpus.path().to_path_buf());
    Ok(TrainingCorpus { files, counts: Some(counts), _temporary: Some(corpus) })
}
