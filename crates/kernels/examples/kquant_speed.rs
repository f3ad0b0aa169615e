//! Timings of the K-quant matmul shapes of Gemma 3 270M (ffn_down 640x2048 Q6_K, attn_output
//! 640x1024 Q4_K, plus Q5_K), GEMV (1 token) and GEMM (512 tokens), min of several runs, for
//! development only (speed claims come from `freehold bench`).
//! Run: `cargo run --release -p kernels --example kquant_speed [threads]`.

mod common;

use kernels::{matmul, with_isa, Isa, ThreadPool, Weights};
use quant::GgmlType;
use std::time::Instant;

/// Minimum over `reps` repetitions of the mean time of `iters` calls, in microseconds.
fn time_min(reps: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    best
}

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = ThreadPool::new(threads);
    println!("threads: {threads}");
    let mut rnd = common::uniform(7);
    let shapes = [
        (GgmlType::Q6_K, 640, 2048),
        (GgmlType::Q4_K, 640, 1024),
        (GgmlType::Q4_K, 640, 2048),
        (GgmlType::Q5_K, 640, 2048),
    ];
    let x: Vec<f32> = (0..512 * 2048).map(|_| rnd()).collect();
    let isas: Vec<Isa> = match std::env::var("KQ_ISA") {
        Ok(s) => vec![s.parse().expect("KQ_ISA")],
        Err(_) => Isa::supported()
            .into_iter()
            .filter(|&i| i != Isa::Scalar)
            .collect(),
    };
    // Optional filters for profiling one case: KQ_SHAPE=0..3, KQ_NT=1|4|512.
    let only_shape: Option<usize> = std::env::var("KQ_SHAPE").ok().and_then(|s| s.parse().ok());
    let only_nt: Option<usize> = std::env::var("KQ_NT").ok().and_then(|s| s.parse().ok());
    for (si, &(ty, rows, cols)) in shapes.iter().enumerate() {
        if only_shape.is_some_and(|s| s != si) {
            continue;
        }
        let f: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let data = quant::quantize(ty, &f).unwrap();
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        for &isa in &isas {
            with_isa(isa, || {
                for nt in [1usize, 4, 512] {
                    if only_nt.is_some_and(|n| n != nt) {
                        continue;
                    }
                    let mut out = vec![0.0; nt * rows];
                    let (reps, iters) = match nt {
                        1 => (15, 200),
                        4 => (10, 50),
                        _ => (7, 3),
                    };
                    let us = time_min(reps, iters, || {
                        matmul(&pool, &w, &x[..nt * cols], nt, &mut out).unwrap()
                    });
                    let gmacs = (rows * cols * nt) as f64 / us / 1e3;
                    let gbs = data.len() as f64 / us / 1e3;
                    println!(
                        "{isa:<7} {ty:<5} {rows}x{cols} x {nt:>3} tok: {us:>9.1} us  \
                         {gmacs:>7.1} G MAC/s  {gbs:>6.1} GB/s weights"
                    );
                }
            })
            .unwrap();
        }
    }
}
