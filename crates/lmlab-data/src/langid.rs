//! Language identification with `whatlang` (trigram profiles for 69 languages, no model files
//! to download, fast enough for a crawl): an ISO 639-3 code ("eng", "cmn", "spa", ...) and a
//! confidence in [0, 1], and a keep-list filter on top.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detected {
    /// ISO 639-3 code, e.g. "eng", "cmn".
    pub lang: &'static str,
    pub confidence: f64,
}

/// The language of `text`, or None when there is too little text to tell.
pub fn detect(text: &str) -> Option<Detected> {
    // Trigram statistics settle well within the first few thousand characters.
    let sample: String = text.chars().take(4000).collect();
    let info = whatlang::detect(&sample)?;
    Some(Detected { lang: info.lang().code(), confidence: info.confidence() })
}

/// Keep documents in these languages at this minimum confidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LanguageFilter {
    /// ISO 639-3 codes; empty keeps every language.
    pub keep: Vec<String>,
    pub min_confidence: f64,
}

impl Default for LanguageFilter {
    fn default() -> Self {
        Self { keep: vec!["eng".into(), "cmn".into()], min_confidence: 0.5 }
    }
}

impl LanguageFilter {
    /// The detected language if the document passes, else the rule that removes it.
    pub fn check(&self, text: &str) -> Result<Detected, &'static str> {
        let d = detect(text).ok_or("language_undetermined")?;
        if !self.keep.is_empty() && !self.keep.iter().any(|k| k == d.lang) {
            return Err("language_not_kept");
        }
        if d.confidence < self.min_confidence {
            return Err("language_low_confidence");
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_chinese_and_spanish_are_told_apart() {
        let en = "The river runs through the old town, and the people who live there have always loved it.";
        let zh = "子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？";
        let es = "El río atraviesa el pueblo antiguo y la gente que vive allí siempre lo ha querido mucho.";
        assert_eq!(detect(en).unwrap().lang, "eng");
        assert_eq!(detect(zh).unwrap().lang, "cmn");
        assert_eq!(detect(es).unwrap().lang, "spa");
        let f = LanguageFilter::default();
        assert_eq!(f.check(en).unwrap().lang, "eng");
        assert_eq!(f.check(es), Err("language_not_kept"));
        assert_eq!(f.check("12345 67890 !!!"), Err("language_undetermined"));
        let all = LanguageFilter { keep: vec![], min_confidence: 0.0 };
        assert_eq!(all.check(es).unwrap().lang, "spa");
    }
}
