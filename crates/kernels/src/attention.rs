//! Causal multi-head attention over an f16 KV cache (GQA, optional sliding window).
//!
//! One pass per (token, head) with a running maximum (flash-attention style): keys are taken
//! in blocks of [`BLOCK`]; each block's scores are computed, the accumulator is rescaled once
//! if the maximum grew, and the block's values are added with weights `e^(s - max)`. Memory
//! does not grow with the context. The output row itself is the accumulator.

use crate::isa::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::isa::simd_fns;
#[cfg(target_arch = "x86_64")]
use crate::ops::{axpy_f16_g, dot_f16_g, load_part};
#[cfg(target_arch = "x86_64")]
use crate::simd::Simd;
use crate::{Isa, KernelError, ThreadPool};
use half::f16;

/// Keys per block of the online softmax.
const BLOCK: usize = 64;

/// Shape of one attention call.
#[derive(Clone, Copy)]
struct Geom {
    head_dim: usize,
    /// Elements per cache position (`n_kv_head * head_dim`).
    kv_stride: usize,
    scale: f32,
}

/// One query row against keys `j0..j1`, result into `out` (`head_dim` floats).
/// `k`/`v` point at the chosen kv head of position 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn attend_g<S: Simd>(
    g: Geom,
    q: *const f32,
    k: *const u16,
    v: *const u16,
    j0: usize,
    j1: usize,
    out: *mut f32,
) {
    let hd = g.head_dim;
    std::ptr::write_bytes(out, 0, hd);
    let mut m = f32::NEG_INFINITY;
    let mut l = 0.0f32;
    let mut s = [0.0f32; BLOCK];
    let mut b0 = j0;
    while b0 < j1 {
        let nb = BLOCK.min(j1 - b0);
        let mut bm = f32::NEG_INFINITY;
        for (i, sj) in s[..nb].iter_mut().enumerate() {
            *sj = g.scale * dot_f16_g::<S>(k.add((b0 + i) * g.kv_stride), q, hd);
            bm = bm.max(*sj);
        }
        let new_m = m.max(bm);
        if new_m > m {
            // e^(m - new_m) computed with the same exp as the weights; 0 on the first block.
            let mut c = [0.0f32; 16];
            S::store(c.as_mut_ptr(), S::exp(S::splat(m - new_m)));
            let corr = c[0];
            l *= corr;
            let cv = S::splat(corr);
            let mut i = 0;
            while i + S::W <= hd {
                S::store(out.add(i), S::mul(S::load(out.add(i)), cv));
                i += S::W;
            }
            while i < hd {
                *out.add(i) *= corr;
                i += 1;
            }
            m = new_m;
        }
        // Weights of the block, vectorised.
        let mv = S::splat(m);
        let mut i = 0;
        while i < nb {
            let r = (nb - i).min(S::W);
            let e = S::exp(S::sub(
                load_part::<S>(s.as_ptr().add(i), r, f32::NEG_INFINITY),
                mv,
            ));
            let mut buf = [0.0f32; 16];
            S::store(buf.as_mut_ptr(), e);
            s[i..i + r].copy_from_slice(&buf[..r]);
            i += r;
        }
        for (i, &p) in s[..nb].iter().enumerate() {
            l += p;
            axpy_f16_g::<S>(out, p, v.add((b0 + i) * g.kv_stride), hd);
        }
        b0 += nb;
    }
    let inv = 1.0 / l;
    let iv = S::splat(inv);
    let mut i = 0;
    while i + S::W <= hd {
        S::store(out.add(i), S::mul(S::load(out.add(i)), iv));
        i += S::W;
    }
    while i < hd {
        *out.add(i) *= inv;
        i += 1;
    }
}
simd_fns!(k_attend, attend_g,
    (g: Geom, q: *const f32, k: *const u16, v: *const u16, j0: usize, j1: usize, out: *mut f32));

/// Scalar reference of the same online algorithm, key by key.
fn attend_scalar(g: Geom, q: &[f32], k: &[u16], v: &[u16], j0: usize, j1: usize, out: &mut [f32]) {
    let hd = g.head_dim;
    out.fill(0.0);
    let mut m = f32::NEG_INFINITY;
    let mut l = 0.0f32;
    for j in j0..j1 {
        let kj = &k[j * g.kv_stride..j * g.kv_stride + hd];
        let s = g.scale * crate::ops::scalar::dot_f16(kj, q);
        if s > m {
            let corr = (m - s).exp();
            l *= corr;
            out.iter_mut().for_each(|o| *o *= corr);
            m = s;
        }
        let p = (s - m).exp();
        l += p;
        crate::ops::scalar::axpy_f16(out, p, &v[j * g.kv_stride..j * g.kv_stride + hd]);
    }
    let inv = 1.0 / l;
    out.iter_mut().for_each(|o| *o *= inv);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_isa(
    isa: Isa,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[f16],
    v_cache: &[f16],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    if n_head == 0 || n_kv_head == 0 || head_dim == 0 || !n_head.is_multiple_of(n_kv_head) {
        return Err(KernelError::InvalidShape(format!(
            "attention: n_head {n_head} must be a non-zero multiple of n_kv_head {n_kv_head}, \
             head_dim {head_dim} non-zero"
        )));
    }
    if window == Some(0) {
        return Err(KernelError::InvalidShape(
            "attention: window of 0 positions".into(),
        ));
    }
    let qn = n_tokens * n_head * head_dim;
    for (what, len) in [("attention: q", q.len()), ("attention: out", out.len())] {
        if len != qn {
            return Err(KernelError::Length {
                what,
                expected: qn,
                actual: len,
            });
        }
    }
    let kv_stride = n_kv_head * head_dim;
    let kv_need = (pos0 + n_tokens) * kv_stride;
    for (what, len) in [
        ("attention: k_cache (at least)", k_cache.len()),
        ("attention: v_cache (at least)", v_cache.len()),
    ] {
        if len < kv_need {
            return Err(KernelError::Length {
                what,
                expected: kv_need,
                actual: len,
            });
        }
    }
    // SAFETY: `half::f16` is `#[repr(transparent)]` over `u16`.
    let k: &[u16] = unsafe { std::slice::from_raw_parts(k_cache.as_ptr().cast(), kv_need) };
    // SAFETY: as above.
    let v: &[u16] = unsafe { std::slice::from_raw_parts(v_cache.as_ptr().cast(), kv_need) };
    let g = Geom {
        head_dim,
        kv_stride,
        scale,
    };
    let group = n_head / n_kv_head;
    pool.for_each_chunk_mut(out, head_dim, |idx, o| {
        let (t, h) = (idx / n_head, idx % n_head);
        let p = pos0 + t;
        let j1 = p + 1;
        let j0 = window.map_or(0, |w| j1.saturating_sub(w));
        let kv_off = (h / group) * head_dim;
        let qr = &q[idx * head_dim..(idx + 1) * head_dim];
        // Bounds: the last key read is (j1 - 1) * kv_stride + kv_off + head_dim <= kv_need.
        dispatch!(
            isa,
            k_attend,
            attend_scalar(g, qr, &k[kv_off..], &v[kv_off..], j0, j1, o),
            (
                g,
                qr.as_ptr(),
                k[kv_off..].as_ptr(),
                v[kv_off..].as_ptr(),
                j0,
                j1,
                o.as_mut_ptr()
            )
        );
    });
    Ok(())
}

/// Causal attention of `n_tokens` new queries over the KV cache.
///
/// * `q`, `out`: `[n_tokens][n_head][head_dim]`.
/// * `k_cache`, `v_cache`: `[positions][n_kv_head][head_dim]` f16, holding at least positions
///   `0..pos0 + n_tokens` (the current tokens already written).
/// * Query `t` sits at position `p = pos0 + t` and attends to keys `j <= p`; with
///   `window = Some(w)` only to those with `p - j < w` (llama.cpp's standard sliding window).
/// * Head `h` reads kv head `h / (n_head / n_kv_head)` (grouped-query attention).
/// * Scores are `scale · q·k`, softmax in f32 with the running maximum subtracted.
///
/// Parallel over (token, head) pairs on `pool`. Errors on inconsistent shapes.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[f16],
    v_cache: &[f16],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_isa(
        Isa::current(),
        pool,
        q,
        n_tokens,
        n_head,
        n_kv_head,
        head_dim,
        k_cache,
        v_cache,
        pos0,
        window,
        scale,
        out,
    )
}
