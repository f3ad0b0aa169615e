//! Development measurement: time of one packed Q4_1 / Q8_0 matmul at several token counts
//! (best of many calls; one thread by default, so a busy machine disturbs it least). Usage:
//! `cargo run --release -p kernels --example packed_matmul_speed [threads]`.

mod common;

use kernels::{matmul, pack_weights, ThreadPool, Weights};
use quant::GgmlType;

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let pool = ThreadPool::new(threads);
    let mut rnd = common::uniform(1);
    // Streaming: ~64 MB of Q4_1 matrices in turn, as a decode step reads a model's layers,
    // and a 30 MB Q8_0 output projection (SmolLM2's).
    for (ty, rows, cols, count) in [
        (GgmlType::Q4_1, 1536usize, 576usize, 120usize),
        (GgmlType::Q8_0, 49152, 576, 1),
    ] {
        let f: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let data = quant::quantize(ty, &f).expect("quantize");
        let copies: Vec<Vec<u8>> = (0..count).map(|_| data.clone()).collect();
        let ws: Vec<Weights> = copies
            .iter()
            .map(|d| Weights::new(ty, d, rows, cols).expect("weights"))
            .collect();
        let packed = pack_weights(&pool, &ws, &|_| {});
        let wps: Vec<Weights> = ws
            .iter()
            .zip(&packed)
            .map(|(w, p)| match p {
                Some(p) => w.with_packed(p).expect("packed"),
                None => *w,
            })
            .collect();
        for n in [1usize, 4, 8, 16] {
            let x: Vec<f32> = (0..n * cols).map(|_| rnd()).collect();
            let mut out = vec![0.0f32; n * rows];
            let best = common::best_of(15, || {
                for w in &wps {
                    matmul(&pool, w, &x, n, &mut out).expect("matmul");
                }
            });
            let bytes = (count * data.len()) as f64;
            println!(
                "stream {count} x {ty} {rows}x{cols} tokens {n}: {:7.2} ms  {:5.1} GB/s",
                best * 1e3,
                bytes / best / 1e9
            );
        }
    }
    for (ty, rows, cols) in [
        (GgmlType::Q4_1, 1536, 576),
        (GgmlType::Q4_1, 576, 1536),
        (GgmlType::Q8_0, 4096, 576),
    ] {
        let f: Vec<f32> = (0..rows * cols).map(|_| rnd()).collect();
        let data = quant::quantize(ty, &f).expect("quantize");
        let w = Weights::new(ty, &data, rows, cols).expect("weights");
        let packed = pack_weights(&pool, &[w], &|_| {}).pop().flatten();
        let wp = match &packed {
            Some(p) => w.with_packed(p).expect("packed"),
            None => w,
        };
        for n in [1usize, 4, 8, 16] {
            let x: Vec<f32> = (0..n * cols).map(|_| rnd()).collect();
            let mut out = vec![0.0f32; n * rows];
            let best = common::best_of(300, || {
                matmul(&pool, &wp, &x, n, &mut out).expect("matmul");
            });
            let gmacs = (rows * cols * n) as f64 / best / 1e9;
            println!(
                "{ty} {rows}x{cols} tokens {n:2}: {:8.1} us  {gmacs:6.1} GMAC/s",
                best * 1e6
            );
        }
    }
}
