//! Actor-critic agents on glimpse's shared rollout layer: [`a2c`] and [`ppo`], for discrete
//! ([`DiscretePolicy`]) and continuous ([`GaussianPolicy`]) actions, with shared or separate
//! actor/critic networks as typed dfdx modules ([`policy`]).

pub mod a2c;
pub mod cli;
pub mod policy;
pub mod ppo;

pub use a2c::A2cConfig;
pub use policy::{
    ActorCritic, DiscretePolicy, GaussianPolicy, SeparateDiscrete, SeparateGaussian, SharedDiscrete, SharedGaussian,
};
pub use ppo::{evaluate, PpoConfig, TrainOutcome, UpdateStats};

/// Errors of the actor-critic trainers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment failed (invalid action, a panicking worker, ...).
    #[error("environment error: {0}")]
    Env(#[from] glimpse::EnvError),
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A loss became NaN or infinite.
    #[error("non-finite loss: {0}")]
    NonFinite(String),
    /// A gradient became NaN or infinite (the optimizer refused the step).
    #[error(transparent)]
    NonFiniteGradient(#[from] glimpse::optim::NonFiniteGradient),
}
