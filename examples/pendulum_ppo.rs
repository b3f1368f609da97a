//! PPO with a diagonal-Gaussian policy on Pendulum-v1 (RL-Zoo's hyperparameters, γ = 0.9); stops
//! once the greedy (mean-action) policy averages at least −200 over the evaluation episodes.
//!
//! `cargo run --release --example pendulum_ppo -- --seed 1 [--run-dir DIR] [--config FILE]`

use clap::Parser;
use dfdx::prelude::*;
use glimpse::run::RunArgs;
use glimpse_actor_critic::cli::{run_example_until, AlgoConfig};
use glimpse_actor_critic::{GaussianPolicy, PpoConfig, SeparateGaussian};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dev = Cpu::seed_from_u64(args.run.seed);
    let net = dev.build_module::<SeparateGaussian<3, 1, 64>, f32>();
    let policy = GaussianPolicy::new(net, dev, [-2.0], [2.0]);
    let cfg = AlgoConfig::Ppo(PpoConfig::pendulum());
    run_example_until::<_, _, 3>(
        "pendulum_ppo",
        &args.run,
        cfg,
        glimpse_envs::pendulum_v1,
        policy,
        args.run.stop_after,
    )?;
    Ok(())
}
