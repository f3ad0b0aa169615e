//! The transformer forward pass over a batch of consecutive tokens of one sequence.
//!
//! One code path serves every architecture; the differences (biases, QK-norm, post-norms,
//! activation, rope layout, sliding windows) come from [`HParams`] and optional weights.

use std::sync::Arc;

use kernels::ThreadPool;

use crate::hparams::{Activation, RopeKind};
use crate::kv::KvCache;
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
    logits: Vec<f32>,
    positions: Vec<u32>,
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
    scratch: Scratch,
}

impl Session {
    pub fn new(model: Arc<Model>, pool: Arc<ThreadPool>, n_ctx: usize) -> Session {
        let kv = KvCache::new(&model.hp, n_ctx);
        Session {
            model,
            pool,
            kv,
            n_past: 0,
            n_logits: 0,
            scratch: Scratch::default(),
        }
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

    /// The logits of the last [`Session::forward`] call (`n_vocab` per requested position).
    pub fn logits(&self) -> &[f32] {
        &self.scratch.logits[..self.n_logits * self.model.hp.n_vocab]
    }

    /// Forgets positions `n..` (keeps a shared prefix, or empties the cache with 0).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Evaluates `tokens` at positions `n_past..n_past+len`, appends them to the KV cache and
    /// returns logits (`n_vocab` per requested position, in order).
    pub fn forward(&mut self, tokens: &[u32], want: LogitsFor) -> Result<&[f32], EngineError> {
        let model = Arc::clone(&self.model);
        let hp = &model.hp;
        let n = tokens.len();
        if n == 0 {
            return Err(EngineError::EmptyBatch);
        }
        if self.n_past + n > self.kv.n_ctx() {
            return Err(EngineError::ContextOverflow {
                needed: self.n_past + n,
                n_ctx: self.kv.n_ctx(),
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(EngineError::BadToken {
                id: bad,
                n_vocab: hp.n_vocab,
            });
        }
        let first_logit_row = match want {
            LogitsFor::Last => n - 1,
            LogitsFor::From(s) => s.min(n - 1),
        };
        let pool = &*self.pool;
        let (d, qd, kvd, ff, hd) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff, hp.head_dim);
        let pos0 = self.n_past;
        let s = &mut self.scratch;
        s.positions.clear();
        s.positions.extend((pos0..pos0 + n).map(|p| p as u32));
        let positions = &s.positions[..];
        let x = grow(&mut s.x, n * d);
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &mut x[t * d..(t + 1) * d];
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
            if let Some(w) = &layer.q_norm {
                rms_norm_rows_inplace(q, w, hp.rms_eps, hd);
            }
            if let Some(w) = &layer.k_norm {
                rms_norm_rows_inplace(k, w, hp.rms_eps, hd);
            }
            let style = match hp.rope_kind {
                RopeKind::Adjacent => kernels::RopeStyle::Normal,
                RopeKind::Halves => kernels::RopeStyle::Neox,
            };
            let rope = kernels::RopeConfig {
                n_rot: hp.n_rot,
                freq_base: la.rope_base,
                freq_scale: la.rope_scale,
                style,
            };
            kernels::rope_inplace(q, positions, hp.n_head, hd, &rope)?;
            kernels::rope_inplace(k, positions, hp.n_head_kv, hd, &rope)?;
            self.kv.store(il, pos0, k, v);
            let attn = grow(&mut s.attn, n * qd);
            self.kv
                .attention(pool, hp, il, q, n, pos0, la.window, attn)?;
            let proj = grow(&mut s.proj, n * d);
            kernels::matmul(pool, &model.weights(&layer.wo)?, attn, n, proj)?;
            if let Some(w) = &layer.post_attn_norm {
                rms_norm_rows_inplace(proj, w, hp.rms_eps, d);
            }
            kernels::add_inplace(x, proj);

            let xn = grow(&mut s.xn, n * d);
            rms_norm_rows(x, &layer.ffn_norm, hp.rms_eps, xn, d);
            let gate = grow(&mut s.gate, n * ff);
            let up = grow(&mut s.up, n * ff);
            let (wg, wu) = (
                model.weights(&layer.ffn_gate)?,
                model.weights(&layer.ffn_up)?,
            );
            kernels::matmul_many(pool, &[&wg, &wu], xn, n, &mut [&mut *gate, &mut *up])?;
            match hp.activation {
                Activation::Silu => kernels::silu_inplace(gate),
                Activation::GeluTanh => kernels::gelu_tanh_inplace(gate),
            }
            kernels::mul_inplace(gate, up);
            let proj = grow(&mut s.proj, n * d);
            kernels::matmul(pool, &model.weights(&layer.ffn_down)?, gate, n, proj)?;
            if let Some(w) = &layer.post_ffn_norm {
                rms_norm_rows_inplace(proj, w, hp.rms_eps, d);
            }
            kernels::add_inplace(x, proj);
        }

        let rows = n - first_logit_row;
        let xn = grow(&mut s.xn, rows * d);
        rms_norm_rows(
            &x[first_logit_row * d..],
            &model.output_norm,
            hp.rms_eps,
            xn,
            d,
        );
        let logits = grow(&mut s.logits, rows * hp.n_vocab);
        kernels::matmul(pool, &model.weights(&model.output)?, xn, rows, logits)?;
        self.n_past += n;
        self.n_logits = rows;
        Ok(&self.scratch.logits[..rows * hp.n_vocab])
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
