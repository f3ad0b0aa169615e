//! Rotary position embeddings, computed the way GGML does so results match llama.cpp.
//!
//! The angles are computed once per position in scalar f32 (as GGML: a running product and
//! libm `cos`/`sin`), into a [`RopeAngles`] that every layer of a forward pass reuses; the
//! rotation of every head is dispatched. The SIMD rotation evaluates
//! exactly the scalar expressions (`x0·c − x1·s`, `x0·s + x1·c`, unfused), so all paths agree
//! bit for bit.

use crate::isa::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::isa::simd_fns;
#[cfg(target_arch = "x86_64")]
use crate::ops::{load_part, store_part};
#[cfg(target_arch = "x86_64")]
use crate::simd::Simd;
use crate::{Isa, KernelError};

/// Which dimensions RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])` (GGML mode 0; llama-family GGUF files).
    Normal,
    /// Halves `(x[i], x[i + n_rot/2])` (GGML `NEOX` mode; gemma3, qwen2, qwen3, ...).
    Neox,
}

/// Per-model RoPE parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeConfig {
    /// Leading dimensions of each head that are rotated (`n_rot`); even, `<= head_dim`.
    /// The rest pass through unchanged.
    pub n_rot: usize,
    /// Frequency base (`rope.freq_base`, e.g. 10000).
    pub freq_base: f32,
    /// Linear position scale (`1 / rope.scaling.factor`; 1 for none).
    pub freq_scale: f32,
    /// Pairing style.
    pub style: RopeStyle,
}

/// Rotates `heads` consecutive heads of `head_dim` at `x`.
///
/// Table layout (`2 * n_rot` floats): Normal: `[c0 c0 c1 c1 ..]` then `[-s0 s0 -s1 s1 ..]`;
/// Neox: `[c0 c1 ..]` (n_rot/2) then `[s0 s1 ..]` (n_rot/2).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rotate_g<S: Simd>(
    x: *mut f32,
    heads: usize,
    head_dim: usize,
    n_rot: usize,
    neox: bool,
    table: *const f32,
) {
    for h in 0..heads {
        let x = x.add(h * head_dim);
        if neox {
            let half = n_rot / 2;
            let (c, s) = (table, table.add(half));
            let mut i = 0;
            while i < half {
                let r = (half - i).min(S::W);
                let a = load_part::<S>(x.add(i), r, 0.0);
                let b = load_part::<S>(x.add(half + i), r, 0.0);
                let cv = load_part::<S>(c.add(i), r, 0.0);
                let sv = load_part::<S>(s.add(i), r, 0.0);
                let a2 = S::sub(S::mul(a, cv), S::mul(b, sv));
                let b2 = S::add(S::mul(a, sv), S::mul(b, cv));
                store_part::<S>(x.add(i), r, a2);
                store_part::<S>(x.add(half + i), r, b2);
                i += r;
            }
        } else {
            let (c, s) = (table, table.add(n_rot));
            let mut i = 0;
            while i < n_rot {
                let r = (n_rot - i).min(S::W);
                let v = load_part::<S>(x.add(i), r, 0.0);
                let cv = load_part::<S>(c.add(i), r, 0.0);
                let sv = load_part::<S>(s.add(i), r, 0.0);
                // Lane 2k: x0·c + x1·(−s) == x0·c − x1·s; lane 2k+1: x1·c + x0·s.
                let y = S::add(S::mul(v, cv), S::mul(S::swap_pairs(v), sv));
                store_part::<S>(x.add(i), r, y);
                i += r;
            }
        }
    }
}
simd_fns!(k_rotate, rotate_g,
    (x: *mut f32, heads: usize, head_dim: usize, n_rot: usize, neox: bool, table: *const f32));

/// The scalar reference rotation, from the interleaved `(cos, sin)` pairs in `cs`.
fn rotate_scalar(tok: &mut [f32], head_dim: usize, n_rot: usize, style: RopeStyle, cs: &[f32]) {
    let half = n_rot / 2;
    for head in tok.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (c, s) = (cs[2 * i], cs[2 * i + 1]);
            let (a, b) = match style {
                RopeStyle::Normal => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

/// The cosines and sines of every position of a batch for one [`RopeConfig`], computed once
/// and applied to any number of tensors ([`rope_apply`]): a decode step rotates the queries
/// and keys of every layer at the same positions, and the angles (libm `cos`/`sin` per pair)
/// cost more than the rotations.
#[derive(Clone, Debug)]
pub struct RopeAngles {
    cfg: RopeConfig,
    /// Per position, `3 * n_rot` floats: the interleaved `(cos, sin)` pairs the scalar
    /// rotation reads, then the SIMD table (see `rotate_g`).
    per_pos: Vec<f32>,
}

impl RopeAngles {
    /// The angles of `positions` under `cfg`. Errors if `n_rot` is odd or zero.
    pub fn new(cfg: &RopeConfig, positions: &[u32]) -> Result<RopeAngles, KernelError> {
        let n_rot = cfg.n_rot;
        if n_rot == 0 || !n_rot.is_multiple_of(2) {
            return Err(KernelError::InvalidShape(format!(
                "rope: n_rot {n_rot} must be even and non-zero"
            )));
        }
        let half = n_rot / 2;
        let theta_scale = cfg.freq_base.powf(-2.0 / n_rot as f32);
        let neox = cfg.style == RopeStyle::Neox;
        let mut per_pos = vec![0.0f32; 3 * n_rot * positions.len()];
        for (buf, &p) in per_pos.chunks_exact_mut(3 * n_rot).zip(positions) {
            let (cs, table) = buf.split_at_mut(n_rot);
            let mut theta = p as f32;
            for i in 0..half {
                let t = cfg.freq_scale * theta;
                let (c, s) = (t.cos(), t.sin());
                cs[2 * i] = c;
                cs[2 * i + 1] = s;
                if neox {
                    table[i] = c;
                    table[half + i] = s;
                } else {
                    table[2 * i] = c;
                    table[2 * i + 1] = c;
                    table[n_rot + 2 * i] = -s;
                    table[n_rot + 2 * i + 1] = s;
                }
                theta *= theta_scale;
            }
        }
        Ok(RopeAngles { cfg: *cfg, per_pos })
    }

    /// The configuration the angles were computed for.
    pub fn config(&self) -> &RopeConfig {
        &self.cfg
    }

    /// Positions the angles were computed for.
    fn n_pos(&self) -> usize {
        self.per_pos.len() / (3 * self.cfg.n_rot)
    }
}

fn check_rot(n_rot: usize, head_dim: usize) -> Result<(), KernelError> {
    if n_rot > head_dim {
        return Err(KernelError::InvalidShape(format!(
            "rope: n_rot {n_rot} must be even, non-zero and <= head_dim {head_dim}"
        )));
    }
    Ok(())
}

pub(crate) fn rope_apply_isa(
    isa: Isa,
    x: &mut [f32],
    angles: &RopeAngles,
    n_heads: usize,
    head_dim: usize,
) -> Result<(), KernelError> {
    check_rot(angles.cfg.n_rot, head_dim)?;
    let expected = angles.n_pos().checked_mul(n_heads * head_dim);
    if expected != Some(x.len()) {
        return Err(KernelError::Length {
            what: "rope: x (n_tokens * n_heads * head_dim)",
            expected: expected.unwrap_or(usize::MAX),
            actual: x.len(),
        });
    }
    rotate_rows(isa, x, angles, 0, n_heads, head_dim);
    Ok(())
}

pub(crate) fn rope_apply_from_isa(
    isa: Isa,
    x: &mut [f32],
    angles: &RopeAngles,
    first: usize,
    n_heads: usize,
    head_dim: usize,
) -> Result<(), KernelError> {
    check_rot(angles.cfg.n_rot, head_dim)?;
    let per_token = n_heads * head_dim;
    if per_token == 0 {
        return Ok(());
    }
    let n_pos = angles.n_pos();
    let n_tok = x.len() / per_token;
    if !x.len().is_multiple_of(per_token) || first.checked_add(n_tok).is_none_or(|end| end > n_pos)
    {
        return Err(KernelError::Length {
            what: "rope: x (whole rows of n_heads * head_dim, within the angles' positions)",
            expected: n_pos.saturating_sub(first) * per_token,
            actual: x.len(),
        });
    }
    rotate_rows(isa, x, angles, first, n_heads, head_dim);
    Ok(())
}

/// Rotates the rows of `x` with the angles of positions `first..` (shapes checked by the
/// callers).
fn rotate_rows(
    isa: Isa,
    x: &mut [f32],
    angles: &RopeAngles,
    first: usize,
    n_heads: usize,
    head_dim: usize,
) {
    let per_token = n_heads * head_dim;
    if per_token == 0 {
        return;
    }
    let cfg = &angles.cfg;
    let n_rot = cfg.n_rot;
    let neox = cfg.style == RopeStyle::Neox;
    for (tok, buf) in x
        .chunks_exact_mut(per_token)
        .zip(angles.per_pos.chunks_exact(3 * n_rot).skip(first))
    {
        let (cs, table) = buf.split_at(n_rot);
        dispatch!(
            isa,
            k_rotate,
            rotate_scalar(tok, head_dim, n_rot, cfg.style, cs),
            (
                tok.as_mut_ptr(),
                n_heads,
                head_dim,
                n_rot,
                neox,
                table.as_ptr()
            )
        );
    }
}

pub(crate) fn rope_inplace_isa(
    isa: Isa,
    x: &mut [f32],
    positions: &[u32],
    n_heads: usize,
    head_dim: usize,
    cfg: &RopeConfig,
) -> Result<(), KernelError> {
    rope_apply_isa(isa, x, &RopeAngles::new(cfg, positions)?, n_heads, head_dim)
}

/// Rotates `x` (`[n_tokens][n_heads][head_dim]`, `n_tokens = positions.len()`) in place.
///
/// For pair `i < n_rot/2` of a token at position `p` the angle is
/// `freq_scale · p · base^(-2i/n_rot)`, with `base^(-2i/n_rot)` built as GGML does: an f32
/// running product of `theta_scale = base^(-2/n_rot)`, and `cos`/`sin` in f32.
/// Errors if `n_rot` is odd, zero or larger than `head_dim`, or `x` has the wrong length.
pub fn rope_inplace(
    x: &mut [f32],
    positions: &[u32],
    n_heads: usize,
    head_dim: usize,
    cfg: &RopeConfig,
) -> Result<(), KernelError> {
    rope_inplace_isa(Isa::current(), x, positions, n_heads, head_dim, cfg)
}

/// Rotates `x` (`[n_tokens][n_heads][head_dim]`) in place with angles computed beforehand
/// for its `n_tokens` positions: the same result as [`rope_inplace`] with those positions and
/// the angles' configuration. Errors if `n_rot > head_dim` or `x` has the wrong length.
pub fn rope_apply(
    x: &mut [f32],
    angles: &RopeAngles,
    n_heads: usize,
    head_dim: usize,
) -> Result<(), KernelError> {
    rope_apply_isa(Isa::current(), x, angles, n_heads, head_dim)
}

/// [`rope_apply`] on the rows of positions `first..first + n` of the angles' batch, `x`
/// holding those `n` rows (`[n][n_heads][head_dim]`): one sequence's queries or keys of a
/// batch, rotated in that sequence's own job. Errors if `n_rot > head_dim`, or `x` is not
/// whole rows or reaches past the angles' positions.
pub fn rope_apply_from(
    x: &mut [f32],
    angles: &RopeAngles,
    first: usize,
    n_heads: usize,
    head_dim: usize,
) -> Result<(), KernelError> {
    rope_apply_from_isa(Isa::current(), x, angles, first, n_heads, head_dim)
}
