//! Tiled GEMM for Q4_K, Q5_K and Q6_K weights against Q8_K activations (AVX-512 VNNI, many
//! tokens): the K-quant counterpart of `gemm_q32`'s GEMM.
//!
//! # Layout
//! Tiles of 32 rows are unpacked per call, per thread, into a buffer of 64-byte lines (the
//! weights in the file are never rewritten). Per 256-element block, half `h` (16 rows) and
//! 4-element group `g`, line `64h + g` holds the 4 unsigned codes of group `g` of each of the 16
//! rows (one 32-bit lane per row), so one `vpdpbusd` against a broadcast of the 4 matching
//! activation bytes advances 16 rows and the sums need no horizontal reduction. After the 128
//! code lines come the f32 scale lines `d * s_j` of every sub-block `j` (one lane per row; 8
//! sub-blocks of 32 for Q4_K / Q5_K, 16 of 16 for Q6_K), and for Q4_K / Q5_K the min lines
//! `dmin * m_j`.
//!
//! # Arithmetic
//! Per sub-block, an `i32` accumulator per (row, token) collects `Σ u·q8` exactly; it is then
//! converted and accumulated in f32 with the row's `d * s_j`, and once per block multiplied by
//! the activation scale `dx`. The offsets cost no per-element work: Q6_K's codes carry `+32`, so
//! its accumulators start at `-32 * bsum_j` (`ActBlock::nb32`) and hold `Σ (u - 32)·q8`; the
//! Q4_K / Q5_K mins are subtracted once per sub-block as `dmin * m_j * (dx * bsum_j)`
//! (`ActBlock::bsf2`). This is the scalar reference's integer math (`kquant_dot`), summed in a
//! different order in f32.
//!
//! The micro-kernel keeps 32 rows x 4 tokens of integer, block and output accumulators in
//! registers.

#![allow(clippy::needless_range_loop)]

use crate::gemm_q32::{transpose, Line};
use crate::kquant_dot::x86::{KQ, Q4K, Q5K, Q6K};
use crate::kquant_dot::ActBlock;
use crate::pool::SyncSlice;
use crate::ThreadPool;
use quant::GgmlType;
use std::arch::x86_64::*;
use std::cell::Cell;

/// Rows per tile (two 16-lane halves).
const TILE: usize = 32;
/// Tokens per micro-kernel call.
const TT: usize = 4;
/// Code lines per block: 2 halves x 64 groups of 4.
const CODE_LINES: usize = 128;

/// Token count from which the AVX-512 VNNI path uses this GEMM.
pub(crate) const GEMM_MIN_TOKENS: usize = 6;

/// Whether this GEMM handles `ty`.
pub(crate) fn handles(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

/// A K-quant type as the GEMM sees it.
trait GemmK {
    type K: KQ;
    /// Sub-blocks with their own scale: 8 (of 32) or 16 (of 16).
    const NSUB: usize;
    /// Q4_K / Q5_K: `dmin * m_j` mins. Otherwise (Q6_K) the `-32` code offset.
    const MINS: bool;
    /// Lines per block.
    const LINES: usize = CODE_LINES + 2 * Self::NSUB + if Self::MINS { 16 } else { 0 };
}

struct G4;
struct G5;
struct G6;

impl GemmK for G4 {
    type K = Q4K;
    const NSUB: usize = 8;
    const MINS: bool = true;
}
impl GemmK for G5 {
    type K = Q5K;
    const NSUB: usize = 8;
    const MINS: bool = true;
}
impl GemmK for G6 {
    type K = Q6K;
    const NSUB: usize = 16;
    const MINS: bool = false;
}

/// Everything a tile job reads.
pub(crate) struct Ctx<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) row_bytes: usize,
    pub(crate) rows: usize,
    pub(crate) nb: usize,
    pub(crate) act: &'a [ActBlock],
    pub(crate) n_tokens: usize,
    pub(crate) out: &'a SyncSlice<'a, f32>,
}

thread_local! {
    /// Per-thread tile buffer: grows to the largest tile seen, then is reused.
    static TILE_BUF: Cell<Vec<Line>> = const { Cell::new(Vec::new()) };
}

/// Unpacks rows `r0..r0 + nr` (`nr <= 32`; missing rows get zero codes and scales) into `buf`
/// (`nb * G::LINES` lines), in the layout of the module docs.
#[inline(always)]
unsafe fn pack_tile<G: GemmK>(c: &Ctx, r0: usize, nr: usize, buf: *mut Line) {
    let bytes = <G::K as KQ>::BYTES;
    // One half's 16 rows unpacked in element order, their sub-block scales and mins.
    let mut codes = [[_mm512_setzero_si512(); 4]; 16];
    let mut dsc = [[0.0f32; 16]; 16];
    let mut mn = [[0.0f32; 16]; 16];
    for b in 0..c.nb {
        let lines = buf.add(b * G::LINES);
        for h in 0..2 {
            for i in 0..16 {
                let r = 16 * h + i;
                if r >= nr {
                    codes[i] = [_mm512_setzero_si512(); 4];
                    dsc[i] = [0.0; 16];
                    mn[i] = [0.0; 16];
                    continue;
                }
                let p = c.data.as_ptr().add((r0 + r) * c.row_bytes + b * bytes);
                let u = G::K::u512(p);
                codes[i] = u.w;
                let s = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(u.sc16));
                _mm512_storeu_ps(dsc[i].as_mut_ptr(), _mm512_mul_ps(s, _mm512_set1_ps(u.d)));
                if G::MINS {
                    _mm512_storeu_ps(mn[i].as_mut_ptr(), u.m);
                }
            }
            // 8 chunks of 32 bytes (8 groups) per row: transpose 16 rows x 8 dwords each.
            for ch in 0..8 {
                let mut a = [_mm512_setzero_si512(); 8];
                for (i, ai) in a.iter_mut().enumerate() {
                    let pa = (codes[2 * i].as_ptr() as *const u8).add(32 * ch);
                    let pb = (codes[2 * i + 1].as_ptr() as *const u8).add(32 * ch);
                    let lo = _mm256_loadu_si256(pa as *const __m256i);
                    let hi = _mm256_loadu_si256(pb as *const __m256i);
                    *ai = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                }
                transpose(&mut a);
                for (g, ag) in a.iter().enumerate() {
                    _mm512_store_si512(lines.add(64 * h + 8 * ch + g) as *mut _, *ag);
                }
            }
            // Scale lines (and min lines): lane i is row 16h + i.
            let step = 16 / G::NSUB;
            for j in 0..G::NSUB {
                let l = lines.add(CODE_LINES + h * G::NSUB + j) as *mut f32;
                for i in 0..16 {
                    *l.add(i) = dsc[i][step * j];
                }
            }
            if G::MINS {
                for j in 0..8 {
                    let l = lines.add(CODE_LINES + 2 * G::NSUB + 8 * h + j) as *mut f32;
                    for i in 0..16 {
                        *l.add(i) = mn[i][2 * j];
                    }
                }
            }
        }
    }
}

/// Tokens `t0..t0 + T` times the packed tile of rows `r0..r0 + nr`.
#[inline(always)]
unsafe fn micro<G: GemmK, const T: usize>(
    c: &Ctx,
    buf: *const Line,
    r0: usize,
    nr: usize,
    t0: usize,
) {
    let nb = c.nb;
    let gps = 64 / G::NSUB;
    let mut facc = [[_mm512_setzero_ps(); T]; 2];
    for b in 0..nb {
        let lines = buf.add(b * G::LINES);
        let ab: [&ActBlock; T] = std::array::from_fn(|t| &*c.act.as_ptr().add((t0 + t) * nb + b));
        let mut bacc = [[_mm512_setzero_ps(); T]; 2];
        for j in 0..G::NSUB {
            let mut iacc = [[_mm512_setzero_si512(); T]; 2];
            if !G::MINS {
                for t in 0..T {
                    let o = _mm512_set1_epi32(ab[t].nb32[j]);
                    iacc[0][t] = o;
                    iacc[1][t] = o;
                }
            }
            for gg in 0..gps {
                let g = gps * j + gg;
                let w0 = _mm512_load_si512(lines.add(g) as *const _);
                let w1 = _mm512_load_si512(lines.add(64 + g) as *const _);
                for t in 0..T {
                    let xq = ab[t].qs.as_ptr().add(4 * g) as *const i32;
                    let xb = _mm512_set1_epi32(std::ptr::read(xq));
                    iacc[0][t] = _mm512_dpbusd_epi32(iacc[0][t], w0, xb);
                    iacc[1][t] = _mm512_dpbusd_epi32(iacc[1][t], w1, xb);
                }
            }
            let s0 = _mm512_load_ps(lines.add(CODE_LINES + j) as *const f32);
            let s1 = _mm512_load_ps(lines.add(CODE_LINES + G::NSUB + j) as *const f32);
            for t in 0..T {
                bacc[0][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[0][t]), s0, bacc[0][t]);
                bacc[1][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[1][t]), s1, bacc[1][t]);
            }
        }
        for t in 0..T {
            let dx = _mm512_set1_ps(ab[t].d);
            facc[0][t] = _mm512_fmadd_ps(bacc[0][t], dx, facc[0][t]);
            facc[1][t] = _mm512_fmadd_ps(bacc[1][t], dx, facc[1][t]);
        }
        if G::MINS {
            for j in 0..8 {
                let m0 = _mm512_load_ps(lines.add(CODE_LINES + 2 * G::NSUB + j) as *const f32);
                let m1 = _mm512_load_ps(lines.add(CODE_LINES + 2 * G::NSUB + 8 + j) as *const f32);
                for t in 0..T {
                    let s = _mm512_set1_ps(ab[t].bsf2[j]);
                    facc[0][t] = _mm512_fnmadd_ps(m0, s, facc[0][t]);
                    facc[1][t] = _mm512_fnmadd_ps(m1, s, facc[1][t]);
                }
            }
        }
    }
    for h in 0..2 {
        let lo = 16 * h;
        if lo >= nr {
            break;
        }
        let n = (nr - lo).min(16);
        let mask: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
        for t in 0..T {
            // SAFETY: rows `r0..r0 + nr` belong to this job; `n` lanes are in bounds.
            let o = c.out.slice_mut((t0 + t) * c.rows + r0 + lo, n);
            _mm512_mask_storeu_ps(o.as_mut_ptr(), mask, facc[h][t]);
        }
    }
}

/// Packs the tile of rows `r0..r0 + nr` into `buf` and multiplies it with every token.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `buf` holds at least
/// `nb * G::LINES` lines; rows `r0..r0 + nr` belong to the calling job.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile<G: GemmK>(c: &Ctx, r0: usize, nr: usize, buf: *mut Line) {
    pack_tile::<G>(c, r0, nr, buf);
    let n = c.n_tokens;
    let mut t = 0;
    while t + TT <= n {
        micro::<G, TT>(c, buf, r0, nr, t);
        t += TT;
    }
    match n - t {
        3 => micro::<G, 3>(c, buf, r0, nr, t),
        2 => micro::<G, 2>(c, buf, r0, nr, t),
        1 => micro::<G, 1>(c, buf, r0, nr, t),
        _ => {}
    }
}

fn run<G: GemmK>(pool: &ThreadPool, c: &Ctx) {
    let n_tiles = c.rows.div_ceil(TILE);
    let lines = c.nb * G::LINES;
    pool.for_each_chunk(n_tiles, 1, |tiles| {
        let mut buf = TILE_BUF.with(Cell::take);
        if buf.len() < lines {
            buf.resize(lines, Line([0; 64]));
        }
        for t in tiles {
            let r0 = t * TILE;
            // SAFETY: the caller checked the CPU features; `buf` is large enough; tiles are
            // disjoint row ranges, one job each.
            unsafe { tile::<G>(c, r0, TILE.min(c.rows - r0), buf.as_mut_ptr()) };
        }
        TILE_BUF.with(|b| b.set(buf));
    });
}

/// The whole product for `ty` (`handles(ty)`).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `c` describes consistent
/// shapes (`data` holds `rows` rows of `nb` blocks, `act` `n_tokens * nb` blocks, `out`
/// `n_tokens * rows` floats).
pub(crate) unsafe fn gemm(pool: &ThreadPool, ty: GgmlType, c: &Ctx) {
    match ty {
        GgmlType::Q4_K => run::<G4>(pool, c),
        GgmlType::Q5_K => run::<G5>(pool, c),
        GgmlType::Q6_K => run::<G6>(pool, c),
        t => unreachable!("kquant_gemm: {t}"),
    }
}
