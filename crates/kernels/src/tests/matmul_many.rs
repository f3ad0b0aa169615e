//! `matmul_many` (activations quantized once per format) against separate `matmul` calls:
//! identical results on every ISA, for mixed weight types sharing one input.

use super::{isas, randv, rng, same_bits};
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
                    let same = same_bits(got, &want);
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

/// Packed matrices sharing an activation offset run as one job over all their tiles
/// (`matmul_packed_many`); the results must be those of separate packed products, whatever
/// the mix of formats, partial last tiles, order of the weights or token count.
#[test]
fn packed_matrices_in_one_job_match_separate_matmuls() {
    use crate::gemm_q32::{pack_weights_isa, packed_many_fits, Path};
    let mut r = rng(43);
    let pool = ThreadPool::new(2);
    let cols = 96;
    let types = [
        (GgmlType::Q4_1, 64),
        (GgmlType::Q4_1, 40),
        (GgmlType::Q5_1, 33),
        (GgmlType::Q4_0, 70),
        (GgmlType::Q8_0, 32),
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
    let isa = crate::Isa::best();
    let packed = pack_weights_isa(isa, &pool, &ws, &|_| {});
    let wp: Vec<Weights> = ws
        .iter()
        .zip(&packed)
        .map(|(w, p)| p.as_ref().map_or(*w, |p| w.with_packed(p).unwrap()))
        .collect();
    let mut joint = 0;
    // Offset 0 (Q4_1, Q5_1) in one job; a Q4_0 (offset 8) or Q8_0 (128) forces separate jobs.
    for sel in [&[0usize, 1][..], &[2, 0, 1], &[1, 2], &[0, 3], &[4, 3, 0]] {
        let wr: Vec<&Weights> = sel.iter().map(|&i| &wp[i]).collect();
        joint += packed_many_fits(Path::for_isa(isa), &wr) as usize;
        for n_tokens in [1, 5, 8, 13] {
            let x = randv(&mut r, n_tokens * cols, 2.0);
            let mut bufs: Vec<Vec<f32>> = wr
                .iter()
                .map(|w| vec![f32::NAN; n_tokens * w.rows()])
                .collect();
            let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            matmul_many_isa(isa, &pool, &wr, &x, n_tokens, &mut outs).unwrap();
            for (w, got) in wr.iter().zip(&bufs) {
                let mut want = vec![f32::NAN; n_tokens * w.rows()];
                matmul_isa(isa, &pool, w, &x, n_tokens, &mut want).unwrap();
                let same = same_bits(got, &want);
                assert!(same, "{} tokens {n_tokens} sel {sel:?}", w.ty());
            }
        }
    }
    if packed.iter().all(|p| p.is_some()) {
        assert_eq!(
            joint, 3,
            "the one-job path should have run for the offset-0 selections"
        );
    }
}
