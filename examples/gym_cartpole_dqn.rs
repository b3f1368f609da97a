//! DQN learns gymnasium's own CartPole-v1, driven from Rust through `GymEnv` (pyo3).
//!
//! ```sh
//! source .venv/bin/activate     # a venv with gymnasium (README "Python")
//! cargo run --release --features python --example gym_cartpole_dqn -- --seed 1
//! ```
//!
//! The same agent, defaults and command line as `cartpole_dqn`; only the environment differs:
//! every step is a call into Python's `gymnasium.make("CartPole-v1")`. Stops when a greedy
//! evaluation over 100 episodes (also on gymnasium's env) averages >= 475, or at the step budget.
//! A gymnasium env cannot save its state, so such a run checkpoints (for `--eval`) but cannot be
//! resumed exactly: `--resume` says so.

use glimpse_dqn::prelude::*;
use glimpse_envs::gym::GymEnv;

const GYM_ID: &str = "CartPole-v1";

/// gymnasium's CartPole; `main` has made one already, so a failure here is a broken Python.
fn gym_cartpole() -> GymEnv<4> {
    GymEnv::make(GYM_ID).unwrap_or_else(|e| panic!("gymnasium.make({GYM_ID:?}) worked once, then failed: {e}"))
}

fn main() {
    // Fail early, with Python's message, when gymnasium cannot be imported or made.
    drop(exit_on_error(GymEnv::<4>::make(GYM_ID).map_err(|e| format!("{e} (is a venv with gymnasium active?)"))));
    let trainer = Trainer::<_, 4, 2, 64>::new(Config::cartpole(), gym_cartpole);
    exit_on_error(trainer.and_then(|t| t.run_command_line("gym_cartpole_dqn")));
}
