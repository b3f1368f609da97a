//! A contiguous run of envs and the rows of the output buffers it writes.

use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};

use crate::env::{Env, EnvError, EpisodeStats, Observation};

/// The output buffers of a whole batch, one row per env.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    pub obs: Vec<f32>,
    pub final_obs: Vec<f32>,
    pub rewards: Vec<f32>,
    pub terminated: Vec<bool>,
    pub truncated: Vec<bool>,
}

impl Buffers {
    /// Zeroed buffers for `n` envs with observations of `dim` values.
    pub fn new(n: usize, dim: usize) -> Self {
        Self {
            obs: vec![0.0; n * dim],
            final_obs: vec![0.0; n * dim],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
        }
    }
}

/// One chunk's rows of the output buffers.
pub(crate) struct Rows<'a> {
    pub obs: &'a mut [f32],
    pub final_obs: &'a mut [f32],
    pub rewards: &'a mut [f32],
    pub terminated: &'a mut [bool],
    pub truncated: &'a mut [bool],
}

/// A contiguous run of envs with their episode accounting and the outcome of the last call.
pub(crate) struct Chunk<E> {
    /// Index of the first env in the whole batch.
    pub start: usize,
    pub envs: Vec<E>,
    /// Return so far of each env's current episode.
    pub returns: Vec<f64>,
    /// Length so far of each env's current episode.
    pub lengths: Vec<usize>,
    /// Episodes that ended in the last step (batch-wide env index).
    pub episodes: Vec<(usize, EpisodeStats)>,
    /// The outcome of the last reset or step.
    pub result: Result<(), EnvError>,
    /// Local index of the env being run, to name it when it panics.
    current: usize,
}

impl<E: Env> Chunk<E> {
    /// The envs `start..start + envs.len()` of a batch.
    pub fn new(start: usize, envs: Vec<E>) -> Self {
        let n = envs.len();
        Self {
            start,
            envs,
            returns: vec![0.0; n],
            lengths: vec![0; n],
            // At most one episode per env ends in a step, so this never grows.
            episodes: Vec::with_capacity(n),
            result: Ok(()),
            current: 0,
        }
    }

    /// Resets every env (env i of the batch with `seed + i`) and writes the first observations.
    pub fn reset(&mut self, seed: Option<u64>, out: Rows<'_>) {
        self.result = self.guarded(|c| c.reset_all(seed, out));
    }

    /// Steps env j with `actions[j]`, resetting those whose episode ended.
    pub fn step(&mut self, actions: &[E::Act], out: Rows<'_>) {
        self.result = self.guarded(|c| c.step_all(actions, out));
    }

    fn reset_all(&mut self, seed: Option<u64>, out: Rows<'_>) -> Result<(), EnvError> {
        let dim = E::Obs::DIM;
        self.episodes.clear();
        for (j, env) in self.envs.iter_mut().enumerate() {
            self.current = j;
            let index = self.start + j;
            let (obs, _) = env.reset(seed.map(|s| s.wrapping_add(index as u64))).map_err(|e| at_env(index, e))?;
            obs.write_to(&mut out.obs[j * dim..(j + 1) * dim]);
            obs.write_to(&mut out.final_obs[j * dim..(j + 1) * dim]);
            out.rewards[j] = 0.0;
            out.terminated[j] = false;
            out.truncated[j] = false;
            self.returns[j] = 0.0;
            self.lengths[j] = 0;
        }
        Ok(())
    }

    #[inline]
    fn step_all(&mut self, actions: &[E::Act], out: Rows<'_>) -> Result<(), EnvError> {
        let dim = E::Obs::DIM;
        self.episodes.clear();
        let n = self.envs.len();
        // Equal lengths up front let the compiler drop the bounds checks in the loop.
        let (rewards, terminated, truncated) =
            (&mut out.rewards[..n], &mut out.terminated[..n], &mut out.truncated[..n]);
        let (returns, lengths, actions) = (&mut self.returns[..n], &mut self.lengths[..n], &actions[..n]);
        let rows = out.obs.chunks_exact_mut(dim).zip(out.final_obs.chunks_exact_mut(dim));
        for (j, (env, (obs_row, final_row))) in self.envs.iter_mut().zip(rows).enumerate() {
            self.current = j;
            let step = match env.step(&actions[j]) {
                Ok(step) => step,
                Err(e) => return Err(at_env(self.start + j, e)),
            };
            step.obs.write_to(final_row);
            rewards[j] = step.reward as f32;
            terminated[j] = step.terminated;
            truncated[j] = step.truncated;
            returns[j] += step.reward;
            lengths[j] += 1;
            if step.terminated || step.truncated {
                self.episodes.push((self.start + j, EpisodeStats { ret: returns[j], len: lengths[j] }));
                returns[j] = 0.0;
                lengths[j] = 0;
                let (first, _) = env.reset(None).map_err(|e| at_env(self.start + j, e))?;
                first.write_to(obs_row);
            } else {
                obs_row.copy_from_slice(final_row);
            }
        }
        Ok(())
    }

    /// Runs `work`, turning a panic into [`EnvError::Panicked`] naming the env that panicked.
    fn guarded(&mut self, work: impl FnOnce(&mut Self) -> Result<(), EnvError>) -> Result<(), EnvError> {
        // A panic may leave the chunk half-updated; the VecEnv is then poisoned for good, so
        // nothing observes that state again.
        match panic::catch_unwind(AssertUnwindSafe(|| work(self))) {
            Ok(result) => result,
            Err(payload) => {
                Err(EnvError::Panicked { index: self.start + self.current, message: panic_message(&*payload) })
            }
        }
    }
}

/// Prefixes an env's error with its index in the batch.
pub(crate) fn at_env(index: usize, e: EnvError) -> EnvError {
    match e {
        EnvError::InvalidAction(m) => EnvError::InvalidAction(format!("env {index}: {m}")),
        EnvError::NeedsReset(m) => EnvError::NeedsReset(format!("env {index}: {m}")),
        EnvError::Other(m) => EnvError::Other(format!("env {index}: {m}")),
        EnvError::Unsupported(m) => EnvError::Unsupported(format!("env {index}: {m}")),
        EnvError::BadState(m) => EnvError::BadState(format!("env {index}: {m}")),
        EnvError::Panicked { message, .. } => EnvError::Panicked { index, message },
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Base pointers of a batch's output buffers, from which each task takes its own rows.
///
/// A pool task only gets `&self` (the task is shared by threads), yet each writes its chunk's rows:
/// these raw pointers carry that access. See [`RawRows::rows`] for the rules that keep it sound.
pub(crate) struct RawRows<'a> {
    obs: *mut f32,
    final_obs: *mut f32,
    rewards: *mut f32,
    terminated: *mut bool,
    truncated: *mut bool,
    envs: usize,
    dim: usize,
    /// Keeps the buffers borrowed exclusively while the pointers are in use.
    _bufs: PhantomData<&'a mut Buffers>,
}

// SAFETY: `RawRows` only hands out `&mut` rows through `rows`, whose contract makes every row
// range used by at most one thread at a time; the pointees (`f32`, `bool`) are `Send`.
unsafe impl Sync for RawRows<'_> {}

impl<'a> RawRows<'a> {
    /// Borrows `bufs` exclusively, for as long as the `RawRows` lives, as raw pointers.
    pub fn new(bufs: &'a mut Buffers, dim: usize) -> Self {
        Self {
            obs: bufs.obs.as_mut_ptr(),
            final_obs: bufs.final_obs.as_mut_ptr(),
            rewards: bufs.rewards.as_mut_ptr(),
            terminated: bufs.terminated.as_mut_ptr(),
            truncated: bufs.truncated.as_mut_ptr(),
            envs: bufs.rewards.len(),
            dim,
            _bufs: PhantomData,
        }
    }

    /// The rows of envs `start..start + len`.
    ///
    /// # Safety
    /// No two live `Rows` may overlap: each chunk's range must be taken by one task at a time.
    /// (The borrow of the buffers themselves is held by `self`.)
    pub unsafe fn rows(&self, start: usize, len: usize) -> Rows<'a> {
        assert!(start + len <= self.envs, "rows {start}..{} out of {} envs", start + len, self.envs);
        use std::slice::from_raw_parts_mut as slice;
        let d = self.dim;
        Rows {
            obs: slice(self.obs.add(start * d), len * d),
            final_obs: slice(self.final_obs.add(start * d), len * d),
            rewards: slice(self.rewards.add(start), len),
            terminated: slice(self.terminated.add(start), len),
            truncated: slice(self.truncated.add(start), len),
        }
    }
}
