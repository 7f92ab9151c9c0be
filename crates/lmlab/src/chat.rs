//! `lmlab chat`: a multi-turn conversation in the terminal through the model's chat template,
//! replies streamed as they are generated. The session and its `/` commands are
//! `lmlab_serve::ChatSession`; generation is `lmlab_infer::generate`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use lmlab_infer::{generate, GenerateRequest, Model, StopText};
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
                if let Err(e) = reply(&model, &mut session, &text, &interrupt) {
                    println!("\nerror: {e:#}");
                }
            }
        }
    }
    Ok(())
}

/// Generates and streams the reply to `text`, then records the exchange.
fn reply(model: &Model, session: &mut ChatSession, text: &str, interrupt: &Interrupt) -> Result<()> {
    let prompt = model.chat_prompt(&session.conversation_with(text))?;
    let ctx = model.context_length();
    anyhow::ensure!(prompt.len() < ctx, "the conversation is {} tokens, the model's context {ctx}: /reset starts a new one", prompt.len());
    let tok = model.tokenizer();
    let stops = StopText::new(tok, session.stop.clone());
    let max_tokens = session.max_tokens.min(ctx - prompt.len());
    let req = GenerateRequest { stop_ids: stops.stop_ids().to_vec(), ..GenerateRequest::new(prompt, max_tokens, session.sampling.clone()) };
    let mut stream = TextStream::new(tok, session.stop.clone());
    let mut out = std::io::stdout().lock();
    interrupt.stop.store(false, Ordering::SeqCst);
    interrupt.generating.store(true, Ordering::SeqCst);
    let gen = generate(
        model,
        &req,
        |_, id| {
            let piece = stream.push(tok, id);
            if !piece.is_empty() {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            }
        },
        |_, ids| interrupt.stop.load(Ordering::SeqCst) || stops.hit(ids),
    );
    interrupt.generating.store(false, Ordering::SeqCst);
    let gen = gen?;
    let rest = stream.finish(tok);
    write!(out, "{rest}")?;
    let stopped = interrupt.stop.swap(false, Ordering::SeqCst);
    let t = &gen.timings;
    writeln!(
        out,
        "\n[{} tokens, {:.1} tok/s, first token {:.0} ms{}]",
        t.generated_tokens,
        t.decode_tokens_per_sec,
        t.time_to_first_token_secs * 1e3,
        if stopped { ", stopped" } else { "" }
    )?;
    out.flush()?;
    session.add_turn(text, &stops.final_text(&gen.samples[0].tokens));
    Ok(())
}
