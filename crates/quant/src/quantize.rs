//! Quantization: `f32` to blocks, matching llama.cpp's reference quantizers
//! (`quantize_row_*_ref` in `ggml-quants.c`) bit for bit.
//!
//! The arithmetic is done in `f32` in the reference's operation order, without fused
//! multiply-add, so results do not depend on the CPU. Scales are rounded to f16 with
//! round-to-nearest-even, as ggml and numpy do.

use half::f16;

use crate::blocks::{self, get_scale_min_k4};
use crate::dequant::check_geometry;
use crate::{GgmlType, QuantError};

/// Below this a group counts as all zeros (`GROUP_MAX_EPS` in ggml).
const GROUP_MAX_EPS: f32 = 1e-15;

#[inline]
fn put_f16(out: &mut [u8], off: usize, v: f32) {
    out[off..off + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

#[inline]
fn get_f16(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Rounds to the nearest integer, ties to even, the way ggml's `nearest_int` does (adding
/// 1.5 * 2^23 and reading the mantissa). Exact for `|f| <= 4194303`; larger values and NaN give
/// an unspecified (but non-panicking) result, as in ggml.
#[inline]
pub fn nearest_int(f: f32) -> i32 {
    let v = f + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Whether [`quantize`] supports `ty`.
pub fn can_quantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | Q4_K | Q5_K | Q6_K | Q8_K
    )
}

/// Quantizes `src` to type `ty`, returning the block bytes.
///
/// `src.len()` must be a multiple of `ty.block_size()`. Supported: F32, F16, BF16, Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K, Q8_K. Types this crate can only dequantize give
/// [`QuantError::NoQuantizer`], the others [`QuantError::Unsupported`].
pub fn quantize(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, QuantError> {
    check_quantizable(ty)?;
    let block_size = ty.block_size();
    if src.len().checked_rem(block_size) != Some(0) {
        return Err(QuantError::NotWholeBlocks {
            ty,
            elements: src.len(),
            block_size,
        });
    }
    let mut out = vec![0u8; src.len() / block_size * ty.type_size()];
    quantize_row(ty, src, &mut out)?;
    Ok(out)
}

fn check_quantizable(ty: GgmlType) -> Result<(), QuantError> {
    if can_quantize(ty) {
        Ok(())
    } else if crate::can_dequantize(ty) {
        Err(QuantError::NoQuantizer(ty))
    } else {
        Err(QuantError::Unsupported(ty))
    }
}

/// Quantizes `src` into `dst`, which must be exactly the byte count of `src.len()` elements.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_quantizable(ty)?;
    check_geometry(ty, src.len(), dst.len())?;
    match ty {
        GgmlType::F32 => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&s.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            const CHUNK: usize = 256;
            let mut tmp = [f16::ZERO; CHUNK];
            for (s, d) in src.chunks(CHUNK).zip(dst.chunks_mut(2 * CHUNK)) {
                let tmp = &mut tmp[..s.len()];
                crate::f32_to_f16_slice(s, tmp)?;
                for (b, t) in d.chunks_exact_mut(2).zip(tmp.iter()) {
                    b.copy_from_slice(&t.to_bits().to_le_bytes());
                }
            }
        }
        GgmlType::BF16 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&crate::f32_to_bf16(*s).to_le_bytes());
            }
        }
        GgmlType::Q4_0 => each_block(src, dst, quantize_block_q4_0),
        GgmlType::Q4_1 => each_block(src, dst, quantize_block_q4_1),
        GgmlType::Q5_0 => each_block(src, dst, quantize_block_q5_0),
        GgmlType::Q5_1 => each_block(src, dst, quantize_block_q5_1),
        GgmlType::Q8_0 => each_block(src, dst, quantize_block_q8_0),
        GgmlType::Q8_1 => each_block(src, dst, quantize_block_q8_1),
        GgmlType::Q4_K => each_block(src, dst, quantize_block_q4_k),
        GgmlType::Q5_K => each_block(src, dst, quantize_block_q5_k),
        GgmlType::Q6_K => each_block(src, dst, quantize_block_q6_k),
        GgmlType::Q8_K => each_block(src, dst, quantize_block_q8_k),
        _ => return Err(QuantError::Unsupported(ty)),
    }
    Ok(())
}

/// Runs `f` over matching blocks; the caller has checked the geometry.
#[inline]
fn each_block<const BS: usize, const TS: usize>(
    src: &[f32],
    dst: &mut [u8],
    f: fn(&[f32; BS], &mut [u8; TS]),
) {
    for (s, d) in src.chunks_exact(BS).zip(dst.chunks_exact_mut(TS)) {
        // Both conversions cannot fail: chunks_exact yields exactly BS / TS items.
        if let (Ok(s), Ok(d)) = (<&[f32; BS]>::try_from(s), <&mut [u8; TS]>::try_from(d)) {
            f(s, d);
        }
    }
}

/// The element of largest magnitude (the first one on ties), with its sign; 0 when all are 0.
#[inline]
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Quantizes one Q4_0 block (`quantize_row_q4_0_ref`): `d = max / -8` where `max` is the
/// signed element of largest magnitude, `q = min(15, trunc(x / d + 8.5))`.
pub fn quantize_block_q4_0(x: &[f32; 32], out: &mut [u8; blocks::q4_0::TYPE_SIZE]) {
    let max = signed_absmax(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, blocks::q4_0::D, d);
    for j in 0..16 {
        let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let q1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
        out[blocks::q4_0::QS + j] = q0 | (q1 << 4);
    }
}

/// Quantizes one Q4_1 block (`quantize_row_q4_1_ref`): `d = (max - min) / 15`, `m = min`,
/// `q = min(15, trunc((x - min) / d + 0.5))`.
pub fn quantize_block_q4_1(x: &[f32; 32], out: &mut [u8; blocks::q4_1::TYPE_SIZE]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, blocks::q4_1::D, d);
    put_f16(out, blocks::q4_1::M, min);
    for j in 0..16 {
        let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
        let q1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
        out[blocks::q4_1::QS + j] = q0 | (q1 << 4);
    }
}

/// Quantizes one Q5_0 block (`quantize_row_q5_0_ref`): `d = max / -16`,
/// `q = min(31, trunc(x / d + 16.5))`.
pub fn quantize_block_q5_0(x: &[f32; 32], out: &mut [u8; blocks::q5_0::TYPE_SIZE]) {
    use blocks::q5_0::{D, QH, QS};
    let max = signed_absmax(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, D, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
        let q1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
        out[QS + j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= ((q0 as u32 & 0x10) >> 4) << j;
        qh |= ((q1 as u32 & 0x10) >> 4) << (j + 16);
    }
    out[QH..QH + 4].copy_from_slice(&qh.to_le_bytes());
}

/// Quantizes one Q5_1 block (`quantize_row_q5_1_ref`): `d = (max - min) / 31`, `m = min`,
/// `q = min(31, trunc((x - min) / d + 0.5))`.
pub fn quantize_block_q5_1(x: &[f32; 32], out: &mut [u8; blocks::q5_1::TYPE_SIZE]) {
    use blocks::q5_1::{D, M, QH, QS};
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, D, d);
    put_f16(out, M, min);
    let mut qh = 0u32;
    for j in 0..16 {
        let q0 = (((x[j] - min) * id + 0.5) as i8).min(31) as u8;
        let q1 = (((x[j + 16] - min) * id + 0.5) as i8).min(31) as u8;
        out[QS + j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= ((q0 as u32 & 0x10) >> 4) << j;
        qh |= ((q1 as u32 & 0x10) >> 4) << (j + 16);
    }
    out[QH..QH + 4].copy_from_slice(&qh.to_le_bytes());
}

/// Quantizes one Q8_0 block (`quantize_row_q8_0_ref`): `d = amax / 127`,
/// `q = round(x / d)` rounding half away from zero.
pub fn quantize_block_q8_0(x: &[f32; 32], out: &mut [u8; blocks::q8_0::TYPE_SIZE]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, blocks::q8_0::D, d);
    for (o, &v) in out[blocks::q8_0::QS..].iter_mut().zip(x) {
        *o = (v * id).round() as i8 as u8;
    }
}

/// Quantizes one Q8_1 block (`quantize_row_q8_1_ref`): as Q8_0, plus
/// `s = f16(d * sum(q))`.
pub fn quantize_block_q8_1(x: &[f32; 32], out: &mut [u8; blocks::q8_1::TYPE_SIZE]) {
    use blocks::q8_1::{D, QS, S};
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, D, d);
    let mut sum = 0i32;
    for (o, &v) in out[QS..].iter_mut().zip(x) {
        let q = (v * id).round() as i8;
        sum += q as i32;
        *o = q as u8;
    }
    put_f16(out, S, sum as f32 * d);
}

/// ggml's `make_qkx2_quants`: fits `x ≈ scale * L + min` (weighted least squares over a small
/// grid of candidate scales), `L` in `0..=nmax`. Returns `(scale, -min)`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights (weights `x²`):
/// fits `x ≈ scale * l`, `l` in `-nmax..nmax`, storing `l + nmax` in `l_out`. Returns `scale`.
fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l_out: &mut [u8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let fit = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let store = |iscale: f32, l_out: &mut [u8]| {
        for (o, &v) in l_out.iter_mut().zip(x) {
            *o = (nmax + nearest_int(iscale * v).clamp(-nmax, nmax - 1)) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    store(iscale, l_out);
    let (sumlx, suml2) = fit(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = fit(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            store(iscale, l_out);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Packs eight 6-bit scales and mins the way [`get_scale_min_k4`] unpacks them.
fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// The shared part of the Q4_K and Q5_K reference quantizers: per 32-element sub-block a
/// weighted `make_qkx2_quants` fit, 6-bit scales and mins relative to the largest, then the
/// quants recomputed against the rounded scales. Writes d, dmin and scales at offsets 0, 2, 4
/// and returns the quants `L` (0..=nmax).
fn quantize_k_scale_min(
    x: &[f32; 256],
    out: &mut [u8],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> [u8; 256] {
    let mut l = [0u8; 256];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (scale, min) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // `as u8` wraps like ggml's int-to-uint8_t assignment before the MIN.
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let packed = pack_scale_min_k4(&ls, &lm);
    put_f16(out, 0, max_scale / 63.0);
    put_f16(out, 2, max_min / 63.0);
    out[4..16].copy_from_slice(&packed);
    let d_all = get_f16(out, 0);
    let dmin_all = get_f16(out, 2);
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    l
}

/// Quantizes one Q4_K block (`quantize_row_q4_K_ref`: `make_qkx2_quants(32, 15, ..., -1.0,
/// 0.1, 20)` per sub-block with weights `sqrt(mean(x²)) + |x|`).
pub fn quantize_block_q4_k(x: &[f32; 256], out: &mut [u8; blocks::q4_k::TYPE_SIZE]) {
    let l = quantize_k_scale_min(x, out, 15, -1.0, 20);
    let qs = &mut out[blocks::q4_k::QS..];
    for c in 0..4 {
        for i in 0..32 {
            qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
        }
    }
}

/// Quantizes one Q5_K block (`quantize_row_q5_K_ref`: `make_qkx2_quants(32, 31, ..., -0.5,
/// 0.1, 15)` per sub-block with weights `sqrt(mean(x²)) + |x|`).
pub fn quantize_block_q5_k(x: &[f32; 256], out: &mut [u8; blocks::q5_k::TYPE_SIZE]) {
    use blocks::q5_k::{QH, QS};
    let l = quantize_k_scale_min(x, out, 31, -0.5, 15);
    let mut qh = [0u8; 32];
    for c in 0..4 {
        for i in 0..32 {
            let l0 = l[64 * c + i];
            let l1 = l[64 * c + 32 + i];
            qh[i] |= ((l0 >> 4) << (2 * c)) | ((l1 >> 4) << (2 * c + 1));
            out[QS + 32 * c + i] = (l0 & 0x0F) | ((l1 & 0x0F) << 4);
        }
    }
    out[QH..QH + 32].copy_from_slice(&qh);
}

/// Quantizes one Q6_K block (`quantize_row_q6_K_ref`: `make_qx_quants(16, 32, ..., 1)` per
/// sub-block, 8-bit scales relative to the largest, quants recomputed against the rounded
/// scales).
pub fn quantize_block_q6_k(x: &[f32; 256], out: &mut [u8; blocks::q6_k::TYPE_SIZE]) {
    use blocks::q6_k::{D, QH, QL, SCALES};
    let mut l = [0u8; 256];
    let mut scales = [0.0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..16 {
        let scale =
            make_qx_quants_rmse1(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(out, D, 1.0 / iscale);
    for ib in 0..16 {
        out[SCALES + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    let d_all = get_f16(out, D);
    for j in 0..16 {
        let d = d_all * out[SCALES + j] as i8 as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    for h in 0..2 {
        let lh = &l[128 * h..128 * h + 128];
        for i in 0..32 {
            out[QL + 64 * h + i] = (lh[i] & 0x0F) | ((lh[i + 64] & 0x0F) << 4);
            out[QL + 64 * h + 32 + i] = (lh[i + 32] & 0x0F) | ((lh[i + 96] & 0x0F) << 4);
            out[QH + 32 * h + i] = (lh[i] >> 4)
                | ((lh[i + 32] >> 4) << 2)
                | ((lh[i + 64] >> 4) << 4)
                | ((lh[i + 96] >> 4) << 6);
        }
    }
}

/// Quantizes one Q8_K block (`quantize_row_q8_K_ref`): `q = min(127, nearest_int(-127 / max *
/// x))` where `max` is the signed element of largest magnitude, `d = 1 / (-127 / max)` (an
/// f32, negative when `max` is positive), and the 16 block sums. An all-zero block is all
/// zeros (ggml leaves its `bsums` unwritten; here they are 0).
pub fn quantize_block_q8_k(x: &[f32; 256], out: &mut [u8; blocks::q8_k::TYPE_SIZE]) {
    use blocks::q8_k::{BSUMS, D, QS};
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        out.fill(0);
        return;
    }
    let iscale = -127.0 / max;
    let mut qs = [0i8; 256];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (o, q) in out[QS..QS + 256].iter_mut().zip(&qs) {
        *o = *q as u8;
    }
    for j in 0..16 {
        let sum: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
        out[BSUMS + 2 * j..BSUMS + 2 * j + 2].copy_from_slice(&(sum as i16).to_le_bytes());
    }
    out[D..D + 4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}
