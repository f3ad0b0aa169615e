//! The gated feed-forward block of a transformer layer, `down(glu(gate·x, up·x))`, as one
//! call, so that the activation between the products can be fused into them.
//!
//! Where the gate and up matrices are packed for the VNNI kernels (and the down matrix is a
//! 32-element block format), each 32-row tile of gate and up is followed, on the thread that
//! computed it, by the activation of those 32 columns and their int8 quantization for the
//! down product: no serial pass over the activation between the parallel products. With 8
//! sequences decoding that serial pass (SwiGLU, then quantizing 8 x 1536 values) was about a
//! tenth of the caller's work per layer while the other threads waited. Elsewhere the block
//! runs as three steps (`matmul_many`, `swiglu`/`geglu`, `matmul`). Both give bit-identical
//! results: the same element-wise bodies and quantizer, which treats blocks independently.

use crate::gemm_q32::{self, glu_fusable, glu_packed, matmul_q32_act, type_off, Path as QPath};
use crate::matmul::matmul_isa;
use crate::matmul_many::matmul_many_isa;
use crate::ops::{geglu_isa, swiglu_isa};
use crate::q8act::{quantize_acts, with_two_acts};
use crate::{Isa, KernelError, ThreadPool, Weights};

/// The gated activation of a feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glu {
    /// `silu(gate) · up` (Llama, SmolLM, Qwen, Mistral).
    Silu,
    /// `gelu_tanh(gate) · up` (Gemma).
    GeluTanh,
}

/// Buffers of `n_tokens * gate.rows()` floats the block may use as scratch; their contents
/// afterwards are unspecified.
pub struct FfnScratch<'a> {
    /// Gate product.
    pub gate: &'a mut [f32],
    /// Up product.
    pub up: &'a mut [f32],
    /// The activation, when it is computed as a separate step.
    pub act: &'a mut [f32],
}

/// The weights of a gated feed-forward block.
#[derive(Clone, Copy, Debug)]
pub struct GatedFfn<'w, 'a> {
    /// `ff x d`.
    pub gate: &'w Weights<'a>,
    /// `ff x d`.
    pub up: &'w Weights<'a>,
    /// `d_out x ff`.
    pub down: &'w Weights<'a>,
    /// The activation between them.
    pub glu: Glu,
}

/// `out[t] = down · glu(gate · x[t], up · x[t])` for `n_tokens` rows of `x`.
///
/// Errors (nothing computed) when the shapes disagree: `gate` and `up` must have the same
/// shape, `down.cols()` must equal their rows, `x` holds `n_tokens * gate.cols()` floats,
/// `out` `n_tokens * down.rows()` and every scratch buffer `n_tokens * gate.rows()`.
pub fn ffn_glu(
    pool: &ThreadPool,
    ffn: &GatedFfn<'_, '_>,
    x: &[f32],
    n_tokens: usize,
    scratch: FfnScratch<'_>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    ffn_glu_isa(Isa::current(), pool, ffn, x, n_tokens, scratch, out)
}

pub(crate) fn ffn_glu_isa(
    isa: Isa,
    pool: &ThreadPool,
    ffn: &GatedFfn<'_, '_>,
    x: &[f32],
    n_tokens: usize,
    scratch: FfnScratch<'_>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let &GatedFfn {
        gate,
        up,
        down,
        glu,
    } = ffn;
    let ff = gate.rows();
    if up.rows() != ff || up.cols() != gate.cols() || down.cols() != ff {
        return Err(KernelError::InvalidShape(format!(
            "ffn_glu: gate {}x{}, up {}x{} and down {}x{} do not chain",
            gate.rows(),
            gate.cols(),
            up.rows(),
            up.cols(),
            down.rows(),
            down.cols()
        )));
    }
    let n_ff = n_tokens.saturating_mul(ff);
    for (what, len) in [
        ("ffn_glu: gate scratch (n_tokens * ff)", scratch.gate.len()),
        ("ffn_glu: up scratch (n_tokens * ff)", scratch.up.len()),
        (
            "ffn_glu: activation scratch (n_tokens * ff)",
            scratch.act.len(),
        ),
    ] {
        if len != n_ff {
            return Err(KernelError::Length {
                what,
                expected: n_ff,
                actual: len,
            });
        }
    }
    let need_x = n_tokens.saturating_mul(gate.cols());
    if x.len() != need_x {
        return Err(KernelError::Length {
            what: "ffn_glu: activations (n_tokens * cols)",
            expected: need_x,
            actual: x.len(),
        });
    }
    let need_out = n_tokens.saturating_mul(down.rows());
    if out.len() != need_out {
        return Err(KernelError::Length {
            what: "ffn_glu: output (n_tokens * rows)",
            expected: need_out,
            actual: out.len(),
        });
    }
    if n_tokens == 0 {
        return Ok(());
    }
    let path = QPath::for_isa(isa);
    if glu_fusable(path, gate, up) && gemm_q32::handles(down.ty()) {
        with_two_acts(|a_in, a_act| {
            let cols = gate.cols();
            quantize_acts(
                path.qpath(),
                pool,
                x,
                n_tokens,
                cols,
                type_off(gate.ty()),
                a_in,
            );
            glu_packed(
                isa,
                pool,
                gate,
                up,
                a_in,
                glu,
                scratch.gate,
                scratch.up,
                a_act,
                type_off(down.ty()),
            );
            matmul_q32_act(path, pool, down, a_act, out);
        });
        return Ok(());
    }
    matmul_many_isa(
        isa,
        pool,
        &[gate, up],
        x,
        n_tokens,
        &mut [&mut *scratch.gate, &mut *scratch.up],
    )?;
    match glu {
        Glu::Silu => swiglu_isa(isa, scratch.gate, scratch.up, scratch.act),
        Glu::GeluTanh => geglu_isa(isa, scratch.gate, scratch.up, scratch.act),
    }
    matmul_isa(isa, pool, down, scratch.act, n_tokens, out)
}
