use crate::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn many_tiny_jobs() {
    for n in [1, 2, 3, 5] {
        let pool = ThreadPool::new(n);
        assert_eq!(pool.n_threads(), n);
        let hits = AtomicUsize::new(0);
        for round in 0..5_000usize {
            let seen = AtomicUsize::new(0);
            pool.run(|i, nt| {
                assert_eq!(nt, n);
                assert!(i < nt);
                seen.fetch_or(1 << i, Ordering::Relaxed);
                hits.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(seen.load(Ordering::Relaxed), (1 << n) - 1, "round {round}");
        }
        assert_eq!(hits.load(Ordering::Relaxed), 5_000 * n);
    }
}

#[test]
fn parks_and_wakes() {
    // Zero spin: workers park after every job, exercising the wake-up path.
    let pool = ThreadPool::try_new(3, Duration::ZERO).unwrap();
    let total = AtomicUsize::new(0);
    for k in 0..2000 {
        pool.run(|_, _| {
            total.fetch_add(1, Ordering::Relaxed);
        });
        if k % 100 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(total.load(Ordering::Relaxed), 6000);
}

#[test]
fn chunks_cover_exactly_once() {
    let pool = ThreadPool::new(4);
    for (n, chunk) in [(0, 3), (1, 1), (10, 3), (1000, 7), (1000, 1000), (5, 0)] {
        let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        pool.for_each_chunk(n, chunk, |r| {
            assert!(r.len() <= chunk.max(1) && !r.is_empty());
            for i in r {
                counts[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }
    let mut data = vec![0usize; 1001];
    pool.for_each_chunk_mut(&mut data, 10, |c, s| {
        for (k, v) in s.iter_mut().enumerate() {
            *v += c * 10 + k;
        }
    });
    assert!(data.iter().enumerate().all(|(i, &v)| v == i));
}

/// Guided ranges cover every item exactly once, start long (a thread's share of the whole)
/// and never go below the minimum except for the very end; a job run from inside a job
/// (nested) gets everything in one range.
#[test]
fn guided_ranges_cover_exactly_once() {
    for threads in [1, 2, 3] {
        let pool = ThreadPool::new(threads);
        for (n, min) in [
            (0, 1),
            (1, 1),
            (2, 1),
            (18, 1),
            (1536, 1),
            (1000, 7),
            (5, 0),
            (5, 9),
        ] {
            let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            let longest = AtomicUsize::new(0);
            let ranges = std::sync::Mutex::new(Vec::new());
            pool.for_each_guided(n, min, |r| {
                assert!(!r.is_empty() && r.end <= n, "{r:?} of {n}");
                longest.fetch_max(r.len(), Ordering::Relaxed);
                ranges.lock().unwrap().push(r.clone());
                for i in r {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(
                counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                "{threads} threads, {n} items"
            );
            if n > min.max(1) {
                assert!(longest.load(Ordering::Relaxed) >= n / threads, "{n} items");
                let short = ranges
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|r| r.len() < min.max(1) && r.end != n)
                    .count();
                assert_eq!(short, 0, "only the last range may be shorter than {min}");
            }
        }
    }
    let outer = ThreadPool::new(2);
    let inner = ThreadPool::new(2);
    outer.run(|_, _| {
        let calls = AtomicUsize::new(0);
        inner.for_each_guided(100, 1, |r| {
            assert_eq!(r, 0..100);
            calls.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn borrows_stack_data() {
    let pool = ThreadPool::new(3);
    let input: Vec<u64> = (0..10_000).collect();
    let sums: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
    pool.run(|i, n| {
        let per = input.len().div_ceil(n);
        let s: u64 = input[(i * per).min(input.len())..((i + 1) * per).min(input.len())]
            .iter()
            .sum();
        sums[i].store(s as usize, Ordering::Relaxed);
    });
    let total: usize = sums.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    assert_eq!(total, 10_000 * 9_999 / 2);
}

#[test]
fn nested_calls_run_inline() {
    let pool = ThreadPool::new(3);
    let inner_calls = AtomicUsize::new(0);
    pool.run(|_, _| {
        pool.run(|i, n| {
            assert_eq!((i, n), (0, 1));
            inner_calls.fetch_add(1, Ordering::Relaxed);
        });
        // Kernels that take a pool also work from inside a job.
        let mut v = vec![0u8; 100];
        pool.for_each_chunk_mut(&mut v, 7, |_, s| s.fill(1));
        assert!(v.iter().all(|&b| b == 1));
    });
    assert_eq!(inner_calls.load(Ordering::Relaxed), 3);
}

#[test]
fn panics_propagate_and_pool_survives() {
    let pool = ThreadPool::new(3);
    for victim in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(|i, _| {
                if i == victim {
                    panic!("boom {i}");
                }
            })
        }));
        assert!(r.is_err());
        let c = AtomicUsize::new(0);
        pool.run(|_, _| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(c.load(Ordering::Relaxed), 3);
    }
}

#[test]
fn concurrent_callers_are_serialised() {
    let pool = ThreadPool::new(3);
    let total = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    pool.run(|_, n| {
                        assert_eq!(n, 3);
                        total.fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed), 4 * 500 * 3);
}

#[test]
fn drop_joins() {
    for _ in 0..50 {
        let pool = ThreadPool::new(4);
        pool.run(|_, _| {});
        drop(pool);
    }
    // Dropping a pool that never ran a job, and one whose workers are parked.
    drop(ThreadPool::new(3));
    let p = ThreadPool::try_new(3, Duration::ZERO).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    drop(p);
}

/// Alternating required (`run`) and optional (`for_each_chunk`) jobs, with parked workers that
/// often arrive late to optional jobs: every `run` still reaches every thread, every chunk is
/// done exactly once.
#[test]
fn mixed_required_and_optional_jobs() {
    let pool = ThreadPool::try_new(3, Duration::ZERO).unwrap();
    for round in 0..3000usize {
        let seen = AtomicUsize::new(0);
        pool.run(|i, _| {
            seen.fetch_or(1 << i, Ordering::Relaxed);
        });
        assert_eq!(seen.load(Ordering::Relaxed), 7, "round {round}");
        let n = round % 13;
        let sum = AtomicUsize::new(0);
        pool.for_each_chunk(n, 1, |r| {
            for i in r {
                sum.fetch_add(i + 1, Ordering::Relaxed);
            }
        });
        assert_eq!(sum.load(Ordering::Relaxed), n * (n + 1) / 2);
    }
}

#[test]
fn panic_in_chunk_propagates() {
    let pool = ThreadPool::new(3);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.for_each_chunk(100, 1, |r| {
            if r.start == 57 {
                panic!("chunk 57");
            }
        })
    }));
    assert!(r.is_err());
    let c = AtomicUsize::new(0);
    pool.for_each_chunk(10, 1, |_| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(c.load(Ordering::Relaxed), 10);
}
