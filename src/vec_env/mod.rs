//! [`VecEnv`]: N environments stepped as one batch on worker threads.
//!
//! # Layout and threads
//! The environments are split into contiguous chunks (about 8 per worker). `workers` threads step
//! them: the calling thread and `workers - 1` spawned ones, so `workers = 1` runs everything on the
//! calling thread. A batch step is one hand-off per spawned thread (never one per env); each thread
//! steps the chunks of its own share first (the same share every step, so those envs stay in its
//! core's cache), then claims chunks left in the others' shares, so a thread that is slow to start
//! (on a busy machine) takes fewer chunks instead of holding up the batch. Every chunk writes its rows straight
//! into one contiguous, row-major `[N × obs_dim]` `f32` buffer: [`VecEnv::observations`] becomes a
//! dfdx tensor with a single copy ([`VecEnv::obs_tensor`], or [`VecEnv::copy_obs_into`] without
//! allocating). For cheap envs such as CartPole a hand-off costs about as much as stepping a few
//! dozen envs, so small batches run fastest on 1 worker (see `examples/env_throughput.rs`).
//!
//! # Auto-reset
//! [`VecEnv::step`] resets an environment whose episode ended in the same call:
//! - `obs` row i is the first observation of env i's *next* episode;
//! - `final_obs` row i is the observation the step reached, i.e. the last observation of the
//!   finished episode (bootstrap from it after a truncation). Where the episode did not end it equals
//!   `obs` row i, so `final_obs` is always the true "next observation" of the transition;
//! - `rewards`, `terminated` and `truncated` describe the step that was taken;
//! - `episodes` lists `(env index, return and length)` of the episodes that ended, by env index.
//!
//! # Seeds and determinism
//! `reset(Some(seed))` resets env i with `seed + i`; auto-resets call `reset(None)`, which continues
//! each env's own random stream. No state is shared between envs, so the same seed and actions give
//! bit-identical results whatever the number of workers.
//!
//! # Saving and restoring
//! [`VecEnv::save_state`] captures every env's [`Env::save_state`], the running episode returns and
//! lengths and the current observations; [`VecEnv::restore_state`] on a `VecEnv` built the same way
//! continues bit-identically (an agent's checkpoint uses this for an exact resume).
//!
//! # Failures
//! - An env that panics gives [`EnvError::Panicked`] with its index; the `VecEnv` is then poisoned
//!   and every later call returns that error. Dropping it still joins its threads promptly.
//! - A wrong number of actions is rejected before anything is stepped.
//! - An error from an env (an invalid action, say) is returned with the env's index. The other envs
//!   of the batch may have stepped already, so the batch must be [`reset`](VecEnv::reset) before the
//!   next step (which otherwise returns [`EnvError::NeedsReset`]).
//!
//! ```
//! use glimpse::vec_env::VecEnv;
//! use glimpse::{BoxSpace, Discrete, Env, EnvError, Info, Space, Step};
//!
//! /// Counts up; terminates after 3 steps.
//! struct Count(u32);
//! impl Env for Count {
//!     type Obs = [f32; 1];
//!     type Act = usize;
//!     fn observation_space(&self) -> Space { BoxSpace::new(vec![0.0], vec![3.0]).into() }
//!     fn action_space(&self) -> Space { Discrete::new(1).into() }
//!     fn reset(&mut self, _: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
//!         self.0 = 0;
//!         Ok(([0.0], Info::default()))
//!     }
//!     fn step(&mut self, _: &usize) -> Result<Step<[f32; 1]>, EnvError> {
//!         self.0 += 1;
//!         Ok(Step { obs: [self.0 as f32], reward: 1.0, terminated: self.0 == 3, truncated: false,
//!                   info: Info::default() })
//!     }
//! }
//!
//! let mut envs = VecEnv::new((0..4).map(|_| Count(0)).collect(), 2).unwrap();
//! envs.reset(Some(0)).unwrap();
//! envs.step(&[0; 4]).unwrap();
//! envs.step(&[0; 4]).unwrap();
//! let s = envs.step(&[0; 4]).unwrap();
//! assert_eq!(s.terminated, &[true; 4]);
//! assert_eq!(s.final_obs, &[3.0; 4]); // the last observation of each finished episode
//! assert_eq!(s.obs, &[0.0; 4]);       // already the first observation of the next one
//! assert_eq!(s.episodes.len(), 4);
//! assert_eq!(s.episodes[0].1.len, 3);
//! ```

mod chunk;
mod pool;

use std::sync::{Mutex, MutexGuard};

use dfdx::shapes::{Const, HasShape};
use dfdx::tensor::{CopySlice, Tensor, TensorFromVec};

use serde::{Deserialize, Serialize};

use crate::env::{Env, EnvError, EnvState, EpisodeStats, Observation};
use crate::spaces::Space;
use chunk::{at_env, Buffers, Chunk, RawRows};
use pool::Pool;

/// Chunks per worker: enough that threads finishing at different times even out the work, few
/// enough that claiming a chunk costs little next to stepping it.
const CHUNKS_PER_WORKER: usize = 8;

/// The result of one [`VecEnv::step`]; see the [module docs](self) for the auto-reset rules.
#[derive(Debug, Clone, Copy)]
pub struct VecStep<'a> {
    /// `[N × obs_dim]`; for an env whose episode ended, the first observation of the next episode.
    pub obs: &'a [f32],
    /// `[N]`: the reward of the step taken.
    pub rewards: &'a [f32],
    /// `[N]`: the step reached a terminal state (do not bootstrap).
    pub terminated: &'a [bool],
    /// `[N]`: the episode was cut short, e.g. by a time limit (bootstrap from `final_obs`).
    pub truncated: &'a [bool],
    /// `[N × obs_dim]`: the observation the step reached (the last one of an episode that ended).
    pub final_obs: &'a [f32],
    /// Episodes that ended in this step: `(env index, stats)`, sorted by env index.
    pub episodes: &'a [(usize, EpisodeStats)],
}

impl VecStep<'_> {
    /// `terminated[i] || truncated[i]`.
    pub fn done(&self, i: usize) -> bool {
        self.terminated[i] || self.truncated[i]
    }
}

/// A [`VecEnv`]'s complete state, from [`VecEnv::save_state`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VecEnvState {
    /// Each env's [`Env::save_state`], in env order.
    pub envs: Vec<EnvState>,
    /// Return so far of each env's current episode.
    pub returns: Vec<f64>,
    /// Length so far of each env's current episode.
    pub lengths: Vec<usize>,
    /// Current observations `[N × DIM]`, widened to f64 (exact in JSON).
    pub obs: Vec<f64>,
}

/// N environments stepped as a batch on worker threads, with contiguous output buffers.
pub struct VecEnv<E: Env> {
    /// Contiguous chunks in env order. Each is locked by the one task that runs it in a call,
    /// so the locks are never contended; they make sharing the chunks with the pool safe.
    chunks: Vec<Mutex<Chunk<E>>>,
    pool: Pool,
    num_envs: usize,
    obs_space: Space,
    act_space: Space,
    bufs: Buffers,
    /// Finished episodes of the last step.
    episodes: Vec<(usize, EpisodeStats)>,
    /// A step must be preceded by a reset (none yet, or a step failed half-way).
    needs_reset: bool,
    /// Set for good once an env panicked.
    poisoned: Option<EnvError>,
}

impl<E: Env + 'static> VecEnv<E> {
    /// N = `envs.len()` environments on `workers` threads (>= 1), the calling thread included.
    ///
    /// Asking for more workers than envs uses one worker per env.
    pub fn new(mut envs: Vec<E>, workers: usize) -> Result<Self, EnvError> {
        let num_envs = envs.len();
        if num_envs == 0 {
            return Err(EnvError::Other("VecEnv needs at least one environment, got 0".into()));
        }
        if workers == 0 {
            return Err(EnvError::Other("VecEnv needs at least one worker, got 0".into()));
        }
        let obs_space = envs[0].observation_space();
        let act_space = envs[0].action_space();
        if obs_space.flat_dim() != E::Obs::DIM {
            return Err(EnvError::Other(format!(
                "observation space has {} values but the observation type has DIM = {}",
                obs_space.flat_dim(),
                E::Obs::DIM
            )));
        }
        let workers = workers.min(num_envs);
        let num_chunks = if workers == 1 { 1 } else { num_envs.min(workers * CHUNKS_PER_WORKER) };
        let bounds: Vec<usize> = (0..=num_chunks).map(|k| k * num_envs / num_chunks).collect();
        // Split from the back so that each `split_off` leaves the earlier envs in place.
        let mut chunks = Vec::with_capacity(num_chunks);
        for k in (0..num_chunks).rev() {
            chunks.push(Mutex::new(Chunk::new(bounds[k], envs.split_off(bounds[k]))));
        }
        chunks.reverse();
        let pool =
            Pool::new(workers - 1).map_err(|e| EnvError::Other(format!("cannot spawn a VecEnv worker thread: {e}")))?;
        Ok(Self {
            chunks,
            pool,
            num_envs,
            obs_space,
            act_space,
            bufs: Buffers::new(num_envs, E::Obs::DIM),
            episodes: Vec::with_capacity(num_envs),
            needs_reset: true,
            poisoned: None,
        })
    }

    /// Number of environments N.
    pub fn num_envs(&self) -> usize {
        self.num_envs
    }

    /// Number of `f32` values in one observation, `<E::Obs as Observation>::DIM`.
    pub fn obs_dim(&self) -> usize {
        E::Obs::DIM
    }

    /// Number of threads stepping envs, the calling thread included.
    pub fn num_workers(&self) -> usize {
        self.pool.threads()
    }

    /// The observation space of one env (env 0's).
    pub fn observation_space(&self) -> &Space {
        &self.obs_space
    }

    /// The action space of one env (env 0's).
    pub fn action_space(&self) -> &Space {
        &self.act_space
    }

    /// Resets every env; env i is seeded with `seed + i` when seed is `Some`. Returns obs `[N × DIM]`.
    pub fn reset(&mut self, seed: Option<u64>) -> Result<&[f32], EnvError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        self.needs_reset = true;
        let rows = RawRows::new(&mut self.bufs, E::Obs::DIM);
        let chunks = &self.chunks;
        self.pool.run(chunks.len(), &|k| {
            let mut chunk = lock(&chunks[k]);
            let (start, len) = (chunk.start, chunk.envs.len());
            // SAFETY: the pool runs each k once per call and the chunks' ranges are disjoint.
            chunk.reset(seed, unsafe { rows.rows(start, len) });
        });
        self.collect()?;
        self.needs_reset = false;
        Ok(&self.bufs.obs)
    }

    /// Steps env i with `actions[i]`; envs whose episode ended are reset in the same call.
    pub fn step(&mut self, actions: &[E::Act]) -> Result<VecStep<'_>, EnvError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        if actions.len() != self.num_envs {
            return Err(EnvError::InvalidAction(format!(
                "expected {} actions (one per env), got {}",
                self.num_envs,
                actions.len()
            )));
        }
        if self.needs_reset {
            return Err(EnvError::NeedsReset(
                "VecEnv: call reset before the first step and after a step that failed".into(),
            ));
        }
        // Until the step succeeds the envs may be out of step with each other.
        self.needs_reset = true;
        let rows = RawRows::new(&mut self.bufs, E::Obs::DIM);
        let chunks = &self.chunks;
        self.pool.run(chunks.len(), &|k| {
            let mut chunk = lock(&chunks[k]);
            let (start, len) = (chunk.start, chunk.envs.len());
            // SAFETY: as in `reset`.
            chunk.step(&actions[start..start + len], unsafe { rows.rows(start, len) });
        });
        self.collect()?;
        self.needs_reset = false;
        let b = &self.bufs;
        Ok(VecStep {
            obs: &b.obs,
            rewards: &b.rewards,
            terminated: &b.terminated,
            truncated: &b.truncated,
            final_obs: &b.final_obs,
            episodes: &self.episodes,
        })
    }

    /// Gathers the chunks' episodes (in env order) and the error of the lowest env index, a panic
    /// first, so that what is reported does not depend on the number of workers.
    fn collect(&mut self) -> Result<(), EnvError> {
        self.episodes.clear();
        let mut error: Option<EnvError> = None;
        for chunk in &self.chunks {
            let chunk = lock(chunk);
            self.episodes.extend_from_slice(&chunk.episodes);
            if let Err(e) = &chunk.result {
                let panicked = |e: &Option<EnvError>| matches!(e, Some(EnvError::Panicked { .. }));
                if error.is_none() || (!panicked(&error) && matches!(e, EnvError::Panicked { .. })) {
                    error = Some(e.clone());
                }
            }
        }
        match error {
            None => Ok(()),
            Some(e) => {
                if matches!(e, EnvError::Panicked { .. }) {
                    self.poisoned = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Saves every env's state, the running episode statistics and the current observations.
    ///
    /// Fails with the first env's error when an env cannot save its state
    /// ([`EnvError::Unsupported`]), or when the batch needs a reset (nothing consistent to save).
    pub fn save_state(&self) -> Result<VecEnvState, EnvError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        if self.needs_reset {
            return Err(EnvError::NeedsReset("VecEnv: nothing to save before the first reset".into()));
        }
        let mut state = VecEnvState {
            envs: Vec::with_capacity(self.num_envs),
            returns: Vec::with_capacity(self.num_envs),
            lengths: Vec::with_capacity(self.num_envs),
            obs: self.bufs.obs.iter().map(|&x| x as f64).collect(),
        };
        for chunk in &self.chunks {
            let chunk = lock(chunk);
            for (j, env) in chunk.envs.iter().enumerate() {
                state.envs.push(env.save_state().map_err(|e| at_env(chunk.start + j, e))?);
            }
            state.returns.extend_from_slice(&chunk.returns);
            state.lengths.extend_from_slice(&chunk.lengths);
        }
        Ok(state)
    }

    /// Restores what [`save_state`](Self::save_state) wrote, in place of a [`reset`](Self::reset):
    /// the next [`step`](Self::step) continues the saved episodes. The number of envs and the
    /// observation size must match.
    pub fn restore_state(&mut self, state: &VecEnvState) -> Result<(), EnvError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let n = self.num_envs;
        let sizes = (state.envs.len(), state.returns.len(), state.lengths.len(), state.obs.len());
        if sizes != (n, n, n, n * E::Obs::DIM) {
            return Err(EnvError::BadState(format!(
                "VecEnv: the saved state has {} envs, {} returns, {} lengths and {} observation values; \
                 this VecEnv has {n} envs of {} values",
                sizes.0,
                sizes.1,
                sizes.2,
                sizes.3,
                E::Obs::DIM
            )));
        }
        self.needs_reset = true;
        for chunk in &self.chunks {
            let mut chunk = lock(chunk);
            let start = chunk.start;
            let len = chunk.envs.len();
            for (j, env) in chunk.envs.iter_mut().enumerate() {
                env.restore_state(&state.envs[start + j]).map_err(|e| at_env(start + j, e))?;
            }
            chunk.returns.copy_from_slice(&state.returns[start..start + len]);
            chunk.lengths.copy_from_slice(&state.lengths[start..start + len]);
        }
        for (dst, &x) in self.bufs.obs.iter_mut().zip(&state.obs) {
            *dst = x as f32;
        }
        self.bufs.final_obs.copy_from_slice(&self.bufs.obs);
        self.episodes.clear();
        self.needs_reset = false;
        Ok(())
    }

    /// Current observations `[N × DIM]`, row-major (env i in row i).
    pub fn observations(&self) -> &[f32] {
        &self.bufs.obs
    }

    /// Observations reached by the last step `[N × DIM]` (see [`VecStep::final_obs`]).
    pub fn final_observations(&self) -> &[f32] {
        &self.bufs.final_obs
    }

    /// The current observations as a `(N, DIM)` dfdx tensor: one copy, no per-env work.
    ///
    /// `DIM` must equal [`obs_dim`](Self::obs_dim). In a loop, [`copy_obs_into`](Self::copy_obs_into)
    /// reuses one tensor instead.
    pub fn obs_tensor<const DIM: usize, D: TensorFromVec<f32>>(
        &self,
        dev: &D,
    ) -> Result<Tensor<(usize, Const<DIM>), f32, D>, EnvError> {
        self.check_dim(DIM)?;
        dev.try_tensor_from_vec(self.bufs.obs.clone(), (self.num_envs, Const::<DIM>))
            .map_err(|e| EnvError::Other(format!("cannot build the observation tensor: {e:?}")))
    }

    /// Copies the current observations into an existing `(N, DIM)` tensor, without allocating.
    pub fn copy_obs_into<const DIM: usize, D: CopySlice<f32>>(
        &self,
        tensor: &mut Tensor<(usize, Const<DIM>), f32, D>,
    ) -> Result<(), EnvError> {
        self.check_dim(DIM)?;
        if tensor.shape().0 != self.num_envs {
            return Err(EnvError::Other(format!(
                "observation tensor has {} rows, expected {} (one per env)",
                tensor.shape().0,
                self.num_envs
            )));
        }
        tensor.copy_from(&self.bufs.obs);
        Ok(())
    }

    fn check_dim(&self, dim: usize) -> Result<(), EnvError> {
        if dim != E::Obs::DIM {
            return Err(EnvError::Other(format!("observation tensor has {dim} columns, expected {}", E::Obs::DIM)));
        }
        Ok(())
    }
}

/// Locks a chunk. A chunk's lock is never held across a panic (chunks catch their envs' panics),
/// and a poisoned `VecEnv` refuses further calls anyway, so poisoning is ignored.
fn lock<E>(chunk: &Mutex<Chunk<E>>) -> MutexGuard<'_, Chunk<E>> {
    chunk.lock().unwrap_or_else(|e| e.into_inner())
}
