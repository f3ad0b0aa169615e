//! Integer matmul for the 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! # Math
//! Activations are quantized once per call to int8 blocks (`q8act`). Every weight format is
//! read as *unsigned codes* `u` (0..=255) with a per-type offset: the weight value is
//! `d_w * (u - off) (+ m_w)`, with `off` = 8 (Q4_0), 16 (Q5_0), 128 (Q8_0, whose bytes are
//! flipped with `^ 0x80`) and 0 (Q4_1, Q5_1, which carry a min `m_w` instead). For one block,
//!
//! ```text
//! Σ w·x ≈ d_w·d_x · (Σ u·q + bias) + m_w · ds,     bias = -off·Σq,  ds = d_x·Σq
//! ```
//!
//! where `Σ u·q + bias` is an exact `i32` (`vpdpbusd` multiplies u8 × i8). The scalar path
//! evaluates exactly that integer per block, so it is the reference for the SIMD paths, which
//! differ from it only in the order of the f32 sums.
//!
//! # Paths
//! * **Packed** (AVX-512 VNNI, weights repacked once at model load by [`pack_weights`]):
//!   every token count. Tiles of 32 rows are stored interleaved, block by block: 64-byte
//!   lines holding 4 codes of each of 16 rows (4-bit codes of both 16-row halves share a line
//!   as low/high nibbles; 5-bit codes add bit masks; 8-bit codes take a line per half), then
//!   the 32 rows' f16 scales (and mins). One `vpdpbusd` with a broadcast of 4 activation
//!   bytes advances 16 rows, so the per-block sums need no horizontal reduction; the
//!   micro-kernel keeps 32 rows x 4 tokens of accumulators in registers. The layout has
//!   exactly the bytes of the GGUF blocks, so a decoded token streams no more memory than
//!   before, and a batch of sequences pays ~one `vpdpbusd` per 64 multiply-adds instead of a
//!   convert + permute + FMA per row, token and block (measured: 8 sequences decode in ~2.7x
//!   the time of one, down from ~4x).
//! * **GEMM** (AVX-512 VNNI, unpacked weights, many tokens): the same micro-kernel over
//!   tiles packed per call into a thread-local buffer.
//! * **GEMV** (unpacked weights, few tokens, and every token count on AVX2/scalar): for each
//!   group of 4 weight rows, each block is unpacked once into a 256-bit register and
//!   multiplied with up to 4 tokens' activations.
//! * AVX2 (no VNNI): `vpmaddubsw` + `vpmaddwd`; for Q8_0, whose codes would overflow the i16
//!   pair sums, the signed bytes are multiplied with the sign trick instead (same integer).
//!
//! AVX-512 without VNNI (e.g. Skylake-X) uses the AVX2 bodies.

// The kernels index several register arrays in lockstep by row and token.
#![allow(clippy::needless_range_loop)]

use crate::matmul::Weights;
use crate::pool::SyncSlice;
use crate::q8act::{quant_row, quantize_acts, with_act, ActQ, QPath, QK};
use crate::{Isa, ThreadPool};
use half::f16;
use quant::GgmlType;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
#[cfg(target_arch = "x86_64")]
use std::cell::Cell;

/// The types this module multiplies.
pub(crate) fn handles(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0
    )
}

/// Code path for the integer kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni512,
}

#[cfg(target_arch = "x86_64")]
fn has_vnni() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static V: AtomicU8 = AtomicU8::new(0);
    match V.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let ok = is_x86_feature_detected!("avx512vnni");
            V.store(1 + ok as u8, Ordering::Relaxed);
            ok
        }
    }
}

impl Path {
    /// The best body `isa` allows on this CPU (AVX-512 without VNNI runs the AVX2 bodies).
    pub(crate) fn for_isa(isa: Isa) -> Path {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if crate::isa::runnable(Isa::Avx512) && has_vnni() => Path::Vnni512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2 if crate::isa::runnable(Isa::Avx2) => Path::Avx2,
            _ => Path::Scalar,
        }
    }

    pub(crate) fn qpath(self) -> QPath {
        match self {
            Path::Scalar => QPath::Scalar,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => QPath::Avx2,
            #[cfg(target_arch = "x86_64")]
            Path::Vnni512 => QPath::Avx512,
        }
    }
}

#[inline(always)]
fn f16_le(p: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([p[off], p[off + 1]])).to_f32()
}

/// One block format, read as unsigned codes with an offset (module docs).
pub(crate) trait Fmt: 'static {
    /// Bytes per block.
    const BYTES: usize;
    /// `u - OFF` is the signed quant.
    const OFF: i32;
    /// Whether blocks carry a min (`+ m_w`).
    const HAS_MIN: bool;
    /// Q8_0: the AVX2 path multiplies the signed bytes directly (codes would overflow i16).
    const SIGNED8: bool = false;
    /// Significant bits of a code (4, 5 or 8): how a packed tile stores them.
    const BITS: u32;

    /// The 32 codes of block `b` (scalar reference).
    fn codes(b: &[u8]) -> [u8; 32];
    /// Scale of the block at `p`.
    #[inline(always)]
    fn d(b: &[u8]) -> f32 {
        f16_le(b, 0)
    }
    /// Min of the block (only when `HAS_MIN`).
    #[inline(always)]
    fn m(b: &[u8]) -> f32 {
        f16_le(b, 2)
    }

    /// The 32 codes of the block at `p` in element order (AVX-512 BW/VL available).
    #[cfg(target_arch = "x86_64")]
    unsafe fn codes_512(p: *const u8) -> __m256i;
    /// As `codes_512` with AVX2 only; for `SIGNED8` formats, the raw signed bytes.
    #[cfg(target_arch = "x86_64")]
    unsafe fn codes_avx2(p: *const u8) -> __m256i;
}

/// `[lo nibbles | hi nibbles]` of 16 bytes at `p` as 32 bytes in element order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let v = _mm256_set_m128i(_mm_srli_epi16::<4>(q), q);
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// Bit 4 of each of 32 bytes from bit `j` of `qh` (AVX2 only).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn high_bits_avx2(qh: u32) -> __m256i {
    let v = _mm256_set1_epi32(qh as i32);
    // Byte j takes byte j / 8 of qh, then tests bit j % 8.
    let sh = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bits = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let hit = _mm256_cmpeq_epi8(_mm256_and_si256(sh, bits), bits);
    _mm256_and_si256(hit, _mm256_set1_epi8(0x10))
}

#[inline(always)]
fn nib_codes(qs: &[u8], qh: u32) -> [u8; 32] {
    let mut u = [0u8; 32];
    for j in 0..16 {
        u[j] = (qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
        u[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    u
}

#[inline(always)]
fn qh_of(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

pub(crate) struct Q4_0;
pub(crate) struct Q4_1;
pub(crate) struct Q5_0;
pub(crate) struct Q5_1;
pub(crate) struct Q8_0;

impl Fmt for Q4_0 {
    const BITS: u32 = 4;
    const BYTES: usize = 18;
    const OFF: i32 = 8;
    const HAS_MIN: bool = false;
    fn codes(b: &[u8]) -> [u8; 32] {
        nib_codes(&b[2..18], 0)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_512(p: *const u8) -> __m256i {
        nibbles(p.add(2))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_avx2(p: *const u8) -> __m256i {
        nibbles(p.add(2))
    }
}

impl Fmt for Q4_1 {
    const BITS: u32 = 4;
    const BYTES: usize = 20;
    const OFF: i32 = 0;
    const HAS_MIN: bool = true;
    fn codes(b: &[u8]) -> [u8; 32] {
        nib_codes(&b[4..20], 0)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_512(p: *const u8) -> __m256i {
        nibbles(p.add(4))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_avx2(p: *const u8) -> __m256i {
        nibbles(p.add(4))
    }
}

impl Fmt for Q5_0 {
    const BITS: u32 = 5;
    const BYTES: usize = 22;
    const OFF: i32 = 16;
    const HAS_MIN: bool = false;
    fn codes(b: &[u8]) -> [u8; 32] {
        nib_codes(&b[6..22], qh_of(b, 2))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_512(p: *const u8) -> __m256i {
        let qh = std::ptr::read_unaligned(p.add(2) as *const u32);
        _mm256_or_si256(
            nibbles(p.add(6)),
            _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10)),
        )
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_avx2(p: *const u8) -> __m256i {
        let qh = std::ptr::read_unaligned(p.add(2) as *const u32);
        _mm256_or_si256(nibbles(p.add(6)), high_bits_avx2(qh))
    }
}

impl Fmt for Q5_1 {
    const BITS: u32 = 5;
    const BYTES: usize = 24;
    const OFF: i32 = 0;
    const HAS_MIN: bool = true;
    fn codes(b: &[u8]) -> [u8; 32] {
        nib_codes(&b[8..24], qh_of(b, 4))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_512(p: *const u8) -> __m256i {
        let qh = std::ptr::read_unaligned(p.add(4) as *const u32);
        _mm256_or_si256(
            nibbles(p.add(8)),
            _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10)),
        )
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_avx2(p: *const u8) -> __m256i {
        let qh = std::ptr::read_unaligned(p.add(4) as *const u32);
        _mm256_or_si256(nibbles(p.add(8)), high_bits_avx2(qh))
    }
}

impl Fmt for Q8_0 {
    const BITS: u32 = 8;
    const BYTES: usize = 34;
    const OFF: i32 = 128;
    const HAS_MIN: bool = false;
    const SIGNED8: bool = true;
    fn codes(b: &[u8]) -> [u8; 32] {
        std::array::from_fn(|j| b[2 + j] ^ 0x80)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_512(p: *const u8) -> __m256i {
        let raw = _mm256_loadu_si256(p.add(2) as *const __m256i);
        _mm256_xor_si256(raw, _mm256_set1_epi8(-128))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn codes_avx2(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p.add(2) as *const __m256i)
    }
}

/// The offset a type's codes carry (what the activation `bias` is built with).
pub(crate) fn type_off(ty: GgmlType) -> i32 {
    match ty {
        GgmlType::Q4_0 => Q4_0::OFF,
        GgmlType::Q5_0 => Q5_0::OFF,
        GgmlType::Q8_0 => Q8_0::OFF,
        _ => 0,
    }
}

/// Where a product's results go.
#[derive(Clone, Copy)]
enum Out<'b> {
    /// One buffer, token after token (`out[t * rows + r]`).
    Contiguous(&'b SyncSlice<'b, f32>),
    /// A buffer per token (`outs[t][r]`).
    PerToken(&'b [SyncSlice<'b, f32>]),
}

/// What every row job reads.
struct Ctx<'a, 'b> {
    w: &'b Weights<'a>,
    a: &'b ActQ,
    out: Out<'b>,
}

impl Ctx<'_, '_> {
    /// Writes `v` to `out[t * rows + r]`.
    ///
    /// # Safety
    /// Only the job that owns row `r` writes it (row ranges of jobs are disjoint).
    #[inline(always)]
    unsafe fn put(&self, t: usize, r: usize, v: f32) {
        self.out_rows(t, r, 1)[0] = v;
    }

    /// Outputs `r..r + n` of token `t`.
    ///
    /// # Safety
    /// As [`Ctx::put`], for each of the rows.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn out_rows(&self, t: usize, r: usize, n: usize) -> &mut [f32] {
        match self.out {
            Out::Contiguous(o) => o.slice_mut(t * self.w.rows() + r, n),
            Out::PerToken(o) => o[t].slice_mut(r, n),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar reference.

/// The exact integer `Σ u·q + bias` of one block.
#[inline(always)]
pub(crate) fn block_idot(u: &[u8; 32], q: &[i8], bias: i32) -> i32 {
    u.iter()
        .zip(q)
        .map(|(&u, &q)| u as i32 * q as i32)
        .sum::<i32>()
        + bias
}

fn gemv_scalar<F: Fmt>(c: &Ctx, r0: usize, r1: usize) {
    let (a, w) = (c.a, c.w);
    for r in r0..r1 {
        let row = w.row(r);
        for t in 0..a.n_tokens {
            let (mut acc, mut macc) = (0.0f32, 0.0f32);
            for b in 0..a.nb {
                let blk = &row[b * F::BYTES..(b + 1) * F::BYTES];
                let i = t * a.nb + b;
                let idot = block_idot(
                    &F::codes(blk),
                    &a.qs[t * a.cols + b * QK..][..QK],
                    a.bias[i],
                );
                let [dx, ds] = a.dd[i];
                acc += (F::d(blk) * dx) * idot as f32;
                if F::HAS_MIN {
                    macc += F::m(blk) * ds;
                }
            }
            // SAFETY: rows `r0..r1` belong to this job.
            unsafe { c.put(t, r, acc + macc) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SIMD helpers.

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = std::ptr::read_unaligned(p as *const u16);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The block dot's 8 i32 partial sums (their total is `Σ u·q + bias`) for one body.
#[cfg(target_arch = "x86_64")]
trait IDot {
    /// Codes of the block at `p` (as this body wants them).
    unsafe fn codes<F: Fmt>(p: *const u8) -> __m256i;
    /// Partial sums of `codes · x + bias` (bias in lane 0).
    unsafe fn idot<F: Fmt>(u: __m256i, x: __m256i, bias: i32) -> __m256i;
}

#[cfg(target_arch = "x86_64")]
struct VnniDot;
#[cfg(target_arch = "x86_64")]
impl IDot for VnniDot {
    #[inline(always)]
    unsafe fn codes<F: Fmt>(p: *const u8) -> __m256i {
        F::codes_512(p)
    }
    #[inline(always)]
    unsafe fn idot<F: Fmt>(u: __m256i, x: __m256i, bias: i32) -> __m256i {
        let acc = if F::OFF != 0 {
            _mm256_zextsi128_si256(_mm_cvtsi32_si128(bias))
        } else {
            _mm256_setzero_si256()
        };
        _mm256_dpbusd_epi32(acc, u, x)
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2Dot;
#[cfg(target_arch = "x86_64")]
impl IDot for Avx2Dot {
    #[inline(always)]
    unsafe fn codes<F: Fmt>(p: *const u8) -> __m256i {
        F::codes_avx2(p)
    }
    #[inline(always)]
    unsafe fn idot<F: Fmt>(u: __m256i, x: __m256i, bias: i32) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        if F::SIGNED8 {
            // u holds the signed weights: |w| * (x with w's sign) = w * x, no i16 overflow
            // (|w| <= 128, |x| <= 127). The bias (for the offset codes) is not needed.
            let p = _mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(x, u));
            _mm256_madd_epi16(p, ones)
        } else {
            // Codes <= 31: pair sums <= 2 * 31 * 127, no i16 saturation.
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), ones);
            if F::OFF != 0 {
                _mm256_add_epi32(p, _mm256_zextsi128_si256(_mm_cvtsi32_si128(bias)))
            } else {
                p
            }
        }
    }
}

/// How far ahead of the rows in work the GEMV prefetches, in bytes.
#[cfg(target_arch = "x86_64")]
const PF_DIST: usize = 8192;

/// `R` rows (1 or 4) from `r0` times tokens `t0..t0 + T`.
///
/// With 4 rows, the block headers of the 4 rows (`d`, and `m` or 2 unrelated bytes) are
/// converted together: `[d0 m0 d1 m1 d2 m2 d3 m3] * [dx ds dx ds ..]` gives every row's scale
/// (broadcast from its lane) and, summed over blocks, every row's min term at once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn gemv_block<F: Fmt, D: IDot, const R: usize, const T: usize>(
    c: &Ctx,
    r0: usize,
    t0: usize,
) {
    let (a, w) = (c.a, c.w);
    let rb = w.row_bytes();
    let base = w.data().as_ptr().add(r0 * rb);
    let (qs, add, ab) = (a.qs.as_ptr(), a.dd.as_ptr(), a.bias.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut macc = [_mm256_setzero_ps(); T];
    let lane: [__m256i; 4] = std::array::from_fn(|r| _mm256_set1_epi32(2 * r as i32));
    let pf_per = (R * rb).div_ceil(64).div_ceil(a.nb);
    let pf = base.wrapping_add(PF_DIST);
    for b in 0..a.nb {
        let mut xv = [_mm256_setzero_si256(); T];
        let mut sx = [_mm256_setzero_ps(); T];
        let mut bias = [0i32; T];
        for t in 0..T {
            let i = (t0 + t) * a.nb + b;
            xv[t] = _mm256_loadu_si256(qs.add((t0 + t) * a.cols + b * QK) as *const __m256i);
            sx[t] = _mm256_castpd_ps(_mm256_broadcast_sd(&*(add.add(i) as *const f64)));
            bias[t] = *ab.add(i);
        }
        let p = base.add(b * F::BYTES);
        // The R rows are one contiguous span: spread prefetches of the span PF_DIST bytes
        // ahead over the block loop (the hardware streamer alone falls short of DRAM speed).
        for k in 0..pf_per {
            _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add((b * pf_per + k) * 64) as *const i8);
        }
        if R == 4 {
            let h = |r: usize| std::ptr::read_unaligned(p.add(r * rb) as *const i32);
            let hv = _mm256_cvtph_ps(_mm_setr_epi32(h(0), h(1), h(2), h(3)));
            let mut prod = [_mm256_setzero_ps(); T];
            for t in 0..T {
                prod[t] = _mm256_mul_ps(hv, sx[t]);
                if F::HAS_MIN {
                    macc[t] = _mm256_add_ps(macc[t], prod[t]);
                }
            }
            for r in 0..R {
                let u = D::codes::<F>(p.add(r * rb));
                for t in 0..T {
                    let i = D::idot::<F>(u, xv[t], bias[t]);
                    let s = _mm256_permutevar8x32_ps(prod[t], lane[r]);
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc[r][t]);
                }
            }
        } else {
            let dw = f16_at(p);
            let mw = if F::HAS_MIN { f16_at(p.add(2)) } else { 0.0 };
            let u = D::codes::<F>(p);
            for t in 0..T {
                let [dx, ds] = *add.add((t0 + t) * a.nb + b);
                let i = D::idot::<F>(u, xv[t], bias[t]);
                acc[0][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(dw * dx), acc[0][t]);
                if F::HAS_MIN {
                    macc[t] = _mm256_add_ps(macc[t], _mm256_set1_ps(mw * ds));
                }
            }
        }
    }
    for t in 0..T {
        let mut m = [0.0f32; 8];
        _mm256_storeu_ps(m.as_mut_ptr(), macc[t]);
        for r in 0..R {
            let mr = if !F::HAS_MIN {
                0.0
            } else if R == 4 {
                m[2 * r + 1]
            } else {
                m[0]
            };
            c.put(t0 + t, r0 + r, hsum256(acc[r][t]) + mr);
        }
    }
}

/// Rows `r0..r1` times every token, 4 rows x up to 4 tokens at a time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn gemv_rows<F: Fmt, D: IDot>(c: &Ctx, r0: usize, r1: usize) {
    let n = c.a.n_tokens;
    let mut r = r0;
    while r < r1 {
        let four = r + 4 <= r1;
        let mut t = 0;
        while t < n {
            let k = (n - t).min(4);
            match (four, k) {
                (true, 4) => gemv_block::<F, D, 4, 4>(c, r, t),
                (true, 3) => gemv_block::<F, D, 4, 3>(c, r, t),
                (true, 2) => gemv_block::<F, D, 4, 2>(c, r, t),
                (true, _) => gemv_block::<F, D, 4, 1>(c, r, t),
                (false, 4) => gemv_block::<F, D, 1, 4>(c, r, t),
                (false, 3) => gemv_block::<F, D, 1, 3>(c, r, t),
                (false, 2) => gemv_block::<F, D, 1, 2>(c, r, t),
                (false, _) => gemv_block::<F, D, 1, 1>(c, r, t),
            }
            t += k;
        }
        r += if four { 4 } else { 1 };
    }
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn gemv_vnni<F: Fmt>(c: &Ctx, r0: usize, r1: usize) {
    gemv_rows::<F, VnniDot>(c, r0, r1)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_avx2<F: Fmt>(c: &Ctx, r0: usize, r1: usize) {
    gemv_rows::<F, Avx2Dot>(c, r0, r1)
}

// ---------------------------------------------------------------------------------------------
// GEMM (AVX-512 VNNI): interleaved tiles.

/// Rows per GEMM tile (two 16-lane halves).
const TILE: usize = 32;
/// Tokens per micro-kernel call (runs shorter than [`WIDE_TT`]).
#[cfg(target_arch = "x86_64")]
const TT: usize = 4;
/// Tokens per micro-kernel call while at least this many are left. Its 32 integer and float
/// accumulators outnumber the registers once the codes are counted, so the compiler keeps
/// some float sums in memory (touched once a block); each code line is still unpacked once
/// for 8 tokens instead of twice, which measured 13% faster in cache than two passes of 4
/// (Q4_1, `packed_matmul_speed`) and 5-10% when streaming a model's layers on 2 threads.
#[cfg(target_arch = "x86_64")]
const WIDE_TT: usize = 8;

/// 64 bytes, aligned, the unit of the tile buffer.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Per-thread tile buffer: grows to the largest tile seen, then is reused.
    static TILE_BUF: Cell<Vec<Line>> = const { Cell::new(Vec::new()) };
}

/// Index tables for the 16 x 8 dword transpose (see `transpose`).
#[cfg(target_arch = "x86_64")]
const fn tr_idx(stage: usize, h: usize) -> [i32; 16] {
    let mut out = [0i32; 16];
    let mut l = 0;
    while l < 16 {
        out[l] = match stage {
            // lane gl*4 + rl <- reg (rl / 2), lane (rl % 2) * 8 + gl + 4h
            1 => {
                let (gl, rl) = (l / 4, l % 4);
                (rl / 2) * 16 + (rl % 2) * 8 + gl + 4 * h
            }
            // lane gl2*8 + rl <- reg (rl / 4), lane (2h + gl2) * 4 + rl % 4
            2 => {
                let (gl2, rl) = (l / 8, l % 8);
                (rl / 4) * 16 + (2 * h + gl2) * 4 + rl % 4
            }
            // lane r <- reg (r / 8), lane h * 8 + r % 8
            _ => (l / 8) * 16 + h * 8 + l % 8,
        } as i32;
        l += 1;
    }
    out
}

#[cfg(target_arch = "x86_64")]
const TR: [[[i32; 16]; 2]; 3] = [
    [tr_idx(1, 0), tr_idx(1, 1)],
    [tr_idx(2, 0), tr_idx(2, 1)],
    [tr_idx(3, 0), tr_idx(3, 1)],
];

/// Transposes 16 rows x 8 dwords: in `a[i]`, lanes 0..8 are row 2i and lanes 8..16 row 2i+1;
/// on return `a[g]` lane r is dword g of row r.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn transpose(a: &mut [__m512i; 8]) {
    let ld = |t: &[i32; 16]| _mm512_loadu_si512(t.as_ptr() as *const _);
    let (i10, i11) = (ld(&TR[0][0]), ld(&TR[0][1]));
    let (i20, i21) = (ld(&TR[1][0]), ld(&TR[1][1]));
    let (i30, i31) = (ld(&TR[2][0]), ld(&TR[2][1]));
    // Stage 1: b[j][h] holds rows 4j..4j+4, g = 4h + gl at lane gl*4 + rl.
    let mut b = [[_mm512_setzero_si512(); 2]; 4];
    for j in 0..4 {
        b[j][0] = _mm512_permutex2var_epi32(a[2 * j], i10, a[2 * j + 1]);
        b[j][1] = _mm512_permutex2var_epi32(a[2 * j], i11, a[2 * j + 1]);
    }
    // Stage 2: c[k][h][h2] holds rows 8k..8k+8, g = 4h + 2h2 + gl2 at lane gl2*8 + rl.
    let mut c = [[[_mm512_setzero_si512(); 2]; 2]; 2];
    for k in 0..2 {
        for h in 0..2 {
            c[k][h][0] = _mm512_permutex2var_epi32(b[2 * k][h], i20, b[2 * k + 1][h]);
            c[k][h][1] = _mm512_permutex2var_epi32(b[2 * k][h], i21, b[2 * k + 1][h]);
        }
    }
    // Stage 3: a[g] lane r.
    for h in 0..2 {
        for h2 in 0..2 {
            let g = 4 * h + 2 * h2;
            a[g] = _mm512_permutex2var_epi32(c[0][h][h2], i30, c[1][h][h2]);
            a[g + 1] = _mm512_permutex2var_epi32(c[0][h][h2], i31, c[1][h][h2]);
        }
    }
}

/// Lines of codes per block in a packed tile: 8 lines of nibble pairs (4- and 5-bit codes;
/// 5-bit adds 2 lines of high-bit masks), 16 lines of bytes (8-bit codes).
const fn code_lines(bits: u32) -> usize {
    match bits {
        4 => 8,
        5 => 10,
        _ => 16,
    }
}

/// Lines per block in a packed tile of format `F`: codes, one line of 32 f16 scales and,
/// for formats with a min, one line of 32 f16 mins. Exactly the bytes of 32 rows' blocks.
const fn lines_per_block<F: Fmt>() -> usize {
    code_lines(F::BITS) + 1 + F::HAS_MIN as usize
}

/// Packs rows `r0..r0 + nr` (nr <= 32; missing rows are zero blocks with scale 0) into `buf`,
/// block after block, [`lines_per_block`] lines each. For block `b`, half `h` (rows
/// `16h..16h + 16`) and column group `g` (columns `4g..4g + 4`), lane `l` of a 64-byte code
/// line holds the 4 codes of row `16h + l`, so one `vpdpbusd` with a broadcast of 4
/// activation bytes advances 16 rows:
/// * 4-bit codes: line `g` holds half 0 in the low nibbles and half 1 in the high nibbles;
/// * 5-bit codes: the same nibbles, then 2 lines of 16 `u64` masks, mask `2g + h` bit
///   `4l + k` being bit 4 of the code;
/// * 8-bit codes: line `2g + h`.
///
/// Then the 32 rows' f16 scales `d` (and mins `m`) as they are in the blocks.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pack_tile<F: Fmt>(w: &Weights, r0: usize, nr: usize, buf: *mut Line) {
    static ZERO: [u8; 64] = [0; 64];
    let nb = w.cols() / QK;
    let rb = w.row_bytes();
    let lpb = lines_per_block::<F>();
    let cl = code_lines(F::BITS);
    let mut ptrs = [ZERO.as_ptr(); TILE];
    let mut step = [0usize; TILE];
    for i in 0..nr {
        ptrs[i] = w.data().as_ptr().add((r0 + i) * rb);
        step[i] = F::BYTES;
    }
    let low = _mm512_set1_epi8(0x0F);
    let bit4 = _mm512_set1_epi8(0x10);
    for b in 0..nb {
        let lines = buf.add(b * lpb);
        let mut halves = [[_mm512_setzero_si512(); 8]; 2];
        let mut dbits = [0u16; TILE];
        let mut mbits = [0u16; TILE];
        for (h, a) in halves.iter_mut().enumerate() {
            for (i, ai) in a.iter_mut().enumerate() {
                let (ra, rb_) = (16 * h + 2 * i, 16 * h + 2 * i + 1);
                let pa = ptrs[ra].add(b * step[ra]);
                let pb = ptrs[rb_].add(b * step[rb_]);
                let ua = F::codes_512(pa);
                let ub = F::codes_512(pb);
                *ai = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ua), ub);
                dbits[ra] = std::ptr::read_unaligned(pa as *const u16);
                dbits[rb_] = std::ptr::read_unaligned(pb as *const u16);
                if F::HAS_MIN {
                    mbits[ra] = std::ptr::read_unaligned(pa.add(2) as *const u16);
                    mbits[rb_] = std::ptr::read_unaligned(pb.add(2) as *const u16);
                }
            }
            transpose(a);
        }
        let [a0, a1] = halves;
        for g in 0..8 {
            if F::BITS == 8 {
                _mm512_store_si512(lines.add(2 * g) as *mut _, a0[g]);
                _mm512_store_si512(lines.add(2 * g + 1) as *mut _, a1[g]);
            } else {
                // Codes <= 15 after the mask: the 16-bit shift cannot carry into the next byte.
                let nib = _mm512_or_si512(
                    _mm512_and_si512(a0[g], low),
                    _mm512_slli_epi16::<4>(_mm512_and_si512(a1[g], low)),
                );
                _mm512_store_si512(lines.add(g) as *mut _, nib);
                if F::BITS == 5 {
                    let masks = lines.add(8) as *mut u64;
                    *masks.add(2 * g) = _mm512_test_epi8_mask(a0[g], bit4);
                    *masks.add(2 * g + 1) = _mm512_test_epi8_mask(a1[g], bit4);
                }
            }
        }
        std::ptr::copy_nonoverlapping(dbits.as_ptr() as *const u8, lines.add(cl) as *mut u8, 64);
        if F::HAS_MIN {
            std::ptr::copy_nonoverlapping(
                mbits.as_ptr() as *const u8,
                lines.add(cl + 1) as *mut u8,
                64,
            );
        }
    }
}

/// The codes of column group `g` of a packed block, rows 0..16 and 16..32.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn unpack_group<F: Fmt>(lines: *const Line, g: usize) -> (__m512i, __m512i) {
    if F::BITS == 8 {
        return (
            _mm512_load_si512(lines.add(2 * g) as *const _),
            _mm512_load_si512(lines.add(2 * g + 1) as *const _),
        );
    }
    let low = _mm512_set1_epi8(0x0F);
    let v = _mm512_load_si512(lines.add(g) as *const _);
    let lo = _mm512_and_si512(v, low);
    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
    if F::BITS == 5 {
        let masks = lines.add(8) as *const u64;
        let bit4 = _mm512_set1_epi8(0x10);
        (
            _mm512_mask_add_epi8(lo, *masks.add(2 * g), lo, bit4),
            _mm512_mask_add_epi8(hi, *masks.add(2 * g + 1), hi, bit4),
        )
    } else {
        (lo, hi)
    }
}

/// How far ahead the packed kernel prefetches, in lines (about 4 KiB).
#[cfg(target_arch = "x86_64")]
const PACKED_PF_LINES: usize = 64;

/// One pass of the micro-kernel over a packed tile: tokens from `t0`, the tile at `buf` (rows
/// `r0..r0 + nr`), and `pf_per_block` lines from `pf` (as far from `buf` as wanted) to
/// prefetch in step with each block.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Pass {
    buf: *const Line,
    pf: *const Line,
    pf_per_block: usize,
    r0: usize,
    nr: usize,
    t0: usize,
}

/// Tokens `t0..t0 + T` of pass `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn gemm_micro<F: Fmt, const T: usize, const PF_L2: bool>(c: &Ctx, p: Pass) {
    let Pass {
        buf,
        pf,
        pf_per_block,
        r0,
        nr,
        t0,
    } = p;
    let a = c.a;
    let (nb, cols) = (a.nb, a.cols);
    let (qs, add, ab) = (a.qs.as_ptr(), a.dd.as_ptr(), a.bias.as_ptr());
    let lpb = lines_per_block::<F>();
    let cl = code_lines(F::BITS);
    let mut facc = [[_mm512_setzero_ps(); T]; 2];
    for b in 0..nb {
        let lines = buf.add(b * lpb);
        for k in 0..pf_per_block {
            let line = pf.wrapping_add(b * pf_per_block + k) as *const i8;
            if PF_L2 {
                _mm_prefetch::<_MM_HINT_T1>(line);
            } else {
                _mm_prefetch::<_MM_HINT_T0>(line);
            }
        }
        let mut iacc = [[_mm512_setzero_si512(); T]; 2];
        if F::OFF != 0 {
            for t in 0..T {
                let bias = _mm512_set1_epi32(*ab.add((t0 + t) * nb + b));
                iacc[0][t] = bias;
                iacc[1][t] = bias;
            }
        }
        for g in 0..8 {
            let (w0, w1) = unpack_group::<F>(lines, g);
            for t in 0..T {
                let xp = qs.add((t0 + t) * cols + b * QK + 4 * g);
                let xb = _mm512_set1_epi32(std::ptr::read_unaligned(xp as *const i32));
                iacc[0][t] = _mm512_dpbusd_epi32(iacc[0][t], w0, xb);
                iacc[1][t] = _mm512_dpbusd_epi32(iacc[1][t], w1, xb);
            }
        }
        let dl = lines.add(cl) as *const __m256i;
        let d0 = _mm512_cvtph_ps(_mm256_load_si256(dl));
        let d1 = _mm512_cvtph_ps(_mm256_load_si256(dl.add(1)));
        for t in 0..T {
            let dx = _mm512_set1_ps((*add.add((t0 + t) * nb + b))[0]);
            facc[0][t] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(iacc[0][t]),
                _mm512_mul_ps(d0, dx),
                facc[0][t],
            );
            facc[1][t] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(iacc[1][t]),
                _mm512_mul_ps(d1, dx),
                facc[1][t],
            );
        }
        if F::HAS_MIN {
            let ml = lines.add(cl + 1) as *const __m256i;
            let m0 = _mm512_cvtph_ps(_mm256_load_si256(ml));
            let m1 = _mm512_cvtph_ps(_mm256_load_si256(ml.add(1)));
            for t in 0..T {
                let s = _mm512_set1_ps((*add.add((t0 + t) * nb + b))[1]);
                facc[0][t] = _mm512_fmadd_ps(m0, s, facc[0][t]);
                facc[1][t] = _mm512_fmadd_ps(m1, s, facc[1][t]);
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
            let o = c.out_rows(t0 + t, r0 + lo, n);
            _mm512_mask_storeu_ps(o.as_mut_ptr(), mask, facc[h][t]);
        }
    }
}

/// Every token times the packed tile at `buf` (rows `r0..r0 + nr`), 8 (or up to 4) tokens
/// per pass over the tile. The first pass streams the tile from memory (prefetching a little
/// ahead: the hardware prefetcher stops at every 4 KiB page); later passes find it in L1 and are
/// compute-bound, so they prefetch `next` (the tile this thread takes next, or null; into L2)
/// to keep memory busy meanwhile.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `buf` holds the tile's
/// `nb * lines_per_block::<F>()` lines; rows `r0..r0 + nr` belong to the calling job.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn gemm_packed_tile_vnni<F: Fmt>(
    c: &Ctx,
    buf: *const Line,
    next: *const Line,
    r0: usize,
    nr: usize,
) {
    let n = c.a.n_tokens;
    let ahead = buf.wrapping_add(PACKED_PF_LINES);
    let n_pass = n / WIDE_TT + (n % WIDE_TT).div_ceil(TT);
    // With several passes, each fetches its share of the next tile into L2 (not L1: a large
    // tile, 19.6 KiB for a Q8_0 output projection and 30 KiB for a Q4_1 down projection,
    // would not fit L1's 48 KiB next to the current one). Spread over all passes the next
    // tile's reads keep memory busy the whole time; fetched in the last pass only, memory
    // idled through the others. A single pass streams its own tile, a little ahead into L1.
    let lpb = lines_per_block::<F>();
    let share = lpb.div_ceil(n_pass);
    let mut t = 0;
    let mut pass = 0;
    while t < n {
        let take = if n - t >= WIDE_TT {
            WIDE_TT
        } else {
            (n - t).min(TT)
        };
        let mut p = Pass {
            buf,
            pf: ahead,
            pf_per_block: lpb,
            r0,
            nr,
            t0: t,
        };
        // With many passes (a prompt) the first few cover the next tile; the rest fetch none.
        if n_pass > 1 && !next.is_null() && pass * share < lpb {
            p.pf = next.wrapping_add(pass * c.a.nb * share);
            p.pf_per_block = share;
            micro_pass::<F, true>(take, c, p);
        } else {
            micro_pass::<F, false>(take, c, p);
        }
        t += take;
        pass += 1;
    }
}

/// [`gemm_micro`] for `take` tokens (`WIDE_TT` or at most `TT`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn micro_pass<F: Fmt, const PF_L2: bool>(take: usize, c: &Ctx, p: Pass) {
    match take {
        WIDE_TT => gemm_micro::<F, WIDE_TT, PF_L2>(c, p),
        4 => gemm_micro::<F, 4, PF_L2>(c, p),
        3 => gemm_micro::<F, 3, PF_L2>(c, p),
        2 => gemm_micro::<F, 2, PF_L2>(c, p),
        _ => gemm_micro::<F, 1, PF_L2>(c, p),
    }
}

/// Packs the tile of rows `r0..r0 + nr` into `buf` and multiplies it with every token.
///
/// # Safety
/// As [`gemm_packed_tile_vnni`]; `buf` holds at least `nb * lines_per_block::<F>()` lines.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn gemm_tile_vnni<F: Fmt>(c: &Ctx, r0: usize, nr: usize, buf: *mut Line) {
    pack_tile::<F>(c.w, r0, nr, buf);
    gemm_packed_tile_vnni::<F>(c, buf, std::ptr::null(), r0, nr);
}

/// Packs tiles `tiles` of `w` into `out` (the whole matrix's lines).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `out` holds the
/// `w.rows().div_ceil(TILE) * nb * lines_per_block::<F>()` lines of the whole matrix and no
/// other thread writes these tiles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pack_tiles_vnni<F: Fmt>(w: &Weights, tiles: std::ops::Range<usize>, out: *mut Line) {
    let per_tile = w.cols() / QK * lines_per_block::<F>();
    for tile in tiles {
        let r0 = tile * TILE;
        pack_tile::<F>(w, r0, TILE.min(w.rows() - r0), out.add(tile * per_tile));
    }
}

/// A page-aligned buffer of lines, on transparent huge pages where the kernel allows it:
/// the packed weights are streamed every token, and 2 MiB pages spare the TLB misses of 4 KiB
/// ones (measured on SmolLM2: decode +11%, 310 vs 280 t/s). The price is paid at first
/// touch, while packing: on the development VM that varied from faster than 4 KiB pages to
/// several times slower (Gemma 3: 65 to 650 ms), so `bench` and `run --verbose` report it.
struct LineBuf {
    ptr: std::ptr::NonNull<Line>,
    len: usize,
    bytes: usize,
}

// SAFETY: the buffer is plain bytes owned by this value; shared access is read-only.
unsafe impl Send for LineBuf {}
// SAFETY: as above.
unsafe impl Sync for LineBuf {}

impl LineBuf {
    /// `len` uninitialised lines (the caller writes every one before reading).
    fn uninit(len: usize) -> LineBuf {
        let bytes = (len * 64).max(64).next_multiple_of(4096);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: an anonymous private mapping of `bytes` (> 0) bytes; no file involved.
            let raw = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if raw != libc::MAP_FAILED {
                // SAFETY: advice on the mapping just made; failure only means 4 KiB pages.
                unsafe { libc::madvise(raw, bytes, libc::MADV_HUGEPAGE) };
                if let Some(ptr) = std::ptr::NonNull::new(raw as *mut Line) {
                    return LineBuf { ptr, len, bytes };
                }
            }
            std::alloc::handle_alloc_error(Self::layout(bytes));
        }
        #[cfg(not(target_os = "linux"))]
        {
            let layout = Self::layout(bytes);
            // SAFETY: the layout has a non-zero size.
            let raw = unsafe { std::alloc::alloc(layout) };
            let Some(ptr) = std::ptr::NonNull::new(raw as *mut Line) else {
                std::alloc::handle_alloc_error(layout);
            };
            LineBuf { ptr, len, bytes }
        }
    }

    fn layout(bytes: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(bytes, 4096).expect("kernels: packed size overflows")
    }

    fn as_slice(&self) -> &[Line] {
        // SAFETY: `len` lines were allocated and have been written (see `uninit`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: mapped in `uninit` with this size.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.bytes);
        }
        #[cfg(not(target_os = "linux"))]
        // SAFETY: allocated in `uninit` with this layout.
        unsafe {
            std::alloc::dealloc(self.ptr.as_ptr().cast(), Self::layout(self.bytes))
        };
    }
}

/// A weight matrix repacked once (at model load) into the interleaved tiles the AVX-512
/// VNNI kernels read, so that no call repacks: the same bytes as the GGUF blocks (32-row
/// tiles, the last one padded with zero rows), read as one stream per tile. Built by
/// [`pack_weights`], attached with [`Weights::with_packed`]. Matrices packed together share
/// one allocation.
pub struct PackedWeights {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    arena: std::sync::Arc<LineBuf>,
    /// First line and number of lines in `arena`.
    start: usize,
    len: usize,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl PackedWeights {
    /// Element type of the packed matrix.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    /// Rows of the packed matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns of the packed matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes held by this matrix (the same as its GGUF blocks, plus the last tile's padding).
    pub fn bytes(&self) -> usize {
        self.len * 64
    }
    fn lines(&self) -> &[Line] {
        &self.arena.as_slice()[self.start..self.start + self.len]
    }
    /// The lines of tile `tile`.
    #[cfg(target_arch = "x86_64")]
    fn tile(&self, tile: usize, per_tile: usize) -> *const Line {
        self.lines()[tile * per_tile..(tile + 1) * per_tile].as_ptr()
    }

    /// Dequantizes row `r` (an embedding lookup on a tied output projection, so the file's
    /// copy of the matrix need not stay in memory). `out` holds `cols` floats.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        assert!(
            r < self.rows && out.len() == self.cols,
            "packed row {r} out of range"
        );
        match self.ty {
            GgmlType::Q4_0 => self.row_g::<Q4_0>(r, out),
            GgmlType::Q4_1 => self.row_g::<Q4_1>(r, out),
            GgmlType::Q5_0 => self.row_g::<Q5_0>(r, out),
            GgmlType::Q5_1 => self.row_g::<Q5_1>(r, out),
            _ => self.row_g::<Q8_0>(r, out),
        }
    }

    fn row_g<F: Fmt>(&self, r: usize, out: &mut [f32]) {
        let (lpb, cl) = (lines_per_block::<F>(), code_lines(F::BITS));
        let nb = self.cols / QK;
        let (tile, h, l) = (r / TILE, (r % TILE) / 16, r % 16);
        let lines = &self.lines()[tile * nb * lpb..(tile + 1) * nb * lpb];
        let half = |line: &Line, i: usize| -> [u8; 2] {
            let d = &line.0[2 * i..2 * i + 2];
            [d[0], d[1]]
        };
        for (b, o) in out.chunks_exact_mut(QK).enumerate() {
            let blk = &lines[b * lpb..(b + 1) * lpb];
            let d = f16::from_le_bytes(half(&blk[cl], r % TILE)).to_f32();
            let m = if F::HAS_MIN {
                f16::from_le_bytes(half(&blk[cl + 1], r % TILE)).to_f32()
            } else {
                0.0
            };
            for (j, o) in o.iter_mut().enumerate() {
                let (g, k) = (j / 4, j % 4);
                let byte = 4 * l + k;
                let u = match F::BITS {
                    8 => blk[2 * g + h].0[byte],
                    _ => {
                        let nib = (blk[g].0[byte] >> (4 * h)) & 0xF;
                        if F::BITS == 5 {
                            let mask = u64::from_le_bytes(
                                blk[8 + (2 * g + h) / 8].0[(2 * g + h) % 8 * 8..][..8]
                                    .try_into()
                                    .expect("8 bytes"),
                            );
                            nib | (((mask >> byte) & 1) as u8) << 4
                        } else {
                            nib
                        }
                    }
                };
                *o = d * (u as i32 - F::OFF) as f32 + m;
            }
        }
    }
}

fn lines_per_block_of(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_0 => lines_per_block::<Q4_0>(),
        GgmlType::Q4_1 => lines_per_block::<Q4_1>(),
        GgmlType::Q5_0 => lines_per_block::<Q5_0>(),
        GgmlType::Q5_1 => lines_per_block::<Q5_1>(),
        _ => lines_per_block::<Q8_0>(),
    }
}

/// Tiles per packing job: ~0.5-1 MB of weights, so `release` gives pages back as packing
/// goes and resident memory never holds much more than one copy of the matrices.
const PACK_CHUNK_TILES: usize = 32;

/// Repacks every matrix of `ws` (in one allocation, on `pool`) for this CPU's fastest
/// kernels; an entry is `None` when they would not read it packed (a format other than
/// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, or no AVX-512 VNNI on the selected instruction set): the
/// caller keeps using that matrix as it is. `release` is called with each part of a
/// matrix's `data()` once it has been packed (whole rows; the model loader drops those file
/// pages from memory).
pub fn pack_weights(
    pool: &ThreadPool,
    ws: &[Weights],
    release: &(dyn Fn(&[u8]) + Sync),
) -> Vec<Option<PackedWeights>> {
    pack_weights_isa(Isa::current(), pool, ws, release)
}

pub(crate) fn pack_weights_isa(
    isa: Isa,
    pool: &ThreadPool,
    ws: &[Weights],
    release: &(dyn Fn(&[u8]) + Sync),
) -> Vec<Option<PackedWeights>> {
    let packs = vnni_path().is_some_and(|p| Path::for_isa(isa) == p);
    // Where each packable matrix goes in the arena, and the jobs (matrix, tiles).
    let mut places = Vec::with_capacity(ws.len());
    let mut jobs = Vec::new();
    let mut total = 0;
    for (i, w) in ws.iter().enumerate() {
        if !packs || !handles(w.ty()) {
            places.push(None);
            continue;
        }
        let n_tiles = w.rows().div_ceil(TILE);
        let per_tile = (w.cols() / QK) * lines_per_block_of(w.ty());
        places.push(Some((total, n_tiles * per_tile)));
        total += n_tiles * per_tile;
        for t0 in (0..n_tiles).step_by(PACK_CHUNK_TILES) {
            jobs.push((i, t0..(t0 + PACK_CHUNK_TILES).min(n_tiles)));
        }
    }
    if total == 0 {
        return places.iter().map(|_| None).collect();
    }
    let arena = std::sync::Arc::new(LineBuf::uninit(total));
    #[cfg(target_arch = "x86_64")]
    {
        struct Out(*mut Line);
        // SAFETY: jobs write disjoint tiles of the arena.
        unsafe impl Sync for Out {}
        let out = Out(arena.ptr.as_ptr());
        let (out, places, jobs) = (&out, &places, &jobs);
        pool.for_each_chunk(jobs.len(), 1, |range| {
            for (i, tiles) in range.map(|j| jobs[j].clone()) {
                let w = &ws[i];
                let Some((start, _)) = places[i] else {
                    continue;
                };
                let (r0, r1) = (tiles.start * TILE, (tiles.end * TILE).min(w.rows()));
                // SAFETY: `Path::Vnni512` is only chosen when the CPU has these features;
                // the arena holds every matrix's tiles at its place; jobs are disjoint.
                unsafe {
                    let dst = out.0.add(start);
                    match w.ty() {
                        GgmlType::Q4_0 => pack_tiles_vnni::<Q4_0>(w, tiles, dst),
                        GgmlType::Q4_1 => pack_tiles_vnni::<Q4_1>(w, tiles, dst),
                        GgmlType::Q5_0 => pack_tiles_vnni::<Q5_0>(w, tiles, dst),
                        GgmlType::Q5_1 => pack_tiles_vnni::<Q5_1>(w, tiles, dst),
                        _ => pack_tiles_vnni::<Q8_0>(w, tiles, dst),
                    }
                }
                release(&w.data()[r0 * w.row_bytes()..r1 * w.row_bytes()]);
            }
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (pool, release, &jobs);
    ws.iter()
        .zip(places)
        .map(|(w, place)| {
            place.map(|(start, len)| PackedWeights {
                ty: w.ty(),
                rows: w.rows(),
                cols: w.cols(),
                arena: arena.clone(),
                start,
                len,
            })
        })
        .collect()
}

/// The path that reads packed weights, where this build has one.
fn vnni_path() -> Option<Path> {
    #[cfg(target_arch = "x86_64")]
    return Some(Path::Vnni512);
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Token count from which the AVX-512 VNNI path packs unpacked weights per call (the tiled
/// GEMM) instead of running the GEMV.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const GEMM_MIN_TOKENS: usize = 6;

/// Calls `f(tile, next)` for tiles `0..n_tiles` in guided runs: long runs of consecutive
/// tiles per take, so each thread streams through contiguous memory; `next` is the tile the
/// same thread takes after `tile`, if any (what its passes prefetch). Measured on SmolLM2, 8
/// sequences: 8.2 vs 9.1 ms a step with runs of at most 8 tiles taken in turn.
fn for_each_tile_guided(
    pool: &ThreadPool,
    n_tiles: usize,
    f: impl Fn(usize, Option<usize>) + Sync,
) {
    for_each_tile_guided_with(pool, n_tiles, || (), |_, tile, next| f(tile, next));
}

/// [`for_each_tile_guided`] with per-run working state made by `init` (scratch buffers set
/// up once per run of tiles, not per tile).
fn for_each_tile_guided_with<S>(
    pool: &ThreadPool,
    n_tiles: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, Option<usize>) + Sync,
) {
    pool.for_each_guided(n_tiles, 1, |tiles| {
        let mut state = init();
        let last = tiles.end - 1;
        for tile in tiles {
            f(&mut state, tile, (tile < last).then_some(tile + 1));
        }
    });
}

/// Runs the whole product for format `F` on `path`.
fn run<F: Fmt>(path: Path, pool: &ThreadPool, c: &Ctx) {
    let rows = c.w.rows();
    #[cfg(target_arch = "x86_64")]
    if path == Path::Vnni512 {
        let n_tiles = rows.div_ceil(TILE);
        let per_tile = c.a.nb * lines_per_block::<F>();
        if c.w.packed().is_some() {
            run_packed(pool, std::slice::from_ref(c));
            return;
        }
        if c.a.n_tokens >= GEMM_MIN_TOKENS {
            pool.for_each_chunk(n_tiles, 1, |tiles| {
                let mut buf = TILE_BUF.with(Cell::take);
                if buf.len() < per_tile {
                    buf.resize(per_tile, Line([0; 64]));
                }
                for tile in tiles {
                    let r0 = tile * TILE;
                    // SAFETY: as above; `buf` is large enough.
                    unsafe { gemm_tile_vnni::<F>(c, r0, TILE.min(rows - r0), buf.as_mut_ptr()) };
                }
                TILE_BUF.with(|b| b.set(buf));
            });
            return;
        }
    }
    // GEMV: chunks of rows (multiples of 4) sized so that each thread gets several.
    let n_threads = pool.n_threads().max(1);
    let chunk = (rows / (8 * n_threads)).clamp(16, 256) & !3;
    pool.for_each_chunk(rows.div_ceil(chunk), 1, |chunks| {
        for ch in chunks {
            let r0 = ch * chunk;
            let r1 = (r0 + chunk).min(rows);
            match path {
                // SAFETY: the path was chosen for this CPU; row ranges are disjoint.
                #[cfg(target_arch = "x86_64")]
                Path::Vnni512 => unsafe { gemv_vnni::<F>(c, r0, r1) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => unsafe { gemv_avx2::<F>(c, r0, r1) },
                Path::Scalar => gemv_scalar::<F>(c, r0, r1),
            }
        }
    });
}

/// Whether [`glu_packed`] can compute the gate and up products `g` and `u` on `path`: both
/// packed for it, of one type and shape, with whole tiles (each tile's 32 columns of the
/// activation are then one quantization block of the next product's input).
pub(crate) fn glu_fusable(path: Path, g: &Weights, u: &Weights) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        path == Path::Vnni512
            && handles(g.ty())
            && g.ty() == u.ty()
            && g.rows() == u.rows()
            && g.cols() == u.cols()
            && g.rows().is_multiple_of(TILE)
            && g.packed().is_some()
            && u.packed().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (path, g, u);
        false
    }
}

/// The gate and up products of `a` (quantized for `g.ty()`), tile by tile: as soon as a
/// thread has both products of a 32-row tile it applies the gated activation `glu` to those
/// 32 columns of every token and quantizes them (offset `off`) into `act`, one block per
/// token. The activation thus never waits in a serial pass between the two products, and
/// `act` is what `quantize_acts` would make of the activation row by row (same bodies, and
/// blocks are quantized independently).
///
/// `gate_out` and `up_out` (`a.n_tokens * g.rows()` floats) receive the two products.
/// Callers check [`glu_fusable`] first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn glu_packed(
    isa: Isa,
    pool: &ThreadPool,
    g: &Weights,
    u: &Weights,
    a: &ActQ,
    glu: crate::Glu,
    gate_out: &mut [f32],
    up_out: &mut [f32],
    act: &mut ActQ,
    off: i32,
) {
    assert!(
        glu_fusable(Path::for_isa(isa), g, u),
        "glu_packed: weights not fusable"
    );
    let rows = g.rows();
    assert!(
        a.cols == g.cols() && gate_out.len() == a.n_tokens * rows && up_out.len() == gate_out.len(),
        "glu_packed: lengths"
    );
    act.reshape(a.n_tokens, rows);
    if a.n_tokens == 0 {
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, pool, glu, off);
        unreachable!("glu_packed: no packed kernels on this architecture");
    }
    #[cfg(target_arch = "x86_64")]
    {
        const { assert!(TILE == QK) };
        let n = a.n_tokens;
        let (pg, pu) = (
            g.packed().expect("checked by glu_fusable"),
            u.packed().expect("checked by glu_fusable"),
        );
        let per_tile = a.nb * lines_per_block_of(g.ty());
        let (gate_out, up_out) = (SyncSlice::new(gate_out), SyncSlice::new(up_out));
        let cg = Ctx {
            w: g,
            a,
            out: Out::Contiguous(&gate_out),
        };
        let cu = Ctx {
            w: u,
            a,
            out: Out::Contiguous(&up_out),
        };
        let nb = act.nb;
        let qs = SyncSlice::new(&mut act.qs);
        let dd = SyncSlice::new(&mut act.dd);
        let bias = SyncSlice::new(&mut act.bias);
        // Up to 16 tokens' blocks of a tile are quantized as one row: the quantizer reduces 16
        // blocks at once.
        const GROUP: usize = 16;
        let scratch = || {
            (
                [0f32; GROUP * TILE],
                [0i8; GROUP * TILE],
                [[0f32; 2]; GROUP],
                [0i32; GROUP],
            )
        };
        for_each_tile_guided_with(pool, rows / TILE, scratch, |(h, hq, hd, hb), tile, next| {
            let r0 = tile * TILE;
            let next = next.map_or(std::ptr::null(), |t| pg.tile(t, per_tile));
            // SAFETY: `glu_fusable` chose `Path::Vnni512`, which needs these CPU features, and
            // `Weights::with_packed` checked the packings; each tile is one job's rows, and
            // the gate pass prefetches the up tile it reads next.
            unsafe {
                packed_tile(
                    &cg,
                    pg.tile(tile, per_tile),
                    pu.tile(tile, per_tile),
                    r0,
                    TILE,
                );
                packed_tile(&cu, pu.tile(tile, per_tile), next, r0, TILE);
            }
            for t0 in (0..n).step_by(GROUP) {
                let k = (n - t0).min(GROUP);
                for j in 0..k {
                    let t = t0 + j;
                    // SAFETY: columns `r0..r0 + 32` of every token belong to this tile's job.
                    let (gs, us) = unsafe {
                        (
                            &*gate_out.slice_mut(t * rows + r0, TILE),
                            &*up_out.slice_mut(t * rows + r0, TILE),
                        )
                    };
                    let hj = &mut h[j * TILE..(j + 1) * TILE];
                    match glu {
                        crate::Glu::Silu => crate::ops::swiglu_isa(isa, gs, us, hj),
                        crate::Glu::GeluTanh => crate::ops::geglu_isa(isa, gs, us, hj),
                    }
                }
                quant_row(
                    QPath::Avx512,
                    &h[..k * TILE],
                    &mut hq[..k * TILE],
                    &mut hd[..k],
                    &mut hb[..k],
                    off,
                );
                for j in 0..k {
                    let t = t0 + j;
                    // SAFETY: block `tile` of every token's activation is this job's alone.
                    unsafe {
                        qs.slice_mut(t * rows + r0, TILE)
                            .copy_from_slice(&hq[j * TILE..(j + 1) * TILE]);
                        dd.slice_mut(t * nb + tile, 1)[0] = hd[j];
                        bias.slice_mut(t * nb + tile, 1)[0] = hb[j];
                    }
                }
            }
        });
    }
}

/// `out[t * rows + r] = Σ W[r]·x[t]` for the 32-element block formats (`handles(w.ty())`),
/// with shapes already validated by the caller.
pub(crate) fn matmul_q32(
    isa: Isa,
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    matmul_q32_path(Path::for_isa(isa), pool, w, x, n_tokens, out)
}

/// [`matmul_q32`] on an explicit path (tests force GEMV or GEMM through `n_tokens`).
pub(crate) fn matmul_q32_path(
    path: Path,
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    debug_assert!(handles(w.ty()));
    if n_tokens == 0 || w.rows() == 0 {
        return;
    }
    let out = SyncSlice::new(out);
    quantize_and_run(path, pool, w, x, n_tokens, Out::Contiguous(&out));
}

/// Quantizes `n_tokens` rows of `x` for `w` into this thread's activation buffer and runs
/// the product into `out`.
fn quantize_and_run(
    path: Path,
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    n_tokens: usize,
    out: Out<'_>,
) {
    with_act(|a| {
        let off = type_off(w.ty());
        quantize_acts(path.qpath(), pool, x, n_tokens, w.cols(), off, a);
        run_any(path, pool, w, a, out);
    });
}

/// The product on activations `a` already quantized (by `quantize_acts` on `path.qpath()`,
/// with `w`'s `type_off`) for `w.cols()` columns; `out` holds `a.n_tokens * w.rows()` floats.
pub(crate) fn matmul_q32_act(
    path: Path,
    pool: &ThreadPool,
    w: &Weights,
    a: &ActQ,
    out: &mut [f32],
) {
    debug_assert!(handles(w.ty()) && a.cols == w.cols());
    if a.n_tokens == 0 || w.rows() == 0 {
        return;
    }
    let out = SyncSlice::new(out);
    run_any(path, pool, w, a, Out::Contiguous(&out));
}

/// [`matmul_q32`] with token `t`'s results in `outs[t]` (`w.rows()` floats each).
pub(crate) fn matmul_q32_rows(
    isa: Isa,
    pool: &ThreadPool,
    w: &Weights,
    x: &[f32],
    outs: &mut [&mut [f32]],
) {
    debug_assert!(handles(w.ty()) && outs.iter().all(|o| o.len() == w.rows()));
    let n_tokens = outs.len();
    if n_tokens == 0 || w.rows() == 0 {
        return;
    }
    let outs: Vec<SyncSlice<'_, f32>> = outs.iter_mut().map(|o| SyncSlice::new(o)).collect();
    quantize_and_run(
        Path::for_isa(isa),
        pool,
        w,
        x,
        n_tokens,
        Out::PerToken(&outs),
    );
}

/// Whether [`matmul_packed_many`] can run `ws` on `path`: all packed for it, with one
/// activation offset (one quantization of the input serves them all).
pub(crate) fn packed_many_fits(path: Path, ws: &[&Weights]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        path == Path::Vnni512
            && ws.iter().all(|w| handles(w.ty()) && w.packed().is_some())
            && ws
                .windows(2)
                .all(|p| type_off(p[0].ty()) == type_off(p[1].ty()))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (path, ws);
        false
    }
}

/// The products of several packed matrices with the same activations `a` as one parallel
/// job over all their tiles (callers check [`packed_many_fits`]): Q, K and V cost one
/// dispatch and one end-of-job wait instead of three, and each thread's last tile of one
/// matrix prefetches its first of the next. SmolLM2's K and V are 6 tiles each, so with 8
/// sequences the wait for the slower thread (up to a tile, ~2 us) was paid three times a
/// layer.
pub(crate) fn matmul_packed_many(
    pool: &ThreadPool,
    ws: &[&Weights],
    a: &ActQ,
    outs: &mut [&mut [f32]],
) {
    debug_assert!(ws.len() == outs.len() && ws.iter().all(|w| w.cols() == a.cols));
    if a.n_tokens == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let outs: Vec<SyncSlice<'_, f32>> = outs.iter_mut().map(|o| SyncSlice::new(o)).collect();
        let ctxs: Vec<Ctx<'_, '_>> = ws
            .iter()
            .zip(&outs)
            .map(|(w, o)| Ctx {
                w,
                a,
                out: Out::Contiguous(o),
            })
            .collect();
        run_packed(pool, &ctxs);
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("matmul_packed_many: no packed kernels on this architecture");
}

/// [`gemm_packed_tile_vnni`] for the format of `c.w`.
///
/// # Safety
/// As [`gemm_packed_tile_vnni`]: the CPU has AVX-512 VNNI (`Path::Vnni512`), `buf` is a tile
/// of `c.w`'s packing (checked by `Weights::with_packed`), rows `r0..r0 + nr` are the caller's.
#[cfg(target_arch = "x86_64")]
unsafe fn packed_tile(c: &Ctx, buf: *const Line, next: *const Line, r0: usize, nr: usize) {
    match c.w.ty() {
        GgmlType::Q4_0 => gemm_packed_tile_vnni::<Q4_0>(c, buf, next, r0, nr),
        GgmlType::Q4_1 => gemm_packed_tile_vnni::<Q4_1>(c, buf, next, r0, nr),
        GgmlType::Q5_0 => gemm_packed_tile_vnni::<Q5_0>(c, buf, next, r0, nr),
        GgmlType::Q5_1 => gemm_packed_tile_vnni::<Q5_1>(c, buf, next, r0, nr),
        GgmlType::Q8_0 => gemm_packed_tile_vnni::<Q8_0>(c, buf, next, r0, nr),
        _ => unreachable!("packed_tile: unsupported type"),
    }
}

/// The products of packed matrices (one or more, sharing their activations) as one parallel
/// job over all their tiles.
#[cfg(target_arch = "x86_64")]
fn run_packed(pool: &ThreadPool, ctxs: &[Ctx<'_, '_>]) {
    // Tile `i` of the combined index space is tile `i - first[m]` of matrix `m`.
    let mut first = Vec::with_capacity(ctxs.len() + 1);
    let mut total = 0;
    for c in ctxs {
        first.push(total);
        total += c.w.rows().div_ceil(TILE);
    }
    first.push(total);
    let locate = |i: usize| {
        let m = first.partition_point(|&f| f <= i) - 1;
        (m, i - first[m])
    };
    let tile_ptr = |m: usize, t: usize| {
        let c = &ctxs[m];
        let per_tile = c.a.nb * lines_per_block_of(c.w.ty());
        c.w.packed()
            .expect("packed matrices only")
            .tile(t, per_tile)
    };
    for_each_tile_guided(pool, total, |i, next| {
        let (m, t) = locate(i);
        let next = next.map_or(std::ptr::null(), |j| {
            let (nm, nt) = locate(j);
            tile_ptr(nm, nt)
        });
        let c = &ctxs[m];
        let r0 = t * TILE;
        let nr = TILE.min(c.w.rows() - r0);
        let buf = tile_ptr(m, t);
        // SAFETY: callers run packed matrices on `Path::Vnni512` only; each (matrix, tile)
        // is handed out once, and its rows are that job's.
        unsafe { packed_tile(c, buf, next, r0, nr) }
    });
}

fn run_any(path: Path, pool: &ThreadPool, w: &Weights, a: &ActQ, out: Out<'_>) {
    let c = Ctx { w, a, out };
    match w.ty() {
        GgmlType::Q4_0 => run::<Q4_0>(path, pool, &c),
        GgmlType::Q4_1 => run::<Q4_1>(path, pool, &c),
        GgmlType::Q5_0 => run::<Q5_0>(path, pool, &c),
        GgmlType::Q5_1 => run::<Q5_1>(path, pool, &c),
        GgmlType::Q8_0 => run::<Q8_0>(path, pool, &c),
        _ => unreachable!("matmul_q32: unsupported type"),
    }
}
