//! REINFORCE with a learned value baseline on CartPole-v1; stops once the greedy policy averages at
//! least 475 over 100 evaluation episodes. `--baseline none|running-mean|value` picks the baseline.
//!
//! `cargo run --release --example cartpole_reinforce -- --seed 1 [--baseline value] [--run-dir DIR]`

use clap::Parser;
use glimpse::run::RunArgs;
use glimpse_reinforce::{cli::run_example_until, Baseline, ReinforceConfig};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// What to subtract from the return.
    #[arg(long, value_enum, default_value_t = Baseline::Value)]
    baseline: Baseline,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let cfg = ReinforceConfig { baseline: args.baseline, target_return: Some(475.0), ..ReinforceConfig::default() };
    run_example_until::<_, 4, 2>("cartpole_reinforce", &args.run, cfg, glimpse_envs::cartpole_v1, args.run.stop_after)?;
    Ok(())
}
