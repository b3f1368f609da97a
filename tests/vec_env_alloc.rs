//! A VecEnv step allocates nothing.
//!
//! Its own test binary without libtest's harness (`harness = false` in Cargo.toml): it installs a
//! counting allocator, and no other test or harness thread may allocate while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use glimpse::vec_env::VecEnv;
use glimpse_envs::cartpole_v1;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LAST_SIZE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LAST_SIZE.store(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    for workers in [1, 2, 3] {
        let n = 64;
        let mut venv = VecEnv::new((0..n).map(|_| cartpole_v1()).collect(), workers).unwrap();
        // Let the worker threads start (a starting thread may allocate) before counting.
        std::thread::sleep(std::time::Duration::from_millis(100));
        venv.reset(Some(0)).unwrap();
        let mut actions = vec![0usize; n];
        let mut episodes = 0;
        // Warm up (threads start, thread-locals settle), then count.
        for _ in 0..100 {
            venv.step(&actions).unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for t in 0..2000 {
            for (i, a) in actions.iter_mut().enumerate() {
                *a = (i * 7 + t * 3) % 5 % 2;
            }
            episodes += venv.step(&actions).unwrap().episodes.len();
        }
        let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert!(episodes > 500, "too few auto-resets to test: {episodes}");
        assert_eq!(
            allocations,
            0,
            "{workers} workers: {allocations} allocations in 2000 steps (the last of {} bytes)",
            LAST_SIZE.load(Ordering::SeqCst)
        );
        println!("{workers} workers: 2000 steps, {episodes} auto-resets, no allocation");
    }
}
