//! Timings of `kernels::matmul` on the 32-element block formats at the shapes that matter for
//! the test models (development only; speed claims come from `freehold bench`).
//!
//! Run: `cargo run --release -p kernels --example q32_speed [threads] [reps]`. Each case is
//! timed `reps` times (default 7) and the minimum is reported, because the machine is shared.

mod common;

use kernels::{matmul, ThreadPool, Weights};
use quant::GgmlType;
use std::time::Instant;

fn min_time(reps: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / iters as f64);
    }
    best
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let reps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(7);
    let filter = args.next().unwrap_or_default();
    let pool = ThreadPool::new(threads);
    println!(
        "threads {threads}, isa {}, min of {reps} runs",
        kernels::Isa::current()
    );

    let mut rnd = common::uniform(7);
    // (type, rows, cols, tokens)
    let cases = [
        (GgmlType::Q8_0, 256, 640, 1),
        (GgmlType::Q5_0, 256, 640, 1),
        (GgmlType::Q4_1, 256, 576, 1),
        (GgmlType::Q8_0, 262144, 640, 1),
        (GgmlType::Q5_0, 2048, 640, 1),
        (GgmlType::Q5_0, 640, 2048, 1),
        (GgmlType::Q4_1, 1536, 576, 1),
        (GgmlType::Q4_1, 1536, 576, 512),
        (GgmlType::Q5_0, 2048, 640, 512),
        (GgmlType::Q8_0, 640, 2048, 512),
        (GgmlType::Q4_0, 1536, 576, 512),
        (GgmlType::Q5_1, 1536, 576, 512),
    ];
    // Plain read bandwidth over a 178 MB buffer right now, as the yardstick for the GEMVs.
    if filter.is_empty() || filter == "bw" {
        let buf = vec![1u64; 178_257_920 / 8];
        let chunk = buf.len() / 64;
        let total = std::sync::atomic::AtomicU64::new(0);
        let s = min_time(reps, 3, || {
            pool.for_each_chunk(64, 1, |r| {
                let mut acc = [0u64; 8];
                for c in r {
                    for v in buf[c * chunk..(c + 1) * chunk].chunks_exact(8) {
                        for i in 0..8 {
                            acc[i] = acc[i].wrapping_add(v[i]);
                        }
                    }
                }
                total.fetch_add(
                    acc.iter().sum::<u64>(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            })
        });
        println!(
            "{:<34} {:>9.1} us  {:>7.1} GB/s",
            "read 178 MB (sum u64)",
            s * 1e6,
            buf.len() as f64 * 8.0 / s / 1e9
        );
    }
    for (ty, rows, cols, nt) in cases {
        let name = format!("{ty} {rows}x{cols} x {nt} tok");
        if !filter.is_empty() && !name.contains(&filter) {
            continue;
        }
        // Quantize a smaller random matrix and repeat it (quantizing 168M values is slow).
        let base_rows = if rows % 1024 == 0 { 1024 } else { rows };
        let f: Vec<f32> = (0..base_rows * cols).map(|_| rnd()).collect();
        let one = quant::quantize(ty, &f).unwrap();
        let data: Vec<u8> = one.repeat(rows / base_rows);
        let w = Weights::new(ty, &data, rows, cols).unwrap();
        let x: Vec<f32> = (0..nt * cols).map(|_| rnd()).collect();
        let mut out = vec![0.0; nt * rows];
        let iters = if nt == 1 {
            (2_000_000_000 / data.len()).clamp(3, 2000)
        } else {
            3
        };
        let s = min_time(reps, iters, || matmul(&pool, &w, &x, nt, &mut out).unwrap());
        let gbs = data.len() as f64 / s / 1e9;
        let gmac = (rows * cols * nt) as f64 / s / 1e9;
        println!(
            "{name:<34} {:>9.1} us  {gbs:>7.1} GB/s weights  {gmac:>7.1} GMAC/s",
            s * 1e6
        );
    }
}
