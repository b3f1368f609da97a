//! The command line every DQN example shares: common run flags plus every [`Config`] field.

use clap::{CommandFactory, FromArgMatches, Parser};
use dfdx::prelude::{BuildOnDevice, Cpu};
use glimpse::run::{resolve_config, summary_line, RunArgs, RunDir};
use glimpse::Env;

use crate::{evaluate, saved_config, train_until, Config, Dqn, DuelingQNetwork, QFunction, QNetwork, Summary};

/// The flags of a DQN example.
#[derive(Parser, Debug)]
pub struct Cli {
    /// Seed, run directory, resume, eval, config file.
    #[command(flatten)]
    pub run: RunArgs,
    /// DQN settings.
    #[command(flatten)]
    pub dqn: Config,
}

/// Parses the command line (defaults < `--config` file < flags) and trains, resumes or evaluates
/// a DQN with hidden width `H` on `make_env`. Prints the one-line summary and returns it
/// (None for `--eval`).
pub fn run_example<E, const O: usize, const A: usize, const H: usize>(
    name: &str,
    make_env: fn() -> E,
    defaults: Config,
) -> Result<Option<Summary>, Box<dyn std::error::Error>>
where
    E: Env<Act = usize> + 'static,
    QNetwork<O, A, H>: BuildOnDevice<Cpu, f32>,
    DuelingQNetwork<O, A, H>: BuildOnDevice<Cpu, f32>,
    <QNetwork<O, A, H> as BuildOnDevice<Cpu, f32>>::Built: QFunction<O, A>,
    <DuelingQNetwork<O, A, H> as BuildOnDevice<Cpu, f32>>::Built: QFunction<O, A>,
{
    let matches = Cli::command().about(format!("DQN example {name}")).get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let cfg = resolve_config(&defaults, &cli.dqn, cli.run.config.as_deref(), &matches)?;
    // A resumed or evaluated run uses its saved network kind, whatever the flags say.
    let dueling = match cli.run.resume.as_ref().or(cli.run.eval.as_ref()) {
        Some(dir) => saved_config(&RunDir::open(dir)?.checkpoint_dir())?.dueling,
        None => cfg.dueling,
    };
    if dueling {
        go::<<DuelingQNetwork<O, A, H> as BuildOnDevice<Cpu, f32>>::Built, E, O, A>(name, make_env, cli, cfg)
    } else {
        go::<<QNetwork<O, A, H> as BuildOnDevice<Cpu, f32>>::Built, E, O, A>(name, make_env, cli, cfg)
    }
}

fn go<Q, E, const O: usize, const A: usize>(
    name: &str,
    make_env: fn() -> E,
    cli: Cli,
    cfg: Config,
) -> Result<Option<Summary>, Box<dyn std::error::Error>>
where
    Q: QFunction<O, A>,
    E: Env<Act = usize> + 'static,
{
    let args: RunArgs = cli.run;
    if let Some(dir) = &args.eval {
        let run = RunDir::open(dir)?;
        let saved = saved_config(&run.checkpoint_dir())?;
        let mut agent = Dqn::<Q, O, A>::new(saved, args.seed)?;
        agent.load(&run.checkpoint_dir())?;
        let returns = evaluate::<Q, E, O, A>(&agent.q, &make_env, cfg.eval_episodes, args.seed)?;
        let mean = returns.iter().sum::<f64>() / returns.len().max(1) as f64;
        println!("eval_mean_return={mean:.3} eval_episodes={} checkpoint={}", returns.len(), dir.display());
        return Ok(None);
    }
    let (mut run, mut agent) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let mut saved = saved_config(&run.checkpoint_dir())?;
            // The step budget may be raised when resuming (this changes the epsilon and beta
            // schedules, so the run is then no longer the same as one with that budget from the
            // start); everything else stays as saved.
            saved.total_timesteps = saved.total_timesteps.max(cfg.total_timesteps);
            let mut agent = Dqn::<Q, O, A>::new(saved, args.seed)?;
            agent.load(&run.checkpoint_dir())?;
            eprintln!("resuming {} at env step {}", dir.display(), agent.state.global_step);
            (run, agent)
        }
        None => {
            let run = RunDir::create(name, args.run_dir.clone())?;
            run.write_config(&cfg)?;
            (run, Dqn::<Q, O, A>::new(cfg, args.seed)?)
        }
    };
    let Some(summary) = train_until(&mut agent, &make_env, &mut run, true, args.stop_after)? else {
        println!("stopped at env step {}; continue with --resume {}", agent.state.global_step, run.path().display());
        return Ok(None);
    };
    let value = serde_json::to_value(&summary)?;
    run.write_summary(&value)?;
    println!("{} run_dir={}", summary_line(&value), run.path().display());
    Ok(Some(summary))
}
