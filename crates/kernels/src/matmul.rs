//! Matrix × activations: `out[t][r] = dot(W[r], x[t])` with `W` quantized, row-major.
//!
//! Current strategy (correctness first; the interface is what later speed work keeps):
//! rows are split into tiles; each pool thread dequantizes a tile into a per-thread f32
//! scratch once, then dots it with every token's activation row, four weight rows at a time
//! so each activation load feeds four FMAs. During prompt processing the dequantization is
//! thereby amortised over all tokens. Later work (int8 VNNI dot products against quantized
//! activations, repacked weights, register-tiled GEMM) plugs in behind [`matmul`] per type.

#[cfg(target_arch = "x86_64")]
use crate::dequant::dequant_row_g;
use crate::dequant::{dequant_row_scalar, is_supported, row_bytes};
use crate::gemm_q32::PackedWeights;
use crate::isa::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::isa::simd_fns;
#[cfg(target_arch = "x86_64")]
use crate::ops::{dot_g, load_part};
use crate::pool::SyncSlice;
#[cfg(target_arch = "x86_64")]
use crate::simd::Simd;
use crate::{Isa, KernelError, ThreadPool};
use quant::GgmlType;
use std::cell::Cell;

/// A row-major quantized matrix borrowed from a model file: `rows` rows of `cols` elements,
/// each row `cols / block_size` consecutive blocks of `ty`. Validated on construction.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    ty: GgmlType,
    data: &'a [u8],
    rows: usize,
    cols: usize,
    row_bytes: usize,
    packed: Option<&'a PackedWeights>,
}

impl<'a> Weights<'a> {
    /// Checks that `ty` is supported, that `cols` is a whole number of blocks and that `data`
    /// is exactly `rows` rows long.
    pub fn new(
        ty: GgmlType,
        data: &'a [u8],
        rows: usize,
        cols: usize,
    ) -> Result<Weights<'a>, KernelError> {
        if !is_supported(ty) {
            return Err(KernelError::UnsupportedType(ty));
        }
        if cols == 0 {
            return Err(KernelError::InvalidShape(
                "matmul: weights with 0 columns".into(),
            ));
        }
        let row_bytes = row_bytes(ty, cols)?;
        let expected = rows.checked_mul(row_bytes).ok_or_else(|| {
            KernelError::InvalidShape(format!("matmul: {rows} x {cols} {ty} overflows"))
        })?;
        if data.len() != expected {
            return Err(KernelError::Length {
                what: "matmul: weight bytes",
                expected,
                actual: data.len(),
            });
        }
        Ok(Weights {
            ty,
            data,
            rows,
            cols,
            row_bytes,
            packed: None,
        })
    }

    /// The same matrix with its load-time repacking attached: kernels that read packed tiles
    /// use it, the others keep reading `data`. Errors if `packed` is not this matrix's.
    pub fn with_packed(self, packed: &'a PackedWeights) -> Result<Weights<'a>, KernelError> {
        if (packed.ty(), packed.rows(), packed.cols()) != (self.ty, self.rows, self.cols) {
            return Err(KernelError::InvalidShape(format!(
                "matmul: packed {} x {} {} attached to {} x {} {}",
                packed.rows(),
                packed.cols(),
                packed.ty(),
                self.rows,
                self.cols,
                self.ty
            )));
        }
        Ok(Weights {
            packed: Some(packed),
            ..self
        })
    }

    /// The load-time repacking, if one is attached.
    pub fn packed(&self) -> Option<&'a PackedWeights> {
        self.packed
    }

    /// Element type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    /// The raw blocks.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Elements per row (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }
    /// The blocks of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

thread_local! {
    /// Per-thread dequantization scratch; grows to the largest tile seen, then is reused.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch of at least `len` floats (allocates only to grow).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|c| c.set(buf));
    r
}

/// Rows per tile: about 64 KiB of f32 scratch (fits L2 next to the activations), a
/// multiple of 4, between 4 and 64.
fn tile_rows(cols: usize) -> usize {
    ((64 * 1024 / (4 * cols)).clamp(4, 64)) & !3
}

/// Everything a tile job needs.
struct Job<'a, 'b> {
    w: &'b Weights<'a>,
    x: &'b [f32],
    n_tokens: usize,
    out: &'b SyncSlice<'b, f32>,
}

/// Four dot products of `n` against one activation row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot4_g<S: Simd>(w: *const f32, stride: usize, x: *const f32, n: usize) -> [f32; 4] {
    let (w0, w1, w2, w3) = (w, w.add(stride), w.add(2 * stride), w.add(3 * stride));
    let (mut a0, mut a1, mut a2, mut a3) = (S::zero(), S::zero(), S::zero(), S::zero());
    let mut i = 0;
    while i + S::W <= n {
        let xv = S::load(x.add(i));
        a0 = S::fmadd(S::load(w0.add(i)), xv, a0);
        a1 = S::fmadd(S::load(w1.add(i)), xv, a1);
        a2 = S::fmadd(S::load(w2.add(i)), xv, a2);
        a3 = S::fmadd(S::load(w3.add(i)), xv, a3);
        i += S::W;
    }
    if i < n {
        let r = n - i;
        let xv = load_part::<S>(x.add(i), r, 0.0);
        a0 = S::fmadd(load_part::<S>(w0.add(i), r, 0.0), xv, a0);
        a1 = S::fmadd(load_part::<S>(w1.add(i), r, 0.0), xv, a1);
        a2 = S::fmadd(load_part::<S>(w2.add(i), r, 0.0), xv, a2);
        a3 = S::fmadd(load_part::<S>(w3.add(i), r, 0.0), xv, a3);
    }
    [
        S::reduce_add(a0),
        S::reduce_add(a1),
        S::reduce_add(a2),
        S::reduce_add(a3),
    ]
}

/// One tile of rows `r0..r0 + nr` with SIMD dequantization and dots.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_g<S: Simd>(job: &Job, r0: usize, nr: usize, scratch: &mut [f32]) {
    let (w, cols) = (job.w, job.w.cols);
    for i in 0..nr {
        dequant_row_g::<S>(w.ty, w.row(r0 + i), &mut scratch[i * cols..(i + 1) * cols]);
    }
    let s = scratch.as_ptr();
    for t in 0..job.n_tokens {
        let x = job.x[t * cols..(t + 1) * cols].as_ptr();
        // SAFETY: tiles are disjoint row ranges, so `out[t*rows + r0 ..][..nr]` of different
        // tiles never overlap; each tile is processed by exactly one thread.
        let o = job.out.slice_mut(t * w.rows + r0, nr);
        let mut i = 0;
        while i + 4 <= nr {
            let d = dot4_g::<S>(s.add(i * cols), cols, x, cols);
            o[i..i + 4].copy_from_slice(&d);
            i += 4;
        }
        while i < nr {
            o[i] = dot_g::<S>(s.add(i * cols), x, cols);
            i += 1;
        }
    }
}
simd_fns!(k_tile, tile_g, (job: &Job, r0: usize, nr: usize, scratch: &mut [f32]));

/// The scalar reference for one tile: dequantize, then plain f32 dots.
fn tile_scalar(job: &Job, r0: usize, nr: usize, scratch: &mut [f32]) {
    let (w, cols) = (job.w, job.w.cols);
    for i in 0..nr {
        dequant_row_scalar(w.ty, w.row(r0 + i), &mut scratch[i * cols..(i + 1) * cols]);
    }
    for t in 0..job.n_tokens {
        let x = &job.x[t * cols..(t + 1) * cols];
        // SAFETY: as in `tile_g`: disjoint tiles, one thread per tile.
        let o = unsafe { job.out.slice_mut(t * w.rows + r0, nr) };
        for (i, o) in o.iter_mut().enumerate() {
            *o = crate::ops::scalar::dot(&scratch[i * cols..(i + 1) * cols], x);
        }
    }
}

pub(crate) fn matmul_isa(
    isa: Isa,
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let need_x = n_tokens.checked_mul(w.cols);
    if need_x != Some(x.len()) {
        return Err(KernelError::Length {
            what: "matmul: activations (n_tokens * cols)",
            expected: need_x.unwrap_or(usize::MAX),
            actual: x.len(),
        });
    }
    let need_out = n_tokens.checked_mul(w.rows);
    if need_out != Some(out.len()) {
        return Err(KernelError::Length {
            what: "matmul: output (n_tokens * rows)",
            expected: need_out.unwrap_or(usize::MAX),
            actual: out.len(),
        });
    }
    if n_tokens == 0 || w.rows == 0 {
        return Ok(());
    }
    // K-quants: integer dots against activations quantized to Q8_K (`kquant_dot`).
    if crate::kquant_dot::handles(w.ty) {
        let (ty, data, rows, cols) = (w.ty, w.data, w.rows, w.cols);
        crate::kquant_dot::matmul_kq(isa, pool, ty, data, rows, cols, x, n_tokens, out);
        return Ok(());
    }
    // 32-element block formats: integer dots against activations quantized to int8 blocks.
    if crate::gemm_q32::handles(w.ty) {
        crate::gemm_q32::matmul_q32(isa, pool, w, x, n_tokens, out);
        return Ok(());
    }
    let tile = tile_rows(w.cols);
    let n_tiles = w.rows.div_ceil(tile);
    let out = SyncSlice::new(out);
    let job = Job {
        w,
        x,
        n_tokens,
        out: &out,
    };
    pool.for_each_chunk(n_tiles, 1, |tiles| {
        with_scratch(tile * w.cols, |scratch| {
            for t in tiles {
                let r0 = t * tile;
                let nr = tile.min(w.rows - r0);
                dispatch!(
                    isa,
                    k_tile,
                    tile_scalar(&job, r0, nr, scratch),
                    (&job, r0, nr, scratch)
                );
            }
        })
    });
    Ok(())
}

/// `out[t * rows + r] = Σ_c W[r][c] · x[t * cols + c]` for every token `t < n_tokens` and row
/// `r < w.rows()`, in parallel on `pool`.
///
/// Errors if `x.len() != n_tokens * cols` or `out.len() != n_tokens * rows` (the weights
/// were validated by [`Weights::new`]).
pub fn matmul(
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul_isa(Isa::current(), pool, w, x, n_tokens, out)
}

/// [`matmul`] with each token's results in a buffer of its own: `outs[t][r] = Σ_c
/// w[r][c] · x[t * cols + c]`, as [`matmul`] computes them (a decode step writes each
/// sequence's logits straight into that sequence's buffer instead of copying them there).
///
/// Errors (nothing computed) if `x.len() != outs.len() * cols` or some `outs[t].len() !=
/// rows`.
pub fn matmul_rows(
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    matmul_rows_isa(Isa::current(), pool, w, x, outs)
}

pub(crate) fn matmul_rows_isa(
    isa: Isa,
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    let n_tokens = outs.len();
    let need_x = n_tokens.saturating_mul(w.cols);
    if x.len() != need_x {
        return Err(KernelError::Length {
            what: "matmul_rows: activations (outputs * cols)",
            expected: need_x,
            actual: x.len(),
        });
    }
    if let Some(bad) = outs.iter().find(|o| o.len() != w.rows) {
        return Err(KernelError::Length {
            what: "matmul_rows: an output row (rows)",
            expected: w.rows,
            actual: bad.len(),
        });
    }
    if crate::gemm_q32::handles(w.ty) {
        crate::gemm_q32::matmul_q32_rows(isa, pool, w, x, outs);
        return Ok(());
    }
    // Other formats compute into one buffer and copy.
    let mut all = vec![0.0f32; n_tokens * w.rows];
    matmul_isa(isa, pool, w, x, n_tokens, &mut all)?;
    for (o, src) in outs.iter_mut().zip(all.chunks_exact(w.rows.max(1))) {
        o.copy_from_slice(src);
    }
    Ok(())
}

/// The type names the kernels accept, for error messages and `--help` text.
pub fn supported_type_names() -> Vec<&'static str> {
    crate::dequant::SUPPORTED_TYPES
        .iter()
        .map(|t: &GgmlType| t.name())
        .collect()
}
