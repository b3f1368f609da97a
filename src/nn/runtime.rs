//! Process-level settings that make CPU training loops fast: the allocator and the thread pool.

/// Keeps memory freed by one training step for the next instead of returning it to the OS.
///
/// A training step allocates and frees tens of megabytes of activations and gradients. glibc's
/// malloc gives the top of its heap back to the kernel once more than its trim threshold (128 KiB
/// to 64 MiB, adjusted as it goes) is free there, so every step faulted all those pages in again:
/// on the MNIST CNN that was 20 s of system time per epoch, more than half of the total. This
/// sets fixed thresholds (trim at 1 GiB, `mmap` only above 32 MiB) for the whole process. The
/// layers of this module call it themselves the first time one of them runs (before, the 1 MiB
/// packing buffers that every matrix product allocated raised glibc's adaptive thresholds as a
/// side effect); call it first thing to cover allocations made before that. Does nothing on other
/// C libraries.
///
/// It also keeps every thread on the main arena. A training loop runs on a thread of a rayon pool
/// ([`in_thread_pool`]), and glibc gives such a thread an arena of its own whose heaps (64 MiB
/// each) it unmaps as soon as one is empty, whatever the trim threshold: a GAN step that needed a
/// second heap mapped and faulted it in again every step (100 steps took 22 s instead of 13).
/// Threads that allocated before the first call keep the arena they have, so [`in_thread_pool`]
/// calls this before it starts its threads.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters; the values are in range.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Free bytes at the top of the heap before malloc returns them to the OS.
const TRIM_THRESHOLD: i32 = 1 << 30;
/// Allocations at least this large get their own `mmap` (glibc's largest allowed value).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// The settings of [`keep_freed_memory`] as a `GLIBC_TUNABLES` value, for another process (the
/// PyTorch benchmarks run with it, so that both sides use the same allocator settings).
pub const GLIBC_TUNABLES: &str =
    "glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432:glibc.malloc.arena_max=1";

/// Runs `f` inside a new rayon pool of `threads` threads (rayon's default when `None`), so the
/// calling code runs on one of the pool's threads; applies [`keep_freed_memory`] first.
///
/// Called from outside a pool, every parallel operation sends its work to the pool's threads and
/// puts the caller to sleep until they finish; between operations the pool's threads spin while
/// the caller runs the serial parts, three busy threads on two cores. Inside the pool the thread
/// that runs the training loop takes part in each parallel operation itself.
pub fn in_thread_pool<R: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> R + Send,
) -> Result<R, rayon::ThreadPoolBuildError> {
    keep_freed_memory();
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        builder = builder.num_threads(n);
    }
    Ok(builder.build()?.install(f))
}

/// The CPU's model name from `/proc/cpuinfo` ("unknown" where there is none), for benchmark reports.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l[l.find(':').map_or(0, |i| i + 1)..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs `f` on this thread while the pool's other threads stay awake: each polls the pool for
/// work (`rayon::yield_now`) until `f` returns, instead of going to sleep in the kernel after a
/// few microseconds without work and being woken (a wake-up, tens of microseconds on a virtual
/// machine) by the next parallel operation. OpenMP runtimes (PyTorch's threads) spin the same way
/// between parallel regions. For loops of many short parallel operations with serial parts
/// between them (a training step); the other threads use their CPUs fully meanwhile. Call it from
/// a thread of the pool ([`in_thread_pool`]); elsewhere, or on a pool of one thread, it just runs
/// `f`.
pub fn with_threads_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(me) = rayon::current_thread_index() else {
        return f();
    };
    let others = rayon::current_num_threads().saturating_sub(1);
    if others == 0 {
        return f();
    }
    let done = AtomicBool::new(false);
    /// Tells the pollers to stop when `f` returns or unwinds.
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    rayon::scope(|s| {
        for _ in 0..others {
            s.spawn(|_| {
                // A poller picked up by this thread itself (while it waited for other work)
                // would keep it from ever returning to `f`: it leaves at once.
                if rayon::current_thread_index() == Some(me) {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        let _done = Done(&done);
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::with_threads_awake;
    use rayon::prelude::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    #[test]
    fn parallel_work_inside_gives_the_same_result_on_any_pool() {
        let sum = || (0..100_000u64).into_par_iter().map(|i| i * i).sum::<u64>();
        let expected: u64 = (0..100_000u64).map(|i| i * i).sum();
        // Outside a pool, on one thread, on two, nested, and many times in a row.
        assert_eq!(with_threads_awake(sum), expected);
        for threads in [1, 2, 3] {
            pool(threads).install(|| {
                for _ in 0..50 {
                    assert_eq!(with_threads_awake(sum), expected);
                }
                assert_eq!(with_threads_awake(|| with_threads_awake(sum) + with_threads_awake(sum)), 2 * expected);
            });
        }
    }

    #[test]
    fn a_panic_inside_reaches_the_caller_and_releases_the_threads() {
        pool(2).install(|| {
            let caught = std::panic::catch_unwind(|| with_threads_awake(|| panic!("inside")));
            assert!(caught.is_err());
            // The pool still works: its other thread stopped polling.
            assert_eq!(rayon::join(|| 1, || 2), (1, 2));
            assert_eq!(with_threads_awake(|| 7), 7);
        });
    }
}
