//! DQN learns CartPole-v1: `cargo run --release --example cartpole_dqn -- --seed 1`.
//!
//! Stops when a greedy evaluation over 100 episodes averages >= 475, or at the step budget.
//! Watch it with `tensorboard --logdir runs`; `-- --help` lists every flag with its default.

use glimpse::run::exit_on_error;
use glimpse_dqn::{cli::run_example, Config};

fn main() {
    let defaults = Config { solve_threshold: Some(475.0), ..Config::default() };
    exit_on_error(run_example::<_, 4, 2, 64>("cartpole_dqn", glimpse_envs::cartpole_v1, &defaults));
}
