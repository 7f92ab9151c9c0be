//! `lmlab seq2seq train | eval | translate`.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::{Args, Subcommand};
use lmlab_train::seq2seq::{accuracy, train, Arch, Seq2SeqModel, Task, TaskData, TrainSpec};

#[derive(Subcommand)]
pub enum Seq2SeqCmd {
    /// Train an encoder-decoder (rnn, rnn-attention) or a Transformer on a generated task.
    Train(TrainArgs),
    /// Exact-match accuracy per source length.
    Eval(EvalArgs),
    /// Run a trained model on one input.
    Translate(TranslateArgs),
}

#[derive(Args)]
pub struct TrainArgs {
    /// copy, reverse, sort (symbol strings over a–t) or translate (English → Chinese fact sentences).
    #[arg(long)]
    task: Task,
    /// rnn (fixed-vector bottleneck), rnn-attention (Bahdanau) or transformer.
    #[arg(long)]
    arch: Arch,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    min_len: usize,
    #[arg(long, default_value_t = 30)]
    max_len: usize,
    /// Longest source the model must accept later (the Transformer's context).
    #[arg(long, default_value_t = 60)]
    max_eval_len: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 5)]
    min_len: usize,
    #[arg(long, default_value_t = 60)]
    max_len: usize,
    /// Lengths per bucket of ten.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
pub struct TranslateArgs {
    #[arg(long)]
    model: PathBuf,
    /// The input: a string of symbols a–t, or an English sentence for translation models.
    #[arg(long)]
    text: String,
}

pub fn run(cmd: Seq2SeqCmd) -> Result<()> {
    let dev = Device::Cpu;
    match cmd {
        Seq2SeqCmd::Train(a) => {
            let data = TaskData::new(a.task, a.seed)?;
            let (min_len, max_len) =
                data.length_range().map_or((a.min_len, a.max_len), |(lo, hi)| (lo.max(a.min_len), hi.min(a.max_len.max(lo))));
            let max_eval = a.max_eval_len.max(max_len);
            let model = Seq2SeqModel::new(&data, a.arch, a.hidden, max_eval, a.seed, &dev)?;
            eprintln!(
                "training {} on {:?}: {} parameters, lengths {min_len}..={max_len}, {} steps",
                a.arch.name(),
                a.task,
                model.params.num_elements(),
                a.steps
            );
            let spec =
                TrainSpec { steps: a.steps, batch: a.batch, min_len, max_len, lr: a.lr, seed: a.seed, eval_every: (a.steps / 10).max(1) };
            let report = train(&model, &data, &spec, &dev, |step, loss| {
                if step % 100 == 0 {
                    eprintln!("step {step}: loss {loss:.4}");
                }
            })?;
            model.save(&a.out)?;
            println!(
                "{}: final loss {:.4}, {:.0} tokens/s, in-range accuracy {}; saved to {}",
                a.arch.name(),
                report.final_loss,
                report.tokens_per_sec,
                report.curve.last().map_or("-".into(), |c| format!("{:.1}%", c.1 * 100.0)),
                a.out.display()
            );
        }
        Seq2SeqCmd::Eval(a) => {
            let model = Seq2SeqModel::load(&a.model, &dev)?;
            let data = TaskData::new(model.spec.task, 0)?;
            let max_len = a.max_len.min(model.spec.max_len);
            println!("{:<10} {:>9}", "length", "accuracy");
            let mut lo = a.min_len;
            while lo <= max_len {
                let hi = (lo + 9 - lo % 10).min(max_len);
                let lens: Vec<usize> = (lo..=hi).collect();
                let acc = accuracy(&model, &data, &lens, a.samples, a.seed, &dev)?;
                println!("{:<10} {:>8.1}%", format!("{lo}-{hi}"), acc * 100.0);
                lo = hi + 1;
            }
        }
        Seq2SeqCmd::Translate(a) => {
            let model = Seq2SeqModel::load(&a.model, &dev)?;
            let src = model.spec.vocab.encode(&a.text)?;
            let out = model.greedy(std::slice::from_ref(&src), src.len() * 2 + 10, &dev)?;
            println!("{}", model.spec.vocab.decode(&out[0]));
        }
    }
    Ok(())
}
