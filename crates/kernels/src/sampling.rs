//! Picking tokens from logits.

use std::cmp::Ordering;

/// NaN sorts as the lowest value.
fn key(v: f32) -> f32 {
    if v.is_nan() {
        f32::NEG_INFINITY
    } else {
        v
    }
}

/// Higher logit first, then lower id.
fn order(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    key(b.1)
        .partial_cmp(&key(a.1))
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// Index of the largest logit (the lowest such index on ties; NaN never wins unless all
/// are NaN), or `None` for an empty slice.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    if logits.is_empty() {
        return None;
    }
    // Two branch-free passes that vectorise (a max per lane, then the first index holding
    // it) instead of one compare-and-branch per logit: this runs once per decoded token of
    // every sequence over the whole vocabulary. `v > m` is false for NaN, so NaN is skipped.
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let best = lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    if best == f32::NEG_INFINITY {
        // Every logit is -inf or NaN: all tie, the lowest index wins.
        return Some(0);
    }
    logits.iter().position(|&v| v == best).map(|i| i as u32)
}

/// The `k` largest logits as `(token id, logit)`, sorted by logit descending, ties by lower id
/// first. Returns fewer than `k` if there are fewer logits.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let mut all: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, v))
        .collect();
    if k < all.len() {
        all.select_nth_unstable_by(k - 1, order);
        all.truncate(k);
    }
    all.sort_unstable_by(order);
    all
}
