//! DQN learns CartPole-v1: `cargo run --release --example cartpole_dqn -- --seed 1`.
//!
//! Stops when a greedy evaluation over 100 episodes averages >= 475, or at the step budget.
//! Watch it with `tensorboard --logdir runs`; `-- --help` lists every flag with its default.

use glimpse_dqn::prelude::*;

fn main() {
    let trainer = Trainer::<_, 4, 2, 64>::new(Config::cartpole(), glimpse_envs::cartpole_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("cartpole_dqn")));
}
