//! The report card of a run: `report.md` and a self-contained `report.html`, one section per
//! stage with its key numbers and plots, built from the files the stages left in the run
//! folder. Every number is read from those files; nothing is measured here except the
//! majority-value baseline, computed from the world's knowledge base.

mod doc;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use lmlab_eval::plot::Series;
use serde_json::Value;

use crate::runner::{human_secs, read_marker};
use crate::settings::RunSettings;
use crate::stages::{MODEL_STAGES, STAGE_NAMES};
pub use doc::{Block, Doc};

/// The report's language.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    fn pick<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        if self == Lang::Zh {
            zh
        } else {
            en
        }
    }
    fn code(self) -> &'static str {
        self.pick("en", "zh-CN")
    }
}

/// The occurrence buckets of the world's facts, rarest first.
const BUCKETS: [&str; 4] = ["1", "2-3", "4-10", "11+"];

/// Writes `report.md`, `report.html` and the plots (in `report/`) for the run folder `dir`.
/// Stages that have not run yet are named as such.
pub fn write(dir: &Path, lang: Lang) -> Result<Doc> {
    let settings = RunSettings::from_file(&dir.join("run.toml"))?;
    let plots = dir.join("report");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let mut r = Reader { dir, lang, metrics: Vec::new() };
    r.metrics = r.jsonl("metrics.jsonl");
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let mut d = Doc { title: format!("{} — {name}", lang.pick("lmlab run report", "lmlab 运行报告")), blocks: Vec::new() };
    summary(&r, &settings, &mut d)?;
    world(&r, &mut d);
    data(&r, &mut d);
    tokenizer(&r, &settings, &mut d);
    size(&r, &settings, &mut d);
    training(&r, &mut d);
    reward(&r, &mut d);
    rlhf(&r, &mut d);
    samples(&r, &settings, &mut d);
    qa(&r, &mut d);
    consistency(&r, &mut d);
    times(&r, &mut d);
    lmlab_model::checkpoint::write_atomic(&dir.join("report.md"), d.markdown().as_bytes())?;
    lmlab_model::checkpoint::write_atomic(&dir.join("report.html"), d.html(dir, lang.code()).as_bytes())?;
    Ok(d)
}

struct Reader<'a> {
    dir: &'a Path,
    lang: Lang,
    /// The run's metrics.jsonl.
    metrics: Vec<Value>,
}

impl Reader<'_> {
    fn json(&self, rel: &str) -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join(rel)).ok()?).ok()
    }
    fn jsonl(&self, rel: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join(rel)).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
    fn t<'a>(&self, en: &'a str, zh: &'a str) -> &'a str {
        self.lang.pick(en, zh)
    }
    fn not_run(&self, d: &mut Doc, stage: &str) {
        d.para(format!("{} `{stage}`", self.t("Not run yet: stage", "尚未运行：阶段")));
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A model stage's correct rate on the frequent facts (buckets 4-10 and 11+), with the count.
fn frequent_accuracy(qa: &Value) -> Option<(f64, usize)> {
    let (mut right, mut n) = (0.0, 0usize);
    for b in ["4-10", "11+"] {
        let g = &qa["groups"][format!("facts/bucket={b}")];
        let Some(k) = g["n"].as_u64().map(|k| k as usize) else { continue };
        right += f(&g["correct"]) * k as f64;
        n += k;
    }
    (n > 0).then(|| (right / n as f64, n))
}

/// The per-relation majority-value baseline on the frequent facts: answer every question with
/// the object its relation has most often in the knowledge base.
fn majority_baseline(r: &Reader) -> Option<(f64, usize)> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for e in r.jsonl("world/kb.jsonl") {
        for fact in e["facts"].as_array().into_iter().flatten() {
            let (Some(rel), Some(obj)) = (fact["relation"].as_str(), fact["object"].as_str()) else { continue };
            *counts.entry(rel.into()).or_default().entry(obj.into()).or_default() += 1;
        }
    }
    let majority: BTreeMap<&String, &String> = counts
        .iter()
        .filter_map(|(rel, objs)| objs.iter().max_by_key(|(o, n)| (**n, std::cmp::Reverse(*o))).map(|(o, _)| (rel, o)))
        .collect();
    let (mut right, mut n) = (0usize, 0usize);
    for q in r.jsonl("world/eval/facts.jsonl") {
        if !matches!(q["bucket"].as_str(), Some("4-10" | "11+")) {
            continue;
        }
        n += 1;
        let Some(m) = q["relation"].as_str().and_then(|rel| majority.get(&rel.to_string())) else { continue };
        // The knowledge base names the object in English; a Chinese question's answers list
        // the English form too.
        if q["answers"].as_array().into_iter().flatten().any(|a| a.as_str() == Some(m.as_str())) {
            right += 1;
        }
    }
    (n > 0).then(|| (right as f64 / n as f64, n))
}

fn summary(r: &Reader, s: &RunSettings, d: &mut Doc) -> Result<()> {
    d.heading("summary", r.t("Summary", "概要"));
    d.para(format!(
        "{} `{}` ({}); {} `{}`.",
        r.t("Run preset", "运行预设"),
        s.run.preset,
        s.run.description,
        r.t("training preset", "训练预设"),
        s.run.config
    ));
    let baseline = majority_baseline(r);
    let mut rows = Vec::new();
    for (model, _) in MODEL_STAGES {
        if let Some((acc, n)) = r.json(&format!("eval/qa/{model}/qa.json")).as_ref().and_then(frequent_accuracy) {
            let ratio = baseline.map_or("–".into(), |(b, _)| if b > 0.0 { format!("{:.1}×", acc / b) } else { "∞".into() });
            rows.push(vec![model.to_string(), n.to_string(), pct(acc), ratio]);
        }
    }
    if let Some((b, n)) = baseline {
        rows.push(vec![r.t("majority value per relation", "每个关系的最常见值").into(), n.to_string(), pct(b), "1.0×".into()]);
    }
    if rows.len() > 1 {
        d.para(r.t(
            "Accuracy on the questions about frequent facts (seen 4–10 and 11+ times in the crawl), against answering every question with its relation's most common value:",
            "对高频事实（在抓取数据中出现 4–10 次和 11 次以上）的问题的准确率，与“每个问题都回答该关系最常见的值”相比：",
        ));
        d.table(&[r.t("model", "模型"), r.t("questions", "问题数"), r.t("correct", "正确"), r.t("vs baseline", "相对基线")], rows);
    }
    Ok(())
}

fn world(r: &Reader, d: &mut Doc) {
    d.heading("world", r.t("1. The world", "1. 世界"));
    let Some(st) = r.json("world/stats.json") else { return r.not_run(d, "world") };
    d.para(format!(
        "{} {} {}, {} {}, {} {}; {} {:.1} MB WARC.",
        r.t("A generated web crawl of", "生成的网页抓取："),
        st["pages"],
        r.t("pages", "个页面"),
        st["entities"],
        r.t("entities", "个实体"),
        st["facts"],
        r.t("facts", "条事实"),
        r.t("crawl size", "抓取大小"),
        f(&st["warc_bytes"]) / 1e6
    ));
    let lang_rows = st["pages_by_language"].as_object().into_iter().flatten().map(|(k, v)| vec![k.clone(), v.to_string()]).collect();
    d.table(&[r.t("language", "语言"), r.t("pages", "页面")], lang_rows);
    let bucket_rows = BUCKETS.iter().map(|b| vec![b.to_string(), st["facts_by_occurrence_bucket"][*b].to_string()]).collect();
    d.table(&[r.t("documents a fact is in", "事实出现的文档数"), r.t("facts", "事实")], bucket_rows);
}

fn data(r: &Reader, d: &mut Doc) {
    d.heading("data", r.t("2. Data: the cleaning funnel", "2. 数据：清洗漏斗"));
    let Some(m) = r.json("data/manifest.json") else { return r.not_run(d, "data") };
    let c = &m["counts"];
    d.para(format!(
        "{} **{}** {} **{}** ({}); {} {} {}.",
        r.t("Documents in:", "输入文档："),
        c["documents"],
        r.t("kept:", "保留："),
        c["kept"],
        pct(f(&c["kept"]) / f(&c["documents"])),
        r.t("tokens:", "词元："),
        m["total_tokens"],
        r.t("in the shards", "（写入分片）")
    ));
    let mut rows = Vec::new();
    for (stage, rules) in c["removed"].as_object().into_iter().flatten() {
        for (rule, n) in rules.as_object().into_iter().flatten() {
            rows.push(vec![format!("{stage}/{rule}"), n.to_string()]);
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r[1].parse::<u64>().unwrap_or(0)));
    d.table(&[r.t("removed by", "移除规则"), r.t("documents", "文档")], rows);
    let langs = c["kept_by_language"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| vec![k.clone(), v.to_string(), m["tokens_by_language"][k].to_string()])
        .collect();
    d.table(&[r.t("language kept", "保留的语言"), r.t("documents", "文档"), r.t("tokens", "词元")], langs);
    if let Some(fl) = r.json("data/filters.json") {
        d.para(r.t("The filters against the world's labels (which pages should go):", "过滤器与世界标签（哪些页面应当移除）的对照："));
        d.table(
            &[r.t("measure", "指标"), r.t("value", "数值")],
            vec![
                vec![r.t("removal precision", "移除精确率").into(), pct(f(&fl["removal_precision"]))],
                vec![r.t("removal recall", "移除召回率").into(), pct(f(&fl["removal_recall"]))],
                vec![r.t("keep precision", "保留精确率").into(), pct(f(&fl["keep_precision"]))],
                vec![r.t("keep recall", "保留召回率").into(), pct(f(&fl["keep_recall"]))],
            ],
        );
    }
}

fn tokenizer(r: &Reader, s: &RunSettings, d: &mut Doc) {
    d.heading("tokenizer", r.t("3. Tokenizer", "3. 分词器"));
    let Some(rows) = r.json("tokenizer-stats.json") else { return r.not_run(d, "tokenizer") };
    d.para(format!("{} {} {}.", r.t("A byte-level BPE of", "字节级 BPE，词表"), s.tokenizer.vocab_size, r.t("tokens", "个词元")));
    let mut table = Vec::new();
    for (row, lang, script, unit) in
        [(0, "en", "latin", r.t("tokens per word", "每词词元数")), (1, "zh", "han", r.t("tokens per character", "每字词元数"))]
    {
        let x = &rows[row];
        table.push(vec![
            lang.into(),
            format!("{:.2}", f(&x["chars_per_token"])),
            format!("{:.3} {unit}", f(&x[script]["tokens_per_unit"])),
        ]);
    }
    d.table(&[r.t("language", "语言"), r.t("characters per token", "每词元字符数"), r.t("fertility", "切分率")], table);
}

fn size(r: &Reader, s: &RunSettings, d: &mut Doc) {
    d.heading("size", r.t("4. Model size", "4. 模型规模"));
    let Ok(cfg) = lmlab_model::checkpoint::load_config(&r.dir.join("base")) else { return r.not_run(d, "pretrain") };
    let Ok(p) = s.training_preset() else { return };
    let tokens = (p.train.max_steps as usize * p.train.batch_size * p.train.grad_accum * cfg.context_length) as f64;
    let q = lmlab_model::size::SizeQuery {
        dtype: lmlab_model::size::Dtype::F32,
        context: cfg.context_length,
        batch: 1,
        train_tokens: Some(tokens),
        gflops: 1.0,
    };
    let rep = lmlab_model::size::size_report(&cfg, &q);
    let n = rep.params.total as f64;
    d.table(
        &[r.t("quantity", "量"), r.t("value", "数值")],
        vec![
            vec![r.t("parameters", "参数").into(), format!("{}", rep.params.total)],
            vec![r.t("weights in f32", "f32 权重").into(), lmlab_model::size::human(n * 4.0, "B")],
            vec![r.t("pretraining tokens", "预训练词元").into(), format!("{tokens:.0}")],
            vec![r.t("training FLOPs", "训练 FLOPs").into(), format!("{:.3e}", rep.train_flops)],
            vec![
                r.t("tokens per parameter", "每参数词元数").into(),
                format!("{:.1} ({} ≈ 20)", tokens / n, r.t("Chinchilla", "Chinchilla")),
            ],
        ],
    );
}

/// A stage's train and held-out loss from the run's metrics.jsonl.
fn loss_curves(r: &Reader, stage: &str) -> Vec<Series> {
    [series(r, stage, "loss", "train loss"), series(r, stage, "eval_loss", "held-out loss")]
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// The (step, value) points of `key` in `stage`'s lines of the run's metrics.jsonl.
fn series(r: &Reader, stage: &str, key: &str, name: &str) -> Series {
    Series {
        name: name.into(),
        points: r.metrics.iter().filter(|l| l["stage"] == stage).filter_map(|l| Some((l["step"].as_f64()?, l[key].as_f64()?))).collect(),
    }
}

fn loss_section(r: &Reader, d: &mut Doc, stage: &str) {
    let curves = loss_curves(r, stage);
    if curves.is_empty() {
        return r.not_run(d, stage);
    }
    let last = |s: &Series| s.points.last().map_or("–".into(), |p| format!("{:.4} ({} {})", p.1, r.t("step", "步"), p.0));
    d.para(curves.iter().map(|c| format!("{}: {}", c.name, last(c))).collect::<Vec<_>>().join("; "));
    plot(r, d, &format!("{stage}-loss.png"), &format!("{stage}: loss"), ("step", "loss"), &curves, None);
}

fn training(r: &Reader, d: &mut Doc) {
    d.heading("pretrain", r.t("5. Pretraining", "5. 预训练"));
    loss_section(r, d, "pretrain");
    d.heading("sft", r.t("6. Instruction tuning (SFT)", "6. 指令微调（SFT）"));
    loss_section(r, d, "sft");
}

fn rlhf(r: &Reader, d: &mut Doc) {
    d.heading("rlhf", r.t("8. RLHF", "8. 基于人类反馈的强化学习（RLHF）"));
    let reward = series(r, "rlhf", "reward", "mean reward");
    let kl = series(r, "rlhf", "kl", "KL to the SFT model");
    if reward.points.is_empty() {
        return r.not_run(d, "rlhf");
    }
    let first_last = |s: &Series| format!("{:.3} → {:.3}", s.points[0].1, s.points[s.points.len() - 1].1);
    d.para(format!("{}: {}; KL: {}", r.t("mean reward per step", "每步平均奖励"), first_last(&reward), first_last(&kl)));
    plot(r, d, "rlhf-reward.png", "RLHF: reward", ("step", "reward"), std::slice::from_ref(&reward), None);
    plot(r, d, "rlhf-kl.png", "RLHF: KL to the SFT model", ("step", "KL (nats per response)"), std::slice::from_ref(&kl), None);
}

/// A line chart in `report/`, shown in the report; the y range is the data's unless given.
fn plot(r: &Reader, d: &mut Doc, file: &str, title: &str, (x, y): (&str, &str), series: &[Series], y_range: Option<(f64, f64)>) {
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite());
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let rel = format!("report/{file}");
    match lmlab_eval::plot::line_chart(&r.dir.join(&rel), title, x, y, series, y_range.unwrap_or((lo - pad, hi + pad))) {
        Ok(()) => d.image(&rel, title),
        Err(e) => d.para(format!("({}: {e:#})", r.t("no plot", "无图"))),
    }
}

fn reward(r: &Reader, d: &mut Doc) {
    d.heading("reward", r.t("7. Reward model", "7. 奖励模型"));
    let Some(train) = r.json("eval/reward-train.json") else { return r.not_run(d, "reward") };
    loss_section(r, d, "reward");
    let mut rows = Vec::new();
    let mut add = |set: &str, acc: &Value| {
        for (reason, a) in acc["by_reason"].as_object().into_iter().flatten() {
            rows.push(vec![format!("{set}: {reason}"), a["pairs"].to_string(), pct(f(&a["accuracy"]))]);
        }
        rows.push(vec![format!("{set}: {}", r.t("all", "全部")), acc["all"]["pairs"].to_string(), pct(f(&acc["all"]["accuracy"]))]);
    };
    add(r.t("held-out preferences", "留出偏好对"), &train["held_out"]);
    if let Some(facts) = r.json("eval/reward.json") {
        add(r.t("true vs false facts", "真 vs 假事实"), &facts["accuracy"]);
    }
    d.para(r.t(
        "How often the reward model scores the chosen reply above the rejected one (chance: 50%):",
        "奖励模型给被选回答打分高于被拒回答的比例（随机为 50%）：",
    ));
    d.table(&[r.t("pairs", "偏好对"), "n", r.t("accuracy", "准确率")], rows);
}

fn samples(r: &Reader, s: &RunSettings, d: &mut Doc) {
    d.heading("samples", r.t("9. Sample answers", "9. 回答示例"));
    let questions = r.jsonl("eval/samples/questions.jsonl");
    if questions.is_empty() {
        return r.not_run(d, "eval");
    }
    let mut rows = Vec::new();
    for q in &questions {
        let id = q["id"].as_str().unwrap_or_default();
        rows.push(vec![
            format!(
                "**{}** ({} {})",
                q["question"].as_str().unwrap_or_default(),
                r.t("bucket", "频次"),
                q["bucket"].as_str().unwrap_or("0")
            ),
            String::new(),
            String::new(),
        ]);
        for (model, _) in MODEL_STAGES {
            for t in &s.report.sample_temperatures {
                let Some(qa) = r.json(&format!("eval/samples/{model}-t{t}/qa.json")) else { continue };
                let Some(a) = qa["answers"].as_array().into_iter().flatten().find(|a| a["id"] == id) else { continue };
                rows.push(vec![
                    format!("{model}, T={t}"),
                    a["answer"].as_str().unwrap_or_default().trim().to_string(),
                    a["grade"].as_str().unwrap_or_default().to_string(),
                ]);
            }
        }
    }
    d.table(&[r.t("question / model", "问题 / 模型"), r.t("answer", "回答"), r.t("grade", "评分")], rows);
}

fn qa(r: &Reader, d: &mut Doc) {
    d.heading("qa", r.t("10. What each model knows, invents and declines", "10. 各模型知道、编造和拒答的比例"));
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    for (model, _) in MODEL_STAGES {
        let Some(qa) = r.json(&format!("eval/qa/{model}/qa.json")) else { continue };
        let mut points = Vec::new();
        let groups: Vec<String> =
            BUCKETS.iter().map(|b| format!("facts/bucket={b}")).chain(["nonexistent".into(), "paraphrase".into()]).collect();
        for (i, g) in groups.iter().enumerate() {
            let x = &qa["groups"][g];
            if x.is_null() {
                continue;
            }
            rows.push(vec![
                format!("{model}: {}", g.trim_start_matches("facts/")),
                x["n"].to_string(),
                pct(f(&x["correct"])),
                pct(f(&x["wrong"])),
                pct(f(&x["abstained"])),
            ]);
            if i < BUCKETS.len() {
                points.push((i as f64, 100.0 * f(&x["correct"])));
            }
        }
        curves.push(Series { name: model.into(), points });
    }
    if rows.is_empty() {
        return r.not_run(d, "eval");
    }
    d.para(r.t(
        "Graded answers by how often the fact appeared in the crawl (bucket), for questions about entities that do not exist, and for paraphrased questions. Wrong answers are hallucinations.",
        "按事实在抓取数据中出现的次数（频次）分组的评分；另有关于不存在实体的问题和改写后的问题。错误回答即幻觉。",
    ));
    d.table(
        &[
            r.t("model: questions", "模型：问题"),
            "n",
            r.t("correct", "正确"),
            r.t("wrong (invented)", "错误（编造）"),
            r.t("abstained", "拒答"),
        ],
        rows,
    );
    plot(
        r,
        d,
        "qa-by-bucket.png",
        "correct by fact frequency (x: buckets 1, 2-3, 4-10, 11+)",
        ("bucket", "correct %"),
        &curves,
        Some((0.0, 100.0)),
    );
}

fn consistency(r: &Reader, d: &mut Doc) {
    d.heading("consistency", r.t("11. Consistency and hallucination detection", "11. 一致性与幻觉检测"));
    let Some(c) = r.json("eval/consistency/consistency.json") else { return r.not_run(d, "eval") };
    let rows = c["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["group"] == "all")
        .map(|x| {
            vec![
                format!("T={}", x["temperature"]),
                format!("{:.2}", f(&x["majority_agreement"])),
                format!("{:.2}", f(&x["distinct_answers"])),
                format!("{:.3}", f(&x["semantic_entropy"])),
            ]
        })
        .collect();
    d.para(format!(
        "{} {} {}.",
        r.t("The RLHF model, each of", "RLHF 模型，"),
        c["questions"],
        r.t("questions sampled several times at each temperature", "个问题在每个温度下多次采样")
    ));
    d.table(
        &[
            r.t("temperature", "温度"),
            r.t("agreement with the majority", "与多数答案一致"),
            r.t("distinct answers", "不同答案数"),
            r.t("semantic entropy", "语义熵"),
        ],
        rows,
    );
    let det = c["detection"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            vec![
                x["signal"].as_str().unwrap_or_default().to_string(),
                x["n"].to_string(),
                x["auroc"].as_f64().map_or("–".into(), |a| format!("{a:.3}")),
            ]
        })
        .collect();
    d.para(r.t(
        "Telling wrong answers from right ones with the model alone (AUROC; 0.5 is chance):",
        "仅凭模型自身区分错误与正确回答（AUROC；0.5 为随机）：",
    ));
    d.table(&[r.t("signal", "信号"), "n", "AUROC"], det);
}

fn times(r: &Reader, d: &mut Doc) {
    d.heading("time", r.t("12. Wall time per stage", "12. 各阶段用时"));
    let mut total = 0.0;
    let mut rows = Vec::new();
    for name in STAGE_NAMES {
        match read_marker(r.dir, name) {
            Some(m) => {
                total += m.seconds;
                rows.push(vec![name.to_string(), human_secs(m.seconds)]);
            }
            // The report is written while its own stage runs.
            None if name == "report" => {}
            None => rows.push(vec![name.to_string(), r.t("not finished", "未完成").into()]),
        }
    }
    rows.push(vec![r.t("total", "合计").into(), human_secs(total)]);
    d.table(&[r.t("stage", "阶段"), r.t("wall time", "用时")], rows);
}
