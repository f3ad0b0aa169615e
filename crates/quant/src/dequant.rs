//! Dequantization: blocks to `f32`, bit-exact to ggml's `dequantize_row_*`.

use half::f16;

use crate::blocks::{self, get_scale_min_k4, q3_k_scales};
use crate::{GgmlType, QuantError};

#[inline]
fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Checks that `elements` of `ty` are whole blocks and occupy exactly `bytes` bytes.
pub(crate) fn check_geometry(
    ty: GgmlType,
    elements: usize,
    bytes: usize,
) -> Result<(), QuantError> {
    let block_size = ty.block_size();
    if elements.checked_rem(block_size) != Some(0) {
        return Err(QuantError::NotWholeBlocks {
            ty,
            elements,
            block_size,
        });
    }
    let expected = (elements / block_size).checked_mul(ty.type_size());
    if expected != Some(bytes) {
        return Err(QuantError::ByteLength {
            ty,
            elements,
            expected: expected.unwrap_or(usize::MAX),
            actual: bytes,
        });
    }
    Ok(())
}

/// Whether [`dequantize`] supports `ty`.
pub fn can_dequantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q8_1
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | Q8_K
    )
}

/// Dequantizes `dst.len()` elements of type `ty` from `src`.
///
/// `dst.len()` must be a multiple of `ty.block_size()` and `src.len()` exactly the matching
/// byte count. Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K..Q6_K, Q8_K;
/// anything else is [`QuantError::Unsupported`].
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if !can_dequantize(ty) {
        return Err(QuantError::Unsupported(ty));
    }
    check_geometry(ty, dst.len(), src.len())?;
    match ty {
        GgmlType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        GgmlType::F16 => {
            const CHUNK: usize = 256;
            let mut tmp = [f16::ZERO; CHUNK];
            for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(2 * CHUNK)) {
                let tmp = &mut tmp[..d.len()];
                for (t, b) in tmp.iter_mut().zip(s.chunks_exact(2)) {
                    *t = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
                }
                crate::f16_to_f32_slice(tmp, d)?;
            }
        }
        GgmlType::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f32::from_bits((u16::from_le_bytes([s[0], s[1]]) as u32) << 16);
            }
        }
        GgmlType::Q4_0 => each_block(src, dst, dequantize_block_q4_0),
        GgmlType::Q4_1 => each_block(src, dst, dequantize_block_q4_1),
        GgmlType::Q5_0 => each_block(src, dst, dequantize_block_q5_0),
        GgmlType::Q5_1 => each_block(src, dst, dequantize_block_q5_1),
        GgmlType::Q8_0 => each_block(src, dst, dequantize_block_q8_0),
        GgmlType::Q8_1 => each_block(src, dst, dequantize_block_q8_1),
        GgmlType::Q2_K => each_block(src, dst, dequantize_block_q2_k),
        GgmlType::Q3_K => each_block(src, dst, dequantize_block_q3_k),
        GgmlType::Q4_K => each_block(src, dst, dequantize_block_q4_k),
        GgmlType::Q5_K => each_block(src, dst, dequantize_block_q5_k),
        GgmlType::Q6_K => each_block(src, dst, dequantize_block_q6_k),
        GgmlType::Q8_K => each_block(src, dst, dequantize_block_q8_k),
        _ => return Err(QuantError::Unsupported(ty)),
    }
    Ok(())
}

/// The same as [`dequantize`]: one row (or any run of whole blocks) of a tensor.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    dequantize(ty, src, dst)
}

/// Runs `f` over matching blocks; the caller has checked the geometry.
#[inline]
fn each_block<const TS: usize, const BS: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: fn(&[u8; TS], &mut [f32; BS]),
) {
    for (s, d) in src.chunks_exact(TS).zip(dst.chunks_exact_mut(BS)) {
        // Both conversions cannot fail: chunks_exact yields exactly TS / BS items.
        if let (Ok(s), Ok(d)) = (<&[u8; TS]>::try_from(s), <&mut [f32; BS]>::try_from(d)) {
            f(s, d);
        }
    }
}

/// Dequantizes one Q4_0 block ([`blocks::q4_0`]).
#[inline]
pub fn dequantize_block_q4_0(b: &[u8; blocks::q4_0::TYPE_SIZE], y: &mut [f32; 32]) {
    let d = f16_at(b, blocks::q4_0::D);
    let qs = &b[blocks::q4_0::QS..];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// Dequantizes one Q4_1 block ([`blocks::q4_1`]).
#[inline]
pub fn dequantize_block_q4_1(b: &[u8; blocks::q4_1::TYPE_SIZE], y: &mut [f32; 32]) {
    let d = f16_at(b, blocks::q4_1::D);
    let m = f16_at(b, blocks::q4_1::M);
    let qs = &b[blocks::q4_1::QS..];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// Dequantizes one Q5_0 block ([`blocks::q5_0`]).
#[inline]
pub fn dequantize_block_q5_0(b: &[u8; blocks::q5_0::TYPE_SIZE], y: &mut [f32; 32]) {
    use blocks::q5_0::{D, QH, QS};
    let d = f16_at(b, D);
    let qh = u32::from_le_bytes([b[QH], b[QH + 1], b[QH + 2], b[QH + 3]]);
    let qs = &b[QS..];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = (((qs[j] & 0x0F) | (h0 << 4)) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) | (h1 << 4)) as i32 - 16) as f32 * d;
    }
}

/// Dequantizes one Q5_1 block ([`blocks::q5_1`]).
#[inline]
pub fn dequantize_block_q5_1(b: &[u8; blocks::q5_1::TYPE_SIZE], y: &mut [f32; 32]) {
    use blocks::q5_1::{D, M, QH, QS};
    let d = f16_at(b, D);
    let m = f16_at(b, M);
    let qh = u32::from_le_bytes([b[QH], b[QH + 1], b[QH + 2], b[QH + 3]]);
    let qs = &b[QS..];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = ((qs[j] & 0x0F) | (h0 << 4)) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) | (h1 << 4)) as f32 * d + m;
    }
}

/// Dequantizes one Q8_0 block ([`blocks::q8_0`]).
#[inline]
pub fn dequantize_block_q8_0(b: &[u8; blocks::q8_0::TYPE_SIZE], y: &mut [f32; 32]) {
    let d = f16_at(b, blocks::q8_0::D);
    for (o, &q) in y.iter_mut().zip(&b[blocks::q8_0::QS..]) {
        *o = q as i8 as f32 * d;
    }
}

/// Dequantizes one Q8_1 block ([`blocks::q8_1`]); the `s` field is not needed.
#[inline]
pub fn dequantize_block_q8_1(b: &[u8; blocks::q8_1::TYPE_SIZE], y: &mut [f32; 32]) {
    let d = f16_at(b, blocks::q8_1::D);
    for (o, &q) in y.iter_mut().zip(&b[blocks::q8_1::QS..]) {
        *o = q as i8 as f32 * d;
    }
}

/// Dequantizes one Q2_K block ([`blocks::q2_k`]).
#[inline]
pub fn dequantize_block_q2_k(b: &[u8; blocks::q2_k::TYPE_SIZE], y: &mut [f32; 256]) {
    use blocks::q2_k::{D, DMIN, QS, SCALES};
    let d = f16_at(b, D);
    let dmin = f16_at(b, DMIN);
    let scales = &b[SCALES..SCALES + 16];
    let qs = &b[QS..QS + 64];
    for (e, o) in y.iter_mut().enumerate() {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let q = (qs[32 * h + l] >> (2 * k)) & 3;
        let sc = scales[e / 16];
        let dl = d * (sc & 0x0F) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *o = dl * q as f32 - ml;
    }
}

/// Dequantizes one Q3_K block ([`blocks::q3_k`]).
#[inline]
pub fn dequantize_block_q3_k(b: &[u8; blocks::q3_k::TYPE_SIZE], y: &mut [f32; 256]) {
    use blocks::q3_k::{D, HMASK, QS, SCALES};
    let d = f16_at(b, D);
    let mut packed = [0u8; 12];
    packed.copy_from_slice(&b[SCALES..SCALES + 12]);
    let scales = q3_k_scales(&packed);
    let hmask = &b[HMASK..HMASK + 32];
    let qs = &b[QS..QS + 64];
    for (e, o) in y.iter_mut().enumerate() {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = ((qs[32 * h + l] >> (2 * k)) & 3) as i32;
        let high = (hmask[l] >> (e / 32)) & 1;
        let q = low - if high != 0 { 0 } else { 4 };
        let dl = d * scales[e / 16] as f32;
        *o = dl * q as f32;
    }
}

/// Dequantizes one Q4_K block ([`blocks::q4_k`]).
#[inline]
pub fn dequantize_block_q4_k(b: &[u8; blocks::q4_k::TYPE_SIZE], y: &mut [f32; 256]) {
    use blocks::q4_k::{D, DMIN, QS, SCALES};
    let d = f16_at(b, D);
    let dmin = f16_at(b, DMIN);
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&b[SCALES..SCALES + 12]);
    let qs = &b[QS..QS + 128];
    for c in 0..4 {
        let (sc0, m0) = get_scale_min_k4(2 * c, &scales);
        let (sc1, m1) = get_scale_min_k4(2 * c + 1, &scales);
        let (d0, mm0) = (d * sc0 as f32, dmin * m0 as f32);
        let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
        for l in 0..32 {
            let q = qs[32 * c + l];
            y[64 * c + l] = d0 * (q & 0x0F) as f32 - mm0;
            y[64 * c + 32 + l] = d1 * (q >> 4) as f32 - mm1;
        }
    }
}

/// Dequantizes one Q5_K block ([`blocks::q5_k`]).
#[inline]
pub fn dequantize_block_q5_k(b: &[u8; blocks::q5_k::TYPE_SIZE], y: &mut [f32; 256]) {
    use blocks::q5_k::{D, DMIN, QH, QS, SCALES};
    let d = f16_at(b, D);
    let dmin = f16_at(b, DMIN);
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&b[SCALES..SCALES + 12]);
    let qh = &b[QH..QH + 32];
    let qs = &b[QS..QS + 128];
    for c in 0..4 {
        let (sc0, m0) = get_scale_min_k4(2 * c, &scales);
        let (sc1, m1) = get_scale_min_k4(2 * c + 1, &scales);
        let (d0, mm0) = (d * sc0 as f32, dmin * m0 as f32);
        let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
        for l in 0..32 {
            let q = qs[32 * c + l];
            let h0 = (qh[l] >> (2 * c)) & 1;
            let h1 = (qh[l] >> (2 * c + 1)) & 1;
            y[64 * c + l] = d0 * ((q & 0x0F) | (h0 << 4)) as f32 - mm0;
            y[64 * c + 32 + l] = d1 * ((q >> 4) | (h1 << 4)) as f32 - mm1;
        }
    }
}

/// Dequantizes one Q6_K block ([`blocks::q6_k`]).
#[inline]
pub fn dequantize_block_q6_k(b: &[u8; blocks::q6_k::TYPE_SIZE], y: &mut [f32; 256]) {
    use blocks::q6_k::{D, QH, QL, SCALES};
    let d = f16_at(b, D);
    let ql = &b[QL..QL + 128];
    let qh = &b[QH..QH + 64];
    let sc = &b[SCALES..SCALES + 16];
    for (e, o) in y.iter_mut().enumerate() {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let lb = ql[64 * h + 32 * (k & 1) + l];
        let low = if k < 2 { lb & 0x0F } else { lb >> 4 };
        let high = (qh[32 * h + l] >> (2 * k)) & 3;
        let q = (low | (high << 4)) as i32 - 32;
        *o = (d * sc[e / 16] as i8 as f32) * q as f32;
    }
}

/// Dequantizes one Q8_K block ([`blocks::q8_k`]).
#[inline]
pub fn dequantize_block_q8_k(b: &[u8; blocks::q8_k::TYPE_SIZE], y: &mut [f32; 256]) {
    use blocks::q8_k::{D, QS};
    let d = f32::from_le_bytes([b[D], b[D + 1], b[D + 2], b[D + 3]]);
    for (o, &q) in y.iter_mut().zip(&b[QS..QS + 256]) {
        *o = d * q as i8 as f32;
    }
}
