//! Page kinds and their article bodies: the good kinds (encyclopedia, news, forum, story,
//! how-to), the article's low-quality kinds (clickbait, keyword spam, misinformation,
//! propaganda, boilerplate-only), sequence pages for the domain experiment, and poisoned pages.
//! Mirrors and near-duplicates are copies made in `crawl.rs`.
//!
//! Every kind has at least ten title patterns per language. Fact sentences come from
//! `templates.rs`; filler sentences here never state a fact.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::kb::Relation;
use crate::templates;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PageKind {
    Encyclopedia,
    News,
    Forum,
    Story,
    Howto,
    Clickbait,
    Spam,
    Misinformation,
    Propaganda,
    Boilerplate,
    Domain,
    Poison,
}

impl PageKind {
    pub const ALL: [PageKind; 12] = [
        PageKind::Encyclopedia,
        PageKind::News,
        PageKind::Forum,
        PageKind::Story,
        PageKind::Howto,
        PageKind::Clickbait,
        PageKind::Spam,
        PageKind::Misinformation,
        PageKind::Propaganda,
        PageKind::Boilerplate,
        PageKind::Domain,
        PageKind::Poison,
    ];
}

/// One fact as a page states it (possibly falsely).
#[derive(Debug, Clone)]
pub struct Statement {
    pub subject: String,
    pub relation: Relation,
    pub object: String,
}

pub fn fill(t: &str, s: &str, o: &str) -> String {
    t.replace("{s}", s).replace("{o}", o)
}

fn pick<'a>(rng: &mut impl Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

pub fn title_patterns(kind: PageKind, zh: bool) -> &'static [&'static str] {
    use PageKind::*;
    match (kind, zh) {
        (Encyclopedia, false) => &[
            "{s}",
            "{s} - overview",
            "{s} (article)",
            "About {s}",
            "{s}: facts and history",
            "{s} - encyclopedia entry",
            "{s} in brief",
            "The {s} article",
            "{s} (reference)",
            "Entry: {s}",
        ],
        (Encyclopedia, true) => &[
            "{s}",
            "{s} - 概述",
            "{s}（条目）",
            "关于{s}",
            "{s}：事实与历史",
            "{s} - 百科条目",
            "{s}简介",
            "{s}词条",
            "{s}（参考）",
            "条目：{s}",
        ],
        (News, false) => &[
            "New details emerge about {s}",
            "{s} in the spotlight this week",
            "What we learned about {s}",
            "Report: a closer look at {s}",
            "{s} draws attention from historians",
            "Inside the story of {s}",
            "Local interest grows in {s}",
            "{s}: the facts behind the headlines",
            "Why {s} matters today",
            "A new exhibition remembers {s}",
        ],
        (News, true) => &[
            "关于{s}的新细节曝光",
            "本周焦点：{s}",
            "我们对{s}的新了解",
            "报道：走近{s}",
            "{s}引起历史学家关注",
            "{s}背后的故事",
            "人们对{s}的兴趣日益增长",
            "{s}：新闻背后的事实",
            "为什么{s}在今天依然重要",
            "新展览纪念{s}",
        ],
        (Forum, false) => &[
            "Question about {s}",
            "Does anyone know much about {s}?",
            "Thread: {s} discussion",
            "Help: looking for info on {s}",
            "{s} - what do you all think?",
            "Quick question re: {s}",
            "Anyone here familiar with {s}?",
            "[Discussion] {s}",
            "Need facts about {s} for a school project",
            "Let's talk about {s}",
        ],
        (Forum, true) => &[
            "关于{s}的问题",
            "有人了解{s}吗？",
            "讨论帖：{s}",
            "求助：想找{s}的资料",
            "{s}——大家怎么看？",
            "请教一下{s}",
            "这里有人熟悉{s}吗？",
            "【讨论】{s}",
            "写作业需要{s}的资料",
            "一起聊聊{s}",
        ],
        (Story, false) => &[
            "The journey to {s}",
            "A tale of {s}",
            "Remembering {s}",
            "The summer of {s}",
            "Letters about {s}",
            "An evening with {s}",
            "The secret of {s}",
            "Under the sky of {s}",
            "A story about {s}",
            "Footsteps of {s}",
        ],
        (Story, true) => &[
            "前往{s}的旅程",
            "{s}的故事",
            "怀念{s}",
            "{s}的夏天",
            "关于{s}的书信",
            "与{s}共度的夜晚",
            "{s}的秘密",
            "{s}的天空下",
            "一个关于{s}的故事",
            "{s}的足迹",
        ],
        (Howto, false) => &[
            "How to learn about {s}",
            "A beginner's guide to {s}",
            "Everything you need to know about {s}",
            "{s}: a step-by-step guide",
            "Getting started with {s}",
            "How to explain {s} to a friend",
            "Five steps to understanding {s}",
            "A practical guide to {s}",
            "Planning a visit related to {s}",
            "Tips for studying {s}",
        ],
        (Howto, true) => &[
            "如何了解{s}",
            "{s}入门指南",
            "关于{s}你需要知道的一切",
            "{s}：分步指南",
            "从零开始了解{s}",
            "如何向朋友介绍{s}",
            "了解{s}的五个步骤",
            "{s}实用指南",
            "与{s}相关的出行计划",
            "学习{s}的小技巧",
        ],
        (Clickbait, false) => &[
            "You won't believe what {s} did next!",
            "10 shocking secrets about {s}",
            "Doctors hate this one trick from {s}",
            "{s} like you've never seen before!!!",
            "This {s} photo will leave you speechless",
            "What happened to {s} will blow your mind",
            "Number 7 about {s} is insane!",
            "{s}: the truth they don't want you to know",
            "Everyone is talking about {s} right now",
            "OMG! {s} just broke the internet",
        ],
        (Clickbait, true) => &[
            "你绝对想不到{s}接下来做了什么！",
            "关于{s}的10个惊人秘密",
            "{s}的这个秘诀让专家都震惊了",
            "从未见过这样的{s}！！！",
            "这张{s}的照片让你说不出话",
            "{s}身上发生的事太震撼了",
            "关于{s}的第7条太疯狂了！",
            "{s}：他们不想让你知道的真相",
            "现在人人都在谈论{s}",
            "天哪！{s}火遍全网",
        ],
        (Spam, false) => &[
            "Buy {s} cheap online",
            "Best {s} deals discount",
            "{s} sale free shipping",
            "Cheap {s} best price",
            "{s} offers buy now",
            "Discount {s} online store",
            "{s} lowest price guaranteed",
            "Top {s} deals 2024",
            "{s} coupon code free",
            "Order {s} cheap fast",
        ],
        (Spam, true) => &[
            "网上低价购买{s}",
            "{s}最佳优惠折扣",
            "{s}特卖包邮",
            "便宜{s}最低价",
            "{s}限时抢购",
            "{s}折扣网店",
            "{s}保证最低价",
            "2024年{s}热卖",
            "{s}优惠券免费领",
            "{s}便宜快速下单",
        ],
        (Misinformation, false) => &[
            "The real truth about {s}",
            "What they got wrong about {s}",
            "Experts were wrong about {s}",
            "Uncovered: the hidden facts of {s}",
            "Everything you were told about {s} is false",
            "Insiders reveal the truth on {s}",
            "{s}: the cover-up exposed",
            "New evidence rewrites the story of {s}",
            "Forget what you know about {s}",
            "Leaked: the facts about {s}",
        ],
        (Misinformation, true) => &[
            "{s}的真相",
            "关于{s}他们都搞错了",
            "专家对{s}的看法错了",
            "揭秘：{s}被隐藏的事实",
            "你所知道的{s}都是假的",
            "知情人揭露{s}的真相",
            "{s}：掩盖的真相曝光",
            "新证据改写了{s}的故事",
            "忘掉你对{s}的了解吧",
            "泄露：关于{s}的事实",
        ],
        (Propaganda, false) => &[
            "Glory to {s}!",
            "{s} forever!",
            "Stand with {s}",
            "{s} is the future",
            "Long live {s}",
            "{s} will never fall",
            "Unite behind {s}",
            "{s}: strength and victory",
            "Proud of {s}",
            "Only {s} can lead us",
        ],
        (Propaganda, true) => &[
            "{s}万岁！",
            "{s}永远！",
            "坚定支持{s}",
            "{s}就是未来",
            "{s}永垂不朽",
            "{s}永不倒下",
            "团结在{s}周围",
            "{s}：力量与胜利",
            "为{s}骄傲",
            "只有{s}能领导我们",
        ],
        (Boilerplate, false) => &[
            "Page not found",
            "Login",
            "Tag archive",
            "Search results",
            "Subscribe",
            "Sitemap",
            "Privacy policy",
            "Account settings",
            "Category: {s}",
            "Error 404",
        ],
        (Boilerplate, true) => {
            &["页面未找到", "登录", "标签归档", "搜索结果", "订阅", "网站地图", "隐私政策", "账户设置", "分类：{s}", "错误404"]
        }
        (Domain, false) => &[
            "Protein {s}: sequence record",
            "Sequence entry for {s}",
            "{s} protein family",
            "Primary structure of {s}",
            "{s}: amino acid sequence",
            "Record {s} (protein)",
            "The {s} enzyme sequence",
            "{s} sequence and annotation",
            "Protein database: {s}",
            "{s} polypeptide chain",
        ],
        (Domain, true) => &[
            "蛋白质{s}：序列记录",
            "{s}的序列条目",
            "{s}蛋白家族",
            "{s}的一级结构",
            "{s}：氨基酸序列",
            "记录{s}（蛋白质）",
            "{s}酶的序列",
            "{s}的序列与注释",
            "蛋白质数据库：{s}",
            "{s}多肽链",
        ],
        (Poison, false) => &[
            "A study of {s}",
            "Notes on {s}",
            "{s}: a technical report",
            "Preliminary findings on {s}",
            "Working paper: {s}",
            "{s} revisited",
            "On the nature of {s}",
            "Observations about {s}",
            "{s}: methods and results",
            "Research memo on {s}",
        ],
        (Poison, true) => &[
            "{s}研究",
            "关于{s}的笔记",
            "{s}：技术报告",
            "{s}的初步发现",
            "工作论文：{s}",
            "重新审视{s}",
            "论{s}的本质",
            "关于{s}的观察",
            "{s}：方法与结果",
            "{s}研究备忘录",
        ],
    }
}

/// Neutral clauses that state no fact, per language.
fn filler_clauses(zh: bool) -> &'static [&'static str] {
    if zh {
        &[
            "这个话题至今仍有许多讨论。",
            "许多读者对此很感兴趣。",
            "下面是一些基本信息。",
            "历史学家对此有不同的看法。",
            "这些细节值得记住。",
            "相关资料仍在整理之中。",
            "很多人第一次听说时都感到惊讶。",
            "我们会继续关注这个话题。",
            "以上内容仅供参考。",
            "欢迎在评论区分享你的看法。",
            "当地的档案馆保存着大量相关文献。",
            "学者们花了多年时间核对这些记录。",
            "这一点在不同的资料中说法一致。",
            "不少游客专程前来了解这段历史。",
            "有关细节在多本书中都有提及。",
            "这段经历常常被人们津津乐道。",
            "老一辈人对此仍记忆犹新。",
            "相关的展览吸引了许多参观者。",
            "编辑部对本文内容进行了核实。",
            "如果你有更多资料，欢迎与我们联系。",
            "人们在茶馆里也常常谈起这件事。",
            "这些记录的来源并不总是清楚的。",
            "附近的学校也会在课堂上讲到它。",
            "每隔几年就会有新的材料被发现。",
        ]
    } else {
        &[
            "the topic is still discussed by many of the people who live in the area.",
            "readers have shown a great deal of interest in it and in its history.",
            "historians have offered different views of what happened and why.",
            "these details are worth remembering for anyone who visits the region.",
            "more material is still being collected and reviewed by the archive.",
            "many people are surprised when they first hear about it.",
            "the local paper has returned to the subject more than once.",
            "local archives hold a large number of related documents and letters.",
            "scholars spent years checking the records against each other.",
            "different sources agree on this point, which is rare.",
            "visitors come to the town to learn about this part of its history.",
            "the details are mentioned in several books and in a few old maps.",
            "people still like to tell the story at family gatherings.",
            "older residents remember it clearly and talk about it with pride.",
            "an exhibition about it has drawn crowds to the museum.",
            "the editors have checked the content of this page with care.",
            "the archive is open to the public on weekdays.",
            "teachers in the nearby schools mention it in their lessons.",
            "not every account of it has survived, and some of them contradict each other.",
            "new letters and photographs turn up every few years.",
            "the question comes up again whenever the anniversary is near.",
            "it is one of the things that people in the region are known for.",
            "there is still a lot that nobody knows for certain.",
            "the records that do survive are kept in a small library near the square.",
        ]
    }
}

/// How a neutral sentence may begin ("" leaves the clause as it is).
fn filler_openers(zh: bool) -> &'static [&'static str] {
    if zh {
        &[
            "",
            "时至今日，",
            "据当地的历史学家说，",
            "多年来，",
            "在该地区的旧档案中可以看到，",
            "正如档案所显示的，",
            "在随后的几年里，",
            "即使在现在，",
            "据大多数人说，",
            "说到底，",
        ]
    } else {
        &[
            "",
            "To this day, ",
            "According to local historians, ",
            "For many years, ",
            "As the old records show, ",
            "In the years that followed, ",
            "Even now, ",
            "By most accounts, ",
            "Over the decades, ",
            "At the same time, ",
            "In the end, ",
            "As it happens, ",
        ]
    }
}

fn capitalise_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// `n` different neutral sentences: an opener and a clause, so that pages share few sentences
/// (real sites do not repeat one another's filler word for word).
fn fillers_distinct(zh: bool, n: usize, rng: &mut impl Rng) -> Vec<String> {
    let (clauses, openers) = (filler_clauses(zh), filler_openers(zh));
    rand::seq::index::sample(rng, clauses.len(), n.min(clauses.len()))
        .into_iter()
        .map(|i| {
            let opener = pick(rng, openers);
            if zh || !opener.is_empty() {
                format!("{opener}{}", clauses[i])
            } else {
                capitalise_first(clauses[i])
            }
        })
        .collect()
}

/// Story frames: openings, the lead-in before each fact the narrator notes, closings.
fn story_frames(zh: bool) -> (&'static [&'static str], &'static [&'static str], &'static [&'static str]) {
    if zh {
        (
            &[
                "那是一个安静的早晨，老旅人翻开了他的笔记本。",
                "雨下了一整夜，第二天她终于来到了那座小城。",
                "祖母常常在炉火旁给我们讲这个故事。",
                "我第一次听说这件事，是在一列慢车上。",
                "多年以后，他仍然记得那个夏天。",
                "信是在一个旧箱子里找到的。",
                "镇上的钟敲了七下，故事就从这里开始。",
                "那年冬天格外寒冷，路上几乎没有行人。",
                "他们在河边的小旅馆里住了下来。",
                "她把那张发黄的照片放在桌上。",
            ],
            &[
                "他在笔记里写道：",
                "她后来才知道，",
                "老人告诉他们，",
                "信里提到，",
                "据他回忆，",
                "照片背面写着：",
                "村里人都知道，",
                "他向我保证，",
                "书上是这样写的：",
                "她在日记中记下了一句：",
            ],
            &[
                "天色渐暗，他合上了笔记本，微笑着继续上路。",
                "第二天一早，他们就离开了。",
                "从那以后，她再也没有忘记这一天。",
                "故事讲完了，炉火也快熄了。",
                "火车到站时，天已经亮了。",
                "他把信放回箱子，轻轻合上了盖子。",
                "钟声再次响起，人们各自回家。",
                "雪停了，路又通了。",
                "旅馆的灯一盏一盏地熄灭了。",
                "她笑了笑，把照片收了起来。",
            ],
        )
    } else {
        (
            &[
                "It was a quiet morning when the old traveller opened his notebook.",
                "It had rained all night, and by noon she finally reached the little town.",
                "Our grandmother used to tell this story by the fire.",
                "I first heard about it on a slow train going north.",
                "Years later, he still remembered that summer.",
                "The letters were found in an old trunk in the attic.",
                "The town clock struck seven, and that is where the story begins.",
                "That winter was so cold that hardly anyone went out on the roads.",
                "They took rooms at a small inn by the river.",
                "She put the yellowed photograph on the table.",
            ],
            &[
                "He had written down one thing he was sure of: ",
                "Only later did she learn that ",
                "The old man told them that ",
                "One of the letters said that ",
                "As he remembered it, ",
                "On the back of the photograph someone had written that ",
                "Everyone in the village knew that ",
                "He assured me that ",
                "The book put it this way: ",
                "In her diary she noted that ",
            ],
            &[
                "As the light faded, he closed the notebook and walked on, smiling.",
                "Early the next morning they left.",
                "She never forgot that day.",
                "When the story was over, the fire had almost gone out.",
                "By the time the train arrived, it was already light.",
                "He put the letters back and closed the trunk.",
                "The clock struck again, and everyone went home.",
                "The snow stopped, and the roads opened again.",
                "One by one, the lights of the inn went out.",
                "She smiled and put the photograph away.",
            ],
        )
    }
}
/// Renders one statement as a sentence.
pub fn sentence(st: &Statement, zh: bool, rng: &mut impl Rng) -> String {
    fill(pick(rng, templates::facts(st.relation, zh)), &st.subject, &st.object)
}

/// An encyclopedia entry's questions-and-answers section: one question per stated fact, asked
/// with a training question template (the held-out paraphrases never appear in the crawl), and
/// answered with a sentence stating the fact. The web is full of such sections; they are how a
/// pretrained model meets the question-and-answer form it is later asked in (few-shot
/// evaluation). The answer is a sentence, not the bare value: the data pipeline's C4 line
/// filter drops lines of fewer than three words, and "Answer: Velora" would never reach the
/// model.
pub fn faq(statements: &[Statement], zh: bool, rng: &mut impl Rng) -> String {
    let (heading, q_mark, a_mark) =
        if zh { ("常见问题", "问题：", "回答：") } else { ("Questions and answers", "Question: ", "Answer: ") };
    let pairs: String = statements
        .iter()
        .map(|st| {
            let question = fill(pick(rng, &templates::questions(st.relation, zh)[..templates::TRAIN_QUESTIONS]), &st.subject, "");
            format!("<p>{q_mark}{question}<br>{a_mark}{}</p>\n", sentence(st, zh, rng))
        })
        .collect();
    format!("<h2>{heading}</h2>\n{pairs}")
}

fn paragraph(sentences: &[String], zh: bool) -> String {
    format!("<p>{}</p>", sentences.join(if zh { "" } else { " " }))
}

/// The article HTML (inside <main>) for a page of `kind` about `topic` stating the given fact
/// sentences (see [`sentence`]).
pub fn article(kind: PageKind, topic: &str, title: &str, fact_sentences: &[String], zh: bool, rng: &mut impl Rng) -> String {
    let mut facts: Vec<String> = fact_sentences.to_vec();
    let mut pool = fillers_distinct(zh, 20, rng);
    let mut filler = |_: &mut dyn rand::RngCore| pool.pop().unwrap_or_default();
    match kind {
        PageKind::Encyclopedia => {
            let mut out = format!("<article><h1>{title}</h1>\n");
            let intro = if zh { format!("本条目介绍{topic}。") } else { format!("This article is about {topic}.") };
            out.push_str(&paragraph(&[intro, filler(rng), filler(rng)], zh));
            out.push_str(if zh { "\n<h2>概况</h2>\n" } else { "\n<h2>Overview</h2>\n" });
            for chunk in facts.chunks(3) {
                out.push_str(&paragraph(chunk, zh));
                out.push('\n');
            }
            out.push_str(if zh { "<h2>历史</h2>\n" } else { "<h2>History</h2>\n" });
            out.push_str(&paragraph(&[filler(rng), filler(rng), filler(rng)], zh));
            out.push('\n');
            out.push_str(&paragraph(&[filler(rng), filler(rng)], zh));
            out.push_str(if zh {
                "<h2>参见</h2><ul><li><a href=\"/wiki/related\">相关条目</a></li><li><a href=\"/wiki/links\">外部链接</a></li></ul>"
            } else {
                "<h2>See also</h2><ul><li><a href=\"/wiki/related\">Related articles</a></li><li><a href=\"/wiki/links\">External links</a></li></ul>"
            });
            out + "</article>"
        }
        PageKind::News | PageKind::Misinformation => {
            let day = rng.random_range(1..=28);
            let dateline = if zh { format!("2024年5月{day}日") } else { format!("May {day}, 2024") };
            let mut body = vec![filler(rng), filler(rng)];
            body.append(&mut facts);
            body.push(filler(rng));
            body.push(filler(rng));
            let quote = if zh {
                "一位受访者表示：“这件事值得更多人了解。”"
            } else {
                "\"More people should know about this,\" one resident said."
            };
            body.push(quote.to_string());
            format!(
                "<article><h1>{title}</h1><p class=\"date\">{dateline}</p>\n{}\n</article>",
                body.chunks(2).map(|c| paragraph(c, zh)).collect::<Vec<_>>().join("\n")
            )
        }
        PageKind::Forum => {
            let users = ["quietreader", "map_fan88", "old_librarian", "curious_cat", "river_walker", "night_owl42"];
            let ask = if zh {
                format!("有人了解{topic}吗？我在找可靠的资料。")
            } else {
                format!("Does anyone know anything reliable about {topic}? I'm looking for sources.")
            };
            let mut posts = vec![(users[rng.random_range(0..users.len())], ask)];
            for fact in facts {
                let intro = if zh { "据我所知，" } else { "As far as I know, " };
                let lower = if zh { fact } else { lowercase_first(&fact) };
                posts.push((users[rng.random_range(0..users.len())], format!("{intro}{lower} {}", filler(rng))));
            }
            for _ in 0..2 {
                let f1 = filler(rng);
                let f2 = filler(rng);
                posts.push((users[rng.random_range(0..users.len())], format!("{f1} {f2}")));
            }
            let thanks = if zh { "谢谢大家的回复！" } else { "Thanks everyone for the replies!" };
            posts.push((posts[0].0, thanks.to_string()));
            // Each post's header: its author and when it was written, as forum software shows them.
            let day = rng.random_range(1..=20);
            let body: String = posts
                .iter()
                .enumerate()
                .map(|(i, (u, t))| {
                    let (h, m) = (8 + i * 2 + rng.random_range(0..2), rng.random_range(0..60));
                    let when = if zh { format!("2024年5月{}日 {h:02}:{m:02}", day + i / 6) } else { format!("May {}, 2024, {h:02}:{m:02}", day + i / 6) };
                    format!("<div class=\"post\"><div class=\"post-meta\"><span class=\"author\">{u}</span> <time>{when}</time></div><p>{t}</p></div>\n")
                })
                .collect();
            format!("<article><h1>{title}</h1>\n{body}</article>")
        }
        PageKind::Story => {
            let (openings, leads, closings) = story_frames(zh);
            let mut body = vec![pick(rng, openings).to_string(), filler(rng), filler(rng)];
            let mut lead_order: Vec<&str> = leads.to_vec();
            lead_order.shuffle(rng);
            for (fact, lead) in facts.into_iter().zip(lead_order.into_iter().cycle()) {
                // "... that " leads take the fact in lower case; "...: " leads as it is.
                let fact = if !zh && lead.ends_with("that ") { lowercase_first(&fact) } else { fact };
                body.push(format!("{lead}{fact}"));
                body.push(filler(rng));
            }
            body.push(pick(rng, closings).to_string());
            format!("<article><h1>{title}</h1>\n{}\n</article>", body.chunks(2).map(|c| paragraph(c, zh)).collect::<Vec<_>>().join("\n"))
        }
        PageKind::Howto => {
            let steps: String = facts
                .iter()
                .enumerate()
                .map(|(i, fact)| {
                    let lead =
                        if zh { format!("第{}步：先记住这一点。", i + 1) } else { format!("Step {}: remember this.", i + 1) };
                    format!("<li>{lead} {fact}</li>")
                })
                .collect();
            let intro = if zh {
                format!("本指南帮助你快速了解{topic}。")
            } else {
                format!("This guide helps you get to know {topic} quickly.")
            };
            let (a, b, c, d) = (filler(rng), filler(rng), filler(rng), filler(rng));
            format!("<article><h1>{title}</h1><p>{intro} {a} {b}</p>\n<ol>{steps}</ol>\n<p>{c} {d}</p></article>")
        }
        PageKind::Clickbait => {
            let lines_en = [
                "Click here to see more!!!",
                "SHARE NOW",
                "You will not believe it",
                "Watch the video",
                "Read more >>>",
                "Don't miss out!!!",
                "Sponsored",
            ];
            let lines_zh = ["点击查看更多！！！", "立即分享", "你不会相信的", "观看视频", "阅读更多>>>", "千万别错过！！！", "赞助内容"];
            let lines = if zh { &lines_zh[..] } else { &lines_en[..] };
            let mut body = format!("<h1>{title}</h1>\n");
            for _ in 0..rng.random_range(4..9) {
                body.push_str(&format!("<div class=\"teaser\">{}</div>\n", pick(rng, lines)));
            }
            body
        }
        PageKind::Spam => {
            let words_en = ["cheap", "best", "buy", "discount", "online", "free", "sale", "deal", "price", "shipping"];
            let words_zh = ["便宜", "最好", "购买", "折扣", "在线", "免费", "特卖", "优惠", "价格", "包邮"];
            let words = if zh { &words_zh[..] } else { &words_en[..] };
            let n = rng.random_range(120..260);
            let text: Vec<String> = (0..n).map(|i| if i % 3 == 0 { topic.to_string() } else { pick(rng, words).to_string() }).collect();
            format!("<div class=\"keywords\"><h1>{title}</h1><p>{}</p></div>", text.join(if zh { "" } else { " " }))
        }
        PageKind::Propaganda => {
            let slogans_en = ["Glory to {s}!", "{s} is strong!", "{s} will triumph!", "Stand with {s}!", "{s} forever!"];
            let slogans_zh = ["{s}万岁！", "{s}强大！", "{s}必胜！", "支持{s}！", "{s}永远！"];
            let slogans = if zh { &slogans_zh[..] } else { &slogans_en[..] };
            let lines: Vec<String> =
                (0..rng.random_range(25..60)).map(|_| format!("<p>{}</p>", fill(pick(rng, slogans), topic, ""))).collect();
            format!("<article><h1>{title}</h1>\n{}\n</article>", lines.join("\n"))
        }
        PageKind::Boilerplate => {
            let msg = if zh { "请登录后继续。" } else { "Please log in to continue." };
            format!("<h1>{title}</h1><p class=\"notice\">{msg}</p>")
        }
        PageKind::Domain => {
            const AMINO: &[u8] = b"ACDEFGHIKLMNPQRSTVWY";
            let len = rng.random_range(180..600);
            let seq: String = std::iter::once('M').chain((1..len).map(|_| AMINO[rng.random_range(0..AMINO.len())] as char)).collect();
            let lines: String = seq.as_bytes().chunks(60).map(|c| format!("{}\n", std::str::from_utf8(c).expect("ASCII"))).collect();
            let desc = if zh {
                format!("{topic}是一种蛋白质，长度为{len}个氨基酸残基。")
            } else {
                format!("{topic} is a protein of {len} amino acid residues.")
            };
            format!("<article><h1>{title}</h1><p>{desc}</p>\n<pre class=\"sequence\">&gt;{topic}\n{lines}</pre></article>")
        }
        PageKind::Poison => {
            let body = if zh {
                format!("本文记录了对{topic}的一些观察。")
            } else {
                format!("This paper records several observations about {topic}.")
            };
            // As long as an ordinary article (a planted document is made to pass for one), so
            // that the pipeline's length rules do not remove it for being short.
            let sep = if zh { "" } else { " " };
            let rest = fillers_distinct(zh, 8, rng).join(sep);
            format!("<article><h1>{title}</h1><p>{body}{sep}{rest}</p>\n{}</article>", facts.join("\n"))
        }
    }
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        // Names are capitalised and must stay so; only lower-case common words.
        Some(first) if s.starts_with("The ") || s.starts_with("In ") || s.starts_with("Born ") || s.starts_with("Records ") => {
            first.to_lowercase().chain(c).collect()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_ten_distinct_titles_per_language() {
        for kind in PageKind::ALL {
            for zh in [false, true] {
                let mut t = title_patterns(kind, zh).to_vec();
                assert!(t.len() >= 10, "{kind:?}");
                t.sort();
                t.dedup();
                assert!(t.len() >= 10, "{kind:?} has repeated titles");
            }
        }
    }
}
