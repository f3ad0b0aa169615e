use super::dequant::{random_row, test_cols};
use super::{isas, randv, rng, same_bits};
use crate::matmul::matmul_isa;
use crate::{KernelError, ThreadPool, Weights, SUPPORTED_TYPES};
use quant::GgmlType;

/// Relative tolerance (of Σ|w·x|) against the f32 reference: types whose kernels quantize
/// the activations (K-quants to Q8_K, the 32-element formats to int8 blocks) are held to the activation-quantization error; their
/// fast paths are held tightly to their integer reference in `tests/kquant.rs` and
/// `tests/q32.rs`.
fn rel_tol(ty: GgmlType) -> f64 {
    if crate::kquant_dot::handles(ty) || crate::gemm_q32::handles(ty) {
        1e-2
    } else {
        1e-5
    }
}

/// f64 reference from the `quant` crate's dequantization; returns (values, Σ|w·x| per output).
pub(super) fn reference(
    ty: GgmlType,
    data: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n_tokens: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut w = vec![0.0f32; rows * cols];
    quant::dequantize(ty, data, &mut w).unwrap();
    let mut out = vec![0.0; n_tokens * rows];
    let mut mag = vec![0.0; n_tokens * rows];
    for t in 0..n_tokens {
        for r in 0..rows {
            let (mut s, mut m) = (0.0f64, 0.0f64);
            for c in 0..cols {
                let p = w[r * cols + c] as f64 * x[t * cols + c] as f64;
                s += p;
                m += p.abs();
            }
            out[t * rows + r] = s;
            mag[t * rows + r] = m;
        }
    }
    (out, mag)
}

#[test]
fn matmul_all_types_isas_shapes() {
    let mut r = rng(21);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    for ty in SUPPORTED_TYPES {
        for (k, &cols) in test_cols(ty).iter().enumerate() {
            // Row counts that are not multiples of 4 or of the tile size.
            let rows = [1, 5, 37, 130][(k + ty.id() as usize) % 4];
            let mut data = Vec::new();
            for _ in 0..rows {
                data.extend(random_row(&mut r, ty, cols));
            }
            let w = Weights::new(ty, &data, rows, cols).unwrap();
            for n_tokens in [1, 3, 17] {
                let x = randv(&mut r, n_tokens * cols, 1.0);
                let (want, mag) = reference(ty, &data, rows, cols, &x, n_tokens);
                for isa in isas() {
                    for pool in &pools {
                        let mut out = vec![f32::NAN; n_tokens * rows];
                        matmul_isa(isa, pool, &w, &x, n_tokens, &mut out).unwrap();
                        for i in 0..out.len() {
                            let err = (out[i] as f64 - want[i]).abs();
                            assert!(
                                err <= rel_tol(ty) * mag[i] + 1e-6,
                                "{ty} {isa} threads {} rows {rows} cols {cols} tokens {n_tokens} \
                                 out[{i}] = {} want {} (mag {})",
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

/// Realistic weights: quantized from random floats by the `quant` crate.
#[test]
fn matmul_quantized_weights() {
    let mut r = rng(22);
    let pool = ThreadPool::new(2);
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_K,
    ] {
        let (rows, cols, n_tokens) = (67, 512, 3);
        let f = randv(&mut r, rows * cols, 1.0);
        let data = quant::quantize(ty, &f).unwrap();
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        let x = randv(&mut r, n_tokens * cols, 1.0);
        let (want, mag) = reference(ty, &data, rows, cols, &x, n_tokens);
        for isa in isas() {
            let mut out = vec![0.0; n_tokens * rows];
            matmul_isa(isa, &pool, &w, &x, n_tokens, &mut out).unwrap();
            for i in 0..out.len() {
                assert!(
                    (out[i] as f64 - want[i]).abs() <= rel_tol(ty) * mag[i] + 1e-6,
                    "{ty} {isa} {i}"
                );
            }
        }
    }
}

#[test]
fn weights_and_matmul_errors() {
    let data = vec![0u8; 18 * 2 * 3];
    assert!(matches!(
        Weights::new(GgmlType::IQ4_XS, &data, 3, 64),
        Err(KernelError::UnsupportedType(_))
    ));
    assert!(matches!(
        Weights::new(GgmlType::Q4_0, &data, 3, 48),
        Err(KernelError::ColsNotBlockMultiple { .. })
    ));
    assert!(matches!(
        Weights::new(GgmlType::Q4_0, &data, 4, 64),
        Err(KernelError::Length { .. })
    ));
    let w = Weights::new(GgmlType::Q4_0, &data, 3, 64).unwrap();
    assert_eq!((w.rows(), w.cols(), w.row_bytes()), (3, 64, 36));
    let pool = ThreadPool::new(2);
    let mut out = vec![0.0; 6];
    assert!(matches!(
        crate::matmul(&pool, &w, &[0.0; 127], 2, &mut out),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        crate::matmul(&pool, &w, &[0.0; 128], 2, &mut out[..5]),
        Err(KernelError::Length { .. })
    ));
    crate::matmul(&pool, &w, &[0.0; 128], 2, &mut out).unwrap();
    crate::matmul(&pool, &w, &[], 0, &mut []).unwrap();
}

/// `matmul_rows` writes exactly what `matmul` does, token by token, for the integer formats
/// (packed or not) and the others (computed into one buffer and copied), on every ISA.
#[test]
fn matmul_rows_matches_matmul() {
    use crate::gemm_q32::pack_weights_isa;
    use crate::matmul::matmul_rows_isa;
    let mut r = rng(91);
    let pool = ThreadPool::new(2);
    let (rows, cols) = (70, 256);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q6_K,
        GgmlType::F16,
    ] {
        let data = quant::quantize(ty, &randv(&mut r, rows * cols, 1.0)).unwrap();
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        let packed = pack_weights_isa(crate::Isa::best(), &pool, &[w], &|_| {})
            .pop()
            .flatten();
        let mut ws = vec![w];
        if let Some(p) = &packed {
            ws.push(w.with_packed(p).unwrap());
        }
        for w in &ws {
            for n in [1, 3, 8, 9] {
                let x = randv(&mut r, n * cols, 1.0);
                for isa in isas() {
                    let mut want = vec![f32::NAN; n * rows];
                    matmul_isa(isa, &pool, w, &x, n, &mut want).unwrap();
                    let mut bufs = vec![vec![f32::NAN; rows]; n];
                    let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                    matmul_rows_isa(isa, &pool, w, &x, &mut outs).unwrap();
                    let got: Vec<f32> = bufs.concat();
                    let same = same_bits(&got, &want);
                    assert!(
                        same,
                        "{isa} {ty} tokens {n} packed {}",
                        w.packed().is_some()
                    );
                }
            }
        }
    }
    // Shape errors name the part and compute nothing.
    let data = quant::quantize(GgmlType::Q8_0, &randv(&mut r, rows * cols, 1.0)).unwrap();
    let w = Weights::new(GgmlType::Q8_0, &data, rows, cols).unwrap();
    let x = randv(&mut r, 2 * cols, 1.0);
    let (mut a, mut b) = (vec![f32::NAN; rows], vec![f32::NAN; rows - 1]);
    let e = matmul_rows_isa(crate::Isa::current(), &pool, &w, &x, &mut [&mut a, &mut b])
        .unwrap_err()
        .to_string();
    assert!(e.contains("output row") && e.contains("69"), "{e}");
    let e = matmul_rows_isa(
        crate::Isa::current(),
        &pool,
        &w,
        &x[..cols + 1],
        &mut [&mut a, &mut vec![f32::NAN; rows]],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("activations") && e.contains("257"), "{e}");
    assert!(a.iter().all(|v| v.is_nan()), "output written on error");
}
