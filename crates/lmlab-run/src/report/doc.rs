//! A report as a list of blocks, written out as markdown and as one self-contained HTML page
//! (images inlined as data URLs, no script, no network).

use std::path::Path;

use base64::Engine;

pub enum Block {
    /// A section heading; `id` is the HTML anchor a test can look for.
    Heading {
        id: String,
        text: String,
    },
    Para(String),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A PNG in the report folder (a path relative to it), with its caption.
    Image {
        path: String,
        caption: String,
    },
    /// Preformatted text.
    Code(String),
}

#[derive(Default)]
pub struct Doc {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Doc {
    pub fn heading(&mut self, id: &str, text: &str) {
        self.blocks.push(Block::Heading { id: id.into(), text: text.into() });
    }
    pub fn para(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(text.into()));
    }
    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table { header: header.iter().map(|s| s.to_string()).collect(), rows });
    }
    pub fn image(&mut self, path: &str, caption: &str) {
        self.blocks.push(Block::Image { path: path.into(), caption: caption.into() });
    }
    pub fn code(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Code(text.into()));
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", self.title);
        for b in &self.blocks {
            match b {
                Block::Heading { text, .. } => out.push_str(&format!("## {text}\n\n")),
                Block::Para(t) => out.push_str(&format!("{t}\n\n")),
                Block::Table { header, rows } => {
                    let cell = |s: &String| s.replace('|', "\\|").replace('\n', " ");
                    out.push_str(&format!("| {} |\n", header.iter().map(cell).collect::<Vec<_>>().join(" | ")));
                    let numeric = numeric_columns(header.len(), rows);
                    out.push_str(&format!("|{}\n", numeric.iter().map(|n| if *n { " ---: |" } else { " --- |" }).collect::<String>()));
                    for r in rows {
                        out.push_str(&format!("| {} |\n", r.iter().map(cell).collect::<Vec<_>>().join(" | ")));
                    }
                    out.push('\n');
                }
                Block::Image { path, caption } => out.push_str(&format!("![{caption}]({path})\n\n")),
                Block::Code(t) => out.push_str(&format!("```\n{t}\n```\n\n")),
            }
        }
        out
    }

    /// The HTML page; images are read from `dir` and inlined. A missing image is named in the
    /// page instead (no broken `<img>`).
    pub fn html(&self, dir: &Path, lang: &str) -> String {
        let mut body = String::new();
        let mut open = false;
        for b in &self.blocks {
            match b {
                Block::Heading { id, text } => {
                    if open {
                        body.push_str("</section>\n");
                    }
                    body.push_str(&format!("<section id=\"{}\">\n<h2>{}</h2>\n", esc(id), esc(text)));
                    open = true;
                }
                Block::Para(t) => body.push_str(&format!("<p>{}</p>\n", inline(t))),
                Block::Table { header, rows } => {
                    let numeric = numeric_columns(header.len(), rows);
                    let class = |i: usize| if numeric[i] { " class=\"num\"" } else { "" };
                    body.push_str("<table>\n<tr>");
                    for h in header {
                        body.push_str(&format!("<th>{}</th>", inline(h)));
                    }
                    body.push_str("</tr>\n");
                    for r in rows {
                        body.push_str("<tr>");
                        for (i, c) in r.iter().enumerate() {
                            body.push_str(&format!("<td{}>{}</td>", class(i.min(numeric.len() - 1)), inline(c)));
                        }
                        body.push_str("</tr>\n");
                    }
                    body.push_str("</table>\n");
                }
                Block::Image { path, caption } => match std::fs::read(dir.join(path)) {
                    Ok(bytes) => body.push_str(&format!(
                        "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>\n",
                        esc(caption),
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                        esc(caption)
                    )),
                    Err(e) => body.push_str(&format!("<p class=\"missing\">(no image: {}: {})</p>\n", esc(path), esc(&e.to_string()))),
                },
                Block::Code(t) => body.push_str(&format!("<pre>{}</pre>\n", esc(t))),
            }
        }
        if open {
            body.push_str("</section>\n");
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{body}</body>\n</html>\n",
            title = esc(&self.title)
        )
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}pre{background:#f5f5f5;padding:.5rem;overflow-x:auto}\
code{background:#f5f5f5}.missing{color:#a00}";

/// Which columns hold only numbers (percentages, ratios, times included): those align right.
fn numeric_columns(n: usize, rows: &[Vec<String>]) -> Vec<bool> {
    let is_number = |s: &str| {
        let t = s.trim().trim_end_matches(['%', '×', 's']).trim();
        !t.is_empty()
            && (t.parse::<f64>().is_ok() || t == "–" || s.contains(" min ") || t.chars().all(|c| c.is_ascii_digit() || ".e+-".contains(c)))
    };
    (0..n.max(1)).map(|i| i > 0 && rows.iter().all(|r| r.get(i).is_none_or(|c| c.is_empty() || is_number(c)))).collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Escaped text with markdown's `code` and **bold** spans.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            for (j, p) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    out.push_str(&format!("<strong>{p}</strong>"));
                } else {
                    out.push_str(p);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_html_hold_the_same_blocks() {
        let mut d = Doc { title: "T".into(), ..Default::default() };
        d.heading("data", "Data <funnel>");
        d.para("kept **7716** of `9749`");
        d.table(&["rule", "removed"], vec![vec!["a|b".into(), "3".into()]]);
        let md = d.markdown();
        assert!(md.contains("## Data <funnel>") && md.contains("| a\\|b | 3 |") && md.contains("| --- | ---: |"), "{md}");
        d.table(&["model", "answer"], vec![vec!["sft".into(), "Paris".into()]]);
        assert!(d.markdown().ends_with("| --- | --- |\n| sft | Paris |\n\n"), "a text column aligns left");
        let html = d.html(Path::new("."), "en");
        assert!(html.contains("<section id=\"data\">") && html.contains("Data &lt;funnel&gt;"), "{html}");
        assert!(html.contains("<strong>7716</strong>") && html.contains("<code>9749</code>"), "{html}");
        assert!(html.contains("<td>a|b</td><td class=\"num\">3</td>"), "{html}");
    }

    #[test]
    fn images_are_inlined_or_named_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.png"), [0x89, b'P', b'N', b'G']).unwrap();
        let mut d = Doc::default();
        d.image("x.png", "x");
        d.image("y.png", "y");
        let html = d.html(dir.path(), "en");
        assert!(html.contains("src=\"data:image/png;base64,iVBORw==\""), "{html}");
        assert!(html.contains("(no image: y.png") && html.matches("<img").count() == 1, "{html}");
    }
}
