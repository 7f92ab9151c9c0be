//! Scores the main-text extractor on a set without building the whole `lmlab` binary (for
//! working on the extractor; `lmlab bench extract` is the benchmark, with trafilatura beside it).
//!
//! `cargo run --release -p lmlab-data --example extract_score -- SET [DATA] [DUMP_DIR]`: SET is
//! trafilatura-eval, zh-cwced or a folder; DATA the shared data folder (default ../shared/data);
//! DUMP_DIR, when given, receives each page's output as NAME.txt.

use lmlab_data::extract_eval::{bench_extract, load_set, render};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let set = args.first().map_or("trafilatura-eval", String::as_str);
    let data = std::path::PathBuf::from(args.get(1).map_or("../shared/data", String::as_str));
    let pages = load_set(set, &data)?;
    let report = bench_extract(set, &pages, None, std::path::Path::new(""))?;
    print!("{}", render(&report));
    if let Some(dir) = args.get(2) {
        std::fs::create_dir_all(dir)?;
        for p in &pages {
            std::fs::write(
                std::path::Path::new(dir).join(format!("{}.txt", p.name.replace('/', "_"))),
                lmlab_data::extract::main_text(&p.html),
            )?;
        }
    }
    Ok(())
}
