#![allow(clippy::needless_range_loop)]

//! K-quant integer matmul (`kquant_dot`): the Q8_K activation quantizer against the `quant`
//! crate, the scalar integer reference against an f64 reference on the same quantized
//! activations (exact up to f32 rounding), every ISA path against the scalar reference, and
//! the whole against the f32 dequantization reference within the activation-quantization
//! error.

use super::dequant::random_row;
use super::{isas, randv, rng};
use crate::kquant_dot::test_api::{dot_row_scalar, quantize_block_scalar, quantize_row, ActBlock};
use crate::matmul::matmul_isa;
use crate::{Isa, ThreadPool, Weights};
use quant::GgmlType;

const KTYPES: [GgmlType; 5] = [
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
];

fn act_bytes(a: &ActBlock) -> Vec<u8> {
    let mut v = a.d.to_le_bytes().to_vec();
    v.extend(a.qs.iter().map(|&q| q as u8));
    for s in a.bsums {
        v.extend(s.to_le_bytes());
    }
    v
}

#[test]
fn q8k_quantizer_matches_quant_crate_and_simd_matches_scalar() {
    let mut r = rng(31);
    let mut rows: Vec<Vec<f32>> = (0..20)
        .map(|i| randv(&mut r, 256 * (1 + i % 3), 1.0 + i as f32))
        .collect();
    // Ties between +max and -max (the first wins), zeros, one non-zero, tiny values.
    let mut tie = vec![0.25f32; 256];
    tie[10] = -3.0;
    tie[200] = 3.0;
    rows.push(tie.clone());
    tie[10] = 3.0;
    tie[200] = -3.0;
    rows.push(tie);
    rows.push(vec![0.0; 256]);
    let mut one = vec![0.0; 512];
    one[300] = -1e-3;
    rows.push(one);
    rows.push(randv(&mut r, 256, 1e-30));
    for x in &rows {
        let want = quant::quantize(GgmlType::Q8_K, x).unwrap();
        let mut scalar = Vec::new();
        for xb in x.chunks_exact(256) {
            let mut a = ActBlock::ZERO;
            quantize_block_scalar(xb, &mut a);
            scalar.extend(act_bytes(&a));
            for g in 0..16 {
                assert_eq!(a.bsf[g].to_bits(), (a.d * a.bsums[g] as f32).to_bits());
            }
        }
        assert_eq!(scalar, want, "scalar Q8_K vs quant crate");
        for isa in isas() {
            let got: Vec<u8> = quantize_row(isa, x).iter().flat_map(act_bytes).collect();
            assert_eq!(got, want, "{isa} Q8_K vs quant crate");
        }
    }
}

/// f64 dot of dequantized weights with dequantized Q8_K activations; also Σ|w·x|.
fn exact_on_quantized(ty: GgmlType, row: &[u8], act: &[ActBlock]) -> (f64, f64) {
    let cols = 256 * act.len();
    let mut w = vec![0.0f32; cols];
    quant::dequantize(ty, row, &mut w).unwrap();
    let (mut s, mut m) = (0.0f64, 0.0f64);
    for (i, &wv) in w.iter().enumerate() {
        let a = &act[i / 256];
        let p = wv as f64 * (a.d as f64 * a.qs[i % 256] as f64);
        s += p;
        m += p.abs();
    }
    (s, m)
}

#[test]
fn scalar_integer_reference_is_exact_on_quantized_activations() {
    let mut r = rng(32);
    for ty in KTYPES {
        for cols in [256, 512, 1536, 2048] {
            for _ in 0..8 {
                let row = random_row(&mut r, ty, cols);
                let x = randv(&mut r, cols, 2.0);
                let act = quantize_row(Isa::Scalar, &x);
                let got = dot_row_scalar(ty, &row, &act) as f64;
                let (want, mag) = exact_on_quantized(ty, &row, &act);
                assert!(
                    (got - want).abs() <= 2e-6 * mag + 1e-9,
                    "{ty} cols {cols}: got {got}, want {want} (mag {mag})"
                );
            }
        }
    }
}

#[test]
fn every_isa_matches_scalar_integer_reference() {
    let mut r = rng(33);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    let shapes = [(256, 5), (512, 37), (1536, 13), (2048, 70), (256, 130)];
    for (k, ty) in KTYPES.into_iter().enumerate() {
        for (s, &(cols, rows)) in shapes.iter().enumerate() {
            let realistic = (k + s) % 2 == 0 && quant::can_quantize(ty);
            let data = if realistic {
                quant::quantize(ty, &randv(&mut r, rows * cols, 1.0)).unwrap()
            } else {
                (0..rows)
                    .flat_map(|_| random_row(&mut r, ty, cols))
                    .collect()
            };
            let w = Weights::new(ty, &data, rows, cols).unwrap();
            for n_tokens in [1, 2, 3, 5, 17, 64] {
                if cols >= 1536 && n_tokens == 64 && rows > 20 && ty != GgmlType::Q4_K {
                    continue; // keep the debug-build test time reasonable
                }
                let x = randv(&mut r, n_tokens * cols, 1.0);
                let mut want = vec![f32::NAN; n_tokens * rows];
                matmul_isa(Isa::Scalar, &pools[0], &w, &x, n_tokens, &mut want).unwrap();
                let (exact, mag) = super::matmul::reference(ty, &data, rows, cols, &x, n_tokens);
                for i in 0..want.len() {
                    let err = (want[i] as f64 - exact[i]).abs();
                    assert!(
                        err <= 1e-2 * mag[i] + 1e-6,
                        "{ty} scalar vs f32 reference: rows {rows} cols {cols} tokens \
                         {n_tokens} out[{i}] = {} want {} (mag {})",
                        want[i],
                        exact[i],
                        mag[i]
                    );
                }
                for isa in isas() {
                    for pool in &pools {
                        let mut out = vec![f32::NAN; n_tokens * rows];
                        matmul_isa(isa, pool, &w, &x, n_tokens, &mut out).unwrap();
                        for i in 0..out.len() {
                            let err = (out[i] as f64 - want[i] as f64).abs();
                            assert!(
                                err <= 1e-5 * mag[i] + 1e-6,
                                "{ty} {isa} threads {} rows {rows} cols {cols} tokens \
                                 {n_tokens} out[{i}] = {} scalar {} (mag {})",
                                pool.n_threads(),
                                out[i],
                                want[i],
                                mag[i]
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Weights at the edges of every field: all-ones bytes (max quants, max scales, negative
/// f16 scales), all zeros.
#[test]
fn extreme_blocks() {
    let pool = ThreadPool::new(2);
    for ty in KTYPES {
        let cols = 512;
        let rows = 3;
        let bs = ty.type_size();
        let mut data = vec![0xFFu8; rows * 2 * bs];
        data[2 * bs..4 * bs].fill(0);
        // Finite f16 scales: 0xFF bytes in the f16 fields would be NaN.
        for b in data.chunks_exact_mut(bs) {
            for o in super::dequant::f16_fields(ty) {
                b[*o..*o + 2].copy_from_slice(&half::f16::from_f32(-0.5).to_le_bytes());
            }
        }
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        let mut r = rng(34);
        let x = randv(&mut r, 2 * cols, 127.0);
        let mut want = vec![0.0; 2 * rows];
        matmul_isa(Isa::Scalar, &pool, &w, &x, 2, &mut want).unwrap();
        let (exact, mag) = super::matmul::reference(ty, &data, rows, cols, &x, 2);
        for isa in isas() {
            let mut out = vec![0.0; 2 * rows];
            matmul_isa(isa, &pool, &w, &x, 2, &mut out).unwrap();
            for i in 0..out.len() {
                assert!(
                    (out[i] as f64 - exact[i]).abs() <= 1e-2 * mag[i] + 1e-6,
                    "{ty} {isa} {i}: {} vs {}",
                    out[i],
                    exact[i]
                );
                assert!(
                    (out[i] - want[i]).abs() as f64 <= 1e-5 * mag[i] + 1e-6,
                    "{ty} {isa} {i}: {} vs scalar {}",
                    out[i],
                    want[i]
                );
            }
        }
    }
}

/// The AVX-512 body without VNNI (maddubs + madd), forced on a CPU that has VNNI.
#[test]
fn avx512_without_vnni_matches_scalar() {
    use crate::kquant_dot::test_api::NO_VNNI;
    if !Isa::Avx512.is_supported() {
        return;
    }
    let mut r = rng(35);
    let pool = ThreadPool::new(1);
    for ty in KTYPES {
        let (rows, cols) = (21, 512);
        let data: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(&mut r, ty, cols))
            .collect();
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        for n_tokens in [1, 3, 13] {
            let x = randv(&mut r, n_tokens * cols, 1.0);
            let mut want = vec![0.0; n_tokens * rows];
            matmul_isa(Isa::Scalar, &pool, &w, &x, n_tokens, &mut want).unwrap();
            let (_, mag) = super::matmul::reference(ty, &data, rows, cols, &x, n_tokens);
            let mut out = vec![f32::NAN; n_tokens * rows];
            NO_VNNI.with(|c| c.set(true));
            let res = matmul_isa(Isa::Avx512, &pool, &w, &x, n_tokens, &mut out);
            NO_VNNI.with(|c| c.set(false));
            res.unwrap();
            for i in 0..out.len() {
                assert!(
                    (out[i] - want[i]).abs() as f64 <= 1e-5 * mag[i] + 1e-6,
                    "{ty} tokens {n_tokens} out[{i}] = {} scalar {}",
                    out[i],
                    want[i]
                );
            }
        }
    }
}

/// The tiled GEMM (AVX-512 VNNI, from 6 tokens) and every other path against the scalar
/// integer reference: rows that are not multiples of the 32-row tile, token counts that are
/// not multiples of the 4-token micro-kernel, random-bit and realistic blocks.
#[test]
fn gemm_token_counts_match_scalar_reference() {
    let mut r = rng(36);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    let types = [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_K];
    let cases = [(256, 33), (512, 70), (1024, 47), (2048, 5), (2048, 40)];
    for (k, ty) in types.into_iter().enumerate() {
        for (s, &(cols, rows)) in cases.iter().enumerate() {
            let realistic = (k + s) % 2 == 1;
            let data = if realistic {
                quant::quantize(ty, &randv(&mut r, rows * cols, 1.0)).unwrap()
            } else {
                (0..rows)
                    .flat_map(|_| random_row(&mut r, ty, cols))
                    .collect()
            };
            let w = Weights::new(ty, &data, rows, cols).unwrap();
            for n_tokens in [6, 7, 17, 64, 130, 512] {
                if n_tokens == 512 && rows * cols > 40 * 1024 {
                    continue; // keep the test time reasonable
                }
                let x = randv(&mut r, n_tokens * cols, 1.0);
                let mut want = vec![f32::NAN; n_tokens * rows];
                matmul_isa(Isa::Scalar, &pools[0], &w, &x, n_tokens, &mut want).unwrap();
                let (_, mag) = super::matmul::reference(ty, &data, rows, cols, &x, n_tokens);
                for isa in isas() {
                    for pool in &pools {
                        let mut out = vec![f32::NAN; n_tokens * rows];
                        matmul_isa(isa, pool, &w, &x, n_tokens, &mut out).unwrap();
                        for i in 0..out.len() {
                            let err = (out[i] as f64 - want[i] as f64).abs();
                            assert!(
                                err <= 1e-5 * mag[i] + 1e-6,
                                "{ty} {isa} threads {} rows {rows} cols {cols} tokens \
                                 {n_tokens} out[{i}] = {} scalar {} (mag {})",
                                pool.n_threads(),
                                out[i],
                                want[i],
                                mag[i]
                            );
                        }
                    }
                }
            }
        }
    }
}
