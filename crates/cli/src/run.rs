use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{FinishReason, GenerateParams, KvType, Model, SamplingParams, Session};
use kernels::ThreadPool;
use serde_json::json;
use tokenizer::chat::{ChatTemplate, RenderRequest};

#[derive(Args)]
pub struct ModelArgs {
    /// GGUF model file or store name.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's, capped at 4096).
    #[arg(short = 'c', long)]
    pub ctx: Option<usize>,
    /// KV cache storage: f16, or q8_0 (about half the memory and bandwidth, slightly less
    /// accurate).
    #[arg(long = "kv", value_name = "TYPE", default_value = "f16", value_parser = parse_kv)]
    pub kv: KvType,
}

/// Parses `--kv` (shared with `bench`).
pub fn parse_kv(s: &str) -> Result<KvType, String> {
    s.parse::<KvType>().map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    /// The prompt; without it, an interactive chat starts.
    pub prompt: Option<String>,
    /// Plain completion: do not apply the chat template.
    #[arg(long)]
    pub raw: bool,
    /// System message for the chat template.
    #[arg(long)]
    pub system: Option<String>,
    /// Print one JSON object (ids, text, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// With --json: the top-K (id, logit) pairs of every step.
    #[arg(long, default_value_t = 0)]
    pub top_logits: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (default: from the clock; printed with --verbose and in --json).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Maximum tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 512)]
    pub max_tokens: usize,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print model, context and memory details to stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args)]
pub struct TokenizeArgs {
    /// GGUF model file or store name.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Text to tokenize.
    pub text: String,
    /// Treat special-token text such as <|im_start|> as plain text.
    #[arg(long)]
    pub no_special: bool,
    /// Do not add BOS/EOS even when the model asks for them.
    #[arg(long)]
    pub no_bos: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    /// Text file to score.
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

fn pool(threads: Option<usize>) -> Result<Arc<ThreadPool>> {
    let n = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    Ok(Arc::new(ThreadPool::new(n)))
}

/// A model argument: an existing file, else a store name.
pub fn resolve(model: &std::path::Path) -> Result<PathBuf> {
    Ok(store::resolve_model_arg(&model.to_string_lossy())?)
}

fn load(m: &ModelArgs) -> Result<(Arc<Model>, Session)> {
    let path = resolve(&m.model)?;
    let model =
        Arc::new(Model::load(&path).with_context(|| format!("loading {}", path.display()))?);
    let n_ctx = match m.ctx {
        Some(0) => bail!("--ctx must be at least 1"),
        Some(c) => c,
        None => model.hp.n_ctx_train.min(4096),
    };
    let session = Session::with_kv_type(model.clone(), pool(m.threads)?, n_ctx, m.kv)
        .with_context(|| format!("creating a {} KV cache of {n_ctx} positions", m.kv))?;
    Ok((model, session))
}

fn template_for(model: &Model) -> Result<(ChatTemplate, bool)> {
    match model.file.get_str("tokenizer.chat_template") {
        Some(src) => Ok((
            ChatTemplate::new(src).context("the model's chat template")?,
            false,
        )),
        None => Ok((
            ChatTemplate::new(tokenizer::chat::fallback_template_for(model.hp.arch.name()))?,
            true,
        )),
    }
}

fn render(model: &Model, tpl: &ChatTemplate, messages: &[serde_json::Value]) -> Result<String> {
    let tok = &model.tokenizer;
    let piece = |id: Option<u32>| {
        id.map(|i| String::from_utf8_lossy(&tok.token_to_piece(i, true)).into_owned())
            .unwrap_or_default()
    };
    let req = RenderRequest {
        messages,
        add_generation_prompt: true,
        bos_token: &piece(tok.bos_id()),
        eos_token: &piece(tok.eos_id()),
        tools: None,
        extra: None,
        now: None,
    };
    Ok(tpl.render(&req)?)
}

/// Tokenizes a prompt with special-token parsing, adding BOS only if the text (a rendered
/// template) does not already start with it, so a template's `{{ bos_token }}` is not doubled.
fn encode_prompt(model: &Model, text: &str) -> Vec<u32> {
    let tok = &model.tokenizer;
    let bos_text = tok
        .bos_id()
        .map(|b| String::from_utf8_lossy(&tok.token_to_piece(b, true)).into_owned());
    let has_bos = bos_text.is_some_and(|b| !b.is_empty() && text.starts_with(&b));
    tok.encode(text, !has_bos, true)
}

pub fn run(a: RunArgs) -> Result<()> {
    let obligations = crate::license_cmd::enforce_for_load(&a.m.model.to_string_lossy(), "run")?;
    if a.verbose {
        for o in &obligations {
            eprintln!("licence obligation: {o}");
        }
    }
    let (model, mut session) = load(&a.m)?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        stop: a.stop.clone(),
        sampling: SamplingParams {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            seed,
            ..SamplingParams::default()
        },
        top_logits: a.top_logits,
        ..GenerateParams::default()
    };
    if a.verbose {
        eprintln!(
            "model: {} ({}, {} layers, d={}, vocab {}), weights {:.1} MiB mapped",
            a.m.model.display(),
            model.hp.arch.name(),
            model.hp.n_layer,
            model.hp.n_embd,
            model.hp.n_vocab,
            model.weight_bytes() as f64 / 1048576.0
        );
        if let Some(r) = model.repack {
            eprintln!(
                "weights repacked for the AVX-512 VNNI kernels: {:.1} MiB in {:.1} ms \
                 (the mapped pages they came from are released; FREEHOLD_REPACK=0 skips it)",
                r.bytes as f64 / 1048576.0,
                r.millis
            );
        }
        eprintln!(
            "context: {} tokens, KV cache {} {:.1} MiB ({} bytes); kernels: {:?}; seed {seed}",
            session.n_ctx(),
            a.m.kv,
            session.kv_bytes() as f64 / 1048576.0,
            session.kv_bytes(),
            kernels::Isa::global()
        );
    }
    let Some(prompt) = a.prompt.clone() else {
        return chat(&a, &model, &mut session, &params);
    };
    let text = if a.raw {
        prompt
    } else {
        let (tpl, fallback) = template_for(&model)?;
        if fallback {
            eprintln!(
                "note: the model has no chat template; using a built-in {} template (--raw for plain completion)",
                model.hp.arch.name()
            );
        }
        let mut messages = Vec::new();
        if let Some(s) = &a.system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": prompt}));
        render(&model, &tpl, &messages)?
    };
    let ids = encode_prompt(&model, &text);
    if ids.len() > session.n_ctx() {
        bail!(
            "the prompt is {} tokens but the context is {} (use --ctx or a shorter prompt)",
            ids.len(),
            session.n_ctx()
        );
    }
    let stdout = std::io::stdout();
    let g = if a.json {
        engine::generate(&mut session, &ids, &params, |_| {})?
    } else {
        let mut out = stdout.lock();
        let g = engine::generate(&mut session, &ids, &params, |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })?;
        let _ = writeln!(out);
        g
    };
    if a.json {
        let out = json!({
            "prompt_ids": g.prompt_ids,
            "ids": g.ids,
            "text": g.text,
            "finish_reason": g.finish_reason.as_str(),
            "seed": seed,
            "timings": {
                "prompt_tokens": g.prompt_ids.len(),
                "prompt_seconds": g.prompt_seconds,
                "prompt_tokens_per_second": g.prompt_tokens_per_second(),
                "gen_tokens": g.ids.len(),
                "gen_seconds": g.gen_seconds,
                "gen_tokens_per_second": g.gen_tokens_per_second(),
            },
            "top_logits": g.top_logits,
        });
        println!("{out}");
    } else {
        eprintln!(
            "[prompt: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s | {}]",
            g.prompt_ids.len(),
            g.prompt_tokens_per_second(),
            g.ids.len(),
            g.gen_tokens_per_second(),
            g.finish_reason.as_str()
        );
    }
    Ok(())
}

/// Multi-turn chat on stdin. The KV cache keeps the conversation; each turn only evaluates the
/// tokens after the longest prefix shared with what is already cached.
fn chat(
    a: &RunArgs,
    model: &Arc<Model>,
    session: &mut Session,
    params: &GenerateParams,
) -> Result<()> {
    let (tpl, fallback) = template_for(model)?;
    let interactive = std::io::stdin().is_terminal();
    if fallback {
        eprintln!(
            "note: the model has no chat template; using a built-in {} template",
            model.hp.arch.name()
        );
    }
    if interactive {
        eprintln!(
            "chat with {} — empty line or Ctrl-D to quit, /reset to start over",
            a.m.model.display()
        );
    }
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let mut cached: Vec<u32> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if line == "/reset" {
            messages.retain(|m| m["role"] == "system");
            cached.clear();
            session.truncate(0);
            continue;
        }
        messages.push(json!({"role": "user", "content": line}));
        let ids = model
            .tokenizer
            .encode(&render(model, &tpl, &messages)?, true, true);
        let shared = cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len().saturating_sub(1));
        session.truncate(shared);
        if ids.len() + 1 > session.n_ctx() {
            bail!(
                "the conversation is {} tokens, more than the context {} (use --ctx or /reset)",
                ids.len(),
                session.n_ctx()
            );
        }
        let mut out = std::io::stdout().lock();
        let g = engine::generate(session, &ids[shared..], params, |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })?;
        let _ = writeln!(out);
        if interactive || a.verbose {
            eprintln!(
                "[{} new prompt tokens, {:.1} tokens/s | {} tokens, {:.1} tokens/s]",
                g.prompt_ids.len(),
                g.prompt_tokens_per_second(),
                g.ids.len(),
                g.gen_tokens_per_second()
            );
        }
        cached = ids[..shared].to_vec();
        cached.extend_from_slice(&g.prompt_ids);
        cached.extend_from_slice(&g.ids);
        if g.finish_reason == FinishReason::Length
            && g.ids.last().is_some_and(|&t| !model.tokenizer.is_eog(t))
        {
            // The reply was cut; the cache holds a token the template will not reproduce.
            cached.pop();
        }
        session.truncate(cached.len().min(session.n_past()));
        messages.push(json!({"role": "assistant", "content": g.text}));
    }
    Ok(())
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let f = gguf::GgufFile::open(resolve(&a.model)?)?;
    let tok = tokenizer::Tokenizer::from_gguf(&f).context("building the tokenizer")?;
    let ids = tok.encode(&a.text, !a.no_bos, !a.no_special);
    if a.json {
        let pieces: Vec<String> = ids
            .iter()
            .map(|&i| String::from_utf8_lossy(&tok.token_to_piece(i, true)).into_owned())
            .collect();
        println!("{}", json!({"ids": ids, "pieces": pieces}));
    } else {
        for &i in &ids {
            let piece = tok.token_to_piece(i, true);
            println!("{i:>8} -> {:?}", String::from_utf8_lossy(&piece));
        }
    }
    Ok(())
}

pub fn perplexity(a: PerplexityArgs) -> Result<()> {
    let ctx = a.m.ctx.unwrap_or(512);
    let m = ModelArgs {
        ctx: Some(ctx),
        model: a.m.model.clone(),
        threads: a.m.threads,
        kv: a.m.kv,
    };
    let (model, mut session) = load(&m)?;
    let mut text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    // llama-perplexity drops one trailing newline.
    if text.ends_with('\n') {
        text.pop();
    }
    let tokens = model.tokenizer.encode(&text, true, false);
    let n_chunks = tokens.len() / ctx;
    if !a.json {
        eprintln!("{} tokens, {} windows of {}", tokens.len(), n_chunks, ctx);
    }
    let t0 = std::time::Instant::now();
    let r = engine::perplexity(&mut session, &tokens, ctx, |i, ppl| {
        if !a.json {
            eprint!("[{}]{:.4} ", i + 1, ppl);
        }
    })?;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            json!({
                "n_ctx": r.n_ctx, "n_tokens": r.n_tokens, "n_chunks": r.n_chunks,
                "tokens_scored_per_chunk": r.tokens_scored_per_chunk,
                "chunk_mean_nll": r.chunk_nll, "ppl": r.ppl, "ppl_stderr": r.ppl_stderr,
                "seconds": secs,
            })
        );
    } else {
        eprintln!();
        println!(
            "Final estimate: PPL = {:.4} +/- {:.4}  ({:.1} s)",
            r.ppl, r.ppl_stderr, secs
        );
    }
    Ok(())
}
