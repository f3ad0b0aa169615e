//! Row dequantization into f32: a scalar reference for every supported type and SIMD paths
//! for the common ones. Layouts follow GGML's `ggml-common.h` bit for bit.
//!
//! The SIMD paths evaluate the same f32 expressions in the same order as the scalar ones
//! (`d * q`, `d * q + m`, `(d * sc) * q`, never fused), so they agree bit for bit.

use crate::isa::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::isa::simd_fns;
#[cfg(target_arch = "x86_64")]
use crate::simd::Simd;
use crate::{Isa, KernelError};
use half::f16;
use quant::GgmlType;

/// Types the kernels can dequantize (and so multiply).
pub const SUPPORTED_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Whether `ty` is in [`SUPPORTED_TYPES`].
pub fn is_supported(ty: GgmlType) -> bool {
    SUPPORTED_TYPES.contains(&ty)
}

#[inline(always)]
fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Q4_K / Q5_K 6-bit scale and min of sub-block `j` (GGML `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Scalar reference: the `quant` crate's bit-exact dequantization (the format definitions
/// live there once). `src` holds exactly the blocks of `dst.len()` elements of `ty`, and `ty`
/// is supported (the caller checked both).
pub(crate) fn dequant_row_scalar(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    quant::dequantize(ty, src, dst).expect("caller checked the type and the lengths");
}

/// SIMD dequantization of one row of `n` elements. Types without a SIMD path use the scalar
/// reference. `src` must hold exactly the row's blocks, `dst` `n` floats.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn dequant_row_g<S: Simd>(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    use GgmlType as T;
    let w = S::W;
    let n = dst.len();
    let y = dst.as_mut_ptr();
    let p = src.as_ptr();
    match ty {
        T::F32 => std::ptr::copy_nonoverlapping(p, y as *mut u8, 4 * n),
        T::F16 | T::BF16 => {
            let x = p as *const u16;
            let mut i = 0;
            while i + w <= n {
                let v = if ty == T::F16 {
                    S::load_f16(x.add(i))
                } else {
                    S::load_bf16(x.add(i))
                };
                S::store(y.add(i), v);
                i += w;
            }
            dequant_row_scalar(ty, &src[2 * i..], &mut dst[i..]);
        }
        T::Q8_0 => {
            for blk in 0..n / 32 {
                let b = p.add(34 * blk);
                let d = S::splat(f16_at(src, 34 * blk));
                for j in (0..32).step_by(w) {
                    let q = S::load_i8(b.add(2 + j) as *const i8);
                    S::store(y.add(32 * blk + j), S::mul(q, d));
                }
            }
        }
        T::Q4_0 | T::Q5_0 => {
            let (bs, qs_off) = if ty == T::Q4_0 { (18, 2) } else { (22, 6) };
            let off = S::splat(if ty == T::Q4_0 { 8.0 } else { 16.0 });
            for blk in 0..n / 32 {
                let b = p.add(bs * blk);
                let d = S::splat(f16_at(src, bs * blk));
                let qh = if ty == T::Q5_0 {
                    u32::from_le_bytes(src[bs * blk + 2..bs * blk + 6].try_into().unwrap())
                } else {
                    0
                };
                let yb = y.add(32 * blk);
                for j in (0..16).step_by(w) {
                    let lo = S::load_nibbles(b.add(qs_off + j), false, qh, j as u32);
                    let hi = S::load_nibbles(b.add(qs_off + j), true, qh, 16 + j as u32);
                    // (q - off) is exact in f32, so this equals the scalar `(q - off) as f32 * d`.
                    S::store(yb.add(j), S::mul(S::sub(lo, off), d));
                    S::store(yb.add(16 + j), S::mul(S::sub(hi, off), d));
                }
            }
        }
        T::Q4_1 | T::Q5_1 => {
            let (bs, qs_off) = if ty == T::Q4_1 { (20, 4) } else { (24, 8) };
            for blk in 0..n / 32 {
                let b = p.add(bs * blk);
                let d = S::splat(f16_at(src, bs * blk));
                let m = S::splat(f16_at(src, bs * blk + 2));
                let qh = if ty == T::Q5_1 {
                    u32::from_le_bytes(src[bs * blk + 4..bs * blk + 8].try_into().unwrap())
                } else {
                    0
                };
                let yb = y.add(32 * blk);
                for j in (0..16).step_by(w) {
                    let lo = S::load_nibbles(b.add(qs_off + j), false, qh, j as u32);
                    let hi = S::load_nibbles(b.add(qs_off + j), true, qh, 16 + j as u32);
                    S::store(yb.add(j), S::add(S::mul(lo, d), m));
                    S::store(yb.add(16 + j), S::add(S::mul(hi, d), m));
                }
            }
        }
        T::Q4_K => {
            for blk in 0..n / 256 {
                let bo = 144 * blk;
                let (d, min) = (f16_at(src, bo), f16_at(src, bo + 2));
                let scales = &src[bo + 4..bo + 16];
                for g in 0..4 {
                    let (s1, m1) = scale_min_k4(2 * g, scales);
                    let (s2, m2) = scale_min_k4(2 * g + 1, scales);
                    let (d1, m1) = (S::splat(d * s1 as f32), S::splat(min * m1 as f32));
                    let (d2, m2) = (S::splat(d * s2 as f32), S::splat(min * m2 as f32));
                    let q = p.add(bo + 16 + 32 * g);
                    let yg = y.add(256 * blk + 64 * g);
                    for l in (0..32).step_by(w) {
                        let lo = S::load_nibbles(q.add(l), false, 0, 0);
                        let hi = S::load_nibbles(q.add(l), true, 0, 0);
                        S::store(yg.add(l), S::sub(S::mul(d1, lo), m1));
                        S::store(yg.add(32 + l), S::sub(S::mul(d2, hi), m2));
                    }
                }
            }
        }
        T::Q6_K => {
            for blk in 0..n / 256 {
                let bo = 210 * blk;
                let d = f16_at(src, bo + 208);
                for h in 0..2 {
                    let ql = p.add(bo + 64 * h);
                    let qh = p.add(bo + 128 + 32 * h);
                    let sc = &src[bo + 192 + 8 * h..bo + 200 + 8 * h];
                    let yh = y.add(256 * blk + 128 * h);
                    for l in (0..32).step_by(w) {
                        let is = l / 16;
                        let s = |k: usize| S::splat(d * (sc[is + k] as i8) as f32);
                        let q1 = S::load_q6(ql.add(l), false, qh.add(l), 0);
                        let q2 = S::load_q6(ql.add(l + 32), false, qh.add(l), 2);
                        let q3 = S::load_q6(ql.add(l), true, qh.add(l), 4);
                        let q4 = S::load_q6(ql.add(l + 32), true, qh.add(l), 6);
                        S::store(yh.add(l), S::mul(s(0), q1));
                        S::store(yh.add(l + 32), S::mul(s(2), q2));
                        S::store(yh.add(l + 64), S::mul(s(4), q3));
                        S::store(yh.add(l + 96), S::mul(s(6), q4));
                    }
                }
            }
        }
        _ => dequant_row_scalar(ty, src, dst),
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dequant_row_entry<S: Simd>(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    dequant_row_g::<S>(ty, src, dst)
}
simd_fns!(k_dequant, dequant_row_entry, (ty: GgmlType, src: &[u8], dst: &mut [f32]));

/// Bytes of one row of `cols` elements, or an error if `cols` is not whole blocks.
pub(crate) fn row_bytes(ty: GgmlType, cols: usize) -> Result<usize, KernelError> {
    let bs = ty.block_size();
    if !cols.is_multiple_of(bs) {
        return Err(KernelError::ColsNotBlockMultiple {
            ty,
            cols,
            block: bs,
        });
    }
    (cols / bs)
        .checked_mul(ty.type_size())
        .ok_or_else(|| KernelError::InvalidShape(format!("row of {cols} {ty} overflows")))
}

pub(crate) fn dequantize_row_isa(
    isa: Isa,
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), KernelError> {
    if !is_supported(ty) {
        return Err(KernelError::UnsupportedType(ty));
    }
    let need = row_bytes(ty, dst.len())?;
    if src.len() != need {
        return Err(KernelError::Length {
            what: "dequantize_row: source bytes",
            expected: need,
            actual: src.len(),
        });
    }
    dispatch!(
        isa,
        k_dequant,
        dequant_row_scalar(ty, src, dst),
        (ty, src, dst)
    );
    Ok(())
}

/// Dequantizes `dst.len()` elements of type `ty` from `src` (exactly that many elements'
/// blocks), e.g. one embedding row. Errors for unsupported types or mismatched lengths.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    dequantize_row_isa(Isa::current(), ty, src, dst)
}
