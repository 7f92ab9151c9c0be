//! `lmlab chat`: a multi-turn conversation in the terminal through the model's chat template,
//! replies streamed as they are generated. The session and its `/` commands are
//! `lmlab_serve::ChatSession`; generation is `lmlab_infer`'s [`Sequence`] and [`decode_step`].
//! The KV cache of each reply is kept for the next turn ([`PrefixCache`]), whose prompt begins
//! with the conversation so far: a turn prefills only the new message, not the whole chat.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use lmlab_infer::{decode_step, GenerateRequest, Model, PrefixCache, Sequence, StopText};
use lmlab_model::CausalLm;
use lmlab_serve::{ChatCommand, ChatSession, TextStream};

use crate::generate::{load_model, SamplerArgs};

#[derive(Args)]
pub struct ChatArgs {
    /// An lmlab model folder, a GGUF file, or a Hugging Face folder (with a chat template).
    #[arg(long)]
    model: PathBuf,
    /// tokenizer.json (default: the model's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The system message.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
}

/// Ctrl-C: stops the reply being generated; at the prompt it only says how to leave.
struct Interrupt {
    generating: AtomicBool,
    stop: AtomicBool,
}

pub fn run(a: ChatArgs) -> Result<()> {
    let model = load_model(&a.model, a.tokenizer.as_deref())?;
    anyhow::ensure!(
        model.chat_template().is_some(),
        "this {} model has no chat template; `lmlab generate` talks to base models",
        model.format()
    );
    let interrupt = Arc::new(Interrupt { generating: AtomicBool::new(false), stop: AtomicBool::new(false) });
    {
        let i = interrupt.clone();
        ctrlc::set_handler(move || {
            if i.generating.load(Ordering::SeqCst) {
                i.stop.store(true, Ordering::SeqCst);
            } else {
                eprint!("\n(Ctrl-C stops a reply; /exit or Ctrl-D leaves)\n> ");
            }
        })?;
    }
    let mut session = ChatSession::new(a.sampler.params(), a.max_tokens, a.system.clone());
    println!(
        "lmlab chat: {} ({} model, context {} tokens). /help lists the commands; Ctrl-C stops a reply; Ctrl-D leaves.",
        a.model.display(),
        model.format(),
        model.context_length()
    );
    let stdin = std::io::stdin();
    let mut line = String::new();
    // The last reply's cache (a new system message or /reset simply shares less with it).
    let mut kept = PrefixCache::new(1);
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        match ChatSession::parse(&line) {
            ChatCommand::Nothing => {}
            ChatCommand::Exit => break,
            ChatCommand::Help => println!("{}", lmlab_serve::CHAT_HELP),
            ChatCommand::Show => println!("{}", session.show()),
            ChatCommand::Reset => {
                session.messages.clear();
                println!("(conversation cleared)");
            }
            ChatCommand::System(text) => {
                session.set_system(&text);
                println!("(system message {})", if text.is_empty() { "removed" } else { "set" });
            }
            ChatCommand::Set(k, v) => match session.set(&k, &v) {
                Ok(msg) => println!("({msg})"),
                Err(e) => println!("error: {e:#}"),
            },
            ChatCommand::Save(f) => match session.save(Path::new(&f)) {
                Ok(()) => println!("(saved {} messages to {f})", session.messages.len()),
                Err(e) => println!("error: {e:#}"),
            },
            ChatCommand::Load(f) => match ChatSession::load(Path::new(&f)) {
                Ok(s) => {
                    session = s;
                    println!("(loaded {} messages from {f})", session.messages.len());
                }
                Err(e) => println!("error: {e:#}"),
            },
            ChatCommand::Say(text) => {
                if let Err(e) = reply(&model, &mut session, &text, &interrupt, &mut kept) {
                    println!("\nerror: {e:#}");
                }
            }
        }
    }
    Ok(())
}

/// Generates and streams the reply to `text`, then records the exchange. The conversation's
/// tokens cached by the previous turn (`kept`) are not prefilled again.
fn reply(model: &Model, session: &mut ChatSession, text: &str, interrupt: &Interrupt, kept: &mut PrefixCache) -> Result<()> {
    let prompt = model.chat_prompt(&session.conversation_with(text))?;
    let ctx = model.context_length();
    anyhow::ensure!(prompt.len() < ctx, "the conversation is {} tokens, the model's context {ctx}: /reset starts a new one", prompt.len());
    let tok = model.tokenizer();
    let stops = StopText::new(tok, session.stop.clone());
    let max_tokens = session.max_tokens.min(ctx - prompt.len());
    let req = GenerateRequest { stop_ids: stops.stop_ids().to_vec(), ..GenerateRequest::new(prompt, max_tokens, session.sampling.clone()) };
    let prefix = kept.lookup(&req.prompt)?;
    let cached = prefix.as_ref().map_or(0, |p| p.len());
    let mut stream = TextStream::new(tok, session.stop.clone());
    let mut out = std::io::stdout().lock();
    let mut shown = 0;
    let mut show = |tokens: &[u32]| {
        for &id in &tokens[shown..] {
            let piece = stream.push(tok, id);
            if !piece.is_empty() {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            }
        }
        shown = tokens.len();
    };
    interrupt.stop.store(false, Ordering::SeqCst);
    interrupt.generating.store(true, Ordering::SeqCst);
    let stop = |_: usize, ids: &[u32]| interrupt.stop.load(Ordering::SeqCst) || stops.hit(ids);
    let start = Instant::now();
    let generated = Sequence::start_from(model, &req, prefix, stop).and_then(|mut seqs| {
        let first_token = start.elapsed();
        if let Some(seq) = seqs.first_mut() {
            seq.keep_cache();
            show(seq.tokens());
            while decode_step(model, &mut [&mut *seq], stop)? > 0 {
                show(seq.tokens());
            }
        }
        Ok((seqs.pop(), first_token))
    });
    interrupt.generating.store(false, Ordering::SeqCst);
    let (seq, first_token) = generated?;
    let decode_secs = (start.elapsed() - first_token).as_secs_f64();
    write!(out, "{}", stream.finish(tok))?;
    let stopped = interrupt.stop.swap(false, Ordering::SeqCst);
    let tokens = seq.as_ref().map_or(Vec::new(), |s| s.tokens().to_vec());
    writeln!(
        out,
        "\n[{} tokens, {:.1} tok/s, first token {:.0} ms, {cached} of {} prompt tokens from the last turn's cache{}]",
        tokens.len(),
        tokens.len().saturating_sub(1) as f64 / decode_secs.max(1e-9),
        first_token.as_secs_f64() * 1e3,
        req.prompt.len(),
        if stopped { ", stopped" } else { "" }
    )?;
    out.flush()?;
    if let Some(prefix) = seq.and_then(|mut s| s.take_prefix()) {
        kept.insert(prefix);
    }
    session.add_turn(text, &stops.final_text(&tokens));
    Ok(())
}
