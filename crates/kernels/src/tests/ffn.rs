//! `ffn_glu` against the three steps it replaces (`matmul_many` of gate and up, the gated
//! activation, `matmul` of down): bit-identical on every ISA, fused (packed weights) or not,
//! and shape errors that compute nothing.

use super::{isas, randv, rng, same_bits};
use crate::ffn::ffn_glu_isa;
use crate::gemm_q32::{glu_fusable, pack_weights_isa, Path};
use crate::matmul::matmul_isa;
use crate::matmul_many::matmul_many_isa;
use crate::ops::{geglu_isa, swiglu_isa};
use crate::{FfnScratch, GatedFfn, Glu, Isa, KernelError, ThreadPool, Weights};
use quant::GgmlType;

fn three_steps(
    isa: Isa,
    pool: &ThreadPool,
    ws: [&Weights; 3],
    glu: Glu,
    x: &[f32],
    n: usize,
) -> Vec<f32> {
    let ff = ws[0].rows();
    let (mut g, mut u, mut act) = (vec![0.0; n * ff], vec![0.0; n * ff], vec![0.0; n * ff]);
    matmul_many_isa(isa, pool, &ws[..2], x, n, &mut [&mut g[..], &mut u[..]]).unwrap();
    match glu {
        Glu::Silu => swiglu_isa(isa, &g, &u, &mut act),
        Glu::GeluTanh => geglu_isa(isa, &g, &u, &mut act),
    }
    let mut out = vec![f32::NAN; n * ws[2].rows()];
    matmul_isa(isa, pool, ws[2], &act, n, &mut out).unwrap();
    out
}

fn fused(
    isa: Isa,
    pool: &ThreadPool,
    ws: [&Weights; 3],
    glu: Glu,
    x: &[f32],
    n: usize,
) -> Result<Vec<f32>, KernelError> {
    let ff = ws[0].rows();
    let (mut g, mut u, mut act) = (vec![0.0; n * ff], vec![0.0; n * ff], vec![0.0; n * ff]);
    let mut out = vec![f32::NAN; n * ws[2].rows()];
    let scratch = FfnScratch {
        gate: &mut g,
        up: &mut u,
        act: &mut act,
    };
    let ffn = GatedFfn {
        gate: ws[0],
        up: ws[1],
        down: ws[2],
        glu,
    };
    ffn_glu_isa(isa, pool, &ffn, x, n, scratch, &mut out)?;
    Ok(out)
}

#[test]
fn ffn_glu_matches_the_three_steps_bit_for_bit() {
    let mut r = rng(77);
    let pool = ThreadPool::new(2);
    let (cols, ff, rows) = (64, 96, 40);
    // Gate/up type, down type: offsets 0, 8, 16 and 128 on either side; a float down
    // (never fused); K-quant gate/up (never fused).
    let combos = [
        (GgmlType::Q4_1, GgmlType::Q4_1),
        (GgmlType::Q8_0, GgmlType::Q4_0),
        (GgmlType::Q5_0, GgmlType::Q8_0),
        (GgmlType::Q4_0, GgmlType::Q5_1),
        (GgmlType::Q4_1, GgmlType::F16),
    ];
    let mut fused_runs = 0;
    for (gt, dt) in combos {
        let data: Vec<Vec<u8>> = [(gt, ff, cols), (gt, ff, cols), (dt, rows, ff)]
            .iter()
            .map(|&(ty, r_, c)| quant::quantize(ty, &randv(&mut r, r_ * c, 1.0)).unwrap())
            .collect();
        let ws = [
            Weights::new(gt, &data[0], ff, cols).unwrap(),
            Weights::new(gt, &data[1], ff, cols).unwrap(),
            Weights::new(dt, &data[2], rows, ff).unwrap(),
        ];
        let packed = pack_weights_isa(Isa::best(), &pool, &ws, &|_| {});
        let wp: Vec<Weights> = ws
            .iter()
            .zip(&packed)
            .map(|(w, p)| p.as_ref().map_or(*w, |p| w.with_packed(p).unwrap()))
            .collect();
        for set in [[&ws[0], &ws[1], &ws[2]], [&wp[0], &wp[1], &wp[2]]] {
            for glu in [Glu::Silu, Glu::GeluTanh] {
                for n in [1, 3, 8, 17] {
                    let x = randv(&mut r, n * cols, 2.0);
                    for isa in isas() {
                        if glu_fusable(Path::for_isa(isa), set[0], set[1])
                            && crate::gemm_q32::handles(dt)
                        {
                            fused_runs += 1;
                        }
                        let want = three_steps(isa, &pool, set, glu, &x, n);
                        let got = fused(isa, &pool, set, glu, &x, n).unwrap();
                        let same = same_bits(&got, &want);
                        assert!(
                            same,
                            "{isa} {gt}/{dt} {glu:?} tokens {n}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }
    // Where this CPU has the VNNI kernels the fused path must have run.
    if Path::for_isa(Isa::best()) != Path::for_isa(Isa::Scalar) && packed_on_this_cpu() {
        assert!(fused_runs > 0, "the fused path never ran");
    }
}

fn packed_on_this_cpu() -> bool {
    let d = quant::quantize(GgmlType::Q4_1, &[0.5; 32 * 32]).unwrap();
    let w = Weights::new(GgmlType::Q4_1, &d, 32, 32).unwrap();
    pack_weights_isa(Isa::best(), &ThreadPool::new(1), &[w], &|_| {})[0].is_some()
}

#[test]
fn ffn_glu_refuses_shapes_that_do_not_chain_and_writes_nothing() {
    let mut r = rng(5);
    let pool = ThreadPool::new(2);
    let q = |r_: usize, c: usize, r: &mut _| {
        quant::quantize(GgmlType::Q4_1, &randv(r, r_ * c, 1.0)).unwrap()
    };
    let (dg, du, dd, du_bad) = (
        q(64, 32, &mut r),
        q(64, 32, &mut r),
        q(32, 64, &mut r),
        q(32, 32, &mut r),
    );
    let g = Weights::new(GgmlType::Q4_1, &dg, 64, 32).unwrap();
    let u = Weights::new(GgmlType::Q4_1, &du, 64, 32).unwrap();
    let d = Weights::new(GgmlType::Q4_1, &dd, 32, 64).unwrap();
    let u_bad = Weights::new(GgmlType::Q4_1, &du_bad, 32, 32).unwrap();
    let n = 2;
    let x = randv(&mut r, n * 32, 1.0);
    let run = |u: &Weights, x: &[f32], scratch_len: usize, out_len: usize| {
        let (mut a, mut b, mut c) = (vec![0.0; scratch_len], vec![0.0; 128], vec![0.0; 128]);
        let mut out = vec![f32::NAN; out_len];
        let res = ffn_glu_isa(
            Isa::current(),
            &pool,
            &GatedFfn {
                gate: &g,
                up: u,
                down: &d,
                glu: Glu::Silu,
            },
            x,
            n,
            FfnScratch {
                gate: &mut a,
                up: &mut b,
                act: &mut c,
            },
            &mut out,
        );
        assert!(out.iter().all(|v| v.is_nan()), "output written on error");
        res.unwrap_err().to_string()
    };
    let e = run(&u_bad, &x, 128, 64);
    assert!(e.contains("do not chain") && e.contains("32x32"), "{e}");
    let e = run(&u, &x, 100, 64);
    assert!(
        e.contains("gate scratch") && e.contains("128") && e.contains("100"),
        "{e}"
    );
    let e = run(&u, &x[..40], 128, 64);
    assert!(e.contains("activations") && e.contains("40"), "{e}");
    let e = run(&u, &x, 128, 63);
    assert!(e.contains("output") && e.contains("63"), "{e}");
}
