//! API behaviour: length checks, unsupported types, round-trip error bounds and hand-checked
//! K-quant blocks.

use half::f16;
use quant::blocks::{self, get_scale_min_k4};
use quant::{dequantize, dequantize_row, quantize, quantize_row, GgmlType, QuantError};

/// Deterministic standard-normal-ish samples (xorshift + Box-Muller).
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (next(), next());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

fn rel_rmse(ty: GgmlType, x: &[f32]) -> f64 {
    let q = quantize(ty, x).unwrap();
    assert_eq!(q.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
    let mut y = vec![0f32; x.len()];
    dequantize(ty, &q, &mut y).unwrap();
    let err: f64 = x
        .iter()
        .zip(&y)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let sig: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
    (err / sig).sqrt()
}

#[test]
fn round_trip_error_is_within_format_bounds() {
    // Relative RMSE on Gaussian data, measured with this implementation (bit-exact to ggml's
    // reference quantizers, see tests/vectors.rs): Q8_K 0.0069, Q8_0 0.0053, Q6_K 0.0176,
    // Q5_K 0.0359, Q5_0 0.0426, Q5_1 0.0379, Q4_K 0.0708, Q4_0 0.0859, Q4_1 0.0778,
    // F16 0.00021, BF16 0.0017. The bounds leave ~20% headroom; a wrong nibble order, scale
    // packing or sign breaks them by a wide margin.
    let x = gaussian(256 * 64, 7);
    let bounds = [
        (GgmlType::Q8_K, 0.0085),
        (GgmlType::Q8_0, 0.0065),
        (GgmlType::Q8_1, 0.0065),
        (GgmlType::Q6_K, 0.021),
        (GgmlType::Q5_K, 0.043),
        (GgmlType::Q5_0, 0.051),
        (GgmlType::Q5_1, 0.045),
        (GgmlType::Q4_K, 0.085),
        (GgmlType::Q4_0, 0.103),
        (GgmlType::Q4_1, 0.093),
        (GgmlType::F16, 0.00026),
        (GgmlType::BF16, 0.002),
    ];
    let mut got = Vec::new();
    for (ty, bound) in bounds {
        let e = rel_rmse(ty, &x);
        got.push((ty, e));
        assert!(e < bound, "{ty}: relative RMSE {e:.5} >= {bound}");
        assert!(e > 0.0, "{ty}: suspiciously exact");
    }
    let e = |t: GgmlType| got.iter().find(|(ty, _)| *ty == t).unwrap().1;
    // The K-quants must beat the legacy formats with the same bit count.
    assert!(e(GgmlType::Q4_K) < e(GgmlType::Q4_0));
    assert!(e(GgmlType::Q5_K) < e(GgmlType::Q5_0));
    assert!(e(GgmlType::Q6_K) < e(GgmlType::Q5_K));
    assert!(e(GgmlType::Q4_K) < e(GgmlType::Q4_1));
    assert!(e(GgmlType::Q5_K) < e(GgmlType::Q5_1));
    assert_eq!(rel_rmse(GgmlType::F32, &x), 0.0);
}

#[test]
fn round_trip_handles_offsets_and_outliers() {
    // Shifted data exercises the min of Q4_K/Q5_K; an outlier per block the scale search.
    let mut x: Vec<f32> = gaussian(256 * 16, 11)
        .iter()
        .map(|v| v * 0.1 + 3.0)
        .collect();
    for b in 0..16 {
        x[b * 256 + (b * 37) % 256] = -2.0;
    }
    for (ty, bound) in [
        // measured 0.0203, 0.0103, 0.0083, 0.0025
        (GgmlType::Q4_K, 0.025),
        (GgmlType::Q5_K, 0.0125),
        (GgmlType::Q6_K, 0.010),
        (GgmlType::Q8_K, 0.003),
    ] {
        let e = rel_rmse(ty, &x);
        assert!(e < bound, "{ty}: relative RMSE {e:.5} >= {bound}");
    }
}

#[test]
fn q4_k_hand_checked_block_is_exact() {
    // Sub-block j holds x = q * s - mn with q = (i + 3j) % 16 covering 0..=15, s = 63 * 2^-7
    // and mn = 63 * 2^-8: the best fit is exact, so the block must be d = 2^-7 (f16 0x2000),
    // dmin = 2^-8 (0x1C00), all 6-bit scales and mins 63, quants q.
    let s = 63.0 / 128.0;
    let mn = 63.0 / 256.0;
    let q: Vec<u8> = (0..256)
        .map(|e| ((e % 32 + 3 * (e / 32)) % 16) as u8)
        .collect();
    let x: Vec<f32> = q.iter().map(|&q| q as f32 * s - mn).collect();
    let b = quantize(GgmlType::Q4_K, &x).unwrap();
    assert_eq!(b.len(), 144);
    assert_eq!(&b[blocks::q4_k::D..][..2], &0x2000u16.to_le_bytes(), "d");
    assert_eq!(
        &b[blocks::q4_k::DMIN..][..2],
        &0x1C00u16.to_le_bytes(),
        "dmin"
    );
    let scales: [u8; 12] = b[blocks::q4_k::SCALES..][..12].try_into().unwrap();
    assert_eq!(scales, [0xFF; 12], "all scales and mins 63");
    for j in 0..8 {
        assert_eq!(get_scale_min_k4(j, &scales), (63, 63));
    }
    for e in 0..256 {
        let byte = b[blocks::q4_k::QS + 32 * (e / 64) + e % 32];
        let got = if (e / 32) % 2 == 0 {
            byte & 0xF
        } else {
            byte >> 4
        };
        assert_eq!(got, q[e], "quant {e}");
    }
    let mut y = vec![0f32; 256];
    dequantize(GgmlType::Q4_K, &b, &mut y).unwrap();
    assert_eq!(x, y);
}

#[test]
fn q6_k_hand_checked_block_is_exact() {
    // x = q * 2^-3 with q in -32..=31 and -32 in every sub-block: d = -2^-10 (f16 0x9400),
    // every scale -128, quants q + 32 packed per the documented layout.
    let q: Vec<i32> = (0..256)
        .map(|e: i32| {
            if e % 16 == 5 {
                -32
            } else {
                (e * 7 + e / 16) % 64 - 32
            }
        })
        .collect();
    let x: Vec<f32> = q.iter().map(|&q| q as f32 * 0.125).collect();
    let b = quantize(GgmlType::Q6_K, &x).unwrap();
    let mut want = [0u8; 210];
    for (e, &q) in q.iter().enumerate() {
        let u = (q + 32) as u8;
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        want[blocks::q6_k::QL + 64 * h + 32 * (k & 1) + l] |= (u & 0xF) << (4 * (k / 2));
        want[blocks::q6_k::QH + 32 * h + l] |= (u >> 4) << (2 * k);
    }
    want[blocks::q6_k::SCALES..][..16].fill(0x80);
    want[blocks::q6_k::D..][..2].copy_from_slice(&0x9400u16.to_le_bytes());
    assert_eq!(b.as_slice(), want.as_slice());
    let mut y = vec![0f32; 256];
    dequantize(GgmlType::Q6_K, &b, &mut y).unwrap();
    assert_eq!(x, y);
}

#[test]
fn q8_k_hand_checked_block_is_exact() {
    // Largest magnitude 127/16 (positive) gives iscale = -16, d = -1/16, q = -16x.
    let x: Vec<f32> = (0..256)
        .map(|e| {
            if e == 9 {
                127.0 / 16.0
            } else {
                ((e * 13) % 254 + 1) as f32 / 16.0 - 127.0 / 16.0
            }
        })
        .collect();
    let b = quantize(GgmlType::Q8_K, &x).unwrap();
    assert_eq!(&b[..4], &(-0.0625f32).to_le_bytes());
    for e in 0..256 {
        assert_eq!(b[4 + e] as i8 as f32, -16.0 * x[e], "q {e}");
    }
    for j in 0..16 {
        let want: i32 = (0..16).map(|i| b[4 + 16 * j + i] as i8 as i32).sum();
        let got = i16::from_le_bytes([b[260 + 2 * j], b[261 + 2 * j]]);
        assert_eq!(got as i32, want, "bsum {j}");
    }
    let mut y = vec![0f32; 256];
    dequantize(GgmlType::Q8_K, &b, &mut y).unwrap();
    assert_eq!(x, y);
}

#[test]
fn q8_1_sum_field_is_d_times_sum() {
    let x = gaussian(64, 3);
    let b = quantize(GgmlType::Q8_1, &x).unwrap();
    for blk in b.chunks(36) {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let s = u16::from_le_bytes([blk[2], blk[3]]);
        let sum: i32 = blk[4..].iter().map(|&q| q as i8 as i32).sum();
        assert_eq!(s, f16::from_f32(sum as f32 * d).to_bits());
    }
}

#[test]
fn zero_blocks_quantize_to_zero_bytes_and_back() {
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
    ] {
        let x = vec![0f32; 256];
        let q = quantize(ty, &x).unwrap();
        let mut y = vec![1f32; 256];
        dequantize(ty, &q, &mut y).unwrap();
        assert!(y.iter().all(|v| *v == 0.0), "{ty}");
    }
}

#[test]
fn wrong_lengths_are_typed_errors() {
    let mut dst = vec![0f32; 32];
    assert_eq!(
        dequantize(GgmlType::Q4_0, &[0u8; 17], &mut dst),
        Err(QuantError::ByteLength {
            ty: GgmlType::Q4_0,
            elements: 32,
            expected: 18,
            actual: 17
        })
    );
    let mut dst = vec![0f32; 100];
    assert_eq!(
        dequantize(GgmlType::Q4_K, &[0u8; 144], &mut dst),
        Err(QuantError::NotWholeBlocks {
            ty: GgmlType::Q4_K,
            elements: 100,
            block_size: 256
        })
    );
    let mut dst = vec![0f32; 3];
    assert!(matches!(
        dequantize(GgmlType::F16, &[0u8; 8], &mut dst),
        Err(QuantError::ByteLength {
            expected: 6,
            actual: 8,
            ..
        })
    ));
    assert_eq!(
        quantize(GgmlType::Q8_0, &[0.0; 33]),
        Err(QuantError::NotWholeBlocks {
            ty: GgmlType::Q8_0,
            elements: 33,
            block_size: 32
        })
    );
    let mut out = vec![0u8; 143];
    let err = quantize_row(GgmlType::Q4_K, &[0.0; 256], &mut out).unwrap_err();
    assert_eq!(
        err,
        QuantError::ByteLength {
            ty: GgmlType::Q4_K,
            elements: 256,
            expected: 144,
            actual: 143
        }
    );
    assert_eq!(
        err.to_string(),
        "256 Q4_K elements take 144 bytes, but 143 bytes were given"
    );
    // Empty input is zero blocks: fine.
    assert_eq!(quantize(GgmlType::Q6_K, &[]).unwrap(), Vec::<u8>::new());
    dequantize_row(GgmlType::Q6_K, &[], &mut []).unwrap();
}

#[test]
fn unsupported_types_are_typed_errors() {
    let mut dst = vec![0f32; 256];
    for ty in GgmlType::ALL {
        let supported = quant::can_dequantize(ty);
        let src = vec![0u8; ty.bytes_for(256).unwrap_or(0) as usize];
        let r = dequantize(ty, &src, &mut dst);
        if supported {
            r.unwrap_or_else(|e| panic!("{ty}: {e}"));
        } else {
            assert_eq!(r, Err(QuantError::Unsupported(ty)));
            assert_eq!(quantize(ty, &[0.0; 256]), Err(QuantError::Unsupported(ty)));
        }
    }
    for ty in [GgmlType::Q2_K, GgmlType::Q3_K] {
        let e = quantize(ty, &[0.0; 256]).unwrap_err();
        assert_eq!(e, QuantError::NoQuantizer(ty));
        assert!(e.to_string().contains("Q2_K") || e.to_string().contains("Q3_K"));
    }
    assert_eq!(
        QuantError::Unsupported(GgmlType::IQ2_XXS).to_string(),
        "tensor type IQ2_XXS (id 16) is not supported"
    );
}

#[test]
fn per_block_helpers_match_the_row_api() {
    let x = gaussian(256, 5);
    let q = quantize(GgmlType::Q4_K, &x).unwrap();
    let mut row = vec![0f32; 256];
    dequantize(GgmlType::Q4_K, &q, &mut row).unwrap();
    let mut blk = [0f32; 256];
    quant::dequantize_block_q4_k(q.as_slice().try_into().unwrap(), &mut blk);
    assert_eq!(row.as_slice(), blk.as_slice());
    let mut qb = [0u8; 144];
    quant::quantize_block_q4_k(x.as_slice().try_into().unwrap(), &mut qb);
    assert_eq!(q.as_slice(), qb.as_slice());
}

#[test]
fn half_slices_convert_and_check_lengths() {
    let x = [1.0f32, -2.5, 65504.0, 1e-8, f32::INFINITY, 70000.0];
    let mut h = [f16::ZERO; 6];
    quant::f32_to_f16_slice(&x, &mut h).unwrap();
    let mut back = [0f32; 6];
    quant::f16_to_f32_slice(&h, &mut back).unwrap();
    assert_eq!(
        back,
        [1.0, -2.5, 65504.0, 0.0, f32::INFINITY, f32::INFINITY]
    );
    assert_eq!(
        quant::f16_to_f32_slice(&h, &mut back[..5]),
        Err(QuantError::LengthMismatch { src: 6, dst: 5 })
    );
    // bf16: round to nearest even, NaN stays NaN.
    assert_eq!(quant::f32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
    assert_eq!(quant::f32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
    assert_eq!(quant::f32_to_bf16(f32::from_bits(0x7F80_0001)), 0x7FC0);
}

#[test]
fn geometry_matches_ggml() {
    // (type, id, block size, bytes) from ggml-common.h / gguf-py 0.19 GGML_QUANT_SIZES.
    // gguf-py lists Q8_1 as 40 bytes (its old two-f32 layout); ggml's block_q8_1 is 36.
    use GgmlType::*;
    let table = [
        (F32, 0, 1, 4),
        (F16, 1, 1, 2),
        (Q4_0, 2, 32, 18),
        (Q4_1, 3, 32, 20),
        (Q5_0, 6, 32, 22),
        (Q5_1, 7, 32, 24),
        (Q8_0, 8, 32, 34),
        (Q8_1, 9, 32, 36),
        (Q2_K, 10, 256, 84),
        (Q3_K, 11, 256, 110),
        (Q4_K, 12, 256, 144),
        (Q5_K, 13, 256, 176),
        (Q6_K, 14, 256, 210),
        (Q8_K, 15, 256, 292),
        (IQ2_XXS, 16, 256, 66),
        (IQ2_XS, 17, 256, 74),
        (IQ3_XXS, 18, 256, 98),
        (IQ1_S, 19, 256, 50),
        (IQ4_NL, 20, 32, 18),
        (IQ3_S, 21, 256, 110),
        (IQ2_S, 22, 256, 82),
        (IQ4_XS, 23, 256, 136),
        (I8, 24, 1, 1),
        (I16, 25, 1, 2),
        (I32, 26, 1, 4),
        (I64, 27, 1, 8),
        (F64, 28, 1, 8),
        (IQ1_M, 29, 256, 56),
        (BF16, 30, 1, 2),
        (TQ1_0, 34, 256, 54),
        (TQ2_0, 35, 256, 66),
        (MXFP4, 39, 32, 17),
        (NVFP4, 40, 64, 36),
        (Q1_0, 41, 128, 18),
    ];
    assert_eq!(table.len(), GgmlType::ALL.len());
    for (ty, id, bs, ts) in table {
        assert_eq!(
            (ty.id(), ty.block_size(), ty.type_size()),
            (id, bs, ts),
            "{ty}"
        );
        assert_eq!(GgmlType::from_id(id), Some(ty));
    }
    assert_eq!(GgmlType::from_id(4), None);
    assert_eq!(Q4_K.bytes_for(512), Some(288));
    assert_eq!(Q4_K.bytes_for(100), None);
    assert_eq!(Q8_0.bytes_for(u64::MAX / 2 * 2 - 30), None);
}
