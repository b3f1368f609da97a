//! PPO on CartPole-v1 with RL-Zoo's tuned hyperparameters; stops once the greedy policy averages
//! at least 475 over 100 evaluation episodes.
//!
//! `cargo run --release --example cartpole_ppo -- --seed 1 [--run-dir DIR] [--config FILE] [--help]`

use glimpse_actor_critic::prelude::*;

fn main() {
    let trainer = Trainer::discrete::<4, 2>(PpoConfig::cartpole(), glimpse_envs::cartpole_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("cartpole_ppo")));
}
