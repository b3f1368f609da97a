//! DQN learns Acrobot-v1: `cargo run --release --example acrobot_dqn -- --seed 1`.
//!
//! Stops when a greedy evaluation over 100 episodes averages >= -100, or at the step budget.
//! `-- --help` shows the tuned defaults below.

use glimpse_dqn::prelude::*;

fn main() {
    // Acrobot's episodes are long (up to 500 steps of -1) and its reward sparse: a larger batch,
    // more gradient steps and more exploration than CartPole.
    let defaults = Config {
        total_timesteps: 100_000,
        learning_rate: 6.3e-4,
        batch_size: 128,
        target_network_frequency: 250,
        train_frequency: 4,
        gradient_steps: 4,
        exploration_fraction: 0.12,
        end_e: 0.1,
        eval_frequency: 5000,
        solve_threshold: Some(-100.0),
        ..Config::default()
    };
    let trainer = Trainer::<_, 6, 3, 128>::new(defaults, glimpse_envs::acrobot_v1);
    exit_on_error(trainer.and_then(|t| t.run_command_line("acrobot_dqn")));
}
