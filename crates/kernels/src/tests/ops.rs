use super::{assert_close, isas, randv, rng};
use crate::ops::{self, scalar};
use crate::{with_isa, Isa};
use half::f16;

const LENS: [usize; 12] = [0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 1000];

#[test]
fn isa_parse_and_override() {
    assert_eq!("AVX512".parse::<Isa>().unwrap(), Isa::Avx512);
    assert_eq!("avx2".parse::<Isa>().unwrap(), Isa::Avx2);
    assert_eq!("scalar".parse::<Isa>().unwrap(), Isa::Scalar);
    assert!("neon".parse::<Isa>().is_err());
    assert_eq!(Isa::detect_from(None).unwrap(), Isa::best());
    assert_eq!(Isa::detect_from(Some("")).unwrap(), Isa::best());
    assert_eq!(Isa::detect_from(Some(" Scalar ")).unwrap(), Isa::Scalar);
    assert!(matches!(
        Isa::detect_from(Some("sse9")),
        Err(crate::KernelError::UnknownIsa(_))
    ));
    for isa in Isa::ALL {
        let r = Isa::detect_from(Some(isa.name()));
        assert_eq!(r.is_ok(), isa.is_supported(), "{isa}");
    }
    assert!(Isa::Scalar.is_supported());
    assert_eq!(*Isa::supported().last().unwrap(), Isa::Scalar);
    assert_eq!(Isa::supported()[0], Isa::best());
    for isa in Isa::ALL {
        if isa.is_supported() {
            let inner = with_isa(isa, || {
                with_isa(Isa::Scalar, || assert_eq!(Isa::current(), Isa::Scalar)).unwrap();
                Isa::current()
            });
            assert_eq!(inner.unwrap(), isa);
        } else {
            assert!(with_isa(isa, || ()).is_err());
        }
    }
}

#[test]
fn exact_ops_agree() {
    let mut r = rng(1);
    for isa in isas() {
        for n in LENS {
            let x = randv(&mut r, n, 10.0);
            let y0 = randv(&mut r, n, 10.0);
            let mut a = y0.clone();
            let mut b = y0.clone();
            ops::add_isa(isa, &mut a, &x);
            b.iter_mut().zip(&x).for_each(|(b, x)| *b += x);
            assert_eq!(a, b, "add {isa} {n}");
            let mut a = y0.clone();
            let mut b = y0.clone();
            ops::mul_isa(isa, &mut a, &x);
            b.iter_mut().zip(&x).for_each(|(b, x)| *b *= x);
            assert_eq!(a, b, "mul {isa} {n}");
            let mut a = y0.clone();
            ops::scale_isa(isa, &mut a, 0.37);
            let b: Vec<f32> = y0.iter().map(|v| v * 0.37).collect();
            assert_eq!(a, b, "scale {isa} {n}");
            // f16 round trip, including values that round, overflow and are subnormal.
            let mut xs = randv(&mut r, n, 70000.0);
            for (i, v) in xs.iter_mut().enumerate() {
                if i % 5 == 1 {
                    *v *= 1e-9;
                }
            }
            let mut h = vec![f16::ZERO; n];
            ops::f32_to_f16_isa(isa, &xs, &mut h);
            let want: Vec<f16> = xs.iter().map(|&v| f16::from_f32(v)).collect();
            assert_eq!(
                h.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "f32_to_f16 {isa} {n}"
            );
            let mut back = vec![0.0; n];
            ops::f16_to_f32_isa(isa, &h, &mut back);
            let want: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
            assert_eq!(back, want, "f16_to_f32 {isa} {n}");
        }
    }
}

#[test]
fn dots_and_axpy() {
    let mut r = rng(2);
    for isa in isas() {
        for n in LENS {
            let a = randv(&mut r, n, 1.0);
            let b = randv(&mut r, n, 1.0);
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let mag: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 * *y as f64).abs())
                .sum();
            let got = ops::dot_f32_isa(isa, &a, &b);
            assert!(
                (got as f64 - want).abs() <= 1e-5 * mag + 1e-6,
                "dot {isa} {n}"
            );
            let ah: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
            let want: f64 = ah.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
            let got = ops::dot_f16_f32_isa(isa, &ah, &b);
            assert!(
                (got as f64 - want).abs() <= 1e-5 * mag + 1e-6,
                "dot_f16 {isa} {n}"
            );
            let mut y = b.clone();
            ops::axpy_f16_isa(isa, &mut y, -0.7, &ah);
            let want: Vec<f32> = b
                .iter()
                .zip(&ah)
                .map(|(y, x)| y + -0.7 * x.to_f32())
                .collect();
            assert_close(&format!("axpy {isa} {n}"), &y, &want, 1e-6, 1e-6);
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn sweep() -> Vec<f32> {
    let mut v: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.01).collect();
    v.extend([
        0.0,
        -0.0,
        1e-8,
        -1e-8,
        88.0,
        88.8,
        100.0,
        1e6,
        -88.0,
        -100.0,
        -1e6,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    v
}

#[test]
fn activations() {
    let x = sweep();
    let n = x.len();
    for isa in isas() {
        let mut out = vec![0.0; n];
        ops::silu_isa(isa, &x, &mut out);
        let want: Vec<f32> = x.iter().map(|&v| scalar::silu(v)).collect();
        assert_close(&format!("silu {isa}"), &out, &want, 1e-6, 2e-6);
        let mut inpl = x.clone();
        ops::silu_inplace_isa(isa, &mut inpl);
        assert_eq!(bits(&inpl), bits(&out), "silu inplace {isa}");

        // Exact f64 GELU as the judge of both paths.
        let exact: Vec<f32> = x
            .iter()
            .map(|&v| {
                let v = v as f64;
                (0.5 * v
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * v * (1.0 + 0.044715 * v * v))
                            .tanh())) as f32
            })
            .collect();
        ops::gelu_isa(isa, &x, &mut out);
        assert_close(&format!("gelu {isa}"), &out, &exact, 1e-6, 2e-6);
        let mut inpl = x.clone();
        ops::gelu_inplace_isa(isa, &mut inpl);
        assert_eq!(bits(&inpl), bits(&out), "gelu inplace {isa}");
    }
}

#[test]
fn gated() {
    let mut r = rng(3);
    for isa in isas() {
        for n in LENS {
            let g = randv(&mut r, n, 8.0);
            let u = randv(&mut r, n, 2.0);
            let mut out = vec![0.0; n];
            ops::swiglu_isa(isa, &g, &u, &mut out);
            let want: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| scalar::silu(g) * u)
                .collect();
            assert_close(&format!("swiglu {isa} {n}"), &out, &want, 1e-6, 2e-6);
            ops::geglu_isa(isa, &g, &u, &mut out);
            let want: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| scalar::gelu_tanh(g) * u)
                .collect();
            assert_close(&format!("geglu {isa} {n}"), &out, &want, 1e-6, 2e-6);
        }
    }
}

#[test]
fn norms() {
    let mut r = rng(4);
    for isa in isas() {
        for dim in [1, 7, 16, 33, 576, 640] {
            for rows in [1, 3] {
                let x: Vec<f32> = randv(&mut r, dim * rows, 3.0)
                    .iter()
                    .map(|v| v + 0.5)
                    .collect();
                let w = randv(&mut r, dim, 2.0);
                let b = randv(&mut r, dim, 1.0);
                let mut want = vec![0.0; dim * rows];
                let mut want_ln = vec![0.0; dim * rows];
                for ((xr, o), ol) in x
                    .chunks(dim)
                    .zip(want.chunks_mut(dim))
                    .zip(want_ln.chunks_mut(dim))
                {
                    let ms = xr.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / dim as f64;
                    let s = 1.0 / (ms + 1e-6).sqrt();
                    for i in 0..dim {
                        o[i] = (xr[i] as f64 * s * w[i] as f64) as f32;
                    }
                    let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
                    let var =
                        xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
                    let s = 1.0 / (var + 1e-5).sqrt();
                    for i in 0..dim {
                        ol[i] = ((xr[i] as f64 - mean) * s * w[i] as f64 + b[i] as f64) as f32;
                    }
                }
                let mut out = vec![0.0; dim * rows];
                ops::rms_norm_isa(isa, &x, &w, 1e-6, &mut out);
                assert_close(&format!("rms {isa} {dim}"), &out, &want, 1e-5, 1e-5);
                let mut inpl = x.clone();
                ops::rms_norm_inplace_isa(isa, &mut inpl, &w, 1e-6);
                assert_eq!(inpl, out, "rms inplace {isa} {dim}");
                ops::layer_norm_isa(isa, &x, &w, &b, 1e-5, &mut out);
                assert_close(&format!("ln {isa} {dim}"), &out, &want_ln, 1e-4, 1e-4);
            }
        }
    }
}

#[test]
fn softmax() {
    let mut r = rng(5);
    for isa in isas() {
        for n in LENS {
            let mut x = randv(&mut r, n, 30.0);
            if n > 4 {
                x[1] = f32::NEG_INFINITY;
                x[n - 1] = f32::NEG_INFINITY;
            }
            let m = x
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, |a, b| a.max(b as f64));
            let e: Vec<f64> = x.iter().map(|&v| (v as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            let want: Vec<f32> = e.iter().map(|v| (v / s) as f32).collect();
            ops::softmax_isa(isa, &mut x);
            assert_close(&format!("softmax {isa} {n}"), &x, &want, 1e-7, 1e-5);
            if n > 4 {
                assert_eq!(x[1], 0.0);
            }
        }
        let mut all_masked = vec![f32::NEG_INFINITY; 4];
        ops::softmax_isa(isa, &mut all_masked);
        assert_eq!(all_masked, vec![0.25; 4]);
    }
}

#[test]
#[should_panic(expected = "length mismatch")]
fn length_mismatch_panics() {
    crate::add_inplace(&mut [0.0; 3], &[1.0; 4]);
}
