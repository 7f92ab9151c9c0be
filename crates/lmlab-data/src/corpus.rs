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
/// crawls and JSONL are turned into their documents' main text, written to one temporary file
/// beside `out` (the tokenizer's path). Unreadable records go to `on_error` and are skipped.
/// Crawl or JSONL inputs with no text at all are an error.
pub fn training_files(inputs: &[PathBuf], out: &Path, mut on_error: impl FnMut(&InputError)) -> Result<TrainingCorpus> {
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
    let filters = Filters::new(PipelineConfig::standard(), UrlBlocklist::default());
    let mut counts = CorpusCounts { files: documents.len(), documents: 0, bytes: 0, without_text: 0 };
    {
        let mut w = BufWriter::new(corpus.as_file_mut());
        for file in &documents {
            for item in input::read_file(file) {
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
                        on_error(&e);
                        counts.without_text += 1;
                    }
                }
            }
        }
        w.flush()?;
    }
    if counts.documents == 0 {
        anyhow::bail!("no text found in the {} crawl/JSONL file(s) given ({} records without text)", documents.len(), counts.without_text);
    }
    files.push(corpus.path().to_path_buf());
    Ok(TrainingCorpus { files, counts: Some(counts), _temporary: Some(corpus) })
}
