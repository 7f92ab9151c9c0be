//! HTML to main text: the headings, paragraphs, list items and table cells a reader came for,
//! without the navigation, menus, scripts, styles, footers, cookie banners and sidebars around
//! them. Parsing is html5ever's (through `scraper`), so broken HTML is repaired the way browsers
//! repair it.
//!
//! Boilerplate is recognised by structure, not by site: elements whose tag is boilerplate
//! (`nav`, `footer`, `aside`, `script`, forms, ...), whose ARIA role is (`navigation`,
//! `contentinfo`, ...), that are hidden, or whose `id`/`class` words name boilerplate (`menu`,
//! `sidebar`, `cookie`, `breadcrumb`, `noprint`, `byline`, `author`, `meta`, ...: what extractors
//! like trafilatura keep as metadata, not text); the page-level `<header>`
//! (outside any article); and lists made only of links. Block elements become lines.

use scraper::{ElementRef, Html, Node};

/// Tags whose whole subtree is never main text.
const SKIP_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "footer", "aside", "form", "button", "select", "option", "input", "textarea",
    "iframe", "svg", "canvas", "menu", "dialog", "head", "object", "embed", "audio", "video", "map",
];

/// ARIA roles of boilerplate landmarks.
const SKIP_ROLES: &[&str] =
    &["navigation", "banner", "contentinfo", "menu", "menubar", "search", "complementary", "dialog", "alert", "toolbar"];

/// Words in `id`/`class` values that mark boilerplate (matched against the value split at
/// `-`, `_` and spaces, so "vector-menu-content" matches "menu" but "canvas" does not match "nav").
const SKIP_WORDS: &[&str] = &[
    "nav",
    "navbar",
    "navigation",
    "menu",
    "menubar",
    "footer",
    "sidebar",
    "cookie",
    "cookies",
    "consent",
    "gdpr",
    "breadcrumb",
    "breadcrumbs",
    "share",
    "sharing",
    "social",
    "toc",
    "toolbar",
    "noprint",
    "editsection",
    "printfooter",
    "catlinks",
    "skip",
    "jump",
    "advert",
    "advertisement",
    "ads",
    "sponsored",
    "popup",
    "modal",
    "newsletter",
    "subscribe",
    "related",
    "comments",
    "pagination",
    "pager",
    "byline",
    "dateline",
    "date",
    "timestamp",
    "author",
    "username",
    "meta",
];

/// Characters of text inside `<a>` elements under `el`.
fn linked_chars(el: &ElementRef) -> usize {
    el.descendants()
        .filter_map(ElementRef::wrap)
        .filter(|e| e.value().name() == "a")
        .map(|a| a.text().map(|t| t.trim().chars().count()).sum::<usize>())
        .sum()
}

/// A list whose every item is (at least 90%) link text: navigation, "see also", related links.
fn is_link_list(el: &ElementRef) -> bool {
    if !matches!(el.value().name(), "ul" | "ol") {
        return false;
    }
    let mut items = el.children().filter_map(ElementRef::wrap).filter(|c| c.value().name() == "li").peekable();
    items.peek().is_some()
        && items.all(|li| {
            let all: usize = li.text().map(|t| t.trim().chars().count()).sum();
            all > 0 && linked_chars(&li) * 10 >= all * 9
        })
}

/// Tags that start a new line.
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "dl",
    "figcaption",
    "figure",
    "header",
    "caption",
    "br",
    "hr",
    "address",
    "details",
    "summary",
    "body",
    "tbody",
    "thead",
];

fn is_boilerplate(el: &ElementRef) -> bool {
    let e = el.value();
    let tag = e.name();
    if SKIP_TAGS.contains(&tag) {
        return true;
    }
    // Page-wide containers carry feature flags in their classes ("vector-toc-available"), not
    // boilerplate: never drop them by attributes.
    if matches!(tag, "html" | "body" | "main" | "article") {
        return false;
    }
    // The page's banner (logo, site name), not an article's own header.
    if tag == "header" && !el.ancestors().filter_map(ElementRef::wrap).any(|a| matches!(a.value().name(), "article" | "main")) {
        return true;
    }
    if is_link_list(el) {
        return true;
    }
    if e.attr("hidden").is_some() || e.attr("aria-hidden").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return true;
    }
    if e.attr("style").is_some_and(|s| s.replace(' ', "").to_ascii_lowercase().contains("display:none")) {
        return true;
    }
    if e.attr("role").is_some_and(|r| SKIP_ROLES.iter().any(|s| r.eq_ignore_ascii_case(s))) {
        return true;
    }
    let words = e.attr("id").into_iter().chain(e.attr("class")).flat_map(|v| v.split(|c: char| c == '-' || c == '_' || c.is_whitespace()));
    for w in words {
        let w = w.to_ascii_lowercase();
        if SKIP_WORDS.contains(&w.as_str()) {
            return true;
        }
    }
    false
}

fn walk(el: ElementRef, out: &mut String) {
    if is_boilerplate(&el) {
        return;
    }
    let block = BLOCK_TAGS.contains(&el.value().name());
    if block {
        out.push('\n');
    } else if matches!(el.value().name(), "td" | "th") && !out.ends_with(char::is_whitespace) {
        // Cells of a row share its line, apart.
        out.push(' ');
    }
    for child in el.children() {
        match child.value() {
            Node::Text(t) => {
                // Collapse whitespace as a browser would.
                for (i, part) in t.split_whitespace().enumerate() {
                    if i > 0 || t.starts_with(char::is_whitespace) {
                        out.push(' ');
                    }
                    out.push_str(part);
                }
                if t.ends_with(char::is_whitespace) && !t.trim().is_empty() {
                    out.push(' ');
                }
            }
            Node::Element(_) => {
                if let Some(child) = ElementRef::wrap(child) {
                    walk(child, out);
                }
            }
            _ => {}
        }
    }
    if block {
        out.push('\n');
    }
}

/// The main text of an HTML page: one line per block, whitespace collapsed, empty lines
/// dropped. The `<title>` is not included (it usually repeats the site name).
pub fn main_text(html: &str) -> String {
    let doc = Html::parse_document(html);
    let mut raw = String::with_capacity(html.len() / 4);
    walk(doc.root_element(), &mut raw);
    let lines: Vec<&str> = raw.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_content_and_drops_boilerplate() {
        let html = r#"<html><head><title>T</title><style>p{}</style></head><body>
            <div class="cookie-banner">We use cookies. <button>Accept</button></div>
            <nav><a href="/">Home</a> <a href="/about">About</a></nav>
            <div id="main-menu"><ul><li>Menu item</li></ul></div>
            <article><h1>The  Title</h1>
              <p>First <b>bold</b> paragraph,
                 with a line break.</p>
              <ul><li>one</li><li>two</li></ul>
              <p hidden>secret</p><p style="display: none">also secret</p>
              <table><tr><td>cell a</td><td>cell b</td></tr></table>
            </article>
            <aside>Related links</aside><div role="navigation">More nav</div>
            <div class="canvas-wrapper"><p>Kept: canvas is not nav.</p></div>
            <script>var x = "no";</script>
            <footer>Copyright</footer></body></html>"#;
        let text = main_text(html);
        assert_eq!(text, "The Title\nFirst bold paragraph, with a line break.\none\ntwo\ncell a cell b\nKept: canvas is not nav.");
    }

    #[test]
    fn page_header_link_lists_and_datelines_go_article_headers_and_text_lists_stay() {
        let html = r#"<body><header><a class="logo" href="/">SiteName</a></header>
            <article><header><h1>Headline</h1></header><p class="date">May 3, 2024</p>
              <p>Body text with a <a href="/x">link</a> inside it.</p>
              <div class="post-meta"><span class="author">someone</span> <time>May 3</time></div>
              <h2>See also</h2><ul><li><a href="/a">Other page</a></li><li><a href="/b">Another</a> </li></ul>
              <ol><li>Step one, with <a href="/c">a link</a>.</li><li>Step two.</li></ol>
            </article></body>"#;
        assert_eq!(
            main_text(html),
            "Headline
Body text with a link inside it.
See also
Step one, with a link.
Step two."
        );
    }

    #[test]
    fn broken_html_is_repaired_not_rejected() {
        assert_eq!(main_text("<p>unclosed <b>bold<p>next"), "unclosed bold\nnext");
        assert_eq!(main_text(""), "");
        assert_eq!(main_text("just text"), "just text");
    }
}
