//! Decode attention speed, for development only: one query token against `depth` cached
//! positions in `layers` separate caches per model shape (many layers: the cache streams from
//! memory as in a real decode step; one layer: it stays in cache, which isolates the
//! arithmetic). Prints the minimum and median of `reps` tokens for f16, Q8_0 and Q8_0 with the queries
//! rounded to Q8_0 (the int8 score path). Run:
//! `cargo run --release -p kernels --example attention_decode_speed [threads] [depth] [layers]
//! [reps] [shape]` (`layers` 0: the model's own count; `shape` `smollm2`, `gemma3` or `all`).

mod common;

use half::f16;
use kernels::{
    attention, attention_q8_0, attention_q8_0_int8_query, q8_0_bytes, quantize_kv_q8_0, ThreadPool,
};
use std::time::Instant;

/// Minimum and median of `n` timings of `f`, in seconds.
fn stats(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[0], t[n / 2])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut num = |d: usize| args.next().and_then(|s| s.parse().ok()).unwrap_or(d);
    let threads = num(2);
    let depth = num(2048);
    let layers_arg = num(0);
    let reps = num(30).max(1);
    let shape = std::env::args().nth(5).unwrap_or_else(|| "all".into());
    let pool = ThreadPool::new(threads);
    let mut rnd = common::uniform(1);
    // (name, layers, n_head, n_kv, head_dim)
    for (name, layers, n_head, n_kv, hd) in [("smollm2", 30, 9, 3, 64), ("gemma3", 18, 4, 1, 256)] {
        if shape != "all" && shape != name {
            continue;
        }
        let layers = if layers_arg == 0 { layers } else { layers_arg };
        let n = depth + 1;
        let vals = n * n_kv * hd;
        let mut h = Vec::new();
        let mut q8 = Vec::new();
        for _ in 0..layers {
            let k: Vec<f32> = (0..vals).map(|_| rnd()).collect();
            let v: Vec<f32> = (0..vals).map(|_| rnd()).collect();
            let c16 = |x: &[f32]| x.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
            let c8 = |x: &[f32]| {
                let mut b = vec![0u8; q8_0_bytes(x.len())];
                quantize_kv_q8_0(x, &mut b);
                b
            };
            h.push((c16(&k), c16(&v)));
            q8.push((c8(&k), c8(&v)));
        }
        let q: Vec<f32> = (0..n_head * hd).map(|_| 3.0 * rnd()).collect();
        let mut out = vec![0.0; q.len()];
        let (m16, d16) = stats(reps, || {
            for (k, v) in &h {
                attention(
                    &pool, &q, 1, n_head, n_kv, hd, k, v, depth, None, 0.125, &mut out,
                )
                .unwrap();
            }
        });
        let (m8, d8) = stats(reps, || {
            for (k, v) in &q8 {
                attention_q8_0(
                    &pool, &q, 1, n_head, n_kv, hd, k, v, depth, None, 0.125, &mut out,
                )
                .unwrap();
            }
        });
        let (mi, di) = stats(reps, || {
            for (k, v) in &q8 {
                attention_q8_0_int8_query(
                    &pool, &q, 1, n_head, n_kv, hd, k, v, depth, None, 0.125, &mut out,
                )
                .unwrap();
            }
        });
        let b16 = (layers * 2 * vals * 2) as f64;
        let b8 = (layers * 2 * q8_0_bytes(vals)) as f64;
        println!(
            "{name} d{depth} t{threads} x{layers}: f16 min {:.3} med {:.3} ms ({:.1} GB/s) | q8_0 min {:.3} med {:.3} ms ({:.1} GB/s) | int8 q {:.3} {:.3} ({:.1})",
            m16 * 1e3,
            d16 * 1e3,
            b16 / m16 / 1e9,
            m8 * 1e3,
            d8 * 1e3,
            b8 / m8 / 1e9,
            mi * 1e3,
            di * 1e3,
            b8 / mi / 1e9
        );
    }
}
