//! What a user of glimpse's public API names: `use glimpse::prelude::*;`.
//!
//! The env layer (the [`Env`] trait, spaces, wrappers, vector envs, saved states), the run layer
//! (config and checkpoint traits, the launch of a run) and the shared evaluation. Agent crates
//! re-export what their own APIs need, so training a user's env needs no direct dfdx dependency.

pub use crate::env::{from_env_state, to_env_state};
pub use crate::evaluate::{evaluate_greedy, EvalResult};
pub use crate::finite::NonFinite;
pub use crate::run::{
    exit_on_error, Checkpoint, Control, EvalReport, Launch, Outcome, RlSummary, Run, RunArgs, RunConfig, RunError,
    Train, Unit,
};
pub use crate::spaces::{BoxSpace, Discrete, Space};
pub use crate::vec_env::{VecEnv, VecEnvState, VecStep};
pub use crate::wrappers::{RecordEpisodeStatistics, TimeLimit};
pub use crate::{Env, EnvError, EnvState, EpisodeStats, Info, Observation, Step};
