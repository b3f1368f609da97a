//! [`DynEnv`]: the glimpse environments behind one object-safe interface with flat `f32`
//! observation buffers, so that Python can drive any of them without generics.

use glimpse::image::Image;
use glimpse::wrappers::TimeLimit;
use glimpse::{Env, EnvError, EnvState, Observation, Space};
use glimpse_envs::{Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum};

/// One action, borrowed from Python.
#[derive(Debug, Clone, Copy)]
pub enum ActionIn<'a> {
    /// An integer, for a `Discrete` action space.
    Discrete(i64),
    /// Values for a `Box` action space.
    Box(&'a [f32]),
}

/// Conversion from [`ActionIn`] to an environment's typed action.
pub trait FromAction: Sized {
    /// The typed action, or why `a` cannot be one.
    fn from_action(a: ActionIn<'_>) -> Result<Self, EnvError>;
}

impl FromAction for usize {
    fn from_action(a: ActionIn<'_>) -> Result<Self, EnvError> {
        match a {
            ActionIn::Discrete(v) => {
                usize::try_from(v).map_err(|_| EnvError::InvalidAction(format!("action {v} is negative")))
            }
            ActionIn::Box(v) => Err(EnvError::InvalidAction(format!("expected an integer action, got {v:?}"))),
        }
    }
}

impl<const M: usize> FromAction for [f32; M] {
    fn from_action(a: ActionIn<'_>) -> Result<Self, EnvError> {
        match a {
            ActionIn::Box(v) => v
                .try_into()
                .map_err(|_| EnvError::InvalidAction(format!("expected {M} action values, got {}", v.len()))),
            ActionIn::Discrete(v) => Err(EnvError::InvalidAction(format!("expected {M} float values, got {v}"))),
        }
    }
}

/// Reading and writing gymnasium's `env.unwrapped.state`.
pub trait StateAccess {
    /// The state in float64, and whether gymnasium would hold it as float32.
    fn state_vec(&self) -> (Vec<f64>, bool);
    /// Sets the state (`as_f32`: the caller gave a float32 array).
    fn set_state_slice(&mut self, state: &[f64], as_f32: bool) -> Result<(), String>;
}

fn fixed<const K: usize>(state: &[f64]) -> Result<[f64; K], String> {
    state.try_into().map_err(|_| format!("the state has {K} values, got {}", state.len()))
}

macro_rules! float64_state {
    ($($t:ty),*) => {$(
        impl StateAccess for $t {
            fn state_vec(&self) -> (Vec<f64>, bool) {
                (self.state.to_vec(), false)
            }
            fn set_state_slice(&mut self, state: &[f64], _as_f32: bool) -> Result<(), String> {
                self.set_state(fixed(state)?);
                Ok(())
            }
        }
    )*};
}

float64_state!(CartPole, Acrobot, MountainCar, Pendulum);

impl StateAccess for MountainCarContinuous {
    fn state_vec(&self) -> (Vec<f64>, bool) {
        (self.state.to_vec(), self.state_is_f32)
    }
    fn set_state_slice(&mut self, state: &[f64], as_f32: bool) -> Result<(), String> {
        let s: [f64; 2] = fixed(state)?;
        if as_f32 {
            self.set_state_f32(s.map(|v| v as f32));
        } else {
            self.set_state(s);
        }
        Ok(())
    }
}

impl<E: StateAccess> StateAccess for TimeLimit<E> {
    fn state_vec(&self) -> (Vec<f64>, bool) {
        self.env.state_vec()
    }
    fn set_state_slice(&mut self, state: &[f64], as_f32: bool) -> Result<(), String> {
        self.env.set_state_slice(state, as_f32)
    }
}

/// A glimpse environment with flat observations and untyped actions.
pub trait DynEnv: Send + Sync {
    /// The registered id.
    fn id(&self) -> &'static str;
    /// Values per observation.
    fn obs_dim(&self) -> usize;
    /// True for a `Discrete` action space.
    fn discrete(&self) -> bool;
    /// The observation space.
    fn observation_space(&self) -> Space;
    /// The action space.
    fn action_space(&self) -> Space;
    /// Starts an episode; writes the first observation into `obs`.
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError>;
    /// Steps; writes the observation into `obs`; returns (reward, terminated, truncated).
    fn step(&mut self, action: ActionIn<'_>, obs: &mut [f32]) -> Result<(f64, bool, bool), EnvError>;
    /// See [`StateAccess::state_vec`].
    fn state(&self) -> (Vec<f64>, bool);
    /// See [`StateAccess::set_state_slice`].
    fn set_state(&mut self, state: &[f64], as_f32: bool) -> Result<(), String>;
    /// The time limit it was built with, if any.
    fn time_limit(&self) -> Option<usize>;
    /// Everything that decides its future (see [`Env::save_state`]).
    fn save_state(&self) -> Result<EnvState, EnvError>;
    /// Restores what [`save_state`](DynEnv::save_state) wrote (see [`Env::restore_state`]).
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError>;
    /// The current state as an RGB frame (see [`Env::render`]).
    fn render(&self) -> Result<Image, EnvError>;
}

/// An [`Env`] with its id, seen as a [`DynEnv`].
struct Named<E> {
    id: &'static str,
    time_limit: Option<usize>,
    env: E,
    discrete: bool,
    action_space: Space,
}

impl<E> DynEnv for Named<E>
where
    E: Env + StateAccess + Sync,
    E::Act: FromAction,
{
    fn id(&self) -> &'static str {
        self.id
    }
    fn obs_dim(&self) -> usize {
        <E::Obs as Observation>::DIM
    }
    fn discrete(&self) -> bool {
        self.discrete
    }
    fn observation_space(&self) -> Space {
        self.env.observation_space()
    }
    fn action_space(&self) -> Space {
        self.action_space.clone()
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        let (o, _) = self.env.reset(seed)?;
        o.write_to(obs);
        Ok(())
    }
    #[inline]
    fn step(&mut self, action: ActionIn<'_>, obs: &mut [f32]) -> Result<(f64, bool, bool), EnvError> {
        let step = self.env.step(&E::Act::from_action(action)?)?;
        step.obs.write_to(obs);
        Ok((step.reward, step.terminated, step.truncated))
    }
    fn state(&self) -> (Vec<f64>, bool) {
        self.env.state_vec()
    }
    fn set_state(&mut self, state: &[f64], as_f32: bool) -> Result<(), String> {
        self.env.set_state_slice(state, as_f32)
    }
    fn time_limit(&self) -> Option<usize> {
        self.time_limit
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        self.env.save_state()
    }
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        self.env.restore_state(state)
    }
    fn render(&self) -> Result<Image, EnvError> {
        self.env.render()
    }
}

fn named<E>(id: &'static str, env: E, time_limit: Option<usize>) -> Box<dyn DynEnv>
where
    E: Env + StateAccess + Sync + 'static,
    E::Act: FromAction,
{
    fn boxed<E>(id: &'static str, time_limit: Option<usize>, env: E) -> Box<dyn DynEnv>
    where
        E: Env + StateAccess + Sync + 'static,
        E::Act: FromAction,
    {
        let action_space = env.action_space();
        let discrete = action_space.as_discrete().is_some();
        Box::new(Named { id, time_limit, env, discrete, action_space })
    }
    match time_limit {
        Some(steps) => boxed(id, time_limit, TimeLimit::new(env, steps)),
        None => boxed(id, None, env),
    }
}

/// Builds one environment, raw or with a time limit.
type Constructor = fn(&'static str, Option<usize>) -> Box<dyn DynEnv>;

/// The glimpse environments by id, with their time limits (as `gymnasium.make` applies them).
pub const ENVS: [(&str, usize, Constructor); 5] = [
    ("CartPole-v1", 500, |id, limit| named(id, CartPole::new(), limit)),
    ("Acrobot-v1", 500, |id, limit| named(id, Acrobot::new(), limit)),
    ("MountainCar-v0", 200, |id, limit| named(id, MountainCar::new(), limit)),
    ("MountainCarContinuous-v0", 999, |id, limit| named(id, MountainCarContinuous::new(), limit)),
    ("Pendulum-v1", 200, |id, limit| named(id, Pendulum::new(), limit)),
];

/// A new environment by id, truncated after `time_limit` steps when given.
pub fn make_env(id: &str, time_limit: Option<usize>) -> Result<Box<dyn DynEnv>, String> {
    let (id, _, make) = ENVS
        .iter()
        .find(|(known, _, _)| *known == id)
        .ok_or_else(|| format!("unknown glimpse env {id:?}; known: {:?}", ENVS.map(|(i, _, _)| i)))?;
    if time_limit == Some(0) {
        return Err("max_episode_steps must be at least 1".into());
    }
    Ok(make(id, time_limit))
}
