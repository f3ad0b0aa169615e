//! The Q8_0 KV cache: quantizer against `quant`, every kernel and split against the scalar
//! reference and a naive f64 attention over the dequantized cache, and the errors.

use super::attention::naive_f32 as naive;
use super::{isas, randv, rng};
use crate::attention::{attention_q8_0_plan, Plan};
use crate::{attention_q8_0, q8_0_bytes, quantize_kv_q8_0, Isa, KernelError, ThreadPool};
use rand::Rng;

/// Quantizes `x` to Q8_0 with the kernels' helper and returns the bytes and the dequantized
/// values (through `quant`, independently of the attention code).
fn q8(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut b = vec![0u8; q8_0_bytes(x.len())];
    quantize_kv_q8_0(x, &mut b);
    let mut deq = vec![0.0; x.len()];
    quant::dequantize(quant::GgmlType::Q8_0, &b, &mut deq).unwrap();
    (b, deq)
}

#[test]
fn quantize_matches_quant_reference() {
    let mut r = rng(7);
    let tiny = f32::from_bits(1); // 1/d overflows to +inf for a block of these
    for n in [32, 64, 96, 256, 32 * 37] {
        let mut x = randv(&mut r, n, 3.0);
        // A zero block, exact halves (rounding ties), huge, subnormal and special values.
        x[..32].iter_mut().for_each(|v| *v = 0.0);
        if n >= 64 {
            x[32..64].copy_from_slice(&[
                127.0,
                0.5,
                -0.5,
                1.5,
                -2.5,
                63.5,
                -63.5,
                0.0,
                -0.0,
                1e-3,
                -1e30,
                1e30,
                3.0,
                f32::NAN,
                7.0,
                -7.0,
                0.25,
                126.5,
                -126.5,
                1.0,
                2.0,
                4.0,
                8.0,
                16.0,
                32.0,
                64.0,
                -127.0,
                0.49999997,
                -0.49999997,
                1.4999999,
                100.0,
                -100.0,
            ]);
        }
        if n >= 96 {
            x[64..96]
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = if i % 3 == 0 { -tiny } else { tiny * i as f32 });
        }
        if n >= 256 {
            x[96] = f32::INFINITY;
            x[128] = f32::NEG_INFINITY;
            x[129] = f32::NAN;
        }
        let want = quant::quantize(quant::GgmlType::Q8_0, &x).unwrap();
        for isa in isas() {
            let mut got = vec![0u8; q8_0_bytes(n)];
            crate::with_isa(isa, || quantize_kv_q8_0(&x, &mut got)).unwrap();
            assert_eq!(got, want, "{isa} {n} values");
        }
        let mut got = vec![0u8; q8_0_bytes(n)];
        crate::attention::quantize_q8_0_scalar(&x, &mut got);
        assert_eq!(got, want, "scalar {n} values");
    }
    // Many random scales, with ties made likely by values on a grid of halves.
    for _ in 0..200 {
        let s: f32 = r.gen_range(1e-6f32..1e3);
        let x: Vec<f32> = (0..64)
            .map(|i| {
                if i % 2 == 0 {
                    s * r.gen_range(-1.0f32..1.0)
                } else {
                    (r.gen_range(-254i32..=254) as f32) * 0.5
                }
            })
            .collect();
        let want = quant::quantize(quant::GgmlType::Q8_0, &x).unwrap();
        for isa in isas() {
            let mut got = vec![0u8; q8_0_bytes(64)];
            crate::with_isa(isa, || quantize_kv_q8_0(&x, &mut got)).unwrap();
            assert_eq!(got, want, "{isa} scale {s}");
        }
    }
}

#[test]
#[should_panic(expected = "a multiple of 32")]
fn quantize_rejects_partial_blocks() {
    let mut dst = vec![0u8; 34];
    quantize_kv_q8_0(&[0.0; 31], &mut dst);
}

#[test]
#[should_panic(expected = "into 33 bytes")]
fn quantize_rejects_short_dst() {
    let mut dst = vec![0u8; 33];
    quantize_kv_q8_0(&[0.0; 32], &mut dst);
}

/// Every kernel, split and ISA over GQA groups, head sizes (multiples of 32, including ones
/// that are not a multiple of 64), token counts, offsets and windows.
#[test]
fn q8_0_plans_match_reference() {
    let mut r = rng(47);
    let pool = ThreadPool::new(3);
    let plans = [
        Plan::Auto,
        Plan::Rows { split: 1 },
        Plan::Rows { split: 3 },
        Plan::Tiled { split: 1 },
        Plan::Tiled { split: 4 },
    ];
    let mut checked = 0;
    for group in [1, 3, 4] {
        for hd in [32, 64, 96, 256] {
            let n_kv = if hd >= 128 { 1 } else { 2 };
            let n_head = group * n_kv;
            for n_tokens in [1, 2, 7, 33] {
                for pos0 in [0, 5, 300] {
                    for window in [None, Some(1), Some(64)] {
                        let ctx = pos0 + n_tokens + 2;
                        let q = randv(&mut r, n_tokens * n_head * hd, 1.0);
                        let (k, kf) = q8(&randv(&mut r, ctx * n_kv * hd, 1.0));
                        let (v, vf) = q8(&randv(&mut r, ctx * n_kv * hd, 1.0));
                        let scale = if (hd + n_tokens).is_multiple_of(2) {
                            1.0 / (hd as f32).sqrt()
                        } else {
                            0.5
                        };
                        let want = naive(
                            &q, n_tokens, n_head, n_kv, hd, &kf, &vf, pos0, window, scale,
                        );
                        let mut reference = vec![f32::NAN; q.len()];
                        attention_q8_0_plan(
                            Isa::Scalar,
                            Plan::Auto,
                            &pool,
                            &q,
                            n_tokens,
                            n_head,
                            n_kv,
                            hd,
                            &k,
                            &v,
                            pos0,
                            window,
                            scale,
                            &mut reference,
                        )
                        .unwrap();
                        let what = format!(
                            "q8_0 {n_tokens}x{n_head}/{n_kv}x{hd} pos0 {pos0} {window:?} scale {scale}"
                        );
                        super::assert_close(
                            &format!("scalar {what}"),
                            &reference,
                            &want,
                            2e-5,
                            1e-4,
                        );
                        for isa in isas().into_iter().filter(|&i| i != Isa::Scalar) {
                            for plan in plans {
                                let mut out = vec![f32::NAN; q.len()];
                                attention_q8_0_plan(
                                    isa, plan, &pool, &q, n_tokens, n_head, n_kv, hd, &k, &v, pos0,
                                    window, scale, &mut out,
                                )
                                .unwrap();
                                let what = format!("{isa} {plan:?} {what}");
                                super::assert_close(&what, &out, &reference, 2e-5, 1e-4);
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 0 || isas() == [Isa::Scalar]);
}

/// Decode at depth on the shapes of the target models (SmolLM2: 9/3 heads of 64; Gemma 3:
/// 4/1 of 256 with a sliding window), one and several threads, as the engine calls it.
#[test]
fn q8_0_decode_at_depth_matches_naive() {
    let mut r = rng(48);
    for (n_head, n_kv, hd, window) in [(9, 3, 64, None), (4, 1, 256, Some(512))] {
        let depth = 1500;
        let q = randv(&mut r, n_head * hd, 1.0);
        let (k, kf) = q8(&randv(&mut r, (depth + 1) * n_kv * hd, 1.0));
        let (v, vf) = q8(&randv(&mut r, (depth + 1) * n_kv * hd, 1.0));
        let scale = 1.0 / (hd as f32).sqrt();
        let want = naive(&q, 1, n_head, n_kv, hd, &kf, &vf, depth, window, scale);
        for threads in [1, 2, 5] {
            let pool = ThreadPool::new(threads);
            for isa in isas() {
                let mut out = vec![f32::NAN; q.len()];
                crate::with_isa(isa, || {
                    attention_q8_0(
                        &pool, &q, 1, n_head, n_kv, hd, &k, &v, depth, window, scale, &mut out,
                    )
                })
                .unwrap()
                .unwrap();
                super::assert_close(
                    &format!("{isa} {threads} threads {n_head}/{n_kv}x{hd}"),
                    &out,
                    &want,
                    2e-5,
                    1e-4,
                );
            }
        }
    }
}

/// Both Q8_0 entry points validate alike (the int8-query one rounds the queries only after).
#[test]
fn q8_0_errors() {
    for attend in [attention_q8_0, crate::attention_q8_0_int8_query] {
        q8_0_errors_of(attend);
    }
}

type Q8Attention = fn(
    &ThreadPool,
    &[f32],
    usize,
    usize,
    usize,
    usize,
    &[u8],
    &[u8],
    usize,
    Option<usize>,
    f32,
    &mut [f32],
) -> Result<(), KernelError>;

fn q8_0_errors_of(attend: Q8Attention) {
    let pool = ThreadPool::new(2);
    let q = vec![0.0; 2 * 4 * 32];
    let row = q8_0_bytes(2 * 32);
    let kv = vec![0u8; 3 * row];
    let mut out = vec![0.0; q.len()];
    let run = |n_head, n_kv, hd, pos0, window, kv: &[u8], out: &mut [f32]| {
        attend(
            &pool, &q, 2, n_head, n_kv, hd, kv, kv, pos0, window, 1.0, out,
        )
    };
    assert!(matches!(
        run(4, 3, 32, 1, None, &kv, &mut out),
        Err(KernelError::InvalidShape(_))
    ));
    assert!(matches!(
        run(4, 2, 32, 1, Some(0), &kv, &mut out),
        Err(KernelError::InvalidShape(_))
    ));
    // head_dim not a multiple of the block.
    let q16 = vec![0.0; 2 * 4 * 16];
    let mut out16 = vec![0.0; q16.len()];
    assert!(matches!(
        attend(&pool, &q16, 2, 4, 2, 16, &kv, &kv, 1, None, 1.0, &mut out16),
        Err(KernelError::InvalidShape(_))
    ));
    // Too few positions, a cache cut mid-row, a wrong output length.
    assert!(matches!(
        run(4, 2, 32, 2, None, &kv, &mut out),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        run(4, 2, 32, 1, None, &kv[..3 * row - 1], &mut out),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        run(4, 2, 32, 1, None, &kv, &mut out[1..]),
        Err(KernelError::Length { .. })
    ));
    // All-zero blocks (scale 0) give uniform weights over zero values: zeros, not NaN.
    run(4, 2, 32, 1, None, &kv, &mut out).unwrap();
    assert!(out.iter().all(|&x| x == 0.0));
}
