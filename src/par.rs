//! The CPU kernels' thread pool: the calling thread plus `threads() - 1` workers.
//!
//! Built for many small jobs (a decode step is ~200 matrix–vector products of 10–100 µs each),
//! where a general work-stealing pool loses: rayon's caller blocks on a latch while a sleeping
//! worker is woken, and a caller outside the pool never works itself. Here:
//! - the caller is a member: it publishes a job and then claims tasks like any worker;
//! - workers spin for a short while ([`SPIN`]) after a job before they sleep on a condvar, so
//!   the jobs of one decode step reach running threads, and a sleeping pool is woken once;
//! - a job is an index range `0..tasks`; threads claim indices from one atomic word that also
//!   carries the job's epoch, so a late worker can never run a task of a finished job;
//! - a job of one task, a pool of one thread, a nested call (from inside a task) and a second
//!   caller while the pool is busy run inline on the calling thread.
//!
//! Natively the workers are `std::thread`s started on first use (count: [`set_threads`], else the
//! machine's available parallelism). In the threaded wasm build the workers are Web Workers that
//! JavaScript starts and that enter [`worker_main`] (`src/wasm_threads.rs`); in the plain wasm
//! build there are none and every job runs inline.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, TryLockError};

/// Claim attempts a worker spins through waiting for the next job before it sleeps
/// (about 100–300 µs: longer than the gaps between a decode step's jobs).
const SPIN: u32 = 1 << 16;

/// Most tasks in one job (the claim word holds 16-bit indices).
pub const MAX_TASKS: usize = u16::MAX as usize;

type Task<'a> = dyn Fn(usize) + Sync + 'a;

/// The state shared by the caller and the workers of one pool.
struct Shared {
    /// `epoch << 32 | tasks << 16 | next`: the current job, its task count and the next
    /// unclaimed index. A claim is a compare-exchange of `next` under an unchanged epoch.
    claim: AtomicU64,
    /// The current job: a pointer to the caller's `&Task` (valid while a task of the job's
    /// epoch is unfinished, which a successful claim guarantees).
    job: AtomicPtr<()>,
    /// Tasks of the current job that have finished.
    done: AtomicUsize,
    /// A task panicked (native: reported to the caller, which panics in turn).
    panicked: AtomicBool,
    /// Workers asleep on `wake`; the caller notifies only when there are some.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// Workers that have joined the pool.
    workers: AtomicUsize,
    quit: AtomicBool,
    /// Held by the one caller whose job is running; others run inline.
    busy: Mutex<()>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            claim: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            workers: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            busy: Mutex::new(()),
        }
    }

    /// Claim and run tasks of the job of `epoch` until none is left.
    fn work(&self, epoch: u32) {
        loop {
            let cur = self.claim.load(Acquire);
            let (e, tasks, next) = unpack(cur);
            if e != epoch || next >= tasks {
                return;
            }
            if self.claim.compare_exchange_weak(cur, cur + 1, AcqRel, Relaxed).is_err() {
                continue;
            }
            // SAFETY: the claim succeeded under `epoch`, so the job of `epoch` has an
            // unfinished task (this one) and its caller is still waiting: the pointer it
            // published before the epoch is live.
            let f = unsafe { &**(self.job.load(Acquire) as *const &Task) };
            run_task(f, next as usize, &self.panicked);
            self.done.fetch_add(1, Release);
        }
    }

    /// A worker's loop: wait for a new epoch (spinning, then asleep), work, repeat.
    fn worker_loop(&self) {
        IN_POOL.with(|c| c.set(true));
        let mut seen = unpack(self.claim.load(Acquire)).0;
        loop {
            let mut spins = 0u32;
            let epoch = loop {
                if self.quit.load(Acquire) {
                    return;
                }
                let e = unpack(self.claim.load(Acquire)).0;
                if e != seen {
                    break e;
                }
                if spins < SPIN {
                    spins += 1;
                    std::hint::spin_loop();
                    continue;
                }
                let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.sleepers.fetch_add(1, SeqCst);
                while unpack(self.claim.load(SeqCst)).0 == seen && !self.quit.load(SeqCst) {
                    g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                self.sleepers.fetch_sub(1, SeqCst);
                spins = 0;
            };
            seen = epoch;
            self.work(epoch);
        }
    }

    /// Run `f(0..tasks)` on this thread and the workers; returns when every task is done.
    fn run(&self, tasks: usize, f: &Task) {
        let fref: &Task = f;
        let ptr = &fref as *const &Task as *mut ();
        self.job.store(ptr, Release);
        self.done.store(0, Relaxed);
        let epoch = unpack(self.claim.load(Relaxed)).0.wrapping_add(1);
        self.claim.store(pack(epoch, tasks as u64, 0), SeqCst);
        if self.sleepers.load(SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
        self.work(epoch);
        let mut spins = 0u32;
        while self.done.load(Acquire) < tasks {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if self.panicked.swap(false, AcqRel) {
            panic!("a task of the thread pool panicked");
        }
    }
}

fn pack(epoch: u32, tasks: u64, next: u64) -> u64 {
    (epoch as u64) << 32 | tasks << 16 | next
}

fn unpack(v: u64) -> (u32, u64, u64) {
    ((v >> 32) as u32, (v >> 16) & 0xffff, v & 0xffff)
}

#[cfg(not(target_arch = "wasm32"))]
fn run_task(f: &Task, i: usize, panicked: &AtomicBool) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_err() {
        panicked.store(true, Release);
    }
}

#[cfg(target_arch = "wasm32")]
fn run_task(f: &Task, i: usize, _panicked: &AtomicBool) {
    f(i) // panics abort in wasm
}

thread_local! {
    /// This thread is a pool worker or is running a job (nested jobs run inline).
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

/// The pool: its shared state and (natively) the worker threads it started.
struct Pool {
    shared: Arc<Shared>,
    #[cfg(not(target_arch = "wasm32"))]
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        #[cfg(not(target_arch = "wasm32"))]
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

static POOL: Mutex<Option<Arc<Pool>>> = Mutex::new(None);
/// Threads asked for with [`set_threads`] (0: not set).
static WANTED: AtomicUsize = AtomicUsize::new(0);

/// Threads that run a job: the caller plus the pool's workers (1 without workers).
pub fn threads() -> usize {
    match POOL.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(p) => 1 + p.shared.workers.load(Acquire),
        None => default_threads(),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn default_threads() -> usize {
    match WANTED.load(Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

#[cfg(target_arch = "wasm32")]
fn default_threads() -> usize {
    1
}

/// Use `n` threads (the caller and `n - 1` workers) from now on. Natively the workers are
/// (re)started here; in wasm this is [`init_external`]'s job.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_threads(n: usize) {
    let n = n.max(1);
    WANTED.store(n, Relaxed);
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_some_and(|p| 1 + p.shared.workers.load(Acquire) == n) {
        return;
    }
    *slot = None; // joins the old workers
    *slot = Some(Arc::new(spawn_pool(n)));
}

#[cfg(not(target_arch = "wasm32"))]
fn spawn_pool(n: usize) -> Pool {
    let shared = Arc::new(Shared::new());
    let handles = (1..n)
        .map(|i| {
            let s = shared.clone();
            s.workers.fetch_add(1, AcqRel);
            std::thread::Builder::new()
                .name(format!("webvlm-cpu-{i}"))
                .spawn(move || s.worker_loop())
                .expect("spawn a CPU worker thread")
        })
        .collect();
    Pool { shared, handles }
}

/// The pool, started with the default size on first use (natively).
fn pool() -> Option<Arc<Pool>> {
    #[cfg_attr(target_arch = "wasm32", allow(unused_mut))]
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(not(target_arch = "wasm32"))]
    if slot.is_none() && default_threads() > 1 {
        *slot = Some(Arc::new(spawn_pool(default_threads())));
    }
    slot.clone()
}

/// Create the pool whose workers JavaScript starts (threaded wasm build): each enters
/// [`worker_main`]. `workers` is how many will (the engine's thread makes one more).
#[cfg(target_arch = "wasm32")]
pub fn init_external(workers: usize) {
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        WANTED.store(workers + 1, Relaxed);
        *slot = Some(Arc::new(Pool { shared: Arc::new(Shared::new()) }));
    }
}

/// A worker's whole life in the threaded wasm build: join the pool made by [`init_external`]
/// and work until it is dropped. Returns at once when there is no pool.
#[cfg(target_arch = "wasm32")]
pub fn worker_main() {
    let Some(p) = POOL.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
    p.shared.workers.fetch_add(1, AcqRel);
    p.shared.worker_loop();
}

/// Run `f(i)` for every `i` in `0..tasks`, spread over the pool; returns when all are done.
/// Inline when `tasks <= 1`, without workers, inside a task, or while another caller's job runs.
pub fn for_each(tasks: usize, f: impl Fn(usize) + Sync) {
    if tasks == 0 {
        return;
    }
    let inline = |f: &dyn Fn(usize)| (0..tasks).for_each(f);
    if tasks == 1 || tasks > MAX_TASKS || IN_POOL.with(Cell::get) {
        return inline(&f);
    }
    let Some(p) = pool() else { return inline(&f) };
    if p.shared.workers.load(Acquire) == 0 {
        return inline(&f);
    }
    let _busy = match p.shared.busy.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return inline(&f),
    };
    IN_POOL.with(|c| c.set(true));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_POOL.with(|c| c.set(false));
        }
    }
    let _reset = Reset;
    p.shared.run(tasks, &f);
}

/// A raw pointer that tasks may share: they write disjoint parts of what it points to.
struct SyncPtr<T>(*mut T);
// SAFETY: only used by `chunks_mut`, whose tasks touch disjoint ranges.
unsafe impl<T: Send> Sync for SyncPtr<T> {}
unsafe impl<T: Send> Send for SyncPtr<T> {}

/// `out.chunks_mut(chunk)` with `f(index, chunk)` run for each over the pool.
pub fn chunks_mut<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk = chunk.max(1);
    let len = out.len();
    let tasks = len.div_ceil(chunk);
    if tasks > MAX_TASKS {
        return out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
    let base = SyncPtr(out.as_mut_ptr());
    for_each(tasks, |i| {
        let start = i * chunk;
        let end = (start + chunk).min(len);
        let p = &base;
        // SAFETY: task `i` alone touches `out[start..end]`, inside `out`, while `out` is
        // mutably borrowed by this call.
        let c = unsafe { std::slice::from_raw_parts_mut(p.0.add(start), end - start) };
        f(i, c);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once() {
        for n in [1usize, 2, 7, 33, 577] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for_each(n, |i| {
                hits[i].fetch_add(1, Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "{n} tasks");
        }
    }

    #[test]
    fn chunks_cover_the_slice() {
        let mut v = vec![0usize; 1000];
        chunks_mut(&mut v, 33, |i, c| c.iter_mut().enumerate().for_each(|(j, x)| *x = i * 33 + j));
        assert!(v.iter().enumerate().all(|(i, &x)| i == x));
    }

    #[test]
    fn nested_and_concurrent_jobs_finish() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..200 {
                        for_each(4, |_| {
                            for_each(3, |_| {
                                total.fetch_add(1, Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Relaxed), 3 * 200 * 12);
    }
}
