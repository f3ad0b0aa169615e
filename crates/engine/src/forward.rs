//! The transformer forward pass over a batch of tokens of one or several sequences.
//!
//! One code path serves every architecture; the differences (biases, QK-norm, post-norms,
//! activation, rope layout, sliding windows) come from [`HParams`] and optional weights.

use std::sync::Arc;

use kernels::ThreadPool;

use crate::hparams::{Activation, HParams, RopeKind};
use crate::kv::{KvCache, KvType};
use crate::model::Model;
use crate::EngineError;

/// Which positions of a batch need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsFor {
    /// Only the last token (generation).
    Last,
    /// Tokens `start..` of the batch (perplexity, teacher forcing).
    From(usize),
}

/// Reusable activation buffers; grown on demand, never shrunk, so decode allocates nothing.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    positions: Vec<u32>,
    /// This pass's RoPE angles, one entry per distinct layer configuration.
    rope: Vec<kernels::RopeAngles>,
}

fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// One sequence being evaluated: the model, its KV cache and how many positions it holds.
pub struct Session {
    model: Arc<Model>,
    pool: Arc<ThreadPool>,
    kv: KvCache,
    n_past: usize,
    n_logits: usize,
    /// Logits of the last forward pass; batched passes write them here directly.
    logits: Vec<f32>,
    scratch: Scratch,
}

impl Session {
    /// A session with an f16 KV cache of `n_ctx` positions.
    pub fn new(model: Arc<Model>, pool: Arc<ThreadPool>, n_ctx: usize) -> Session {
        let kv = KvCache::new(&model.hp, n_ctx);
        Session::with_cache(model, pool, kv)
    }

    /// A session whose KV cache is stored as `kv_type` (q8_0 halves its memory and the bytes
    /// attention reads per token; errors when the head size is not a multiple of its block).
    pub fn with_kv_type(
        model: Arc<Model>,
        pool: Arc<ThreadPool>,
        n_ctx: usize,
        kv_type: KvType,
    ) -> Result<Session, EngineError> {
        let kv = KvCache::with_type(&model.hp, n_ctx, kv_type)?;
        Ok(Session::with_cache(model, pool, kv))
    }

    fn with_cache(model: Arc<Model>, pool: Arc<ThreadPool>, kv: KvCache) -> Session {
        Session {
            model,
            pool,
            kv,
            n_past: 0,
            n_logits: 0,
            logits: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    pub fn kv_type(&self) -> KvType {
        self.kv.kv_type()
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Positions already in the KV cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Touches every page of the KV cache (see [`KvCache::prefault`]) and of a logits row
    /// now, rather than as positions fill and at the first forward pass.
    pub fn prefault(&mut self) {
        self.kv.prefault();
        let n_vocab = self.model.hp.n_vocab;
        if self.logits.len() < n_vocab {
            self.logits.resize(n_vocab, 0.0);
        }
    }

    /// The logits of the last [`Session::forward`] call (`n_vocab` per requested position).
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.n_logits * self.model.hp.n_vocab]
    }

    /// Forgets positions `n..` (keeps a shared prefix, or empties the cache with 0).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Evaluates `tokens` at positions `n_past..n_past+len`, appends them to the KV cache and
    /// returns logits (`n_vocab` per requested position, in order).
    pub fn forward(&mut self, tokens: &[u32], want: LogitsFor) -> Result<&[f32], EngineError> {
        let first_logit_row = validate(&self.model, &self.kv, self.n_past, tokens, want)?;
        let model = Arc::clone(&self.model);
        let mut seqs = [SeqView {
            kv: &mut self.kv,
            logits: &mut self.logits,
            pos0: self.n_past,
            tokens,
            first_logit_row,
        }];
        let rows = forward_seqs(&model, &self.pool, &mut self.scratch, &mut seqs)?;
        self.n_past += tokens.len();
        self.n_logits = rows;
        Ok(&self.logits[..rows * model.hp.n_vocab])
    }
}

/// Checks one sequence's batch before anything runs; returns its first row that wants logits.
fn validate(
    model: &Model,
    kv: &KvCache,
    n_past: usize,
    tokens: &[u32],
    want: LogitsFor,
) -> Result<usize, EngineError> {
    let n = tokens.len();
    if n == 0 {
        return Err(EngineError::EmptyBatch);
    }
    if n_past + n > kv.n_ctx() {
        return Err(EngineError::ContextOverflow {
            needed: n_past + n,
            n_ctx: kv.n_ctx(),
        });
    }
    let n_vocab = model.hp.n_vocab;
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(EngineError::BadToken { id: bad, n_vocab });
    }
    Ok(match want {
        LogitsFor::Last => n - 1,
        LogitsFor::From(s) => s.min(n - 1),
    })
}

/// One sequence's share of a forward pass: its tokens occupy consecutive rows of the batch.
struct SeqView<'a> {
    kv: &'a mut KvCache,
    /// Where this sequence's logits go (`n_vocab` per requested row).
    logits: &'a mut Vec<f32>,
    pos0: usize,
    tokens: &'a [u32],
    first_logit_row: usize,
}

/// What each sequence's rows of Q and K go through before attention: per-head RMS norms
/// (Gemma 3) and RoPE. Row-wise, so each sequence's job does its own rows in parallel.
struct PreAttention<'a> {
    q_norm: Option<&'a [f32]>,
    k_norm: Option<&'a [f32]>,
    angles: &'a kernels::RopeAngles,
}

/// Normalises and rotates each sequence's new queries and keys, stores its keys and values,
/// then runs its attention over its own cache.
/// Sequences that decode (a few rows each) are spread over the pool one whole sequence per
/// job, longest context first: one dispatch per layer instead of one per sequence, no
/// split-K partials to combine, and the cache writes (cold lines) done in parallel too. A
/// sequence with a prompt chunk runs alone with the whole pool, as a single sequence does.
#[allow(clippy::too_many_arguments)]
fn store_and_attend(
    pool: &ThreadPool,
    hp: &HParams,
    il: usize,
    window: Option<usize>,
    pre: &PreAttention<'_>,
    seqs: &mut [SeqView<'_>],
    q: &mut [f32],
    k: &mut [f32],
    v: &[f32],
    attn: &mut [f32],
) -> Result<(), EngineError> {
    let (qd, kvd) = (hp.q_dim(), hp.kv_dim());
    const DECODE_ROWS: usize = 4;
    let spread = seqs.len() >= 2 && seqs.iter().all(|s| s.tokens.len() <= DECODE_ROWS);
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    if spread {
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].pos0));
    }
    // Each sequence's rows, split once for both ways of running.
    let mut parts = Vec::with_capacity(seqs.len());
    let (mut q_rest, mut k_rest, mut v_rest, mut out_rest) = (q, k, v, attn);
    let mut row0 = 0;
    for seq in seqs.iter_mut() {
        let n = seq.tokens.len();
        let (q_mine, q_tail) = q_rest.split_at_mut(n * qd);
        let (k_mine, k_tail) = k_rest.split_at_mut(n * kvd);
        let (v_mine, v_tail) = v_rest.split_at(n * kvd);
        let (out_mine, out_tail) = out_rest.split_at_mut(n * qd);
        parts.push(std::sync::Mutex::new((
            seq, row0, q_mine, k_mine, v_mine, out_mine,
        )));
        (q_rest, k_rest, v_rest, out_rest) = (q_tail, k_tail, v_tail, out_tail);
        row0 += n;
    }
    let hd = hp.head_dim;
    let attend = |i: usize| {
        let mut part = parts[i].lock().unwrap_or_else(|e| e.into_inner());
        let (seq, row0, q, k, v, out) = &mut *part;
        if let Some(w) = pre.q_norm {
            rms_norm_rows_inplace(q, w, hp.rms_eps, hd);
        }
        if let Some(w) = pre.k_norm {
            rms_norm_rows_inplace(k, w, hp.rms_eps, hd);
        }
        kernels::rope_apply_from(q, pre.angles, *row0, hp.n_head, hd)?;
        kernels::rope_apply_from(k, pre.angles, *row0, hp.n_head_kv, hd)?;
        let (pos0, n) = (seq.pos0, seq.tokens.len());
        seq.kv.store(il, pos0, k, v);
        seq.kv.attention(pool, hp, il, q, n, pos0, window, out)
    };
    if !spread {
        return order.into_iter().try_for_each(attend);
    }
    let failure = std::sync::Mutex::new(None);
    pool.for_each_chunk(order.len(), 1, |range| {
        for &i in &order[range] {
            // Inside a pool job the kernel runs on this thread alone.
            if let Err(e) = attend(i) {
                failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The forward pass over the rows of several sequences at once. Every weight matrix is
/// applied to all rows in one call (read once per step, however many sequences decode);
/// RoPE takes each row's own position; only attention is per sequence, over its own cache.
/// Leaves the logits of each sequence's requested rows in its `logits` and returns how many
/// rows that is in all. The caller has validated every sequence.
fn forward_seqs(
    model: &Model,
    pool: &ThreadPool,
    s: &mut Scratch,
    seqs: &mut [SeqView<'_>],
) -> Result<usize, EngineError> {
    let hp = &model.hp;
    let n: usize = seqs.iter().map(|q| q.tokens.len()).sum();
    let (d, qd, kvd, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
    s.positions.clear();
    for q in seqs.iter() {
        s.positions
            .extend((q.pos0..q.pos0 + q.tokens.len()).map(|p| p as u32));
    }
    let positions = &s.positions[..];
    s.rope.clear();
    let style = match hp.rope_kind {
        RopeKind::Adjacent => kernels::RopeStyle::Normal,
        RopeKind::Halves => kernels::RopeStyle::Neox,
    };
    let x = grow(&mut s.x, n * d);
    let all_tokens = seqs.iter().flat_map(|q| q.tokens.iter());
    for (row, &tok) in x.chunks_exact_mut(d).zip(all_tokens) {
        model.row_f32(&model.token_embd, tok as usize, row)?;
        if hp.embd_scale != 1.0 {
            kernels::scale_inplace(row, hp.embd_scale);
        }
    }

    for (il, layer) in model.layers.iter().enumerate() {
        let la = hp.layers[il];
        let xn = grow(&mut s.xn, n * d);
        rms_norm_rows(x, &layer.attn_norm, hp.rms_eps, xn, d);
        let q = grow(&mut s.q, n * qd);
        let k = grow(&mut s.k, n * kvd);
        let v = grow(&mut s.v, n * kvd);
        let (wq, wk, wv) = (
            model.weights(&layer.wq)?,
            model.weights(&layer.wk)?,
            model.weights(&layer.wv)?,
        );
        kernels::matmul_many(pool, &[&wq, &wk, &wv], xn, n, &mut [q, k, v])?;
        add_bias(q, layer.bq.as_deref());
        add_bias(k, layer.bk.as_deref());
        add_bias(v, layer.bv.as_deref());
        let rope = kernels::RopeConfig {
            n_rot: hp.n_rot,
            freq_base: la.rope_base,
            freq_scale: la.rope_scale,
            style,
        };
        // Layers share a few configurations (one, or local and global): angles once each.
        let angles = match s.rope.iter().position(|a| a.config() == &rope) {
            Some(i) => &s.rope[i],
            None => {
                s.rope.push(kernels::RopeAngles::new(&rope, positions)?);
                s.rope.last().expect("just pushed")
            }
        };
        let attn = grow(&mut s.attn, n * qd);
        let pre = PreAttention {
            q_norm: layer.q_norm.as_deref(),
            k_norm: layer.k_norm.as_deref(),
            angles,
        };
        store_and_attend(pool, hp, il, la.window, &pre, seqs, q, k, v, attn)?;
        let proj = grow(&mut s.proj, n * d);
        kernels::matmul(pool, &model.weights(&layer.wo)?, attn, n, proj)?;
        if let Some(w) = &layer.post_attn_norm {
            rms_norm_rows_inplace(proj, w, hp.rms_eps, d);
        }
        kernels::add_inplace(x, proj);

        let xn = grow(&mut s.xn, n * d);
        rms_norm_rows(x, &layer.ffn_norm, hp.rms_eps, xn, d);
        let scratch = kernels::FfnScratch {
            gate: grow(&mut s.gate, n * ff),
            up: grow(&mut s.up, n * ff),
            act: grow(&mut s.act, n * ff),
        };
        let glu = match hp.activation {
            Activation::Silu => kernels::Glu::Silu,
            Activation::GeluTanh => kernels::Glu::GeluTanh,
        };
        let proj = grow(&mut s.proj, n * d);
        let (gate, up, down) = (
            model.weights(&layer.ffn_gate)?,
            model.weights(&layer.ffn_up)?,
            model.weights(&layer.ffn_down)?,
        );
        let ffn = kernels::GatedFfn {
            gate: &gate,
            up: &up,
            down: &down,
            glu,
        };
        kernels::ffn_glu(pool, &ffn, xn, n, scratch, proj)?;
        if let Some(w) = &layer.post_ffn_norm {
            rms_norm_rows_inplace(proj, w, hp.rms_eps, d);
        }
        kernels::add_inplace(x, proj);
    }

    // Only the rows that want logits go through the (large) output projection.
    let mut logit_rows = 0;
    let mut row0 = 0;
    for seq in seqs.iter() {
        let n_seq = seq.tokens.len();
        let wanted = n_seq - seq.first_logit_row;
        let src = &x[(row0 + seq.first_logit_row) * d..(row0 + n_seq) * d];
        let xn = grow(&mut s.xn, (logit_rows + wanted) * d);
        rms_norm_rows(
            src,
            &model.output_norm,
            hp.rms_eps,
            &mut xn[logit_rows * d..],
            d,
        );
        logit_rows += wanted;
        row0 += n_seq;
    }
    let xn = &s.xn[..logit_rows * d];
    let n_vocab = hp.n_vocab;
    let mut outs: Vec<&mut [f32]> = Vec::with_capacity(logit_rows);
    for seq in seqs.iter_mut() {
        let wanted = seq.tokens.len() - seq.first_logit_row;
        outs.extend(grow(seq.logits, wanted * n_vocab).chunks_exact_mut(n_vocab));
    }
    kernels::matmul_rows(pool, &model.weights(&model.output)?, xn, &mut outs)?;
    drop(outs);
    for seq in seqs.iter_mut() {
        seq.pos0 += seq.tokens.len();
    }
    Ok(logit_rows)
}

/// One sequence's part in a [`Batcher::forward`] call.
pub struct BatchItem<'a> {
    pub session: &'a mut Session,
    pub tokens: &'a [u32],
    pub want: LogitsFor,
}

/// Why a [`Batcher::forward`] call refused to run: `index` names the offending item.
#[derive(Debug, thiserror::Error)]
#[error("batch item {index}: {error}")]
pub struct BatchError {
    pub index: usize,
    #[source]
    pub error: EngineError,
}

/// Runs the forward passes of several sessions of one model as one batch (continuous
/// batching): decoding sequences and prompt chunks share every weight read of a step.
pub struct Batcher {
    model: Arc<Model>,
    pool: Arc<ThreadPool>,
    scratch: Scratch,
}

impl Batcher {
    pub fn new(model: Arc<Model>, pool: Arc<ThreadPool>) -> Batcher {
        Batcher {
            model,
            pool,
            scratch: Scratch::default(),
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// One forward pass over the tokens of every item. Every item is validated (same model,
    /// context room, token ids) before anything runs, so an error changes no session.
    /// Afterwards each `item.session.logits()` holds that sequence's logits and its
    /// `n_past` has advanced by its token count.
    pub fn forward(&mut self, items: &mut [BatchItem<'_>]) -> Result<(), BatchError> {
        if items.is_empty() {
            return Err(BatchError {
                index: 0,
                error: EngineError::EmptyBatch,
            });
        }
        let mut first_rows = Vec::with_capacity(items.len());
        for (index, it) in items.iter().enumerate() {
            let fail = |error| BatchError { index, error };
            if !Arc::ptr_eq(&it.session.model, &self.model) {
                return Err(fail(EngineError::BadArgument(
                    "the session belongs to another model than the batch".into(),
                )));
            }
            let s = &*it.session;
            first_rows
                .push(validate(&self.model, &s.kv, s.n_past, it.tokens, it.want).map_err(fail)?);
        }
        let mut seqs: Vec<SeqView<'_>> = items
            .iter_mut()
            .zip(&first_rows)
            .map(|(it, &first_logit_row)| SeqView {
                kv: &mut it.session.kv,
                logits: &mut it.session.logits,
                pos0: it.session.n_past,
                tokens: it.tokens,
                first_logit_row,
            })
            .collect();
        forward_seqs(&self.model, &self.pool, &mut self.scratch, &mut seqs)
            .map_err(|error| BatchError { index: 0, error })?;
        drop(seqs);
        for (it, &first) in items.iter_mut().zip(&first_rows) {
            it.session.n_logits = it.tokens.len() - first;
            it.session.n_past += it.tokens.len();
        }
        Ok(())
    }
}

fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], width: usize) {
    for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        kernels::rms_norm(xr, w, eps, or);
    }
}

fn rms_norm_rows_inplace(x: &mut [f32], w: &[f32], eps: f32, width: usize) {
    for row in x.chunks_exact_mut(width) {
        kernels::rms_norm_inplace(row, w, eps);
    }
}

fn add_bias(x: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in x.chunks_exact_mut(b.len()) {
            kernels::add_inplace(row, b);
        }
    }
}
