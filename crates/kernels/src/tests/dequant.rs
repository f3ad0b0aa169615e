use super::{isas, rng};
use crate::dequant::{dequantize_row_isa, SUPPORTED_TYPES};
use half::f16;
use quant::GgmlType;
use rand::rngs::StdRng;
use rand::Rng;

/// Offsets of the f16 scale fields in a block of `ty`.
pub(crate) fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType as T;
    match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        _ => &[],
    }
}

/// `cols` elements of valid random data of type `ty`: random quant bits, sane f16 scales,
/// finite floats for the float types.
pub(crate) fn random_row(r: &mut StdRng, ty: GgmlType, cols: usize) -> Vec<u8> {
    use GgmlType as T;
    match ty {
        T::F32 => (0..cols)
            .flat_map(|_| r.gen_range(-1.0f32..1.0).to_le_bytes())
            .collect(),
        T::F16 => (0..cols)
            .flat_map(|_| f16::from_f32(r.gen_range(-1.0f32..1.0)).to_le_bytes())
            .collect(),
        T::BF16 => (0..cols)
            .flat_map(|_| ((r.gen_range(-1.0f32..1.0).to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        _ => {
            let (bs, ts) = (ty.block_size(), ty.type_size());
            let mut v: Vec<u8> = (0..cols / bs * ts).map(|_| r.gen()).collect();
            for b in v.chunks_exact_mut(ts) {
                for &o in f16_fields(ty) {
                    let d = f16::from_f32(r.gen_range(-0.02f32..0.02));
                    b[o..o + 2].copy_from_slice(&d.to_le_bytes());
                }
            }
            v
        }
    }
}

pub(crate) fn test_cols(ty: GgmlType) -> &'static [usize] {
    match ty.block_size() {
        1 => &[1, 7, 33, 576],
        32 => &[32, 96, 576, 640, 1536],
        _ => &[256, 512, 1536],
    }
}

/// Every SIMD path agrees bit for bit with the scalar reference (the `quant` crate).
#[test]
fn dequant_matches_quant_and_scalar() {
    let mut r = rng(11);
    for ty in SUPPORTED_TYPES {
        for &cols in test_cols(ty) {
            let src = random_row(&mut r, ty, cols);
            let mut want = vec![0.0; cols];
            quant::dequantize(ty, &src, &mut want).unwrap();
            for isa in isas() {
                let mut got = vec![f32::NAN; cols];
                dequantize_row_isa(isa, ty, &src, &mut got).unwrap();
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{isa} vs scalar: {ty} cols {cols}"
                );
            }
        }
    }
}

#[test]
fn dequant_errors() {
    let mut y = vec![0.0; 32];
    assert!(matches!(
        crate::dequantize_row(GgmlType::IQ2_XS, &[0; 74], &mut vec![0.0; 256]),
        Err(crate::KernelError::UnsupportedType(GgmlType::IQ2_XS))
    ));
    assert!(matches!(
        crate::dequantize_row(GgmlType::Q4_0, &[0; 17], &mut y),
        Err(crate::KernelError::Length { .. })
    ));
    assert!(matches!(
        crate::dequantize_row(GgmlType::Q4_0, &[0; 18], &mut y[..31]),
        Err(crate::KernelError::ColsNotBlockMultiple { .. })
    ));
}
