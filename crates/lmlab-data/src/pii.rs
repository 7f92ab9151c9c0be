//! Personal data scrubbing: email addresses, IPv4 and IPv6 addresses and phone numbers become
//! placeholders (`<EMAIL>`, `<IP>`, `<PHONE>`), so a model trained on the text cannot repeat
//! them. Matching is by pattern (the `regex` crate), so it is conservative: it catches the
//! common written forms, not every way a number can be spelled out.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How many of each kind were replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiCounts {
    pub emails: usize,
    pub ips: usize,
    pub phones: usize,
}

impl PiiCounts {
    pub fn total(&self) -> usize {
        self.emails + self.ips + self.phones
    }

    pub fn sub(&mut self, other: &PiiCounts) {
        self.emails -= other.emails;
        self.ips -= other.ips;
        self.phones -= other.phones;
    }

    pub fn add(&mut self, other: &PiiCounts) {
        self.emails += other.emails;
        self.ips += other.ips;
        self.phones += other.phones;
    }
}

struct Patterns {
    email: Regex,
    ipv4: Regex,
    ipv6: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b").expect("valid"),
        // Four octets 0-255, not part of a longer dotted number (version strings like 1.2.3.4.5).
        ipv4: Regex::new(
            r"(?:^|[^\d.])((?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})(?:$|[^\d.]|\.(?:\D|$))",
        )
        .expect("valid"),
        // Full and ::-compressed forms with at least two groups of hex digits.
        ipv6: Regex::new(r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}\b")
            .expect("valid"),
        // An optional +country code, then 9 to 14 digits in groups split by spaces, dots,
        // dashes or parentheses, e.g. "+1 (555) 123-4567", "020 7946 0958", "555-123-4567".
        phone: Regex::new(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}\b").expect("valid"),
    })
}

/// Whether a phone candidate has the digit count of a phone number (not a date or a sum).
fn plausible_phone(m: &str) -> bool {
    let digits = m.chars().filter(char::is_ascii_digit).count();
    let separators = m.chars().filter(|c| matches!(c, ' ' | '-' | '.' | '(' | ')')).count();
    (9..=15).contains(&digits) && separators >= 1 && !m.contains(". ")
}

/// The text with personal data replaced, and what was replaced.
pub fn scrub(text: &str) -> (String, PiiCounts) {
    let p = patterns();
    let mut counts = PiiCounts::default();
    let text = p.email.replace_all(text, |_: &regex::Captures| {
        counts.emails += 1;
        "<EMAIL>"
    });
    let text = p.ipv6.replace_all(&text, |_: &regex::Captures| {
        counts.ips += 1;
        "<IP>"
    });
    let text = p.ipv4.replace_all(&text, |c: &regex::Captures| {
        counts.ips += 1;
        let whole = c.get(0).expect("match");
        let ip = c.get(1).expect("group");
        format!("{}<IP>{}", &text[whole.start()..ip.start()], &text[ip.end()..whole.end()])
    });
    let text = p.phone.replace_all(&text, |c: &regex::Captures| {
        let m = c.get(0).expect("match").as_str();
        if plausible_phone(m) {
            counts.phones += 1;
            "<PHONE>".to_string()
        } else {
            m.to_string()
        }
    });
    (text.into_owned(), counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_emails_ips_and_phones() {
        let (t, c) = scrub("Write to jane.doe+news@mail.example.co.uk or call +1 (555) 123-4567 or 020 7946 0958.");
        assert_eq!(t, "Write to <EMAIL> or call <PHONE> or <PHONE>.");
        assert_eq!(c, PiiCounts { emails: 1, ips: 0, phones: 2 });
        let (t, c) = scrub("Server 192.168.0.1 and 2001:db8:85a3::8a2e:370:7334 and fe80:0:0:0:202:b3ff:fe1e:8329 answered.");
        assert_eq!(t, "Server <IP> and <IP> and <IP> answered.");
        assert_eq!(c.ips, 3);
    }

    #[test]
    fn leaves_numbers_that_are_not_personal_alone() {
        for s in [
            "Version 1.2.3.4.5 was released in 2024.",
            "The year 1999 and the score 3-1 and the time 12:30.",
            "Population 84 (2007), area 19.01 km², 300.256.1.1 is not an address.",
            "Ratio 3.5 to 4.25; see page 12-14.",
            "Email me at name at example dot com.",
        ] {
            let (t, c) = scrub(s);
            assert_eq!((t.as_str(), c.total()), (s, 0), "{s}");
        }
    }
}
