//! PPO on Acrobot-v1 (after RL-Zoo's hyperparameters); stops once the greedy policy averages at
//! least −100 over 100 evaluation episodes.
//!
//! `cargo run --release --example acrobot_ppo -- --seed 1 [--run-dir DIR] [--config FILE] [--help]`

use glimpse_actor_critic::prelude::*;

fn main() {
    let trainer = Trainer::discrete::<6, 3>(PpoConfig::acrobot(), glimpse_envs::acrobot_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("acrobot_ppo")));
}
