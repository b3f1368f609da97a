//! The [`Env`] trait: gymnasium's `reset`/`step` contract with typed observations and actions.

use crate::spaces::Space;

/// Errors an environment reports instead of panicking.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvError {
    /// The action is not in the action space.
    #[error("invalid action: {0}")]
    InvalidAction(String),
    /// `step` was called before `reset`, or after the episode ended without a reset.
    #[error("step called on an environment that needs reset: {0}")]
    NeedsReset(String),
    /// A worker thread's environment panicked; the message is the panic payload.
    #[error("environment {index} panicked: {message}")]
    Panicked { index: usize, message: String },
    /// The environment cannot do what was asked, e.g. save its state for an exact resume.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A saved state (see [`Env::save_state`]) does not fit this environment.
    #[error("bad saved environment state: {0}")]
    BadState(String),
    /// Any other failure (for example an exception raised by a Python environment).
    #[error("{0}")]
    Other(String),
}

/// An environment's complete saved state (see [`Env::save_state`]): plain JSON, so that it can go
/// into a checkpoint next to the agent's own state.
pub type EnvState = serde_json::Value;

/// Serializes `state` for [`Env::save_state`]; `name` names the env in the error.
pub fn to_env_state<T: serde::Serialize>(name: &str, state: &T) -> Result<EnvState, EnvError> {
    serde_json::to_value(state).map_err(|e| EnvError::BadState(format!("{name}: cannot serialize the state: {e}")))
}

/// Deserializes what [`to_env_state`] wrote, for [`Env::restore_state`]; `name` names the env in
/// the error.
pub fn from_env_state<T: serde::de::DeserializeOwned>(name: &str, state: &EnvState) -> Result<T, EnvError> {
    T::deserialize(state).map_err(|e| EnvError::BadState(format!("{name}: {e}")))
}

/// Return and length of one finished episode (gymnasium's `info["episode"]`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EpisodeStats {
    /// Sum of rewards over the episode.
    pub ret: f64,
    /// Number of steps in the episode.
    pub len: usize,
}

/// Extra information returned by `reset` and `step`.
///
/// Creating an empty `Info` does not allocate, so environments on a hot path pay nothing for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Info {
    /// Set on the step that ends an episode by [`RecordEpisodeStatistics`](crate::wrappers::RecordEpisodeStatistics).
    pub episode: Option<EpisodeStats>,
    /// Free-form numeric entries.
    pub values: Vec<(String, f64)>,
}

impl Info {
    /// Looks up a free-form entry by key.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// The result of one [`Env::step`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step<O> {
    /// The observation after the step.
    pub obs: O,
    /// The reward for the transition.
    pub reward: f64,
    /// The episode reached a terminal state of the MDP (do not bootstrap).
    pub terminated: bool,
    /// The episode was cut short, e.g. by a time limit (bootstrap from `obs`).
    pub truncated: bool,
    /// Extra information.
    pub info: Info,
}

impl<O> Step<O> {
    /// True when the episode ended for either reason.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A fixed-size observation that can be written into a flat `f32` buffer, and so into a
/// dfdx tensor of compile-time shape `(batch, Const<DIM>)`.
pub trait Observation: Clone + Send + 'static {
    /// Number of `f32` values in one observation.
    const DIM: usize;
    /// Writes the observation into `out` (of length `DIM`).
    fn write_to(&self, out: &mut [f32]);
}

impl<const N: usize> Observation for [f32; N] {
    const DIM: usize = N;
    fn write_to(&self, out: &mut [f32]) {
        out.copy_from_slice(self);
    }
}

/// An environment with gymnasium semantics.
///
/// - [`reset`](Env::reset) starts an episode. `Some(seed)` reseeds the environment's random
///   generator (the same seed gives the same episode); `None` continues its stream.
/// - [`step`](Env::step) applies an action and returns the next observation, the reward, and
///   whether the episode `terminated` (a terminal MDP state) or was `truncated` (cut short).
///
/// Invalid actions and misuse return an [`EnvError`]; they never panic.
///
/// ```
/// use glimpse::{Env, EnvError, Info, Space, Step, Discrete, BoxSpace};
///
/// /// Walk right along a line of 5 cells; reward 1 at the end.
/// struct Line { pos: usize }
///
/// impl Env for Line {
///     type Obs = [f32; 1];
///     type Act = usize;
///     fn observation_space(&self) -> Space { BoxSpace::new(vec![0.0], vec![4.0]).into() }
///     fn action_space(&self) -> Space { Discrete::new(2).into() }
///     fn reset(&mut self, _seed: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
///         self.pos = 0;
///         Ok(([0.0], Info::default()))
///     }
///     fn step(&mut self, a: &usize) -> Result<Step<[f32; 1]>, EnvError> {
///         match a { 0 => self.pos = self.pos.saturating_sub(1), 1 => self.pos += 1,
///                   _ => return Err(EnvError::InvalidAction(format!("{a} not in Discrete(2)"))) }
///         let end = self.pos == 4;
///         Ok(Step { obs: [self.pos as f32], reward: end as u8 as f64, terminated: end,
///                   truncated: false, info: Info::default() })
///     }
/// }
///
/// let mut env = Line { pos: 0 };
/// env.reset(Some(0)).unwrap();
/// let s = (0..4).map(|_| env.step(&1).unwrap()).last().unwrap();
/// assert!(s.terminated && s.reward == 1.0);
/// assert!(env.step(&7).is_err());
/// ```
pub trait Env: Send {
    /// Observation type, typically `[f32; N]`.
    type Obs: Observation;
    /// Action type: `usize` for a [`Discrete`](crate::Discrete) space, `[f32; N]` for a box.
    type Act: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// The space observations lie in.
    fn observation_space(&self) -> Space;
    /// The space actions must lie in.
    fn action_space(&self) -> Space;
    /// Starts a new episode, reseeding first when `seed` is given.
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info), EnvError>;
    /// Advances the episode by one action.
    fn step(&mut self, action: &Self::Act) -> Result<Step<Self::Obs>, EnvError>;

    /// Everything that decides this environment's future: physical state, random generator,
    /// counters, so that [`restore_state`](Env::restore_state) on a freshly built env of the same
    /// kind continues bit-identically (the next steps and the next `reset(None)` agree). Agents
    /// save it in checkpoints to resume a run exactly.
    ///
    /// The default returns [`EnvError::Unsupported`]: an env that cannot save its state (an
    /// external simulator, say) makes an exact resume fail with that error instead of silently
    /// diverging. Wrappers forward to the env they wrap and add their own counters.
    fn save_state(&self) -> Result<EnvState, EnvError> {
        Err(EnvError::Unsupported(format!("{} cannot save its state", std::any::type_name::<Self>())))
    }

    /// Restores a state written by [`save_state`](Env::save_state) of the same kind of env.
    /// A state that does not fit gives [`EnvError::BadState`].
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        let _ = state;
        Err(EnvError::Unsupported(format!("{} cannot restore a saved state", std::any::type_name::<Self>())))
    }

    /// The current state as an RGB picture, as gymnasium's `render_mode="rgb_array"` draws it
    /// (see [`crate::draw`]). The default returns [`EnvError::Unsupported`]; wrappers forward to
    /// the env they wrap.
    fn render(&self) -> Result<crate::image::Image, EnvError> {
        Err(EnvError::Unsupported(format!("{} does not render", std::any::type_name::<Self>())))
    }
}

impl<E: Env + ?Sized> Env for Box<E> {
    type Obs = E::Obs;
    type Act = E::Act;
    fn observation_space(&self) -> Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> Space {
        (**self).action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info), EnvError> {
        (**self).reset(seed)
    }
    fn step(&mut self, action: &Self::Act) -> Result<Step<Self::Obs>, EnvError> {
        (**self).step(action)
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        (**self).save_state()
    }
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        (**self).restore_state(state)
    }
    fn render(&self) -> Result<crate::image::Image, EnvError> {
        (**self).render()
    }
}
