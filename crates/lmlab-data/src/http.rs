//! The HTTP response inside a WARC `response` record: status, headers, and the payload with
//! `Transfer-Encoding: chunked` and `Content-Encoding` (gzip, deflate, br, zstd) undone; then the page's
//! text decoded with the charset the HTTP header or the page's `<meta>` names
//! (`encoding_rs`, the WHATWG decoders browsers use).
//!
//! Lenient like a browser: a chunked body that does not parse as chunks is kept raw, a charset
//! label nobody knows falls back to the next source. Errors are returned, never panics.

use std::io::Read;

use encoding_rs::Encoding;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body with transfer and content encodings removed.
    pub payload: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }
}

fn split_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.iter().position(|&b| b == b'\n')?;
    let line = &data[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, &data[end + 1..]))
}

/// Parses an HTTP/1.x response (a WARC response record's block). A block that starts with
/// markup instead of a status line is an HTTP/0.9 response, as early-1990s servers sent and
/// early ARC files hold: status 200, no headers, the whole block the payload.
pub fn parse_response(block: &[u8]) -> Result<HttpResponse, String> {
    if block.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
        return Ok(HttpResponse { status: 200, headers: Vec::new(), payload: block.to_vec() });
    }
    let (status_line, mut rest) = split_line(block).ok_or("no HTTP status line")?;
    let status_line = String::from_utf8_lossy(status_line);
    let mut parts = status_line.split_whitespace();
    let proto = parts.next().unwrap_or("");
    if !proto.starts_with("HTTP/") {
        return Err(format!("not an HTTP response: {:?}", status_line.chars().take(40).collect::<String>()));
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let Some((line, after)) = split_line(rest) else {
            // Headers without a blank line after them: no body.
            rest = &[];
            break;
        };
        rest = after;
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut resp = HttpResponse { status, headers, payload: Vec::new() };
    let chunked = resp.header("Transfer-Encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(rest).unwrap_or_else(|| rest.to_vec()) } else { rest.to_vec() };
    let encoding = resp.header("Content-Encoding").map(|e| e.trim().to_ascii_lowercase());
    resp.payload = match encoding {
        None => body,
        Some(e) => decode_content(&e, body)?,
    };
    Ok(resp)
}

/// Whether bytes read as text (HTML, or a page stored already decoded) rather than compressed
/// data: no control bytes but tab, line breaks, form feed and escape (ISO-2022) in the first 512.
fn looks_like_text(data: &[u8]) -> bool {
    !data[..data.len().min(512)].iter().any(|&b| matches!(b, 0..=8 | 0x0e..=0x1a | 0x1c..=0x1f))
}

/// Undoes a `Content-Encoding` (lower-cased), tolerating what crawls hold:
///
/// - a header that lies: many crawlers stored the body already decoded but kept the header, so
///   a gzip or zstd body without its magic bytes, and a deflate, br or unknown-encoding body
///   that fails to decode but reads as text, is taken as it is;
/// - a compressed body cut short (the download or the crawler's size limit stopped it): what
///   decodes before the cut is kept.
///
/// An error only when the body is neither decodable nor text.
fn decode_content(encoding: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
    // The decoded bytes, or what decoded before an error (None when nothing did).
    fn run(r: impl Read) -> Result<Vec<u8>, (Vec<u8>, String)> {
        let mut out = Vec::new();
        let mut r = r;
        match r.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err((out, e.to_string())),
        }
    }
    let result = match encoding {
        "" | "identity" | "none" => return Ok(body),
        "gzip" | "x-gzip" => {
            if !body.starts_with(&[0x1f, 0x8b]) {
                return Ok(body);
            }
            run(flate2::read::MultiGzDecoder::new(&body[..]))
        }
        "zstd" => {
            if !body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                return Ok(body);
            }
            run(zstd::stream::read::Decoder::new(&body[..]).map_err(|e| format!("Content-Encoding zstd: {e}"))?)
        }
        // Servers send either zlib-wrapped or raw deflate under this name.
        "deflate" => {
            run(flate2::read::ZlibDecoder::new(&body[..])).or_else(|zlib| match run(flate2::read::DeflateDecoder::new(&body[..])) {
                Ok(out) => Ok(out),
                Err(raw) => Err(if zlib.0.len() >= raw.0.len() { zlib } else { raw }),
            })
        }
        "br" => run(brotli::Decompressor::new(&body[..], 4096)),
        _ if looks_like_text(&body) => return Ok(body),
        other => return Err(format!("unsupported Content-Encoding {other:?}")),
    };
    match result {
        Ok(out) => Ok(out),
        // Not encoded after all.
        Err(_) if looks_like_text(&body) && !body.starts_with(&[0x1f, 0x8b]) => Ok(body),
        // Cut short: keep what decoded.
        Err((partial, _)) if !partial.is_empty() => Ok(partial),
        Err((_, e)) => Err(format!("Content-Encoding {encoding}: {e}")),
    }
}

/// Undoes chunked transfer encoding; None when the data is not chunked after all.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let (line, rest) = split_line(data)?;
        let size_text = String::from_utf8_lossy(line);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size {
            // Cut short: keep what there is, as warcio does.
            out.extend_from_slice(rest);
            return Some(out);
        }
        out.extend_from_slice(&rest[..size]);
        data = &rest[size..];
        data = data.strip_prefix(b"\r\n").or_else(|| data.strip_prefix(b"\n")).unwrap_or(data);
        if data.is_empty() {
            return Some(out);
        }
    }
}

/// The `charset` parameter of a Content-Type value.
pub fn charset_of_content_type(ct: &str) -> Option<&str> {
    ct.split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches(['"', '\'']))
}

/// The charset a page declares in its first 4 KiB: `<meta charset=...>` or
/// `<meta http-equiv="Content-Type" content="...; charset=...">`.
pub fn meta_charset(html: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&html[..html.len().min(4096)]).to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = head[from..].find("<meta") {
        let start = from + i;
        let end = head[start..].find('>').map_or(head.len(), |e| start + e);
        let tag = &head[start..end];
        if let Some(c) = tag.find("charset=") {
            let v = tag[c + 8..].trim_start_matches(['"', '\'', ' ']);
            let v: String = v.chars().take_while(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | ':' | '.')).collect();
            if !v.is_empty() {
                return Some(v);
            }
        }
        from = end;
    }
    None
}

/// The page's text and the name of the encoding used: a byte-order mark wins, then the HTTP
/// header's charset, then `<meta>`, then UTF-8 if the bytes are valid UTF-8, else the encoding
/// that Firefox's detector (`chardetng`) guesses from the bytes: undeclared GBK, Shift_JIS or
/// windows-1251 pages are common in older crawls, and reading them all as windows-1252 (the
/// browsers' old default) turns their text into mojibake.
pub fn decode_text(payload: &[u8], content_type: Option<&str>) -> (String, &'static str) {
    if let Some((enc, bom)) = Encoding::for_bom(payload) {
        let (text, _) = enc.decode_without_bom_handling(&payload[bom..]);
        return (text.into_owned(), enc.name());
    }
    let declared = content_type
        .and_then(charset_of_content_type)
        .and_then(|l| Encoding::for_label(l.as_bytes()))
        .or_else(|| meta_charset(payload).and_then(|l| Encoding::for_label(l.as_bytes())));
    let enc = match declared {
        Some(e) => e,
        None if std::str::from_utf8(payload).is_ok() => encoding_rs::UTF_8,
        None => {
            let mut detector = chardetng::EncodingDetector::new();
            detector.feed(payload, true);
            detector.guess(None, false)
        }
    };
    let (text, _) = enc.decode_without_bom_handling(payload);
    (text.into_owned(), enc.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn chunked_and_gzip_bodies_are_undone() {
        let html = b"<html><body>caf\xc3\xa9</body></html>";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(html).unwrap();
        let gz = gz.finish().unwrap();
        // Chunk the gzip bytes in two pieces, with a chunk extension on the first.
        let (a, b) = gz.split_at(10);
        let mut block =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
        block.extend_from_slice(format!("{:x};ext=1\r\n", a.len()).as_bytes());
        block.extend_from_slice(a);
        block.extend_from_slice(format!("\r\n{:X}\r\n", b.len()).as_bytes());
        block.extend_from_slice(b);
        block.extend_from_slice(b"\r\n0\r\n\r\n");
        let r = parse_response(&block).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.payload, html);
        // Declared chunked but not: kept raw.
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\nplain body").unwrap();
        assert_eq!((r.status, r.payload.as_slice()), (404, &b"plain body"[..]));
        assert!(parse_response(b"GET / HTTP/1.1\r\n\r\n").is_err());
        // Brotli and zstd bodies, as browsers and CDNs send them; corrupt ones are named.
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 9, 22);
            std::io::Write::write_all(&mut w, html).unwrap();
        }
        for (name, encoded) in [("br", br), ("zstd", zstd::encode_all(&html[..], 3).unwrap())] {
            let mut block = format!("HTTP/1.1 200 OK\r\nContent-Encoding: {name}\r\n\r\n").into_bytes();
            block.extend_from_slice(&encoded);
            assert_eq!(parse_response(&block).unwrap().payload, html, "{name}");
        }
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n\x01\x02\x03").unwrap_err().contains("br"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\n\r\n\x1f\x9d\x90").unwrap_err().contains("unsupported"));
    }

    #[test]
    fn charset_comes_from_bom_header_meta_then_utf8_then_detection() {
        // "café" in windows-1252 and "中文" in GBK.
        let latin = b"<p>caf\xe9</p>";
        assert_eq!(decode_text(latin, Some("text/html; charset=ISO-8859-1")), ("<p>café</p>".to_string(), "windows-1252"));
        assert_eq!(decode_text(latin, None), ("<p>café</p>".to_string(), "windows-1252"), "undeclared Latin text: detected");
        // Undeclared GBK (a page of an older Chinese crawl) is detected, not read as windows-1252.
        let sentence =
            "<html><body><p>一九八九年四月，我在湖南张家界开一个全省教学研究会议。按照惯例，会议安排了一天时间。</p></body></html>";
        let (bytes, _, _) = encoding_rs::GBK.encode(sentence);
        assert_eq!(decode_text(&bytes, None), (sentence.to_string(), "GBK"));
        let gbk = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=gbk\"><p>\xd6\xd0\xce\xc4</p>";
        let (text, enc) = decode_text(gbk, Some("text/html"));
        assert!(text.ends_with("<p>中文</p>"), "{text}");
        assert_eq!(enc, "GBK");
        let meta5 = "<meta charset='utf-8'><p>中文</p>".as_bytes();
        assert_eq!(decode_text(meta5, None).1, "UTF-8");
        // The header wins over <meta>; a BOM wins over both.
        assert_eq!(decode_text(gbk, Some("text/html; charset=\"windows-1252\"")).1, "windows-1252");
        assert_eq!(decode_text(b"\xef\xbb\xbfhi", Some("text/html; charset=gbk")), ("hi".to_string(), "UTF-8"));
        // An unknown label falls through to the next source.
        assert_eq!(decode_text("é".as_bytes(), Some("text/html; charset=no-such-charset")).1, "UTF-8");
    }

    fn encode(name: &str, data: &[u8]) -> Vec<u8> {
        match name {
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "deflate" => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "br" => {
                let mut out = Vec::new();
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
                w.write_all(data).unwrap();
                drop(w);
                out
            }
            "zstd" => zstd::encode_all(data, 3).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn bare_lf_headers_lying_encodings_and_cut_bodies_are_read() {
        // Old servers and ClueWeb09-era crawlers: bare LF line ends, header block ends LF LF,
        // no Content-Type at all.
        let r = parse_response(b"HTTP/1.0 200 OK\nServer: NCSA/1.5\nX-Folded: a\n  b\n\n<html>hi\r\n</html>").unwrap();
        assert_eq!((r.status, r.header("server"), r.header("X-Folded")), (200, Some("NCSA/1.5"), Some("a b")));
        assert_eq!(r.payload, b"<html>hi\r\n</html>");
        assert_eq!(r.content_type(), None);
        let html: &[u8] = "<html><body><p>Stored already decoded, café.</p></body></html>".as_bytes();
        for name in ["gzip", "deflate", "br", "zstd"] {
            // The header says encoded, the body is not: the body as stored.
            let mut block = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: {name}\r\n\r\n").into_bytes();
            let raw_at = block.len();
            block.extend_from_slice(html);
            assert_eq!(parse_response(&block).unwrap().payload, html, "{name}: stored decoded");
            // Really encoded: decoded.
            block.truncate(raw_at);
            let long = html.repeat(50);
            let encoded = encode(name, &long);
            block.extend_from_slice(&encoded);
            assert_eq!(parse_response(&block).unwrap().payload, long, "{name}: encoded");
            // Encoded and cut short (an interrupted download): what decodes before the cut.
            block.truncate(raw_at + encoded.len() * 2 / 3);
            // zstd decodes whole blocks (up to 128 KiB), so a small page cut inside its only
            // block has nothing to keep: an error, as for any undecodable body.
            match parse_response(&block) {
                Err(e) => assert!(name == "zstd" && e.contains("zstd"), "{name}: cut: {e}"),
                Ok(r) => assert!(!r.payload.is_empty() && long.starts_with(&r.payload), "{name}: cut gave {} bytes", r.payload.len()),
            }
        }
        // HTTP/0.9: no status line or headers, only the page.
        let r = parse_response(b"\n<HTML><TITLE>1994</TITLE>").unwrap();
        assert_eq!((r.status, r.headers.len(), r.payload.as_slice()), (200, 0, &b"\n<HTML><TITLE>1994</TITLE>"[..]));
        // An encoding nobody knows on a text body: the text.
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\nContent-Encoding: x-foo\n\nplain").unwrap().payload, b"plain");
        // Gzip magic but nothing decodable: an error, not binary garbage as text.
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x00\x00").is_err());
    }

    #[test]
    fn legacy_charsets_from_http_or_meta_decode_to_unicode() {
        let cases: [(&str, &[u8], &str, &str); 11] = [
            ("EUC-JP", b"\xc6\xfc\xcb\xdc\xb8\xec\xa4\xce\xa5\xc6\xa5\xad\xa5\xb9\xa5\xc8", "日本語のテキスト", "EUC-JP"),
            ("Shift_JIS", b"\x93\xfa\x96\x7b\x8c\xea\x82\xcc\x83\x65\x83\x4c\x83\x58\x83\x67", "日本語のテキスト", "Shift_JIS"),
            ("GBK", b"\xd6\xd0\xce\xc4\xcd\xf8\xd2\xb3", "中文网页", "GBK"),
            ("gb2312", b"\xd6\xd0\xce\xc4\xcd\xf8\xd2\xb3", "中文网页", "GBK"),
            ("GB18030", b"\xd6\xd0\xce\xc4\xcd\xf8\xd2\xb3\x81\x30\x81\x30", "中文网页\u{80}", "gb18030"),
            ("Big5", b"\xa4\xa4\xa4\xe5\xba\xf4\xad\xb6", "中文網頁", "Big5"),
            ("windows-1251", b"\xcf\xf0\xe8\xe2\xe5\xf2\x20\xec\xe8\xf0", "Привет мир", "windows-1251"),
            ("windows-1250", b"\x5a\x61\xbf\xf3\xb3\xe6\x20\x67\xea\x9c\x6c\xb9", "Zażółć gęślą", "windows-1250"),
            ("windows-1252", b"\x63\x61\x66\xe9\x20\x96\x20\x6e\x61\xef\x76\x65", "café – naïve", "windows-1252"),
            ("windows-1253", b"\xca\xe1\xeb\xe7\xec\xdd\xf1\xe1", "Καλημέρα", "windows-1253"),
            ("KOI8-R", b"\xf0\xd2\xc9\xd7\xc5\xd4\x20\xcd\xc9\xd2", "Привет мир", "KOI8-R"),
        ];
        for (label, bytes, text, name) in cases {
            // Declared in the HTTP header, in a whole response with bare-LF headers.
            let mut block = format!("HTTP/1.0 200 OK\nContent-Type: text/html; charset={label}\n\n<p>").into_bytes();
            block.extend_from_slice(bytes);
            let r = parse_response(&block).unwrap();
            assert_eq!(decode_text(&r.payload, r.content_type()), (format!("<p>{text}"), name), "{label} in HTTP");
            // Declared in <meta>, both forms, the HTTP header silent or empty.
            for meta in [
                format!("<meta charset=\"{label}\">"),
                format!("<META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset={label}\">"),
            ] {
                let mut page = meta.clone().into_bytes();
                page.extend_from_slice(bytes);
                for ct in [None, Some(""), Some("text/html")] {
                    assert_eq!(decode_text(&page, ct), (format!("{meta}{text}"), name), "{label} in {meta} with {ct:?}");
                }
            }
        }
    }
}
