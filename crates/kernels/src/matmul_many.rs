//! Several matmuls sharing one input (Q, K and V; FFN gate and up): the activations are
//! quantized once per format the weights need (Q8_K for the K-quants, int8 blocks of 32 for
//! Q4_0..Q8_0) instead of once per matmul. Results are identical to separate [`matmul`]
//! calls.
//!
//! [`matmul`]: crate::matmul

use crate::gemm_q32::{self, matmul_q32_act, type_off, Path as QPath};
use crate::kquant_dot;
use crate::matmul::matmul_isa;
use crate::q8act::{quantize_acts, rebias, with_act};
use crate::{Isa, KernelError, ThreadPool, Weights};

/// `outs[i][t * rows_i + r] = Σ_c ws[i][r][c] · x[t * cols + c]` for every weight matrix
/// `ws[i]` (all with the same `cols`), as [`matmul`](crate::matmul) would compute each.
///
/// Errors if `ws` and `outs` differ in length, if `x.len() != n_tokens * cols` for some
/// weights, or if `outs[i].len() != n_tokens * ws[i].rows()`; nothing is computed then.
pub fn matmul_many(
    pool: &ThreadPool,
    ws: &[&Weights],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    matmul_many_isa(Isa::current(), pool, ws, x, n_tokens, outs)
}

pub(crate) fn matmul_many_isa(
    isa: Isa,
    pool: &ThreadPool,
    ws: &[&Weights],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    if ws.len() != outs.len() {
        return Err(KernelError::InvalidShape(format!(
            "matmul_many: {} weight matrices but {} outputs",
            ws.len(),
            outs.len()
        )));
    }
    for (w, out) in ws.iter().zip(outs.iter()) {
        let need_x = n_tokens.checked_mul(w.cols());
        if need_x != Some(x.len()) {
            return Err(KernelError::Length {
                what: "matmul_many: activations (n_tokens * cols)",
                expected: need_x.unwrap_or(usize::MAX),
                actual: x.len(),
            });
        }
        let need_out = n_tokens.checked_mul(w.rows());
        if need_out != Some(out.len()) {
            return Err(KernelError::Length {
                what: "matmul_many: output (n_tokens * rows)",
                expected: need_out.unwrap_or(usize::MAX),
                actual: out.len(),
            });
        }
    }
    if n_tokens == 0 {
        return Ok(());
    }
    let mut kq = Vec::new();
    let mut q32 = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        if w.rows() == 0 {
            continue;
        }
        if kquant_dot::handles(w.ty()) {
            kq.push(i);
        } else if gemm_q32::handles(w.ty()) {
            q32.push(i);
        } else {
            matmul_isa(isa, pool, w, x, n_tokens, outs[i])?;
        }
    }
    if kq.len() == 1 {
        matmul_isa(isa, pool, ws[kq[0]], x, n_tokens, outs[kq[0]])?;
    } else if let Some(&first) = kq.first() {
        let cols = ws[first].cols();
        kquant_dot::with_act(|act| {
            let act = kquant_dot::quantize_act(isa, pool, x, cols, n_tokens, act);
            for &i in &kq {
                let w = ws[i];
                let (ty, data, rows) = (w.ty(), w.data(), w.rows());
                kquant_dot::matmul_kq_act(isa, pool, ty, data, rows, cols, act, n_tokens, outs[i]);
            }
        });
    }
    if q32.len() == 1 {
        matmul_isa(isa, pool, ws[q32[0]], x, n_tokens, outs[q32[0]])?;
    } else if let Some(&first) = q32.first() {
        let path = QPath::for_isa(isa);
        let cols = ws[first].cols();
        // Quantize with a non-zero offset when any type has one, so that `Σq` can be recovered
        // from the corrections for the other offsets; the types without an offset come last
        // (their corrections must be 0: the scalar body adds them).
        q32.sort_by_key(|&i| type_off(ws[i].ty()) == 0);
        let mut off = q32
            .iter()
            .map(|&i| type_off(ws[i].ty()))
            .find(|&o| o != 0)
            .unwrap_or(0);
        // In output order (one offset for all, so the order of quantization does not matter).
        let mut order = q32.clone();
        order.sort_unstable();
        let wq: Vec<&Weights> = order.iter().map(|&i| ws[i]).collect();
        if gemm_q32::packed_many_fits(path, &wq) {
            let mut qouts: Vec<&mut [f32]> = outs
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| order.binary_search(i).is_ok())
                .map(|(_, o)| &mut **o)
                .collect();
            with_act(|a| {
                quantize_acts(path.qpath(), pool, x, n_tokens, cols, off, a);
                gemm_q32::matmul_packed_many(pool, &wq, a, &mut qouts);
            });
            return Ok(());
        }
        with_act(|a| {
            quantize_acts(path.qpath(), pool, x, n_tokens, cols, off, a);
            for &i in &q32 {
                let want = type_off(ws[i].ty());
                if want != off {
                    rebias(a, off, want);
                    off = want;
                }
                matmul_q32_act(path, pool, ws[i], a, outs[i]);
            }
        });
    }
    Ok(())
}
