//! glimpse: reinforcement learning and generative modelling on typed dfdx networks.
//!
//! The root crate is the shared layer every agent and model builds on:
//! - [`env`]: the [`Env`](env::Env) trait with gymnasium semantics, [`spaces`], [`wrappers`].
//! - [`vec_env`]: batches of environments stepped on worker threads.
//!
//! Later layers (replay and rollout storage, layers for dfdx, data loading, logging,
//! checkpoints) live in their own modules beside these.

pub mod checkpoint;
pub mod data;
pub mod distributions;
pub mod env;
pub mod evaluate;
pub mod finite;
pub mod image;
pub mod log;
pub mod nn;
pub mod optim;
pub mod replay;
pub mod rollout;
pub mod run;
pub mod spaces;
pub mod vec_env;
pub mod wrappers;

pub use env::{Env, EnvError, EnvState, EpisodeStats, Info, Observation, Step};
pub use spaces::{BoxSpace, Discrete, Space};
pub use vec_env::{VecEnv, VecEnvState, VecStep};
