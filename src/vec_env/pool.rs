//! A tiny pool of persistent threads that runs one indexed job at a time, with the calling thread.
//!
//! [`Pool::run`]`(n, task)` calls `task(k)` exactly once for every `k` in `0..n`, spread over the
//! calling thread and the pool's threads, and returns once every call has finished. Each thread has
//! a home range of indices (the same one every job, so the environments it steps stay in its core's
//! cache) and, once that is done, claims indices left in the others' ranges, so a thread that is
//! late (asleep, or descheduled on a busy machine) simply gets fewer of them; the calling thread
//! never waits for a thread that has not started on the job: it closes the job and waits only for
//! threads inside it.
//!
//! One job is one hand-off per thread (never one per index), and threads between jobs first wait
//! actively, then sleep, so that back-to-back jobs do not pay a wake-up call each.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a thread waits actively for a job (or for a job to finish) before it sleeps.
///
/// Consecutive batch steps usually come within microseconds of each other, while waking a sleeping
/// thread costs several (tens on a virtual machine): waiting actively this long keeps small batches
/// from paying that per step, and a thread left idle (during a long network update, say) soon stops
/// using the CPU.
const ACTIVE_WAIT: Duration = Duration::from_micros(50);
/// Of [`ACTIVE_WAIT`], the part spent spinning; after it the waiter yields its core between checks,
/// so that on a busy machine it does not hold up the very thread it waits for.
const SPIN_WAIT: Duration = Duration::from_micros(2);

/// Threads that help the calling thread run jobs.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// State shared by the caller and the pool's threads.
struct Shared {
    job: Mutex<Job>,
    /// Bumped (under the `job` lock) for each new job and for shutdown; read without the lock to wait.
    epoch: AtomicU64,
    /// Per participant (0 = the calling thread, i = helper i): the next index to claim in its home range.
    next: Vec<Padded>,
    /// Pool threads inside the current job. Incremented only under the `job` lock while the job is open.
    active: AtomicUsize,
}

/// The job slot.
#[derive(Default)]
struct Job {
    /// The current job's task while it is open to threads; `None` once the caller has closed it.
    task: Option<TaskRef>,
    /// Number of task indices.
    n: usize,
    /// The thread that runs the job, to wake when the last helper leaves.
    caller: Option<Thread>,
    shutdown: bool,
}

/// A task with its lifetime erased; see [`Pool::run`] for why that is sound.
#[derive(Clone, Copy)]
struct TaskRef(*const (dyn Fn(usize) + Sync + 'static));

// SAFETY: the pointee is `Sync`, so calling it from several threads is allowed; the pointer is only
// dereferenced while `Pool::run` keeps the task alive (see there).
unsafe impl Send for TaskRef {}

impl Pool {
    /// A pool of `threads` helper threads (0 runs every job on the calling thread alone).
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            job: Mutex::new(Job::default()),
            epoch: AtomicU64::new(0),
            next: (0..=threads).map(|_| Padded(AtomicUsize::new(0))).collect(),
            active: AtomicUsize::new(0),
        });
        let mut pool = Self { shared, threads: Vec::with_capacity(threads) };
        for i in 0..threads {
            let shared = pool.shared.clone();
            // On failure, `pool` is dropped here, which stops the threads already started.
            let thread =
                std::thread::Builder::new().name(format!("vec-env-{}", i + 1)).spawn(move || helper(&shared, i + 1))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Number of threads running jobs, the calling thread included.
    pub(crate) fn threads(&self) -> usize {
        self.threads.len() + 1
    }

    /// Calls `task(k)` exactly once for each `k` in `0..n`, on this thread and the pool's threads,
    /// and returns when all calls have returned.
    ///
    /// `task` should not panic; if it does, the panic is caught (on a pool thread) or resumed after
    /// the other threads have left the job (on the calling thread).
    pub(crate) fn run(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        if self.threads.is_empty() || n <= 1 {
            (0..n).for_each(task);
            return;
        }
        let shared = &*self.shared;
        {
            let mut job = lock(&shared.job);
            // SAFETY (lifetime erasure): the pointer is stored in the job slot and copied by helpers
            // only while the job is open. The `CloseOnDrop` guard below (dropped on return and on
            // unwinding) closes the job and then waits until no helper is inside it, so no call
            // through the pointer can start or still be running once `run` has returned: the
            // pointer is only used while `task` is alive.
            let erased = unsafe {
                std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(task)
            };
            job.task = Some(TaskRef(erased));
            job.n = n;
            job.caller = Some(std::thread::current());
            for (p, next) in shared.next.iter().enumerate() {
                next.0.store(home_start(p, n, shared.next.len()), Ordering::Relaxed);
            }
            shared.epoch.fetch_add(1, Ordering::Release);
        }
        for thread in &self.threads {
            thread.thread().unpark();
        }
        let guard = CloseOnDrop(shared);
        claim_all(shared, n, task, 0);
        drop(guard);
    }
}

/// Closes the current job and waits for the helpers inside it, even when the caller unwinds.
struct CloseOnDrop<'a>(&'a Shared);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        lock(&shared.job).task = None;
        // No helper can enter now; those inside leave once every index is claimed and their last
        // task has returned.
        wait_until(|| shared.active.load(Ordering::Acquire) == 0);
    }
}

/// An atomic counter alone on its cache line(s), so the threads' counters do not share one.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// First index of participant `p`'s home range when `n` indices are split over `participants`.
fn home_start(p: usize, n: usize, participants: usize) -> usize {
    p * n / participants
}

/// Runs tasks while unclaimed indices remain: participant `me`'s home range first, then the others'.
fn claim_all(shared: &Shared, n: usize, task: &(dyn Fn(usize) + Sync), me: usize) {
    let participants = shared.next.len();
    for offset in 0..participants {
        let p = (me + offset) % participants;
        let end = home_start(p + 1, n, participants);
        loop {
            let k = shared.next[p].0.fetch_add(1, Ordering::Relaxed);
            if k >= end {
                break;
            }
            task(k);
        }
    }
}

/// The loop of helper thread `me` (participant `me` of the job; the calling thread is 0).
fn helper(shared: &Shared, me: usize) {
    let mut seen = 0;
    loop {
        wait_until(|| shared.epoch.load(Ordering::Acquire) != seen);
        let (task, n, caller) = {
            let job = lock(&shared.job);
            seen = shared.epoch.load(Ordering::Acquire);
            if job.shutdown {
                return;
            }
            match job.task {
                // The caller has finished and closed this job already.
                None => continue,
                Some(task) => {
                    shared.active.fetch_add(1, Ordering::Relaxed);
                    (task, job.n, job.caller.clone())
                }
            }
        };
        // SAFETY: this helper is counted in `active`, so `run` has not returned and the task lives.
        let task = unsafe { &*task.0 };
        // A task is meant to catch its own panics; one that escapes must still not kill this thread
        // while it is counted in `active`, or the caller would wait forever.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| claim_all(shared, n, task, me)));
        if shared.active.fetch_sub(1, Ordering::Release) == 1 {
            if let Some(caller) = caller {
                caller.unpark();
            }
        }
    }
}

/// Waits for `ready()`: spins, then yields, then sleeps (woken by `unpark`, rechecking each time).
fn wait_until(ready: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        for _ in 0..32 {
            if ready() {
                return;
            }
            std::hint::spin_loop();
        }
        let waited = start.elapsed();
        if waited > ACTIVE_WAIT {
            break;
        }
        if waited > SPIN_WAIT {
            std::thread::yield_now();
        }
    }
    while !ready() {
        // Whoever makes `ready()` true unparks this thread afterwards, and a pending unpark makes
        // `park` return at once, so no wake-up is lost; spurious returns just recheck.
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// Locks the job slot; it holds no invariant a panic could break, so poisoning is ignored.
fn lock(job: &Mutex<Job>) -> MutexGuard<'_, Job> {
    job.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Pool {
    /// Tells the helpers to stop and joins them (they are between jobs: `run` has returned).
    fn drop(&mut self) {
        {
            let mut job = lock(&self.shared.job);
            job.shutdown = true;
            self.shared.epoch.fetch_add(1, Ordering::Release);
        }
        for thread in &self.threads {
            thread.thread().unpark();
        }
        for thread in self.threads.drain(..) {
            // Helpers catch task panics, so a join error would be a bug here; a drop must not panic.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_index_runs_exactly_once() {
        for threads in 0..4 {
            let pool = Pool::new(threads).unwrap();
            for n in [0, 1, 2, 7, 100] {
                for _ in 0..50 {
                    let counts: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                    pool.run(n, &|k| {
                        counts[k].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "threads {threads}, n {n}");
                }
            }
        }
    }

    #[test]
    fn drop_joins_the_helpers() {
        let pool = Pool::new(3).unwrap();
        pool.run(10, &|_| {});
        let shared = pool.shared.clone();
        drop(pool);
        // Each helper holds a clone until its thread function returns.
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    #[test]
    fn helpers_share_the_work_and_sleepers_are_woken() {
        let pool = Pool::new(1).unwrap();
        let helper_ran = AtomicU32::new(0);
        let caller = std::thread::current().id();
        // Let the helper fall asleep first, then give it a job long enough to join.
        std::thread::sleep(Duration::from_millis(20));
        pool.run(64, &|_| {
            if std::thread::current().id() != caller {
                helper_ran.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(1));
        });
        assert!(helper_ran.load(Ordering::Relaxed) > 0);
    }
}
