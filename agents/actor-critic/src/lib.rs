//! Actor-critic agents on glimpse's shared rollout and run layers: [`ppo`] and [`a2c`] (PPO's
//! special case), for discrete ([`DiscretePolicy`]) and continuous ([`GaussianPolicy`]) actions,
//! with shared or separate actor/critic networks as typed dfdx modules ([`policy`]).
//!
//! [`Trainer`] trains one on any [`glimpse::Env`] with a run directory, TensorBoard, checkpoints,
//! greedy evaluation, `--resume` and `--eval` (its methods are every glimpse agent's,
//! [`glimpse::run::Train`]); nothing of dfdx needs naming:
//!
//! ```no_run
//! use glimpse_actor_critic::prelude::*;
//! let cfg = PpoConfig { total_timesteps: 300_000, ..PpoConfig::pendulum() };
//! let summary = Trainer::gaussian::<3, 1>(cfg, glimpse_envs::pendulum_v1)?.seed(2).train()?;
//! assert!(summary.solved);
//! # Ok::<(), glimpse_actor_critic::Error>(())
//! ```

pub mod a2c;
pub mod policy;
pub mod ppo;
pub mod trainer;
pub mod training;

pub use a2c::A2cConfig;
pub use glimpse::run::RlSummary as Summary;
pub use policy::{
    ActorCritic, Built, DiscreteMlp, DiscretePolicy, GaussianMlp, GaussianPolicy, SeparateDiscrete, SeparateGaussian,
    SharedDiscrete, SharedGaussian,
};
pub use ppo::{PpoConfig, UpdateStats};
pub use trainer::{Algorithm, Trainer};
pub use training::{evaluate_policy, Progress, Training};

/// What a user training PPO or A2C on their own env names: `use glimpse_actor_critic::prelude::*;`.
pub mod prelude {
    pub use crate::{evaluate_policy, A2cConfig, Error, PpoConfig, Summary, Trainer};
    pub use glimpse::prelude::*;
}

use glimpse::finite::NonFinite;
use glimpse::optim::{NonFiniteGradient, NonFiniteParams};
use glimpse::rollout::RolloutError;
use glimpse::run::RunError;
use glimpse::validate::SpaceMismatch;
use glimpse::EnvError;

/// Errors of the actor-critic trainers. Each prints as one readable line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run layer refused or failed (run directory, config file, checkpoint, guards).
    #[error(transparent)]
    Run(#[from] RunError),
    /// An environment failed (invalid action, a panicking worker, ...).
    #[error("environment error: {0}")]
    Env(#[from] EnvError),
    /// The env's observation or action space does not fit the policy's network.
    #[error(transparent)]
    Spaces(#[from] SpaceMismatch),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A NaN or infinity in an observation, a reward or the loss.
    #[error(transparent)]
    NonFinite(#[from] NonFinite),
    /// The optimizer refused a NaN or infinite gradient (the weights are unchanged).
    #[error("non-finite gradient at env step {env_step}: {source}; training stopped")]
    NonFiniteGradient {
        /// Environment steps done.
        env_step: u64,
        /// The optimizer's refusal.
        source: NonFiniteGradient,
    },
    /// An update left a parameter NaN or infinite.
    #[error("after the update at env step {env_step}, {source}; training stopped")]
    NonFiniteParams {
        /// Environment steps done.
        env_step: u64,
        /// The tensor and its values.
        source: NonFiniteParams,
    },
    /// A checkpoint cannot be continued exactly.
    #[error("cannot resume exactly: {0}")]
    Resume(String),
}

impl From<RolloutError> for Error {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::Env(e) => Error::Env(e),
            RolloutError::NonFinite(e) => Error::NonFinite(e),
        }
    }
}
