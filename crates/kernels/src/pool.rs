//! A persistent thread pool for kernels: cheap dispatch of many small parallel jobs.
//!
//! Decoding one token runs hundreds of small operations, so a dispatch must cost about a
//! microsecond: the workers are started once, spin briefly after each job waiting for the
//! next, then park; dispatching allocates nothing and spawns nothing. The calling thread
//! takes part as thread 0.
//!
//! # How a job borrows the caller's stack (safety reasoning)
//! [`ThreadPool::run`] erases the lifetime of `&f` to publish it to the workers. That is sound
//! because `run` does not return (nor unwind) before every worker has finished calling `f`:
//! * the job pointer is written only by the dispatching thread, while no worker reads it
//!   (all workers have finished the previous job: `pending` was observed 0 with `Acquire`);
//! * it is published by the `epoch` increment (`SeqCst`, so also a release); a worker reads
//!   it only after observing the new epoch (`Acquire`), calls it, then decrements `pending`
//!   (`Release`) and never touches it again;
//! * the dispatcher waits for `pending == 0` even when its own share panics (the panic is
//!   caught, the wait completes, then the panic resumes); a worker's panic is caught in the
//!   worker, counted, and re-raised on the calling thread after the wait;
//! * only one dispatch is in flight per pool (a mutex serialises callers on other threads).
//!
//! # Nesting
//! A job must not wait on the pool it runs in. Rather than deadlock, a call to `run` (or any
//! helper, or any kernel taking a pool) from inside a job of *any* pool runs inline on the
//! calling thread with `n_threads == 1`. Jobs must therefore split work by the `n_threads`
//! argument they are given, never by [`ThreadPool::n_threads`].
//!
//! # Parking protocol
//! A worker that spun for the spin time without a new epoch sets its `sleeping` flag
//! (`SeqCst`), re-checks the epoch (`SeqCst`) and parks. The dispatcher bumps the epoch
//! (`SeqCst`) and then unparks every worker whose flag it swaps from true (`SeqCst`). By the
//! total order of `SeqCst` operations either the worker sees the new epoch, or the dispatcher
//! sees the flag and unparks (an unpark before the park makes the park return at once).
//! Spurious wake-ups just loop.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The job type workers see: `f(thread_idx, n_threads)`.
type Job = dyn Fn(usize, usize) + Sync;

/// How long an idle worker spins before parking, unless configured.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

thread_local! {
    /// True on pool workers and on a thread currently dispatching a job.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

struct Shared {
    /// The current job, lifetime-erased; see the module docs for the protocol.
    job: UnsafeCell<Option<*const Job>>,
    /// Incremented to publish each job (and the shutdown request).
    epoch: AtomicU64,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// Set before the final epoch bump in `Drop`.
    shutdown: AtomicBool,
    /// A worker's job panicked during the current dispatch.
    panicked: AtomicBool,
    /// Per worker: parked or about to park.
    sleeping: Vec<AtomicBool>,
    /// Spin time before parking.
    spin: Duration,
    /// Total threads including the caller.
    n_threads: usize,
}

// SAFETY: `job` is the only field that is not `Sync` by itself; it is written only by the one
// dispatching thread while no worker reads it, per the protocol in the module docs. The
// pointee is `Sync`, so calling it from several threads at once is allowed.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// A fixed set of worker threads that run borrowed closures in parallel with the caller.
///
/// Dropping the pool stops and joins the workers.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    dispatch: Mutex<()>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.shared.n_threads)
            .finish()
    }
}

struct InJob(bool);
impl InJob {
    fn enter() -> InJob {
        InJob(IN_JOB.with(|c| c.replace(true)))
    }
}
impl Drop for InJob {
    fn drop(&mut self) {
        IN_JOB.with(|c| c.set(self.0));
    }
}

impl ThreadPool {
    /// A pool of `n_threads` threads in total: the caller plus `n_threads - 1` workers
    /// (`0` is treated as `1`). Panics if a thread cannot be spawned; see [`ThreadPool::try_new`].
    pub fn new(n_threads: usize) -> ThreadPool {
        ThreadPool::try_new(n_threads, DEFAULT_SPIN).expect("kernels: cannot spawn pool threads")
    }

    /// A pool with one thread per available CPU.
    pub fn with_available_parallelism() -> ThreadPool {
        ThreadPool::new(thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Like [`ThreadPool::new`], with the idle spin time given, returning spawn errors.
    pub fn try_new(n_threads: usize, spin: Duration) -> std::io::Result<ThreadPool> {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            epoch: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleeping: (1..n_threads).map(|_| AtomicBool::new(false)).collect(),
            spin,
            n_threads,
        });
        let mut pool = ThreadPool {
            shared: shared.clone(),
            workers: Vec::with_capacity(n_threads - 1),
            dispatch: Mutex::new(()),
        };
        for w in 0..n_threads - 1 {
            let shared = shared.clone();
            let handle = thread::Builder::new()
                .name(format!("freehold-kernel-{}", w + 1))
                .spawn(move || worker_loop(&shared, w))?;
            // On error, `pool` drops here and joins the workers already started.
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Threads that take part in a job, the caller included.
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Calls `f(thread_idx, n_threads)` once for every `thread_idx` in `0..n_threads`, in
    /// parallel (index 0 on the calling thread), and returns when all calls have returned.
    ///
    /// `n_threads` is normally [`ThreadPool::n_threads`], but is 1 when called from inside a
    /// job (see the module docs on nesting). A panic in any call is re-raised here after all
    /// calls have finished.
    pub fn run<F>(&self, f: F)
    where
        F: Fn(usize, usize) + Sync,
    {
        if self.workers.is_empty() || IN_JOB.with(Cell::get) {
            f(0, 1);
            return;
        }
        let _serial = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let _in_job = InJob::enter();
        let sh = &*self.shared;
        let job: &(dyn Fn(usize, usize) + Sync + '_) = &f;
        let job: *const (dyn Fn(usize, usize) + Sync + '_) = job;
        // SAFETY: only the lifetime is changed. The pointer is dereferenced by workers only
        // before they decrement `pending`, and we wait for `pending == 0` below before `f`
        // can go out of scope (module docs).
        let job: *const Job = unsafe { std::mem::transmute(job) };
        // SAFETY: no worker reads `job` now: all finished the previous dispatch (we waited for
        // `pending == 0` under the same mutex) and none reads before the epoch bump below.
        unsafe { *sh.job.get() = Some(job) };
        sh.pending.store(self.workers.len(), Ordering::Relaxed);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        for (w, sleeping) in sh.sleeping.iter().enumerate() {
            if sleeping.swap(false, Ordering::SeqCst) {
                self.workers[w].thread().unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, sh.n_threads)));
        let mut spins = 0u32;
        while sh.pending.load(Ordering::Acquire) != 0 {
            if spins < 20_000 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                thread::yield_now();
            }
        }
        // SAFETY: every worker has finished with the job (pending == 0, Acquire).
        unsafe { *sh.job.get() = None };
        if let Err(payload) = mine {
            sh.panicked.store(false, Ordering::Relaxed);
            resume_unwind(payload);
        }
        if sh.panicked.swap(false, Ordering::Relaxed) {
            panic!("kernels::ThreadPool: a job panicked on a worker thread");
        }
    }

    /// Splits `0..n_items` into chunks of `chunk` items (the last may be shorter) and calls
    /// `f(range)` once per chunk, the chunks taken dynamically by the pool's threads.
    pub fn for_each_chunk<F>(&self, n_items: usize, chunk: usize, f: F)
    where
        F: Fn(Range<usize>) + Sync,
    {
        let chunk = chunk.max(1);
        let n_chunks = n_items.div_ceil(chunk);
        if n_chunks <= 1 || self.workers.is_empty() || IN_JOB.with(Cell::get) {
            for c in 0..n_chunks {
                f(c * chunk..((c + 1) * chunk).min(n_items));
            }
            return;
        }
        let next = AtomicUsize::new(0);
        self.run(|_, _| loop {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= n_chunks {
                break;
            }
            f(c * chunk..((c + 1) * chunk).min(n_items));
        });
    }

    /// Splits `data` into consecutive chunks of `chunk_len` (the last may be shorter) and calls
    /// `f(chunk_index, chunk)` once per chunk, in parallel. `chunk_len` 0 is treated as 1.
    pub fn for_each_chunk_mut<T, F>(&self, data: &mut [T], chunk_len: usize, f: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        let chunk_len = chunk_len.max(1);
        let n = data.len();
        let ptr = SyncSlice::new(data);
        self.for_each_chunk(n.div_ceil(chunk_len), 1, |chunks| {
            for c in chunks {
                let start = c * chunk_len;
                let len = chunk_len.min(n - start);
                // SAFETY: each chunk index is handed out exactly once, so the ranges
                // `start..start + len` of different calls are disjoint and in bounds.
                f(c, unsafe { ptr.slice_mut(start, len) });
            }
        });
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.shutdown.store(true, Ordering::SeqCst);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        for w in &self.workers {
            w.thread().unpark();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker_loop(sh: &Shared, w: usize) {
    IN_JOB.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                break e;
            }
            spins = spins.wrapping_add(1);
            if spins % 64 != 0 || start.elapsed() < sh.spin {
                std::hint::spin_loop();
                continue;
            }
            sh.sleeping[w].store(true, Ordering::SeqCst);
            if sh.epoch.load(Ordering::SeqCst) == seen {
                thread::park();
            }
            sh.sleeping[w].store(false, Ordering::SeqCst);
        };
        seen = epoch;
        if sh.shutdown.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the epoch changed (Acquire), so the dispatcher has published a job and
        // will not touch it or let it die before we decrement `pending` (module docs).
        let job = unsafe { *sh.job.get() };
        if let Some(job) = job {
            // SAFETY: as above, the closure is alive until we decrement `pending`.
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| job(w + 1, sh.n_threads))).is_err() {
                sh.panicked.store(true, Ordering::Relaxed);
            }
        }
        sh.pending.fetch_sub(1, Ordering::Release);
    }
}

/// A `&mut [T]` that several pool threads may carve disjoint sub-slices from.
pub(crate) struct SyncSlice<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: it only hands out `&mut [T]` to disjoint ranges (the caller's obligation in
// `slice_mut`), which is the same as sending parts of a `&mut [T]` to other threads.
unsafe impl<T: Send> Sync for SyncSlice<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SyncSlice<'_, T> {}

impl<'a, T> SyncSlice<'a, T> {
    pub(crate) fn new(s: &'a mut [T]) -> Self {
        SyncSlice {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _borrow: PhantomData,
        }
    }

    /// `&mut data[start..start + len]`; panics if out of bounds.
    ///
    /// # Safety
    /// No two slices obtained from this value and alive at the same time may overlap.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start <= self.len && len <= self.len - start, "SyncSlice out of bounds");
        // SAFETY: in bounds (checked above) of a live `&'a mut [T]`; disjointness is the
        // caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
