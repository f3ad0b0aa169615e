//! `attention_q8_0_int8_query` (queries rounded to Q8_0, integer scores on AVX-512 VNNI):
//! every ISA against the scalar reference run on the rounded queries, the size of the change
//! against the unrounded queries, decode at depth on the target models' shapes, and errors.

use kernels::{
    attention_q8_0, attention_q8_0_int8_query, q8_0_bytes, quantize_kv_q8_0, with_isa, Isa,
    KernelError, ThreadPool,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn randv(r: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| r.gen_range(-scale..scale)).collect()
}

/// The Q8_0 bytes of `x` and their values, dequantized through `quant` (independently of the
/// attention code).
fn q8(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut b = vec![0u8; q8_0_bytes(x.len())];
    quantize_kv_q8_0(x, &mut b);
    let mut deq = vec![0.0; x.len()];
    quant::dequantize(quant::GgmlType::Q8_0, &b, &mut deq).unwrap();
    (b, deq)
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = abs + rel * w.abs();
        assert!(
            (g - w).abs() <= tol,
            "{what}: index {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

/// Largest change of any score that rounding the queries can cause: per query row and key,
/// `scale · Σ_blocks Σ|k| · amax(q block) / 254` (each query value moves by at most half a
/// step, `d / 2 = amax / 254`).
fn score_shift(
    q: &[f32],
    kf: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv: usize,
    hd: usize,
    scale: f32,
) -> f32 {
    let group = n_head / n_kv;
    let n_pos = kf.len() / (n_kv * hd);
    let mut worst = 0.0f32;
    for row in 0..n_tokens * n_head {
        let kh = (row % n_head) / group;
        let qr = &q[row * hd..(row + 1) * hd];
        for j in 0..n_pos {
            let kr = &kf[(j * n_kv + kh) * hd..][..hd];
            let mut s = 0.0f32;
            for (qb, kb) in qr.chunks(32).zip(kr.chunks(32)) {
                let amax = qb.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                s += kb.iter().map(|x| x.abs()).sum::<f32>() * amax / 254.0;
            }
            worst = worst.max(scale * s);
        }
    }
    worst
}

/// Every ISA, over GQA groups, head sizes (multiples of 32; VNNI takes multiples of 64, the
/// rest the f32 path), token counts (decode rows and prefill tiles), offsets and windows:
/// equal, up to f32 rounding, to the scalar attention over the same cache with the queries
/// rounded through `quant`; and within the proven bound of the unrounded attention.
#[test]
fn int8_query_matches_rounded_reference() {
    let mut r = StdRng::seed_from_u64(61);
    let pool = ThreadPool::new(3);
    let mut checked = 0;
    for group in [1, 3, 4] {
        for hd in [32, 64, 96, 128, 256] {
            let n_kv = if hd >= 128 { 1 } else { 2 };
            let n_head = group * n_kv;
            for n_tokens in [1, 2, 7, 33] {
                for pos0 in [0, 5, 300] {
                    for window in [None, Some(1), Some(64)] {
                        let ctx = pos0 + n_tokens + 2;
                        let q = randv(&mut r, n_tokens * n_head * hd, 1.0);
                        let (_, qr) = q8(&q);
                        let (k, kf) = q8(&randv(&mut r, ctx * n_kv * hd, 1.0));
                        let (v, _) = q8(&randv(&mut r, ctx * n_kv * hd, 1.0));
                        let scale = if (hd + n_tokens).is_multiple_of(2) {
                            1.0 / (hd as f32).sqrt()
                        } else {
                            0.5
                        };
                        let run = |isa: Isa, f: &dyn Fn(&mut [f32]) -> Result<(), KernelError>| {
                            let mut out = vec![f32::NAN; q.len()];
                            with_isa(isa, || f(&mut out)).unwrap().unwrap();
                            out
                        };
                        let args = (n_tokens, n_head, n_kv, hd, pos0, window, scale);
                        let exact = |qx: &[f32], out: &mut [f32]| {
                            let (t, h, kv, d, p, w, s) = args;
                            attention_q8_0(&pool, qx, t, h, kv, d, &k, &v, p, w, s, out)
                        };
                        let want = run(Isa::Scalar, &|o| exact(&qr, o));
                        let unrounded = run(Isa::Scalar, &|o| exact(&q, o));
                        // Weights move by at most e^(±shift) each, so the output (a mean of
                        // values in [-1, 1]) by at most e^(2 shift) - 1.
                        let shift = score_shift(&q, &kf, n_tokens, n_head, n_kv, hd, scale);
                        let bound = (2.0 * shift).exp() - 1.0 + 1e-5;
                        for isa in Isa::supported() {
                            let got = run(isa, &|o| {
                                let (t, h, kv, d, p, w, s) = args;
                                attention_q8_0_int8_query(
                                    &pool, &q, t, h, kv, d, &k, &v, p, w, s, o,
                                )
                            });
                            let what = format!(
                                "{isa} {n_tokens}x{n_head}/{n_kv}x{hd} pos0 {pos0} {window:?}"
                            );
                            assert_close(&what, &got, &want, 2e-5, 1e-4);
                            assert_close(
                                &format!("{what} unrounded"),
                                &got,
                                &unrounded,
                                bound,
                                0.0,
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 0);
}

/// Decode at depth on the target models' shapes (SmolLM2: 9/3 heads of 64; Gemma 3: 4/1 of
/// 256 with a sliding window) with one and several threads (the key range is split across
/// work items), as the engine calls it.
#[test]
fn int8_query_decode_at_depth() {
    let mut r = StdRng::seed_from_u64(62);
    for (n_head, n_kv, hd, window) in [(9, 3, 64, None), (4, 1, 256, Some(512))] {
        let depth = 1500;
        // Larger queries than keys, as after RoPE in real models.
        let q = randv(&mut r, n_head * hd, 4.0);
        let (_, qr) = q8(&q);
        let (k, _) = q8(&randv(&mut r, (depth + 1) * n_kv * hd, 1.0));
        let (v, _) = q8(&randv(&mut r, (depth + 1) * n_kv * hd, 1.0));
        let scale = 1.0 / (hd as f32).sqrt();
        let one = ThreadPool::new(1);
        let mut want = vec![f32::NAN; q.len()];
        with_isa(Isa::Scalar, || {
            attention_q8_0(
                &one, &qr, 1, n_head, n_kv, hd, &k, &v, depth, window, scale, &mut want,
            )
        })
        .unwrap()
        .unwrap();
        for threads in [1, 2, 5] {
            let pool = ThreadPool::new(threads);
            for isa in Isa::supported() {
                let mut out = vec![f32::NAN; q.len()];
                with_isa(isa, || {
                    attention_q8_0_int8_query(
                        &pool, &q, 1, n_head, n_kv, hd, &k, &v, depth, window, scale, &mut out,
                    )
                })
                .unwrap()
                .unwrap();
                assert_close(
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

/// Extreme blocks: all-zero keys and queries (scale 0), the largest magnitudes (keys of
/// -128 after the unsigned offset is 0, of 127 is 255), a query block with one huge value.
#[test]
fn int8_query_extreme_blocks() {
    let (n_head, n_kv, hd, n_pos) = (3, 1, 64, 40);
    let mut kx = vec![0.0f32; n_pos * hd];
    for (i, x) in kx.iter_mut().enumerate() {
        *x = match (i / hd) % 4 {
            0 => 0.0,
            1 => 1.0,
            2 => -1.0,
            _ => ((i % 7) as f32 - 3.0) * 100.0,
        };
    }
    let (k, _) = q8(&kx);
    let (v, _) = q8(&(0..n_pos * hd)
        .map(|i| (i % 13) as f32 - 6.0)
        .collect::<Vec<_>>());
    let mut q = vec![0.0f32; n_head * hd];
    q[hd..2 * hd].iter_mut().for_each(|x| *x = -0.01);
    q[2 * hd] = 1e4;
    q[2 * hd + 1] = 1.0;
    let (_, qr) = q8(&q);
    let pool = ThreadPool::new(2);
    let mut want = vec![f32::NAN; q.len()];
    with_isa(Isa::Scalar, || {
        attention_q8_0(
            &pool,
            &qr,
            1,
            n_head,
            n_kv,
            hd,
            &k,
            &v,
            n_pos - 1,
            None,
            0.125,
            &mut want,
        )
    })
    .unwrap()
    .unwrap();
    assert!(want.iter().all(|x| x.is_finite()));
    for isa in Isa::supported() {
        let mut out = vec![f32::NAN; q.len()];
        with_isa(isa, || {
            attention_q8_0_int8_query(
                &pool,
                &q,
                1,
                n_head,
                n_kv,
                hd,
                &k,
                &v,
                n_pos - 1,
                None,
                0.125,
                &mut out,
            )
        })
        .unwrap()
        .unwrap();
        assert_close(&format!("{isa} extreme"), &out, &want, 2e-5, 1e-4);
    }
}
