//! Activation quantization for the integer matmul of the 32-element block formats.
//!
//! Every token row of `x` is cut into blocks of 32 values; block `b` becomes 32 signed bytes
//! `q = round_ties_even(x * 127 / amax)` (clamped to ±127) with scale `d = amax / 127` rounded
//! to f16, the way llama.cpp quantizes activations for these weight types (Q8_0, and Q8_1
//! whose block sum is f16 too), so that our results track its reference outputs. Next to
//! the bytes each block keeps what the dot products need:
//!
//! * `bias = -off * Σq`: the integer kernels multiply *unsigned* weight codes `u = q_w + off`
//!   with the signed activations (`vpdpbusd` takes u8 × i8), so `Σ q_w·q = Σ u·q + bias`;
//!   `off` is fixed by the weight type, which is why the buffer is built per matmul call.
//! * `ds = d * Σq` (rounded to f16): the approximate block sum of `x`, for the `m` (min) term
//!   of Q4_1/Q5_1.
//!
//! The SIMD quantizers compute `x * id` in f32 and round to nearest-even exactly like the scalar
//! one, so every path produces identical bytes, scales and sums (tests check this).
//!
//! **Architecture Invariant:** the buffer is reused: it lives in a thread-local of the calling
//! thread and only grows, so steady-state matmuls allocate nothing.

use crate::pool::SyncSlice;
use crate::ThreadPool;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::cell::Cell;

/// Elements per block.
pub(crate) const QK: usize = 32;

/// Quantized activations: `n_tokens` rows of `cols` values (`nb = cols / 32` blocks each).
#[derive(Default, Debug)]
pub(crate) struct ActQ {
    pub(crate) cols: usize,
    pub(crate) nb: usize,
    pub(crate) n_tokens: usize,
    /// `n_tokens * cols` signed bytes, row-major.
    pub(crate) qs: Vec<i8>,
    /// `n_tokens * nb` pairs `(d, d * Σq)`: block scale and approximate block sum, side by
    /// side so that one 64-bit broadcast serves both.
    pub(crate) dd: Vec<[f32; 2]>,
    /// `n_tokens * nb` integer corrections `-off * Σq`.
    pub(crate) bias: Vec<i32>,
}

impl ActQ {
    /// Resizes for `n_tokens x cols` (grows only; contents are overwritten by quantization).
    pub(crate) fn reshape(&mut self, n_tokens: usize, cols: usize) {
        self.cols = cols;
        self.nb = cols / QK;
        self.n_tokens = n_tokens;
        let (nq, ns) = (n_tokens * cols, n_tokens * self.nb);
        if self.qs.len() < nq {
            self.qs.resize(nq, 0);
        }
        if self.dd.len() < ns {
            self.dd.resize(ns, [0.0; 2]);
            self.bias.resize(ns, 0);
        }
    }
}

thread_local! {
    /// The calling thread's activation buffer (taken out during a matmul, then put back).
    static ACT: Cell<ActQ> = Cell::new(ActQ::default());
    /// A second buffer, for the output of a product that is the next product's input.
    static ACT_NEXT: Cell<ActQ> = Cell::new(ActQ::default());
}

/// Runs `f` with this thread's reusable activation buffer.
pub(crate) fn with_act<R>(f: impl FnOnce(&mut ActQ) -> R) -> R {
    let mut a = ACT.with(Cell::take);
    let r = f(&mut a);
    ACT.with(|c| c.set(a));
    r
}

/// Runs `f` with this thread's two reusable activation buffers (a product's input and the
/// activation it produces for the next product).
pub(crate) fn with_two_acts<R>(f: impl FnOnce(&mut ActQ, &mut ActQ) -> R) -> R {
    with_act(|a| {
        let mut b = ACT_NEXT.with(Cell::take);
        let r = f(a, &mut b);
        ACT_NEXT.with(|c| c.set(b));
        r
    })
}

/// Which quantizer body to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QPath {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Block scale and the factor that maps values to quants, computed identically on every path.
#[inline(always)]
fn scale_of(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (d, id)
}

/// `x` rounded to the nearest f16 (ties to even), back in f32: the scalar rounding.
#[inline(always)]
fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// [`round_f16`] with F16C (identical results).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn round_f16_f16c(x: f32) -> f32 {
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x));
    _mm_cvtss_f32(_mm_cvtph_ps(h))
}

/// Scalar reference for one row.
pub(crate) fn quant_row_scalar(
    x: &[f32],
    qs: &mut [i8],
    dd: &mut [[f32; 2]],
    bias: &mut [i32],
    off: i32,
) {
    for (b, (xb, qb)) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (db, id) = scale_of(amax);
        let mut sum = 0i32;
        for (q, &v) in qb.iter_mut().zip(xb) {
            let r = ((v * id).round_ties_even() as i32).clamp(-127, 127);
            *q = r as i8;
            sum += r;
        }
        dd[b] = [round_f16(db), round_f16(db * sum as f32)];
        bias[b] = -off * sum;
    }
}

/// `v` rounded to the nearest f16 (ties to even), back in f32, lane by lane (as
/// [`round_f16_f16c`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn round_f16_x16(v: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// An exact, associative and commutative fold of two vectors, lane by lane.
#[cfg(target_arch = "x86_64")]
trait Fold {
    /// # Safety
    /// The CPU must support AVX-512 F.
    unsafe fn fold(a: __m512, b: __m512) -> __m512;
}

#[cfg(target_arch = "x86_64")]
struct MaxPs;
#[cfg(target_arch = "x86_64")]
impl Fold for MaxPs {
    #[inline(always)]
    unsafe fn fold(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
}

/// 32-bit integer addition on the bits of float vectors.
#[cfg(target_arch = "x86_64")]
struct AddI32;
#[cfg(target_arch = "x86_64")]
impl Fold for AddI32 {
    #[inline(always)]
    unsafe fn fold(a: __m512, b: __m512) -> __m512 {
        _mm512_castsi512_ps(_mm512_add_epi32(
            _mm512_castps_si512(a),
            _mm512_castps_si512(b),
        ))
    }
}

/// Lane `j` of the result is `F` folded over the 16 lanes of `m[j]`. Four levels, each
/// pairing vectors and halving the lanes a block spans: 15 folds and 30 shuffles for 16
/// reductions, against 4 folds and 4 shuffles for each one done alone (and no long
/// dependency chain per block). Plain loops, not closures: a closure would be compiled
/// without the caller's target features, its intrinsics becoming calls.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn reduce16<F: Fold>(m: &[__m512; 16]) -> __m512 {
    // 256-bit halves: r1[i] lanes 0..8 fold m[2i], lanes 8..16 fold m[2i+1].
    let mut r1 = [_mm512_setzero_ps(); 8];
    for i in 0..8 {
        let (a, b) = (m[2 * i], m[2 * i + 1]);
        r1[i] = F::fold(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        );
    }
    // 128-bit quarters: quarter k of r2[i] folds block 4i + k.
    let mut r2 = [_mm512_setzero_ps(); 4];
    for i in 0..4 {
        let (c, d) = (r1[2 * i], r1[2 * i + 1]);
        r2[i] = F::fold(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(c, d),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(c, d),
        );
    }
    // Pairs of lanes: in quarter k of r3[i], lanes 0-1 fold block 8i + k, lanes 2-3 block
    // 8i + 4 + k.
    let mut r3 = [_mm512_setzero_ps(); 2];
    for i in 0..2 {
        let (e, f) = (r2[2 * i], r2[2 * i + 1]);
        r3[i] = F::fold(
            _mm512_shuffle_ps::<0b01_00_01_00>(e, f),
            _mm512_shuffle_ps::<0b11_10_11_10>(e, f),
        );
    }
    // Single lanes: lane 4k + j holds block 4j + k; transpose to lane = block.
    let r4 = F::fold(
        _mm512_shuffle_ps::<0b10_00_10_00>(r3[0], r3[1]),
        _mm512_shuffle_ps::<0b11_01_11_01>(r3[0], r3[1]),
    );
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(idx, r4)
}

/// AVX-512 body for one row (same results as the scalar one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn quant_row_avx512(
    x: &[f32],
    qs: &mut [i8],
    dd: &mut [[f32; 2]],
    bias: &mut [i32],
    off: i32,
) {
    let nb = x.len() / QK;
    let (xp, qp) = (x.as_ptr(), qs.as_mut_ptr());
    // Groups of 16 blocks (the last one possibly partial): the 16 maxima and the 16 sums
    // are reduced together and the scales computed as vectors, instead of two horizontal
    // reductions and two scalar divisions in each block's dependency chain.
    for b0 in (0..nb).step_by(16) {
        let kb = (nb - b0).min(16);
        // SAFETY: `x` and `qs` hold `nb * 32` elements, `dd` and `bias` `nb` (checked by
        // the caller); blocks `b0..b0 + kb` are in range.
        quant_group(
            xp.add(b0 * QK),
            kb,
            qp.add(b0 * QK),
            &mut dd[b0..b0 + kb],
            &mut bias[b0..b0 + kb],
            off,
        );
    }
}

/// Quantizes the `kb <= 16` blocks at `px` (block `j` at `px + 32j`) into `qp + 32j`,
/// `dd[j]` and `bias[j]`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quant_group(
    px: *const f32,
    kb: usize,
    qp: *mut i8,
    dd: &mut [[f32; 2]],
    bias: &mut [i32],
    off: i32,
) {
    let lo = _mm512_set1_epi32(-127);
    let hi = _mm512_set1_epi32(127);
    // Blocks past `kb` count as zero (their results are not stored).
    let mut m = [_mm512_setzero_ps(); 16];
    for (j, mj) in m.iter_mut().enumerate().take(kb) {
        let v0 = _mm512_loadu_ps(px.add(j * QK));
        let v1 = _mm512_loadu_ps(px.add(j * QK + 16));
        *mj = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
    }
    let amax = reduce16::<MaxPs>(&m);
    let d = _mm512_div_ps(amax, _mm512_set1_ps(127.0));
    let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(amax, _mm512_setzero_ps());
    let id = _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(127.0), amax);
    let mut ids = [0f32; 16];
    _mm512_storeu_ps(ids.as_mut_ptr(), id);
    let mut sums = [_mm512_setzero_ps(); 16];
    for (j, sj) in sums.iter_mut().enumerate().take(kb) {
        let idv = _mm512_set1_ps(ids[j]);
        let v0 = _mm512_loadu_ps(px.add(j * QK));
        let v1 = _mm512_loadu_ps(px.add(j * QK + 16));
        let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
        let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
        let q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
        let q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
        let qb = qp.add(j * QK);
        _mm_storeu_si128(qb as *mut __m128i, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128(qb.add(16) as *mut __m128i, _mm512_cvtepi32_epi8(q1));
        *sj = _mm512_castsi512_ps(_mm512_add_epi32(q0, q1));
    }
    let sum = _mm512_castps_si512(reduce16::<AddI32>(&sums));
    let d16 = round_f16_x16(d);
    let ds16 = round_f16_x16(_mm512_mul_ps(d, _mm512_cvtepi32_ps(sum)));
    let bias16 = _mm512_mullo_epi32(sum, _mm512_set1_epi32(-off));
    let (mut dv, mut dsv, mut bv) = ([0f32; 16], [0f32; 16], [0i32; 16]);
    _mm512_storeu_ps(dv.as_mut_ptr(), d16);
    _mm512_storeu_ps(dsv.as_mut_ptr(), ds16);
    _mm512_storeu_si512(bv.as_mut_ptr() as *mut _, bias16);
    for j in 0..kb {
        dd[j] = [dv[j], dsv[j]];
        bias[j] = bv[j];
    }
}

/// AVX2 body for one row (same results as the scalar one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quant_row_avx2(
    x: &[f32],
    qs: &mut [i8],
    dd: &mut [[f32; 2]],
    bias: &mut [i32],
    off: i32,
) {
    let nb = x.len() / QK;
    let (xp, qp) = (x.as_ptr(), qs.as_mut_ptr());
    let sign = _mm256_set1_ps(-0.0);
    let lo = _mm256_set1_epi32(-127);
    let hi = _mm256_set1_epi32(127);
    for b in 0..nb {
        // SAFETY (whole body): `x` and `qs` hold `nb * 32` elements (checked by the caller).
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(xp.add(b * QK + 8 * i)));
        let a01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
        let a23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
        let m = _mm256_max_ps(a01, a23);
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
        let (db, id) = scale_of(_mm_cvtss_f32(m1));
        let idv = _mm256_set1_ps(id);
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            let r = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], idv));
            _mm256_min_epi32(_mm256_max_epi32(r, lo), hi)
        });
        // Pack 4 x 8 i32 into 32 i8 in order: packs work per 128-bit lane, so fix the order.
        let p01 = _mm256_packs_epi32(q[0], q[1]);
        let p23 = _mm256_packs_epi32(q[2], q[3]);
        let p = _mm256_packs_epi16(p01, p23);
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qp.add(b * QK) as *mut __m256i, p);
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2));
        let sum = _mm_cvtsi128_si32(s1);
        dd[b] = [round_f16_f16c(db), round_f16_f16c(db * sum as f32)];
        bias[b] = -off * sum;
    }
}

/// Quantizes one row with the chosen body.
pub(crate) fn quant_row(
    path: QPath,
    x: &[f32],
    qs: &mut [i8],
    dd: &mut [[f32; 2]],
    bias: &mut [i32],
    off: i32,
) {
    let nb = x.len() / QK;
    assert!(
        x.len() == nb * QK && qs.len() == x.len() && dd.len() == nb && bias.len() == nb,
        "quant_row: lengths"
    );
    match path {
        QPath::Scalar => quant_row_scalar(x, qs, dd, bias, off),
        // SAFETY: `QPath::for_isa` picks these only when the CPU supports them; lengths
        // checked above.
        #[cfg(target_arch = "x86_64")]
        QPath::Avx512 => unsafe { quant_row_avx512(x, qs, dd, bias, off) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        QPath::Avx2 => unsafe { quant_row_avx2(x, qs, dd, bias, off) },
    }
}

/// Quantizes `n_tokens` rows of `cols` values (`cols % 32 == 0`, `x.len() == n_tokens * cols`)
/// into `a`, in parallel on `pool` when there are many tokens.
pub(crate) fn quantize_acts(
    path: QPath,
    pool: &ThreadPool,
    x: &[f32],
    n_tokens: usize,
    cols: usize,
    off: i32,
    a: &mut ActQ,
) {
    debug_assert!(cols.is_multiple_of(QK) && x.len() == n_tokens * cols);
    a.reshape(n_tokens, cols);
    let nb = a.nb;
    let one = |t: usize, qs: &mut [i8], dd: &mut [[f32; 2]], bias: &mut [i32]| {
        quant_row(path, &x[t * cols..(t + 1) * cols], qs, dd, bias, off);
    };
    if n_tokens < 16 || pool.n_threads() == 1 {
        for t in 0..n_tokens {
            one(
                t,
                &mut a.qs[t * cols..(t + 1) * cols],
                &mut a.dd[t * nb..(t + 1) * nb],
                &mut a.bias[t * nb..(t + 1) * nb],
            );
        }
        return;
    }
    let qs = SyncSlice::new(&mut a.qs);
    let dd = SyncSlice::new(&mut a.dd);
    let bias = SyncSlice::new(&mut a.bias);
    pool.for_each_chunk(n_tokens, 8, |tokens| {
        for t in tokens {
            // SAFETY: each token index is handed out once, so these row ranges are disjoint.
            unsafe {
                one(
                    t,
                    qs.slice_mut(t * cols, cols),
                    dd.slice_mut(t * nb, nb),
                    bias.slice_mut(t * nb, nb),
                );
            }
        }
    });
}

/// Rewrites the integer corrections of `a` (built with offset `from`, which must not be 0)
/// for offset `to`: `bias = -off * Σq` is exact, so `Σq = -bias / from`.
pub(crate) fn rebias(a: &mut ActQ, from: i32, to: i32) {
    debug_assert!(from != 0);
    let n = a.n_tokens * a.nb;
    for b in &mut a.bias[..n] {
        *b = *b / from * to;
    }
}
