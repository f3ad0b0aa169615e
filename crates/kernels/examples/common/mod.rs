//! What the development measurements share (each example includes this with `mod common;`).

#![allow(dead_code)]

use std::time::Instant;

/// A xorshift32 stream of values in [-1, 1]: reproducible inputs without a dependency.
pub fn uniform(seed: u32) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
}

/// The shortest of `n` runs of `f`, in seconds.
pub fn best_of(n: usize, mut f: impl FnMut()) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}
