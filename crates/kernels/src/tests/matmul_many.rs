//! `matmul_many` (activations quantized once per format) against separate `matmul` calls:
//! identical results on every ISA, for mixed weight types sharing one input.

use super::{isas, randv, rng};
use crate::matmul::matmul_isa;
use crate::matmul_many::matmul_many_isa;
use crate::{KernelError, ThreadPool, Weights};
use quant::GgmlType;

#[test]
fn matmul_many_matches_separate_matmuls() {
    let mut r = rng(41);
    let pool = ThreadPool::new(2);
    let cols = 512;
    // K-quants (one Q8_K quantization), 32-block types with offsets 16, 128, 0, 8 (one int8
    // quantization, corrections rewritten), and a float type.
    let types = [
        (GgmlType::Q4_K, 40),
        (GgmlType::Q5_1, 9),
        (GgmlType::Q5_0, 33),
        (GgmlType::Q6_K, 17),
        (GgmlType::Q8_0, 35),
        (GgmlType::F16, 6),
        (GgmlType::Q4_1, 3),
        (GgmlType::Q4_0, 64),
        (GgmlType::Q5_K, 31),
    ];
    let data: Vec<Vec<u8>> = types
        .iter()
        .map(|&(ty, rows)| quant::quantize(ty, &randv(&mut r, rows * cols, 1.0)).unwrap())
        .collect();
    let ws: Vec<Weights> = types
        .iter()
        .zip(&data)
        .map(|(&(ty, rows), d)| Weights::new(ty, d, rows, cols).unwrap())
        .collect();
    for sel in [
        &[0usize, 3, 8][..],
        &[1, 2, 4, 6, 7],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8],
        &[6, 5],
    ] {
        let wr: Vec<&Weights> = sel.iter().map(|&i| &ws[i]).collect();
        for n_tokens in [1, 7, 33] {
            let x = randv(&mut r, n_tokens * cols, 2.0);
            for isa in isas() {
                let mut bufs: Vec<Vec<f32>> = wr
                    .iter()
                    .map(|w| vec![f32::NAN; n_tokens * w.rows()])
                    .collect();
                let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                matmul_many_isa(isa, &pool, &wr, &x, n_tokens, &mut outs).unwrap();
                for (w, got) in wr.iter().zip(&bufs) {
                    let mut want = vec![f32::NAN; n_tokens * w.rows()];
                    matmul_isa(isa, &pool, w, &x, n_tokens, &mut want).unwrap();
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{isa} {} tokens {n_tokens} sel {sel:?}", w.ty());
                }
            }
        }
    }
}

#[test]
fn matmul_many_checks_shapes() {
    let pool = ThreadPool::new(1);
    let data = vec![0u8; 2 * 144];
    let w = Weights::new(GgmlType::Q4_K, &data, 2, 256).unwrap();
    let x = vec![0.0f32; 256];
    let mut o1 = [0.0f32; 2];
    let mut o2 = [0.0f32; 3];
    let r = matmul_many_isa(
        crate::Isa::Scalar,
        &pool,
        &[&w, &w],
        &x,
        1,
        &mut [&mut o1[..]],
    );
    assert!(matches!(r, Err(KernelError::InvalidShape(_))));
    let r = matmul_many_isa(
        crate::Isa::Scalar,
        &pool,
        &[&w, &w],
        &x,
        1,
        &mut [&mut o1[..], &mut o2[..]],
    );
    assert!(matches!(r, Err(KernelError::Length { .. })));
    let r = matmul_many_isa(
        crate::Isa::Scalar,
        &pool,
        &[&w],
        &x[..128],
        1,
        &mut [&mut o1[..]],
    );
    assert!(matches!(r, Err(KernelError::Length { .. })));
}
