//! The SIMD vocabulary the generic kernels are written in, with one implementation per ISA.
//!
//! Kernels are `#[inline(always)]` functions generic over [`Simd`]; `simd_fns!` instantiates
//! them inside `#[target_feature]` functions, so after inlining every intrinsic below is
//! compiled for the ISA it belongs to.
//!
//! # Safety contract (for every method of [`Simd`])
//! * The CPU supports the implementation's features (guaranteed by `dispatch!`).
//! * Pointer arguments are valid for the reads/writes documented on the method; they need
//!   not be aligned.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;

/// A vector of `W` f32 lanes and the operations the kernels need on it.
pub(crate) trait Simd: Copy + 'static {
    /// Lanes per vector.
    const W: usize;
    /// The f32 vector type.
    type F: Copy;

    unsafe fn zero() -> Self::F;
    unsafe fn splat(x: f32) -> Self::F;
    /// Reads `W` f32.
    unsafe fn load(p: *const f32) -> Self::F;
    /// Writes `W` f32.
    unsafe fn store(p: *mut f32, v: Self::F);
    /// Reads `W` IEEE half floats.
    unsafe fn load_f16(p: *const u16) -> Self::F;
    /// Writes `W` IEEE half floats (round to nearest even).
    unsafe fn store_f16(p: *mut u16, v: Self::F);
    /// Reads `W` bfloat16.
    unsafe fn load_bf16(p: *const u16) -> Self::F;
    /// Reads `W` signed bytes.
    unsafe fn load_i8(p: *const i8) -> Self::F;
    /// Reads `W` bytes; lane i is `(p[i] & 15)` (or `p[i] >> 4` when `high`) with bit 4 set
    /// from bit `qh_shift + i` of `qh`.
    unsafe fn load_nibbles(p: *const u8, high: bool, qh: u32, qh_shift: u32) -> Self::F;
    /// Q6_K lanes: reads `W` bytes from `ql` and from `qh`; lane i is
    /// `((ql[i] & 15 or ql[i] >> 4) | ((qh[i] >> qh_shift) & 3) << 4) - 32`.
    unsafe fn load_q6(ql: *const u8, high: bool, qh: *const u8, qh_shift: u32) -> Self::F;

    unsafe fn add(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn sub(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn div(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn max(a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, fused.
    unsafe fn fmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// Swaps adjacent lanes: `[a0, a1, a2, a3, ..] -> [a1, a0, a3, a2, ..]`.
    unsafe fn swap_pairs(v: Self::F) -> Self::F;
    unsafe fn reduce_add(v: Self::F) -> f32;
    unsafe fn reduce_max(v: Self::F) -> f32;
    /// e^x, about 2 ulp; 0 below -104, +inf above 88.72.
    unsafe fn exp(x: Self::F) -> Self::F;
}

// Cephes single-precision exp constants.
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P0: f32 = 1.987_569_1e-4;
const P1: f32 = 1.398_199_9e-3;
const P2: f32 = 8.333_452e-3;
const P3: f32 = 4.166_579_6e-2;
const P4: f32 = 1.666_666_5e-1;
const P5: f32 = 0.5;
const EXP_LO: f32 = -104.0;
const EXP_HI: f32 = 88.722_83;

/// AVX-512 F/BW/VL, 16 lanes.
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

impl Simd for Avx512 {
    const W: usize = 16;
    type F = __m512;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline(always)]
    unsafe fn store_f16(p: *mut u16, v: __m512) {
        let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
        _mm256_storeu_si256(p as *mut __m256i, h)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m512 {
        let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)))
    }
    #[inline(always)]
    unsafe fn load_nibbles(p: *const u8, high: bool, qh: u32, qh_shift: u32) -> __m512 {
        let b = _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i));
        let mut v = if high {
            _mm512_srli_epi32::<4>(b)
        } else {
            _mm512_and_si512(b, _mm512_set1_epi32(15))
        };
        if qh != 0 {
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let sh = _mm512_add_epi32(lanes, _mm512_set1_epi32(qh_shift as i32));
            let bits = _mm512_srlv_epi32(_mm512_set1_epi32(qh as i32), sh);
            let bits = _mm512_slli_epi32::<4>(_mm512_and_si512(bits, _mm512_set1_epi32(1)));
            v = _mm512_or_si512(v, bits);
        }
        _mm512_cvtepi32_ps(v)
    }
    #[inline(always)]
    unsafe fn load_q6(ql: *const u8, high: bool, qh: *const u8, qh_shift: u32) -> __m512 {
        let l = _mm512_cvtepu8_epi32(_mm_loadu_si128(ql as *const __m128i));
        let l = if high {
            _mm512_srli_epi32::<4>(l)
        } else {
            _mm512_and_si512(l, _mm512_set1_epi32(15))
        };
        let h = _mm512_cvtepu8_epi32(_mm_loadu_si128(qh as *const __m128i));
        let h = _mm512_srlv_epi32(h, _mm512_set1_epi32(qh_shift as i32));
        let h = _mm512_slli_epi32::<4>(_mm512_and_si512(h, _mm512_set1_epi32(3)));
        let q = _mm512_sub_epi32(_mm512_or_si512(l, h), _mm512_set1_epi32(32));
        _mm512_cvtepi32_ps(q)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        _mm512_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn swap_pairs(v: __m512) -> __m512 {
        _mm512_permute_ps::<0xB1>(v)
    }
    #[inline(always)]
    unsafe fn reduce_add(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[inline(always)]
    unsafe fn reduce_max(v: __m512) -> f32 {
        _mm512_reduce_max_ps(v)
    }
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        // Clamp so the reduction stays finite; scalef turns large |n| into 0 or +inf exactly.
        let x = _mm512_max_ps(
            _mm512_min_ps(x, _mm512_set1_ps(100.0)),
            _mm512_set1_ps(EXP_LO),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(P0);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
        let r2 = _mm512_mul_ps(r, r);
        let e = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
        _mm512_scalef_ps(e, n)
    }
}

/// AVX2 + FMA + F16C, 8 lanes.
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

impl Avx2 {
    #[inline(always)]
    unsafe fn pow2i(k: __m256i) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            k,
            _mm256_set1_epi32(127),
        )))
    }
}

impl Simd for Avx2 {
    const W: usize = 8;
    type F = __m256;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn store_f16(p: *mut u16, v: __m256) {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        _mm_storeu_si128(p as *mut __m128i, h)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m256 {
        let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)))
    }
    #[inline(always)]
    unsafe fn load_nibbles(p: *const u8, high: bool, qh: u32, qh_shift: u32) -> __m256 {
        let b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
        let mut v = if high {
            _mm256_srli_epi32::<4>(b)
        } else {
            _mm256_and_si256(b, _mm256_set1_epi32(15))
        };
        if qh != 0 {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let sh = _mm256_add_epi32(lanes, _mm256_set1_epi32(qh_shift as i32));
            let bits = _mm256_srlv_epi32(_mm256_set1_epi32(qh as i32), sh);
            let bits = _mm256_slli_epi32::<4>(_mm256_and_si256(bits, _mm256_set1_epi32(1)));
            v = _mm256_or_si256(v, bits);
        }
        _mm256_cvtepi32_ps(v)
    }
    #[inline(always)]
    unsafe fn load_q6(ql: *const u8, high: bool, qh: *const u8, qh_shift: u32) -> __m256 {
        let l = _mm256_cvtepu8_epi32(_mm_loadl_epi64(ql as *const __m128i));
        let l = if high {
            _mm256_srli_epi32::<4>(l)
        } else {
            _mm256_and_si256(l, _mm256_set1_epi32(15))
        };
        let h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qh as *const __m128i));
        let h = _mm256_srlv_epi32(h, _mm256_set1_epi32(qh_shift as i32));
        let h = _mm256_slli_epi32::<4>(_mm256_and_si256(h, _mm256_set1_epi32(3)));
        let q = _mm256_sub_epi32(_mm256_or_si256(l, h), _mm256_set1_epi32(32));
        _mm256_cvtepi32_ps(q)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        _mm256_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn swap_pairs(v: __m256) -> __m256 {
        _mm256_permute_ps::<0xB1>(v)
    }
    #[inline(always)]
    unsafe fn reduce_add(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn reduce_max(v: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_shuffle_ps::<0x55>(s, s));
        _mm_cvtss_f32(s)
    }
    #[inline(always)]
    unsafe fn exp(x0: __m256) -> __m256 {
        let x = _mm256_max_ps(
            _mm256_min_ps(x0, _mm256_set1_ps(EXP_HI)),
            _mm256_set1_ps(EXP_LO),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(P0);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
        let r2 = _mm256_mul_ps(r, r);
        let e = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        // 2^n as two factors so both stay normal for n in [-150, 128].
        let ni = _mm256_cvtps_epi32(n);
        let n1 = _mm256_srai_epi32::<1>(ni);
        let n2 = _mm256_sub_epi32(ni, n1);
        let y = _mm256_mul_ps(_mm256_mul_ps(e, Self::pow2i(n1)), Self::pow2i(n2));
        // Above ln(f32::MAX) the true result overflows.
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(x0, _mm256_set1_ps(EXP_HI));
        _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), big)
    }
}
