//! WARC files from ../shared/data read against reference figures from warcio (the Python
//! reader the Common Crawl tools use; counts, types and offsets as it reported them for these
//! files). Where we read a file differently from warcio, the test says how and why.

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::path::{Path, PathBuf};

use lmlab_data::warc::{open, ReadError, Record};

fn data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/warc");
    if p.is_dir() {
        Some(p)
    } else {
        prereq::missing(&format!("{} is absent", p.display()));
        None
    }
}

fn read(path: &Path) -> (Vec<Record>, Vec<ReadError>) {
    open(path).unwrap().read_all()
}

fn offsets(r: &[Record]) -> Vec<u64> {
    r.iter().map(|r| r.offset).collect()
}

fn count(r: &[Record], ty: &str) -> usize {
    r.iter().filter(|r| r.warc_type() == ty).count()
}

#[test]
fn records_and_offsets_match_warcio() {
    let Some(dir) = data() else { return };
    // (file, offsets warcio reports)
    let cases: [(&str, &[u64]); 10] = [
        ("edge-cases/example.warc", &[0, 488, 1197, 2566, 3370, 4316]),
        ("edge-cases/example.warc.gz", &[0, 353, 784, 2012, 2621, 3207]),
        ("edge-cases/example-digest.warc", &[0, 922, 1840, 2758]),
        ("edge-cases/example-iana.org-chunked.warc", &[0, 405, 8379]),
        ("edge-cases/example-resource.warc.gz", &[0, 361, 802]),
        ("edge-cases/example-space-in-target-uri.warc.gz", &[0, 241]),
        ("edge-cases/example-wget-bad-target-uri.warc.gz", &[0, 410, 824, 1978, 2295, 2681]),
        ("edge-cases/post-test.warc.gz", &[0, 720, 1196, 1919, 2395, 3118]),
        ("whirlwind.warc.gz", &[0, 516, 1023, 18374]),
        ("dolma-sample-0000.warc.gz", &[0, 441, 865, 15477, 15904, 24476, 24881, 30098]),
    ];
    for (name, want) in cases {
        let (recs, errs) = read(&dir.join(name));
        assert!(errs.is_empty(), "{name}: {errs:?}");
        assert_eq!(&offsets(&recs)[..want.len()], want, "{name}");
    }
    let (ex, _) = read(&dir.join("edge-cases/example.warc"));
    assert_eq!((count(&ex, "warcinfo"), count(&ex, "response"), count(&ex, "request"), count(&ex, "revisit")), (2, 1, 2, 1));
    let (dolma, _) = read(&dir.join("dolma-sample-0000.warc.gz"));
    assert_eq!(dolma.len(), 48);
    assert_eq!(count(&dolma, "response"), 22, "all 22 responses of the dolma sample");
    let (ww, _) = read(&dir.join("whirlwind.warc.gz"));
    let resp = ww.iter().find(|r| r.warc_type() == "response").unwrap();
    assert!(resp.target_uri().unwrap().contains("wikipedia.org"), "{:?}", resp.target_uri());
    assert!(resp.body.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&resp.body[..40]));
    // The space in this target URI is kept as written (warcio percent-encodes it on request).
    let (sp, _) = read(&dir.join("edge-cases/example-space-in-target-uri.warc.gz"));
    assert!(sp[1].target_uri().unwrap().contains(' '));
}

#[test]
fn damaged_files_keep_what_precedes_the_damage() {
    let Some(dir) = data() else { return };
    // Garbage after the third record: warcio warns and goes on, and so do we, with an error
    // naming the offset of the garbage.
    let (recs, errs) = read(&dir.join("edge-cases/example-trunc.warc"));
    assert_eq!(offsets(&recs), vec![0, 488, 1197, 2566]);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].offset, 2560);
    // A record whose body runs on into the next gzip member: warcio stops after the first
    // record; we read the members as one stream, so both records come out whole.
    let (recs, errs) = read(&dir.join("edge-cases/example-wrong-chunks.warc.gz"));
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(offsets(&recs), vec![0, 1130]);
    assert!(String::from_utf8_lossy(&recs[0].body).trim_end().ends_with("</html>"), "the body runs to the end of the page");
    // Whole-file gzip (one member for all records): warcio refuses after the first record; the
    // data pipeline must read these, and all six records are there.
    for name in ["edge-cases/example-bad-non-chunked.warc.gz", "edge-cases/example-bad.warc.gz.bad"] {
        let (recs, errs) = read(&dir.join(name));
        assert!(errs.is_empty(), "{name}: {errs:?}");
        assert_eq!(recs.len(), 6, "{name}");
    }
    // ARC files (WARC's predecessor), against warcio's ArchiveIterator(arc2warc=True): record
    // types, offsets (gzip: member offsets), target URIs (spaces as %20) and payload sizes.
    // bad.arc has lengths "-1" and "abc", which warcio and we read as empty records.
    use lmlab_data::http::parse_response;
    for (name, offsets, payload) in [
        ("edge-cases/example.arc", vec![0, 151], Some(1270)),
        ("edge-cases/example.arc.gz", vec![0, 171], Some(1270)),
        ("edge-cases/example-space-in-url.arc", vec![0, 151], Some(1271)),
        ("edge-cases/bad.arc", vec![0, 134, 202, 262], None),
    ] {
        let (recs, errs) = read(&dir.join(name));
        if name.contains("space-in-url") {
            // Its record declares 1591 bytes and has 1579 (line endings without \r): kept, as
            // warcio keeps it, and the shortfall reported.
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].offset, 151);
            assert!(errs[0].message.contains("1579 of 1591"), "{}", errs[0].message);
        } else {
            assert!(errs.is_empty(), "{name}: {errs:?}");
        }
        assert_eq!(self::offsets(&recs), offsets, "{name}");
        assert_eq!(recs[0].warc_type(), "warcinfo", "{name}");
        assert!(recs[1..].iter().all(|r| r.warc_type() == "response"), "{name}");
        match payload {
            Some(size) => {
                let resp = parse_response(&recs[1].body).unwrap();
                assert_eq!((resp.status, resp.payload.len()), (200, size), "{name}");
                assert_eq!(recs[1].header("WARC-Date"), Some("2014-02-16T05:02:21Z"));
            }
            None => assert!(recs[1..].iter().all(|r| r.body.len() <= 1), "{name}"),
        }
    }
    let (sp, _) = read(&dir.join("edge-cases/example-space-in-url.arc"));
    assert_eq!(
        sp[1].target_uri(),
        Some("http://example.com/index.cfm?FuseAction=Email&EmailTitle=Examples%20From%20The%20Live%20Web&IsPopUp=False")
    );
    let (ex, _) = read(&dir.join("edge-cases/example.arc"));
    assert_eq!(ex[1].target_uri(), Some("http://example.com/"));
}

#[test]
fn http_payloads_match_warcio() {
    use lmlab_data::http::{decode_text, parse_response};
    let Some(dir) = data() else { return };
    // Payload sizes warcio's content_stream() gives (chunking and content encoding undone).
    let dolma: [usize; 22] = [
        87229, 27203, 11123, 6131, 9346, 14041, 15491, 56016, 25178, 24670, 8984, 24922, 12293, 19544, 30610, 97384, 8999, 12024, 20777,
        15973, 11562, 202463,
    ];
    let sizes = |name: &str| -> Vec<usize> {
        read(&dir.join(name))
            .0
            .iter()
            .filter(|r| r.warc_type() == "response")
            .map(|r| parse_response(&r.body).unwrap().payload.len())
            .collect()
    };
    assert_eq!(sizes("dolma-sample-0000.warc.gz"), dolma);
    assert_eq!(sizes("whirlwind.warc.gz"), vec![72848]);
    assert_eq!(sizes("edge-cases/example-iana.org-chunked.warc"), vec![7223]);
    // The whirlwind page is an Aragonese Wikipedia article in UTF-8.
    let (ww, _) = read(&dir.join("whirlwind.warc.gz"));
    let resp = parse_response(&ww.iter().find(|r| r.warc_type() == "response").unwrap().body).unwrap();
    let (text, enc) = decode_text(&resp.payload, resp.content_type());
    assert_eq!(enc, "UTF-8");
    assert!(text.contains("<html") && text.contains("Wikipedia"), "{}", &text[..200]);
}

#[test]
fn whirlwind_main_text_against_common_crawls_wet() {
    use lmlab_data::extract::main_text;
    use lmlab_data::http::{decode_text, parse_response};
    let Some(dir) = data() else { return };
    let (ww, _) = read(&dir.join("whirlwind.warc.gz"));
    let resp = parse_response(&ww.iter().find(|r| r.warc_type() == "response").unwrap().body).unwrap();
    let (html, _) = decode_text(&resp.payload, resp.content_type());
    let ours = main_text(&html);
    let (wet, _) = read(&dir.join("whirlwind.warc.wet.gz"));
    let cc = String::from_utf8(wet.iter().find(|r| r.warc_type() == "conversion").unwrap().body.clone()).unwrap();

    // Precision: what we keep is text Common Crawl also found on the page.
    let cc_words: std::collections::HashSet<&str> = cc.split_whitespace().collect();
    let our_words: Vec<&str> = ours.split_whitespace().collect();
    let shared = our_words.iter().filter(|w| cc_words.contains(*w)).count();
    let precision = shared as f64 / our_words.len() as f64;
    if std::env::var_os("LMLAB_SHOW").is_some() {
        eprintln!("{ours}");
    }
    eprintln!(
        "ours {} words / {} chars, Common Crawl's {} words / {} chars; {:.1}% of ours in theirs",
        our_words.len(),
        ours.len(),
        cc.split_whitespace().count(),
        cc.len(),
        precision * 100.0
    );
    assert!(precision >= 0.95, "{:.3}", precision);

    // Recall of the article: every paragraph of the body is in ours.
    let doc = scraper::Html::parse_document(&html);
    let sel = scraper::Selector::parse("#mw-content-text p").unwrap();
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let ours_flat = squash(&ours);
    let mut paragraphs = 0;
    for p in doc.select(&sel) {
        let text = squash(&p.text().collect::<String>());
        if text.is_empty() {
            continue;
        }
        paragraphs += 1;
        assert!(ours_flat.contains(&text), "paragraph missing: {text:?}");
    }
    assert!(paragraphs >= 4, "only {paragraphs} paragraphs found");

    // The navigation and the 32 language links are gone, so ours is clearly shorter.
    for gone in [
        "Menú principal",
        "Ferramientas personals",
        "32 idiomas",
        "Brezhoneg",
        "Winaray",
        "Нохчийн",
        "Descargar como PDF",
        "Politica de privacidat",
    ] {
        assert!(!ours.contains(gone), "{gone:?} is still there");
        assert!(cc.contains(gone), "{gone:?} should be in Common Crawl's text");
    }
    assert!((ours.len() as f64) < 0.8 * cc.len() as f64, "ours {} vs theirs {} chars", ours.len(), cc.len());

    // Aragonese is not among whatlang's languages; like Common Crawl's own identifier
    // (WARC-Identified-Content-Language: spa) it takes the page for Spanish.
    assert_eq!(wet.iter().find(|r| r.warc_type() == "conversion").unwrap().header("WARC-Identified-Content-Language"), Some("spa"));
    assert_eq!(lmlab_data::langid::detect(&ours).unwrap().lang, "spa");
}

#[test]
fn input_stream_reads_warc_responses_and_wet_conversions() {
    use lmlab_data::input::{read_file, Content, InputItem};
    let Some(dir) = data() else { return };
    let docs = |name: &str| -> Vec<lmlab_data::input::Doc> {
        read_file(&dir.join(name)).filter_map(|i| if let InputItem::Doc(d) = i { Some(d) } else { None }).collect()
    };
    let dolma = docs("dolma-sample-0000.warc.gz");
    assert_eq!(dolma.len(), 22, "one document per response record");
    assert!(dolma.iter().all(|d| matches!(d.content, Content::Http(_)) && d.url.is_some()));
    let wet = docs("whirlwind.warc.wet.gz");
    assert_eq!(wet.len(), 1);
    assert_eq!(wet[0].url.as_deref(), Some("https://an.wikipedia.org/wiki/Escopete"));
    assert!(matches!(&wet[0].content, Content::Text(t) if t.contains("Escopete ye un municipio")));
}

#[test]
fn dolma_sample_through_the_pipeline() {
    use lmlab_data::input::{read_file, InputItem};
    use lmlab_data::pipeline::{Outcome, Pipeline, PipelineConfig};
    use lmlab_data::urlfilter::UrlBlocklist;
    let Some(dir) = data() else { return };
    let mut p = Pipeline::new(PipelineConfig::standard(), UrlBlocklist::default()).unwrap();
    let mut kept = Vec::new();
    for item in read_file(&dir.join("dolma-sample-0000.warc.gz")) {
        if let InputItem::Doc(d) = item {
            if let Outcome::Kept { text, .. } = p.process(&d) {
                kept.push(text);
            }
        }
    }
    let c = &p.counts;
    eprintln!("{}", serde_json::to_string_pretty(c).unwrap());
    assert_eq!(c.documents, 22);
    let removed: u64 = c.removed.values().flat_map(|r| r.values()).sum();
    assert_eq!(c.kept + removed, 22, "every document is kept or removed by a named rule");
    assert_eq!(kept.len() as u64, c.kept);
    assert!(c.kept >= 1, "some pages of the sample are clean English prose");
}
