//! The READMEs say what is true: the English and the Chinese one open with the same commands,
//! and every `lmlab` command in their shell examples is one the binary has.

#[path = "support/cli.rs"]
mod cli;
use cli::ok;

/// The shell blocks of a markdown file, each as its command lines (comments and blank lines
/// dropped, whitespace squeezed).
fn shell_blocks(path: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), l) => {
                let command = l.split(" # ").next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
                if !command.is_empty() && !command.starts_with('#') {
                    b.push(command);
                }
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn both_readmes_open_with_the_same_commands() {
    let (en, zh) = (shell_blocks("README.md"), shell_blocks("README.zh-CN.md"));
    assert_eq!(en[0], ["cargo run --release -- run", "scripts/check.sh"]);
    assert_eq!(en[..2], zh[..2], "the main job, the tests, then chat and serve");
}

#[test]
fn every_lmlab_command_in_the_readmes_exists() {
    let mut checked = 0;
    for path in ["README.md", "README.zh-CN.md"] {
        for line in shell_blocks(path).into_iter().flatten() {
            let rest = line.strip_prefix("lmlab ").or_else(|| line.strip_prefix("cargo run --release -- "));
            let Some(rest) = rest else { continue };
            // The subcommand: the words before the first flag (at most two: `tokenizer train`).
            let words: Vec<&str> = rest.split_whitespace().take_while(|w| !w.starts_with('-')).take(2).collect();
            let mut args = words.clone();
            args.push("--help");
            ok(&args);
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} commands checked");
}
