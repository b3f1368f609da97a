//! [`VecEnv`]: N environments stepped as one batch on worker threads.
//!
//! # Layout
//! The environments are split into `workers` contiguous chunks of (almost) equal size. The calling
//! thread steps the first chunk itself and `workers - 1` threads step the others, so one batch step
//! costs one hand-off per spawned worker (never one per environment) and `workers = 1` runs everything
//! on the calling thread. Every worker writes its rows straight into one contiguous, row-major
//! `[N × obs_dim]` `f32` buffer: [`VecEnv::observations`] is ready to become a dfdx tensor with a
//! single copy ([`VecEnv::obs_tensor`], or [`VecEnv::copy_obs_into`] with no allocation at all).
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

use std::panic::{self, AssertUnwindSafe};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use dfdx::shapes::{Const, HasShape};
use dfdx::tensor::{CopySlice, Tensor, TensorFromVec};

use crate::env::{Env, EnvError, EpisodeStats, Observation};
use crate::spaces::Space;

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

/// N environments stepped as a batch on worker threads, with contiguous output buffers.
pub struct VecEnv<E: Env> {
    /// The chunk the calling thread steps itself (envs `0..own.envs.len()`).
    own: Chunk<E>,
    /// Spawned workers, one per further chunk, in env order.
    workers: Vec<Worker<E>>,
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

/// The output buffers, each with one row per env.
#[derive(Default)]
struct Buffers {
    obs: Vec<f32>,
    final_obs: Vec<f32>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
}

/// A contiguous run of envs with their episode accounting.
struct Chunk<E> {
    /// Index of the first env in the whole batch.
    start: usize,
    envs: Vec<E>,
    returns: Vec<f64>,
    lengths: Vec<usize>,
    /// Episodes that ended in the current step (global env index).
    episodes: Vec<(usize, EpisodeStats)>,
    /// Local index of the env being run, to name it when it panics.
    current: usize,
}

/// One chunk's rows of the output buffers.
struct ChunkBufs<'a> {
    obs: &'a mut [f32],
    final_obs: &'a mut [f32],
    rewards: &'a mut [f32],
    terminated: &'a mut [bool],
    truncated: &'a mut [bool],
}

impl<'a> ChunkBufs<'a> {
    /// Splits off the first `n` rows, leaving the rest in `self`.
    fn split_off_front(&mut self, n: usize, dim: usize) -> ChunkBufs<'a> {
        let (obs, obs_rest) = std::mem::take(&mut self.obs).split_at_mut(n * dim);
        let (final_obs, final_rest) = std::mem::take(&mut self.final_obs).split_at_mut(n * dim);
        let (rewards, rewards_rest) = std::mem::take(&mut self.rewards).split_at_mut(n);
        let (terminated, terminated_rest) = std::mem::take(&mut self.terminated).split_at_mut(n);
        let (truncated, truncated_rest) = std::mem::take(&mut self.truncated).split_at_mut(n);
        *self = ChunkBufs {
            obs: obs_rest,
            final_obs: final_rest,
            rewards: rewards_rest,
            terminated: terminated_rest,
            truncated: truncated_rest,
        };
        ChunkBufs { obs, final_obs, rewards, terminated, truncated }
    }
}

impl<E: Env> Chunk<E> {
    fn new(start: usize, envs: Vec<E>) -> Self {
        let n = envs.len();
        Self { start, envs, returns: vec![0.0; n], lengths: vec![0; n], episodes: Vec::new(), current: 0 }
    }

    /// Resets every env (env i of the batch with `seed + i`) and writes the first observations.
    fn reset(&mut self, seed: Option<u64>, out: ChunkBufs<'_>) -> Result<(), EnvError> {
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

    /// Steps env j with `actions[j]`, resetting those whose episode ended.
    #[inline]
    fn step(&mut self, actions: &[E::Act], out: ChunkBufs<'_>) -> Result<(), EnvError> {
        let dim = E::Obs::DIM;
        self.episodes.clear();
        let rows = out.obs.chunks_exact_mut(dim).zip(out.final_obs.chunks_exact_mut(dim));
        for (j, ((env, action), (obs_row, final_row))) in self.envs.iter_mut().zip(actions).zip(rows).enumerate() {
            self.current = j;
            let index = self.start + j;
            let step = env.step(action).map_err(|e| at_env(index, e))?;
            step.obs.write_to(final_row);
            out.rewards[j] = step.reward as f32;
            out.terminated[j] = step.terminated;
            out.truncated[j] = step.truncated;
            self.returns[j] += step.reward;
            self.lengths[j] += 1;
            if step.terminated || step.truncated {
                self.episodes.push((index, EpisodeStats { ret: self.returns[j], len: self.lengths[j] }));
                self.returns[j] = 0.0;
                self.lengths[j] = 0;
                let (first, _) = env.reset(None).map_err(|e| at_env(index, e))?;
                first.write_to(obs_row);
            } else {
                obs_row.copy_from_slice(final_row);
            }
        }
        Ok(())
    }

    /// Runs `work`, turning a panic into [`EnvError::Panicked`] naming the env that panicked.
    fn guarded(&mut self, work: impl FnOnce(&mut Self) -> Result<(), EnvError>) -> Result<(), EnvError> {
        // The chunk may be left half-updated by a panic; the VecEnv is poisoned for good then,
        // so nothing observes that state again.
        match panic::catch_unwind(AssertUnwindSafe(|| work(self))) {
            Ok(result) => result,
            Err(payload) => {
                Err(EnvError::Panicked { index: self.start + self.current, message: panic_message(&*payload) })
            }
        }
    }
}

/// Prefixes an env's error with its index in the batch.
fn at_env(index: usize, e: EnvError) -> EnvError {
    match e {
        EnvError::InvalidAction(m) => EnvError::InvalidAction(format!("env {index}: {m}")),
        EnvError::NeedsReset(m) => EnvError::NeedsReset(format!("env {index}: {m}")),
        EnvError::Other(m) => EnvError::Other(format!("env {index}: {m}")),
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

/// A chunk's rows of the output buffers (and of the actions), lent to a worker thread for one call.
///
/// It holds raw pointers because the rows live in the `VecEnv`'s buffers while a persistent worker
/// thread writes them: the lifetime cannot be expressed, so [`VecEnv`] upholds it by hand.
struct RawRows<A> {
    obs: *mut f32,
    final_obs: *mut f32,
    rewards: *mut f32,
    terminated: *mut bool,
    truncated: *mut bool,
    actions: *const A,
    /// Number of envs (rows).
    len: usize,
    dim: usize,
}

// SAFETY: a `RawRows` is only a loan of disjoint rows of buffers owned by the `VecEnv`, sent to one
// worker per call. The `VecEnv` neither reads, writes, moves nor frees those buffers until that
// worker has replied (or its reply channel is disconnected, which happens only once the worker thread
// has left its loop and dropped its loan). The actions are `&[A]` shared across threads, so `A: Sync`.
unsafe impl<A: Sync> Send for RawRows<A> {}

impl<A> RawRows<A> {
    /// Lends `out` (and `actions`, empty for a reset) to another thread.
    fn lend(out: ChunkBufs<'_>, actions: &[A], dim: usize) -> Self {
        Self {
            obs: out.obs.as_mut_ptr(),
            final_obs: out.final_obs.as_mut_ptr(),
            rewards: out.rewards.as_mut_ptr(),
            terminated: out.terminated.as_mut_ptr(),
            truncated: out.truncated.as_mut_ptr(),
            actions: actions.as_ptr(),
            len: out.rewards.len(),
            dim,
        }
    }

    /// Turns the loan back into slices.
    ///
    /// # Safety
    /// The buffers the rows came from must still be alive and untouched by anyone else for `'a`
    /// (see the `Send` impl); `with_actions` only when the loan was made with `len` actions.
    unsafe fn take<'a>(self, with_actions: bool) -> (ChunkBufs<'a>, &'a [A]) {
        use std::slice::from_raw_parts_mut as rows;
        let (n, d) = (self.len, self.dim);
        let actions = if with_actions { std::slice::from_raw_parts(self.actions, n) } else { &[] };
        let bufs = ChunkBufs {
            obs: rows(self.obs, n * d),
            final_obs: rows(self.final_obs, n * d),
            rewards: rows(self.rewards, n),
            terminated: rows(self.terminated, n),
            truncated: rows(self.truncated, n),
        };
        (bufs, actions)
    }
}

/// Work sent to a worker thread.
///
/// `episodes` is the vector the worker returned last time, given back so that it is reused.
enum Command<A> {
    Reset { seed: Option<u64>, rows: RawRows<A>, episodes: Vec<(usize, EpisodeStats)> },
    Step { rows: RawRows<A>, episodes: Vec<(usize, EpisodeStats)> },
}

/// A worker's answer: the outcome and the episodes that ended in its chunk.
struct Reply {
    result: Result<(), EnvError>,
    episodes: Vec<(usize, EpisodeStats)>,
}

/// A spawned worker thread and its channels.
struct Worker<E: Env> {
    /// `Option` so that `Drop` can close it first, which ends the thread's loop.
    commands: Option<Sender<Command<E::Act>>>,
    replies: Receiver<Reply>,
    /// The episode vector of its last reply, sent back with the next command.
    episodes: Vec<(usize, EpisodeStats)>,
    /// Number of envs in its chunk.
    len: usize,
    thread: Option<JoinHandle<()>>,
}

/// The loop of a worker thread: one command in, one reply out, until the command channel closes.
fn worker_loop<E: Env>(mut chunk: Chunk<E>, commands: Receiver<Command<E::Act>>, replies: Sender<Reply>) {
    while let Ok(command) = commands.recv() {
        let result = match command {
            // SAFETY: the VecEnv waits for this reply before it touches the rows again (see RawRows).
            Command::Reset { seed, rows, episodes } => {
                chunk.episodes = episodes;
                let (out, _) = unsafe { rows.take(false) };
                chunk.guarded(|c| c.reset(seed, out))
            }
            Command::Step { rows, episodes } => {
                chunk.episodes = episodes;
                let (out, actions) = unsafe { rows.take(true) };
                chunk.guarded(|c| c.step(actions, out))
            }
        };
        let episodes = std::mem::take(&mut chunk.episodes);
        if replies.send(Reply { result, episodes }).is_err() {
            break;
        }
    }
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
        let bounds: Vec<usize> = (0..=workers).map(|k| k * num_envs / workers).collect();
        // Split from the back so each `split_off` leaves the earlier envs in place.
        let mut chunks = Vec::with_capacity(workers);
        for k in (0..workers).rev() {
            chunks.push(Chunk::new(bounds[k], envs.split_off(bounds[k])));
        }
        chunks.reverse();
        let mut chunks = chunks.into_iter();
        let own = chunks.next().expect("workers >= 1");
        let mut spawned = Vec::with_capacity(workers - 1);
        for chunk in chunks {
            let (command_tx, command_rx) = crossbeam_channel::bounded(1);
            let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
            let len = chunk.envs.len();
            let thread = std::thread::Builder::new()
                .name(format!("vec-env-{}", chunk.start))
                .spawn(move || worker_loop(chunk, command_rx, reply_tx))
                .map_err(|e| EnvError::Other(format!("cannot spawn a VecEnv worker thread: {e}")))?;
            spawned.push(Worker {
                commands: Some(command_tx),
                replies: reply_rx,
                episodes: Vec::new(),
                len,
                thread: Some(thread),
            });
        }
        let dim = E::Obs::DIM;
        let bufs = Buffers {
            obs: vec![0.0; num_envs * dim],
            final_obs: vec![0.0; num_envs * dim],
            rewards: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
        };
        Ok(Self {
            own,
            workers: spawned,
            num_envs,
            obs_space,
            act_space,
            bufs,
            episodes: Vec::new(),
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
        self.workers.len() + 1
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
        self.run(
            |chunk, out, _| chunk.reset(seed, out),
            |rows, episodes| Command::Reset { seed, rows, episodes },
            &[],
        )?;
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
        self.run(|chunk, out, acts| chunk.step(acts, out), |rows, episodes| Command::Step { rows, episodes }, actions)?;
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

    /// Sends each worker its command, runs the own chunk, then collects every reply.
    ///
    /// Always waits for every worker it sent work to before returning: that keeps the loans sound.
    fn run(
        &mut self,
        own_work: impl FnOnce(&mut Chunk<E>, ChunkBufs<'_>, &[E::Act]) -> Result<(), EnvError>,
        command: impl Fn(RawRows<E::Act>, Vec<(usize, EpisodeStats)>) -> Command<E::Act>,
        actions: &[E::Act],
    ) -> Result<(), EnvError> {
        let dim = E::Obs::DIM;
        let mut rest = ChunkBufs {
            obs: &mut self.bufs.obs,
            final_obs: &mut self.bufs.final_obs,
            rewards: &mut self.bufs.rewards,
            terminated: &mut self.bufs.terminated,
            truncated: &mut self.bufs.truncated,
        };
        let mut actions_rest = actions;
        let mut take = |n: usize| {
            let head = rest.split_off_front(n, dim);
            let (acts, acts_rest) = actions_rest.split_at(n.min(actions_rest.len()));
            actions_rest = acts_rest;
            (head, acts)
        };
        let (own_out, own_actions) = take(self.own.envs.len());
        // Hand off first, so that the workers run while this thread steps its own chunk.
        let mut sent = 0;
        let mut error: Option<EnvError> = None;
        for worker in &mut self.workers {
            let (out, acts) = take(worker.len);
            let rows = RawRows::lend(out, acts, dim);
            let sender = worker.commands.as_ref().expect("open until drop");
            if sender.send(command(rows, std::mem::take(&mut worker.episodes))).is_err() {
                error = Some(EnvError::Other("a VecEnv worker thread has stopped".into()));
                break;
            }
            sent += 1;
        }
        let own_result = self.own.guarded(|c| own_work(c, own_out, own_actions));
        self.episodes.clear();
        self.episodes.extend_from_slice(&self.own.episodes);
        // Results arrive in env order, so the first error kept is the lowest env index's.
        let mut keep = |e: EnvError| match &error {
            Some(EnvError::Panicked { .. }) => {}
            Some(_) if !matches!(e, EnvError::Panicked { .. }) => {}
            _ => error = Some(e),
        };
        if let Err(e) = own_result {
            keep(e);
        }
        for worker in &mut self.workers[..sent] {
            match worker.replies.recv() {
                Ok(reply) => {
                    self.episodes.extend_from_slice(&reply.episodes);
                    worker.episodes = reply.episodes;
                    if let Err(e) = reply.result {
                        keep(e);
                    }
                }
                // Disconnected: the thread has left its loop, so it no longer holds the loan.
                Err(_) => keep(EnvError::Other("a VecEnv worker thread has stopped".into())),
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
}

impl<E: Env> Drop for VecEnv<E> {
    /// Closes every worker's command channel, then joins the threads (they are idle between calls).
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.commands = None;
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                // A worker catches env panics, so a join error could only come from our own code;
                // it must not turn a drop into a panic.
                let _ = thread.join();
            }
        }
    }
}
