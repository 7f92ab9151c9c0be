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

/// Parses an HTTP/1.x response (a WARC response record's block).
pub fn parse_response(block: &[u8]) -> Result<HttpResponse, String> {
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
    resp.payload = match resp.header("Content-Encoding").map(|e| e.trim().to_ascii_lowercase()) {
        None => body,
        Some(e) if e.is_empty() || e == "identity" || e == "none" => body,
        Some(e) if e == "gzip" || e == "x-gzip" => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&body[..]).read_to_end(&mut out).map_err(|err| format!("Content-Encoding gzip: {err}"))?;
            out
        }
        Some(e) if e == "deflate" => {
            // Servers send either zlib-wrapped or raw deflate under this name.
            let mut out = Vec::new();
            if flate2::read::ZlibDecoder::new(&body[..]).read_to_end(&mut out).is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .map_err(|err| format!("Content-Encoding deflate: {err}"))?;
            }
            out
        }
        Some(e) if e == "br" => {
            let mut out = Vec::new();
            brotli::Decompressor::new(&body[..], 4096).read_to_end(&mut out).map_err(|err| format!("Content-Encoding br: {err}"))?;
            out
        }
        Some(e) if e == "zstd" => zstd::decode_all(&body[..]).map_err(|err| format!("Content-Encoding zstd: {err}"))?,
        Some(e) => return Err(format!("unsupported Content-Encoding {e:?}")),
    };
    Ok(resp)
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
/// header's charset, then `<meta>`, then UTF-8 if the bytes are valid UTF-8, else
/// windows-1252 (what browsers assume).
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
        None => encoding_rs::WINDOWS_1252,
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
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nxx").unwrap_err().contains("br"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\n\r\nxx").unwrap_err().contains("unsupported"));
    }

    #[test]
    fn charset_comes_from_bom_header_meta_then_utf8_then_1252() {
        // "café" in windows-1252 and "中文" in GBK.
        let latin = b"<p>caf\xe9</p>";
        assert_eq!(decode_text(latin, Some("text/html; charset=ISO-8859-1")), ("<p>café</p>".to_string(), "windows-1252"));
        assert_eq!(decode_text(latin, None).0, "<p>café</p>", "invalid UTF-8 without a declaration: windows-1252");
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
}
