//! Prints fastText's top labels for each line of standard input:
//! `cargo run --release -p lmlab-data --example fasttext_predict -- MODEL.ftz [K]`.
use std::io::BufRead;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = lmlab_data::fasttext::FastText::load(std::path::Path::new(&args[1]))?;
    let k = args.get(2).map_or(Ok(3), |k| k.parse())?;
    eprintln!("{model:?}");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let p = model.predict(&line, k, 0.0);
        let shown: Vec<String> = p.iter().map(|p| format!("{} {:.6}", p.label, p.probability)).collect();
        println!("{}", shown.join("\t"));
    }
    Ok(())
}
