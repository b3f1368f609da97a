//! Deep Q-Networks (Mnih et al. 2015) with the usual improvements as options: Double DQN,
//! dueling heads, n-step returns, prioritized replay, Polyak target updates.
//!
//! Reads like a CleanRL script: [`Config`] at the top, the network as a typed dfdx module
//! ([`network::QNetwork`]), the agent's pieces ([`Dqn::act`], [`Dqn::observe`], [`Dqn::train_step`])
//! and one visible loop, [`train()`]. The replay buffer, vector env, evaluation and the run layer
//! (TensorBoard, checkpoints, `--resume`, `summary.json`) come from the shared `glimpse` crate.
//!
//! Training your own environment takes a [`Trainer`] (the same API as every glimpse agent's,
//! [`glimpse::run::Train`]); a trained run's greedy [`Policy`] is loaded from its directory:
//!
//! ```no_run
//! use glimpse_dqn::prelude::*;
//! # fn make_env() -> TimeLimit<glimpse_envs::toy::Chain<4>> { TimeLimit::new(Default::default(), 20) }
//! # fn main() -> Result<(), Error> {
//! let cfg = Config { total_timesteps: 5_000, solve_threshold: Some(0.8), ..Config::default() };
//! // 4 observation values, 2 actions (checked against the env here), hidden width 64.
//! let trainer = Trainer::<_, 4, 2>::new(cfg, make_env)?.seed(1).run_dir("runs/chain");
//! let summary = trainer.train()?;
//! println!("solved at {:?}", summary.solved_at_step);
//! let result = trainer.evaluate("runs/chain", 100, 7)?; // the saved policy, 100 new episodes
//! println!("greedy mean return {}", result.mean());
//! # Ok(()) }
//! ```

pub mod agent;
pub mod config;
pub mod network;
pub mod train;
mod trainer;

use glimpse::optim::NonFiniteParams;
use glimpse::run::RunError;
use glimpse::validate::SpaceMismatch;
use glimpse::EnvError;

pub use agent::{greedy_actions, Dqn, TrainState, TrainStats};
pub use config::{Config, Loss};
pub use glimpse::run::RlSummary as Summary;
pub use network::{DuelingQ, DuelingQNetwork, MlpQ, QFunction, QNetwork};
pub use train::{train, LoopStats, Training};
pub use trainer::{evaluate_policy, Policy, Trainer};

/// What a user training DQN on their own env names: `use glimpse_dqn::prelude::*;`.
pub mod prelude {
    pub use crate::{evaluate_policy, Config, Error, Loss, Policy, Summary, Trainer};
    pub use glimpse::prelude::*;
}

/// Everything that can stop a DQN run. Each prints as one readable line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run layer refused or failed (run directory, config file, checkpoint, guards).
    #[error(transparent)]
    Run(#[from] RunError),
    /// The environment failed.
    #[error("environment error: {0}")]
    Env(#[from] EnvError),
    /// The env's observation or action space does not fit the Q-network.
    #[error(transparent)]
    Spaces(#[from] SpaceMismatch),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An env gave a NaN or infinite observation or reward.
    #[error("env {env} gave a non-finite {what} ({value}) at env step {env_step}; training stopped")]
    NonFiniteEnv {
        /// `observation` or `reward`.
        what: &'static str,
        /// The env's index in the batch.
        env: usize,
        /// The value.
        value: f64,
        /// The env step (all envs together) whose result held it.
        env_step: u64,
    },
    /// The loss became NaN or infinite: training diverged.
    #[error("the TD loss became {loss} at gradient step {gradient_step} (env step {env_step}); training stopped (lower the learning rate or enable gradient clipping)")]
    NonFiniteLoss {
        /// The loss value.
        loss: f32,
        /// Gradient steps done before.
        gradient_step: u64,
        /// Environment steps done.
        env_step: u64,
    },
    /// The gradient became NaN or infinite; the optimizer refused the step.
    #[error("the gradient norm is {norm} at gradient step {gradient_step} (env step {env_step}); no parameter was changed, training stopped")]
    NonFiniteGradient {
        /// The global gradient norm.
        norm: f32,
        /// Gradient steps done before.
        gradient_step: u64,
        /// Environment steps done.
        env_step: u64,
    },
    /// A parameter of the Q-network is NaN or infinite after a gradient step.
    #[error("after gradient step {gradient_step} (env step {env_step}): {source}; training stopped")]
    NonFiniteParams {
        /// Which tensor, and how many values.
        source: NonFiniteParams,
        /// Gradient steps done before the step.
        gradient_step: u64,
        /// Environment steps done.
        env_step: u64,
    },
    /// A run cannot continue exactly from where it stopped.
    #[error("cannot resume exactly: {0}")]
    Resume(String),
}
