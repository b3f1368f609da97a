//! [`Trainer`]: PPO or A2C on any [`Env`] in a few lines, with a run directory (TensorBoard events,
//! checkpoints, `summary.json`), greedy evaluation, `--resume` and `--eval`.
//!
//! ```no_run
//! use glimpse_actor_critic::{PpoConfig, Trainer};
//!
//! let cfg = PpoConfig { total_timesteps: 50_000, solve_threshold: Some(475.0), ..PpoConfig::cartpole() };
//! let trainer = Trainer::discrete::<4, 2>(cfg, glimpse_envs::cartpole_v1)?.seed(1).run_dir("runs/my-ppo");
//! let summary = trainer.train()?;
//! println!("solved at {:?}, greedy mean {:?}", summary.solved_at_step, summary.eval_mean_return);
//! let again = trainer.evaluate("runs/my-ppo", 100, 7)?; // the saved policy, 100 new episodes
//! # Ok::<(), glimpse_actor_critic::Error>(())
//! ```

use std::path::{Path, PathBuf};

use glimpse::run::{Launch, RunArgs, RunConfig};
use glimpse::Env;

use crate::policy::{action_bounds, ActorCritic, DiscreteMlp, GaussianMlp, SeparateDiscrete, SeparateGaussian};
use crate::training::{evaluate_policy, EvalReport, EvalStats, NetWeights, Outcome, Summary, Training};
use crate::{ppo, Error, PpoConfig};

/// A config the actor-critic loop trains with: PPO's own, or one that is a special case of it
/// (A2C).
pub trait Algorithm: RunConfig + clap::Args {
    /// Short name (`ppo`, `a2c`): the default run directory is `runs/<name>-<time>`.
    const NAME: &'static str;
    /// The PPO settings that train this algorithm.
    fn to_ppo(&self) -> PpoConfig;
}

/// Trains a policy with PPO or A2C (its config `C`) on envs from a factory. Build it with
/// [`discrete`](Trainer::discrete), [`gaussian`](Trainer::gaussian) or [`new`](Trainer::new);
/// each checks the env's spaces against the network first.
pub struct Trainer<C, E, P, const O: usize> {
    config: C,
    make_env: Box<dyn Fn() -> E>,
    build: Box<dyn Fn(u64) -> P>,
    args: RunArgs,
    name: String,
}

impl<C: Algorithm, E: Env + 'static> Trainer<C, E, (), 0> {
    /// A categorical policy over `A` actions with 64-64 tanh actor and critic MLPs reading `O`
    /// observation values ([`DiscreteMlp`]). The env must have `O` observation values and
    /// `Discrete(A)` actions.
    pub fn discrete<const O: usize, const A: usize>(
        config: C,
        make_env: impl Fn() -> E + 'static,
    ) -> Result<Trainer<C, E, DiscreteMlp<O, A>, O>, Error>
    where
        E: Env<Act = usize>,
    {
        Trainer::new(config, make_env, DiscreteMlp::<O, A>::build::<SeparateDiscrete<O, A, 64>>)
    }

    /// A diagonal-Gaussian policy over `[f32; A]` with 64-64 tanh actor and critic MLPs reading
    /// `O` observation values ([`GaussianMlp`]); actions are clipped to the env's box for the env.
    /// The env must have `O` observation values and a box of `A` action values.
    pub fn gaussian<const O: usize, const A: usize>(
        config: C,
        make_env: impl Fn() -> E + 'static,
    ) -> Result<Trainer<C, E, GaussianMlp<O, A>, O>, Error>
    where
        E: Env<Act = [f32; A]>,
    {
        let (low, high) = action_bounds::<A>(&make_env().action_space()).map_err(Error::Spaces)?;
        let build = move |seed| GaussianMlp::<O, A>::build::<SeparateGaussian<O, A, 64>>(seed, low, high);
        Trainer::new(config, make_env, build)
    }

    /// Any policy: `build(seed)` makes it with weights drawn from `seed`.
    pub fn new<P: ActorCritic<O, Action = E::Act>, const O: usize>(
        config: C,
        make_env: impl Fn() -> E + 'static,
        build: impl Fn(u64) -> P + 'static,
    ) -> Result<Trainer<C, E, P, O>, Error> {
        config.validate().map_err(Error::Config)?;
        let env = make_env();
        build(0).check_spaces(&env.observation_space(), &env.action_space()).map_err(Error::Spaces)?;
        Ok(Trainer {
            config,
            make_env: Box::new(make_env),
            build: Box::new(build),
            args: RunArgs::default(),
            name: C::NAME.to_string(),
        })
    }
}

impl<C, E, P, const O: usize> Trainer<C, E, P, O>
where
    C: Algorithm,
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    /// The seed of the network's initialisation, the envs (env i: seed + i) and the sampling (default 1).
    pub fn seed(mut self, seed: u64) -> Self {
        self.args.seed = seed;
        self
    }

    /// The run directory (default `runs/<name>-<YYYYmmdd-HHMMSS>`).
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.args.run_dir = Some(dir.into());
        self
    }

    /// The name in the default run directory (default [`Algorithm::NAME`]).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The settings.
    pub fn config(&self) -> &C {
        &self.config
    }

    /// Trains a new run to its end (solved, or its budget spent) and returns its summary.
    pub fn train(&self) -> Result<Summary, Error> {
        let args = RunArgs { seed: self.args.seed, run_dir: self.args.run_dir.clone(), ..RunArgs::default() };
        match self.run(&args)? {
            Outcome::Finished(summary) => Ok(summary),
            other => unreachable!("a run without --stop-after or --eval ended as {other:?}"),
        }
    }

    /// Continues the run in `dir` (stopped or killed) to its end, with its saved config and seed.
    pub fn resume(&self, dir: impl AsRef<Path>) -> Result<Summary, Error> {
        let args = RunArgs { resume: Some(dir.as_ref().to_path_buf()), ..RunArgs::default() };
        match self.run(&args)? {
            Outcome::Finished(summary) => Ok(summary),
            other => unreachable!("a resume without --stop-after ended as {other:?}"),
        }
    }

    /// Runs what `args` ask for (a new run, `resume`, `eval`, `stop_after`; the seed and run
    /// directory given to the builder are not used), with this trainer's config under `args.config`.
    pub fn run(&self, args: &RunArgs) -> Result<Outcome, Error> {
        self.launch(Launch::from_code(&self.name, args, &self.config)?)
    }

    /// Parses the process's command line (the [`RunArgs`] flags and one flag per setting, this
    /// trainer's config as the defaults `--help` shows) and does what it asks for.
    pub fn run_command_line(&self, example: &str) -> Result<Outcome, Error> {
        self.launch(Launch::from_command_line_with(example, &self.config)?)
    }

    /// Trains, resumes or evaluates as `launch` says.
    pub fn launch(&self, launch: Launch<C>) -> Result<Outcome, Error> {
        match launch {
            Launch::Train(run) => {
                let cfg = run.config.to_ppo();
                let mut agent = Training::new(&cfg, (self.build)(run.seed), &*self.make_env, run.seed)?;
                run.restore(&mut agent)?;
                ppo::train(run, &mut agent, &*self.make_env)
            }
            Launch::Eval(eval) => {
                let mut policy = (self.build)(eval.seed);
                eval.restore(&mut NetWeights(policy.net_mut()))?;
                let episodes = eval.config.to_ppo().eval_episodes;
                let stats = evaluate_policy(&policy, &*self.make_env, episodes, eval.seed)?;
                let report = EvalReport {
                    env_steps: eval.done,
                    seed: eval.seed,
                    eval_mean_return: stats.mean_return,
                    eval_std_return: stats.std_return,
                    eval_episodes: stats.episodes,
                };
                eval.report(&report);
                Ok(Outcome::Evaluated(report))
            }
        }
    }

    /// The policy of the last checkpoint in run directory `dir`.
    pub fn load_policy(&self, dir: impl AsRef<Path>) -> Result<P, Error> {
        let args = RunArgs { eval: Some(dir.as_ref().to_path_buf()), ..RunArgs::default() };
        let Launch::Eval(eval) = Launch::from_code(&self.name, &args, &self.config)? else {
            unreachable!("--eval launches an evaluation")
        };
        let mut policy = (self.build)(0);
        eval.restore(&mut NetWeights(policy.net_mut()))?;
        Ok(policy)
    }

    /// Greedy evaluation of the policy saved in run directory `dir`: `episodes` episodes, episode
    /// i seeded with `seed + i`. Nothing is written into `dir`.
    pub fn evaluate(&self, dir: impl AsRef<Path>, episodes: usize, seed: u64) -> Result<EvalStats, Error> {
        evaluate_policy(&self.load_policy(dir)?, &*self.make_env, episodes, seed)
    }
}
