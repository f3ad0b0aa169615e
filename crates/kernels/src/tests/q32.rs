//! The integer matmul of the 32-element block formats: activation quantization identical on
//! every path, the SIMD GEMV/GEMM held to the scalar integer reference, and everything held to
//! the f32 dequantized product within the error of int8 activations.

use super::dequant::random_row;
use super::{isas, randv, rng};
use crate::gemm_q32::{block_idot, matmul_q32_path, pack_weights_isa, Fmt, Path, GEMM_MIN_TOKENS};
use crate::q8act::{quant_row_scalar, quantize_acts, ActQ, QPath};
use crate::{Isa, ThreadPool, Weights};
use quant::GgmlType;

const TYPES: [GgmlType; 5] = [
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::Q5_1,
];

fn paths() -> Vec<Path> {
    let mut v: Vec<Path> = isas().into_iter().map(Path::for_isa).collect();
    v.dedup();
    v
}

fn qpaths() -> Vec<QPath> {
    let mut v = vec![QPath::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if Isa::Avx2.is_supported() {
            v.push(QPath::Avx2);
        }
        if Isa::Avx512.is_supported() {
            v.push(QPath::Avx512);
        }
    }
    v
}

#[test]
fn activation_quantization_identical_on_every_path() {
    let mut r = rng(31);
    let pool = ThreadPool::new(3);
    for (n_tokens, cols) in [(1, 32), (3, 640), (17, 576), (40, 64), (2, 1536), (1, 512)] {
        let mut x = randv(&mut r, n_tokens * cols, 3.0);
        // Awkward blocks: all zero, one huge value, ties at .5 steps.
        x[..32].fill(0.0);
        if x.len() >= 64 {
            x[32..64].copy_from_slice(&std::array::from_fn::<f32, 32, _>(|i| i as f32 - 15.5));
            x[40] = 127.0;
        }
        let mut want = ActQ::default();
        quantize_acts(
            QPath::Scalar,
            &ThreadPool::new(1),
            &x,
            n_tokens,
            cols,
            16,
            &mut want,
        );
        for p in qpaths() {
            let mut a = ActQ::default();
            quantize_acts(p, &pool, &x, n_tokens, cols, 16, &mut a);
            let (nq, ns) = (n_tokens * cols, n_tokens * cols / 32);
            assert_eq!(a.qs[..nq], want.qs[..nq], "{p:?} qs");
            assert_eq!(a.dd[..ns], want.dd[..ns], "{p:?} d, ds");
            assert_eq!(a.bias[..ns], want.bias[..ns], "{p:?} bias");
        }
        // The reference itself: |x - d q| <= d / 2 per element plus the f16 rounding of `d`
        // (relative 2^-11, times |q| <= 127).
        for (b, xb) in x.chunks_exact(32).enumerate() {
            let d = want.dd[b][0];
            let mut sum = 0;
            for (j, &v) in xb.iter().enumerate() {
                let q = want.qs[b * 32 + j] as i32;
                sum += q;
                assert!(
                    (v - d * q as f32).abs() <= d * 0.57 + 1e-30,
                    "x {v} d {d} q {q}"
                );
            }
            assert_eq!(want.bias[b], -16 * sum);
        }
    }
}

/// Scalar block codes agree with the `quant` crate's dequantization: `d (u - off) (+ m)`.
#[test]
fn block_codes_match_dequantization() {
    fn check<F: Fmt>(ty: GgmlType) {
        let mut r = rng(32);
        let row = random_row(&mut r, ty, 256);
        let mut want = vec![0.0f32; 256];
        quant::dequantize(ty, &row, &mut want).unwrap();
        for (b, blk) in row.chunks_exact(F::BYTES).enumerate() {
            let u = F::codes(blk);
            for j in 0..32 {
                let mut v = F::d(blk) * (u[j] as i32 - F::OFF) as f32;
                if F::HAS_MIN {
                    v += F::m(blk);
                }
                let w = want[b * 32 + j];
                assert!(
                    (v - w).abs() <= 1e-6 * w.abs() + 1e-9,
                    "{ty} {b} {j}: {v} vs {w}"
                );
            }
        }
    }
    use crate::gemm_q32::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
    check::<Q4_0>(GgmlType::Q4_0);
    check::<Q4_1>(GgmlType::Q4_1);
    check::<Q5_0>(GgmlType::Q5_0);
    check::<Q5_1>(GgmlType::Q5_1);
    check::<Q8_0>(GgmlType::Q8_0);
    // The integer identity the offset trick relies on.
    let u: [u8; 32] = std::array::from_fn(|i| (i * 8) as u8);
    let q: Vec<i8> = (0..32).map(|i| (i as i8 - 16) * 7).collect();
    let s: i32 = q.iter().map(|&v| v as i32).sum();
    let direct: i32 = (0..32).map(|i| (u[i] as i32 - 128) * q[i] as i32).sum();
    assert_eq!(block_idot(&u, &q, -128 * s), direct);
}

/// Codes, scale and min of every block of `w`, through the per-format readers (which
/// `block_codes_match_dequantization` holds to the `quant` crate).
fn blocks_of(w: &Weights) -> Vec<([u8; 32], f32, f32)> {
    use crate::gemm_q32::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
    fn parts<F: Fmt>(data: &[u8]) -> Vec<([u8; 32], f32, f32)> {
        data.chunks_exact(F::BYTES)
            .map(|b| (F::codes(b), F::d(b), if F::HAS_MIN { F::m(b) } else { 0.0 }))
            .collect()
    }
    match w.ty() {
        GgmlType::Q4_0 => parts::<Q4_0>(w.data()),
        GgmlType::Q4_1 => parts::<Q4_1>(w.data()),
        GgmlType::Q5_0 => parts::<Q5_0>(w.data()),
        GgmlType::Q5_1 => parts::<Q5_1>(w.data()),
        GgmlType::Q8_0 => parts::<Q8_0>(w.data()),
        ty => unreachable!("{ty}"),
    }
}

/// The integer kernels' math in f64: per block `d_w d_x (Σ u q + bias) + m_w ds`, with the
/// exact `i32` inner sum; plus the sum of the terms' magnitudes for tolerances.
fn int_reference(w: &Weights, a: &ActQ) -> (Vec<f64>, Vec<f64>) {
    let (rows, nb) = (w.rows(), a.nb);
    let blocks = blocks_of(w);
    let mut out = vec![0.0; a.n_tokens * rows];
    let mut mag = vec![0.0; a.n_tokens * rows];
    for t in 0..a.n_tokens {
        for r in 0..rows {
            let (mut s, mut m) = (0.0f64, 0.0f64);
            for b in 0..nb {
                let (u, dw, mw) = &blocks[r * nb + b];
                let i = t * nb + b;
                let q = &a.qs[t * a.cols + b * 32..][..32];
                let idot = block_idot(u, q, a.bias[i]);
                let [dx, ds] = a.dd[i];
                let term = *dw as f64 * dx as f64 * idot as f64;
                let abs: f64 = u
                    .iter()
                    .zip(q)
                    .map(|(&u, &q)| (u as f64 * q as f64).abs())
                    .sum::<f64>()
                    * (*dw as f64 * dx as f64).abs();
                s += term + *mw as f64 * ds as f64;
                m += abs + (*mw as f64 * ds as f64).abs();
            }
            out[t * rows + r] = s;
            mag[t * rows + r] = m;
        }
    }
    (out, mag)
}

/// Plain f64 product with the unquantized activations.
fn f_reference(w: &Weights, x: &[f32], n_tokens: usize) -> (Vec<f64>, Vec<f64>) {
    let (rows, cols) = (w.rows(), w.cols());
    let mut wf = vec![0.0f32; rows * cols];
    quant::dequantize(w.ty(), w.data(), &mut wf).unwrap();
    let mut out = vec![0.0; n_tokens * rows];
    let mut mag = vec![0.0; n_tokens * rows];
    for t in 0..n_tokens {
        for r in 0..rows {
            let (mut s, mut m) = (0.0, 0.0);
            for c in 0..cols {
                let p = wf[r * cols + c] as f64 * x[t * cols + c] as f64;
                s += p;
                m += p.abs();
            }
            out[t * rows + r] = s;
            mag[t * rows + r] = m;
        }
    }
    (out, mag)
}

fn off_of(ty: GgmlType) -> i32 {
    match ty {
        GgmlType::Q4_0 => 8,
        GgmlType::Q5_0 => 16,
        GgmlType::Q8_0 => 128,
        _ => 0,
    }
}

#[test]
fn every_path_matches_integer_reference() {
    let mut r = rng(33);
    let pools = [ThreadPool::new(1), ThreadPool::new(2), ThreadPool::new(3)];
    let shapes = [
        (576, 37),
        (640, 70),
        (1536, 33),
        (2048, 9),
        (64, 130),
        (32, 1),
    ];
    let mut k = 0;
    for ty in TYPES {
        for &(cols, rows) in &shapes {
            let mut data = Vec::new();
            for _ in 0..rows {
                data.extend(random_row(&mut r, ty, cols));
            }
            let w = Weights::new(ty, &data, rows, cols).unwrap();
            // Load-time repacking (where this CPU has the kernels that read it) must give
            // the same integers as every path over the GGUF blocks.
            let packed = pack_weights_isa(Isa::best(), &pools[1], &[w], &|_| {})
                .pop()
                .flatten();
            let wp = packed.as_ref().map(|p| w.with_packed(p).unwrap());
            let mut runs: Vec<(String, Path, Weights)> = paths()
                .into_iter()
                .map(|p| (format!("{p:?}"), p, w))
                .collect();
            if let Some(wp) = wp {
                runs.push(("packed".into(), Path::for_isa(Isa::best()), wp));
            }
            for n_tokens in [1, 2, 3, 5, 8, 13, 17, 64] {
                k += 1;
                // Skip a few big combinations to keep the test quick.
                if cols >= 1536 && n_tokens == 64 && k % 2 == 0 {
                    continue;
                }
                let x = randv(&mut r, n_tokens * cols, 1.0);
                let mut a = ActQ::default();
                quant_rows(&x, n_tokens, cols, off_of(ty), &mut a);
                let (want, mag) = int_reference(&w, &a);
                for (label, path, w) in &runs {
                    let pool = &pools[k % 3];
                    let mut out = vec![f32::NAN; n_tokens * rows];
                    matmul_q32_path(*path, pool, w, &x, n_tokens, &mut out);
                    for i in 0..out.len() {
                        let err = (out[i] as f64 - want[i]).abs();
                        assert!(
                            err <= 1e-5 * mag[i] + 1e-6,
                            "{ty} {label} rows {rows} cols {cols} tokens {n_tokens} \
                             threads {}: out[{i}] = {} want {} (mag {})",
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

fn quant_rows(x: &[f32], n_tokens: usize, cols: usize, off: i32, a: &mut ActQ) {
    quantize_acts(
        QPath::Scalar,
        &ThreadPool::new(1),
        x,
        n_tokens,
        cols,
        off,
        a,
    );
    // The reference row quantizer is what `quantize_acts` runs on the scalar path.
    let nb = cols / 32;
    let (mut q, mut dd, mut b) = (vec![0; cols], vec![[0.0; 2]; nb], vec![0; nb]);
    quant_row_scalar(&x[..cols], &mut q, &mut dd, &mut b, off);
    assert_eq!(q, a.qs[..cols]);
}

/// GEMM and GEMV agree (the GEMM is used from `GEMM_MIN_TOKENS` tokens on VNNI machines).
#[test]
fn gemm_and_gemv_agree() {
    let mut r = rng(34);
    let pool = ThreadPool::new(2);
    for ty in TYPES {
        let (rows, cols) = (77, 640);
        let mut data = Vec::new();
        for _ in 0..rows {
            data.extend(random_row(&mut r, ty, cols));
        }
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        let n = GEMM_MIN_TOKENS + 3;
        let x = randv(&mut r, n * cols, 1.0);
        let mut gemm = vec![0.0; n * rows];
        matmul_q32_path(Path::for_isa(Isa::best()), &pool, &w, &x, n, &mut gemm);
        // Token by token always runs the GEMV.
        for t in 0..n {
            let mut one = vec![0.0; rows];
            matmul_q32_path(
                Path::for_isa(Isa::best()),
                &pool,
                &w,
                &x[t * cols..(t + 1) * cols],
                1,
                &mut one,
            );
            for i in 0..rows {
                let (g, v) = (gemm[t * rows + i], one[i]);
                assert!(
                    (g - v).abs() <= 1e-4 * v.abs().max(1.0),
                    "{ty} t {t} r {i}: {g} vs {v}"
                );
            }
        }
    }
}

/// Against the unquantized product: the error is that of int8 activations (about 1e-2 of
/// Σ|w·x| at worst, much less typically).
#[test]
fn close_to_float_product() {
    let mut r = rng(35);
    let pool = ThreadPool::new(2);
    for ty in TYPES {
        for (rows, cols, n_tokens) in [(67, 512, 3), (45, 1536, 20)] {
            let f = randv(&mut r, rows * cols, 1.0);
            let data = quant::quantize(ty, &f).unwrap();
            let w = Weights::new(ty, &data, rows, cols).unwrap();
            let x = randv(&mut r, n_tokens * cols, 1.0);
            let (want, mag) = f_reference(&w, &x, n_tokens);
            for isa in isas() {
                let mut out = vec![0.0; n_tokens * rows];
                crate::matmul::matmul_isa(isa, &pool, &w, &x, n_tokens, &mut out).unwrap();
                let mut rel_sum = 0.0;
                for i in 0..out.len() {
                    let err = (out[i] as f64 - want[i]).abs();
                    assert!(
                        err <= 1e-2 * mag[i],
                        "{ty} {isa} {i}: {} vs {}",
                        out[i],
                        want[i]
                    );
                    rel_sum += err / mag[i];
                }
                let mean = rel_sum / out.len() as f64;
                assert!(mean < 2e-3, "{ty} {isa}: mean relative error {mean}");
            }
        }
    }
}

/// Non-finite activations must not panic (garbage in, garbage out).
#[test]
fn nonfinite_activations_do_not_panic() {
    let pool = ThreadPool::new(2);
    let mut r = rng(36);
    let data = random_row(&mut r, GgmlType::Q8_0, 64).repeat(9);
    let w = Weights::new(GgmlType::Q8_0, &data, 9, 64).unwrap();
    let mut x = randv(&mut r, 64 * 8, 1.0);
    x[3] = f32::NAN;
    x[70] = f32::INFINITY;
    x[200] = f32::NEG_INFINITY;
    for path in paths() {
        let mut out = vec![0.0; 8 * 9];
        matmul_q32_path(path, &pool, &w, &x, 8, &mut out);
    }
}

/// Model-like shapes and activations (outliers, many tokens), GEMM against GEMV.
#[test]
fn model_shapes_gemm_matches_gemv() {
    let mut r = rng(37);
    let pool = ThreadPool::new(2);
    for ty in TYPES {
        for (rows, cols) in [(192, 576), (576, 576), (1536, 576), (576, 1536)] {
            let f = randv(&mut r, rows * cols, 0.1);
            let data = quant::quantize(ty, &f).unwrap();
            let w = Weights::new(ty, &data, rows, cols).unwrap();
            let n = 30;
            let mut x = randv(&mut r, n * cols, 2.0);
            for i in (0..x.len()).step_by(97) {
                x[i] *= 40.0;
            }
            let path = Path::for_isa(Isa::best());
            let mut gemm = vec![0.0; n * rows];
            matmul_q32_path(path, &pool, &w, &x, n, &mut gemm);
            let mut a = ActQ::default();
            quant_rows(&x, n, cols, off_of(ty), &mut a);
            let (want, mag) = int_reference(&w, &a);
            for i in 0..gemm.len() {
                let err = (gemm[i] as f64 - want[i]).abs();
                assert!(
                    err <= 1e-5 * mag[i],
                    "{ty} {rows}x{cols} {i}: {} vs {}",
                    gemm[i],
                    want[i]
                );
            }
        }
    }
}

/// A packing is only accepted by the matrix it was made from.
#[test]
fn packed_weights_must_match_their_matrix() {
    let mut r = rng(38);
    let data = random_row(&mut r, GgmlType::Q4_1, 64).repeat(40);
    let w = Weights::new(GgmlType::Q4_1, &data, 40, 64).unwrap();
    let pool = ThreadPool::new(2);
    let Some(p) = pack_weights_isa(Isa::best(), &pool, &[w], &|_| {})
        .pop()
        .flatten()
    else {
        return; // this CPU has no kernel that reads packed weights
    };
    assert_eq!(p.bytes(), 64 * 2 * 10 * 2, "2 tiles x 2 blocks x 10 lines");
    let other = Weights::new(GgmlType::Q4_1, &data[..20 * 40], 20, 64).unwrap();
    let err = other.with_packed(&p).unwrap_err().to_string();
    assert!(err.contains("packed 40 x 64"), "{err}");
    assert!(pack_weights_isa(Isa::Scalar, &pool, &[w], &|_| {})[0].is_none());
}

/// A tied embedding is looked up in the packed copy: every row must dequantize exactly as
/// the file's blocks do.
#[test]
fn packed_rows_dequantize_like_the_file() {
    let mut r = rng(39);
    let pool = ThreadPool::new(2);
    for ty in TYPES {
        let (rows, cols) = (45, 96);
        let mut data = Vec::new();
        for _ in 0..rows {
            data.extend(random_row(&mut r, ty, cols));
        }
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        let Some(p) = pack_weights_isa(Isa::best(), &pool, &[w], &|_| {})
            .pop()
            .flatten()
        else {
            return; // this CPU has no kernel that reads packed weights
        };
        for row in 0..rows {
            let mut want = vec![0.0f32; cols];
            quant::dequantize(ty, w.row(row), &mut want).unwrap();
            let mut got = vec![0.0f32; cols];
            p.row_f32(row, &mut got);
            assert_eq!(got, want, "{ty} row {row}");
        }
    }
}
