//! [`DynBatch`]: N copies of one environment type stepped in a monomorphised loop (one dynamic
//! call per batch, not per env), with gymnasium's vector autoreset modes.

use glimpse::env::{from_env_state, to_env_state};
use glimpse::image::Image;
use glimpse::wrappers::TimeLimit;
use glimpse::{Env, EnvError, EnvState, Observation, Space};
use glimpse_envs::{Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum};

use crate::dyn_env::{ActionIn, FromAction, StateAccess};

/// A batch of actions, borrowed from numpy.
pub enum ActionsIn<'a> {
    /// One integer per env.
    Discrete(&'a [i64]),
    /// `dim` floats per env, row-major.
    Box { values: &'a [f32], dim: usize },
}

impl ActionsIn<'_> {
    fn get(&self, i: usize) -> ActionIn<'_> {
        match self {
            ActionsIn::Discrete(a) => ActionIn::Discrete(a[i]),
            ActionsIn::Box { values, dim } => ActionIn::Box(&values[i * dim..(i + 1) * dim]),
        }
    }
}

/// Results of one batched step.
pub struct BatchStep {
    /// Observations `[N * DIM]`.
    pub obs: Vec<f32>,
    /// Rewards `[N]`.
    pub rewards: Vec<f64>,
    /// Terminated flags `[N]`.
    pub terminated: Vec<bool>,
    /// Truncated flags `[N]`.
    pub truncated: Vec<bool>,
    /// "same_step" mode, when some episode ended: last observations `[N * DIM]` (rows of envs
    /// whose episode did not end are zeros).
    pub final_obs: Option<Vec<f32>>,
}

/// N environments of one type behind one object-safe interface.
pub trait DynBatch: Send + Sync {
    /// Number of environments.
    fn len(&self) -> usize;
    /// Values per observation.
    fn obs_dim(&self) -> usize;
    /// The observation space of one env.
    fn observation_space(&self) -> Space;
    /// The action space of one env.
    fn action_space(&self) -> Space;
    /// Resets env i with `seeds[i]`; returns observations `[N * DIM]`.
    fn reset(&mut self, seeds: &[Option<u64>]) -> Result<Vec<f32>, EnvError>;
    /// Checks every action (before any env steps), then steps every env.
    fn step(&mut self, actions: &ActionsIn, same_step: bool) -> Result<BatchStep, EnvError>;
    /// State of env `i`, see [`StateAccess::state_vec`].
    fn state(&self, i: usize) -> (Vec<f64>, bool);
    /// Sets the state of env `i`, see [`StateAccess::set_state_slice`].
    fn set_state(&mut self, i: usize, state: &[f64], as_f32: bool) -> Result<(), String>;
    /// Every env's complete state and the pending autoresets.
    fn save_state(&self) -> Result<EnvState, EnvError>;
    /// Restores what [`save_state`](DynBatch::save_state) wrote for a batch of the same size.
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError>;
    /// Env `i`'s current state as an RGB frame (see [`Env::render`]).
    fn render(&self, i: usize) -> Result<Image, EnvError>;
}

/// What [`DynBatch::save_state`] writes.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchState {
    /// Each env's [`Env::save_state`].
    envs: Vec<EnvState>,
    /// Envs that the next step resets ("next_step" mode).
    pending_reset: Vec<bool>,
}

struct Batch<E> {
    envs: Vec<E>,
    /// Envs to reset at the next step ("next_step" mode).
    pending_reset: Vec<bool>,
    action_space: Space,
}

impl<E> Batch<E>
where
    E: Env,
    E::Act: FromAction,
{
    fn check(&self, actions: &ActionsIn) -> Result<(), EnvError> {
        let bad = |i: usize, what: String| Err(EnvError::InvalidAction(format!("env {i}: {what}")));
        match (actions, &self.action_space) {
            (ActionsIn::Discrete(a), Space::Discrete(d)) => {
                if let Some(i) = a.iter().position(|&v| !d.contains(v)) {
                    return bad(i, format!("action {} is not in Discrete({})", a[i], d.n));
                }
            }
            (ActionsIn::Box { values, dim }, _) => {
                if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                    return bad(k / dim, format!("action value {} is not finite", values[k]));
                }
            }
            _ => {}
        }
        (0..self.envs.len()).try_for_each(|i| E::Act::from_action(actions.get(i)).map(|_| ()))
    }
}

impl<E> DynBatch for Batch<E>
where
    E: Env + StateAccess + Sync,
    E::Act: FromAction,
{
    fn len(&self) -> usize {
        self.envs.len()
    }
    fn obs_dim(&self) -> usize {
        E::Obs::DIM
    }
    fn observation_space(&self) -> Space {
        self.envs[0].observation_space()
    }
    fn action_space(&self) -> Space {
        self.action_space.clone()
    }

    fn reset(&mut self, seeds: &[Option<u64>]) -> Result<Vec<f32>, EnvError> {
        let dim = E::Obs::DIM;
        let mut obs = vec![0.0; self.envs.len() * dim];
        for (i, (env, seed)) in self.envs.iter_mut().zip(seeds).enumerate() {
            env.reset(*seed)?.0.write_to(&mut obs[i * dim..(i + 1) * dim]);
        }
        self.pending_reset.fill(false);
        Ok(obs)
    }

    fn step(&mut self, actions: &ActionsIn, same_step: bool) -> Result<BatchStep, EnvError> {
        self.check(actions)?;
        let (n, dim) = (self.envs.len(), E::Obs::DIM);
        let mut out = BatchStep {
            obs: vec![0.0; n * dim],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            final_obs: None,
        };
        for (i, env) in self.envs.iter_mut().enumerate() {
            let row = &mut out.obs[i * dim..(i + 1) * dim];
            if self.pending_reset[i] {
                env.reset(None)?.0.write_to(row);
                self.pending_reset[i] = false;
                continue;
            }
            let step = env.step(&E::Act::from_action(actions.get(i))?)?;
            step.obs.write_to(row);
            out.rewards[i] = step.reward;
            out.terminated[i] = step.terminated;
            out.truncated[i] = step.truncated;
            if step.done() {
                if same_step {
                    let fin = out.final_obs.get_or_insert_with(|| vec![0.0; n * dim]);
                    fin[i * dim..(i + 1) * dim].copy_from_slice(row);
                    env.reset(None)?.0.write_to(row);
                } else {
                    self.pending_reset[i] = true;
                }
            }
        }
        Ok(out)
    }

    fn state(&self, i: usize) -> (Vec<f64>, bool) {
        self.envs[i].state_vec()
    }

    fn set_state(&mut self, i: usize, state: &[f64], as_f32: bool) -> Result<(), String> {
        self.envs[i].set_state_slice(state, as_f32)?;
        self.pending_reset[i] = false;
        Ok(())
    }

    fn save_state(&self) -> Result<EnvState, EnvError> {
        let envs = self.envs.iter().map(|env| env.save_state()).collect::<Result<_, _>>()?;
        to_env_state("batch", &BatchState { envs, pending_reset: self.pending_reset.clone() })
    }

    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        let s: BatchState = from_env_state("batch", state)?;
        let n = self.envs.len();
        if s.envs.len() != n || s.pending_reset.len() != n {
            return Err(EnvError::BadState(format!(
                "batch: the state holds {} envs ({} autoreset flags), this batch has {n}",
                s.envs.len(),
                s.pending_reset.len()
            )));
        }
        for (i, (env, saved)) in self.envs.iter_mut().zip(&s.envs).enumerate() {
            env.restore_state(saved).map_err(|e| EnvError::BadState(format!("env {i}: {e}")))?;
        }
        self.pending_reset = s.pending_reset;
        Ok(())
    }

    fn render(&self, i: usize) -> Result<Image, EnvError> {
        self.envs[i].render()
    }
}

/// Why a batch could not be made: a bad argument, or more envs than fit in memory.
#[derive(Debug)]
pub enum BatchError {
    /// An argument out of range or an unknown env (Python `ValueError`).
    Value(String),
    /// The envs and their step outputs do not fit in the memory available (Python `MemoryError`).
    Memory(String),
}

fn batch<E>(n: usize, limit: usize, make: fn() -> E) -> Result<Box<dyn DynBatch>, BatchError>
where
    E: Env + StateAccess + Sync + 'static,
    E::Act: FromAction,
{
    // Per env: the env, its pending-reset flag, and the step outputs (observation, final
    // observation, reward, flags) each call returns for it.
    let obs_bytes = 8 * make().observation_space().flat_dim() as u128;
    let per_env = std::mem::size_of::<TimeLimit<E>>() as u128 + 2 * obs_bytes + 16;
    glimpse::limits::check_memory("num_envs", n as u128, per_env).map_err(BatchError::Memory)?;
    let envs: Vec<_> = (0..n).map(|_| TimeLimit::new(make(), limit)).collect();
    let action_space = envs[0].action_space();
    Ok(Box::new(Batch { envs, pending_reset: vec![false; n], action_space }))
}

/// `n >= 1` copies of env `id`, each truncated after `limit >= 1` steps; refused before anything
/// is allocated when they do not fit in memory.
pub fn make_batch(id: &str, n: usize, limit: usize) -> Result<Box<dyn DynBatch>, BatchError> {
    if n == 0 {
        return Err(BatchError::Value("num_envs must be at least 1".into()));
    }
    if limit == 0 {
        return Err(BatchError::Value("max_episode_steps must be at least 1".into()));
    }
    match id {
        "CartPole-v1" => batch(n, limit, CartPole::new),
        "Acrobot-v1" => batch(n, limit, Acrobot::new),
        "MountainCar-v0" => batch(n, limit, MountainCar::new),
        "MountainCarContinuous-v0" => batch(n, limit, MountainCarContinuous::new),
        "Pendulum-v1" => batch(n, limit, Pendulum::new),
        other => Err(BatchError::Value(format!("unknown glimpse env {other:?}"))),
    }
}
