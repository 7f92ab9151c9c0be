//! HTML to main text: the headings, paragraphs, list items and table cells a reader came for,
//! without the navigation, menus, scripts, styles, footers, cookie banners, sidebars, comments
//! and related-link blocks around them. Parsing is html5ever's (through `scraper`), so broken
//! HTML is repaired the way browsers repair it. Everything is judged by structure, not by site.
//!
//! Five steps, each linear in the page's size (up to the depth of the tree):
//!
//! 1. **Boilerplate** ([`measure`], [`drop_named_boilerplate`]): elements whose tag is
//!    boilerplate (`nav`, `script`, ruby readings `rt`, ...), that are hidden, page landmarks
//!    (`footer`, `aside`, the page-level `<header>`, an ARIA role such as `navigation` or
//!    `banner`; one holding the article and half the page, as broken templates leave them,
//!    stays), lists made only of links, small forms (a form holding a whole page, as ASP.NET
//!    writes them, stays), short figure captions (photo credits), comment threads, author boxes
//!    ("author" with "bio", "box", ...), elements whose `id`/`class` words name boilerplate
//!    (`menu`, `sidebar`, `cookie...`, `share`, `related`, `disclaimer`, ...), and teasers that
//!    link elsewhere.
//!    Class words are trusted less than tags: a container holding a content marker
//!    (`<article>`, `<main>`, itemprop=articleBody, "entry-content", but not another article's
//!    "related-post-content") or half the page's text stays, a word after
//!    "has"/"is"/"no"/"with" is a flag, not a name, and meta words (`date`, `author`, `byline`,
//!    `caption`, `credit`, `tags`, ...) drop only small elements. The same pass measures the
//!    kept text and link text under every element.
//! 2. **Scoring** ([`score_containers`], after Readability): every leaf block of 25 characters or
//!    more, and every such run of text lying loose between a container's blocks, scores for its
//!    commas and length, credited to its parent, less to its grandparent and less again up to
//!    five levels; each container starts from a prior for its tag and class words (content
//!    hints up, hints of other page parts down) and its score is scaled by its share of
//!    unlinked text.
//! 3. **Choice** ([`main_blocks`]): the best container, with the siblings that score near it,
//!    loose paragraphs of running text beside it and the heading right before it. A page with
//!    no scoring block is taken whole.
//! 4. **Text** ([`walk`]): the chosen blocks' text without boilerplate and, inside them, without
//!    blocks that are mostly links (related articles), a block that is a label and a link ("Read
//!    more: <a>...", in a paragraph, heading or quote), or a label right before links ("See
//!    also:"). Block elements become lines; soft hyphens leave the words.
//! 5. **Lines** ([`drop_empty_sections`]): headings left with nothing under them before the next
//!    heading of their rank (their links went in step 4) go, and so do minor headings (`<h3>`
//!    and below, and an `<h2>` that is all that is left of its box) and short caption-like
//!    lines at the very end ("Most read", "Contact"). A "heading" of more than 200 characters
//!    is a paragraph in large type, and stays as one.

use std::collections::{HashMap, HashSet};

use scraper::{ElementRef, Html, Node};

/// Tags whose whole subtree is never main text. `rt` and `rp` are ruby annotations: the
/// reading printed small above a Japanese or Chinese word, which would otherwise run into the
/// word itself ("子こども").
const SKIP_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "button", "select", "option", "input", "textarea", "iframe", "svg", "canvas", "menu",
    "dialog", "head", "object", "embed", "audio", "video", "map", "rt", "rp",
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
    "sociable",
    "sharedaddy",
    "toolbar",
    "noprint",
    "editsection",
    "printfooter",
    "catlinks",
    "skip",
    "jump",
    "ad",
    "adv",
    "advert",
    "advertisement",
    "ads",
    "sponsored",
    "popup",
    "modal",
    "newsletter",
    "subscribe",
    "related",
    "paywall",
    "embed",
    "embedded",
    "textbox",
    "breaker",
    "disclaimer",
    "textwidget",
    "factbox",
    "widgettitle",
    "comments",
    "pagination",
    "pager",
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

/// Words in `id`/`class` values that mark page furniture only when the element is small (a
/// dateline, an author's name, a post's meta line, a photo credit): blog templates also wrap whole posts in
/// "date-outer" or "entry-meta" containers, which must not take the post with them.
const SMALL_SKIP_WORDS: &[&str] = &[
    "byline",
    "dateline",
    "date",
    "timestamp",
    "author",
    "username",
    "meta",
    "postmetadata",
    "metadata",
    "utility",
    "rating",
    "ratings",
    "calendar",
    "signature",
    "categories",
    "tags",
    "caption",
    "credit",
    "credits",
    "copyright",
];

/// Below this many characters of text, an element named by [`SMALL_SKIP_WORDS`] is furniture.
const SMALL_ELEMENT_CHARS: usize = 200;

/// The `id` and `class` words of an element, lowercased, split at `-`, `_` and spaces.
fn attr_words<'a>(el: &ElementRef<'a>) -> impl Iterator<Item = String> + 'a {
    let e = el.value();
    e.attr("id")
        .into_iter()
        .chain(e.attr("class"))
        .flat_map(|v| v.split(|c: char| c == '-' || c == '_' || c.is_whitespace()))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
}

/// The `id`/`class` words of `el` that name it: [`attr_words`] less those right after a flag
/// word ("has-sidebar", "no-comments", "is-content-box"), which describe a layout or state.
fn naming_words(el: &ElementRef) -> Vec<String> {
    let mut previous = String::new();
    let mut words = Vec::new();
    for w in attr_words(el) {
        if !matches!(previous.as_str(), "has" | "with" | "no" | "without" | "is") {
            words.push(w.clone());
        }
        previous = w;
    }
    words
}

/// Characters of text (whitespace excluded) under `el`.
fn text_chars(el: &ElementRef) -> usize {
    el.text().map(|t| t.chars().filter(|c| !c.is_whitespace()).count()).sum()
}

/// Whether `el` is a landmark of the page around the article: a footer, an aside, the page's
/// banner (logo, site name; an article's own `<header>` is not one), or an element whose ARIA
/// role names one of those or a menu, toolbar, search box, alert or dialog ([`SKIP_ROLES`]).
/// Broken or odd templates sometimes leave the article inside one (an unclosed `<header>`, a "content" `<aside>`), so
/// [`measure`] judges one holding a content marker by its size.
fn is_page_landmark(el: &ElementRef) -> bool {
    let tag = el.value().name();
    let role = el.value().attr("role").is_some_and(|r| SKIP_ROLES.iter().any(|s| r.eq_ignore_ascii_case(s)));
    // Page-wide containers keep the benefit of the doubt for their roles, as for their classes.
    if role && !matches!(tag, "html" | "body" | "main" | "article") {
        return true;
    }
    match tag {
        "footer" | "aside" => true,
        "header" => !el.ancestors().filter_map(ElementRef::wrap).any(|a| matches!(a.value().name(), "article" | "main")),
        _ => false,
    }
}

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
    if is_link_list(el) {
        return true;
    }
    if e.attr("hidden").is_some() || e.attr("aria-hidden").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return true;
    }
    if e.attr("style").is_some_and(|s| s.replace(' ', "").to_ascii_lowercase().contains("display:none")) {
        return true;
    }
    false
}

/// Whether the `id`/`class` words of `el` name boilerplate (flag words aside, see
/// [`naming_words`]).
fn is_boilerplate_by_words(el: &ElementRef, size: Size) -> bool {
    let words = naming_words(el);
    let named = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    // Some boxes run their words together ("cookieconsent", "relatedposts", "newsletterbox").
    if named(SKIP_WORDS) || words.iter().any(|w| RUN_TOGETHER_STEMS.iter().any(|s| w.starts_with(s))) {
        return true;
    }
    // A teaser points to another page, its title a link; an article's own lead, which some
    // templates also call its teaser, is text with at most a link in passing.
    if named(&["teaser", "teasers"]) && size.link_density() >= TEASER_LINK_DENSITY {
        return true;
    }
    // A box of extra information beside the article goes; an infobox table is an encyclopedia
    // article's summary of its facts, and stays.
    if named(&["infobox"]) && el.value().name() != "table" {
        return true;
    }
    // An author box names itself with "author" and what it is ("author-bio", "about-author").
    let author_box = named(&["author"]) && attr_words(el).any(|w| AUTHOR_BOX_WORDS.contains(&w.as_str()));
    author_box || (named(SMALL_SKIP_WORDS) && text_chars(el) < SMALL_ELEMENT_CHARS)
}

/// Share of link text from which an element named "teaser" is one: a linked title over a line
/// or two of text.
const TEASER_LINK_DENSITY: f64 = 0.05;

/// Beginnings of `id`/`class` words that name boilerplate run together with what it is.
const RUN_TOGETHER_STEMS: &[&str] = &["cookie", "related", "newsletter"];

/// Words that, beside "author", name a box about the author ("author-bio", "post-author-box"):
/// however long, it is about the writer, not the article.
const AUTHOR_BOX_WORDS: &[&str] = &["box", "bio", "about", "info", "description", "profile", "card", "post"];

/// Whether the `id`/`class` words of `el` name a comment thread: readers' text, however long
/// (it can outweigh the article), so never exempt the way [`drop_named_boilerplate`] exempts.
fn names_comments(el: &ElementRef) -> bool {
    attr_words(el).any(|w| matches!(w.as_str(), "comments" | "comment" | "commentlist" | "disqus"))
}

/// Whether `el` marks itself as the page's main content: `<main>`, `<article>`, role=main or
/// itemprop=articleBody. A container holding one is never dropped for its class words.
fn is_content_marker(el: &ElementRef) -> bool {
    let e = el.value();
    matches!(e.name(), "main" | "article")
        || e.attr("role").is_some_and(|r| r.eq_ignore_ascii_case("main"))
        || e.attr("itemprop").is_some_and(|v| v.eq_ignore_ascii_case("articleBody"))
        || names_article_body(el)
}

/// Class words that say "the body of the article": one of article/entry/post/story with one of
/// body/content/text ("entry-content", "l-article-body-segment"), and no word saying it is
/// another article's ("related-post-content", "teaser-article-text", "next-post-content").
fn names_article_body(el: &ElementRef) -> bool {
    let (mut what, mut part, mut other) = (false, false, false);
    for w in naming_words(el) {
        what |= matches!(w.as_str(), "article" | "entry" | "post" | "story");
        part |= matches!(w.as_str(), "body" | "content" | "text");
        other |= w.starts_with("related") || matches!(w.as_str(), "teaser" | "teasers" | "recommended" | "next" | "previous" | "prev");
    }
    what && part && !other
}

/// Text and link characters of one element's kept (non-boilerplate) text.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    chars: usize,
    link_chars: usize,
}

impl Size {
    fn link_density(&self) -> f64 {
        self.link_chars as f64 / self.chars.max(1) as f64
    }
}

/// Identity of an element within one parsed document (its node's address: stable while the
/// document lives, and used only for lookups, never for order).
fn key(el: &ElementRef) -> usize {
    std::ptr::from_ref(el.value()) as usize
}

/// Facts about one parsed page that the choice of the main block and its walk share.
#[derive(Default)]
struct PageFacts<'a> {
    /// Sizes of every element outside boilerplate.
    sizes: HashMap<usize, Size>,
    /// The boilerplate elements (their subtrees are boilerplate too, unlisted).
    boilerplate: HashSet<usize>,
    /// Elements with a block element ([`is_block_tag`]) below them, outside boilerplate.
    holding_blocks: HashSet<usize>,
    /// Elements whose class words name boilerplate, with their sizes, until
    /// [`drop_named_boilerplate`] judges them.
    named_boilerplate: Vec<(ElementRef<'a>, Size)>,
}

impl PageFacts<'_> {
    fn size(&self, el: &ElementRef) -> Size {
        self.sizes.get(&key(el)).copied().unwrap_or_default()
    }

    fn is_boilerplate(&self, el: &ElementRef) -> bool {
        self.boilerplate.contains(&key(el))
    }
}

/// A `<form>` is a search box, login or comment form unless it holds this many characters of
/// unlinked text: some frameworks (ASP.NET) wrap the whole page in one form.
const FORM_TEXT_CHARS: usize = 500;

/// What [`measure`] learns about a subtree.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    size: Size,
    /// A content marker ([`is_content_marker`]) is in the subtree.
    holds_marker: bool,
    /// The subtree holds a block element ([`is_block_tag`]) below its root.
    holds_block: bool,
}

/// One pass over the tree: which elements are boilerplate, and the kept text and link
/// characters under every other one. Children are measured first, so that a container's class
/// words are judged knowing whether the article is inside it.
fn measure<'a>(el: ElementRef<'a>, in_link: bool, facts: &mut PageFacts<'a>) -> Measured {
    if is_boilerplate(&el) {
        facts.boilerplate.insert(key(&el));
        return Measured::default();
    }
    let in_link = in_link || el.value().name() == "a";
    let mut m = Measured { size: Size::default(), holds_marker: is_content_marker(&el), holds_block: false };
    for child in el.children() {
        match child.value() {
            Node::Text(t) => {
                let n = t.chars().filter(|c| !c.is_whitespace()).count();
                m.size.chars += n;
                if in_link {
                    m.size.link_chars += n;
                }
            }
            Node::Element(_) => {
                if let Some(child) = ElementRef::wrap(child) {
                    let c = measure(child, in_link, facts);
                    m.size.chars += c.size.chars;
                    m.size.link_chars += c.size.link_chars;
                    m.holds_marker |= c.holds_marker;
                    m.holds_block |= c.holds_block || is_block_tag(child.value().name());
                }
            }
            _ => {}
        }
    }
    let tag = el.value().name();
    let judged = !m.holds_marker && !matches!(tag, "html" | "body");
    let small_form = tag == "form" && m.size.chars - m.size.link_chars < FORM_TEXT_CHARS;
    // A short figure caption is a photo's credit or label; a long one (a slideshow's text) stays.
    let small_caption = tag == "figcaption" && m.size.chars < SMALL_ELEMENT_CHARS;
    let landmark = is_page_landmark(&el);
    // Comment threads go however long; so does a landmark without the article in it.
    if (judged && names_comments(&el)) || (landmark && !m.holds_marker) {
        facts.boilerplate.insert(key(&el));
        return Measured::default();
    }
    // A landmark holding the article, a small form or caption is judged like a boilerplate
    // class word: it goes unless it holds half the page (a short page that a framework wrapped
    // in its form, an article left inside an unclosed `<header>`).
    if landmark || (judged && (small_form || small_caption || is_boilerplate_by_words(&el, m.size))) {
        facts.named_boilerplate.push((el, m.size));
    }
    facts.sizes.insert(key(&el), m.size);
    if m.holds_block {
        facts.holding_blocks.insert(key(&el));
    }
    m
}

/// Drops the elements whose class words name boilerplate (and small forms), unless one holds half the page's
/// text or more: then the word is a layout flag or a plugin's class on the post itself
/// ("entry share", "l-sidebar-fixed"), since no menu, share bar or comment thread outweighs
/// everything else. Their text is taken out of their ancestors' sizes.
fn drop_named_boilerplate(root: &ElementRef, facts: &mut PageFacts) {
    let total = facts.size(root).chars;
    let named = std::mem::take(&mut facts.named_boilerplate);
    let dropped: Vec<(ElementRef, Size)> = named.into_iter().filter(|(_, size)| size.chars * 2 < total).collect();
    for (el, _) in &dropped {
        facts.boilerplate.insert(key(el));
    }
    for (el, size) in &dropped {
        let ancestors: Vec<ElementRef> = el.ancestors().filter_map(ElementRef::wrap).collect();
        // An element inside another dropped one was taken out with it.
        if ancestors.iter().any(|a| facts.is_boilerplate(a)) {
            continue;
        }
        for a in &ancestors {
            if let Some(s) = facts.sizes.get_mut(&key(a)) {
                s.chars -= size.chars;
                s.link_chars -= size.link_chars;
            }
        }
    }
}

/// Whether a block inside the main content is mostly link text: a list of related articles, a
/// tag cloud, a "read more" line. Paragraphs must be links all through: in encyclopedic text
/// most words of a short paragraph can be links.
fn is_link_block(el: &ElementRef, facts: &PageFacts) -> bool {
    let size = facts.size(el);
    let limit = match el.value().name() {
        // A container with much unlinked text is a link-rich article part (a wiki's body).
        "div" | "section" | "ul" | "ol" | "table" | "dl" if size.chars - size.link_chars < LINK_BLOCK_MAX_UNLINKED => LINK_BLOCK_DENSITY,
        "p" => LINK_PARAGRAPH_DENSITY,
        // "See also: <a>…</a>" is a link line in a heading or a quote too; in a list item or a
        // cell ("Website: <a>…</a>") it is the item's content, and inline, part of a sentence.
        tag if is_block_tag(tag) && !matches!(tag, "li" | "td" | "th" | "dd") => return size.chars > 0 && is_labelled_link(el, size),
        _ => return false,
    };
    size.chars > 0 && (size.link_density() > limit || is_labelled_link(el, size))
}

/// Longest label ("Read more:", "See also:") that can introduce a link line or a link list.
const LABEL_MAX_CHARS: usize = 40;

/// The unlinked text of `el` before its first link, trimmed.
fn text_before_first_link(el: &ElementRef) -> String {
    let mut label = String::new();
    for node in el.descendants() {
        match node.value() {
            Node::Element(e) if e.name() == "a" => break,
            Node::Text(t) => label.push_str(t),
            _ => {}
        }
    }
    label.trim().to_string()
}

/// Whether `text` is a label: short, ending with a colon.
fn is_label(text: &str) -> bool {
    text.ends_with([':', '：']) && text.chars().filter(|c| !c.is_whitespace()).count() <= LABEL_MAX_CHARS
}

/// A block that is a label and then links, with nothing after them: "Read more: <a>another
/// story</a>", in any language. A sentence with a link in it has text around the link.
fn is_labelled_link(el: &ElementRef, size: Size) -> bool {
    if size.link_chars == 0 || size.link_density() < LINK_BLOCK_DENSITY {
        return false;
    }
    let label = text_before_first_link(el);
    let label_chars = label.chars().filter(|c| !c.is_whitespace()).count();
    is_label(&label) && size.chars - size.link_chars <= label_chars + LABEL_TRAILING_CHARS
}

/// Unlinked characters a labelled link line may have after its label (separators, a bullet).
const LABEL_TRAILING_CHARS: usize = 3;

/// A label block ("See also:") right before a block of links: without them it says nothing.
fn is_label_of_links(el: &ElementRef, facts: &PageFacts) -> bool {
    let size = facts.size(el);
    // Sizes first: they are known, and most blocks are too long to be labels.
    if size.link_chars > 0 || size.chars == 0 || size.chars > LABEL_MAX_CHARS || !is_text_block(el, facts) {
        return false;
    }
    let Some(next) = el.next_siblings().find_map(ElementRef::wrap) else { return false };
    let text: String = el.text().collect();
    is_label(text.trim()) && (is_link_list(&next) || is_link_block(&next, facts))
}

/// A container with this many characters of unlinked text is never a link block.
const LINK_BLOCK_MAX_UNLINKED: usize = 300;

/// Above this share of link text, a container inside the main content is links, not text.
const LINK_BLOCK_DENSITY: f64 = 0.5;
/// Above this share of link text, a paragraph inside the main content is a link line.
const LINK_PARAGRAPH_DENSITY: f64 = 0.95;

/// Appends the text of `el` to `out`, one line per block, leaving out boilerplate and (below
/// the chosen blocks themselves, which may be link-heavy pages) blocks of links.
fn walk(el: ElementRef, facts: &PageFacts, chosen: bool, out: &mut String) {
    if facts.is_boilerplate(&el) || (!chosen && (is_link_block(&el, facts) || is_label_of_links(&el, facts))) {
        return;
    }
    let block = BLOCK_TAGS.contains(&el.value().name());
    if block {
        out.push('\n');
        let heading = heading_level(&el).filter(|_| facts.size(&el).chars <= HEADING_MAX_CHARS);
        if let Some(level) = heading.or_else(|| is_caption_line(&el, facts).then_some(CAPTION_LEVEL)) {
            out.push(HEADING_MARK);
            out.push(char::from(b'0' + level));
            if level == 2 && !chosen && is_alone_in_parent(&el, facts) {
                out.push(BOX_TITLE_MARK);
            }
        }
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
                    push_visible(out, part);
                }
                if t.ends_with(char::is_whitespace) && !t.trim().is_empty() {
                    out.push(' ');
                }
            }
            Node::Element(_) => {
                if let Some(child) = ElementRef::wrap(child) {
                    walk(child, facts, false, out);
                }
            }
            _ => {}
        }
    }
    if block {
        out.push('\n');
    }
}

/// The soft hyphen (`&shy;`) only marks where a browser may break a word: it is not shown,
/// and left in it splits the word for everything downstream.
const SOFT_HYPHEN: char = '\u{ad}';

/// Appends `word` to `out` less its soft hyphens.
fn push_visible(out: &mut String, word: &str) {
    if word.contains(SOFT_HYPHEN) {
        out.extend(word.chars().filter(|&c| c != SOFT_HYPHEN));
    } else {
        out.push_str(word);
    }
}

/// Words in `id`/`class` values of containers that hold an article's body.
const CONTENT_WORDS: &[&str] =
    &["article", "articlebody", "body", "content", "entry", "main", "post", "story", "text", "blog", "hentry", "page"];

/// Words in `id`/`class` values of containers that hold anything but the article's body.
const NON_CONTENT_WORDS: &[&str] = &[
    "comment",
    "comments",
    "widget",
    "sidebar",
    "footer",
    "related",
    "teaser",
    "promo",
    "recommended",
    "more",
    "tags",
    "combx",
    "community",
    "disqus",
    "remark",
    "rss",
    "shoutbox",
    "sponsor",
    "header",
    "masthead",
    "foot",
    "banner",
];

/// A container's prior: +25 for content hints (`article`, `main`, itemprop=articleBody, class
/// words like "entry-content"), -25 for hints of other page parts.
fn container_prior(el: &ElementRef) -> f64 {
    let e = el.value();
    let mut prior: f64 = match e.name() {
        "article" | "main" => 25.0,
        "div" => 5.0,
        "pre" | "td" | "blockquote" | "section" => 3.0,
        "ul" | "ol" | "dl" | "form" | "li" | "th" | "address" => -3.0,
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => -5.0,
        _ => 0.0,
    };
    if e.attr("itemprop").is_some_and(|v| v.eq_ignore_ascii_case("articleBody")) || e.attr("role") == Some("main") {
        prior += 25.0;
    }
    let words = naming_words(el);
    if words.iter().any(|w| CONTENT_WORDS.contains(&w.as_str())) {
        prior += 25.0;
    }
    if words.iter().any(|w| NON_CONTENT_WORDS.contains(&w.as_str())) {
        prior -= 25.0;
    }
    prior
}

/// A block of running text: a block element with no block element inside (line breaks aside).
fn is_text_block(el: &ElementRef, facts: &PageFacts) -> bool {
    let tag = el.value().name();
    is_block_tag(tag) && !facts.holding_blocks.contains(&key(el))
}

/// Text blocks shorter than this add nothing to their containers' scores.
const MIN_BLOCK_CHARS: usize = 25;

/// How much a text block says: one point, one per comma, one per 100 characters (at most 3).
fn block_points(el: &ElementRef, size: Size) -> f64 {
    run_points(size.chars, el.text().map(count_commas).sum())
}

/// [`block_points`] of a run of text with `chars` characters and `commas` commas.
fn run_points(chars: usize, commas: usize) -> f64 {
    1.0 + commas as f64 + (chars as f64 / 100.0).min(3.0)
}

/// Commas (and their CJK kin, and the CJK full stop) in `text`.
fn count_commas(text: &str) -> usize {
    text.chars().filter(|c| matches!(c, ',' | '，' | '、' | '。')).count()
}

/// Scores of the containers of text blocks: each block's points go to its parent in full, its
/// grandparent by half and the next three ancestors by a third of their depth (Readability's
/// scheme), on top of each container's prior. Runs of text lying loose in a container between
/// its blocks (forum posts, templates that separate paragraphs with `<br>`) are blocks too.
fn score_containers<'a>(root: ElementRef<'a>, facts: &PageFacts) -> HashMap<usize, (ElementRef<'a>, f64)> {
    let mut scores: HashMap<usize, (ElementRef<'a>, f64)> = HashMap::new();
    let mut stack = vec![root];
    while let Some(el) = stack.pop() {
        if facts.is_boilerplate(&el) {
            continue;
        }
        stack.extend(el.children().filter_map(ElementRef::wrap));
        let size = facts.size(&el);
        if size.chars < MIN_BLOCK_CHARS {
            continue;
        }
        if is_text_block(&el, facts) {
            if let Some(parent) = el.parent().and_then(ElementRef::wrap) {
                credit(&mut scores, parent, block_points(&el, size));
            }
        } else {
            let points = loose_run_points(&el, facts);
            if points > 0.0 {
                credit(&mut scores, el, points);
            }
        }
    }
    for (el, score) in scores.values_mut() {
        *score = (*score + container_prior(el)) * (1.0 - facts.size(el).link_density());
    }
    scores
}

/// Credits a block's points to its container `parent` in full and to the next four ancestors
/// by a falling share.
fn credit<'a>(scores: &mut HashMap<usize, (ElementRef<'a>, f64)>, parent: ElementRef<'a>, points: f64) {
    let containers = std::iter::once(parent).chain(parent.ancestors().filter_map(ElementRef::wrap));
    for (level, anc) in containers.take(5).enumerate() {
        let share = match level {
            0 => 1.0,
            1 => 2.0,
            l => l as f64 * 3.0,
        };
        scores.entry(key(&anc)).or_insert((anc, 0.0)).1 += points / share;
    }
}

/// The points of the runs of inline text directly in `el` between its block children (each
/// scored as a paragraph of its own would be), for runs of [`MIN_BLOCK_CHARS`] or more.
fn loose_run_points(el: &ElementRef, facts: &PageFacts) -> f64 {
    let mut points = 0.0;
    let (mut chars, mut commas) = (0, 0);
    let mut flush = |chars: &mut usize, commas: &mut usize| {
        if *chars >= MIN_BLOCK_CHARS {
            points += run_points(*chars, *commas);
        }
        (*chars, *commas) = (0, 0);
    };
    for child in el.children() {
        match child.value() {
            Node::Text(t) => {
                chars += t.chars().filter(|c| !c.is_whitespace()).count();
                commas += count_commas(t);
            }
            Node::Element(e) if is_block_tag(e.name()) => flush(&mut chars, &mut commas),
            Node::Element(_) => {
                let Some(inline) = ElementRef::wrap(child) else { continue };
                // An inline element holding blocks (a link around paragraphs) is scored by them.
                if facts.holding_blocks.contains(&key(&inline)) {
                    flush(&mut chars, &mut commas);
                } else if !facts.is_boilerplate(&inline) {
                    chars += facts.size(&inline).chars;
                    commas += inline.text().map(count_commas).sum::<usize>();
                }
            }
            _ => {}
        }
    }
    flush(&mut chars, &mut commas);
    points
}

/// Whether a tag starts a block of its own (a line break or rule does not: it runs inside a
/// paragraph).
fn is_block_tag(tag: &str) -> bool {
    !matches!(tag, "br" | "hr") && (BLOCK_TAGS.contains(&tag) || matches!(tag, "td" | "th"))
}

/// The container with the best score, if any text block was found. Ties go to the first
/// container in document order, so the result does not depend on hashing.
fn best_container<'a>(scores: &HashMap<usize, (ElementRef<'a>, f64)>, root: ElementRef<'a>) -> Option<ElementRef<'a>> {
    let mut best: Option<(ElementRef<'a>, f64)> = None;
    for el in root.descendants().filter_map(ElementRef::wrap) {
        if let Some(&(_, s)) = scores.get(&key(&el)) {
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((el, s));
            }
        }
    }
    best.map(|(el, score)| promoted(shared_ancestor(el, score, scores), score, scores))
}

/// Readability's alternative candidates: when at least three other containers score within
/// three quarters of the best, the article is split among them, and the nearest ancestor of
/// the best that holds three of them is the article.
fn shared_ancestor<'a>(best: ElementRef<'a>, best_score: f64, scores: &HashMap<usize, (ElementRef<'a>, f64)>) -> ElementRef<'a> {
    let mut ranked: Vec<&(ElementRef<'a>, f64)> = scores.values().filter(|(el, _)| key(el) != key(&best)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let close: Vec<ElementRef<'a>> = ranked.iter().take(4).filter(|(_, s)| *s >= 0.75 * best_score).map(|(el, _)| *el).collect();
    if close.len() < 3 {
        return best;
    }
    for anc in best.ancestors().filter_map(ElementRef::wrap) {
        if matches!(anc.value().name(), "body" | "html") {
            break;
        }
        let held = close.iter().filter(|c| c.ancestors().any(|a| a.id() == anc.id())).count();
        if held >= 3 {
            return anc;
        }
    }
    best
}

/// Readability's walk up from the best container: an ancestor that scores higher than the
/// step below it holds more of the article (the best container was one part of it), so it
/// takes over; the walk stops where an ancestor scores under a third of the best.
fn promoted<'a>(best: ElementRef<'a>, best_score: f64, scores: &HashMap<usize, (ElementRef<'a>, f64)>) -> ElementRef<'a> {
    let threshold = best_score / 3.0;
    let mut last = best_score;
    for anc in best.ancestors().filter_map(ElementRef::wrap) {
        if matches!(anc.value().name(), "body" | "html") {
            break;
        }
        let Some(&(_, score)) = scores.get(&key(&anc)) else { continue };
        if score < threshold {
            break;
        }
        if score > last {
            return anc;
        }
        last = score;
    }
    only_child_up(best)
}

/// The outermost ancestor of which `el` is the only element child (below `<body>`): its
/// siblings are then the article's siblings.
fn only_child_up(mut el: ElementRef) -> ElementRef {
    while let Some(parent) = el.parent().and_then(ElementRef::wrap) {
        if matches!(parent.value().name(), "body" | "html") || parent.children().filter_map(ElementRef::wrap).count() != 1 {
            break;
        }
        el = parent;
    }
    el
}

/// Whether a sibling of the best container is running text that belongs with it: a long
/// paragraph with few links, or a short sentence with none (Readability's sibling test, for any
/// block, since templates wrap paragraphs in divs).
fn is_loose_paragraph(el: &ElementRef, size: Size) -> bool {
    if !matches!(el.value().name(), "p" | "div" | "section" | "blockquote") {
        return false;
    }
    let long = size.chars > 80 && size.link_density() < 0.25;
    let sentence = size.link_chars == 0 && size.chars > 0 && ends_sentence(el);
    long || sentence
}

/// Whether the text of `el` ends like a sentence.
fn ends_sentence(el: &ElementRef) -> bool {
    let text: String = el.text().collect();
    text.trim_end().ends_with(['.', '!', '?', '。', '！', '？'])
}

/// The best container and the siblings that belong with it: siblings that score at least a
/// fifth of it, paragraphs of plain running text, and a heading right before it.
fn main_blocks<'a>(best: ElementRef<'a>, scores: &HashMap<usize, (ElementRef<'a>, f64)>, facts: &PageFacts) -> Vec<ElementRef<'a>> {
    let Some(parent) = best.parent().and_then(ElementRef::wrap) else { return vec![best] };
    let best_score = scores.get(&key(&best)).map_or(0.0, |s| s.1);
    let threshold = (best_score * 0.2).max(10.0);
    let siblings: Vec<ElementRef<'a>> = parent.children().filter_map(ElementRef::wrap).collect();
    let at = siblings.iter().position(|s| key(s) == key(&best)).unwrap_or(0);
    let mut keep = Vec::new();
    for (i, sib) in siblings.iter().enumerate() {
        let size = facts.size(sib);
        let scored = scores.get(&key(sib)).is_some_and(|s| s.1 >= threshold);
        let paragraph = is_loose_paragraph(sib, size);
        let heading = i + 1 == at && matches!(sib.value().name(), "h1" | "h2" | "h3");
        if i == at || scored || paragraph || heading {
            keep.push(*sib);
        }
    }
    keep
}

/// The main text of an HTML page: one line per block, whitespace collapsed, empty lines
/// dropped. The `<title>` is not included (it usually repeats the site name).
pub fn main_text(html: &str) -> String {
    let doc = Html::parse_document(html);
    let root = doc.root_element();
    let mut facts = PageFacts::default();
    measure(root, false, &mut facts);
    drop_named_boilerplate(&root, &mut facts);
    let scores = score_containers(root, &facts);
    let blocks = match best_container(&scores, root) {
        Some(best) => main_blocks(best, &scores, &facts),
        None => vec![root],
    };
    let mut raw = String::with_capacity(html.len() / 4);
    for block in blocks {
        walk(block, &facts, true, &mut raw);
    }
    let lines: Vec<Line> = raw.lines().map(Line::parse).filter(|l| !l.text.is_empty()).collect();
    let kept = drop_empty_sections(&lines);
    // A page of nothing but headings and captions keeps them: they are all it has.
    if kept.is_empty() {
        return lines.iter().map(|l| l.text).collect::<Vec<_>>().join("\n");
    }
    kept.join("\n")
}

/// Starts the line of a heading in [`walk`]'s output, followed by its level's digit.
const HEADING_MARK: char = '\u{1}';

/// Follows a heading's level digit when the heading may title a box rather than a section (see
/// [`is_alone_in_parent`]).
const BOX_TITLE_MARK: char = '\u{2}';

/// Whether `el` is the only kept text of its parent: the way a box's title sits in the box's
/// header. Such an `<h2>` at the very end of the text titles a box whose links went ("More on
/// this topic", "You may also like"), and goes as minor headings do; in the middle of the text
/// it ranks as any `<h2>` (page builders wrap every heading alone in its own block).
fn is_alone_in_parent(el: &ElementRef, facts: &PageFacts) -> bool {
    el.parent().and_then(ElementRef::wrap).is_some_and(|p| facts.size(&p).chars == facts.size(el).chars)
}

/// The level of a heading element (1 for `<h1>`), if it is one.
fn heading_level(el: &ElementRef) -> Option<u8> {
    match el.value().name().as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some(d - b'0'),
        _ => None,
    }
}

/// Longest heading: a longer `<h1>`…`<h6>` is a paragraph styled large (a lead, a quote), which
/// stays whatever follows it.
const HEADING_MAX_CHARS: usize = 200;

/// The level [`walk`] gives a caption line: below every heading, so that a heading before one
/// still has a section.
const CAPTION_LEVEL: u8 = 7;

/// Longest caption line (a box's title, "Contact", "Most read").
const CAPTION_MAX_CHARS: usize = 40;

/// Whether `el` is a short line of its own that reads like a caption, not a sentence, and is
/// not a list item or cell (short items are content: ingredients, a song's lines, names).
fn is_caption_line(el: &ElementRef, facts: &PageFacts) -> bool {
    let size = facts.size(el);
    // Sizes first: they are known, and most blocks are too long to be captions.
    size.chars > 0
        && size.chars <= CAPTION_MAX_CHARS
        && matches!(el.value().name(), "p" | "div" | "section" | "header" | "caption" | "summary")
        && is_text_block(el, facts)
        && !ends_sentence(el)
}

/// The highest rank of heading that goes when nothing follows it: box titles after an article
/// ("Most read", "More on this") are minor headings (and so is an `<h2>` alone in its box's
/// header, see [`is_alone_in_parent`]), while an article's own last section heading (`<h2>See
/// also</h2>` over its links) is part of the article's outline.
const MIN_TRAILING_DROP_LEVEL: u8 = 3;

/// One line of [`walk`]'s output: its text, and its level if it is a heading's.
struct Line<'a> {
    text: &'a str,
    heading: Option<u8>,
    /// A heading that may title a box ([`BOX_TITLE_MARK`]).
    box_title: bool,
}

impl<'a> Line<'a> {
    fn parse(line: &'a str) -> Self {
        let line = line.trim();
        let mut chars = line.chars();
        match (chars.next(), chars.next().and_then(|d| d.to_digit(10))) {
            (Some(HEADING_MARK), Some(level)) => {
                let rest = chars.as_str();
                let box_title = rest.starts_with(BOX_TITLE_MARK);
                let text = rest.strip_prefix(BOX_TITLE_MARK).unwrap_or(rest).trim();
                Line { text, heading: Some(level as u8), box_title }
            }
            _ => Line { text: line, heading: None, box_title: false },
        }
    }
}

/// Drops headings whose section came out empty: followed by a heading of the same or a higher
/// rank, or (for minor headings, see [`MIN_TRAILING_DROP_LEVEL`]) by nothing. Their text was a
/// list of links ("Related articles", "More on this") or a widget, already left out, so the
/// heading alone is furniture. Caption lines go only at the end, where they title boxes after
/// the article ("Contact", "Most read").
fn drop_empty_sections<'a>(lines: &[Line<'a>]) -> Vec<&'a str> {
    let mut kept: Vec<&Line> = Vec::with_capacity(lines.len());
    for line in lines.iter().rev() {
        let empty = line.heading.is_some_and(|level| match kept.last() {
            None => level >= MIN_TRAILING_DROP_LEVEL || line.box_title,
            Some(next) => level != CAPTION_LEVEL && next.heading.is_some_and(|n| n <= level),
        });
        if !empty {
            kept.push(line);
        }
    }
    kept.iter().rev().map(|l| l.text).collect()
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

    /// A sentence long enough to count as running text.
    const LONG: &str = "This sentence is long enough, with a comma or two, to count as running text of an article.";

    #[test]
    fn the_container_with_the_most_running_text_wins_over_teasers_and_its_links_go() {
        let html = format!(
            r#"<body><div class="teasers"><div><p>Short teaser one</p></div><div><p>Short teaser two</p></div></div>
            <div id="story"><h1>Headline</h1><p>{LONG}</p><p>{LONG}</p>
              <p><a href="/more">Read more: another story entirely</a></p></div>
            <div class="links"><p><a href="/x">Elsewhere on the site</a></p></div></body>"#
        );
        assert_eq!(main_text(&html), format!("Headline\n{LONG}\n{LONG}"));
    }

    #[test]
    fn a_heading_and_paragraphs_beside_the_best_container_come_with_it() {
        let html = format!(
            r#"<body><div class="col"><h2>Title</h2><div class="inner"><p>{LONG}</p><p>{LONG}</p></div>
            <p>A closing remark.</p><div><a href="/a">Next</a> <a href="/b">Previous</a></div></div></body>"#
        );
        assert_eq!(main_text(&html), format!("Title\n{LONG}\n{LONG}\nA closing remark."));
    }

    #[test]
    fn meta_words_drop_small_elements_only_and_layout_flags_drop_nothing() {
        let html = format!(
            r#"<body><div class="layout has-sidebar"><div class="date-outer"><span class="date">May 3</span>
            <div class="post"><p>{LONG}</p></div></div></div><div class="sidebar"><p>Popular posts</p></div></body>"#
        );
        assert_eq!(main_text(&html), LONG);
    }

    #[test]
    fn a_boilerplate_class_on_the_post_itself_does_not_drop_it() {
        // A sharing plugin adds "share" to the post's own container: it holds most of the text.
        let html = format!(r#"<body><div class="entry share"><p>{LONG}</p><p>{LONG}</p></div><div class="share">Tweet</div></body>"#);
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
    }

    #[test]
    fn comments_go_even_when_longer_than_the_article() {
        let html = format!(
            r#"<body><div class="post"><p>{LONG}</p></div>
            <div id="comments"><p>{LONG} One.</p><p>{LONG} Two.</p><p>{LONG} Three.</p></div></body>"#
        );
        assert_eq!(main_text(&html), LONG);
    }

    #[test]
    fn a_form_wrapping_the_page_stays_and_a_search_form_goes() {
        let body = format!("<p>{LONG}</p>").repeat(6);
        let html = format!(r#"<body><form id="Form1"><div>{body}</div></form></body>"#);
        assert_eq!(main_text(&html), [LONG; 6].join("\n"));
        let html = format!(r#"<body><form id="Form1"><p>Search the site</p><input></form><div><p>{LONG}</p></div></body>"#);
        assert_eq!(main_text(&html), LONG);
    }

    #[test]
    fn short_captions_and_photo_credits_go() {
        let html = format!(
            r#"<body><article><p>{LONG}</p><figure><img src="a.jpg"><figcaption>A lake. Photo: Someone</figcaption></figure>
            <p>{LONG}</p><span class="image-credit">Agency / Someone</span></article></body>"#
        );
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
    }

    #[test]
    fn author_boxes_go_however_long() {
        // Longer than the small elements that "author" alone drops.
        let bio = format!("<p>{LONG}</p>").repeat(4);
        let html = format!(
            r#"<body><article><p>{LONG}</p><p>{LONG}</p><p>{LONG}</p><p>{LONG}</p><p>{LONG}</p>
            <div class="post-author-box"><h3>About me</h3>{bio}</div></article></body>"#
        );
        assert_eq!(main_text(&html), [LONG; 5].join("\n"));
    }

    #[test]
    fn labelled_links_and_labels_of_link_lists_go() {
        let html = format!(
            r#"<body><article><p>{LONG}</p><p><b>Read more: <a href="/x">Another story entirely</a></b></p>
            <p>{LONG} See <a href="/doc">the notes</a>.</p>
            <div class="title">See also:</div><ul><li><a href="/a">One page</a></li><li><a href="/b">Another page</a></li></ul>
            </article></body>"#
        );
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG} See the notes."));
    }

    #[test]
    fn headings_with_empty_sections_and_trailing_caption_lines_go() {
        let html = format!(
            r#"<body><article><h1>Title</h1><h2>Part one</h2><p>{LONG}</p>
            <h2>More on this topic</h2><ul><li><a href="/a">One page</a></li><li><a href="/b">Another</a></li></ul>
            <h2>Part two</h2><p>Short line</p><p>{LONG}</p><div>Contact</div><h3>Most read</h3></article></body>"#
        );
        assert_eq!(main_text(&html), format!("Title\nPart one\n{LONG}\nPart two\nShort line\n{LONG}"));
        // A page of nothing but short lines keeps them.
        assert_eq!(main_text("<body><h3>Links</h3><div>Contact</div></body>"), "Links\nContact");
        // An article's own last section heading stays at the end: it belongs to its outline.
        let html = format!("<body><article><p>{LONG}</p><h2>See also</h2><ul><li><a href=\"/a\">One page</a></li></ul></article></body>");
        assert_eq!(main_text(&html), format!("{LONG}\nSee also"));
        // An `<h2>` that is all that is left of its box titles the box, and goes at the end.
        let html = format!(
            "<body><article><p>{LONG}</p><div><h2>You may also like</h2><ul><li><a href=\"/a\">One page</a></li></ul></div></article></body>"
        );
        assert_eq!(main_text(&html), LONG);
        // A long "heading" is a paragraph styled large: it stays before another heading.
        let lead = "A lead set in large type that runs on, sentence after sentence. ".repeat(6);
        let html = format!("<body><article><h3>{lead}</h3><h2>Part one</h2><p>{LONG}</p></article></body>");
        assert_eq!(main_text(&html), format!("{}\nPart one\n{LONG}", lead.trim()));
    }

    #[test]
    fn in_article_boxes_named_by_their_class_go() {
        // Each box is long enough to pass as a paragraph, and sits inside the article.
        let pitch = "Sign up and we will send you the best of our stories, every week, for free.";
        let boxes = [
            "textwidget",
            "widget widgettitle",
            "editorial-disclaimer",
            "infobox",
            "mol-factbox",
            "a-inline-textbox",
            "embed-article",
            "block-content_breaker",
            "c-native-newsletterbox",
            "sharedaddy sd-block",
        ];
        let divs: String = boxes.iter().map(|class| format!(r#"<div class="{class}"><p>{pitch}</p></div>"#)).collect();
        let html = format!("<body><article><p>{LONG}</p>{divs}<p>{LONG}</p></article></body>");
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
        // An infobox table is an encyclopedia article's summary of its facts.
        let html = format!(
            r#"<body><article><p>{LONG}</p><table class="infobox"><tr><th>Born</th><td>12 May 1820</td></tr></table><p>{LONG}</p></article></body>"#
        );
        assert_eq!(main_text(&html), format!("{LONG}\nBorn 12 May 1820\n{LONG}"));
        // Short lines of furniture: an image's metadata, a rating, a calendar, a signature, the
        // post's categories and tags.
        let small = ["img-metadata", "post-ratings", "wp-calendar", "post-signature", "iz-categories", "article__tags"];
        let divs: String = small.iter().map(|class| format!(r#"<div class="{class}">Small print, {class}</div>"#)).collect();
        let html = format!("<body><article><p>{LONG}</p>{divs}<p>{LONG}</p></article></body>");
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
    }

    #[test]
    fn a_teaser_goes_when_it_links_elsewhere_and_a_lead_called_teaser_stays() {
        let lead = "The lead of this very article, which its template happens to call a teaser, stays.";
        let other = "Another story you might read next, with its first lines shown here as bait.";
        let html = format!(
            r#"<body><article><div class="field-teaser-lead"><p>{lead}</p></div><p>{LONG}</p>
            <div class="c-teaser"><a href="/other"><h3>Other story</h3></a><p>{other}</p></div>
            <p>{LONG}</p></article></body>"#
        );
        assert_eq!(main_text(&html), format!("{lead}\n{LONG}\n{LONG}"));
    }

    #[test]
    fn another_articles_body_is_no_content_marker() {
        // "related-post-content" names the body of another post: it goes like any related box,
        // where a real content marker inside would have shielded its container.
        let other = "The first lines of another post, shown below this one to keep you on the site.";
        let html = format!(
            r#"<body><article><p>{LONG}</p><p>{LONG}</p>
            <ul class="rp4wp"><li><div class="rp4wp-related-post-content"><p>{other}</p></div></li></ul>
            </article></body>"#
        );
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
    }

    #[test]
    fn a_section_whose_id_contains_toc_is_kept_and_a_table_of_contents_goes_with_its_title() {
        let html = format!(
            r##"<body><article><div class="toc"><p>Contents</p><ul><li><a href="#TOC_TITLE_1">Part one</a></li><li><a href="#TOC_TITLE_2">Part two</a></li></ul></div>
            <div class="content_body" id="TOC_TITLE_1"><p>{LONG}</p></div><div class="content_body" id="TOC_TITLE_2"><p>{LONG}</p></div>
            <div class="content_body" id="TOC_TITLE_3"><p>{LONG}</p></div></article></body>"##
        );
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}\n{LONG}"));
    }

    #[test]
    fn a_labelled_link_goes_from_a_heading_or_quote_and_stays_in_an_item_or_a_sentence() {
        let html = format!(
            r#"<body><article><p>{LONG}</p><h6><strong>See: </strong><a href="/x">Another story on this site</a></h6>
            <blockquote>READ ALSO: <a href="/y">A third story</a></blockquote>
            <p>The figures come from the agency (<span>source: <a href="/who">WHO</a></span>) and were checked twice.</p>
            <ul><li>Website: <a href="/site">example.org</a></li><li>Phone: 555 0100</li></ul><p>{LONG}</p></article></body>"#
        );
        assert_eq!(
            main_text(&html),
            format!("{LONG}\nThe figures come from the agency (source: WHO) and were checked twice.\nWebsite: example.org\nPhone: 555 0100\n{LONG}")
        );
    }

    #[test]
    fn an_author_box_named_post_author_goes_however_long() {
        let bio = "Hi, I am the author of this post. I fish, I write, and I would like a coffee from you. ".repeat(5);
        let html = format!(
            r#"<body><article><p>{LONG}</p><p>{LONG}</p><p>{LONG}</p><p>{LONG}</p><p>{LONG}</p><p>{LONG}</p>
            <div class="post-author"><p>About the author</p><p>{bio}</p></div></article></body>"#
        );
        assert_eq!(main_text(&html), [LONG; 6].join("\n"));
    }

    #[test]
    fn a_title_alone_in_its_wrapper_stays_unless_it_ends_the_text() {
        // An article's title in its header, and a page builder's heading alone in its block,
        // keep their ranks inside the text.
        let html = format!(
            "<body><article><header><h1>Title</h1></header><div><h2>Chapter</h2></div><h3>Part</h3><p>{LONG}</p><p>{LONG}</p></article></body>"
        );
        assert_eq!(main_text(&html), format!("Title\nChapter\nPart\n{LONG}\n{LONG}"));
        // The page's `<h1>` stays even at the end.
        let html = format!("<body><article><p>{LONG}</p><p>{LONG}</p><header><h1>Title</h1></header></article></body>");
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}\nTitle"));
    }

    #[test]
    fn ruby_readings_and_soft_hyphens_are_left_out_of_the_words() {
        let html = "<body><article><p><ruby>子<rp>(</rp><rt>こ</rt><rp>)</rp></ruby>どもが<ruby>本<rt>ほん</rt></ruby>を読む。</p>\
                    <p>Mit\u{ad}tel\u{ad}al\u{ad}ter und Neu&shy;zeit.</p></article></body>";
        assert_eq!(main_text(html), "子どもが本を読む。\nMittelalter und Neuzeit.");
    }

    #[test]
    fn text_lying_loose_between_blocks_scores_like_paragraphs() {
        // A forum post's text sits in its container between `<br>`s, beside a block. (The
        // headings keep each container from being its wrapper's only child, whose siblings
        // would then join it.)
        let html = format!(
            r#"<body><div><h2>Elsewhere</h2><div><p>{LONG}</p></div></div>
            <div><h2>Forum</h2><div class="x"><div>Posted by someone in the forum.</div>{LONG}<br>{LONG}<br>{LONG}</div></div></body>"#
        );
        assert_eq!(main_text(&html), format!("Forum\nPosted by someone in the forum.\n{LONG}\n{LONG}\n{LONG}"));
    }

    #[test]
    fn run_together_cookie_words_name_a_banner() {
        let html = format!(
            r#"<body><div id="cookieconsent">We and our partners store cookies on your device, to measure the audience.</div>
            <article><p>{LONG}</p><p>{LONG}</p></article></body>"#
        );
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
    }

    #[test]
    fn paywalls_related_boxes_ads_and_post_utility_lines_go() {
        // Each box is long enough to pass as a paragraph, and sits inside the article.
        let pitch = "Subscribe today and read every story of ours without limits, on every device you own.";
        let html = format!(
            r#"<body><article><p>{LONG}</p>
            <div class="tagespresse-paywall-header"><p>{pitch}</p></div>
            <div class="ce_relatedArticles"><p>{pitch} Related.</p></div>
            <div class="it-ad"><p>{pitch} Advertised.</p></div>
            <div class="sociable"><p>{pitch} Shared.</p></div>
            <p>{LONG}</p>
            <div class="entry-utility">This entry was posted in News and tagged reading. Bookmark it.</div>
            </article></body>"#
        );
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
    }

    #[test]
    fn a_landmark_holding_most_of_the_page_and_the_article_stays() {
        // An unclosed banner takes the article in.
        let html = format!(r#"<body><div role="banner"><a href="/">Site</a><div class="article-body"><p>{LONG}</p><p>{LONG}</p></div>"#);
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}"));
        // An unclosed `<header>` takes the article in; a teaser `<aside>` and a footer still go.
        let html = format!(
            r#"<body><header><a href="/">Site</a><article><h1>Title</h1><p>{LONG}</p><p>{LONG}</p></article>
            <aside><article><p>A teaser for another story, with a comma.</p></article></aside>
            <footer><p>Imprint, contact, and the terms of use of this site.</p></footer></body>"#
        );
        assert_eq!(main_text(&html), format!("Title\n{LONG}\n{LONG}"));
    }

    #[test]
    fn a_content_word_after_a_flag_word_is_no_content_hint() {
        let other = "Another sentence of the real article, with commas, long enough to be running text.";
        let html = format!(
            r#"<body><div><h2>Box</h2><div class="is-content-box"><p>{LONG}</p></div></div>
            <div><h2>Story</h2><div class="x"><p>{other}</p><p>{other}</p></div></div></body>"#
        );
        assert_eq!(main_text(&html), format!("Story\n{other}\n{other}"));
    }

    #[test]
    fn the_best_container_takes_its_wrappers_siblings_when_it_is_their_only_child() {
        let other = "Another sentence of the real article, with commas, long enough to be running text.";
        // Each part's paragraphs sit in a wrapper that is a part's only child: the part, not the
        // wrapper, stands beside the other parts.
        let html = format!(
            r#"<body><div><div class="part"><div><p>{LONG}</p><p>{LONG}</p></div></div>
            <div class="part"><div><p>{other}</p><p>{other}</p></div></div></div></body>"#
        );
        assert_eq!(main_text(&html), format!("{LONG}\n{LONG}\n{other}\n{other}"));
    }

    #[test]
    fn an_article_split_into_parts_is_taken_whole() {
        // Four parts score alike and no single container holds the article: the choice moves
        // up from the best part to the container of all four (the walk up; Readability's
        // alternative candidates do the same on real pages), and the teaser beside it stays out.
        let parts: String = (1..=4)
            .map(|i| format!("<div class=\"w\"><div class=\"part\"><div class=\"inner\"><h3>Part {i}</h3><div><p>{LONG}</p><p>{LONG}</p></div></div></div></div>"))
            .collect();
        let html = format!(
            r#"<body><div id="x">{parts}</div><div id="y"><p><a href="/next">A teaser for another story</a>, with a comma.</p></div></body>"#
        );
        let expected: Vec<String> = (1..=4).map(|i| format!("Part {i}\n{LONG}\n{LONG}")).collect();
        assert_eq!(main_text(&html), expected.join("\n"));
    }

    #[test]
    fn broken_html_is_repaired_not_rejected() {
        assert_eq!(main_text("<p>unclosed <b>bold<p>next"), "unclosed bold\nnext");
        assert_eq!(main_text(""), "");
        assert_eq!(main_text("just text"), "just text");
    }
}
