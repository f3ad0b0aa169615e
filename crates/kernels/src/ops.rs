//! Elementwise and per-row kernels of transformer layers, plus f16 helpers.
//!
//! Each public function reads [`Isa::current`] and dispatches to an AVX-512, AVX2 or scalar
//! body. The scalar bodies (module [`scalar`]) are the reference: straightforward loops in
//! the order GGML evaluates them. Length mismatches panic (they are bugs in the caller).

use crate::isa::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::isa::simd_fns;
#[cfg(target_arch = "x86_64")]
use crate::simd::Simd;
use crate::Isa;
use half::f16;

/// √(2/π), as GGML spells it.
pub(crate) const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The cubic coefficient of GGML's tanh GELU.
pub(crate) const GELU_COEF_A: f32 = 0.044_715;

/// Bits of an f16 slice (f16 is a transparent u16).
fn f16_bits(s: &[f16]) -> &[u16] {
    // SAFETY: `half::f16` is `#[repr(transparent)]` over `u16`.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u16, s.len()) }
}

fn f16_bits_mut(s: &mut [f16]) -> &mut [u16] {
    // SAFETY: `half::f16` is `#[repr(transparent)]` over `u16`.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut u16, s.len()) }
}

/// Scalar reference implementations (public inside the crate for tests and tails).
pub(crate) mod scalar {
    use super::{GELU_COEF_A, SQRT_2_OVER_PI};
    use half::f16;

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
    pub fn dot_f16(a: &[u16], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(&x, y)| f16::from_bits(x).to_f32() * y)
            .sum()
    }
    pub fn axpy_f16(y: &mut [f32], a: f32, x: &[u16]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += a * f16::from_bits(x).to_f32();
        }
    }
    pub fn silu(x: f32) -> f32 {
        x / (1.0 + (-x).exp())
    }
    pub fn gelu_tanh(x: f32) -> f32 {
        0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
    }
    /// `1 / sqrt(mean(x²) + eps)`, the sum in f64 as GGML does.
    pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
        let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
        1.0 / ((sum / x.len() as f64) as f32 + eps).sqrt()
    }
    pub fn layer_norm_row(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
        let n = x.len() as f64;
        let mean = (x.iter().map(|&v| v as f64).sum::<f64>() / n) as f32;
        let var: f64 = x
            .iter()
            .map(|&v| ((v - mean) * (v - mean)) as f64)
            .sum::<f64>()
            / n;
        let scale = 1.0 / (var as f32 + eps).sqrt();
        for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(w).zip(b) {
            *o = ((v - mean) * scale) * w + b;
        }
    }
    pub fn softmax(row: &mut [f32]) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generic SIMD bodies. Tails go through a padded stack buffer so every lane of a kernel uses the
// same arithmetic.

/// Reads `n < W` f32 from `p`, the other lanes set to `fill`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn load_part<S: Simd>(p: *const f32, n: usize, fill: f32) -> S::F {
    let mut buf = [fill; 16];
    std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
    S::load(buf.as_ptr())
}

/// Writes the first `n < W` lanes of `v` to `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn store_part<S: Simd>(p: *mut f32, n: usize, v: S::F) {
    let mut buf = [0.0f32; 16];
    S::store(buf.as_mut_ptr(), v);
    std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
}

/// Reads `n < W` f16 from `p` (other lanes 0).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn load_part_f16<S: Simd>(p: *const u16, n: usize) -> S::F {
    let mut buf = [0u16; 16];
    std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
    S::load_f16(buf.as_ptr())
}

/// A lane-wise unary operation for [`map_g`].
///
/// Element-wise kernels take their operation as a type with an `#[inline(always)]` method, not
/// as a closure: a closure is a separate function without the caller's `#[target_feature]`s,
/// so the intrinsics inside it cannot be inlined into it and LLVM leaves both the closure and
/// every `_mm512_*` call out of line. An `#[inline(always)]` method is inlined, with the
/// intrinsics, into the `#[target_feature]` function `simd_fns!` generates.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Op1<S: Simd> {
    unsafe fn f(&self, x: S::F) -> S::F;
}

/// A lane-wise binary operation for [`zip_g`] (see [`Op1`] for why not a closure).
#[cfg(target_arch = "x86_64")]
pub(crate) trait Op2<S: Simd> {
    unsafe fn f(&self, a: S::F, b: S::F) -> S::F;
}

/// Applies `op` to `n` f32 from `src`, writing `dst` (`src == dst` allowed).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn map_g<S: Simd, O: Op1<S>>(src: *const f32, dst: *mut f32, n: usize, op: O) {
    let mut i = 0;
    while i + S::W <= n {
        S::store(dst.add(i), op.f(S::load(src.add(i))));
        i += S::W;
    }
    if i < n {
        store_part::<S>(
            dst.add(i),
            n - i,
            op.f(load_part::<S>(src.add(i), n - i, 0.0)),
        );
    }
}

/// `dst[i] = op(a[i], b[i])` (`dst` may equal `a` or `b`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn zip_g<S: Simd, O: Op2<S>>(a: *const f32, b: *const f32, dst: *mut f32, n: usize, op: O) {
    let mut i = 0;
    while i + S::W <= n {
        S::store(dst.add(i), op.f(S::load(a.add(i)), S::load(b.add(i))));
        i += S::W;
    }
    if i < n {
        let r = n - i;
        let v = op.f(
            load_part::<S>(a.add(i), r, 0.0),
            load_part::<S>(b.add(i), r, 0.0),
        );
        store_part::<S>(dst.add(i), r, v);
    }
}

/// The element-wise operations, as zero-sized (or one-vector) types.
#[cfg(target_arch = "x86_64")]
mod elt {
    use super::{gelu_v, silu_v, Op1, Op2};
    use crate::simd::Simd;

    pub(super) struct Add;
    pub(super) struct Mul;
    /// `x · s`.
    pub(super) struct Scale<S: Simd>(pub S::F);
    /// `(x · s) · w`, in that order (RMS norm).
    pub(super) struct ScaleMul<S: Simd>(pub S::F);
    pub(super) struct Silu;
    pub(super) struct Gelu;
    /// `silu(g) · u`.
    pub(super) struct SiluMul;
    /// `gelu(g) · u`.
    pub(super) struct GeluMul;

    impl<S: Simd> Op2<S> for Add {
        #[inline(always)]
        unsafe fn f(&self, a: S::F, b: S::F) -> S::F {
            S::add(a, b)
        }
    }
    impl<S: Simd> Op2<S> for Mul {
        #[inline(always)]
        unsafe fn f(&self, a: S::F, b: S::F) -> S::F {
            S::mul(a, b)
        }
    }
    impl<S: Simd> Op1<S> for Scale<S> {
        #[inline(always)]
        unsafe fn f(&self, x: S::F) -> S::F {
            S::mul(x, self.0)
        }
    }
    impl<S: Simd> Op2<S> for ScaleMul<S> {
        #[inline(always)]
        unsafe fn f(&self, x: S::F, w: S::F) -> S::F {
            S::mul(S::mul(x, self.0), w)
        }
    }
    impl<S: Simd> Op1<S> for Silu {
        #[inline(always)]
        unsafe fn f(&self, x: S::F) -> S::F {
            silu_v::<S>(x)
        }
    }
    impl<S: Simd> Op1<S> for Gelu {
        #[inline(always)]
        unsafe fn f(&self, x: S::F) -> S::F {
            gelu_v::<S>(x)
        }
    }
    impl<S: Simd> Op2<S> for SiluMul {
        #[inline(always)]
        unsafe fn f(&self, g: S::F, u: S::F) -> S::F {
            S::mul(silu_v::<S>(g), u)
        }
    }
    impl<S: Simd> Op2<S> for GeluMul {
        #[inline(always)]
        unsafe fn f(&self, g: S::F, u: S::F) -> S::F {
            S::mul(gelu_v::<S>(g), u)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn dot_g<S: Simd>(a: *const f32, b: *const f32, n: usize) -> f32 {
    let (mut s0, mut s1, mut s2, mut s3) = (S::zero(), S::zero(), S::zero(), S::zero());
    let w = S::W;
    let mut i = 0;
    while i + 4 * w <= n {
        s0 = S::fmadd(S::load(a.add(i)), S::load(b.add(i)), s0);
        s1 = S::fmadd(S::load(a.add(i + w)), S::load(b.add(i + w)), s1);
        s2 = S::fmadd(S::load(a.add(i + 2 * w)), S::load(b.add(i + 2 * w)), s2);
        s3 = S::fmadd(S::load(a.add(i + 3 * w)), S::load(b.add(i + 3 * w)), s3);
        i += 4 * w;
    }
    while i + w <= n {
        s0 = S::fmadd(S::load(a.add(i)), S::load(b.add(i)), s0);
        i += w;
    }
    if i < n {
        let r = n - i;
        s1 = S::fmadd(
            load_part::<S>(a.add(i), r, 0.0),
            load_part::<S>(b.add(i), r, 0.0),
            s1,
        );
    }
    S::reduce_add(S::add(S::add(s0, s1), S::add(s2, s3)))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn dot_f16_g<S: Simd>(a: *const u16, b: *const f32, n: usize) -> f32 {
    let (mut s0, mut s1) = (S::zero(), S::zero());
    let w = S::W;
    let mut i = 0;
    while i + 2 * w <= n {
        s0 = S::fmadd(S::load_f16(a.add(i)), S::load(b.add(i)), s0);
        s1 = S::fmadd(S::load_f16(a.add(i + w)), S::load(b.add(i + w)), s1);
        i += 2 * w;
    }
    while i + w <= n {
        s0 = S::fmadd(S::load_f16(a.add(i)), S::load(b.add(i)), s0);
        i += w;
    }
    if i < n {
        let r = n - i;
        s1 = S::fmadd(
            load_part_f16::<S>(a.add(i), r),
            load_part::<S>(b.add(i), r, 0.0),
            s1,
        );
    }
    S::reduce_add(S::add(s0, s1))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn axpy_f16_g<S: Simd>(y: *mut f32, a: f32, x: *const u16, n: usize) {
    let av = S::splat(a);
    let mut i = 0;
    while i + S::W <= n {
        S::store(
            y.add(i),
            S::fmadd(av, S::load_f16(x.add(i)), S::load(y.add(i))),
        );
        i += S::W;
    }
    if i < n {
        let r = n - i;
        let v = S::fmadd(
            av,
            load_part_f16::<S>(x.add(i), r),
            load_part::<S>(y.add(i), r, 0.0),
        );
        store_part::<S>(y.add(i), r, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f32_to_f16_g<S: Simd>(src: *const f32, dst: *mut u16, n: usize) {
    let mut i = 0;
    while i + S::W <= n {
        S::store_f16(dst.add(i), S::load(src.add(i)));
        i += S::W;
    }
    if i < n {
        let mut buf = [0u16; 16];
        S::store_f16(buf.as_mut_ptr(), load_part::<S>(src.add(i), n - i, 0.0));
        std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(i), n - i);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16_to_f32_g<S: Simd>(src: *const u16, dst: *mut f32, n: usize) {
    let mut i = 0;
    while i + S::W <= n {
        S::store(dst.add(i), S::load_f16(src.add(i)));
        i += S::W;
    }
    if i < n {
        store_part::<S>(dst.add(i), n - i, load_part_f16::<S>(src.add(i), n - i));
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn add_g<S: Simd>(y: *mut f32, x: *const f32, n: usize) {
    zip_g::<S, _>(y, x, y, n, elt::Add)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mul_g<S: Simd>(y: *mut f32, x: *const f32, n: usize) {
    zip_g::<S, _>(y, x, y, n, elt::Mul)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn scale_g<S: Simd>(y: *mut f32, s: f32, n: usize) {
    let sv = S::splat(s);
    map_g::<S, _>(y, y, n, elt::Scale::<S>(sv))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn silu_v<S: Simd>(x: S::F) -> S::F {
    let one = S::splat(1.0);
    S::div(x, S::add(one, S::exp(S::sub(S::zero(), x))))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn gelu_v<S: Simd>(x: S::F) -> S::F {
    // 0.5·x·(1 + tanh(y)) = x / (1 + e^(-2y)): one exp and one division. Exact limits: x for
    // large positive y (e^(-2y) = 0), -0 for large negative y (e^(-2y) = +inf).
    let one = S::splat(1.0);
    let inner = S::add(one, S::mul(S::splat(GELU_COEF_A), S::mul(x, x)));
    let y2 = S::mul(S::mul(S::splat(-2.0 * SQRT_2_OVER_PI), x), inner);
    S::div(x, S::add(one, S::exp(y2)))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn silu_g<S: Simd>(src: *const f32, dst: *mut f32, n: usize) {
    map_g::<S, _>(src, dst, n, elt::Silu)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn gelu_g<S: Simd>(src: *const f32, dst: *mut f32, n: usize) {
    map_g::<S, _>(src, dst, n, elt::Gelu)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn swiglu_g<S: Simd>(g: *const f32, u: *const f32, dst: *mut f32, n: usize) {
    zip_g::<S, _>(g, u, dst, n, elt::SiluMul)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn geglu_g<S: Simd>(g: *const f32, u: *const f32, dst: *mut f32, n: usize) {
    zip_g::<S, _>(g, u, dst, n, elt::GeluMul)
}

/// Sum of squares of `n` floats.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sumsq_g<S: Simd>(x: *const f32, n: usize) -> f32 {
    dot_g::<S>(x, x, n)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rms_norm_g<S: Simd>(
    x: *const f32,
    w: *const f32,
    eps: f32,
    out: *mut f32,
    dim: usize,
    rows: usize,
) {
    for r in 0..rows {
        let (x, out) = (x.add(r * dim), out.add(r * dim));
        let mean = sumsq_g::<S>(x, dim) / dim as f32;
        let sv = S::splat(1.0 / (mean + eps).sqrt());
        zip_g::<S, _>(x, w, out, dim, elt::ScaleMul::<S>(sv));
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn layer_norm_g<S: Simd>(
    x: *const f32,
    w: *const f32,
    b: *const f32,
    eps: f32,
    out: *mut f32,
    dim: usize,
    rows: usize,
) {
    for r in 0..rows {
        let (x, out) = (x.add(r * dim), out.add(r * dim));
        // Sum and centred sum of squares, both lane-parallel.
        let mut acc = S::zero();
        let mut i = 0;
        while i + S::W <= dim {
            acc = S::add(acc, S::load(x.add(i)));
            i += S::W;
        }
        if i < dim {
            acc = S::add(acc, load_part::<S>(x.add(i), dim - i, 0.0));
        }
        let mean = S::reduce_add(acc) / dim as f32;
        let mv = S::splat(mean);
        let mut acc = S::zero();
        let mut i = 0;
        while i + S::W <= dim {
            let d = S::sub(S::load(x.add(i)), mv);
            acc = S::fmadd(d, d, acc);
            i += S::W;
        }
        if i < dim {
            let d = S::sub(load_part::<S>(x.add(i), dim - i, mean), mv);
            acc = S::fmadd(d, d, acc);
        }
        let var = S::reduce_add(acc) / dim as f32;
        let sv = S::splat(1.0 / (var + eps).sqrt());
        let mut i = 0;
        while i + S::W <= dim {
            let y = S::mul(S::mul(S::sub(S::load(x.add(i)), mv), sv), S::load(w.add(i)));
            S::store(out.add(i), S::add(y, S::load(b.add(i))));
            i += S::W;
        }
        if i < dim {
            let r = dim - i;
            let y = S::mul(
                S::mul(S::sub(load_part::<S>(x.add(i), r, 0.0), mv), sv),
                load_part::<S>(w.add(i), r, 0.0),
            );
            store_part::<S>(out.add(i), r, S::add(y, load_part::<S>(b.add(i), r, 0.0)));
        }
    }
}

/// Softmax of one row in place. The caller has handled the all-`-inf` row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn softmax_g<S: Simd>(x: *mut f32, n: usize) {
    let mut m = S::splat(f32::NEG_INFINITY);
    let mut i = 0;
    while i + S::W <= n {
        m = S::max(m, S::load(x.add(i)));
        i += S::W;
    }
    if i < n {
        m = S::max(m, load_part::<S>(x.add(i), n - i, f32::NEG_INFINITY));
    }
    let max = S::splat(S::reduce_max(m));
    let mut sum = S::zero();
    let mut i = 0;
    while i + S::W <= n {
        let e = S::exp(S::sub(S::load(x.add(i)), max));
        S::store(x.add(i), e);
        sum = S::add(sum, e);
        i += S::W;
    }
    if i < n {
        let e = S::exp(S::sub(
            load_part::<S>(x.add(i), n - i, f32::NEG_INFINITY),
            max,
        ));
        store_part::<S>(x.add(i), n - i, e);
        sum = S::add(sum, e);
    }
    let inv = 1.0 / S::reduce_add(sum);
    scale_g::<S>(x, inv, n);
}

simd_fns!(k_dot, dot_g, (a: *const f32, b: *const f32, n: usize) -> f32);
simd_fns!(k_dot_f16, dot_f16_g, (a: *const u16, b: *const f32, n: usize) -> f32);
simd_fns!(k_axpy_f16, axpy_f16_g, (y: *mut f32, a: f32, x: *const u16, n: usize));
simd_fns!(k_to_f16, f32_to_f16_g, (src: *const f32, dst: *mut u16, n: usize));
simd_fns!(k_from_f16, f16_to_f32_g, (src: *const u16, dst: *mut f32, n: usize));
simd_fns!(k_add, add_g, (y: *mut f32, x: *const f32, n: usize));
simd_fns!(k_mul, mul_g, (y: *mut f32, x: *const f32, n: usize));
simd_fns!(k_scale, scale_g, (y: *mut f32, s: f32, n: usize));
simd_fns!(k_silu, silu_g, (src: *const f32, dst: *mut f32, n: usize));
simd_fns!(k_gelu, gelu_g, (src: *const f32, dst: *mut f32, n: usize));
simd_fns!(k_swiglu, swiglu_g, (g: *const f32, u: *const f32, dst: *mut f32, n: usize));
simd_fns!(k_geglu, geglu_g, (g: *const f32, u: *const f32, dst: *mut f32, n: usize));
simd_fns!(k_rms, rms_norm_g,
    (x: *const f32, w: *const f32, eps: f32, out: *mut f32, dim: usize, rows: usize));
simd_fns!(k_ln, layer_norm_g,
    (x: *const f32, w: *const f32, b: *const f32, eps: f32, out: *mut f32, dim: usize, rows: usize));
simd_fns!(k_softmax, softmax_g, (x: *mut f32, n: usize));

// ---------------------------------------------------------------------------------------------
// Dispatching entry points (`*_isa` take the level explicitly; tests use them).

fn check_len(what: &str, a: usize, b: usize) {
    assert_eq!(a, b, "kernels::{what}: length mismatch ({a} vs {b})");
}

pub(crate) fn dot_f32_isa(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    check_len("dot_f32", a.len(), b.len());
    dispatch!(
        isa,
        k_dot,
        scalar::dot(a, b),
        (a.as_ptr(), b.as_ptr(), a.len())
    )
}

pub(crate) fn dot_f16_f32_isa(isa: Isa, a: &[f16], b: &[f32]) -> f32 {
    check_len("dot_f16_f32", a.len(), b.len());
    let a = f16_bits(a);
    dispatch!(
        isa,
        k_dot_f16,
        scalar::dot_f16(a, b),
        (a.as_ptr(), b.as_ptr(), a.len())
    )
}

pub(crate) fn axpy_f16_isa(isa: Isa, y: &mut [f32], a: f32, x: &[f16]) {
    check_len("axpy_f16", y.len(), x.len());
    let x = f16_bits(x);
    let n = y.len();
    dispatch!(
        isa,
        k_axpy_f16,
        scalar::axpy_f16(y, a, x),
        (y.as_mut_ptr(), a, x.as_ptr(), n)
    )
}

pub(crate) fn f32_to_f16_isa(isa: Isa, src: &[f32], dst: &mut [f16]) {
    check_len("f32_to_f16", src.len(), dst.len());
    let dst = f16_bits_mut(dst);
    let n = src.len();
    dispatch!(
        isa,
        k_to_f16,
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f16::from_f32(s).to_bits();
        },
        (src.as_ptr(), dst.as_mut_ptr(), n)
    )
}

pub(crate) fn f16_to_f32_isa(isa: Isa, src: &[f16], dst: &mut [f32]) {
    check_len("f16_to_f32", src.len(), dst.len());
    let src = f16_bits(src);
    let n = src.len();
    dispatch!(
        isa,
        k_from_f16,
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f16::from_bits(s).to_f32();
        },
        (src.as_ptr(), dst.as_mut_ptr(), n)
    )
}

pub(crate) fn add_isa(isa: Isa, y: &mut [f32], x: &[f32]) {
    check_len("add_inplace", y.len(), x.len());
    let n = y.len();
    dispatch!(
        isa,
        k_add,
        y.iter_mut().zip(x).for_each(|(y, x)| *y += x),
        (y.as_mut_ptr(), x.as_ptr(), n)
    )
}

pub(crate) fn mul_isa(isa: Isa, y: &mut [f32], x: &[f32]) {
    check_len("mul_inplace", y.len(), x.len());
    let n = y.len();
    dispatch!(
        isa,
        k_mul,
        y.iter_mut().zip(x).for_each(|(y, x)| *y *= x),
        (y.as_mut_ptr(), x.as_ptr(), n)
    )
}

pub(crate) fn scale_isa(isa: Isa, y: &mut [f32], s: f32) {
    let n = y.len();
    dispatch!(
        isa,
        k_scale,
        y.iter_mut().for_each(|y| *y *= s),
        (y.as_mut_ptr(), s, n)
    )
}

pub(crate) fn silu_isa(isa: Isa, x: &[f32], out: &mut [f32]) {
    check_len("silu", x.len(), out.len());
    let n = x.len();
    dispatch!(
        isa,
        k_silu,
        out.iter_mut()
            .zip(x)
            .for_each(|(o, &x)| *o = scalar::silu(x)),
        (x.as_ptr(), out.as_mut_ptr(), n)
    )
}

pub(crate) fn silu_inplace_isa(isa: Isa, x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    dispatch!(
        isa,
        k_silu,
        x.iter_mut().for_each(|v| *v = scalar::silu(*v)),
        (p, p, n)
    )
}

pub(crate) fn gelu_isa(isa: Isa, x: &[f32], out: &mut [f32]) {
    check_len("gelu_tanh", x.len(), out.len());
    let n = x.len();
    dispatch!(
        isa,
        k_gelu,
        out.iter_mut()
            .zip(x)
            .for_each(|(o, &x)| *o = scalar::gelu_tanh(x)),
        (x.as_ptr(), out.as_mut_ptr(), n)
    )
}

pub(crate) fn gelu_inplace_isa(isa: Isa, x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    dispatch!(
        isa,
        k_gelu,
        x.iter_mut().for_each(|v| *v = scalar::gelu_tanh(*v)),
        (p, p, n)
    )
}

pub(crate) fn swiglu_isa(isa: Isa, gate: &[f32], up: &[f32], out: &mut [f32]) {
    check_len("swiglu", gate.len(), up.len());
    check_len("swiglu", gate.len(), out.len());
    let n = gate.len();
    dispatch!(
        isa,
        k_swiglu,
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = scalar::silu(g) * u;
        },
        (gate.as_ptr(), up.as_ptr(), out.as_mut_ptr(), n)
    )
}

pub(crate) fn geglu_isa(isa: Isa, gate: &[f32], up: &[f32], out: &mut [f32]) {
    check_len("geglu", gate.len(), up.len());
    check_len("geglu", gate.len(), out.len());
    let n = gate.len();
    dispatch!(
        isa,
        k_geglu,
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = scalar::gelu_tanh(g) * u;
        },
        (gate.as_ptr(), up.as_ptr(), out.as_mut_ptr(), n)
    )
}

fn check_rows(what: &str, len: usize, dim: usize) -> usize {
    assert!(
        dim > 0 && len.is_multiple_of(dim),
        "kernels::{what}: length {len} is not a multiple of the weight length {dim}"
    );
    len / dim
}

pub(crate) fn rms_norm_isa(isa: Isa, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    check_len("rms_norm", x.len(), out.len());
    let dim = w.len();
    let rows = check_rows("rms_norm", x.len(), dim);
    dispatch!(
        isa,
        k_rms,
        for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let s = scalar::rms_scale(xr, eps);
            for ((o, &v), &w) in or.iter_mut().zip(xr).zip(w) {
                *o = (v * s) * w;
            }
        },
        (x.as_ptr(), w.as_ptr(), eps, out.as_mut_ptr(), dim, rows)
    )
}

pub(crate) fn rms_norm_inplace_isa(isa: Isa, x: &mut [f32], w: &[f32], eps: f32) {
    let dim = w.len();
    let rows = check_rows("rms_norm_inplace", x.len(), dim);
    let p = x.as_mut_ptr();
    dispatch!(
        isa,
        k_rms,
        for xr in x.chunks_exact_mut(dim) {
            let s = scalar::rms_scale(xr, eps);
            for (v, &w) in xr.iter_mut().zip(w) {
                *v = (*v * s) * w;
            }
        },
        (p, w.as_ptr(), eps, p, dim, rows)
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_isa(isa: Isa, x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    check_len("layer_norm", x.len(), out.len());
    check_len("layer_norm (bias)", w.len(), b.len());
    let dim = w.len();
    let rows = check_rows("layer_norm", x.len(), dim);
    dispatch!(
        isa,
        k_ln,
        for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            scalar::layer_norm_row(xr, w, b, eps, or);
        },
        (
            x.as_ptr(),
            w.as_ptr(),
            b.as_ptr(),
            eps,
            out.as_mut_ptr(),
            dim,
            rows
        )
    )
}

pub(crate) fn softmax_isa(isa: Isa, row: &mut [f32]) {
    if row.is_empty() {
        return;
    }
    if row.iter().all(|&v| v == f32::NEG_INFINITY) {
        // Nothing to attend to: uniform instead of NaN.
        let u = 1.0 / row.len() as f32;
        row.iter_mut().for_each(|v| *v = u);
        return;
    }
    let n = row.len();
    dispatch!(isa, k_softmax, scalar::softmax(row), (row.as_mut_ptr(), n))
}

// ---------------------------------------------------------------------------------------------
// Public API.

/// `Σ a[i]·b[i]`. Panics if the lengths differ.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_isa(Isa::current(), a, b)
}

/// `Σ a[i]·b[i]` with `a` in f16. Panics if the lengths differ.
pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
    dot_f16_f32_isa(Isa::current(), a, b)
}

/// `y[i] += a · x[i]` with `x` in f16. Panics if the lengths differ.
pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
    axpy_f16_isa(Isa::current(), y, a, x)
}

/// Converts f32 to f16 (round to nearest even, as `half::f16::from_f32` and `vcvtps2ph`).
/// Panics if the lengths differ.
pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    f32_to_f16_isa(Isa::current(), src, dst)
}

/// Converts f16 to f32 (exact). Panics if the lengths differ.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    f16_to_f32_isa(Isa::current(), src, dst)
}

/// `y[i] += x[i]`. Panics if the lengths differ.
pub fn add_inplace(y: &mut [f32], x: &[f32]) {
    add_isa(Isa::current(), y, x)
}

/// `y[i] *= x[i]`. Panics if the lengths differ.
pub fn mul_inplace(y: &mut [f32], x: &[f32]) {
    mul_isa(Isa::current(), y, x)
}

/// `y[i] *= s`.
pub fn scale_inplace(y: &mut [f32], s: f32) {
    scale_isa(Isa::current(), y, s)
}

/// `out[i] = x[i] / (1 + e^-x[i])`. Panics if the lengths differ.
pub fn silu(x: &[f32], out: &mut [f32]) {
    silu_isa(Isa::current(), x, out)
}

/// [`silu`] in place.
pub fn silu_inplace(x: &mut [f32]) {
    silu_inplace_isa(Isa::current(), x)
}

/// GELU, tanh approximation as GGML writes it:
/// `0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))`. (llama.cpp by default reads an f16
/// lookup table instead; the difference is below f16 resolution.) Panics if the lengths differ.
pub fn gelu_tanh(x: &[f32], out: &mut [f32]) {
    gelu_isa(Isa::current(), x, out)
}

/// [`gelu_tanh`] in place.
pub fn gelu_tanh_inplace(x: &mut [f32]) {
    gelu_inplace_isa(Isa::current(), x)
}

/// `out[i] = silu(gate[i]) · up[i]`. Panics if the lengths differ.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    swiglu_isa(Isa::current(), gate, up, out)
}

/// `out[i] = gelu_tanh(gate[i]) · up[i]`. Panics if the lengths differ.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    geglu_isa(Isa::current(), gate, up, out)
}

/// RMS norm of each row of `x` (rows of `weight.len()` elements):
/// `out = x / √(mean(x²) + eps) · weight`. Panics if `x.len() != out.len()` or `x.len()` is
/// not a multiple of `weight.len()`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    rms_norm_isa(Isa::current(), x, weight, eps, out)
}

/// [`rms_norm`] in place.
pub fn rms_norm_inplace(x: &mut [f32], weight: &[f32], eps: f32) {
    rms_norm_inplace_isa(Isa::current(), x, weight, eps)
}

/// Layer norm of each row of `x` (rows of `weight.len()` elements):
/// `out = (x - mean) / √(var + eps) · weight + bias`, variance biased (÷n) as in GGML.
/// Panics on length mismatch.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_isa(Isa::current(), x, weight, bias, eps, out)
}

/// Softmax of one row in place (max subtracted first). A row that is entirely `-inf`
/// becomes uniform rather than NaN.
pub fn softmax_inplace(row: &mut [f32]) {
    softmax_isa(Isa::current(), row)
}
