//! A2C (synchronous, n-step, envs on worker threads) on CartPole-v1; stops once the greedy policy
//! averages at least 475 over 100 evaluation episodes.
//!
//! `cargo run --release --example cartpole_a2c -- --seed 1 [--run-dir DIR] [--config FILE] [--help]`

use glimpse_actor_critic::prelude::*;

fn main() {
    let trainer = Trainer::discrete::<4, 2>(A2cConfig::cartpole(), glimpse_envs::cartpole_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("cartpole_a2c")));
}
