//! DQN learns gymnasium's own CartPole-v1, driven from Rust through `GymEnv` (pyo3).
//!
//! ```sh
//! source .venv/bin/activate     # a venv with gymnasium (README "Python")
//! cargo run --release --features python --example gym_cartpole_dqn -- --seed 1
//! ```
//!
//! The same agent and defaults as `cartpole_dqn`; only the environment differs: every step is a
//! call into Python's `gymnasium.make("CartPole-v1")`. Stops when a greedy evaluation over 100
//! episodes (also on gymnasium's env) averages >= 475, or at the step budget; `DIR/summary.json`
//! holds `eval_mean_return`.

use clap::{CommandFactory, FromArgMatches, Parser};
use glimpse::run::{resolve_config, summary_line, RunArgs, RunDir};
use glimpse_dqn::{evaluate, train, Config, Dqn, DuelingQNetwork, QFunction, QNetwork};
use glimpse_envs::gym::GymEnv;

const OBS: usize = 4;
const ACTIONS: usize = 2;
const HIDDEN: usize = 64;
type Plain = <QNetwork<OBS, ACTIONS, HIDDEN> as dfdx::nn::BuildOnDevice<dfdx::tensor::Cpu, f32>>::Built;
type Dueling = <DuelingQNetwork<OBS, ACTIONS, HIDDEN> as dfdx::nn::BuildOnDevice<dfdx::tensor::Cpu, f32>>::Built;
const GYM_ID: &str = "CartPole-v1";

#[derive(Parser)]
#[command(about = "DQN on gymnasium's CartPole-v1 (through pyo3)")]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    dqn: Config,
}

/// CartPole's defaults: the library defaults with gymnasium's "solved" level.
fn defaults() -> Config {
    Config { solve_threshold: Some(475.0), ..Config::default() }
}

/// gymnasium's CartPole; [`run`] has made one already, so a failure here is a broken Python.
fn gym_cartpole() -> GymEnv<OBS> {
    GymEnv::make(GYM_ID).unwrap_or_else(|e| panic!("gymnasium.make({GYM_ID:?}) worked once, then failed: {e}"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Fail early, with Python's message, when gymnasium cannot be imported or made.
    drop(GymEnv::<OBS>::make(GYM_ID).map_err(|e| format!("{e} (is a venv with gymnasium active?)"))?);
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let cfg = resolve_config(&defaults(), &cli.dqn, cli.run.config.as_deref(), &matches)?;
    if cfg.dueling {
        go::<Dueling>(cli.run, cfg)
    } else {
        go::<Plain>(cli.run, cfg)
    }
}

fn go<Q: QFunction<OBS, ACTIONS>>(args: RunArgs, cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = &args.eval {
        let run = RunDir::open(dir)?;
        let mut agent = Dqn::<Q, OBS, ACTIONS>::new(cfg.clone(), args.seed)?;
        agent.load(&run.checkpoint_dir())?;
        let returns = evaluate::<Q, _, OBS, ACTIONS>(&agent.q, &gym_cartpole, cfg.eval_episodes, args.seed)?;
        let mean = returns.iter().sum::<f64>() / returns.len() as f64;
        println!("eval_mean_return={mean:.3} eval_episodes={} checkpoint={}", returns.len(), dir.display());
        return Ok(());
    }
    let (mut run, mut agent) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let saved = glimpse_dqn::saved_config(&run.checkpoint_dir())?;
            let mut agent = Dqn::<Q, OBS, ACTIONS>::new(saved, args.seed)?;
            agent.load(&run.checkpoint_dir())?;
            (run, agent)
        }
        None => {
            let run = RunDir::create("gym_cartpole_dqn", args.run_dir.clone())?;
            run.write_config(&cfg)?;
            (run, Dqn::<Q, OBS, ACTIONS>::new(cfg, args.seed)?)
        }
    };
    let summary = train(&mut agent, &gym_cartpole, &mut run, true)?;
    let value = serde_json::to_value(&summary)?;
    run.write_summary(&value)?;
    println!("{} run_dir={}", summary_line(&value), run.path().display());
    Ok(())
}
