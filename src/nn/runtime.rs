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
