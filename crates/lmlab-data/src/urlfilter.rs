//! The URL blocklist: a plain-text file of blocked domains (a domain blocks its subdomains too)
//! and blocked words (`word:` prefix; matched in the host and path, case-insensitively), one per
//! line, `#` for comments.
//!
//! ```text
//! # domains
//! spam.example
//! word:casino
//! ```

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};

#[derive(Debug, Clone, Default)]
pub struct UrlBlocklist {
    domains: HashSet<String>,
    words: Vec<String>,
}

/// The host of a URL, lowercased, without user info, port or a trailing dot.
pub fn host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') { host.split(']').next().map(|h| h.trim_start_matches('['))? } else { host.split(':').next()? };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

impl UrlBlocklist {
    pub fn parse(text: &str) -> Self {
        let mut list = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            match line.strip_prefix("word:") {
                Some(w) => list.words.push(w.trim().to_lowercase()),
                None => {
                    list.domains.insert(line.trim_end_matches('.').to_ascii_lowercase());
                }
            }
        }
        list
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path).with_context(|| format!("reading the URL blocklist {}", path.display()))?))
    }

    pub fn len(&self) -> usize {
        self.domains.len() + self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Err(rule)` when the URL is blocked: "blocked_domain" or "blocked_word".
    pub fn check(&self, url: &str) -> Result<(), &'static str> {
        if let Some(h) = host(url) {
            // The host and each parent domain: a.b.example -> b.example -> example.
            let mut d = h.as_str();
            loop {
                if self.domains.contains(d) {
                    return Err("blocked_domain");
                }
                match d.split_once('.') {
                    Some((_, parent)) => d = parent,
                    None => break,
                }
            }
        }
        let lower = url.to_lowercase();
        if self.words.iter().any(|w| lower.contains(w.as_str())) {
            return Err("blocked_word");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_block_their_subdomains_and_words_match_anywhere() {
        let b = UrlBlocklist::parse("# test list\nspam.example\n\nword:Casino\n");
        assert_eq!(b.len(), 2);
        assert_eq!(b.check("https://spam.example/page"), Err("blocked_domain"));
        assert_eq!(b.check("http://user@www.SPAM.example.:8080/x"), Err("blocked_domain"));
        assert_eq!(b.check("https://notspam.example/"), Ok(()));
        assert_eq!(b.check("https://news.example/best-casino-bonus"), Err("blocked_word"));
        assert_eq!(b.check("https://news.example/gardening"), Ok(()));
    }

    #[test]
    fn hosts_are_parsed_from_messy_urls() {
        assert_eq!(host("HTTPS://Example.COM:443/a?b#c").as_deref(), Some("example.com"));
        assert_eq!(host("http://[2001:db8::1]:80/").as_deref(), Some("2001:db8::1"));
        assert_eq!(host("example.org/path").as_deref(), Some("example.org"));
        assert_eq!(host("http:///nohost"), None);
    }
}
