//! Decode attention at depth, for development only: one query token against `depth` cached
//! positions in each of `layers` separate caches (so the cache streams from memory as in a
//! real decode step), f16 and Q8_0, best of 20 tokens. Run:
//! `cargo run --release -p kernels --example attn_decode [threads] [depth]`.

use half::f16;
use kernels::{attention, attention_q8_0, q8_0_bytes, quantize_kv_q8_0, ThreadPool};
use std::time::Instant;

fn best_of(n: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..n {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let depth: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2048);
    let pool = ThreadPool::new(threads);
    let mut seed = 1u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    let x: Vec<f32> = (0..1 << 20).map(|_| rnd()).collect();
    let mut xb = vec![0u8; q8_0_bytes(x.len())];
    let tq = best_of(5, || quantize_kv_q8_0(&x, &mut xb));
    println!(
        "quantize_kv_q8_0: {:.2} ns/value",
        tq * 1e9 / x.len() as f64
    );
    // (name, layers, n_head, n_kv, head_dim)
    for (name, layers, n_head, n_kv, hd) in [
        ("smollm2-135m", 30, 9, 3, 64),
        ("gemma3-270m", 18, 4, 1, 256),
    ] {
        let n = depth + 1;
        let vals = n * n_kv * hd;
        let f: Vec<(Vec<f32>, Vec<f32>)> = (0..layers)
            .map(|_| {
                (
                    (0..vals).map(|_| rnd()).collect(),
                    (0..vals).map(|_| rnd()).collect(),
                )
            })
            .collect();
        let h: Vec<(Vec<f16>, Vec<f16>)> = f
            .iter()
            .map(|(k, v)| {
                let c = |x: &[f32]| x.iter().map(|&x| f16::from_f32(x)).collect();
                (c(k), c(v))
            })
            .collect();
        let q8: Vec<(Vec<u8>, Vec<u8>)> = f
            .iter()
            .map(|(k, v)| {
                let c = |x: &[f32]| {
                    let mut b = vec![0u8; q8_0_bytes(x.len())];
                    quantize_kv_q8_0(x, &mut b);
                    b
                };
                (c(k), c(v))
            })
            .collect();
        drop(f);
        let q: Vec<f32> = (0..n_head * hd).map(|_| rnd()).collect();
        let mut out = vec![0.0; q.len()];
        let t16 = best_of(20, || {
            for (k, v) in &h {
                attention(
                    &pool, &q, 1, n_head, n_kv, hd, k, v, depth, None, 0.125, &mut out,
                )
                .unwrap();
            }
        });
        let t8 = best_of(20, || {
            for (k, v) in &q8 {
                attention_q8_0(
                    &pool, &q, 1, n_head, n_kv, hd, k, v, depth, None, 0.125, &mut out,
                )
                .unwrap();
            }
        });
        let b16 = (layers * 2 * vals * 2) as f64;
        let b8 = (layers * 2 * q8_0_bytes(vals)) as f64;
        println!(
            "{name} depth {depth} threads {threads}: f16 {:.3} ms/token ({:.1} GB/s), q8_0 {:.3} ms/token ({:.1} GB/s)",
            t16 * 1e3,
            b16 / t16 / 1e9,
            t8 * 1e3,
            b8 / t8 / 1e9
        );
    }
}
