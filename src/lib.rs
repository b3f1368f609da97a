//! glimpse: reinforcement learning and generative modelling on typed dfdx networks.
//!
//! The root crate is the shared layer every agent and model builds on:
//! - [`env`]: the [`Env`](env::Env) trait with gymnasium semantics, [`spaces`], [`wrappers`].
//! - [`vec_env`]: batches of environments stepped on worker threads.
//!
//! - [`run`]: the run layer every trainer uses (run directory, TensorBoard, checkpoints,
//!   `--resume`/`--eval`/`--stop-after`, `summary.json`, the `Train` API every agent's trainer
//!   shares); [`evaluate`]: the shared greedy evaluation; [`validate`], [`limits`], [`finite`]:
//!   checks of settings, sizes and values.
//! - [`replay`], [`rollout`], [`distributions`], [`optim`]: what RL agents store and learn with.
//! - [`nn`]: our dfdx layers (convolutions, pooling, recurrent cells); [`data`]: MNIST; [`log`]:
//!   TensorBoard event files; [`checkpoint`]: atomic snapshots; [`image`]: PNG grids; `plot`:
//!   learning curves as PNG files.
//!
//! `use glimpse::prelude::*;` brings in what the public API names.
//!
//! Cargo features, all on by default; without them the env, RL and layer code builds with fewer
//! dependencies (`--no-default-features`):
//! - `plot`: the `plot` module (plotters, font8x8).
//! - `png`: PNG encoding (`image::encode_png`, `Image::to_png`/`save_png`, TensorBoard images;
//!   the png crate).
//! - `download`: fetching missing MNIST files from the public mirrors (ureq with TLS); without it
//!   the files are read from local directories only, and a missing one is an error that says so.

pub mod checkpoint;
pub mod data;
pub mod distributions;
pub mod draw;
pub mod env;
pub mod evaluate;
pub mod finite;
pub mod generative;
pub mod image;
pub mod limits;
pub mod log;
pub mod nn;
pub mod optim;
#[cfg(feature = "plot")]
pub mod plot;
pub mod prelude;
pub mod replay;
pub mod rollout;
pub mod run;
pub mod spaces;
pub mod testing;
pub mod validate;
pub mod vec_env;
pub mod wrappers;

pub use env::{Env, EnvError, EnvState, EpisodeStats, Info, Observation, Step};
pub use spaces::{BoxSpace, Discrete, Space};
pub use vec_env::{VecEnv, VecEnvState, VecStep};
