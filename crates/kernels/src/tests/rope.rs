use super::{assert_close, randv, rng};
use crate::{rope_inplace, KernelError, RopeConfig, RopeStyle};

fn cfg(n_rot: usize, style: RopeStyle) -> RopeConfig {
    RopeConfig {
        n_rot,
        freq_base: 10000.0,
        freq_scale: 1.0,
        style,
    }
}

#[test]
fn hand_example() {
    // head_dim 4, n_rot 4, position 1: angles 1 and 10000^(-1/2) = 0.01.
    let (c0, s0, c1, s1) = (1f32.cos(), 1f32.sin(), 0.01f32.cos(), 0.01f32.sin());
    let mut x = vec![1.0, 2.0, 3.0, 4.0];
    rope_inplace(&mut x, &[1], 1, 4, &cfg(4, RopeStyle::Normal)).unwrap();
    let want = [
        c0 - 2.0 * s0,
        s0 + 2.0 * c0,
        3.0 * c1 - 4.0 * s1,
        3.0 * s1 + 4.0 * c1,
    ];
    assert_close("normal", &x, &want, 1e-6, 1e-6);
    let mut x = vec![1.0, 2.0, 3.0, 4.0];
    rope_inplace(&mut x, &[1], 1, 4, &cfg(4, RopeStyle::Neox)).unwrap();
    let want = [
        c0 - 3.0 * s0,
        2.0 * c1 - 4.0 * s1,
        s0 + 3.0 * c0,
        2.0 * s1 + 4.0 * c1,
    ];
    assert_close("neox", &x, &want, 1e-6, 1e-6);
}

/// Against the exact f64 formula (small positions, where f32 angle error is tiny), with
/// partial rotation, several heads and tokens, and norm preservation.
#[test]
fn against_exact_formula() {
    let mut r = rng(31);
    for style in [RopeStyle::Normal, RopeStyle::Neox] {
        for (head_dim, n_rot) in [(64, 64), (128, 64), (80, 32)] {
            let (n_heads, positions) = (3, [0u32, 1, 7, 40]);
            let x0 = randv(&mut r, positions.len() * n_heads * head_dim, 1.0);
            let mut x = x0.clone();
            let c = RopeConfig {
                freq_scale: 0.5,
                ..cfg(n_rot, style)
            };
            rope_inplace(&mut x, &positions, n_heads, head_dim, &c).unwrap();
            let mut want = x0.clone();
            for (t, &p) in positions.iter().enumerate() {
                for h in 0..n_heads {
                    let o = (t * n_heads + h) * head_dim;
                    for i in 0..n_rot / 2 {
                        let th = 0.5 * p as f64 * 10000f64.powf(-2.0 * i as f64 / n_rot as f64);
                        let (a, b) = match style {
                            RopeStyle::Normal => (o + 2 * i, o + 2 * i + 1),
                            RopeStyle::Neox => (o + i, o + i + n_rot / 2),
                        };
                        let (x0a, x0b) = (x0[a] as f64, x0[b] as f64);
                        want[a] = (x0a * th.cos() - x0b * th.sin()) as f32;
                        want[b] = (x0a * th.sin() + x0b * th.cos()) as f32;
                    }
                }
            }
            assert_close(
                &format!("{style:?} {head_dim}/{n_rot}"),
                &x,
                &want,
                2e-5,
                1e-5,
            );
            // Position 0 is the identity; dims past n_rot are untouched.
            assert_eq!(x[..n_heads * head_dim], x0[..n_heads * head_dim]);
            for t in 0..positions.len() * n_heads {
                let o = t * head_dim;
                assert_eq!(x[o + n_rot..o + head_dim], x0[o + n_rot..o + head_dim]);
            }
        }
    }
}

#[test]
fn rope_errors() {
    let mut x = vec![0.0; 64];
    let c = cfg(32, RopeStyle::Neox);
    assert!(matches!(
        rope_inplace(&mut x, &[0, 1], 1, 16, &c),
        Err(KernelError::InvalidShape(_))
    ));
    assert!(matches!(
        rope_inplace(&mut x, &[0], 1, 32, &c),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        rope_inplace(&mut x, &[0, 1], 1, 32, &cfg(7, RopeStyle::Normal)),
        Err(KernelError::InvalidShape(_))
    ));
    rope_inplace(&mut x, &[0, 1], 1, 32, &c).unwrap();
}

/// Every SIMD rotation equals the scalar one bit for bit (odd sizes exercise the tails).
#[test]
fn isas_agree_exactly() {
    let mut r = rng(32);
    for style in [RopeStyle::Normal, RopeStyle::Neox] {
        for (head_dim, n_rot) in [(64, 64), (128, 128), (80, 80), (96, 38), (256, 256), (6, 2)] {
            let positions = [0u32, 3, 999, 4095, 7];
            let x0 = randv(&mut r, positions.len() * 3 * head_dim, 2.0);
            let c = RopeConfig {
                freq_base: 1_000_000.0,
                ..cfg(n_rot, style)
            };
            let mut want = x0.clone();
            crate::rope::rope_inplace_isa(
                crate::Isa::Scalar,
                &mut want,
                &positions,
                3,
                head_dim,
                &c,
            )
            .unwrap();
            for isa in super::isas() {
                let mut got = x0.clone();
                crate::rope::rope_inplace_isa(isa, &mut got, &positions, 3, head_dim, &c).unwrap();
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{isa} {style:?} {head_dim}/{n_rot}"
                );
            }
        }
    }
}

/// Angles computed once and applied to several tensors give exactly what `rope_inplace`
/// gives each of them; a tensor of another token count, or with heads smaller than `n_rot`,
/// is refused.
#[test]
fn precomputed_angles_match_rope_inplace() {
    let mut r = rng(33);
    for style in [RopeStyle::Normal, RopeStyle::Neox] {
        let c = RopeConfig {
            freq_scale: 0.25,
            ..cfg(64, style)
        };
        let positions = [5u32, 17, 4000, 0];
        let angles = crate::RopeAngles::new(&c, &positions).unwrap();
        assert_eq!(angles.config(), &c);
        for n_heads in [9, 3] {
            let x0 = randv(&mut r, positions.len() * n_heads * 64, 3.0);
            let mut want = x0.clone();
            rope_inplace(&mut want, &positions, n_heads, 64, &c).unwrap();
            let mut got = x0;
            crate::rope_apply(&mut got, &angles, n_heads, 64).unwrap();
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{style:?} {n_heads} heads"
            );
        }
        let mut three_tokens = vec![0.0; 3 * 64];
        assert!(matches!(
            crate::rope_apply(&mut three_tokens, &angles, 1, 64),
            Err(KernelError::Length { .. })
        ));
        let mut small_heads = vec![0.0; 4 * 32];
        assert!(matches!(
            crate::rope_apply(&mut small_heads, &angles, 1, 32),
            Err(KernelError::InvalidShape(_))
        ));
    }
    assert!(matches!(
        crate::RopeAngles::new(&cfg(7, RopeStyle::Normal), &[0]),
        Err(KernelError::InvalidShape(_))
    ));
}

/// Rows `first..first + n` of a batch's angles rotate a sub-batch exactly as `rope_inplace`
/// with those positions; rows past the angles' positions, or partial rows, are refused.
#[test]
fn angles_applied_from_a_row_match_rope_inplace() {
    let mut r = rng(34);
    for style in [RopeStyle::Normal, RopeStyle::Neox] {
        let c = cfg(64, style);
        let positions = [3u32, 9, 250, 7, 1];
        let angles = crate::RopeAngles::new(&c, &positions).unwrap();
        for (first, n) in [(0, 5), (1, 2), (4, 1), (2, 3)] {
            let x0 = randv(&mut r, n * 3 * 64, 2.0);
            let mut want = x0.clone();
            rope_inplace(&mut want, &positions[first..first + n], 3, 64, &c).unwrap();
            let mut got = x0;
            crate::rope_apply_from(&mut got, &angles, first, 3, 64).unwrap();
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{style:?} rows {first}..{}",
                first + n
            );
        }
        let mut two = vec![0.0; 2 * 64];
        let e = crate::rope_apply_from(&mut two, &angles, 4, 1, 64).unwrap_err();
        assert!(matches!(e, KernelError::Length { .. }), "{e}");
        let mut partial = vec![0.0; 64 + 5];
        assert!(crate::rope_apply_from(&mut partial, &angles, 0, 1, 64).is_err());
        assert!(crate::rope_apply_from(&mut two, &angles, usize::MAX, 1, 64).is_err());
    }
}
