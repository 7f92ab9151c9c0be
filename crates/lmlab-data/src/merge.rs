//! `lmlab data merge`: combines the outputs of `prepare --shard i/n` runs into one, with
//! deduplication across parts, the step a cluster job runs after its array of prepare jobs.
//!
//! Parts are read in the order given (give them as 0/n, 1/n, ...). Each part already removed
//! its own duplicates; the merge checks every kept document, in order, against the documents
//! kept before it in earlier parts, using the dedup keys that prepare stored in `kept.jsonl.gz`
//! (and, for near duplicates a part removed, in `rejected.jsonl.gz`), so no text is re-read. Because parts are contiguous runs of the input files, the merged
//! result removes exactly the exact duplicates a single run over all inputs removes; near
//! duplicates can differ slightly, since MinHash similarity is not transitive.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::dedup::{Deduplicator, Verdict};
use crate::prepare::{gz_writer, read_gz_lines, write_outputs, KeptDoc, Manifest, RejectedDoc, ShardWriter};
use crate::shards::Shard;

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (is {} a finished `data prepare` output?)", path.display(), dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not an lmlab data manifest", path.display()))
}

/// Merges part outputs into `out`; returns the merged manifest.
pub fn merge(parts: &[PathBuf], out: &Path, shard_tokens: usize, mut progress: impl FnMut(&Path)) -> Result<Manifest> {
    if parts.is_empty() {
        bail!("merge needs at least one part folder");
    }
    let manifests = parts.iter().map(|p| read_manifest(p)).collect::<Result<Vec<_>>>()?;
    let first = &manifests[0];
    let first_config = serde_json::to_value(&first.config)?;
    for (m, p) in manifests.iter().zip(parts).skip(1) {
        if serde_json::to_value(&m.config)? != first_config {
            bail!(
                "{}: its pipeline config differs from {}'s; parts of one crawl must use the same config",
                p.display(),
                parts[0].display()
            );
        }
        if m.tokenizer_vocab_size != first.tokenizer_vocab_size {
            bail!(
                "{}: tokenizer vocabulary {} differs from {}'s {}",
                p.display(),
                m.tokenizer_vocab_size,
                parts[0].display(),
                first.tokenizer_vocab_size
            );
        }
    }
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if let Some(p) = parts.iter().find(|p| same(p, out)) {
        bail!("--out {} is one of the parts; merge into a new folder", p.display());
    }
    crate::prepare::clear_previous_run(out)?;
    let mut merged = Manifest {
        inputs: Vec::new(),
        part: None,
        merged_from: parts.to_vec(),
        config: first.config.clone(),
        counts: Default::default(),
        errors_total: 0,
        errors: Vec::new(),
        documents_kept: 0,
        total_tokens: 0,
        tokens_by_language: BTreeMap::new(),
        documents_by_source: BTreeMap::new(),
        shards: Vec::new(),
        dedup_index_bytes: 0,
        tokenizer_vocab_size: first.tokenizer_vocab_size,
        removal_examples: BTreeMap::new(),
    };
    let mut dedup = Deduplicator::new(first.config.minhash.clone());
    let mut writer = ShardWriter::new(out, first.tokenizer_vocab_size as u32, shard_tokens);
    let mut kept_out = gz_writer(&out.join("kept.jsonl.gz"))?;
    let mut rejected_out = gz_writer(&out.join("rejected.jsonl.gz"))?;
    let mut next_id = 0u64;
    let mut tokens = Vec::new();
    for (m, dir) in manifests.iter().zip(parts) {
        progress(dir);
        merged.inputs.extend(m.inputs.iter().cloned());
        merged.counts.add(&m.counts);
        merged.errors_total += m.errors_total;
        merged.errors.extend(m.errors.iter().take(1000usize.saturating_sub(merged.errors.len())).cloned());
        for (rule, ex) in &m.removal_examples {
            let mine = merged.removal_examples.entry(rule.clone()).or_default();
            mine.extend(ex.iter().take(3usize.saturating_sub(mine.len())).cloned());
        }
        for line in read_gz_lines::<RejectedDoc>(&dir.join("rejected.jsonl.gz"))? {
            let mut line = line?;
            if let Some(key) = line.exact_key {
                if !dedup.remember_exact(key, next_id) {
                    // Its part saw only a near twin; an earlier part has the same text, and
                    // one run over everything would have called it an exact duplicate.
                    let dedup_counts = merged.counts.removed.get_mut("dedup").context("a dedup rejection its manifest does not count")?;
                    *dedup_counts.get_mut("near_duplicate").context("a near duplicate its manifest does not count")? -= 1;
                    *dedup_counts.entry("exact_duplicate".into()).or_default() += 1;
                    line.rule = "exact_duplicate".into();
                    line.exact_key = None;
                }
                next_id += 1;
            }
            writeln!(rejected_out, "{}", serde_json::to_string(&line)?)?;
        }
        let shards = m.shards.iter().map(|(name, _)| Shard::open(&dir.join(name))).collect::<Result<Vec<_>>>()?;
        for doc in read_gz_lines::<KeptDoc>(&dir.join("kept.jsonl.gz"))? {
            let doc = doc?;
            let id = next_id;
            next_id += 1;
            let rule = match dedup.check_keys(id, &doc.keys) {
                Verdict::Unique => None,
                Verdict::ExactDuplicate { .. } => Some("exact_duplicate"),
                Verdict::NearDuplicate { .. } => Some("near_duplicate"),
            };
            if let Some(rule) = rule {
                // Kept by its part, a duplicate of an earlier part's document: undo its counts.
                let c = &mut merged.counts;
                c.kept -= 1;
                *c.kept_by_language.get_mut(&doc.lang).context("kept.jsonl.gz names a language its manifest does not count")? -= 1;
                c.pii.sub(&doc.pii);
                c.reject("dedup", rule);
                let ex = merged.removal_examples.entry(format!("dedup/{rule}")).or_default();
                if ex.len() < 3 {
                    ex.push(doc.url.clone().unwrap_or_else(|| doc.id.clone()));
                }
                let exact_key = (rule == "near_duplicate").then_some(doc.keys.exact);
                let line = RejectedDoc {
                    id: doc.id,
                    url: doc.url,
                    file: doc.file,
                    offset: doc.offset,
                    stage: "dedup".into(),
                    rule: rule.into(),
                    exact_key,
                };
                writeln!(rejected_out, "{}", serde_json::to_string(&line)?)?;
                continue;
            }
            let shard = shards
                .get(doc.shard)
                .with_context(|| format!("{}: kept.jsonl.gz names shard {} of {}", dir.display(), doc.shard, shards.len()))?;
            if doc.start + doc.tokens > shard.len() {
                bail!("{}: kept document {} lies past the end of shard {}", dir.display(), doc.id, doc.shard);
            }
            tokens.clear();
            shard.read_into(doc.start, doc.tokens, &mut tokens);
            let (new_shard, start) = writer.push(&tokens)?;
            merged.total_tokens += tokens.len() as u64;
            *merged.tokens_by_language.entry(doc.lang.clone()).or_default() += tokens.len() as u64;
            *merged.documents_by_source.entry(doc.file.display().to_string()).or_default() += 1;
            let line = KeptDoc { shard: new_shard, start, ..doc };
            writeln!(kept_out, "{}", serde_json::to_string(&line)?)?;
        }
    }
    merged.counts.kept_by_language.retain(|_, n| *n > 0);
    merged.documents_kept = merged.counts.kept;
    writer.flush()?;
    merged.shards = writer.shards;
    merged.dedup_index_bytes = dedup.index_bytes();
    kept_out.finish()?.flush()?;
    rejected_out.finish()?.flush()?;
    write_outputs(out, &merged)?;
    Ok(merged)
}
