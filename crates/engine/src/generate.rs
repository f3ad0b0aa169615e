//! Prompt evaluation and the token generation loop, shared by the CLI and (later) the server.

use std::time::Instant;

use crate::forward::{LogitsFor, Session};
use crate::sampling::{top_k, Sampler, SamplingParams};
use crate::EngineError;

/// Prompt tokens evaluated per forward pass.
pub const DEFAULT_BATCH: usize = 512;

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    /// Generation ends before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    pub sampling: SamplingParams,
    /// Record the top-K (id, logit) pairs of every step (0: none).
    pub top_logits: usize,
    pub n_batch: usize,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            stop: Vec::new(),
            sampling: SamplingParams::default(),
            top_logits: 0,
            n_batch: DEFAULT_BATCH,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// Generated ids, including a final end-of-generation token when one ended the run.
    pub ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_seconds: f64,
    pub gen_seconds: f64,
    /// Per step: the top-K (id, logit) pairs, when asked for.
    pub top_logits: Vec<Vec<(u32, f32)>>,
}

impl Generation {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_ids.len() as f64 / self.prompt_seconds.max(1e-9)
    }

    /// Decode speed: tokens after the first, over the time spent decoding them.
    pub fn gen_tokens_per_second(&self) -> f64 {
        self.ids.len() as f64 / self.gen_seconds.max(1e-9)
    }
}

/// Evaluates `tokens` in batches of `n_batch` and returns the logits of the last one.
pub fn eval_prompt<'s>(
    session: &'s mut Session,
    tokens: &[u32],
    n_batch: usize,
) -> Result<&'s [f32], EngineError> {
    if tokens.is_empty() {
        return Err(EngineError::EmptyBatch);
    }
    let n_batch = n_batch.max(1);
    let needed = session.n_past() + tokens.len();
    if needed > session.n_ctx() {
        return Err(EngineError::PromptTooLong {
            n_prompt: needed,
            n_ctx: session.n_ctx(),
        });
    }
    let mut chunks = tokens.chunks(n_batch).peekable();
    while let Some(chunk) = chunks.next() {
        if chunks.peek().is_none() {
            return session.forward(chunk, LogitsFor::Last);
        }
        session.forward(chunk, LogitsFor::Last)?;
    }
    unreachable!("tokens is not empty")
}

/// Runs the prompt then samples until a stop condition. `on_text` receives text as soon as it
/// is complete UTF-8 and cannot be the start of a stop string.
pub fn generate(
    session: &mut Session,
    prompt_ids: &[u32],
    params: &GenerateParams,
    mut on_text: impl FnMut(&str),
) -> Result<Generation, EngineError> {
    let model = session.model().clone();
    let tok = &model.tokenizer;
    let mut sampler = Sampler::new(params.sampling.clone());
    let mut history: Vec<u32> = prompt_ids.to_vec();
    let mut out = Generation {
        prompt_ids: prompt_ids.to_vec(),
        ids: Vec::new(),
        text: String::new(),
        finish_reason: FinishReason::Length,
        prompt_seconds: 0.0,
        gen_seconds: 0.0,
        top_logits: Vec::new(),
    };
    let t0 = Instant::now();
    eval_prompt(session, prompt_ids, params.n_batch)?;
    out.prompt_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut decoder = tok.stream_decoder(false);
    // Text decoded but not yet shown because it might begin a stop string.
    let mut pending = String::new();
    let max_stop = params.stop.iter().map(|s| s.len()).max().unwrap_or(0);
    loop {
        if out.ids.len() >= params.max_tokens {
            break;
        }
        let logits = session.logits();
        if params.top_logits > 0 {
            out.top_logits.push(top_k(logits, params.top_logits));
        }
        let id = sampler.sample(logits, &history);
        out.ids.push(id);
        history.push(id);
        if tok.is_eog(id) {
            out.finish_reason = FinishReason::Stop;
            break;
        }
        pending.push_str(&decoder.push(id));
        if let Some(cut) = params
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| pending.find(s.as_str()))
            .min()
        {
            pending.truncate(cut);
            on_text(&pending);
            out.text.push_str(&pending);
            pending.clear();
            out.finish_reason = FinishReason::Stop;
            break;
        }
        // Everything except a tail that could still grow into a stop string is final.
        let mut keep_from = pending.len().saturating_sub(max_stop.saturating_sub(1));
        while !pending.is_char_boundary(keep_from) {
            keep_from -= 1;
        }
        if keep_from > 0 {
            on_text(&pending[..keep_from]);
            out.text.push_str(&pending[..keep_from]);
            pending.drain(..keep_from);
        }
        if out.ids.len() >= params.max_tokens || session.n_past() >= session.n_ctx() {
            break;
        }
        session.forward(&[id], LogitsFor::Last)?;
    }
    if out.finish_reason == FinishReason::Length || !pending.is_empty() {
        pending.push_str(&decoder.flush());
        on_text(&pending);
        out.text.push_str(&pending);
    }
    out.gen_seconds = t1.elapsed().as_secs_f64();
    Ok(out)
}
