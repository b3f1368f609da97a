//! DQN learns CartPole-v1: `cargo run --release --example cartpole_dqn -- --seed 1`.
//!
//! Stops when a greedy evaluation over 100 episodes averages >= 475, or at the step budget.
//! Watch it with `tensorboard --logdir runs`; `-- --help` lists every flag.

use glimpse_dqn::{cli::run_example, Config};

fn main() {
    let defaults = Config { solve_threshold: Some(475.0), ..Config::default() };
    if let Err(e) = run_example::<_, 4, 2, 64>("cartpole_dqn", glimpse_envs::cartpole_v1, defaults) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
