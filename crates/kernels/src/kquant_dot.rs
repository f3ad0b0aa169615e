//! K-quant matrix products (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K weights) in integer arithmetic,
//! against activations quantized once per call to Q8_K.
//!
//! # The math
//! Every K-quant element is `x = D * s_g * u - o_g` with `u` an unsigned integer (the stored
//! quant, offset included), `s_g` an integer scale per group of 16 elements (Q4_K / Q5_K
//! scales, per 32, are given to both halves), `D` the block's f32 super-scale and `o_g` an f32
//! offset per group: the min term `dmin * m` of Q2_K / Q4_K / Q5_K, or `D * s_g * 32` (Q6_K,
//! `q = u - 32`), `D * s_g * 4` (Q3_K, `q = u - 4` with `u = low | high_bit << 2`). With the
//! activation block `a = dx * q8`, one block contributes
//!
//! ```text
//! (D * dx) * Σ_g s_g Σ_{i∈g} u_i q8_i   -   Σ_g o_g * (dx * bsum_g)
//! ```
//!
//! The first sum is exact integer math (`u` is unsigned, `q8` signed: `maddubs` / `dpbusd`
//! operands); the second uses the Q8_K block sums, precomputed as floats (`ActBlock::bsf`),
//! so mins cost one FMA per 16 elements instead of per-element work.
//!
//! # Kernels
//! Each ISA unpacks one weight block into registers in natural element order (u8 quants,
//! 16 i16 group scales, `D`, 16 f32 offsets), then runs it against up to 4 tokens: per 64
//! (AVX-512) or 32 (AVX2) elements one `maddubs` (u8 x i8 -> i16 pairs) and one `dpwssd`
//! (VNNI) or `madd` + `add` that applies the group scales while accumulating in i32; per block
//! the i32 lanes are converted and accumulated in f32 with `D * dx`, and the offsets with one
//! FMA against `bsf`. Rows are split over the pool; for many tokens, a chunk of rows is run
//! against groups of 4 tokens, so each unpacked block serves 4 tokens and the activations of
//! the group stay in L1. The scalar reference does the same integer math.

#![allow(clippy::needless_range_loop)]

use crate::isa::runnable;
use crate::pool::SyncSlice;
use crate::{Isa, ThreadPool};
use half::f16;
use quant::GgmlType;
use std::cell::Cell;

/// Whether the weights of `ty` go through this module.
pub(crate) fn handles(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
    )
}

/// One Q8_K activation block plus its block sums as floats. 64-byte aligned so the kernels
/// read `qs` and `bsf` with aligned loads.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct ActBlock {
    /// `q8` values, natural order.
    pub(crate) qs: [i8; 256],
    /// `d * bsums[g]` for each group of 16.
    pub(crate) bsf: [f32; 16],
    /// `-32 * bsums[g]` as i32: the Q6_K code offset, the initial value of the tiled GEMM's
    /// per-group integer accumulators (`kquant_gemm`).
    pub(crate) nb32: [i32; 16],
    /// `d * (bsums[2j] + bsums[2j + 1])`: the block sums of the 8 sub-blocks of 32 (Q4_K /
    /// Q5_K mins in the tiled GEMM).
    pub(crate) bsf2: [f32; 8],
    /// Sums of each group of 16 `qs`.
    pub(crate) bsums: [i16; 16],
    /// The Q8_K scale (`x ≈ d * q8`).
    pub(crate) d: f32,
}

impl ActBlock {
    pub(crate) const ZERO: ActBlock = ActBlock {
        qs: [0; 256],
        bsf: [0.0; 16],
        nb32: [0; 16],
        bsf2: [0.0; 8],
        bsums: [0; 16],
        d: 0.0,
    };

    /// Fills `nb32` and `bsf2` from `bsums` and `d` (identically on every path).
    #[inline(always)]
    fn fill_derived(&mut self) {
        for g in 0..16 {
            self.nb32[g] = -32 * self.bsums[g] as i32;
        }
        for j in 0..8 {
            let s = self.bsums[2 * j] as i32 + self.bsums[2 * j + 1] as i32;
            self.bsf2[j] = self.d * s as f32;
        }
    }
}

/// Quantizes 256 floats to Q8_K exactly as `quant::quantize_block_q8_k` (ggml's
/// `quantize_row_q8_K_ref`), and fills the float block sums.
pub(crate) fn quantize_block_scalar(x: &[f32], o: &mut ActBlock) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in &x[..256] {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        *o = ActBlock::ZERO;
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in o.qs.iter_mut().zip(x) {
        *q = quant::nearest_int(iscale * v).min(127) as i8;
    }
    let d = 1.0 / iscale;
    for g in 0..16 {
        let s: i32 = o.qs[16 * g..16 * g + 16].iter().map(|&q| q as i32).sum();
        o.bsums[g] = s as i16;
        o.bsf[g] = d * s as f32;
    }
    o.d = d;
    o.fill_derived();
}

/// A weight block unpacked for the scalar reference (and for the SIMD paths of the types
/// without a SIMD unpacker).
struct Unpacked {
    /// Unsigned quants in element order.
    q: [u8; 256],
    /// Integer scale of each group of 16.
    sc: [i32; 16],
    /// Super-block scale.
    d: f32,
    /// Offset of each group of 16 (subtracted, times the activation block sum).
    m: [f32; 16],
}

impl Unpacked {
    const ZERO: Unpacked = Unpacked {
        q: [0; 256],
        sc: [0; 16],
        d: 0.0,
        m: [0.0; 16],
    };
}

#[inline(always)]
fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Q4_K / Q5_K 6-bit scales and mins of the 8 sub-blocks, as 8 bytes each.
#[inline(always)]
fn k4_scales_mins(s: &[u8]) -> (u64, u64) {
    let a = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let b = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let c = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let sc_lo = a & 0x3f3f_3f3f;
    let sc_hi = (c & 0x0f0f_0f0f) | ((a >> 2) & 0x3030_3030);
    let mn_lo = b & 0x3f3f_3f3f;
    let mn_hi = ((c >> 4) & 0x0f0f_0f0f) | ((b >> 2) & 0x3030_3030);
    (
        sc_lo as u64 | (sc_hi as u64) << 32,
        mn_lo as u64 | (mn_hi as u64) << 32,
    )
}

/// Unpacks one block of `ty` (exactly `ty.type_size()` bytes).
fn unpack_scalar(ty: GgmlType, b: &[u8], u: &mut Unpacked) {
    use GgmlType as T;
    match ty {
        T::Q4_K | T::Q5_K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, mn) = k4_scales_mins(&b[4..16]);
            let (qh, qs) = if ty == T::Q5_K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            for e in 0..256 {
                let mut q = (qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 0xF;
                if let Some(qh) = qh {
                    q |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
                }
                u.q[e] = q;
            }
            for g in 0..16 {
                let j = g / 2;
                u.sc[g] = ((sc >> (8 * j)) & 0xFF) as i32;
                u.m[g] = ((mn >> (8 * j)) & 0xFF) as f32 * dmin;
            }
            u.d = d;
        }
        T::Q6_K => {
            let d = f16_at(b, 208);
            for e in 0..256 {
                let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
                let low = (b[64 * h + 32 * (k & 1) + l] >> (4 * (k / 2))) & 0xF;
                let high = (b[128 + 32 * h + l] >> (2 * k)) & 3;
                u.q[e] = low | (high << 4);
            }
            for g in 0..16 {
                let s = b[192 + g] as i8 as i32;
                u.sc[g] = s;
                u.m[g] = s as f32 * (32.0 * d);
            }
            u.d = d;
        }
        T::Q3_K => {
            let d = f16_at(b, 108);
            let scales = quant::blocks::q3_k_scales(b[96..108].try_into().unwrap());
            for e in 0..256 {
                let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
                let low = (b[32 + 32 * h + l] >> (2 * k)) & 3;
                let high = (b[l] >> (e / 32)) & 1;
                u.q[e] = low | (high << 2);
            }
            for g in 0..16 {
                let s = scales[g] as i32;
                u.sc[g] = s;
                u.m[g] = s as f32 * (4.0 * d);
            }
            u.d = d;
        }
        T::Q2_K => {
            let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
            for e in 0..256 {
                let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
                u.q[e] = (b[16 + 32 * h + l] >> (2 * k)) & 3;
            }
            for g in 0..16 {
                u.sc[g] = (b[g] & 0xF) as i32;
                u.m[g] = (b[g] >> 4) as f32 * dmin;
            }
            u.d = d;
        }
        _ => unreachable!("kquant_dot: {ty} is not a K-quant"),
    }
}

/// The scalar reference: one weight row (`nb` blocks) against one activation row.
pub(crate) fn dot_row_scalar(ty: GgmlType, row: &[u8], act: &[ActBlock]) -> f32 {
    let ts = ty.type_size();
    let mut u = Unpacked::ZERO;
    let mut acc = 0.0f32;
    for (b, a) in row.chunks_exact(ts).zip(act) {
        unpack_scalar(ty, b, &mut u);
        let mut isum = 0i32;
        for g in 0..16 {
            let mut s = 0i32;
            for i in 16 * g..16 * g + 16 {
                s += u.q[i] as i32 * a.qs[i] as i32;
            }
            isum += u.sc[g] * s;
        }
        acc += isum as f32 * (u.d * a.d);
        let mut off = 0.0f32;
        for g in 0..16 {
            off += u.m[g] * a.bsf[g];
        }
        acc -= off;
    }
    acc
}

thread_local! {
    /// Per-calling-thread activation buffer; grows to the largest call seen, then is reused.
    static ACT: Cell<Vec<ActBlock>> = const { Cell::new(Vec::new()) };
}

/// Everything a row-range job needs.
struct Job<'a> {
    ty: GgmlType,
    data: &'a [u8],
    row_bytes: usize,
    rows: usize,
    nb: usize,
    act: &'a [ActBlock],
    n_tokens: usize,
    out: &'a SyncSlice<'a, f32>,
}

/// Most tokens per group: each unpacked weight block is used for up to this many tokens.
const TOK_GROUP: usize = 8;

/// Which kernel body runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

fn path_for(isa: Isa) -> Path {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if runnable(Isa::Avx512) => {
            #[cfg(test)]
            let vnni_allowed = !test_api::NO_VNNI.with(Cell::get);
            #[cfg(not(test))]
            let vnni_allowed = true;
            if vnni_allowed && std::arch::is_x86_feature_detected!("avx512vnni") {
                Path::Avx512Vnni
            } else {
                Path::Avx512
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if runnable(Isa::Avx2) => Path::Avx2,
        _ => Path::Scalar,
    }
}

/// Quantizes tokens `tokens` of `x` into `act`.
fn quantize_tokens(
    path: Path,
    x: &[f32],
    cols: usize,
    act: &SyncSlice<ActBlock>,
    t0: usize,
    t1: usize,
) {
    let nb = cols / 256;
    for t in t0..t1 {
        // SAFETY: each token's blocks are written by exactly one call (token ranges are
        // disjoint).
        let a = unsafe { act.slice_mut(t * nb, nb) };
        let xr = &x[t * cols..(t + 1) * cols];
        match path {
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 | Path::Avx512Vnni => {
                // SAFETY: `path_for` checked AVX-512 F/BW support.
                unsafe { x86::quantize_row_avx512(xr, a) }
            }
            _ => {
                for (o, xb) in a.iter_mut().zip(xr.chunks_exact(256)) {
                    quantize_block_scalar(xb, o);
                }
            }
        }
    }
}

/// Rows `r0..r1` for every token.
fn run_rows(path: Path, job: &Job, r0: usize, r1: usize) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY (all three): `path_for` checked the CPU features each body enables.
        Path::Avx512Vnni => unsafe { x86::rows_avx512_vnni(job, r0, r1) },
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => unsafe { x86::rows_avx512(job, r0, r1) },
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe { x86::rows_avx2(job, r0, r1) },
        Path::Scalar => {
            let nb = job.nb;
            for t in 0..job.n_tokens {
                // SAFETY: row ranges of different jobs are disjoint; one thread per range.
                let o = unsafe { job.out.slice_mut(t * job.rows + r0, r1 - r0) };
                let a = &job.act[t * nb..(t + 1) * nb];
                for (i, r) in (r0..r1).enumerate() {
                    let row = &job.data[r * job.row_bytes..(r + 1) * job.row_bytes];
                    o[i] = dot_row_scalar(job.ty, row, a);
                }
            }
        }
    }
}

/// `out[t * rows + r] = W[r] · x[t]` for K-quant weights; shapes were validated by the caller
/// (`cols` is a multiple of 256, `x` and `out` have the right lengths, `n_tokens > 0`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_kq(
    isa: Isa,
    pool: &ThreadPool,
    ty: GgmlType,
    data: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    with_act(|act| {
        let act = quantize_act(isa, pool, x, cols, n_tokens, act);
        matmul_kq_act(isa, pool, ty, data, rows, cols, act, n_tokens, out);
    });
}

/// Runs `f` with this thread's reusable activation buffer.
pub(crate) fn with_act<R>(f: impl FnOnce(&mut Vec<ActBlock>) -> R) -> R {
    let mut act = ACT.with(Cell::take);
    let r = f(&mut act);
    ACT.with(|c| c.set(act));
    r
}

/// Quantizes `n_tokens` rows of `cols` values of `x` to Q8_K into `act` (grown as needed) and
/// returns the `n_tokens * cols / 256` blocks written.
pub(crate) fn quantize_act<'a>(
    isa: Isa,
    pool: &ThreadPool,
    x: &[f32],
    cols: usize,
    n_tokens: usize,
    act: &'a mut Vec<ActBlock>,
) -> &'a [ActBlock] {
    let path = path_for(isa);
    let n_act = n_tokens * (cols / 256);
    if act.len() < n_act {
        act.resize(n_act, ActBlock::ZERO);
    }
    let act_s = SyncSlice::new(&mut act[..n_act]);
    if n_tokens >= 16 {
        pool.for_each_chunk(n_tokens, 8, |r| {
            quantize_tokens(path, x, cols, &act_s, r.start, r.end)
        });
    } else {
        quantize_tokens(path, x, cols, &act_s, 0, n_tokens);
    }
    &act[..n_act]
}

/// [`matmul_kq`] on activations already quantized by [`quantize_act`] with the same `isa`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_kq_act(
    isa: Isa,
    pool: &ThreadPool,
    ty: GgmlType,
    data: &[u8],
    rows: usize,
    cols: usize,
    act: &[ActBlock],
    n_tokens: usize,
    out: &mut [f32],
) {
    let path = path_for(isa);
    let nb = cols / 256;
    let n_act = n_tokens * nb;
    debug_assert_eq!(act.len(), n_act);
    let out = SyncSlice::new(out);
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512Vnni
        && n_tokens >= crate::kquant_gemm::GEMM_MIN_TOKENS
        && crate::kquant_gemm::handles(ty)
    {
        let c = crate::kquant_gemm::Ctx {
            data,
            row_bytes: data.len() / rows.max(1),
            rows,
            nb,
            act,
            n_tokens,
            out: &out,
        };
        // SAFETY: `Path::Avx512Vnni` is chosen only when the CPU has AVX-512 F/BW/VL/VNNI
        // (and AVX2, FMA, F16C); the caller validated the shapes.
        unsafe { crate::kquant_gemm::gemm(pool, ty, &c) };
        return;
    }
    let job = Job {
        ty,
        data,
        row_bytes: data.len() / rows.max(1),
        rows,
        nb,
        act,
        n_tokens,
        out: &out,
    };
    // Few tokens: small chunks for balance; many: 32 rows (about 54 KiB of Q6_K at 2048
    // columns) stay in L2 while every token group runs over them.
    let n_thr = pool.n_threads().max(1);
    let chunk = if n_tokens <= 4 {
        rows.div_ceil(8 * n_thr).clamp(4, 16)
    } else {
        rows.div_ceil(2 * n_thr).clamp(4, 32)
    };
    pool.for_each_chunk(rows, chunk, |r| run_rows(path, &job, r.start, r.end));
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::{ActBlock, Job, Unpacked, TOK_GROUP};
    use quant::GgmlType;
    use std::arch::x86_64::*;

    /// A block unpacked into AVX-512 registers: element `64k + i` is byte `i` of `w[k]`.
    pub(crate) struct U512 {
        pub(crate) w: [__m512i; 4],
        /// The 16 group scales as i16.
        pub(crate) sc16: __m256i,
        pub(crate) d: f32,
        pub(crate) m: __m512,
    }

    /// A block unpacked into AVX2 registers: element `32k + i` is byte `i` of `w[k]`.
    pub(crate) struct U256 {
        w: [__m256i; 8],
        sc16: __m256i,
        d: f32,
        m: [__m256; 2],
    }

    /// Per-type unpackers. Callers guarantee the CPU features of the enclosing
    /// `#[target_feature]` function (AVX-512 F/BW for `u512`, AVX2 for `u256`) and that `b`
    /// points at a whole block.
    pub(crate) trait KQ {
        const BYTES: usize;
        unsafe fn u512(b: *const u8) -> U512;
        unsafe fn u256(b: *const u8) -> U256;
    }

    /// `d` and `dmin` (two f16 at `b`) as f32.
    #[inline(always)]
    unsafe fn two_f16(b: *const u8) -> (f32, f32) {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(b as *const i32)));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    #[inline(always)]
    unsafe fn one_f16(b: *const u8) -> f32 {
        let h = std::ptr::read_unaligned(b as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }

    /// Q4_K / Q5_K scales duplicated per group of 16 (as 16 i16) and offsets `dmin * m`.
    #[inline(always)]
    unsafe fn k4_scales(b: *const u8) -> (__m256i, __m128i, f32, f32) {
        let s = std::slice::from_raw_parts(b.add(4), 12);
        let (sc, mn) = super::k4_scales_mins(s);
        let (d, dmin) = two_f16(b);
        let sc = _mm_cvtsi64_si128(sc as i64);
        let mn = _mm_cvtsi64_si128(mn as i64);
        let sc16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sc, sc));
        (sc16, _mm_unpacklo_epi8(mn, mn), d, dmin)
    }

    /// i16 lanes `[lo; 16] ++ [hi; 16]`.
    #[inline(always)]
    unsafe fn halves16(lo: i16, hi: i16) -> __m512i {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(lo)),
            _mm256_set1_epi16(hi),
        )
    }

    /// `a | (b & c)`.
    #[inline(always)]
    unsafe fn or_and512(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
        _mm512_ternarylogic_epi32::<0xF8>(a, b, c)
    }

    pub(crate) struct Q4K;
    pub(crate) struct Q5K;
    pub(crate) struct Q6K;
    pub(super) struct Generic<const T: u8>;

    /// Nibbles of `qs[0..64]` as chunks: elements `0..64` and `64..128` of the 128 coded.
    #[inline(always)]
    unsafe fn k4_nibbles512(qs: *const u8) -> (__m512i, __m512i) {
        let m = _mm512_set1_epi8(0x0F);
        let q = _mm512_loadu_si512(qs as *const _);
        let lo = _mm512_and_si512(q, m);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m);
        (
            _mm512_shuffle_i64x2::<0x44>(lo, hi),
            _mm512_shuffle_i64x2::<0xEE>(lo, hi),
        )
    }

    impl KQ for Q4K {
        const BYTES: usize = 144;
        #[inline(always)]
        unsafe fn u512(b: *const u8) -> U512 {
            let (sc16, mn, d, dmin) = k4_scales(b);
            let (w0, w1) = k4_nibbles512(b.add(16));
            let (w2, w3) = k4_nibbles512(b.add(80));
            let m = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mn)),
                _mm512_set1_ps(dmin),
            );
            U512 {
                w: [w0, w1, w2, w3],
                sc16,
                d,
                m,
            }
        }
        #[inline(always)]
        unsafe fn u256(b: *const u8) -> U256 {
            let (sc16, mn, d, dmin) = k4_scales(b);
            let m4 = _mm256_set1_epi8(0x0F);
            let mut w = [_mm256_setzero_si256(); 8];
            for c in 0..4 {
                let q = _mm256_loadu_si256(b.add(16 + 32 * c) as *const _);
                w[2 * c] = _mm256_and_si256(q, m4);
                w[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            }
            U256 {
                w,
                sc16,
                d,
                m: mins256(mn, dmin),
            }
        }
    }

    /// 16 unsigned bytes times `f` as two 8-lane f32 vectors.
    #[inline(always)]
    unsafe fn mins256(mn: __m128i, f: f32) -> [__m256; 2] {
        let f = _mm256_set1_ps(f);
        [
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn)), f),
            _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(mn))),
                f,
            ),
        ]
    }

    impl KQ for Q5K {
        const BYTES: usize = 176;
        #[inline(always)]
        unsafe fn u512(b: *const u8) -> U512 {
            let (sc16, mn, d, dmin) = k4_scales(b);
            let (n0, n1) = k4_nibbles512(b.add(48));
            let (n2, n3) = k4_nibbles512(b.add(112));
            let hb = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(16) as *const _));
            let bit = _mm512_set1_epi8(0x10);
            // Chunk k: lower half needs bit 2k of qh at bit 4, upper half bit 2k + 1.
            let h0 = _mm512_sllv_epi16(hb, halves16(4, 3));
            let h1 = _mm512_sllv_epi16(hb, halves16(2, 1));
            let h2 = _mm512_srlv_epi16(hb, halves16(0, 1));
            let h3 = _mm512_srlv_epi16(hb, halves16(2, 3));
            let m = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mn)),
                _mm512_set1_ps(dmin),
            );
            U512 {
                w: [
                    or_and512(n0, h0, bit),
                    or_and512(n1, h1, bit),
                    or_and512(n2, h2, bit),
                    or_and512(n3, h3, bit),
                ],
                sc16,
                d,
                m,
            }
        }
        #[inline(always)]
        unsafe fn u256(b: *const u8) -> U256 {
            let (sc16, mn, d, dmin) = k4_scales(b);
            let m4 = _mm256_set1_epi8(0x0F);
            let bit = _mm256_set1_epi8(0x10);
            let hq = _mm256_loadu_si256(b.add(16) as *const _);
            let mut w = [_mm256_setzero_si256(); 8];
            for c in 0..4 {
                let q = _mm256_loadu_si256(b.add(48 + 32 * c) as *const _);
                let lo = _mm256_and_si256(q, m4);
                let hn = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                w[2 * c] = _mm256_or_si256(lo, q5_bit256(hq, 2 * c as i32, bit));
                w[2 * c + 1] = _mm256_or_si256(hn, q5_bit256(hq, 2 * c as i32 + 1, bit));
            }
            U256 {
                w,
                sc16,
                d,
                m: mins256(mn, dmin),
            }
        }
    }

    /// Bit `k` of each byte of `hq` moved to bit 4 (other bits cleared).
    #[inline(always)]
    unsafe fn q5_bit256(hq: __m256i, k: i32, bit: __m256i) -> __m256i {
        let s = if k < 4 {
            _mm256_sll_epi16(hq, _mm_cvtsi32_si128(4 - k))
        } else {
            _mm256_srl_epi16(hq, _mm_cvtsi32_si128(k - 4))
        };
        _mm256_and_si256(s, bit)
    }

    impl KQ for Q6K {
        const BYTES: usize = 210;
        #[inline(always)]
        unsafe fn u512(b: *const u8) -> U512 {
            let d = one_f16(b.add(208));
            let s8 = _mm_loadu_si128(b.add(192) as *const _);
            let m4 = _mm512_set1_epi8(0x0F);
            let hmask = _mm512_set1_epi8(0x30);
            let mut w = [_mm512_setzero_si512(); 4];
            for h in 0..2 {
                let ql = _mm512_loadu_si512(b.add(64 * h) as *const _);
                let hb =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(128 + 32 * h) as *const _));
                // Elements 128h + 0..64: low nibbles, qh bits 0-1 (lower half), 2-3 (upper).
                let lo = _mm512_and_si512(ql, m4);
                let h01 = _mm512_sllv_epi16(hb, halves16(4, 2));
                w[2 * h] = or_and512(lo, h01, hmask);
                // Elements 128h + 64..128: high nibbles, qh bits 4-5, 6-7.
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4);
                let h23 = _mm512_srlv_epi16(hb, halves16(0, 2));
                w[2 * h + 1] = or_and512(hi, h23, hmask);
            }
            let m = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(s8)),
                _mm512_set1_ps(32.0 * d),
            );
            U512 {
                w,
                sc16: _mm256_cvtepi8_epi16(s8),
                d,
                m,
            }
        }
        #[inline(always)]
        unsafe fn u256(b: *const u8) -> U256 {
            let d = one_f16(b.add(208));
            let s8 = _mm_loadu_si128(b.add(192) as *const _);
            let m4 = _mm256_set1_epi8(0x0F);
            let hmask = _mm256_set1_epi8(0x30);
            let mut w = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let hq = _mm256_loadu_si256(b.add(128 + 32 * h) as *const _);
                let hbits = [
                    _mm256_and_si256(_mm256_slli_epi16::<4>(hq), hmask),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(hq), hmask),
                    _mm256_and_si256(hq, hmask),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(hq), hmask),
                ];
                for j in 0..2 {
                    let ql = _mm256_loadu_si256(b.add(64 * h + 32 * j) as *const _);
                    let lo = _mm256_and_si256(ql, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(ql), m4);
                    w[4 * h + j] = _mm256_or_si256(lo, hbits[j]);
                    w[4 * h + 2 + j] = _mm256_or_si256(hi, hbits[2 + j]);
                }
            }
            let f = _mm256_set1_ps(32.0 * d);
            let m = [
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(s8)), f),
                _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(s8))),
                    f,
                ),
            ];
            U256 {
                w,
                sc16: _mm256_cvtepi8_epi16(s8),
                d,
                m,
            }
        }
    }

    const fn generic_ty(t: u8) -> GgmlType {
        if t == 2 {
            GgmlType::Q2_K
        } else {
            GgmlType::Q3_K
        }
    }

    /// Scalar unpack, then loads: Q2_K (`T = 2`) and Q3_K (`T = 3`).
    impl<const T: u8> KQ for Generic<T> {
        const BYTES: usize = if T == 2 { 84 } else { 110 };
        #[inline(always)]
        unsafe fn u512(b: *const u8) -> U512 {
            let mut u = Unpacked::ZERO;
            super::unpack_scalar(
                generic_ty(T),
                std::slice::from_raw_parts(b, Self::BYTES),
                &mut u,
            );
            let q = u.q.as_ptr();
            let mut w = [_mm512_setzero_si512(); 4];
            for k in 0..4 {
                w[k] = _mm512_loadu_si512(q.add(64 * k) as *const _);
            }
            U512 {
                w,
                sc16: _mm512_cvtepi32_epi16(_mm512_loadu_si512(u.sc.as_ptr() as *const _)),
                d: u.d,
                m: _mm512_loadu_ps(u.m.as_ptr()),
            }
        }
        #[inline(always)]
        unsafe fn u256(b: *const u8) -> U256 {
            let mut u = Unpacked::ZERO;
            super::unpack_scalar(
                generic_ty(T),
                std::slice::from_raw_parts(b, Self::BYTES),
                &mut u,
            );
            let q = u.q.as_ptr();
            let s = u.sc.as_ptr() as *const __m256i;
            let packed = _mm256_packs_epi32(_mm256_loadu_si256(s), _mm256_loadu_si256(s.add(1)));
            let mut w = [_mm256_setzero_si256(); 8];
            for k in 0..8 {
                w[k] = _mm256_loadu_si256(q.add(32 * k) as *const _);
            }
            U256 {
                w,
                sc16: _mm256_permute4x64_epi64::<0xD8>(packed),
                d: u.d,
                m: [
                    _mm256_loadu_ps(u.m.as_ptr()),
                    _mm256_loadu_ps(u.m.as_ptr().add(8)),
                ],
            }
        }
    }

    /// `IDX512[k][i] = 4k + i / 8`: the group of i16 lane `i` of chunk `k`.
    static IDX512: [[i16; 32]; 4] = {
        let mut t = [[0i16; 32]; 4];
        let mut k = 0;
        while k < 4 {
            let mut i = 0;
            while i < 32 {
                t[k][i] = (4 * k + i / 8) as i16;
                i += 1;
            }
            k += 1;
        }
        t
    };

    /// The group of i16 lane `p` of `packs_epi32(dpbusd(chunk 2c), dpbusd(chunk 2c + 1))`:
    /// in 128-bit lane `L`, i16 0..4 are dwords `4L..4L + 4` of chunk `2c`, 4..8 those of
    /// chunk `2c + 1`; dword `j` of chunk `k` covers group `4k + j / 4`.
    static IDX_PACKED: [[i16; 32]; 2] = {
        let mut t = [[0i16; 32]; 2];
        let mut c = 0;
        while c < 2 {
            let mut p = 0;
            while p < 32 {
                let k = 2 * c + if p % 8 >= 4 { 1 } else { 0 };
                t[c][p] = (4 * k + p / 8) as i16;
                p += 1;
            }
            c += 1;
        }
        t
    };

    /// One row (`nb` blocks at `row`) against `T` tokens' activation rows.
    #[inline(always)]
    unsafe fn dot512<const VNNI: bool, K: KQ, const T: usize>(
        row: *const u8,
        nb: usize,
        a: [*const ActBlock; T],
    ) -> [f32; T] {
        let mut acc = [_mm512_setzero_ps(); T];
        let mut idx = [_mm512_setzero_si512(); 4];
        for k in 0..4 {
            idx[k] = if VNNI {
                _mm512_loadu_si512(IDX_PACKED[k % 2].as_ptr() as *const _)
            } else {
                _mm512_loadu_si512(IDX512[k].as_ptr() as *const _)
            };
        }
        for b in 0..nb {
            let u = K::u512(row.add(b * K::BYTES));
            let s16 = _mm512_castsi256_si512(u.sc16);
            let mut sc = [_mm512_setzero_si512(); 4];
            for k in 0..if VNNI { 2 } else { 4 } {
                sc[k] = _mm512_permutexvar_epi16(idx[k], s16);
            }
            for t in 0..T {
                let ab = &*a[t].add(b);
                let q = ab.qs.as_ptr();
                let s = if VNNI {
                    // u8 x i8 dots of 4 (one dpbusd per 64 elements); each i32 is at most
                    // 4 * 63 * 127 < 2^15 in magnitude, so chunk pairs pack to i16 exactly and
                    // one madd / dpwssd applies the group scales.
                    let z = _mm512_setzero_si512();
                    let mut d = [z; 4];
                    for k in 0..4 {
                        let av = _mm512_load_si512(q.add(64 * k) as *const _);
                        d[k] = _mm512_dpbusd_epi32(z, u.w[k], av);
                    }
                    let p01 = _mm512_packs_epi32(d[0], d[1]);
                    let p23 = _mm512_packs_epi32(d[2], d[3]);
                    _mm512_dpwssd_epi32(_mm512_madd_epi16(p01, sc[0]), p23, sc[1])
                } else {
                    let mut s = _mm512_setzero_si512();
                    for k in 0..4 {
                        let av = _mm512_load_si512(q.add(64 * k) as *const _);
                        let p = _mm512_maddubs_epi16(u.w[k], av);
                        s = _mm512_add_epi32(s, _mm512_madd_epi16(p, sc[k]));
                    }
                    s
                };
                let dd = _mm512_set1_ps(u.d * ab.d);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[t]);
                acc[t] = _mm512_fnmadd_ps(u.m, _mm512_load_ps(ab.bsf.as_ptr()), acc[t]);
            }
        }
        let mut r = [0.0; T];
        for t in 0..T {
            r[t] = _mm512_reduce_add_ps(acc[t]);
        }
        r
    }

    /// Bytes `[0, 1] x 8` in the low 128-bit lane and `[2, 3] x 8` in the high one.
    static SHUF256: [u8; 32] = [
        0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        2, 3,
    ];

    #[inline(always)]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn dot256<K: KQ, const T: usize>(
        row: *const u8,
        nb: usize,
        a: [*const ActBlock; T],
    ) -> [f32; T] {
        let mut acc = [_mm256_setzero_ps(); T];
        let shuf = _mm256_loadu_si256(SHUF256.as_ptr() as *const _);
        for b in 0..nb {
            let u = K::u256(row.add(b * K::BYTES));
            // Chunk k covers groups 2k (low 128 bits) and 2k + 1 (high): dword k holds both.
            let mut sc = [_mm256_setzero_si256(); 8];
            for k in 0..8 {
                let p = _mm256_permutevar8x32_epi32(u.sc16, _mm256_set1_epi32(k as i32));
                sc[k] = _mm256_shuffle_epi8(p, shuf);
            }
            for t in 0..T {
                let ab = &*a[t].add(b);
                let q = ab.qs.as_ptr();
                let mut s = _mm256_setzero_si256();
                for k in 0..8 {
                    let p =
                        _mm256_maddubs_epi16(u.w[k], _mm256_load_si256(q.add(32 * k) as *const _));
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(p, sc[k]));
                }
                let dd = _mm256_set1_ps(u.d * ab.d);
                let bsf = ab.bsf.as_ptr();
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), dd, acc[t]);
                acc[t] = _mm256_fnmadd_ps(u.m[0], _mm256_load_ps(bsf), acc[t]);
                acc[t] = _mm256_fnmadd_ps(u.m[1], _mm256_load_ps(bsf.add(8)), acc[t]);
            }
        }
        let mut r = [0.0; T];
        for t in 0..T {
            r[t] = hsum256(acc[t]);
        }
        r
    }

    /// The kernel selector: `W = 0` AVX2, `1` AVX-512, `2` AVX-512 VNNI.
    #[inline(always)]
    unsafe fn dot<const W: u8, K: KQ, const T: usize>(
        row: *const u8,
        nb: usize,
        a: [*const ActBlock; T],
    ) -> [f32; T] {
        match W {
            0 => dot256::<K, T>(row, nb, a),
            1 => dot512::<false, K, T>(row, nb, a),
            _ => dot512::<true, K, T>(row, nb, a),
        }
    }

    #[inline(always)]
    unsafe fn rows_t<const W: u8, K: KQ>(job: &Job, r0: usize, r1: usize) {
        let nb = job.nb;
        let act = job.act.as_ptr();
        let mut t0 = 0;
        while t0 < job.n_tokens {
            // Groups of 8 where the registers allow (AVX-512), else 4; then the remainder.
            let left = job.n_tokens - t0;
            let nt = if W > 0 && left >= 8 { 8 } else { left.min(4) };
            let a = |i: usize| act.add((t0 + i.min(nt - 1)) * nb);
            let mut res = [0.0f32; TOK_GROUP];
            for r in r0..r1 {
                let row = job.data.as_ptr().add(r * job.row_bytes);
                match nt {
                    1 => res[..1].copy_from_slice(&dot::<W, K, 1>(row, nb, [a(0)])),
                    2 => res[..2].copy_from_slice(&dot::<W, K, 2>(row, nb, [a(0), a(1)])),
                    3 => res[..3].copy_from_slice(&dot::<W, K, 3>(row, nb, [a(0), a(1), a(2)])),
                    4 => {
                        res[..4].copy_from_slice(&dot::<W, K, 4>(row, nb, [a(0), a(1), a(2), a(3)]))
                    }
                    _ => res.copy_from_slice(&dot::<W, K, 8>(
                        row,
                        nb,
                        [0, 1, 2, 3, 4, 5, 6, 7].map(a),
                    )),
                }
                for i in 0..nt {
                    // SAFETY: element (t0 + i, r) belongs to this job's row range only.
                    job.out.slice_mut((t0 + i) * job.rows + r, 1)[0] = res[i];
                }
            }
            t0 += nt;
        }
    }

    #[inline(always)]
    unsafe fn rows_g<const W: u8>(job: &Job, r0: usize, r1: usize) {
        match job.ty {
            GgmlType::Q4_K => rows_t::<W, Q4K>(job, r0, r1),
            GgmlType::Q5_K => rows_t::<W, Q5K>(job, r0, r1),
            GgmlType::Q6_K => rows_t::<W, Q6K>(job, r0, r1),
            GgmlType::Q2_K => rows_t::<W, Generic<2>>(job, r0, r1),
            GgmlType::Q3_K => rows_t::<W, Generic<3>>(job, r0, r1),
            t => unreachable!("kquant_dot: {t}"),
        }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn rows_avx512_vnni(job: &Job, r0: usize, r1: usize) {
        rows_g::<2>(job, r0, r1)
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn rows_avx512(job: &Job, r0: usize, r1: usize) {
        rows_g::<1>(job, r0, r1)
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_avx2(job: &Job, r0: usize, r1: usize) {
        rows_g::<0>(job, r0, r1)
    }

    /// Q8_K quantization of one row (`a.len()` blocks), bit-identical to the scalar one.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW; `x.len() == 256 * a.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn quantize_row_avx512(x: &[f32], a: &mut [ActBlock]) {
        for (o, xb) in a.iter_mut().zip(x.chunks_exact(256)) {
            let p = xb.as_ptr();
            let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut vmin = _mm512_set1_ps(f32::INFINITY);
            for j in 0..16 {
                let v = _mm512_loadu_ps(p.add(16 * j));
                vmax = _mm512_max_ps(vmax, v);
                vmin = _mm512_min_ps(vmin, v);
            }
            let (mx, mn) = (_mm512_reduce_max_ps(vmax), _mm512_reduce_min_ps(vmin));
            // The element of largest magnitude, the first one on a tie (as the reference).
            let max = if mx > -mn {
                mx
            } else if -mn > mx {
                mn
            } else {
                xb.iter().copied().find(|v| v.abs() == mx).unwrap_or(0.0)
            };
            if max == 0.0 || max.is_nan() {
                // All zero (or NaN): the scalar path decides.
                super::quantize_block_scalar(xb, o);
                continue;
            }
            let iscale = -127.0 / max;
            let vs = _mm512_set1_ps(iscale);
            let d = 1.0 / iscale;
            for j in 0..16 {
                let v = _mm512_mul_ps(_mm512_loadu_ps(p.add(16 * j)), vs);
                let q = _mm512_min_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(127));
                let s = _mm512_reduce_add_epi32(q);
                _mm_store_si128(
                    o.qs.as_mut_ptr().add(16 * j) as *mut __m128i,
                    _mm512_cvtepi32_epi8(q),
                );
                o.bsums[j] = s as i16;
                o.bsf[j] = d * s as f32;
            }
            o.d = d;
            o.fill_derived();
        }
    }
}

#[cfg(test)]
pub(crate) mod test_api {
    //! Entry points for the tests in `tests/kquant.rs`.
    pub(crate) use super::{dot_row_scalar, quantize_block_scalar, ActBlock};
    use std::cell::Cell;

    thread_local! {
        /// Makes `Isa::Avx512` take the AVX-512 BW path without VNNI on this thread (the
        /// pool's workers do not see it: tests that set it use a 1-thread pool).
        pub(crate) static NO_VNNI: Cell<bool> = const { Cell::new(false) };
    }

    /// Quantizes `x` (one row) with the path `isa` selects.
    pub(crate) fn quantize_row(isa: crate::Isa, x: &[f32]) -> Vec<ActBlock> {
        let nb = x.len() / 256;
        let mut a = vec![ActBlock::ZERO; nb];
        let s = crate::pool::SyncSlice::new(&mut a);
        super::quantize_tokens(super::path_for(isa), x, x.len(), &s, 0, 1);
        a
    }
}
