//! The SFT conversation reader on a hand-written record of each shape, on its errors, on gzip and
//! JSON-array files, on the built-in world's `sft.jsonl`, and on the real chat files in
//! ../shared/data/chat (counts and records checked against the files as Python's json reads them).

#[path = "../../../tests/support/prereq.rs"]
mod prereq;

use std::io::Write;
use std::path::{Path, PathBuf};

use lmlab_data::chat::{parse_hh_transcript, parse_record, read_chat_file, read_conversations, Format, Message};
use serde_json::json;

fn msgs(turns: &[(&str, &str)]) -> Vec<Message> {
    turns.iter().map(|&(role, content)| Message::new(role, content)).collect()
}

fn parse(line: &str) -> (Format, Vec<Vec<Message>>) {
    let (format, conversations) = parse_record(&serde_json::from_str(line).unwrap()).unwrap();
    (format, conversations.into_iter().map(|c| c.messages).collect())
}

fn parse_error(value: serde_json::Value) -> String {
    parse_record(&value).unwrap_err()
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn read_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    format!("{:#}", read_conversations(&write_file(dir.path(), "data.jsonl", text)).unwrap_err())
}

#[test]
fn every_shape_parses_from_one_hand_written_line() {
    let world = r#"{"task": "fact_qa", "language": "en", "messages": [{"role": "user", "content": "Where is Velmora?"}, {"role": "assistant", "content": "In Ostria."}]}"#;
    assert_eq!(parse(world), (Format::World, vec![msgs(&[("user", "Where is Velmora?"), ("assistant", "In Ostria.")])]));

    let openai = r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye."}]}"#;
    let expected = msgs(&[("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye"), ("assistant", "Bye.")]);
    assert_eq!(parse(openai), (Format::OpenAi, vec![expected]));

    // ShareGPT's own speaker names and the OpenAI ones, mixed as real exports do.
    let sharegpt = r#"{"id": "x1", "conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}, {"from": "user", "value": "3+3?"}, {"from": "assistant", "value": "6"}]}"#;
    let expected = msgs(&[("system", "S"), ("user", "2+2?"), ("assistant", "4"), ("user", "3+3?"), ("assistant", "6")]);
    assert_eq!(parse(sharegpt), (Format::ShareGpt, vec![expected]));

    let alpaca = r#"{"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}"#;
    assert_eq!(parse(alpaca), (Format::Alpaca, vec![msgs(&[("user", "Translate to French.\n\nGood morning"), ("assistant", "Bonjour")])]));
    let alpaca_no_input = r#"{"instruction": "Name a colour.", "input": "", "output": "Blue"}"#;
    assert_eq!(parse(alpaca_no_input).1, vec![msgs(&[("user", "Name a colour."), ("assistant", "Blue")])]);

    let self_instruct = r#"{"id": "seed_task_9", "instruction": "Give the opposite.", "instances": [{"input": "hot", "output": "cold"}, {"input": "", "output": "Give me a word first."}], "is_classification": false}"#;
    let expected = vec![
        msgs(&[("user", "Give the opposite.\n\nhot"), ("assistant", "cold")]),
        msgs(&[("user", "Give the opposite."), ("assistant", "Give me a word first.")]),
    ];
    assert_eq!(parse(self_instruct), (Format::SelfInstruct, expected));

    let belle = r#"{"question": "1+1等于几？", "std_answer": "2", "class": "math"}"#;
    assert_eq!(parse(belle), (Format::Belle, vec![msgs(&[("user", "1+1等于几？"), ("assistant", "2")])]));
    // The eval set leaves the answer out on purpose for open-ended questions: no conversation.
    assert_eq!(parse(r#"{"question": "写一首诗。", "std_answer": "", "class": "generation"}"#), (Format::Belle, vec![]));
}

#[test]
fn bad_records_say_what_is_wrong() {
    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}),
            r#""messages"[1] has role "bot" (expected system, user or assistant)"#,
        ),
        (
            json!({"conversations": [{"from": "human", "value": "a"}, {"from": "bing", "value": "b"}]}),
            r#""conversations"[1] has role "bing" (expected human, gpt"#,
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}),
            r#""messages"[1]."content" is empty"#,
        ),
        (json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant"}]}), r#""messages"[1]."content" is missing"#),
        (json!({"messages": [{"role": "user", "content": ["a"]}]}), r#""messages"[0]."content" is an array, not a string"#),
        (
            json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]}),
            r#""messages" has no assistant turn"#,
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}),
            r#""messages" ends with a user turn at [2]"#,
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}]}),
            r#""messages"[1] is a system turn (only the first turn may be)"#,
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}),
            r#""messages"[1] is a user turn where an assistant turn belongs"#,
        ),
        (json!({"messages": [{"role": "assistant", "content": "a"}]}), r#""messages"[0] is an assistant turn where a user turn belongs"#),
        (json!({"messages": []}), r#""messages" is empty"#),
        (json!({"messages": "hi"}), r#""messages" is a string, not a list of turns"#),
        (json!({"instruction": "", "output": "b"}), r#""instruction" is empty"#),
        (json!({"instruction": "a", "input": 3, "output": "b"}), r#""input" is a number, not a string"#),
        (json!({"instruction": "a", "instances": []}), r#""instances" is empty"#),
        (json!({"instruction": "a", "instances": [{"input": "x", "output": ""}]}), r#""instances"[0]."output" is empty"#),
        (json!({"question": "q", "std_answer": null}), r#""std_answer" is null"#),
        (json!(["a"]), "a record must be a JSON object, not an array"),
        (
            json!({"prompt": "a", "completion": "b"}),
            r#"unknown record shape: its keys are "completion", "prompt"; accepted: "messages" (OpenAI"#,
        ),
        (json!({"chosen": "a", "rejected": "b"}), "a preference pair"),
    ];
    for (record, expected) in cases {
        let error = parse_error(record.clone());
        assert!(error.starts_with(expected), "{record}\n  gave: {error}\n  want: {expected}…");
    }
}

#[test]
fn a_bad_line_fails_the_file_with_its_line_number_and_the_other_bad_lines() {
    let good = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#;
    let bot = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}"#;
    let text = format!("{good}\n\n{good}\n{bot}\n{good}\n{{\"messages\": [\n{good}\n{bot}\n");
    let error = read_error(&text);
    let expected = r#"data.jsonl:4: "messages"[1] has role "bot" (expected system, user or assistant) (and 2 other bad lines: 6, 8)"#;
    assert!(error.ends_with(expected), "{error}");

    let error = read_error(&format!("{good}\n{{\"messages\": [}}\n"));
    assert!(error.ends_with("data.jsonl:2: malformed JSON at column 15: expected value"), "{error}");

    let error = read_error("\n  \n");
    assert!(error.ends_with("data.jsonl: no records (the file is empty or has only blank lines)"), "{error}");
}

#[test]
fn sources_name_file_and_line_and_blank_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let text = concat!(
        "\n",
        r#"{"instruction": "Say hi.", "input": "", "output": "Hi."}"#,
        "\r\n\n",
        r#"{"instruction": "Opposite?", "instances": [{"input": "up", "output": "down"}, {"input": "in", "output": "out"}]}"#,
        "\n",
        r#"{"question": "为什么？", "std_answer": " ", "class": "open qa"}"#,
        "\n",
    );
    let path = write_file(dir.path(), "mixed.jsonl", text);
    let read = read_chat_file(&path).unwrap();
    let file = path.display();
    let sources: Vec<&str> = read.conversations.iter().map(|c| c.source.as_str()).collect();
    assert_eq!(sources, [format!("{file}:2"), format!("{file}:4 \"instances\"[0]"), format!("{file}:4 \"instances\"[1]")]);
    assert_eq!((read.records, read.unanswered), (3, vec![format!("{file}:5")]));
}

#[test]
fn gzip_and_json_array_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#,
        r#"{"conversations": [{"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]}"#,
    ];
    let expected = [msgs(&[("user", "a"), ("assistant", "b")]), msgs(&[("user", "c"), ("assistant", "d")])];
    let array = format!("  [\n{}\n]\n", records.join(",\n"));
    let jsonl = records.join("\n");
    for (name, text) in [("a.jsonl.gz", jsonl.as_str()), ("b.json", array.as_str()), ("c.json.gz", array.as_str())] {
        let path = dir.path().join(name);
        let bytes = if name.ends_with(".gz") { gzip(text.as_bytes()) } else { text.as_bytes().to_vec() };
        std::fs::write(&path, bytes).unwrap();
        let read = read_conversations(&path).unwrap();
        assert_eq!(read.iter().map(|c| c.messages.clone()).collect::<Vec<_>>(), expected, "{name}");
        let place = if name.contains(".jsonl") { "2" } else { "record 2" };
        assert_eq!(read[1].source, format!("{}:{place}", path.display()), "{name}");
    }
    // A bad element of an array is named by its number, as it has no line of its own.
    let path = write_file(dir.path(), "bad.json", r#"[{"messages": []}, {"x": 1}]"#);
    let error = format!("{:#}", read_conversations(&path).unwrap_err());
    assert!(error.ends_with(r#"bad.json:record 1: "messages" is empty (and 1 other bad record: record 2)"#), "{error}");
    let path = write_file(dir.path(), "broken.json", "[{\"messages\": []},\n  nope]");
    let error = format!("{:#}", read_conversations(&path).unwrap_err());
    assert!(error.contains("broken.json: not a JSON array of records: expected ident at line 2 column 4"), "{error}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn the_built_in_worlds_sft_file_reads_as_world_records() {
    let dir = tempfile::tempdir().unwrap();
    let stats = lmlab_world::generate(dir.path(), &lmlab_world::WorldOptions::default()).unwrap();
    let path = dir.path().join("sft.jsonl");
    let read = read_conversations(&path).unwrap();
    assert_eq!(read.len(), stats.sft_examples);
    let first_line = std::fs::read_to_string(&path).unwrap().lines().next().unwrap().to_string();
    assert_eq!(parse(&first_line).0, Format::World);
    assert!(read.iter().all(|c| c.messages.len() == 2 && c.messages[0].role == "user"));
}

#[test]
fn hh_transcripts_become_alternating_turns() {
    let ok = |t: &str| parse_hh_transcript(t).unwrap_or_else(|e| panic!("{t:?}: {e}"));
    assert_eq!(ok("\n\nHuman: Hi there\n\nAssistant: Hello.  "), msgs(&[("user", "Hi there"), ("assistant", "Hello.")]));
    // The first label may open the text; a label inside a paragraph is text, not a turn.
    assert_eq!(
        ok("Human: Quote it\n\nAssistant: He wrote \"Human: be kind\".\nAssistant: noted"),
        msgs(&[("user", "Quote it"), ("assistant", "He wrote \"Human: be kind\".\nAssistant: noted")])
    );
    // Two Assistant turns in a row are one reply; an empty last reply is kept (a real label).
    assert_eq!(
        ok("\n\nHuman: a\n\nAssistant: b\n\nAssistant:  c\n\nHuman: d\n\nAssistant: "),
        msgs(&[("user", "a"), ("assistant", "b\n\nc"), ("user", "d"), ("assistant", "")])
    );
    let errors = [
        ("Intro.\n\nHuman: a\n\nAssistant: b", "text before the first \"Human:\": \"Intro.\""),
        ("\n\nHuman: a\n\nAssistant: b\n\nHuman: c", "ends with a Human turn (turn 3; expected the Assistant's reply last)"),
        ("\n\nAssistant: a\n\nHuman: b\n\nAssistant: c", "the first turn is the Assistant's (expected a Human turn first)"),
        ("\n\nHuman: a\n\nAssistant:\n\nHuman: b\n\nAssistant: c", "turn 2 (Assistant) is empty"),
        ("\n\nHuman: \n\nAssistant: c", "turn 1 (Human) is empty"),
        ("just text", "no \"Human:\" or \"Assistant:\" turn"),
    ];
    for (text, expected) in errors {
        assert_eq!(parse_hh_transcript(text).unwrap_err(), expected, "{text:?}");
    }
}

// ---- The real files in ../shared/data/chat ----

fn chat_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/chat");
    if p.is_dir() {
        Some(p)
    } else {
        prereq::missing(&format!("{} is absent", p.display()));
        None
    }
}

fn contents(messages: &[Message]) -> Vec<(&str, &str)> {
    messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect()
}

#[test]
fn belle_eval_set_gives_631_answered_questions() {
    let Some(dir) = chat_data() else { return };
    let path = dir.join("belle-eval-set-zh.json");
    let read = read_chat_file(&path).unwrap();
    assert_eq!((read.records, read.conversations.len(), read.unanswered.len()), (1000, 631, 369));
    assert_eq!(read.unanswered[0], format!("{}:4", path.display()));
    let first = &read.conversations[0];
    assert_eq!(first.source, format!("{}:1", path.display()));
    assert_eq!(first.messages[0].content, "请你写出一个可以生成五个不同随机数的 Python 程序。");
    assert!(first.messages[1].content.starts_with("要生成五个不同的随机数，可以使用 Python 的 random 模块"));
    assert_eq!(first.messages[1].content.chars().count(), 596);
    assert_eq!(
        contents(&read.conversations.last().unwrap().messages),
        [
            ("user", "将以下文本翻译成英语:天空之城是一部由吉卜力工作室制作的动画电影，于1986年上映。"),
            ("assistant", "Castle in the Sky is an animated film produced by Studio Ghibli, which was released in 1986.")
        ]
    );
}

#[test]
fn self_instruct_seed_tasks_give_one_conversation_each() {
    let Some(dir) = chat_data() else { return };
    let path = dir.join("self-instruct-seed-tasks.jsonl");
    let read = read_conversations(&path).unwrap();
    assert_eq!(read.len(), 175);
    // 50 instances have no input: the instruction alone is the user's turn.
    assert_eq!(read.iter().filter(|c| !c.messages[0].content.contains("\n\n")).count(), 50);
    assert_eq!(read[1].source, format!("{}:2 \"instances\"[0]", path.display()));
    assert_eq!(
        contents(&read[1].messages),
        [
            ("user", "What is the relation between the given pairs?\n\nNight : Day :: Right : Left"),
            ("assistant", "The relation between the given pairs is that they are opposites.")
        ]
    );
    assert_eq!(read[174].messages[1].content, "false");
}

fn hh_pairs(dir: &Path) -> Vec<(String, String)> {
    let file = std::fs::File::open(dir.join("hh-rlhf-harmless-base-test.jsonl.gz")).unwrap();
    let text = std::io::read_to_string(flate2::read::GzDecoder::new(file)).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (v["chosen"].as_str().unwrap().to_string(), v["rejected"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn hh_rlhf_is_refused_as_sft_data_and_every_transcript_parses() {
    let Some(dir) = chat_data() else { return };
    let path = dir.join("hh-rlhf-harmless-base-test.jsonl.gz");
    let error = format!("{:#}", read_conversations(&path).unwrap_err());
    assert!(error.starts_with(&format!("{}:1: a preference pair", path.display())), "{error}");
    assert!(error.contains("chat::parse_hh_transcript") && error.contains("(and 2311 other bad lines: 2, 3,"), "{error}");

    let pairs = hh_pairs(&dir);
    assert_eq!(pairs.len(), 2312);
    let mut empty_chosen = 0;
    for (i, (chosen, rejected)) in pairs.iter().enumerate() {
        let (c, r) = (parse_hh_transcript(chosen).unwrap(), parse_hh_transcript(rejected).unwrap());
        // With runs of one speaker joined, both transcripts share the prompt: they differ only
        // in the last reply.
        assert_eq!(c[..c.len() - 1], r[..r.len() - 1], "pair {}", i + 1);
        empty_chosen += usize::from(c.last().unwrap().content.is_empty());
        assert!(!r.last().unwrap().content.is_empty(), "pair {}", i + 1);
    }
    assert_eq!(empty_chosen, 4);

    let first = parse_hh_transcript(&pairs[0].0).unwrap();
    assert_eq!(first.len(), 6);
    assert_eq!(
        contents(&first[..2]),
        [("user", "what are some pranks with a pen i can do?"), ("assistant", "Are you looking for practical joke ideas?")]
    );
    // Pair 1850 has two Assistant turns in a row, joined into one reply.
    let joined = parse_hh_transcript(&pairs[1849].0).unwrap();
    assert_eq!(joined.len(), 6);
    assert!(joined[3].content.starts_with("Here’s a short joke from a friend:\n\n“Question: What do humans do for a living?"));
}
