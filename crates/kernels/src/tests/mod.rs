//! Tests holding every fast path to its scalar reference, and the references to independent
//! naive implementations (f64 where it matters).

mod attention;
mod attention_q8;
mod dequant;
mod ffn;
mod kquant;
mod matmul;
mod matmul_many;
mod ops;
mod pool;
mod q32;
mod rope;
mod sampling;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub(crate) fn randv(r: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| r.gen_range(-scale..scale)).collect()
}

/// Every ISA this machine can run (scalar last).
pub(crate) fn isas() -> Vec<crate::Isa> {
    crate::Isa::supported()
}

/// The two results are the same floats, bit for bit (and the same length).
pub(crate) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// |a - b| <= tol, element-wise, with a helpful message.
#[track_caller]
pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = abs + rel * w.abs();
        let ok = (g - w).abs() <= tol || (g == w) || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}: index {i}: got {g}, want {w} (tol {tol})");
    }
}
