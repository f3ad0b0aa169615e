//! Causal multi-head attention over an f16 KV cache (GQA, optional sliding window).
//!
//! # Algorithm
//! Single pass with a running maximum (flash-attention style): keys are taken in blocks, each
//! block's scores are computed, the accumulator is rescaled once if the maximum grew, and the
//! block's values are added with weights `e^(s - max)`. Memory does not grow with the context.
//!
//! The query rows that share a KV head (the `group = n_head / n_kv_head` heads of a token, for
//! consecutive tokens) are processed together so every K and V row is read and converted
//! from f16 once per group of rows, not once per row. Two SIMD kernels do this:
//!
//! * **tiled** (prefill, `n_tokens · group >= 8`): up to one vector of query rows (16 with
//!   AVX-512), one row per *lane*. Q is transposed once per block (`Qt[d][row]`, pre-scaled);
//!   for each tile of `W` keys the K rows are converted to f32 once, and the score tile is
//!   `W` vector accumulators, `acc[key] += Qt[d] · k[key][d]` (broadcast), so scores come out
//!   lane-parallel over rows: the running max, the rescaling and the `e^(s - max)` weights are
//!   plain vector operations with no horizontal reductions. The output is kept transposed too
//!   (`Ot[d][row] += Σ_key p[key] · v[key][d]`, the `W` weight vectors staying in registers)
//!   and is transposed back once at the end. Tiles outside every row's causal/window range are
//!   skipped; tiles on a boundary get a per-lane `0 / -inf` bias.
//! * **rows** (decode, few rows per KV head): up to 4 rows share each K load (dot products
//!   over `head_dim` lanes, one reduction per score) and each V load.
//!
//! When there are fewer (KV head × row block) work items than about 4 per thread, the key
//! range of each is split (split-K, "flash decoding"): each piece returns its row maxima,
//! sums and unnormalised accumulators, and the caller combines them. The scalar path keeps
//! the original one-row-at-a-time algorithm and is the tests' reference.

use crate::isa::dispatch;
#[cfg(target_arch = "x86_64")]
use crate::isa::simd_fns;
#[cfg(target_arch = "x86_64")]
use crate::ops::{load_part, load_part_f16, store_part};
#[cfg(target_arch = "x86_64")]
use crate::simd::Simd;
use crate::{Isa, KernelError, ThreadPool};
use half::f16;
#[cfg(target_arch = "x86_64")]
use std::cell::Cell;

/// Shape of one attention call.
#[derive(Clone, Copy)]
struct Geom {
    head_dim: usize,
    /// Elements per cache position (`n_kv_head * head_dim`).
    kv_stride: usize,
    scale: f32,
}

/// Which SIMD kernel and key split to use; tests force each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Plan {
    /// Chosen from the shape and the pool size.
    Auto,
    /// The grouped-row kernel with the key range of each work item cut in `split` pieces.
    Rows { split: usize },
    /// The tiled kernel, likewise.
    Tiled { split: usize },
}

/// Most query rows in one work item (one per lane of the widest vector).
const MAX_LANES: usize = 16;
/// Rows of the grouped-row kernel that share one pass over K and V.
const ROWS: usize = 4;
/// Keys per block of the grouped-row kernel.
const RBLOCK: usize = 32;
/// Floor of the running maximum: finite, so a row with no valid key yet gets weights
/// `e^(-inf - floor) = 0` and corrections `e^0 = 1` instead of NaN.
const M_FLOOR: f32 = -1e30;
/// Rows per KV head from which the tiled kernel is used.
const TILED_MIN_ROWS: usize = 8;
/// Fewest keys per split-K piece.
const MIN_SPLIT_KEYS: usize = 64;

/// One work item: up to [`MAX_LANES`] query rows sharing a KV head, over the keys
/// `lo[r]..hi[r]` of each row (already clipped to this item's share of the key range).
#[cfg(target_arch = "x86_64")]
struct Task {
    hd: usize,
    kv_stride: usize,
    scale: f32,
    rows: usize,
    q: [*const f32; MAX_LANES],
    lo: [usize; MAX_LANES],
    hi: [usize; MAX_LANES],
    /// K and V of this KV head at position 0.
    k: *const u16,
    v: *const u16,
    /// Per row: the output row (`hd` floats, normalised) or, with `partial`, the slot
    /// `[max, sum, acc[hd]]` of this piece.
    dst: [*mut f32; MAX_LANES],
    partial: bool,
    /// Thread-local scratch, [`scratch_len`] floats.
    scratch: *mut f32,
}

#[cfg(target_arch = "x86_64")]
fn scratch_len(hd: usize) -> usize {
    3 * MAX_LANES * (hd + 16)
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Writes row `r`'s result: `src[d * stride]` for `d < hd`, divided by `l` (final) or with
/// `m` and `l` in front (partial).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn emit(t: &Task, r: usize, m: f32, l: f32, src: *const f32, stride: usize) {
    let dst = t.dst[r];
    if t.partial {
        *dst = m;
        *dst.add(1) = l;
        for d in 0..t.hd {
            *dst.add(2 + d) = *src.add(d * stride);
        }
    } else {
        let inv = 1.0 / l;
        for d in 0..t.hd {
            *dst.add(d) = *src.add(d * stride) * inv;
        }
    }
}

/// Converts `n` f16 at `src` to f32 at `dst`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn convert_row<S: Simd>(src: *const u16, dst: *mut f32, n: usize) {
    let mut c = 0;
    while c + S::W <= n {
        S::store(dst.add(c), S::load_f16(src.add(c)));
        c += S::W;
    }
    if c < n {
        store_part::<S>(dst.add(c), n - c, load_part_f16::<S>(src.add(c), n - c));
    }
}

/// The tiled kernel (module docs): rows are lanes, `S::W` keys per tile.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_g<S: Simd>(t: *const Task) {
    let t = &*t;
    let (hd, w, rows) = (t.hd, S::W, t.rows);
    let ks = hd + 16; // padded row stride of the converted K/V tile
    let qt = t.scratch;
    let ot = qt.add(hd * w);
    let kvf = ot.add(hd * w);
    for d in 0..hd {
        for r in 0..w {
            *qt.add(d * w + r) = if r < rows {
                *t.q[r].add(d) * t.scale
            } else {
                0.0
            };
        }
    }
    std::ptr::write_bytes(ot, 0, hd * w);
    let (mut jlo, mut jhi) = (usize::MAX, 0);
    for r in 0..rows {
        if t.lo[r] < t.hi[r] {
            jlo = jlo.min(t.lo[r]);
            jhi = jhi.max(t.hi[r]);
        }
    }
    let mut m = S::splat(M_FLOOR);
    let mut l = S::zero();
    let mut j0 = jlo;
    while j0 < jhi {
        let nb = w.min(jhi - j0);
        let full = nb == w && (0..rows).all(|r| t.lo[r] <= j0 && j0 + w <= t.hi[r]);
        if !full && !(0..rows).any(|r| t.lo[r].max(j0) < t.hi[r].min(j0 + nb)) {
            j0 += nb;
            continue;
        }
        for i in 0..w {
            if i < nb {
                convert_row::<S>(t.k.add((j0 + i) * t.kv_stride), kvf.add(i * ks), hd);
            } else {
                std::ptr::write_bytes(kvf.add(i * ks), 0, hd);
            }
        }
        // Score tile: s[i] lane r = q_r · k_(j0+i).
        let mut s = [S::zero(); MAX_LANES];
        for d in 0..hd {
            let qv = S::load(qt.add(d * w));
            for (i, si) in s.iter_mut().enumerate().take(w) {
                *si = S::fmadd(qv, S::splat(*kvf.add(i * ks + d)), *si);
            }
        }
        if !full {
            let mut bias = [0.0f32; MAX_LANES];
            for (i, si) in s.iter_mut().enumerate().take(w) {
                let j = j0 + i;
                for (r, b) in bias.iter_mut().enumerate().take(rows) {
                    let ok = i < nb && t.lo[r] <= j && j < t.hi[r];
                    *b = if ok { 0.0 } else { f32::NEG_INFINITY };
                }
                *si = S::add(*si, S::load(bias.as_ptr()));
            }
        }
        // Online softmax, lane-parallel over rows.
        let mut mt = s[0];
        for si in s.iter().take(w).skip(1) {
            mt = S::max(mt, *si);
        }
        let mnew = S::max(m, mt);
        let corr = S::exp(S::sub(m, mnew));
        m = mnew;
        let mut lsum = S::zero();
        for si in s.iter_mut().take(w) {
            *si = S::exp(S::sub(*si, mnew));
            lsum = S::add(lsum, *si);
        }
        l = S::fmadd(l, corr, lsum);
        for i in 0..w {
            if i < nb {
                convert_row::<S>(t.v.add((j0 + i) * t.kv_stride), kvf.add(i * ks), hd);
            }
        }
        // Ot[d] = Ot[d]·corr + Σ_i p_i · v_i[d], four d at a time.
        let mut d = 0;
        while d + 4 <= hd {
            let o = ot.add(d * w);
            let mut a0 = S::mul(S::load(o), corr);
            let mut a1 = S::mul(S::load(o.add(w)), corr);
            let mut a2 = S::mul(S::load(o.add(2 * w)), corr);
            let mut a3 = S::mul(S::load(o.add(3 * w)), corr);
            for (i, &p) in s.iter().enumerate().take(w) {
                let vp = kvf.add(i * ks + d);
                a0 = S::fmadd(p, S::splat(*vp), a0);
                a1 = S::fmadd(p, S::splat(*vp.add(1)), a1);
                a2 = S::fmadd(p, S::splat(*vp.add(2)), a2);
                a3 = S::fmadd(p, S::splat(*vp.add(3)), a3);
            }
            S::store(o, a0);
            S::store(o.add(w), a1);
            S::store(o.add(2 * w), a2);
            S::store(o.add(3 * w), a3);
            d += 4;
        }
        while d < hd {
            let o = ot.add(d * w);
            let mut a0 = S::mul(S::load(o), corr);
            for (i, &p) in s.iter().enumerate().take(w) {
                a0 = S::fmadd(p, S::splat(*kvf.add(i * ks + d)), a0);
            }
            S::store(o, a0);
            d += 1;
        }
        j0 += nb;
    }
    let (mut mb, mut lb) = ([0.0f32; MAX_LANES], [0.0f32; MAX_LANES]);
    S::store(mb.as_mut_ptr(), m);
    S::store(lb.as_mut_ptr(), l);
    for r in 0..rows {
        emit(t, r, mb[r], lb[r], ot.add(r), w);
    }
}
#[cfg(target_arch = "x86_64")]
simd_fns!(k_tile, tile_g, (t: *const Task));

/// Rows `r0..r0 + N` of `t`, sharing every K and V load (module docs).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // parallel per-row arrays, indexed together
unsafe fn rows_n<S: Simd, const N: usize>(t: &Task, r0: usize) {
    let (hd, w) = (t.hd, S::W);
    let o = t.scratch;
    std::ptr::write_bytes(o, 0, N * hd);
    let q: [*const f32; N] = std::array::from_fn(|r| t.q[r0 + r]);
    let lo: [usize; N] = std::array::from_fn(|r| t.lo[r0 + r]);
    let hi: [usize; N] = std::array::from_fn(|r| t.hi[r0 + r]);
    let (mut jlo, mut jhi) = (usize::MAX, 0);
    for r in 0..N {
        if lo[r] < hi[r] {
            jlo = jlo.min(lo[r]);
            jhi = jhi.max(hi[r]);
        }
    }
    let mut m = [M_FLOOR; N];
    let mut l = [0.0f32; N];
    let mut sc = [[0.0f32; RBLOCK]; N];
    let mut b0 = jlo;
    while b0 < jhi {
        let nb = RBLOCK.min(jhi - b0);
        for i in 0..nb {
            let j = b0 + i;
            let kp = t.k.add(j * t.kv_stride);
            let mut acc = [S::zero(); N];
            let mut c = 0;
            while c + w <= hd {
                let kv = S::load_f16(kp.add(c));
                for r in 0..N {
                    acc[r] = S::fmadd(kv, S::load(q[r].add(c)), acc[r]);
                }
                c += w;
            }
            if c < hd {
                let kv = load_part_f16::<S>(kp.add(c), hd - c);
                for r in 0..N {
                    acc[r] = S::fmadd(kv, load_part::<S>(q[r].add(c), hd - c, 0.0), acc[r]);
                }
            }
            for r in 0..N {
                sc[r][i] = if lo[r] <= j && j < hi[r] {
                    t.scale * S::reduce_add(acc[r])
                } else {
                    f32::NEG_INFINITY
                };
            }
        }
        // Per row: the new maximum, the block's weights (in place) and their sum.
        let mut diff = [0.0f32; MAX_LANES];
        let mut bsum = [0.0f32; N];
        for r in 0..N {
            let bm = sc[r][..nb]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let mnew = m[r].max(bm);
            diff[r] = m[r] - mnew;
            m[r] = mnew;
            let mv = S::splat(mnew);
            let mut sum = S::zero();
            let mut i = 0;
            while i < nb {
                let n = (nb - i).min(w);
                let p = sc[r].as_mut_ptr().add(i);
                let e = S::exp(S::sub(load_part::<S>(p, n, f32::NEG_INFINITY), mv));
                store_part::<S>(p, n, e);
                sum = S::add(sum, e);
                i += n;
            }
            bsum[r] = S::reduce_add(sum);
        }
        // One exp gives every row's correction e^(m_old - m_new).
        let mut corr = [1.0f32; MAX_LANES];
        S::store(corr.as_mut_ptr(), S::exp(S::load(diff.as_ptr())));
        for r in 0..N {
            l[r] = l[r] * corr[r] + bsum[r];
        }
        // O[r] = O[r]·corr[r] + Σ_i p_r,i · v_i.
        let mut c = 0;
        while c < hd {
            let n = (hd - c).min(w);
            let mut acc = [S::zero(); N];
            for r in 0..N {
                let x = if n == w {
                    S::load(o.add(r * hd + c))
                } else {
                    load_part::<S>(o.add(r * hd + c), n, 0.0)
                };
                acc[r] = S::mul(x, S::splat(corr[r]));
            }
            for i in 0..nb {
                let vp = t.v.add((b0 + i) * t.kv_stride + c);
                let vv = if n == w {
                    S::load_f16(vp)
                } else {
                    load_part_f16::<S>(vp, n)
                };
                for r in 0..N {
                    acc[r] = S::fmadd(S::splat(sc[r][i]), vv, acc[r]);
                }
            }
            for r in 0..N {
                if n == w {
                    S::store(o.add(r * hd + c), acc[r]);
                } else {
                    store_part::<S>(o.add(r * hd + c), n, acc[r]);
                }
            }
            c += n;
        }
        b0 += nb;
    }
    for r in 0..N {
        emit(t, r0 + r, m[r], l[r], o.add(r * hd), 1);
    }
}

/// The grouped-row kernel over all rows of `t`, [`ROWS`] at a time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_g<S: Simd>(t: *const Task) {
    let t = &*t;
    let mut r0 = 0;
    while r0 < t.rows {
        match (t.rows - r0).min(ROWS) {
            1 => rows_n::<S, 1>(t, r0),
            2 => rows_n::<S, 2>(t, r0),
            3 => rows_n::<S, 3>(t, r0),
            _ => rows_n::<S, 4>(t, r0),
        }
        r0 += ROWS;
    }
}
#[cfg(target_arch = "x86_64")]
simd_fns!(k_rows, rows_g, (t: *const Task));

/// Scalar reference of the same online algorithm, key by key.
fn attend_scalar(g: Geom, q: &[f32], k: &[u16], v: &[u16], j0: usize, j1: usize, out: &mut [f32]) {
    let hd = g.head_dim;
    out.fill(0.0);
    let mut m = f32::NEG_INFINITY;
    let mut l = 0.0f32;
    for j in j0..j1 {
        let kj = &k[j * g.kv_stride..j * g.kv_stride + hd];
        let s = g.scale * crate::ops::scalar::dot_f16(kj, q);
        if s > m {
            let corr = (m - s).exp();
            l *= corr;
            out.iter_mut().for_each(|o| *o *= corr);
            m = s;
        }
        let p = (s - m).exp();
        l += p;
        crate::ops::scalar::axpy_f16(out, p, &v[j * g.kv_stride..j * g.kv_stride + hd]);
    }
    let inv = 1.0 / l;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Raw pointers shared with the pool's jobs; every job writes disjoint rows or slots.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Ptrs {
    q: *const f32,
    out: *mut f32,
    k: *const u16,
    v: *const u16,
    part: *mut f32,
}
// SAFETY: the pointers are only dereferenced inside `attention_plan`'s pool job, while the
// borrows they came from are alive; reads are shared and writes go to disjoint rows (`out`)
// or disjoint per-item slots (`part`).
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for Ptrs {}
// SAFETY: as above.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for Ptrs {}

/// The SIMD path: work items of (KV head, block of rows, key piece), in parallel on `pool`,
/// then the split-K combination on the calling thread.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn attention_simd(
    isa: Isa,
    plan: Plan,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    g: Geom,
    k: &[u16],
    v: &[u16],
    pos0: usize,
    window: Option<usize>,
    out: &mut [f32],
) {
    let hd = g.head_dim;
    let group = n_head / n_kv_head;
    let rows_per_kv = n_tokens * group;
    let lanes = if isa == Isa::Avx512 { 16 } else { 8 };
    // Key range of the row with index `i` (token-major) among its KV head's rows.
    let range = |i: usize| {
        let hi = pos0 + i / group + 1;
        (window.map_or(0, |w| hi.saturating_sub(w)), hi)
    };
    let (tiled, split) = match plan {
        Plan::Rows { split } => (false, split),
        Plan::Tiled { split } => (true, split),
        Plan::Auto => (rows_per_kv >= TILED_MIN_ROWS, 0),
    };
    let block = if tiled { lanes } else { ROWS };
    let n_blocks = rows_per_kv.div_ceil(block);
    let base = n_kv_head * n_blocks;
    let split = if split > 0 {
        split
    } else {
        // Longest key span of one block.
        let span = (0..n_blocks)
            .map(|b| {
                let (lo, _) = range(b * block);
                let (_, hi) = range(((b + 1) * block).min(rows_per_kv) - 1);
                hi - lo
            })
            .max()
            .unwrap_or(0);
        let want = 4 * pool.n_threads();
        if base >= want {
            1
        } else {
            want.div_ceil(base).min(span / MIN_SPLIT_KEYS).max(1)
        }
    };
    let n_items = base * split;
    let slot = hd + 2;
    let mut part = if split > 1 {
        vec![0.0f32; n_items * block * slot]
    } else {
        Vec::new()
    };
    let ptrs = Ptrs {
        q: q.as_ptr(),
        out: out.as_mut_ptr(),
        k: k.as_ptr(),
        v: v.as_ptr(),
        part: part.as_mut_ptr(),
    };
    let job = |items: std::ops::Range<usize>| {
        let p = ptrs;
        let mut scratch = SCRATCH.with(Cell::take);
        scratch.resize(scratch_len(hd), 0.0);
        for it in items {
            // Largest blocks (latest tokens, most keys) first.
            let b = n_blocks - 1 - it / (n_kv_head * split);
            let kh = (it / split) % n_kv_head;
            let piece = it % split;
            let r_begin = b * block;
            let rows = block.min(rows_per_kv - r_begin);
            let (blo, _) = range(r_begin);
            let (_, bhi) = range(r_begin + rows - 1);
            // This piece's keys, cut at multiples of 16.
            let per = (bhi - blo).div_ceil(split).next_multiple_of(16);
            let ka = (blo + piece * per).min(bhi);
            let kb = (ka + per).min(bhi);
            let mut task = Task {
                hd,
                kv_stride: g.kv_stride,
                scale: g.scale,
                rows,
                q: [std::ptr::null(); MAX_LANES],
                lo: [0; MAX_LANES],
                hi: [0; MAX_LANES],
                // SAFETY: kh * hd < kv_stride, inside the cache slices.
                k: unsafe { p.k.add(kh * hd) },
                v: unsafe { p.v.add(kh * hd) },
                dst: [std::ptr::null_mut(); MAX_LANES],
                partial: split > 1,
                scratch: scratch.as_mut_ptr(),
            };
            for r in 0..rows {
                let i = r_begin + r;
                let (t, hl) = (i / group, i % group);
                let row = t * n_head + kh * group + hl;
                let (lo, hi) = range(i);
                task.lo[r] = lo.max(ka);
                task.hi[r] = hi.min(kb);
                // SAFETY (all three): `row < n_tokens * n_head`, so the row lies inside `q`
                // and `out`; the slot lies inside `part` (`n_items * block * slot` floats).
                task.q[r] = unsafe { p.q.add(row * hd) };
                task.dst[r] = if split > 1 {
                    unsafe { p.part.add((it * block + r) * slot) }
                } else {
                    unsafe { p.out.add(row * hd) }
                };
            }
            // Bounds: every key index is < pos0 + n_tokens and the slices hold that many
            // positions; rows write only their own output row or slot.
            if tiled {
                dispatch!(isa, k_tile, unreachable!("checked by the caller"), (&task));
            } else {
                dispatch!(isa, k_rows, unreachable!("checked by the caller"), (&task));
            }
        }
        SCRATCH.with(|c| c.set(scratch));
    };
    pool.for_each_chunk(n_items, 1, job);
    if split > 1 {
        // out = Σ e^(m_i - M)·acc_i / Σ e^(m_i - M)·l_i over the pieces of each row.
        for it0 in (0..n_items).step_by(split) {
            let b = n_blocks - 1 - it0 / (n_kv_head * split);
            let kh = (it0 / split) % n_kv_head;
            let r_begin = b * block;
            for r in 0..block.min(rows_per_kv - r_begin) {
                let i = r_begin + r;
                let row = (i / group) * n_head + kh * group + i % group;
                let slots = (0..split).map(|s| &part[((it0 + s) * block + r) * slot..][..slot]);
                let mx = slots
                    .clone()
                    .map(|s| s[0])
                    .fold(f32::NEG_INFINITY, f32::max);
                let o = &mut out[row * hd..(row + 1) * hd];
                o.fill(0.0);
                let mut l = 0.0f32;
                for s in slots {
                    let c = (s[0] - mx).exp();
                    l += c * s[1];
                    for (o, &a) in o.iter_mut().zip(&s[2..]) {
                        *o += c * a;
                    }
                }
                let inv = 1.0 / l;
                o.iter_mut().for_each(|o| *o *= inv);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_isa(
    isa: Isa,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[f16],
    v_cache: &[f16],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_plan(
        isa,
        Plan::Auto,
        pool,
        q,
        n_tokens,
        n_head,
        n_kv_head,
        head_dim,
        k_cache,
        v_cache,
        pos0,
        window,
        scale,
        out,
    )
}

/// [`attention_isa`] with the SIMD kernel and split chosen by `plan` (ignored on the scalar
/// path).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_plan(
    isa: Isa,
    plan: Plan,
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[f16],
    v_cache: &[f16],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    if n_head == 0 || n_kv_head == 0 || head_dim == 0 || !n_head.is_multiple_of(n_kv_head) {
        return Err(KernelError::InvalidShape(format!(
            "attention: n_head {n_head} must be a non-zero multiple of n_kv_head {n_kv_head}, \
             head_dim {head_dim} non-zero"
        )));
    }
    if window == Some(0) {
        return Err(KernelError::InvalidShape(
            "attention: window of 0 positions".into(),
        ));
    }
    let qn = n_tokens * n_head * head_dim;
    for (what, len) in [("attention: q", q.len()), ("attention: out", out.len())] {
        if len != qn {
            return Err(KernelError::Length {
                what,
                expected: qn,
                actual: len,
            });
        }
    }
    let kv_stride = n_kv_head * head_dim;
    let kv_need = (pos0 + n_tokens) * kv_stride;
    for (what, len) in [
        ("attention: k_cache (at least)", k_cache.len()),
        ("attention: v_cache (at least)", v_cache.len()),
    ] {
        if len < kv_need {
            return Err(KernelError::Length {
                what,
                expected: kv_need,
                actual: len,
            });
        }
    }
    if n_tokens == 0 {
        return Ok(());
    }
    // SAFETY: `half::f16` is `#[repr(transparent)]` over `u16`.
    let k: &[u16] = unsafe { std::slice::from_raw_parts(k_cache.as_ptr().cast(), kv_need) };
    // SAFETY: as above.
    let v: &[u16] = unsafe { std::slice::from_raw_parts(v_cache.as_ptr().cast(), kv_need) };
    let g = Geom {
        head_dim,
        kv_stride,
        scale,
    };
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar && crate::isa::runnable(isa) {
        attention_simd(
            isa, plan, pool, q, n_tokens, n_head, n_kv_head, g, k, v, pos0, window, out,
        );
        return Ok(());
    }
    let _ = plan;
    let group = n_head / n_kv_head;
    pool.for_each_chunk_mut(out, head_dim, |idx, o| {
        let (t, h) = (idx / n_head, idx % n_head);
        let p = pos0 + t;
        let j1 = p + 1;
        let j0 = window.map_or(0, |w| j1.saturating_sub(w));
        let kv_off = (h / group) * head_dim;
        let qr = &q[idx * head_dim..(idx + 1) * head_dim];
        attend_scalar(g, qr, &k[kv_off..], &v[kv_off..], j0, j1, o);
    });
    Ok(())
}

/// Causal attention of `n_tokens` new queries over the KV cache.
///
/// * `q`, `out`: `[n_tokens][n_head][head_dim]`.
/// * `k_cache`, `v_cache`: `[positions][n_kv_head][head_dim]` f16, holding at least positions
///   `0..pos0 + n_tokens` (the current tokens already written).
/// * Query `t` sits at position `p = pos0 + t` and attends to keys `j <= p`; with
///   `window = Some(w)` only to those with `p - j < w` (llama.cpp's standard sliding window).
/// * Head `h` reads kv head `h / (n_head / n_kv_head)` (grouped-query attention).
/// * Scores are `scale · q·k`, softmax in f32 with the running maximum subtracted.
///
/// Parallel over (token, head) pairs on `pool`. Errors on inconsistent shapes.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    k_cache: &[f16],
    v_cache: &[f16],
    pos0: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_isa(
        Isa::current(),
        pool,
        q,
        n_tokens,
        n_head,
        n_kv_head,
        head_dim,
        k_cache,
        v_cache,
        pos0,
        window,
        scale,
        out,
    )
}
