//! Rotary position embeddings, computed the way GGML does so results match llama.cpp.

use crate::KernelError;
use std::cell::Cell;

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

thread_local! {
    static CS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Rotates `x` (`[n_tokens][n_heads][head_dim]`, `n_tokens = positions.len()`) in place.
///
/// For pair `i < n_rot/2` of a token at position `p` the angle is
/// `freq_scale · p · base^(-2i/n_rot)`, with `base^(-2i/n_rot)` built as GGML does: an f32
/// running product of `theta_scale = base^(-2/n_rot)`, and `cos`/`sin` in f32.
pub fn rope_inplace(
    x: &mut [f32],
    positions: &[u32],
    n_heads: usize,
    head_dim: usize,
    cfg: &RopeConfig,
) -> Result<(), KernelError> {
    let n_rot = cfg.n_rot;
    if n_rot == 0 || n_rot % 2 != 0 || n_rot > head_dim {
        return Err(KernelError::InvalidShape(format!(
            "rope: n_rot {n_rot} must be even, non-zero and <= head_dim {head_dim}"
        )));
    }
    let per_token = n_heads * head_dim;
    let expected = positions.len().checked_mul(per_token);
    if expected != Some(x.len()) {
        return Err(KernelError::Length {
            what: "rope: x (n_tokens * n_heads * head_dim)",
            expected: expected.unwrap_or(usize::MAX),
            actual: x.len(),
        });
    }
    let half = n_rot / 2;
    let theta_scale = cfg.freq_base.powf(-2.0 / n_rot as f32);
    let mut cs = CS.with(Cell::take);
    cs.resize(n_rot, 0.0);
    for (tok, &p) in x.chunks_exact_mut(per_token.max(1)).zip(positions) {
        let mut theta = p as f32;
        for i in 0..half {
            let t = cfg.freq_scale * theta;
            cs[2 * i] = t.cos();
            cs[2 * i + 1] = t.sin();
            theta *= theta_scale;
        }
        for head in tok.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (c, s) = (cs[2 * i], cs[2 * i + 1]);
                let (a, b) = match cfg.style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
    CS.with(|c| c.set(cs));
    Ok(())
}
