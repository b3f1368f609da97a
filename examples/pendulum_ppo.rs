//! PPO with a diagonal-Gaussian policy on Pendulum-v1 (after RL-Zoo's hyperparameters, γ 0.95);
//! stops once the greedy (mean-action) policy averages at least −200 over 100 evaluation episodes.
//!
//! `cargo run --release --example pendulum_ppo -- --seed 1 [--run-dir DIR] [--config FILE] [--help]`

use glimpse_actor_critic::prelude::*;

fn main() {
    let trainer = Trainer::gaussian::<3, 1>(PpoConfig::pendulum(), glimpse_envs::pendulum_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("pendulum_ppo")));
}
