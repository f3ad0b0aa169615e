//! A persistent thread pool for kernels: cheap dispatch of many small parallel jobs.
//!
//! Decoding one token runs hundreds of small operations, so a dispatch must cost about a
//! microsecond: the workers are started once, spin briefly after each job waiting for the
//! next, then park; dispatching allocates nothing and spawns nothing. The calling thread
//! takes part as thread 0.
//!
//! # How a job borrows the caller's stack (safety reasoning)
//! A dispatch erases the lifetime of `&f` to publish it to the workers. That is sound because
//! the dispatch does not return (nor unwind) while any worker may still call or read `f`:
//! * every job has a *gate*: an atomic word holding the job's id, a `closed` bit and the
//!   number of workers that entered. The dispatcher writes the job pointer and opens a new
//!   gate, then publishes both with the `epoch` increment (`SeqCst`, so also a release);
//! * a worker that observes a new epoch (`Acquire`) enters the gate with a compare-exchange,
//!   and only if the gate is open and carries a job id it has not entered yet. Only after
//!   entering does it read the job pointer and call it; then it increments `done`
//!   (`Release`) and never touches that job again;
//! * the dispatcher, after its own share, waits until `done` equals the number of workers
//!   that entered: for [`ThreadPool::run`] that is all of them (the gate stays open until
//!   they have), for the dynamic helpers it closes the gate first (`fetch_or`, which also
//!   returns how many entered), so a worker that was descheduled and arrives late simply
//!   skips the job instead of delaying the caller;
//! * the job pointer is rewritten only after that wait (`Acquire` on `done`), under a mutex
//!   that serialises dispatchers, so no worker reads it concurrently with a write;
//! * panics: the dispatcher's own share is run under `catch_unwind`, the wait completes, then
//!   the panic resumes; a worker's panic is caught in the worker, counted, and re-raised on the
//!   calling thread after the wait.
//!
//! # Nesting
//! A job must not wait on the pool it runs in. Rather than deadlock, a call to `run` (or any
//! helper, or any kernel taking a pool) from inside a job of *any* pool runs inline on the
//! calling thread with `n_threads == 1`. Jobs must therefore split work by the `n_threads`
//! argument they are given, never by [`ThreadPool::n_threads`].
//!
//! # Parking protocol
//! A worker busy-waits for `PAUSE_SPIN`, then keeps checking but calls `yield_now` between
//! checks (so an idle worker does not keep a runnable thread off its core), and once the spin
//! time has passed without a new epoch it sets its `sleeping` flag
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

/// Gate layout: low 23 bits count entered workers, bit 23 is `closed`, the rest the job id.
const GATE_COUNT: u64 = (1 << 23) - 1;
const GATE_CLOSED: u64 = 1 << 23;
const GATE_ID_SHIFT: u32 = 24;

/// How long an idle worker spins before parking, unless configured.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// The first part of the spin time that is a pure busy-wait; for the rest the worker yields
/// its core between checks of the epoch.
const PAUSE_SPIN: Duration = Duration::from_micros(20);

thread_local! {
    /// True on pool workers and on a thread currently dispatching a job.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

struct Shared {
    /// The current job, lifetime-erased; see the module docs for the protocol.
    job: UnsafeCell<Option<*const Job>>,
    /// Incremented to publish each job (and the shutdown request).
    epoch: AtomicU64,
    /// The current job's gate: `id << GATE_ID_SHIFT | closed | entered`.
    gate: AtomicU64,
    /// Workers that entered the current job and finished it.
    done: AtomicUsize,
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
        let n_threads = n_threads.clamp(1, GATE_COUNT as usize);
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            epoch: AtomicU64::new(0),
            gate: AtomicU64::new(GATE_CLOSED),
            done: AtomicUsize::new(0),
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
        self.dispatch(&f, true);
    }

    /// Publishes `f` to the workers, runs `f(0, n)` here and waits as described in the module
    /// docs. With `all`, every worker runs `f`; otherwise workers that have not started by the
    /// time the caller's share is done are skipped.
    fn dispatch(&self, f: &(dyn Fn(usize, usize) + Sync + '_), all: bool) {
        let _serial = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let _in_job = InJob::enter();
        let sh = &*self.shared;
        let job: *const (dyn Fn(usize, usize) + Sync + '_) = f;
        // SAFETY: only the lifetime is changed. Workers dereference the pointer only after
        // entering this job's gate, and we wait below for every worker that entered to
        // finish before returning, so `f` outlives every use (module docs).
        let job: *const Job = unsafe { std::mem::transmute(job) };
        // SAFETY: no worker reads `job` now: every worker that entered the previous gate has
        // finished (we waited under the same mutex), the previous gate is closed, and the new
        // one is not published before the epoch bump below.
        unsafe { *sh.job.get() = Some(job) };
        // Ids are 40 bits and never 0 (a worker's "entered nothing yet" value).
        let id = ((sh.gate.load(Ordering::Relaxed) >> GATE_ID_SHIFT) + 1) & ((1 << 40) - 1);
        let id = id.max(1);
        sh.gate.store(id << GATE_ID_SHIFT, Ordering::Relaxed);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        for (w, sleeping) in sh.sleeping.iter().enumerate() {
            if sleeping.swap(false, Ordering::SeqCst) {
                self.workers[w].thread().unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, sh.n_threads)));
        let entered = if all {
            let n = self.workers.len();
            self.wait_done(n);
            sh.gate.fetch_or(GATE_CLOSED, Ordering::AcqRel);
            n
        } else {
            let g = sh.gate.fetch_or(GATE_CLOSED, Ordering::AcqRel);
            let n = (g & GATE_COUNT) as usize;
            self.wait_done(n);
            n
        };
        debug_assert_eq!(sh.done.load(Ordering::Relaxed), entered);
        sh.done.store(0, Ordering::Relaxed);
        // SAFETY: every worker that entered has finished (done == entered, Acquire) and the
        // gate is closed, so none will read the pointer again.
        unsafe { *sh.job.get() = None };
        if let Err(payload) = mine {
            sh.panicked.store(false, Ordering::Relaxed);
            resume_unwind(payload);
        }
        if sh.panicked.swap(false, Ordering::Relaxed) {
            panic!("kernels::ThreadPool: a job panicked on a worker thread");
        }
    }

    /// Waits until `n` workers have finished the current job.
    fn wait_done(&self, n: usize) {
        let mut spins = 0u32;
        while self.shared.done.load(Ordering::Acquire) != n {
            if spins < 20_000 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                thread::yield_now();
            }
        }
    }

    /// Splits `0..n_items` into chunks of `chunk` items (the last may be shorter) and calls
    /// `f(range)` once per chunk, the chunks taken dynamically by the pool's threads (`chunk`
    /// 0 is treated as 1). Workers that have not woken up by the time the caller runs out of
    /// chunks are not waited for, so a descheduled worker delays nothing on a busy machine.
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
        let job = |_: usize, _: usize| loop {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= n_chunks {
                break;
            }
            f(c * chunk..((c + 1) * chunk).min(n_items));
        };
        // Workers that arrive after the caller ran out of chunks are not waited for.
        self.dispatch(&job, false);
    }

    /// Calls `f(range)` over consecutive ranges covering `0..n_items`, taken dynamically by
    /// the pool's threads with guided self-scheduling: each take is a thread's share of what
    /// is left (`left / n_threads`, at least `min_chunk`), so the first ranges are long, which
    /// keeps each thread streaming through contiguous memory, and the last ones short, which
    /// evens out the finish when a thread runs late. Late workers are not waited for, as in
    /// [`ThreadPool::for_each_chunk`].
    pub fn for_each_guided<F>(&self, n_items: usize, min_chunk: usize, f: F)
    where
        F: Fn(Range<usize>) + Sync,
    {
        let min_chunk = min_chunk.max(1);
        if n_items <= min_chunk || self.workers.is_empty() || IN_JOB.with(Cell::get) {
            if n_items > 0 {
                f(0..n_items);
            }
            return;
        }
        let share = self.n_threads();
        let next = AtomicUsize::new(0);
        let job = |_: usize, _: usize| {
            let mut start = next.load(Ordering::Relaxed);
            loop {
                if start >= n_items {
                    break;
                }
                let take = ((n_items - start) / share)
                    .max(min_chunk)
                    .min(n_items - start);
                match next.compare_exchange_weak(
                    start,
                    start + take,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        f(start..start + take);
                        start = next.load(Ordering::Relaxed);
                    }
                    Err(now) => start = now,
                }
            }
        };
        self.dispatch(&job, false);
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
    let mut last_job = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                break e;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let idle = start.elapsed();
            if idle < sh.spin {
                // Busy-wait only briefly; then offer the core to any other runnable thread
                // between checks (on a machine with as many threads as cores, the caller's
                // own serial work or a neighbour), still re-checking as soon as we run again.
                if idle >= PAUSE_SPIN.min(sh.spin) {
                    thread::yield_now();
                }
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
        // Enter the current job's gate, unless it is closed or already entered.
        let mut g = sh.gate.load(Ordering::Acquire);
        let entered = loop {
            let id = g >> GATE_ID_SHIFT;
            if id == last_job || g & GATE_CLOSED != 0 {
                break false;
            }
            match sh
                .gate
                .compare_exchange_weak(g, g + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    last_job = id;
                    break true;
                }
                Err(now) => g = now,
            }
        };
        if !entered {
            continue;
        }
        // SAFETY: we entered an open gate, so the dispatcher has published this job and will
        // not let it die or overwrite the pointer before we increment `done` (module docs).
        let job = unsafe { *sh.job.get() };
        if let Some(job) = job {
            // SAFETY: as above, the closure is alive until we increment `done`.
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| job(w + 1, sh.n_threads))).is_err() {
                sh.panicked.store(true, Ordering::Relaxed);
            }
        }
        sh.done.fetch_add(1, Ordering::Release);
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
        assert!(
            start <= self.len && len <= self.len - start,
            "SyncSlice out of bounds"
        );
        // SAFETY: in bounds (checked above) of a live `&'a mut [T]`; disjointness is the
        // caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
