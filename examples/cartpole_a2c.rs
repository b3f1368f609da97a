//! A2C (synchronous, n-step, GAE, envs on worker threads) on CartPole-v1 with a shared
//! actor-critic trunk; stops once the greedy policy averages at least 475 over 100 episodes.
//!
//! `cargo run --release --example cartpole_a2c -- --seed 1 [--run-dir DIR] [--config FILE]`

use clap::Parser;
use dfdx::prelude::*;
use glimpse::run::RunArgs;
use glimpse_actor_critic::cli::{run_example_until, AlgoConfig};
use glimpse_actor_critic::{A2cConfig, DiscretePolicy, SeparateDiscrete};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dev = Cpu::seed_from_u64(args.run.seed);
    let policy = DiscretePolicy::new(dev.build_module::<SeparateDiscrete<4, 2, 64>, f32>(), dev);
    let cfg = AlgoConfig::A2c(A2cConfig::cartpole());
    run_example_until::<_, _, 4>(
        "cartpole_a2c",
        &args.run,
        cfg,
        glimpse_envs::cartpole_v1,
        policy,
        args.run.stop_after,
    )?;
    Ok(())
}
