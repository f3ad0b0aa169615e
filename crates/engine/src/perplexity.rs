//! Perplexity exactly as llama-perplexity computes it: non-overlapping windows of `n_ctx`
//! tokens, each evaluated from an empty cache, the first token replaced by BOS when the model
//! adds one, and only the second half of each window scored.

use crate::forward::{LogitsFor, Session};
use crate::sampling::log_sum_exp;
use crate::EngineError;

#[derive(Clone, Debug)]
pub struct PerplexityResult {
    pub n_ctx: usize,
    pub n_tokens: usize,
    pub n_chunks: usize,
    pub tokens_scored_per_chunk: usize,
    /// Mean negative log-likelihood of each window.
    pub chunk_nll: Vec<f64>,
    pub ppl: f64,
    pub ppl_stderr: f64,
}

/// Scores `tokens` (already tokenized with BOS handling as llama-perplexity does).
/// `progress(i, running_ppl)` is called after each window.
pub fn perplexity(
    session: &mut Session,
    tokens: &[u32],
    n_ctx: usize,
    mut progress: impl FnMut(usize, f64),
) -> Result<PerplexityResult, EngineError> {
    if n_ctx < 4 || n_ctx > session.n_ctx() {
        return Err(EngineError::BadArgument(format!(
            "perplexity context {n_ctx} must be between 4 and the session context {}",
            session.n_ctx()
        )));
    }
    let n_chunks = tokens.len() / n_ctx;
    if n_chunks == 0 {
        return Err(EngineError::BadArgument(format!(
            "the text has {} tokens, fewer than one window of {n_ctx}",
            tokens.len()
        )));
    }
    let model = session.model().clone();
    let bos = if model.tokenizer.add_bos() {
        model.tokenizer.bos_id()
    } else {
        None
    };
    let n_vocab = model.hp.n_vocab;
    let first = n_ctx / 2;
    let mut chunk_nll = Vec::with_capacity(n_chunks);
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0usize);
    for c in 0..n_chunks {
        let mut window = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        session.truncate(0);
        let logits = session.forward(&window, LogitsFor::From(first))?;
        let mut nll_chunk = 0f64;
        for j in first..n_ctx - 1 {
            let row = &logits[(j - first) * n_vocab..(j - first + 1) * n_vocab];
            let target = window[j + 1] as usize;
            let nll = log_sum_exp(row) - row[target] as f64;
            nll_chunk += nll;
            sum += nll;
            sum2 += nll * nll;
            count += 1;
        }
        chunk_nll.push(nll_chunk / (n_ctx - 1 - first) as f64);
        progress(c, (sum / count as f64).exp());
    }
    let mean = sum / count as f64;
    let var = (sum2 / count as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    Ok(PerplexityResult {
        n_ctx,
        n_tokens: tokens.len(),
        n_chunks,
        tokens_scored_per_chunk: n_ctx - 1 - first,
        chunk_nll,
        ppl,
        ppl_stderr: ppl * (var / (count as f64 - 1.0).max(1.0)).sqrt(),
    })
}
