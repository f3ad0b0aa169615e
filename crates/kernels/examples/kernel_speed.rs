//! Rough per-ISA timings of the main kernels, for development only (speed claims come from
//! `freehold bench`). Run: `cargo run --release -p kernels --example kernel_speed [threads]`.

mod common;

use half::f16;
use kernels::{attention, matmul, with_isa, Isa, ThreadPool, Weights};
use quant::GgmlType;
use std::time::Instant;

fn time(label: &str, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
    println!("  {label:<44} {us:>10.1} us");
    us
}

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = ThreadPool::new(threads);
    println!("threads: {threads}");
    time("pool.run(empty)", 20_000, || pool.run(|_, _| {}));

    let mut rnd = common::uniform(1);
    let shapes = [
        (GgmlType::Q4_0, 576, 576),
        (GgmlType::Q4_K, 576, 1536),
        (GgmlType::Q6_K, 1536, 512),
        (GgmlType::F16, 576, 576),
    ];
    let mats: Vec<(GgmlType, usize, usize, Vec<u8>)> = shapes
        .iter()
        .map(|&(ty, rows, cols)| {
            let f: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
            (ty, rows, cols, quant::quantize(ty, &f).unwrap())
        })
        .collect();
    let x: Vec<f32> = (0..64 * 1536).map(|_| rnd()).collect();
    let (n_head, n_kv, hd, ctx) = (8, 2, 64, 1024);
    let q: Vec<f32> = (0..n_head * hd).map(|_| rnd()).collect();
    let kc: Vec<f16> = (0..ctx * n_kv * hd).map(|_| f16::from_f32(rnd())).collect();
    for isa in Isa::supported() {
        println!("{isa}:");
        with_isa(isa, || {
            for (ty, rows, cols, data) in &mats {
                let w = Weights::new(*ty, data, *rows, *cols).unwrap();
                for nt in [1, 64] {
                    let mut out = vec![0.0; nt * rows];
                    let us = time(
                        &format!("matmul {ty} {rows}x{cols} x {nt} tok"),
                        200 / nt + 5,
                        || matmul(&pool, &w, &x[..nt * cols], nt, &mut out).unwrap(),
                    );
                    let gflops = 2.0 * (*rows * *cols * nt) as f64 / us / 1e3;
                    println!("  {:<44} {gflops:>10.1} GFLOP/s", "");
                }
            }
            let mut out = vec![0.0; n_head * hd];
            time(
                &format!("attention decode ctx {ctx}, 8/2 heads x 64"),
                200,
                || {
                    attention(
                        &pool,
                        &q,
                        1,
                        n_head,
                        n_kv,
                        hd,
                        &kc,
                        &kc,
                        ctx - 1,
                        None,
                        0.125,
                        &mut out,
                    )
                    .unwrap()
                },
            );
        })
        .unwrap();
    }
}
