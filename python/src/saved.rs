//! The JSON that [`RustEnv`](crate::RustEnv) and [`RustVecEnv`](crate::RustVecEnv) save their
//! complete state as: pickle, `copy.deepcopy` and `get_state_json` all go through it.

use glimpse::EnvState;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// `kind` of a saved single env.
pub const ENV_KIND: &str = "glimpse.Env";
/// `kind` of a saved vector env.
pub const VEC_ENV_KIND: &str = "glimpse.VectorEnv";

/// A saved single environment.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedEnv {
    /// Always [`ENV_KIND`].
    pub kind: String,
    /// The glimpse env id, e.g. `CartPole-v1`.
    pub id: String,
    /// The time limit built into the env (None: raw env, gymnasium's `TimeLimit` counts).
    pub max_episode_steps: Option<usize>,
    /// The episode ended (or never started): `step` needs a `reset` first.
    pub done: bool,
    /// The Rust env's own [`glimpse::Env::save_state`].
    pub env: EnvState,
}

/// A saved vector environment.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedVecEnv {
    /// Always [`VEC_ENV_KIND`].
    pub kind: String,
    /// The glimpse env id.
    pub id: String,
    /// Number of envs.
    pub num_envs: usize,
    /// Each env's time limit.
    pub max_episode_steps: usize,
    /// Autoreset in the step that ends an episode (else in the next step).
    pub same_step: bool,
    /// `reset` was called.
    pub started: bool,
    /// The batch's envs and pending autoresets.
    pub batch: EnvState,
}

/// Parses `json` as a saved state of `kind`, or says why it is not one.
pub fn parse<T: DeserializeOwned>(json: &str, kind: &str) -> Result<T, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the saved state is not valid JSON: {e}"))?;
    let found = value
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or_else(|| "the JSON is not a saved glimpse env state (no \"kind\" field)".to_string())?;
    if found != kind {
        return Err(format!("the saved state is a {found}, expected a {kind}"));
    }
    T::deserialize(value).map_err(|e| format!("bad {kind} state: {e}"))
}

/// An error unless the saved `what` equals this env's.
pub fn check_same<T: PartialEq + Debug>(what: &str, saved: T, this: T) -> Result<(), String> {
    if saved == this {
        return Ok(());
    }
    Err(format!("the state was saved with {what} {saved:?}, this env has {this:?}"))
}

/// Serializes a saved state to a JSON string.
pub fn to_json<T: Serialize>(saved: &T) -> Result<String, String> {
    serde_json::to_string(saved).map_err(|e| format!("cannot serialize the state: {e}"))
}
