use super::{isas, randv, rng};
use crate::attention::attention_isa;
use crate::{KernelError, ThreadPool};
use half::f16;

/// Naive two-pass f64 attention over f32 K/V (`[pos][n_kv][hd]`).
#[allow(clippy::too_many_arguments)]
pub(super) fn naive_f32(
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv: usize,
    hd: usize,
    k: &[f32],
    v: &[f32],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
) -> Vec<f32> {
    let mut out = vec![0.0; q.len()];
    for t in 0..n_tokens {
        let p = pos0 + t;
        for h in 0..n_head {
            let kvh = h / (n_head / n_kv);
            let qr = &q[(t * n_head + h) * hd..][..hd];
            let keys: Vec<usize> = (0..=p)
                .filter(|&j| window.is_none_or(|w| p - j < w))
                .collect();
            let s: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    let kr = &k[(j * n_kv + kvh) * hd..][..hd];
                    scale as f64
                        * qr.iter()
                            .zip(kr)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                })
                .collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let acc: f64 = keys
                    .iter()
                    .zip(&e)
                    .map(|(&j, w)| w * v[(j * n_kv + kvh) * hd + d] as f64)
                    .sum();
                out[(t * n_head + h) * hd + d] = (acc / z) as f32;
            }
        }
    }
    out
}

/// [`naive_f32`] over an f16 cache (f16 -> f32 is exact).
#[allow(clippy::too_many_arguments)]
fn naive(
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv: usize,
    hd: usize,
    k: &[f16],
    v: &[f16],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
) -> Vec<f32> {
    let f32s = |x: &[f16]| x.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
    naive_f32(
        q,
        n_tokens,
        n_head,
        n_kv,
        hd,
        &f32s(k),
        &f32s(v),
        pos0,
        window,
        scale,
    )
}

#[test]
fn attention_matches_naive() {
    let mut r = rng(41);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    let cases = [
        // (n_tokens, n_head, n_kv, head_dim, pos0, window)
        (1, 4, 4, 64, 0, None),
        (1, 8, 2, 64, 150, None),
        (3, 4, 1, 80, 70, Some(32)),
        (17, 6, 2, 128, 0, None),
        (17, 6, 3, 64, 100, Some(5)),
        (5, 2, 1, 256, 300, Some(200)),
        (3, 2, 2, 8, 2, Some(1)),
    ];
    for (n_tokens, n_head, n_kv, hd, pos0, window) in cases {
        let ctx = pos0 + n_tokens + 3; // capacity beyond what is used
        let q = randv(&mut r, n_tokens * n_head * hd, 1.0);
        let k: Vec<f16> = randv(&mut r, ctx * n_kv * hd, 1.0)
            .into_iter()
            .map(f16::from_f32)
            .collect();
        let v: Vec<f16> = randv(&mut r, ctx * n_kv * hd, 1.0)
            .into_iter()
            .map(f16::from_f32)
            .collect();
        // A large scale gives peaked softmaxes, testing the running-max rescaling.
        for scale in [1.0 / (hd as f32).sqrt(), 2.0] {
            let want = naive(&q, n_tokens, n_head, n_kv, hd, &k, &v, pos0, window, scale);
            for isa in isas() {
                for pool in &pools {
                    let mut out = vec![f32::NAN; q.len()];
                    attention_isa(
                        isa, pool, &q, n_tokens, n_head, n_kv, hd, &k, &v, pos0, window, scale,
                        &mut out,
                    )
                    .unwrap();
                    super::assert_close(
                        &format!("attn {isa} {n_tokens}x{n_head}/{n_kv}x{hd} pos0 {pos0} {window:?} scale {scale}"),
                        &out,
                        &want,
                        2e-5,
                        1e-4,
                    );
                }
            }
        }
    }
}

#[test]
fn attention_errors() {
    let pool = ThreadPool::new(2);
    let q = vec![0.0; 2 * 4 * 8];
    let kv = vec![f16::ZERO; 3 * 2 * 8];
    let mut out = vec![0.0; q.len()];
    let run = |n_head, n_kv, pos0, window, out: &mut [f32]| {
        crate::attention(
            &pool, &q, 2, n_head, n_kv, 8, &kv, &kv, pos0, window, 1.0, out,
        )
    };
    assert!(matches!(
        run(4, 3, 1, None, &mut out),
        Err(KernelError::InvalidShape(_))
    ));
    assert!(matches!(
        run(4, 2, 1, Some(0), &mut out),
        Err(KernelError::InvalidShape(_))
    ));
    assert!(matches!(
        run(4, 2, 2, None, &mut out),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        run(4, 2, 1, None, &mut out[1..]),
        Err(KernelError::Length { .. })
    ));
    run(4, 2, 1, None, &mut out).unwrap();
}

/// The tiled and grouped-row kernels, with and without split-K, against the scalar reference
/// and the naive f64 attention, over GQA groups, head sizes, token counts, offsets and
/// windows, on every ISA.
#[test]
fn attention_plans_match_reference() {
    use crate::attention::{attention_plan, Plan};
    use crate::Isa;
    let mut r = rng(43);
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
        for hd in [64, 80, 128, 256] {
            // Fewer KV heads for the larger heads, to keep the naive reference quick.
            let n_kv = if hd >= 128 { 1 } else { 2 };
            let n_head = group * n_kv;
            for n_tokens in [1, 2, 7, 33, 130] {
                for pos0 in [0, 300] {
                    for window in [None, Some(1), Some(64)] {
                        let ctx = pos0 + n_tokens + 2;
                        let q = randv(&mut r, n_tokens * n_head * hd, 1.0);
                        let k: Vec<f16> = randv(&mut r, ctx * n_kv * hd, 1.0)
                            .into_iter()
                            .map(f16::from_f32)
                            .collect();
                        let v: Vec<f16> = randv(&mut r, ctx * n_kv * hd, 1.0)
                            .into_iter()
                            .map(f16::from_f32)
                            .collect();
                        // Peaked softmaxes on some shapes exercise the running-max rescaling.
                        let scale = if (hd + n_tokens).is_multiple_of(2) {
                            1.0 / (hd as f32).sqrt()
                        } else {
                            0.5
                        };
                        let want =
                            naive(&q, n_tokens, n_head, n_kv, hd, &k, &v, pos0, window, scale);
                        let mut reference = vec![f32::NAN; q.len()];
                        attention_isa(
                            Isa::Scalar,
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
                            "{n_tokens}x{n_head}/{n_kv}x{hd} pos0 {pos0} {window:?} scale {scale}"
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
                                attention_plan(
                                    isa, plan, &pool, &q, n_tokens, n_head, n_kv, hd, &k, &v, pos0,
                                    window, scale, &mut out,
                                )
                                .unwrap();
                                let what = format!("{isa} {plan:?} {what}");
                                super::assert_close(&what, &out, &reference, 2e-5, 1e-4);
                                super::assert_close(&what, &out, &want, 2e-5, 1e-4);
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
