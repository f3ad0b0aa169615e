//! Causal multi-head attention over a KV cache stored as f16 or as Q8_0 blocks (GQA, optional
//! sliding window).
//!
//! # Cache formats
//! Both formats lay the cache out `[position][kv_head][head_dim]`. A Q8_0 row of one head is
//! `head_dim / 32` GGML Q8_0 blocks (f16 scale `d`, 32 signed bytes `q`, value `d·q`), so
//! `head_dim` must be a multiple of 32; it is quantized by [`quantize_kv_q8_0`] (`quant`'s
//! reference quantizer, bit-identical to ggml's). The kernels are generic over the format
//! (`Fmt`): a Q8_0 vector load sign-extends 16 or 8 bytes to f32 and multiplies by the block
//! scale, giving exactly the values the scalar reference dequantizes (the decode kernel's
//! value update applies the scale to the weights instead, equal up to rounding), so both
//! formats share one algorithm and one set of tests.
//!
//! # Algorithm
//! Single pass with a running maximum (flash-attention style): keys are taken in blocks, each
//! block's scores are computed, the accumulator is rescaled once if the maximum grew, and the
//! block's values are added with weights `e^(s - max)`. Memory does not grow with the context.
//!
//! The query rows that share a KV head (the `group = n_head / n_kv_head` heads of a token, for
//! consecutive tokens) are processed together so every K and V row is read and converted
//! once per group of rows, not once per row. Two SIMD kernels do this:
//!
//! * **tiled** (prefill, `n_tokens · group >= 8`): up to one vector of query rows (16 with
//!   AVX-512), one row per *lane*. Q is transposed once per block (`Qt[d][row]`, pre-scaled);
//!   for each tile of `W` keys the K rows are converted to f32 once, and the score tile is
//!   `W` vector accumulators, `acc[key] += Qt[d] · k[key][d]` (broadcast), so scores come out
//!   lane-parallel over rows: the running max, the rescaling and the `e^(s - max)` weights are
//!   plain vector operations with no horizontal reductions. The output is kept transposed too
//!   (`Ot[d][row] += Σ_key p[key] · v[key][d]`, the `W` weight vectors staying in registers)
//!   and is transposed back once at the end. Tiles outside every row's causal/window range are
//!   skipped; tiles on a boundary get a per-lane `0 / -inf` bias.
//! * **rows** (decode, few rows per KV head): one work item covers *every* KV head over a
//!   range of positions, block by block of [`RBLOCK`] positions, so it streams through one
//!   contiguous span of the cache (a position's heads are adjacent) with the next block
//!   prefetched. Taking one head at a time instead reads a third or a quarter of every cache
//!   line pair and leaves the hardware prefetchers a strided pattern: measured, that ran the
//!   decode at depth at about 6 GB/s, a third of what a plain stream gets. Inside a block, up
//!   to 4 rows of a head share each K load and each V load. Decode has too few rows to put
//!   them in lanes, so a score is a dot product over `head_dim` lanes, and reducing those
//!   lanes one key at a time cost more than the dot products. Instead the `W` keys of a
//!   vector are reduced together by a pairwise tree ([`Reduce`]: about 3 shuffles and adds a
//!   key) that leaves key `i`'s score in lane `i`, so the block's scaling, masking, maximum
//!   and exponentials are whole-vector operations. The value update keeps up to 4 vectors of
//!   `head_dim` per row in flight: one accumulator per row would be a chain of dependent
//!   FMAs, bound by their latency rather than their throughput (it was the largest single
//!   cost). Head sizes 64, 128 and 256 get their own instantiations, loops unrolled.
//!
//! With a Q8_0 cache, each block's value scale is folded into the weights (`p · d`, one
//! product per row and 16 keys) instead of into every converted value vector.
//! [`attention_q8_0_int8_query`] further rounds the queries to Q8_0, as ggml does for a Q8_0
//! K: with AVX-512 VNNI the grouped-row scores are then integer dot products (`vpdpbusd`,
//! 64 key bytes and one instruction per row), reduced as integers across 8 keys, with the
//! two scales applied once per 8 keys ([`scores_vnni`]). Converting every key byte to f32
//! and scaling it was most of the Q8_0 kernel's work, which left Q8_0 slower than f16
//! despite reading half the bytes. All paths of that function compute on the same rounded
//! queries, so they agree with each other and the scalar reference up to f32 rounding.
//!
//! When there are fewer work items than about 4 per thread, the key range of each is split
//! (split-K, "flash decoding"): each piece returns its row maxima, sums and unnormalised
//! accumulators, and the caller combines them. The scalar path keeps the original
//! one-row-at-a-time algorithm and is the tests' reference.

use crate::isa::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::isa::simd_fns;
#[cfg(target_arch = "x86_64")]
use crate::ops::{load_part, store_part};
#[cfg(target_arch = "x86_64")]
use crate::simd::Simd;
use crate::{Isa, KernelError, ThreadPool};
use half::f16;
#[cfg(target_arch = "x86_64")]
use std::cell::Cell;

/// Values per Q8_0 block.
const Q8_BLOCK: usize = quant::blocks::q8_0::BLOCK_SIZE;
/// Bytes per Q8_0 block (f16 scale + 32 bytes).
const Q8_BYTES: usize = quant::blocks::q8_0::TYPE_SIZE;

/// How a cache row is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KvFormat {
    F16,
    Q8_0,
}

impl KvFormat {
    /// Bytes of `n` values (`n` a multiple of the block for Q8_0).
    fn bytes(self, n: usize) -> usize {
        match self {
            KvFormat::F16 => 2 * n,
            KvFormat::Q8_0 => n / Q8_BLOCK * Q8_BYTES,
        }
    }

    /// Dequantizes the `out.len()` values of one head row starting at `row`.
    fn row_to_f32(self, row: &[u8], out: &mut [f32]) {
        match self {
            KvFormat::F16 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            KvFormat::Q8_0 => {
                for (o, b) in out.chunks_mut(Q8_BLOCK).zip(row.chunks_exact(Q8_BYTES)) {
                    let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                    for (o, &q) in o.iter_mut().zip(&b[2..]) {
                        *o = d * (q as i8) as f32;
                    }
                }
            }
        }
    }
}

/// Bytes of `n` values stored as Q8_0 blocks (`n` a multiple of 32), e.g. one cache position
/// of `n_kv_head * head_dim` values.
pub fn q8_0_bytes(n: usize) -> usize {
    KvFormat::Q8_0.bytes(n)
}

/// Quantizes `src` (a multiple of 32 values, e.g. the K or V rows of some positions) into
/// Q8_0 blocks at `dst` ([`q8_0_bytes`]`(src.len())` bytes), bit-identical to `quant`'s
/// reference quantizer (ggml's `quantize_row_q8_0_ref`): `d = amax / 127` stored as f16,
/// `q = round(x / d)` half away from zero. Like the other slice kernels it panics if the
/// lengths do not match (the cache's geometry fixes them).
pub fn quantize_kv_q8_0(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(Q8_BLOCK) && dst.len() == q8_0_bytes(src.len()),
        "quantize_kv_q8_0: {} values (a multiple of {Q8_BLOCK} needed) into {} bytes",
        src.len(),
        dst.len()
    );
    #[cfg(target_arch = "x86_64")]
    if Isa::current() != Isa::Scalar && crate::isa::runnable(Isa::Avx2) {
        // SAFETY: `runnable` confirmed AVX2, FMA and F16C; the lengths were checked above.
        unsafe { quantize_q8_0_avx2(src, dst) };
        return;
    }
    quantize_q8_0_scalar(src, dst);
}

/// The reference: `quant`'s block quantizer.
pub(crate) fn quantize_q8_0_scalar(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src
        .chunks_exact(Q8_BLOCK)
        .zip(dst.chunks_exact_mut(Q8_BYTES))
    {
        if let (Ok(s), Ok(d)) = (
            <&[f32; Q8_BLOCK]>::try_from(s),
            <&mut [u8; Q8_BYTES]>::try_from(d),
        ) {
            quant::quantize_block_q8_0(s, d);
        }
    }
}

/// The same arithmetic 8 lanes at a time: the same f32 `amax`, `d` and `1 / d`, the same
/// product `x · (1/d)`, rounded half away from zero exactly (truncate, then step away from
/// zero when the exact remainder is at least one half), saturated as Rust's `as i8` does
/// (NaN to 0), and `d` rounded to f16 to nearest even.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `src.len()` a multiple of 32 and `dst.len()`
/// its [`q8_0_bytes`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8_0_avx2(src: &[f32], dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (x, o) in src
        .chunks_exact(Q8_BLOCK)
        .zip(dst.chunks_exact_mut(Q8_BYTES))
    {
        let p = x.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        // max(|x|, m) keeps m when |x| is NaN, as f32::max does.
        let mut m = _mm256_setzero_ps();
        for &vi in &v {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, vi), m);
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
        let d = _mm_cvtss_f32(m) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let dh = _mm_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm_set_ss(d));
        let dh = (_mm_cvtsi128_si32(dh) as u16).to_le_bytes();
        o[0] = dh[0];
        o[1] = dh[1];
        let idv = _mm256_set1_ps(id);
        let mut q = [_mm256_setzero_si256(); 4];
        for (qi, &vi) in q.iter_mut().zip(&v) {
            let y = _mm256_mul_ps(vi, idv);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            let f = _mm256_sub_ps(y, t);
            let up = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, f), half);
            let step = _mm256_or_ps(_mm256_and_ps(y, sign), one);
            let r = _mm256_add_ps(t, _mm256_and_ps(up, step));
            let r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
            let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(y, y));
            *qi = _mm256_cvtps_epi32(r);
        }
        // packs interleave per 128-bit lane; the permutation puts the dwords back in order.
        let a = _mm256_packs_epi32(q[0], q[1]);
        let b = _mm256_packs_epi32(q[2], q[3]);
        let c = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), order);
        _mm256_storeu_si256(o.as_mut_ptr().add(2).cast(), c);
    }
}

/// Shape of one attention call.
#[derive(Clone, Copy)]
struct Geom {
    head_dim: usize,
    fmt: KvFormat,
    /// Bytes per cache position (all KV heads).
    row_bytes: usize,
    /// Bytes of one head's row.
    head_bytes: usize,
    scale: f32,
    /// The queries are rounded to Q8_0 (so the int8 score path may run).
    int8_q: bool,
}

/// Which SIMD kernel and key split to use; tests force each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Plan {
    /// Chosen from the shape and the pool size.
    Auto,
    /// The grouped-row kernel with the key range of each work item cut in `split` pieces.
    Rows { split: usize },
    /// The tiled kernel, likewise.
    Tiled { split: usize },
}

/// Most query rows in one tiled work item (one per lane of the widest vector).
const MAX_LANES: usize = 16;
/// Rows of the grouped-row kernel that share one pass over K and V.
const ROWS: usize = 4;
/// Most rows per KV head in one grouped-row work item.
const ROWS_ITEM: usize = 8;
/// Keys per block of the grouped-row kernel.
const RBLOCK: usize = 32;
/// Floor of the running maximum: finite, so a row with no valid key yet gets weights
/// `e^(-inf - floor) = 0` and corrections `e^0 = 1` instead of NaN.
const M_FLOOR: f32 = -1e30;
/// Rows per KV head from which the tiled kernel is used.
const TILED_MIN_ROWS: usize = 8;
/// Fewest keys per split-K piece.
const MIN_SPLIT_KEYS: usize = 64;

/// Element access of one cache format inside the SIMD kernels.
#[cfg(target_arch = "x86_64")]
trait Fmt: Copy + 'static {
    /// `W` values of the head row at `row`, from value `c` (`c + W <= head_dim`, `c` a
    /// multiple of `W`).
    unsafe fn load<S: Simd>(row: *const u8, c: usize) -> S::F;
    /// The `n < W` values from `c` (other lanes 0).
    unsafe fn load_part<S: Simd>(row: *const u8, c: usize, n: usize) -> S::F;
    /// Values sharing one scale (`usize::MAX` for an unscaled format).
    const GROUP: usize;
    /// The scale of the group holding value `c` (1 for an unscaled format).
    unsafe fn scale(row: *const u8, c: usize) -> f32;
    /// [`Fmt::load`] with the group's scale already at hand (broadcast in `d`), so kernels
    /// convert each scale once per group instead of once per vector.
    unsafe fn load_scaled<S: Simd>(row: *const u8, c: usize, d: S::F) -> S::F;
    /// [`Fmt::load`] without the scale (the stored integers, for a scaled format).
    unsafe fn load_raw<S: Simd>(row: *const u8, c: usize) -> S::F;
    /// The raw f16 bits of the scale of the group holding value `c` (scaled formats only).
    unsafe fn scale_bits(row: *const u8, c: usize) -> u16;
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct F16;

#[cfg(target_arch = "x86_64")]
impl Fmt for F16 {
    #[inline(always)]
    unsafe fn load<S: Simd>(row: *const u8, c: usize) -> S::F {
        S::load_f16(row.cast::<u16>().add(c))
    }
    #[inline(always)]
    unsafe fn load_part<S: Simd>(row: *const u8, c: usize, n: usize) -> S::F {
        crate::ops::load_part_f16::<S>(row.cast::<u16>().add(c), n)
    }
    const GROUP: usize = usize::MAX;
    #[inline(always)]
    unsafe fn scale(_row: *const u8, _c: usize) -> f32 {
        1.0
    }
    #[inline(always)]
    unsafe fn load_scaled<S: Simd>(row: *const u8, c: usize, _d: S::F) -> S::F {
        Self::load::<S>(row, c)
    }
    #[inline(always)]
    unsafe fn load_raw<S: Simd>(row: *const u8, c: usize) -> S::F {
        Self::load::<S>(row, c)
    }
    #[inline(always)]
    unsafe fn scale_bits(_row: *const u8, _c: usize) -> u16 {
        // f16 1.0: an unscaled format's scale.
        0x3c00
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Q8;

/// One f16 (raw bits) to f32 with F16C (inlined into the callers' `#[target_feature]` bodies,
/// which all enable it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn h2f(bits: u16) -> f32 {
    use std::arch::x86_64::*;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[cfg(target_arch = "x86_64")]
impl Fmt for Q8 {
    #[inline(always)]
    unsafe fn load<S: Simd>(row: *const u8, c: usize) -> S::F {
        // W divides 32, so the W values never straddle two blocks.
        let b = row.add(c / Q8_BLOCK * Q8_BYTES);
        let d = h2f(b.cast::<u16>().read_unaligned());
        S::mul(S::load_i8(b.add(2 + c % Q8_BLOCK).cast()), S::splat(d))
    }
    #[inline(always)]
    unsafe fn load_part<S: Simd>(row: *const u8, c: usize, n: usize) -> S::F {
        // Unused: Q8_0 head rows are whole blocks, a multiple of every W.
        let mut buf = [0.0f32; 16];
        for (i, x) in buf.iter_mut().enumerate().take(n) {
            let e = c + i;
            let b = row.add(e / Q8_BLOCK * Q8_BYTES);
            *x = h2f(b.cast::<u16>().read_unaligned())
                * *b.add(2 + e % Q8_BLOCK).cast::<i8>() as f32;
        }
        S::load(buf.as_ptr())
    }
    const GROUP: usize = Q8_BLOCK;
    #[inline(always)]
    unsafe fn scale(row: *const u8, c: usize) -> f32 {
        h2f(row
            .add(c / Q8_BLOCK * Q8_BYTES)
            .cast::<u16>()
            .read_unaligned())
    }
    #[inline(always)]
    unsafe fn load_scaled<S: Simd>(row: *const u8, c: usize, d: S::F) -> S::F {
        let b = row.add(c / Q8_BLOCK * Q8_BYTES);
        S::mul(S::load_i8(b.add(2 + c % Q8_BLOCK).cast()), d)
    }
    #[inline(always)]
    unsafe fn load_raw<S: Simd>(row: *const u8, c: usize) -> S::F {
        let b = row.add(c / Q8_BLOCK * Q8_BYTES);
        S::load_i8(b.add(2 + c % Q8_BLOCK).cast())
    }
    #[inline(always)]
    unsafe fn scale_bits(row: *const u8, c: usize) -> u16 {
        row.add(c / Q8_BLOCK * Q8_BYTES)
            .cast::<u16>()
            .read_unaligned()
    }
}

/// One tiled work item: up to [`MAX_LANES`] query rows sharing a KV head, over the keys
/// `lo[r]..hi[r]` of each row (already clipped to this item's share of the key range).
#[cfg(target_arch = "x86_64")]
struct Task {
    hd: usize,
    row_bytes: usize,
    scale: f32,
    rows: usize,
    q: [*const f32; MAX_LANES],
    lo: [usize; MAX_LANES],
    hi: [usize; MAX_LANES],
    /// K and V of this KV head at position 0.
    k: *const u8,
    v: *const u8,
    /// Per row: the output row (`hd` floats, normalised) or, with `partial`, the slot
    /// `[max, sum, acc[hd]]` of this piece.
    dst: [*mut f32; MAX_LANES],
    partial: bool,
    /// Thread-local scratch, at least [`tile_scratch_len`] floats.
    scratch: *mut f32,
}

#[cfg(target_arch = "x86_64")]
fn tile_scratch_len(hd: usize) -> usize {
    3 * MAX_LANES * (hd + 16)
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Writes a row's result to `dst`: `src[d * stride]` for `d < hd`, divided by `l` (final) or
/// with `m` and `l` in front (partial).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn emit(
    dst: *mut f32,
    partial: bool,
    hd: usize,
    m: f32,
    l: f32,
    src: *const f32,
    stride: usize,
) {
    if partial {
        *dst = m;
        *dst.add(1) = l;
        for d in 0..hd {
            *dst.add(2 + d) = *src.add(d * stride);
        }
    } else {
        let inv = 1.0 / l;
        if stride == 1 {
            // Contiguous: a loop the compiler vectorises (the strided one stays scalar).
            for d in 0..hd {
                *dst.add(d) = *src.add(d) * inv;
            }
        } else {
            for d in 0..hd {
                *dst.add(d) = *src.add(d * stride) * inv;
            }
        }
    }
}

/// Converts the `n` values of the head row at `src` to f32 at `dst`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn convert_row<S: Simd, F: Fmt>(src: *const u8, dst: *mut f32, n: usize) {
    let mut c = 0;
    while c + S::W <= n {
        S::store(dst.add(c), F::load::<S>(src, c));
        c += S::W;
    }
    if c < n {
        store_part::<S>(dst.add(c), n - c, F::load_part::<S>(src, c, n - c));
    }
}

/// The tiled kernel (module docs): rows are lanes, `S::W` keys per tile.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_g<S: Simd, F: Fmt>(t: *const Task) {
    let t = &*t;
    let (hd, w, rows) = (t.hd, S::W, t.rows);
    let ks = hd + 16; // padded row stride of the converted K/V tile
    let qt = t.scratch;
    let ot = qt.add(hd * w);
    let kvf = ot.add(hd * w);
    for d in 0..hd {
        for r in 0..w {
            *qt.add(d * w + r) = if r < rows {
                *t.q[r].add(d) * t.scale
            } else {
                0.0
            };
        }
    }
    std::ptr::write_bytes(ot, 0, hd * w);
    let (mut jlo, mut jhi) = (usize::MAX, 0);
    for r in 0..rows {
        if t.lo[r] < t.hi[r] {
            jlo = jlo.min(t.lo[r]);
            jhi = jhi.max(t.hi[r]);
        }
    }
    let mut m = S::splat(M_FLOOR);
    let mut l = S::zero();
    let mut j0 = jlo;
    while j0 < jhi {
        let nb = w.min(jhi - j0);
        let full = nb == w && (0..rows).all(|r| t.lo[r] <= j0 && j0 + w <= t.hi[r]);
        if !full && !(0..rows).any(|r| t.lo[r].max(j0) < t.hi[r].min(j0 + nb)) {
            j0 += nb;
            continue;
        }
        for i in 0..w {
            if i < nb {
                convert_row::<S, F>(t.k.add((j0 + i) * t.row_bytes), kvf.add(i * ks), hd);
            } else {
                std::ptr::write_bytes(kvf.add(i * ks), 0, hd);
            }
        }
        // Score tile: s[i] lane r = q_r · k_(j0+i).
        let mut s = [S::zero(); MAX_LANES];
        for d in 0..hd {
            let qv = S::load(qt.add(d * w));
            for (i, si) in s.iter_mut().enumerate().take(w) {
                *si = S::fmadd(qv, S::splat(*kvf.add(i * ks + d)), *si);
            }
        }
        if !full {
            let mut bias = [0.0f32; MAX_LANES];
            for (i, si) in s.iter_mut().enumerate().take(w) {
                let j = j0 + i;
                for (r, b) in bias.iter_mut().enumerate().take(rows) {
                    let ok = i < nb && t.lo[r] <= j && j < t.hi[r];
                    *b = if ok { 0.0 } else { f32::NEG_INFINITY };
                }
                *si = S::add(*si, S::load(bias.as_ptr()));
            }
        }
        // Online softmax, lane-parallel over rows.
        let mut mt = s[0];
        for si in s.iter().take(w).skip(1) {
            mt = S::max(mt, *si);
        }
        let mnew = S::max(m, mt);
        let corr = S::exp(S::sub(m, mnew));
        m = mnew;
        let mut lsum = S::zero();
        for si in s.iter_mut().take(w) {
            *si = S::exp(S::sub(*si, mnew));
            lsum = S::add(lsum, *si);
        }
        l = S::fmadd(l, corr, lsum);
        for i in 0..w {
            if i < nb {
                convert_row::<S, F>(t.v.add((j0 + i) * t.row_bytes), kvf.add(i * ks), hd);
            }
        }
        // Ot[d] = Ot[d]·corr + Σ_i p_i · v_i[d], four d at a time.
        let mut d = 0;
        while d + 4 <= hd {
            let o = ot.add(d * w);
            let mut a0 = S::mul(S::load(o), corr);
            let mut a1 = S::mul(S::load(o.add(w)), corr);
            let mut a2 = S::mul(S::load(o.add(2 * w)), corr);
            let mut a3 = S::mul(S::load(o.add(3 * w)), corr);
            for (i, &p) in s.iter().enumerate().take(w) {
                let vp = kvf.add(i * ks + d);
                a0 = S::fmadd(p, S::splat(*vp), a0);
                a1 = S::fmadd(p, S::splat(*vp.add(1)), a1);
                a2 = S::fmadd(p, S::splat(*vp.add(2)), a2);
                a3 = S::fmadd(p, S::splat(*vp.add(3)), a3);
            }
            S::store(o, a0);
            S::store(o.add(w), a1);
            S::store(o.add(2 * w), a2);
            S::store(o.add(3 * w), a3);
            d += 4;
        }
        while d < hd {
            let o = ot.add(d * w);
            let mut a0 = S::mul(S::load(o), corr);
            for (i, &p) in s.iter().enumerate().take(w) {
                a0 = S::fmadd(p, S::splat(*kvf.add(i * ks + d)), a0);
            }
            S::store(o, a0);
            d += 1;
        }
        j0 += nb;
    }
    let (mut mb, mut lb) = ([0.0f32; MAX_LANES], [0.0f32; MAX_LANES]);
    S::store(mb.as_mut_ptr(), m);
    S::store(lb.as_mut_ptr(), l);
    for r in 0..rows {
        emit(t.dst[r], t.partial, hd, mb[r], lb[r], ot.add(r), w);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_f16_g<S: Simd>(t: *const Task) {
    tile_g::<S, F16>(t)
}
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_q8_g<S: Simd>(t: *const Task) {
    tile_g::<S, Q8>(t)
}
#[cfg(target_arch = "x86_64")]
simd_fns!(k_tile_f16, tile_f16_g, (t: *const Task));
#[cfg(target_arch = "x86_64")]
simd_fns!(k_tile_q8, tile_q8_g, (t: *const Task));

/// One grouped-row work item: rows `r_begin..r_begin + rows` (token-major: row `i` is head
/// `i % group` of the KV head's group, token `i / group`) of *every* KV head, over the keys
/// `ka..kb`.
#[cfg(target_arch = "x86_64")]
struct RowsTask {
    hd: usize,
    n_kv: usize,
    group: usize,
    n_head: usize,
    row_bytes: usize,
    head_bytes: usize,
    scale: f32,
    pos0: usize,
    /// Sliding window (`usize::MAX`: none).
    window: usize,
    r_begin: usize,
    rows: usize,
    ka: usize,
    kb: usize,
    /// `[n_tokens][n_head][hd]`.
    q: *const f32,
    /// K and V at position 0, head 0.
    k: *const u8,
    v: *const u8,
    /// The final output `[n_tokens][n_head][hd]`, written when `part` is null.
    out: *mut f32,
    /// This item's partial slots `[kh][r][max, sum, acc[hd]]`, or null.
    part: *mut f32,
    /// Thread-local scratch, at least [`rows_scratch_len`] floats: the running state
    /// `[kh][r][max, sum, acc[hd]]`.
    scratch: *mut f32,
    /// For the int8 score path: every query row's [`prepare_vnni`] data, `[row][hd / 64]` in
    /// the rows of `q`; null otherwise.
    prep: *const VnniPrep,
}

#[cfg(target_arch = "x86_64")]
fn rows_scratch_len(hd: usize, n_kv: usize) -> usize {
    n_kv * ROWS_ITEM * (hd + 2)
}

/// The int8 score path's view of 64 values of one query row (two Q8_0 blocks), made by
/// [`prepare_vnni`]; the last two fields in the lane order of [`scores_vnni`]'s reduction.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct VnniPrep {
    /// The Q8_0 integers of the two blocks.
    q: [i8; 64],
    /// `128 · Σ q` of each block: the offset that makes the keys unsigned adds that much to
    /// a block's integer dot product.
    corr: [i32; 16],
    /// `scale · d` of each block.
    dq: [f32; 16],
}

#[cfg(target_arch = "x86_64")]
impl RowsTask {
    /// Key range of row `r` of the item (any head), clipped to the item's keys.
    #[inline(always)]
    fn range(&self, r: usize) -> (usize, usize) {
        let hi = self.pos0 + (self.r_begin + r) / self.group + 1;
        let lo = hi.saturating_sub(self.window);
        (lo.max(self.ka), hi.min(self.kb))
    }
    /// Index of row `r` of KV head `kh` in `q` / `out`, in rows of `hd`.
    #[inline(always)]
    fn qrow(&self, kh: usize, r: usize) -> usize {
        let i = self.r_begin + r;
        (i / self.group) * self.n_head + kh * self.group + i % self.group
    }
}

/// The score reduction of the grouped-row kernel: a key's dot product leaves `W` partial sums
/// in one vector, and `W` keys' vectors are folded pairwise into one vector holding key `i`'s
/// full sum in lane `i`. That costs about 3 instructions per key (against 3 or more per key
/// for a separate horizontal sum) and, better, the block's scores come out as whole vectors,
/// so the scaling, masking, maximum and `e^(s - max)` that follow are vector operations.
#[cfg(target_arch = "x86_64")]
trait Reduce: Simd {
    /// Level 1, two keys `a` and `b`: per 128-bit lane `[a0+a2, b0+b2, a1+a3, b1+b3]`.
    unsafe fn comb1(a: Self::F, b: Self::F) -> Self::F;
    /// Level 2, two level-1 vectors (keys 0, 1 and keys 2, 3): per 128-bit lane the four
    /// keys' sums of that lane's elements.
    unsafe fn comb2(a: Self::F, b: Self::F) -> Self::F;
    /// The cross-lane levels: the `W / 4` level-2 vectors in `l` (keys `4i..4i + 4` in
    /// `l[i]`, the rest ignored) into one vector with key `k`'s sum in lane `k`.
    unsafe fn finish(l: [Self::F; 4]) -> Self::F;
}

#[cfg(target_arch = "x86_64")]
impl Reduce for crate::simd::Avx512 {
    #[inline(always)]
    unsafe fn comb1(a: Self::F, b: Self::F) -> Self::F {
        use std::arch::x86_64::*;
        _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
    }
    #[inline(always)]
    unsafe fn comb2(a: Self::F, b: Self::F) -> Self::F {
        use std::arch::x86_64::*;
        let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
        )
    }
    #[inline(always)]
    unsafe fn finish(l: [Self::F; 4]) -> Self::F {
        use std::arch::x86_64::*;
        // 128-bit lanes: keys 0-3 in x, 4-7 in y give [x0 + x2, x1 + x3, y0 + y2, y1 + y3],
        // then two such vectors (keys 0-7, 8-15) give each key's (l0 + l2) + (l1 + l3), in
        // order: the association of a 512-to-256-to-128-bit halving, so the scores are
        // bit-identical to reducing each key on its own that way.
        let halves = |x, y| {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(x, y),
                _mm512_shuffle_f32x4::<0xEE>(x, y),
            )
        };
        let pairs = |x, y| {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(x, y),
                _mm512_shuffle_f32x4::<0xDD>(x, y),
            )
        };
        pairs(halves(l[0], l[1]), halves(l[2], l[3]))
    }
}

#[cfg(target_arch = "x86_64")]
impl Reduce for crate::simd::Avx2 {
    #[inline(always)]
    unsafe fn comb1(a: Self::F, b: Self::F) -> Self::F {
        use std::arch::x86_64::*;
        _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b))
    }
    #[inline(always)]
    unsafe fn comb2(a: Self::F, b: Self::F) -> Self::F {
        use std::arch::x86_64::*;
        let (a, b) = (_mm256_castps_pd(a), _mm256_castps_pd(b));
        _mm256_add_ps(
            _mm256_castpd_ps(_mm256_unpacklo_pd(a, b)),
            _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)),
        )
    }
    #[inline(always)]
    unsafe fn finish(l: [Self::F; 4]) -> Self::F {
        use std::arch::x86_64::*;
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(l[0], l[1]),
            _mm256_permute2f128_ps::<0x31>(l[0], l[1]),
        )
    }
}

/// Adds the dot products of the head row of one key at `kp` with each row's query `q[r]` to
/// `acc[r]`, lane-wise (`hd` values, the partial sums left in the lanes).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot_key<S: Simd, F: Fmt, const N: usize>(
    kp: *const u8,
    q: &[*const f32; N],
    hd: usize,
    acc: &mut [S::F; N],
) {
    let w = S::W;
    let mut c = 0;
    let mut d = S::zero();
    while c + w <= hd {
        if c % F::GROUP == 0 {
            d = S::splat(F::scale(kp, c));
        }
        let kv = F::load_scaled::<S>(kp, c, d);
        for r in 0..N {
            acc[r] = S::fmadd(kv, S::load(q[r].add(c)), acc[r]);
        }
        c += w;
    }
    if c < hd {
        let kv = F::load_part::<S>(kp, c, hd - c);
        for r in 0..N {
            acc[r] = S::fmadd(kv, load_part::<S>(q[r].add(c), hd - c, 0.0), acc[r]);
        }
    }
}

/// Rows `r0..r0 + N` of KV head `kh` over keys `b0..b0 + nb` (`nb <= RBLOCK`), sharing every
/// K and V load, updating their running state in the scratch. `HD` is the head size when it
/// is one of the specialised sizes (the loops over it then unroll), 0 otherwise.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // parallel per-row arrays, indexed together
unsafe fn rows_block<S: Reduce, F: Fmt, const N: usize, const HD: usize, const VNNI: bool>(
    t: &RowsTask,
    kh: usize,
    r0: usize,
    b0: usize,
    nb: usize,
    pf: &mut Prefetch,
) {
    let hd = if HD == 0 { t.hd } else { HD };
    let w = S::W;
    let slot = hd + 2;
    let st: [*mut f32; N] = std::array::from_fn(|r| t.scratch.add((kh * t.rows + r0 + r) * slot));
    let q: [*const f32; N] = std::array::from_fn(|r| t.q.add(t.qrow(kh, r0 + r) * hd));
    let lohi: [(usize, usize); N] = std::array::from_fn(|r| t.range(r0 + r));
    let kbase = t.k.add(kh * t.head_bytes);
    let vbase = t.v.add(kh * t.head_bytes);
    // Scores, `W` keys per vector (keys past `nb` score 0 and are masked below).
    let ng = nb.div_ceil(w);
    let padded = ng * w;
    let mut sc = [[0.0f32; RBLOCK]; N];
    let scale = S::splat(t.scale);
    if VNNI {
        scores_vnni::<N, HD>(t, kh, r0, b0, nb, pf, &mut sc);
    }
    for g in 0..if VNNI { 0 } else { ng } {
        let mut l2 = [[S::zero(); 4]; N];
        for quad in 0..w / 4 {
            pf.step();
            let mut l1 = [[S::zero(); 2]; N];
            for pair in 0..2 {
                let i = g * w + quad * 4 + pair * 2;
                let mut a = [S::zero(); N];
                let mut b = [S::zero(); N];
                if i < nb {
                    dot_key::<S, F, N>(kbase.add((b0 + i) * t.row_bytes), &q, hd, &mut a);
                }
                if i + 1 < nb {
                    dot_key::<S, F, N>(kbase.add((b0 + i + 1) * t.row_bytes), &q, hd, &mut b);
                }
                for r in 0..N {
                    l1[r][pair] = S::comb1(a[r], b[r]);
                }
            }
            for r in 0..N {
                l2[r][quad] = S::comb2(l1[r][0], l1[r][1]);
            }
        }
        for r in 0..N {
            let s = S::mul(S::finish(l2[r]), scale);
            S::store(sc[r].as_mut_ptr().add(g * w), s);
        }
    }
    // Keys outside a row's range (only in the first and last blocks of a range).
    for r in 0..N {
        let (lo, hi) = lohi[r];
        if lo > b0 || b0 + padded > hi {
            for (i, s) in sc[r].iter_mut().enumerate().take(padded) {
                let j = b0 + i;
                if i >= nb || j < lo || j >= hi {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
    // Per row: the new maximum, the block's weights (in place) and their sum.
    let mut diff = [0.0f32; MAX_LANES];
    let mut bsum = [0.0f32; N];
    for r in 0..N {
        let p = sc[r].as_mut_ptr();
        let mut mx = S::load(p);
        for g in 1..ng {
            mx = S::max(mx, S::load(p.add(g * w)));
        }
        let m = *st[r];
        let mnew = m.max(S::reduce_max(mx));
        diff[r] = m - mnew;
        *st[r] = mnew;
        let mv = S::splat(mnew);
        let mut sum = S::zero();
        for g in 0..ng {
            let e = S::exp(S::sub(S::load(p.add(g * w)), mv));
            S::store(p.add(g * w), e);
            sum = S::add(sum, e);
        }
        bsum[r] = S::reduce_add(sum);
    }
    // One exp gives every row's correction e^(m_old - m_new).
    let mut corr = [1.0f32; MAX_LANES];
    S::store(corr.as_mut_ptr(), S::exp(S::load(diff.as_ptr())));
    for r in 0..N {
        *st[r].add(1) = *st[r].add(1) * corr[r] + bsum[r];
    }
    // O[r] = O[r]·corr[r] + Σ_i p_r,i · v_i, up to 4 vectors of values at a time: each
    // accumulator is a chain of `nb` dependent FMAs, so one vector per row would leave the
    // FMA units waiting on their latency (measured: the largest cost of the kernel).
    let mut c = 0;
    while c + w <= hd {
        let full = (hd - c) / w;
        c += w * if full >= 4 {
            rows_values::<S, F, N, 4>(t, vbase, b0, nb, &sc, &corr, &st, c)
        } else if full >= 2 {
            rows_values::<S, F, N, 2>(t, vbase, b0, nb, &sc, &corr, &st, c)
        } else {
            rows_values::<S, F, N, 1>(t, vbase, b0, nb, &sc, &corr, &st, c)
        };
    }
    if c < hd {
        // A partial vector: only unscaled formats have one (Q8_0 rows are whole blocks).
        let n = hd - c;
        let mut acc = [S::zero(); N];
        for r in 0..N {
            acc[r] = S::mul(load_part::<S>(st[r].add(2 + c), n, 0.0), S::splat(corr[r]));
        }
        for i in 0..nb {
            let vv = F::load_part::<S>(vbase.add((b0 + i) * t.row_bytes), c, n);
            for r in 0..N {
                acc[r] = S::fmadd(S::splat(sc[r][i]), vv, acc[r]);
            }
        }
        for r in 0..N {
            store_part::<S>(st[r].add(2 + c), n, acc[r]);
        }
    }
}

/// The value update of [`rows_block`] for the `CG` whole vectors of values from `c`: `CG · N`
/// independent accumulators. A scaled format's block scales are folded into the weights
/// (`p · d`, a vector product per row and block), so each value vector is converted from
/// its integers without a product of its own. Returns `CG`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn rows_values<S: Simd, F: Fmt, const N: usize, const CG: usize>(
    t: &RowsTask,
    vbase: *const u8,
    b0: usize,
    nb: usize,
    sc: &[[f32; RBLOCK]; N],
    corr: &[f32; MAX_LANES],
    st: &[*mut f32; N],
    c: usize,
) -> usize {
    let w = S::W;
    let ng = nb.div_ceil(w);
    let scaled = F::GROUP != usize::MAX;
    // Scaled formats: groups start on a block (rows are whole blocks; 4 vectors of 16 are two
    // blocks, of 8 one; 2 vectors of 16 one block) and span at most two.
    let mut pd = [[[0.0f32; RBLOCK]; N]; 2];
    if scaled {
        for (blk, pdb) in pd.iter_mut().enumerate().take((CG * w).div_ceil(F::GROUP)) {
            let mut bits = [0u16; RBLOCK];
            for (i, b) in bits.iter_mut().enumerate().take(nb) {
                *b = F::scale_bits(vbase.add((b0 + i) * t.row_bytes), c + blk * F::GROUP);
            }
            for g in 0..ng {
                let d = S::load_f16(bits.as_ptr().add(g * w));
                for r in 0..N {
                    let x = S::mul(S::load(sc[r].as_ptr().add(g * w)), d);
                    S::store(pdb[r].as_mut_ptr().add(g * w), x);
                }
            }
        }
    }
    let mut acc = [[S::zero(); N]; CG];
    for j in 0..CG {
        for r in 0..N {
            acc[j][r] = S::mul(S::load(st[r].add(2 + c + j * w)), S::splat(corr[r]));
        }
    }
    for i in 0..nb {
        let vp = vbase.add((b0 + i) * t.row_bytes);
        for j in 0..CG {
            let vv = F::load_raw::<S>(vp, c + j * w);
            let blk = if scaled { j * w / F::GROUP } else { 0 };
            for r in 0..N {
                let p = if scaled { pd[blk][r][i] } else { sc[r][i] };
                acc[j][r] = S::fmadd(S::splat(p), vv, acc[j][r]);
            }
        }
    }
    for j in 0..CG {
        for r in 0..N {
            S::store(st[r].add(2 + c + j * w), acc[j][r]);
        }
    }
    CG
}

/// Prefetches the same span of K and V a few lines at a time, spread over the work of the
/// current block. Issuing a whole block's prefetches at once stalls the core as soon as the
/// line-fill buffers are full (measured: half the kernel's samples sat on the prefetch
/// loop), while spread out they overlap the arithmetic; either beats no prefetch, which
/// leaves each block's first touches to wait for memory.
#[cfg(target_arch = "x86_64")]
struct Prefetch {
    k: *const u8,
    v: *const u8,
    off: usize,
    end: usize,
    /// Bytes per step (whole lines).
    per: usize,
}

#[cfg(target_arch = "x86_64")]
impl Prefetch {
    #[inline(always)]
    unsafe fn step(&mut self) {
        use std::arch::x86_64::*;
        let stop = (self.off + self.per).min(self.end);
        while self.off < stop {
            _mm_prefetch::<_MM_HINT_T0>(self.k.wrapping_add(self.off).cast());
            _mm_prefetch::<_MM_HINT_T0>(self.v.wrapping_add(self.off).cast());
            self.off += 64;
        }
    }
}

/// The grouped-row kernel over one [`RowsTask`] (module docs).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_g<S: Reduce, F: Fmt, const VNNI: bool>(t: *const RowsTask) {
    let t = &*t;
    // The common head sizes get their own instantiation, with the loops over values unrolled.
    match t.hd {
        64 => rows_run::<S, F, 64, VNNI>(t),
        128 => rows_run::<S, F, 128, VNNI>(t),
        256 => rows_run::<S, F, 256, VNNI>(t),
        _ => rows_run::<S, F, 0, VNNI>(t),
    }
}

/// [`rows_g`] for head size `HD` (0: any, read from the task).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_run<S: Reduce, F: Fmt, const HD: usize, const VNNI: bool>(t: &RowsTask) {
    let hd = if HD == 0 { t.hd } else { HD };

    let slot = hd + 2;
    for s in 0..t.n_kv * t.rows {
        let p = t.scratch.add(s * slot);
        *p = M_FLOOR;
        *p.add(1) = 0.0;
        std::ptr::write_bytes(p.add(2), 0, hd);
    }
    // Row ranges only grow with the row index (later tokens see more keys).
    let jlo = t.range(0).0;
    let jhi = t.range(t.rows - 1).1;
    let mut b0 = jlo;
    while b0 < jhi {
        let nb = RBLOCK.min(jhi - b0);
        let next = b0 + nb;
        let nn = RBLOCK.min(jhi.saturating_sub(next));
        // The next block's K and V, spread over this block's 4-key steps (module docs).
        let steps = t.n_kv * t.rows.div_ceil(ROWS) * nb.div_ceil(S::W) * (S::W / 4);
        let span = nn * t.row_bytes;
        let mut pf = Prefetch {
            k: t.k.wrapping_add(next * t.row_bytes),
            v: t.v.wrapping_add(next * t.row_bytes),
            off: 0,
            // Rows need not start on a line: one more step reaches the span's last line.
            end: if span > 0 { span + 63 } else { 0 },
            per: span.div_ceil(steps).next_multiple_of(64),
        };
        for kh in 0..t.n_kv {
            let mut r0 = 0;
            while r0 < t.rows {
                match (t.rows - r0).min(ROWS) {
                    1 => rows_block::<S, F, 1, HD, VNNI>(t, kh, r0, b0, nb, &mut pf),
                    2 => rows_block::<S, F, 2, HD, VNNI>(t, kh, r0, b0, nb, &mut pf),
                    3 => rows_block::<S, F, 3, HD, VNNI>(t, kh, r0, b0, nb, &mut pf),
                    _ => rows_block::<S, F, 4, HD, VNNI>(t, kh, r0, b0, nb, &mut pf),
                }
                r0 += ROWS;
            }
        }
        b0 = next;
    }
    for kh in 0..t.n_kv {
        for r in 0..t.rows {
            let s = t.scratch.add((kh * t.rows + r) * slot);
            let partial = !t.part.is_null();
            let dst = if partial {
                t.part.add((kh * t.rows + r) * slot)
            } else {
                t.out.add(t.qrow(kh, r) * hd)
            };
            emit(dst, partial, hd, *s, *s.add(1), s.add(2), 1);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_f16_g<S: Reduce>(t: *const RowsTask) {
    rows_g::<S, F16, false>(t)
}
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_q8_g<S: Reduce>(t: *const RowsTask) {
    rows_g::<S, Q8, false>(t)
}
#[cfg(target_arch = "x86_64")]
simd_fns!(k_rows_f16, rows_f16_g, (t: *const RowsTask));
#[cfg(target_arch = "x86_64")]
simd_fns!(k_rows_q8, rows_q8_g, (t: *const RowsTask));

/// The grouped-row kernel over a Q8_0 cache with the int8 score path ([`scores_vnni`]).
#[cfg(target_arch = "x86_64")]
mod k_rows_q8_vnni {
    use super::*;
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `t` as for
    /// [`k_rows_q8`], with a head size that is a multiple of 64.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn avx512(t: *const RowsTask) {
        rows_g::<crate::simd::Avx512, Q8, true>(t)
    }
}

/// Whether the int8 score path can run here (AVX-512 VNNI on top of the AVX-512 level).
#[cfg(target_arch = "x86_64")]
fn vnni_runnable() -> bool {
    crate::isa::runnable(Isa::Avx512) && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// The int8 score path's view of the queries `q` (`[rows][hd]`, `hd` a multiple of 64), once
/// per call: their Q8_0 blocks (ggml's quantizer, as ggml quantizes the query of a Q8_0 K),
/// 64 values per [`VnniPrep`].
#[cfg(target_arch = "x86_64")]
fn prepare_vnni(q: &[f32], scale: f32) -> Vec<VnniPrep> {
    let mut bytes = vec![0u8; q8_0_bytes(q.len())];
    quantize_kv_q8_0(q, &mut bytes);
    bytes
        .chunks_exact(2 * Q8_BYTES)
        .map(|blocks| {
            let mut p = VnniPrep {
                q: [0; 64],
                corr: [0; 16],
                dq: [0.0; 16],
            };
            for (b, blk) in blocks.chunks_exact(Q8_BYTES).enumerate() {
                let mut sum = 0i32;
                for (x, &y) in p.q[Q8_BLOCK * b..Q8_BLOCK * (b + 1)]
                    .iter_mut()
                    .zip(&blk[2..])
                {
                    *x = y as i8;
                    sum += *x as i32;
                }
                let d = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
                for lane in [0, 8] {
                    for i in 0..4 {
                        p.corr[lane + 4 * b + i] = 128 * sum;
                        p.dq[lane + 4 * b + i] = scale * d;
                    }
                }
            }
            p
        })
        .collect()
}

/// The int8 score path of the grouped-row kernel over a Q8_0 cache (AVX-512 VNNI, head size
/// a multiple of 64): `sc[r][i] = scale · Σ_b dk_b · dq_b · Σ k·q` over the integers of the
/// key's and the row's Q8_0 blocks, as ggml's Q8_0 dot product computes it. Converting the
/// keys to f32 (sign extension, conversion, a product by the block scale for every 16
/// values) was most of the Q8_0 kernel's work; here 64 key bytes take one `vpdpbusd` per
/// row. It multiplies unsigned by signed bytes, so the keys are offset by 128 (`k ^ 0x80`)
/// and the prepared `128 · Σ q` of each block subtracted. The 16 lanes of each key and row
/// (8 per block) are summed as integers across 8 keys, the same pairwise tree as
/// [`Reduce`]: it leaves `[keys 0-3 of block 2c, keys 0-3 of 2c+1, keys 4-7 .., ..]`, so the
/// block scales are applied there as one vector product per 8 keys, and the last level adds
/// the two blocks of each key.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // parallel per-row arrays, indexed together
unsafe fn scores_vnni<const N: usize, const HD: usize>(
    t: &RowsTask,
    kh: usize,
    r0: usize,
    b0: usize,
    nb: usize,
    pf: &mut Prefetch,
    sc: &mut [[f32; RBLOCK]; N],
) {
    use std::arch::x86_64::*;
    let hd = if HD == 0 { t.hd } else { HD };
    let nch = hd / 64;
    let kbase = t.k.add(kh * t.head_bytes);
    let pq: [*const VnniPrep; N] = std::array::from_fn(|r| t.prep.add(t.qrow(kh, r0 + r) * nch));
    let zero = _mm512_setzero_si512();
    // Key `i`, values `64c..64c + 64` (two blocks side by side, offset to unsigned); 0 past
    // `nb`.
    #[inline(always)]
    unsafe fn load(p: *const u8, ok: bool) -> __m512i {
        if ok {
            let lo = _mm256_loadu_si256(p.cast());
            let hi = _mm256_loadu_si256(p.add(Q8_BYTES).cast());
            let k = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            _mm512_xor_si512(k, _mm512_set1_epi8(-128))
        } else {
            _mm512_setzero_si512()
        }
    }
    #[inline(always)]
    unsafe fn c1(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    }
    #[inline(always)]
    unsafe fn c2(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    }
    #[inline(always)]
    unsafe fn c3(x: __m512i, y: __m512i) -> __m512i {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0x88>(x, y),
            _mm512_shuffle_i32x4::<0xDD>(x, y),
        )
    }
    let at = |i: usize, c: usize| kbase.wrapping_add((b0 + i) * t.row_bytes + 2 * c * Q8_BYTES + 2);
    for g in 0..nb.div_ceil(16) {
        let mut fs = [[_mm512_setzero_ps(); 2]; N];
        for c in 0..nch {
            // The keys' block scales in the tree's lane order, per 8 keys.
            let mut bits = [0u16; 32];
            for k in 0..16.min(nb - g * 16) {
                let p = kbase.add((b0 + g * 16 + k) * t.row_bytes + 2 * c * Q8_BYTES);
                let at = (k / 8) * 16 + (k % 8 / 4) * 8 + k % 4;
                bits[at] = p.cast::<u16>().read_unaligned();
                bits[at + 4] = p.add(Q8_BYTES).cast::<u16>().read_unaligned();
            }
            for h in 0..2 {
                let dk = _mm512_cvtph_ps(_mm256_loadu_si256(bits.as_ptr().add(16 * h).cast()));
                let mut l2 = [[zero; 2]; N];
                for quad in 0..2 {
                    if c == 0 {
                        pf.step();
                    }
                    let mut l1 = [[zero; 2]; N];
                    for pair in 0..2 {
                        let i = g * 16 + h * 8 + quad * 4 + pair * 2;
                        let (ka, kb) = (load(at(i, c), i < nb), load(at(i + 1, c), i + 1 < nb));
                        for r in 0..N {
                            let q = _mm512_load_si512((*pq[r].add(c)).q.as_ptr().cast());
                            l1[r][pair] = c1(
                                _mm512_dpbusd_epi32(zero, ka, q),
                                _mm512_dpbusd_epi32(zero, kb, q),
                            );
                        }
                    }
                    for r in 0..N {
                        l2[r][quad] = c2(l1[r][0], l1[r][1]);
                    }
                }
                for r in 0..N {
                    let p = &*pq[r].add(c);
                    let corr = _mm512_load_si512(p.corr.as_ptr().cast());
                    let z = _mm512_sub_epi32(c3(l2[r][0], l2[r][1]), corr);
                    let dd = _mm512_mul_ps(dk, _mm512_load_ps(p.dq.as_ptr()));
                    fs[r][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(z), dd, fs[r][h]);
                }
            }
        }
        for r in 0..N {
            let (x, y) = (fs[r][0], fs[r][1]);
            let s = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(x, y),
                _mm512_shuffle_f32x4::<0xDD>(x, y),
            );
            _mm512_storeu_ps(sc[r].as_mut_ptr().add(g * 16), s);
        }
    }
}

/// Scalar reference of the same online algorithm, key by key. `k` and `v` start at this
/// row's KV head at position 0.
fn attend_scalar(g: Geom, q: &[f32], k: &[u8], v: &[u8], j0: usize, j1: usize, out: &mut [f32]) {
    let hd = g.head_dim;
    let mut kr = vec![0.0f32; hd];
    let mut vr = vec![0.0f32; hd];
    out.fill(0.0);
    let mut m = f32::NEG_INFINITY;
    let mut l = 0.0f32;
    for j in j0..j1 {
        g.fmt
            .row_to_f32(&k[j * g.row_bytes..][..g.head_bytes], &mut kr);
        let s = g.scale * kr.iter().zip(q).map(|(a, b)| a * b).sum::<f32>();
        if s > m {
            let corr = (m - s).exp();
            l *= corr;
            out.iter_mut().for_each(|o| *o *= corr);
            m = s;
        }
        let p = (s - m).exp();
        l += p;
        g.fmt
            .row_to_f32(&v[j * g.row_bytes..][..g.head_bytes], &mut vr);
        for (o, &x) in out.iter_mut().zip(&vr) {
            *o += p * x;
        }
    }
    let inv = 1.0 / l;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Raw pointers shared with the pool's jobs; every job writes disjoint rows or slots.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Ptrs {
    q: *const f32,
    out: *mut f32,
    k: *const u8,
    v: *const u8,
    part: *mut f32,
    /// The grouped-row kernel's prepared queries (or null).
    prep: *const VnniPrep,
}
// SAFETY: the pointers are only dereferenced inside `attention_simd`'s pool job, while the
// borrows they came from are alive; reads are shared and writes go to disjoint rows (`out`)
// or disjoint per-item slots (`part`).
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for Ptrs {}
// SAFETY: as above.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for Ptrs {}

/// Combines the split-K pieces `part[piece]` (each `[max, sum, acc[hd]]`, `stride` floats
/// apart) of one row into `o`: `Σ e^(m_i - M)·acc_i / Σ e^(m_i - M)·l_i`.
fn combine(part: &[f32], first: usize, stride: usize, split: usize, o: &mut [f32]) {
    let hd = o.len();
    let slot = |s: usize| &part[first + s * stride..][..hd + 2];
    let mx = (0..split)
        .map(|s| slot(s)[0])
        .fold(f32::NEG_INFINITY, f32::max);
    o.fill(0.0);
    let mut l = 0.0f32;
    for s in 0..split {
        let sl = slot(s);
        let c = (sl[0] - mx).exp();
        l += c * sl[1];
        for (o, &a) in o.iter_mut().zip(&sl[2..]) {
            *o += c * a;
        }
    }
    let inv = 1.0 / l;
    o.iter_mut().for_each(|o| *o *= inv);
}

/// The SIMD path: work items in parallel on `pool`, then the split-K combination on the
/// calling thread.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn attention_simd(
    isa: Isa,
    plan: Plan,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    g: Geom,
    k: &[u8],
    v: &[u8],
    pos0: usize,
    window: Option<usize>,
    out: &mut [f32],
) {
    let group = n_head / n_kv_head;
    let rows_per_kv = n_tokens * group;
    let tiled = match plan {
        Plan::Rows { .. } => false,
        Plan::Tiled { .. } => true,
        Plan::Auto => rows_per_kv >= TILED_MIN_ROWS,
    };
    let forced_split = match plan {
        Plan::Rows { split } | Plan::Tiled { split } => split,
        Plan::Auto => 0,
    };
    if tiled {
        attention_tiled(
            isa,
            forced_split,
            pool,
            q,
            n_tokens,
            n_head,
            n_kv_head,
            g,
            k,
            v,
            pos0,
            window,
            out,
        );
    } else {
        attention_rows(
            isa,
            forced_split,
            pool,
            q,
            n_tokens,
            n_head,
            n_kv_head,
            g,
            k,
            v,
            pos0,
            window,
            out,
        );
    }
}

/// Number of key pieces for `base` work items whose longest key span is `span`.
#[cfg(target_arch = "x86_64")]
fn choose_split(forced: usize, base: usize, span: usize, pool: &ThreadPool) -> usize {
    if forced > 0 {
        return forced;
    }
    let want = 4 * pool.n_threads();
    if pool.n_threads() == 1 || base >= want {
        1
    } else {
        want.div_ceil(base).min(span / MIN_SPLIT_KEYS).max(1)
    }
}

/// The grouped-row kernel's work items: (block of up to [`ROWS_ITEM`] rows per KV head, key
/// piece), each over every KV head.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn attention_rows(
    isa: Isa,
    forced_split: usize,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv: usize,
    g: Geom,
    k: &[u8],
    v: &[u8],
    pos0: usize,
    window: Option<usize>,
    out: &mut [f32],
) {
    let hd = g.head_dim;
    let group = n_head / n_kv;
    let rows_per_kv = n_tokens * group;
    let win = window.unwrap_or(usize::MAX);
    let block = rows_per_kv.min(ROWS_ITEM);
    let n_blocks = rows_per_kv.div_ceil(block);
    // Key range of the row with index `i` (token-major) among its KV head's rows.
    let range = |i: usize| {
        let hi = pos0 + i / group + 1;
        (hi.saturating_sub(win), hi)
    };
    let span = (0..n_blocks)
        .map(|b| {
            let (lo, _) = range(b * block);
            let (_, hi) = range(((b + 1) * block).min(rows_per_kv) - 1);
            hi - lo
        })
        .max()
        .unwrap_or(0);
    let split = choose_split(forced_split, n_blocks, span, pool);
    let n_items = n_blocks * split;
    let slot = hd + 2;
    let vnni = g.int8_q && isa == Isa::Avx512 && hd.is_multiple_of(64) && vnni_runnable();
    let prep = if vnni {
        prepare_vnni(q, g.scale)
    } else {
        Vec::new()
    };
    let item_floats = n_kv * block * slot;
    let mut part = if split > 1 {
        vec![0.0f32; n_items * item_floats]
    } else {
        Vec::new()
    };
    let ptrs = Ptrs {
        q: q.as_ptr(),
        out: out.as_mut_ptr(),
        k: k.as_ptr(),
        v: v.as_ptr(),
        part: part.as_mut_ptr(),
        prep: if vnni {
            prep.as_ptr()
        } else {
            std::ptr::null()
        },
    };
    let job = |items: std::ops::Range<usize>| {
        let p = ptrs;
        let mut scratch = SCRATCH.with(Cell::take);
        scratch.resize(scratch.len().max(rows_scratch_len(hd, n_kv)), 0.0);
        for it in items {
            // Largest blocks (latest tokens, most keys) first.
            let b = n_blocks - 1 - it / split;
            let piece = it % split;
            let r_begin = b * block;
            let rows = block.min(rows_per_kv - r_begin);
            let (blo, _) = range(r_begin);
            let (_, bhi) = range(r_begin + rows - 1);
            // This piece's keys, cut at multiples of the key block.
            let per = (bhi - blo).div_ceil(split).next_multiple_of(RBLOCK);
            let ka = (blo + piece * per).min(bhi);
            let kb = (ka + per).min(bhi);
            if ka >= kb && split > 1 {
                // An empty piece: a slot that weighs nothing in the combination.
                for s in 0..n_kv * rows {
                    // SAFETY: inside this item's slots of `part`.
                    unsafe {
                        let d = p.part.add(it * item_floats + s * slot);
                        *d = M_FLOOR;
                        std::ptr::write_bytes(d.add(1), 0, hd + 1);
                    }
                }
                continue;
            }
            let task = RowsTask {
                hd,
                n_kv,
                group,
                n_head,
                row_bytes: g.row_bytes,
                head_bytes: g.head_bytes,
                scale: g.scale,
                pos0,
                window: win,
                r_begin,
                rows,
                ka,
                kb,
                q: p.q,
                k: p.k,
                v: p.v,
                out: p.out,
                part: if split > 1 {
                    // SAFETY: this item's slots lie inside `part` (`n_items * item_floats`).
                    unsafe { p.part.add(it * item_floats) }
                } else {
                    std::ptr::null_mut()
                },
                scratch: scratch.as_mut_ptr(),
                prep: p.prep,
            };
            // Bounds: every key index is < pos0 + n_tokens and the caches hold that many
            // positions; rows write only their own output row or slot.
            match g.fmt {
                KvFormat::Q8_0 if vnni => {
                    // SAFETY: `vnni` checked the CPU; the head size is a multiple of 64.
                    unsafe { k_rows_q8_vnni::avx512(&task) }
                }
                KvFormat::F16 => {
                    dispatch!(
                        isa,
                        k_rows_f16,
                        unreachable!("checked by the caller"),
                        (&task)
                    )
                }
                KvFormat::Q8_0 => {
                    dispatch!(
                        isa,
                        k_rows_q8,
                        unreachable!("checked by the caller"),
                        (&task)
                    )
                }
            }
        }
        SCRATCH.with(|c| c.set(scratch));
    };
    pool.for_each_chunk(n_items, 1, job);
    if split > 1 {
        for it0 in (0..n_items).step_by(split) {
            let b = n_blocks - 1 - it0 / split;
            let r_begin = b * block;
            let rows = block.min(rows_per_kv - r_begin);
            for kh in 0..n_kv {
                for r in 0..rows {
                    let i = r_begin + r;
                    let row = (i / group) * n_head + kh * group + i % group;
                    let first = it0 * item_floats + (kh * rows + r) * slot;
                    combine(
                        &part,
                        first,
                        item_floats,
                        split,
                        &mut out[row * hd..(row + 1) * hd],
                    );
                }
            }
        }
    }
}

/// The tiled kernel's work items: (KV head, block of rows, key piece).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn attention_tiled(
    isa: Isa,
    forced_split: usize,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    g: Geom,
    k: &[u8],
    v: &[u8],
    pos0: usize,
    window: Option<usize>,
    out: &mut [f32],
) {
    let hd = g.head_dim;
    let group = n_head / n_kv_head;
    let rows_per_kv = n_tokens * group;
    let block = if isa == Isa::Avx512 { 16 } else { 8 };
    // Key range of the row with index `i` (token-major) among its KV head's rows.
    let range = |i: usize| {
        let hi = pos0 + i / group + 1;
        (window.map_or(0, |w| hi.saturating_sub(w)), hi)
    };
    let n_blocks = rows_per_kv.div_ceil(block);
    let base = n_kv_head * n_blocks;
    // Longest key span of one block.
    let span = (0..n_blocks)
        .map(|b| {
            let (lo, _) = range(b * block);
            let (_, hi) = range(((b + 1) * block).min(rows_per_kv) - 1);
            hi - lo
        })
        .max()
        .unwrap_or(0);
    let split = choose_split(forced_split, base, span, pool);
    let n_items = base * split;
    let slot = hd + 2;
    let mut part = if split > 1 {
        vec![0.0f32; n_items * block * slot]
    } else {
        Vec::new()
    };
    let ptrs = Ptrs {
        q: q.as_ptr(),
        out: out.as_mut_ptr(),
        k: k.as_ptr(),
        v: v.as_ptr(),
        part: part.as_mut_ptr(),
        prep: std::ptr::null(),
    };
    let job = |items: std::ops::Range<usize>| {
        let p = ptrs;
        let mut scratch = SCRATCH.with(Cell::take);
        scratch.resize(scratch.len().max(tile_scratch_len(hd)), 0.0);
        for it in items {
            // Largest blocks (latest tokens, most keys) first.
            let b = n_blocks - 1 - it / (n_kv_head * split);
            let kh = (it / split) % n_kv_head;
            let piece = it % split;
            let r_begin = b * block;
            let rows = block.min(rows_per_kv - r_begin);
            let (blo, _) = range(r_begin);
            let (_, bhi) = range(r_begin + rows - 1);
            // This piece's keys, cut at multiples of 16.
            let per = (bhi - blo).div_ceil(split).next_multiple_of(16);
            let ka = (blo + piece * per).min(bhi);
            let kb = (ka + per).min(bhi);
            let mut task = Task {
                hd,
                row_bytes: g.row_bytes,
                scale: g.scale,
                rows,
                q: [std::ptr::null(); MAX_LANES],
                lo: [0; MAX_LANES],
                hi: [0; MAX_LANES],
                // SAFETY: kh * head_bytes < row_bytes, inside the cache slices.
                k: unsafe { p.k.add(kh * g.head_bytes) },
                v: unsafe { p.v.add(kh * g.head_bytes) },
                dst: [std::ptr::null_mut(); MAX_LANES],
                partial: split > 1,
                scratch: scratch.as_mut_ptr(),
            };
            for r in 0..rows {
                let i = r_begin + r;
                let (t, hl) = (i / group, i % group);
                let row = t * n_head + kh * group + hl;
                let (lo, hi) = range(i);
                task.lo[r] = lo.max(ka);
                task.hi[r] = hi.min(kb);
                // SAFETY (all three): `row < n_tokens * n_head`, so the row lies inside `q`
                // and `out`; the slot lies inside `part` (`n_items * block * slot` floats).
                task.q[r] = unsafe { p.q.add(row * hd) };
                task.dst[r] = if split > 1 {
                    unsafe { p.part.add((it * block + r) * slot) }
                } else {
                    unsafe { p.out.add(row * hd) }
                };
            }
            // Bounds: every key index is < pos0 + n_tokens and the slices hold that many
            // positions; rows write only their own output row or slot.
            match g.fmt {
                KvFormat::F16 => {
                    dispatch!(
                        isa,
                        k_tile_f16,
                        unreachable!("checked by the caller"),
                        (&task)
                    )
                }
                KvFormat::Q8_0 => {
                    dispatch!(
                        isa,
                        k_tile_q8,
                        unreachable!("checked by the caller"),
                        (&task)
                    )
                }
            }
        }
        SCRATCH.with(|c| c.set(scratch));
    };
    pool.for_each_chunk(n_items, 1, job);
    if split > 1 {
        for it0 in (0..n_items).step_by(split) {
            let b = n_blocks - 1 - it0 / (n_kv_head * split);
            let kh = (it0 / split) % n_kv_head;
            let r_begin = b * block;
            for r in 0..block.min(rows_per_kv - r_begin) {
                let i = r_begin + r;
                let row = (i / group) * n_head + kh * group + i % group;
                combine(
                    &part,
                    (it0 * block + r) * slot,
                    block * slot,
                    split,
                    &mut out[row * hd..(row + 1) * hd],
                );
            }
        }
    }
}

/// Checks the shapes and runs the SIMD path (or the scalar reference); `k` and `v` are the
/// raw cache bytes in format `fmt`.
#[allow(clippy::too_many_arguments)]
fn attention_bytes(
    isa: Isa,
    plan: Plan,
    fmt: KvFormat,
    int8_q: bool,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k: &[u8],
    v: &[u8],
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
    if fmt == KvFormat::Q8_0 && !head_dim.is_multiple_of(Q8_BLOCK) {
        return Err(KernelError::InvalidShape(format!(
            "attention: a Q8_0 KV cache needs head_dim a multiple of {Q8_BLOCK}, got {head_dim}"
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
    let head_bytes = fmt.bytes(head_dim);
    let row_bytes = n_kv_head * head_bytes;
    let kv_need = (pos0 + n_tokens) * row_bytes;
    let (kwhat, vwhat) = match fmt {
        KvFormat::F16 => (
            "attention: k_cache (at least)",
            "attention: v_cache (at least)",
        ),
        KvFormat::Q8_0 => (
            "attention: k_cache bytes (at least)",
            "attention: v_cache bytes (at least)",
        ),
    };
    let unit = fmt.bytes(1).max(1);
    for (what, len) in [(kwhat, k.len()), (vwhat, v.len())] {
        if len < kv_need {
            // f16 caches are counted in elements, Q8_0 caches in bytes.
            let per = if fmt == KvFormat::F16 { unit } else { 1 };
            return Err(KernelError::Length {
                what,
                expected: kv_need / per,
                actual: len / per,
            });
        }
    }
    if n_tokens == 0 {
        return Ok(());
    }
    let (k, v) = (&k[..kv_need], &v[..kv_need]);
    // Every path computes on the rounded queries; the int8 score path rounds them the same
    // way again (Q8_0 rounding of Q8_0 values is exact), so all agree up to f32 rounding.
    let rounded;
    let q = if int8_q {
        let mut b = vec![0u8; q8_0_bytes(q.len())];
        quantize_kv_q8_0(q, &mut b);
        let mut x = vec![0.0f32; q.len()];
        KvFormat::Q8_0.row_to_f32(&b, &mut x);
        rounded = x;
        &rounded[..]
    } else {
        q
    };
    let g = Geom {
        head_dim,
        fmt,
        row_bytes,
        head_bytes,
        scale,
        int8_q,
    };
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar && crate::isa::runnable(isa) {
        attention_simd(
            isa, plan, pool, q, n_tokens, n_head, n_kv_head, g, k, v, pos0, window, out,
        );
        return Ok(());
    }
    let _ = plan;
    let group = n_head / n_kv_head;
    pool.for_each_chunk_mut(out, head_dim, |idx, o| {
        let (t, h) = (idx / n_head, idx % n_head);
        let p = pos0 + t;
        let j1 = p + 1;
        let j0 = window.map_or(0, |w| j1.saturating_sub(w));
        let kv_off = (h / group) * head_bytes;
        let qr = &q[idx * head_dim..(idx + 1) * head_dim];
        attend_scalar(g, qr, &k[kv_off..], &v[kv_off..], j0, j1, o);
    });
    Ok(())
}

/// The raw little-endian bytes of an f16 slice.
fn f16_bytes(x: &[f16]) -> &[u8] {
    // SAFETY: `half::f16` is `#[repr(transparent)]` over `u16`: `2 * len` initialised bytes,
    // and u8 has no alignment requirement. x86-64 and every target we build for is little
    // endian, which is how the kernels read the values back.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), std::mem::size_of_val(x)) }
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
    attention_plan(
        isa,
        Plan::Auto,
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

/// [`attention_isa`] with the SIMD kernel and split chosen by `plan` (ignored on the scalar
/// path).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_plan(
    isa: Isa,
    plan: Plan,
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
    attention_bytes(
        isa,
        plan,
        KvFormat::F16,
        false,
        pool,
        q,
        n_tokens,
        n_head,
        n_kv_head,
        head_dim,
        f16_bytes(k_cache),
        f16_bytes(v_cache),
        pos0,
        window,
        scale,
        out,
    )
}

/// [`attention_q8_0`] on a given ISA and plan (tests).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn attention_q8_0_plan(
    isa: Isa,
    plan: Plan,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[u8],
    v_cache: &[u8],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_bytes(
        isa,
        plan,
        KvFormat::Q8_0,
        false,
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
/// Parallel on `pool`. Errors on inconsistent shapes.
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

/// [`attention`] over a cache stored as Q8_0 blocks: `k_cache` and `v_cache` are
/// `[positions][n_kv_head][head_dim / 32]` GGML Q8_0 blocks (34 bytes each, as written by
/// [`quantize_kv_q8_0`]), so one position is [`q8_0_bytes`]`(n_kv_head * head_dim)` bytes
/// and `head_dim` must be a multiple of 32. Every other argument and the result are as for
/// [`attention`], computed on the dequantized values `d·q`.
#[allow(clippy::too_many_arguments)]
pub fn attention_q8_0(
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[u8],
    v_cache: &[u8],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_bytes(
        Isa::current(),
        Plan::Auto,
        KvFormat::Q8_0,
        false,
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

/// [`attention_q8_0`] with the queries rounded to Q8_0 (per 32 values: `d = amax / 127` as
/// f16, `q = round(x / d)`, ggml's quantizer) before the scores are taken, which is what
/// ggml does to the query of a Q8_0 K (its Q8_0·Q8_0 dot product). Scores are then integer
/// dot products of the blocks times the two scales: with AVX-512 VNNI and a head size that
/// is a multiple of 64, decode computes them with `vpdpbusd` instead of converting every key
/// to f32, about a third of the Q8_0 kernel's work. Every path (and ISA) computes on the same
/// rounded queries, so they agree up to f32 rounding; against [`attention_q8_0`] the scores
/// move by at most `scale · Σ |k| · amax / 254` per 32-value block (half a quantization step
/// of each query value), a change of the order of the Q8_0 rounding of K itself.
#[allow(clippy::too_many_arguments)]
pub fn attention_q8_0_int8_query(
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[u8],
    v_cache: &[u8],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_bytes(
        Isa::current(),
        Plan::Auto,
        KvFormat::Q8_0,
        true,
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
