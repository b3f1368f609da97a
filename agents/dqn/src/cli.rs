//! The command line every DQN example shares: the run layer's flags (`--seed`, `--run-dir`,
//! `--resume`, `--eval`, `--config`, `--stop-after`) plus every [`Config`] field, with the
//! example's defaults shown in `--help`.

use clap::{CommandFactory, FromArgMatches};
use glimpse::run::{with_defaults, Cli, Launch};
use glimpse::Env;

use crate::{train_run, Config, DqnError, Policy, Summary};

/// What a command line did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run ended (solved or budget spent) with this summary.
    Finished(Summary),
    /// `--stop-after` stopped it; `--resume` continues it.
    Stopped,
    /// `--eval` printed this evaluation.
    Evaluated(serde_json::Value),
}

/// Parses the process's command line (defaults < `--config` file < flags; `--help` shows
/// `defaults`) and trains, resumes or evaluates a DQN with hidden width `H` on `make_env`.
pub fn run_example<E, const O: usize, const A: usize, const H: usize>(
    name: &str,
    make_env: impl Fn() -> E,
    defaults: &Config,
) -> Result<Outcome, DqnError>
where
    E: Env<Act = usize> + 'static,
{
    launch::<E, O, A, H>(Launch::from_command_line_with(name, defaults)?, &make_env)
}

/// [`run_example`] on the given arguments (the first is the program name) instead of the
/// process's; a flag error is returned rather than printed.
pub fn run_with_args<E, const O: usize, const A: usize, const H: usize>(
    name: &str,
    make_env: impl Fn() -> E,
    defaults: &Config,
    args: &[&str],
) -> Result<Outcome, DqnError>
where
    E: Env<Act = usize> + 'static,
{
    let command = with_defaults(Cli::<Config>::command().bin_name(name.to_string()), defaults);
    let flags = |e: clap::Error| DqnError::Config(e.to_string().trim().to_string());
    let matches = command.try_get_matches_from(args).map_err(flags)?;
    let cli = Cli::<Config>::from_arg_matches(&matches).map_err(flags)?;
    launch::<E, O, A, H>(Launch::new(name, &cli.run, &cli.config, defaults, &matches)?, &make_env)
}

/// Trains (a new or a resumed run) or evaluates (`--eval`, one line printed).
fn launch<E, const O: usize, const A: usize, const H: usize>(
    launch: Launch<Config>,
    make_env: &dyn Fn() -> E,
) -> Result<Outcome, DqnError>
where
    E: Env<Act = usize> + 'static,
{
    match launch {
        Launch::Train(run) => Ok(train_run::<E, O, A, H>(run, make_env)?.map_or(Outcome::Stopped, Outcome::Finished)),
        Launch::Eval(eval) => {
            let policy = Policy::<O, A, H>::from_eval(&eval)?;
            let result = policy.evaluate(make_env, eval.config.eval_episodes, eval.seed)?;
            Ok(Outcome::Evaluated(eval.report(&serde_json::json!({
                "eval_mean_return": result.mean(),
                "eval_std_return": result.std(),
                "eval_episodes": result.returns.len(),
                "env_steps": eval.done,
            }))))
        }
    }
}
