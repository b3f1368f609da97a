//! REINFORCE with a learned value baseline on CartPole-v1; stops once the greedy policy averages at
//! least 475 over 100 evaluation episodes. `--baseline none|running-mean|value` picks the baseline.
//!
//! `cargo run --release --example cartpole_reinforce -- --seed 1 [--baseline value] [--run-dir DIR] [--help]`

use glimpse_reinforce::prelude::*;

fn main() {
    let trainer = Trainer::<_, 4, 2>::new(ReinforceConfig::cartpole(), glimpse_envs::cartpole_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("cartpole_reinforce")));
}
