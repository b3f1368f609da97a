//! Deep Q-Networks (Mnih et al. 2015) with the usual improvements as options: Double DQN,
//! dueling heads, n-step returns, prioritized replay, Polyak target updates.
//!
//! Reads like a CleanRL script: [`Config`] at the top, the network as a typed dfdx module
//! ([`network::QNetwork`]), the agent's pieces ([`Dqn::act`], [`Dqn::observe`], [`Dqn::train_step`])
//! and one visible loop, [`train()`]. The replay buffer, vector env, evaluation and the run layer
//! (TensorBoard, checkpoints, `--resume`, `summary.json`) come from the shared `glimpse` crate.
//!
//! Training your own environment takes a [`Trainer`]; a finished run's greedy [`Policy`] is
//! loaded from its directory:
//!
//! ```no_run
//! use glimpse_dqn::prelude::*;
//! # fn make_env() -> TimeLimit<glimpse_envs::toy::Chain<4>> { TimeLimit::new(Default::default(), 20) }
//! # fn main() -> Result<(), DqnError> {
//! let cfg = Config { total_timesteps: 5_000, solve_threshold: Some(0.8), ..Config::default() };
//! // 4 observation values, 2 actions (checked against the env here), hidden width 64.
//! let summary = Trainer::<_, 4, 2>::new(cfg, make_env)?.seed(1).run_dir("runs/chain").train()?;
//! println!("solved at {:?}", summary.solved_at_step);
//! let result = Policy::<4, 2>::load("runs/chain")?.evaluate(&make_env, 100, 7)?;
//! println!("greedy mean return {}", result.mean());
//! # Ok(()) }
//! ```

pub mod agent;
pub mod cli;
pub mod config;
pub mod network;
pub mod train;
mod trainer;

use glimpse::checkpoint::CheckpointError;
use glimpse::optim::NonFiniteParams;
use glimpse::run::RunError;
use glimpse::{EnvError, Space};
use serde::{Deserialize, Serialize};

pub use agent::{greedy_actions, Dqn, TrainState, TrainStats};
pub use config::{Config, Loss};
pub use glimpse::evaluate::EvalResult;
pub use network::{DuelingQ, DuelingQNetwork, MlpQ, QFunction, QNetwork};
pub use train::{train, LoopStats, Training};
pub use trainer::{train_run, Policy, Trainer};

/// What a user training DQN on their own env names: `use glimpse_dqn::prelude::*;`.
pub mod prelude {
    pub use crate::{Config, DqnError, Loss, Policy, Summary, Trainer};
    pub use glimpse::prelude::*;
}

/// Everything that can stop a DQN run. Each prints as one readable line.
#[derive(Debug, thiserror::Error)]
pub enum DqnError {
    /// A setting is out of range.
    #[error("invalid config: {0}")]
    Config(String),
    /// The env's observations do not fit the Q-network's input.
    #[error("the Q-network takes {expected} observation values, but the env's observation space is {found}")]
    ObservationSpace {
        /// The network's input size `O`.
        expected: usize,
        /// The env's space.
        found: String,
    },
    /// The env's actions are not the Q-network's outputs.
    #[error("the Q-network has {expected} actions, but the env's action space is {found} (build the agent with A = n of the env's Discrete(n))")]
    ActionSpace {
        /// The network's action count `A`.
        expected: usize,
        /// The env's space.
        found: String,
    },
    /// The environment failed.
    #[error("environment: {0}")]
    Env(#[from] EnvError),
    /// The run directory, its checkpoint or TensorBoard file failed, or a guard refused the run.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A run cannot continue exactly from where it stopped.
    #[error("cannot resume exactly: {0}")]
    Resume(String),
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
}

/// A run's `summary.json`: the run layer's keys, then DQN's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Seconds spent training, over every process of the run.
    pub wall_seconds: f64,
    /// Environment steps taken.
    pub env_steps: u64,
    /// Mean return of the last greedy evaluation (none when `eval_episodes` is 0).
    pub eval_mean_return: Option<f64>,
    /// Standard deviation of that evaluation's returns.
    pub eval_std_return: Option<f64>,
    /// Episodes in that evaluation.
    pub eval_episodes: usize,
    /// Gradient steps taken.
    pub gradient_steps: u64,
    /// Environment step at which an evaluation first reached the threshold, if it did.
    pub solved_at_step: Option<u64>,
}

/// Checks an env's spaces against a Q-network with `O` inputs and `A` actions: a box (or
/// discrete) observation space of `O` values and a `Discrete(A)` action space starting at 0.
pub fn check_spaces<const O: usize, const A: usize>(observations: &Space, actions: &Space) -> Result<(), DqnError> {
    if observations.flat_dim() != O {
        return Err(DqnError::ObservationSpace { expected: O, found: describe(observations) });
    }
    match actions.as_discrete() {
        Some(d) if d.n == A && d.start == 0 => Ok(()),
        _ => Err(DqnError::ActionSpace { expected: A, found: describe(actions) }),
    }
}

/// A space as one would write it: `Discrete(3)`, `Discrete(3, start=1)`, `Box(shape [4])`.
fn describe(space: &Space) -> String {
    match space {
        Space::Discrete(d) if d.start == 0 => format!("Discrete({})", d.n),
        Space::Discrete(d) => format!("Discrete({}, start={})", d.n, d.start),
        Space::Box(b) => format!("Box(shape {:?}, {} values)", b.shape, b.dim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glimpse::{BoxSpace, Discrete};

    #[test]
    fn spaces_are_checked_against_the_network() {
        let obs: Space = BoxSpace::new(vec![0.0; 4], vec![1.0; 4]).into();
        assert!(check_spaces::<4, 2>(&obs, &Discrete::new(2).into()).is_ok());
        let err = check_spaces::<4, 2>(&obs, &Discrete::new(3).into()).unwrap_err().to_string();
        assert!(err.contains("has 2 actions") && err.contains("Discrete(3)"), "{err}");
        let err = check_spaces::<3, 2>(&obs, &Discrete::new(2).into()).unwrap_err().to_string();
        assert!(err.contains("takes 3 observation values") && err.contains("4 values"), "{err}");
        let err = check_spaces::<4, 2>(&obs, &obs).unwrap_err().to_string();
        assert!(err.contains("Box(shape [4]"), "{err}");
        let shifted = Discrete { n: 2, start: 1 };
        assert!(check_spaces::<4, 2>(&obs, &shifted.into()).unwrap_err().to_string().contains("start=1"));
    }
}
