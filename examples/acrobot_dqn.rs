//! DQN learns Acrobot-v1: `cargo run --release --example acrobot_dqn -- --seed 1`.
//!
//! Stops when a greedy evaluation over 100 episodes averages >= -100, or at the step budget.
//! `-- --help` shows its defaults (`glimpse_dqn::Config::acrobot`).

use glimpse_dqn::prelude::*;

fn main() {
    let trainer = Trainer::<_, 6, 3, 128>::new(Config::acrobot(), glimpse_envs::acrobot_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("acrobot_dqn")));
}
