//! Bulk conversions between `f32` and the 16-bit float formats.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::QuantError;

fn check_len(src: usize, dst: usize) -> Result<(), QuantError> {
    if src == dst {
        Ok(())
    } else {
        Err(QuantError::LengthMismatch { src, dst })
    }
}

/// Converts IEEE half floats to `f32` (exact). Uses the CPU's F16C/FP16 instructions when the
/// `half` crate detects them at run time.
pub fn f16_to_f32_slice(src: &[f16], dst: &mut [f32]) -> Result<(), QuantError> {
    check_len(src.len(), dst.len())?;
    src.convert_to_f32_slice(dst);
    Ok(())
}

/// Converts `f32` to IEEE half floats, rounding to nearest, ties to even (as ggml and numpy
/// do); values beyond the f16 range become infinities.
pub fn f32_to_f16_slice(src: &[f32], dst: &mut [f16]) -> Result<(), QuantError> {
    check_len(src.len(), dst.len())?;
    dst.convert_from_f32_slice(src);
    Ok(())
}

/// Converts bfloat16 to `f32` (exact: the bits shifted left by 16).
pub fn bf16_to_f32_slice(src: &[bf16], dst: &mut [f32]) -> Result<(), QuantError> {
    check_len(src.len(), dst.len())?;
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s.to_bits() as u32) << 16);
    }
    Ok(())
}

/// Converts one `f32` to bfloat16 bits exactly as ggml's `ggml_compute_fp32_to_bf16`:
/// NaNs become quiet NaNs keeping their sign and top payload bits, everything else rounds to
/// nearest, ties to even (overflowing to infinity).
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    ((u as u64 + 0x7fff + ((u as u64 >> 16) & 1)) >> 16) as u16
}

/// Converts `f32` to bfloat16 with [`f32_to_bf16`].
pub fn f32_to_bf16_slice(src: &[f32], dst: &mut [bf16]) -> Result<(), QuantError> {
    check_len(src.len(), dst.len())?;
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16::from_bits(f32_to_bf16(*s));
    }
    Ok(())
}
