//! [`Trainer`]: PPO or A2C on any [`Env`] in a few lines, with a run directory (TensorBoard events,
//! checkpoints, `summary.json`), greedy evaluation, `--resume` and `--eval`; its methods are every
//! glimpse agent's ([`Train`]).
//!
//! ```no_run
//! use glimpse_actor_critic::prelude::*;
//!
//! let cfg = PpoConfig { total_timesteps: 50_000, solve_threshold: Some(475.0), ..PpoConfig::cartpole() };
//! let trainer = Trainer::discrete::<4, 2>(cfg, glimpse_envs::cartpole_v1)?.seed(1).run_dir("runs/my-ppo");
//! let summary = trainer.train()?;
//! println!("solved at {:?}, greedy mean {:?}", summary.solved_at_step, summary.eval_mean_return);
//! let again = trainer.evaluate("runs/my-ppo", 100, 7)?; // the saved policy, 100 new episodes
//! # Ok::<(), glimpse_actor_critic::Error>(())
//! ```

use glimpse::evaluate::{record_greedy, EvalResult, Frames};
use glimpse::run::{Eval, Outcome, Run, RunConfig, Setup, Train};
use glimpse::Env;

use crate::policy::{action_bounds, ActorCritic, DiscreteMlp, GaussianMlp, SeparateDiscrete, SeparateGaussian};
use crate::training::{evaluate_policy, NetWeights, Training};
use crate::{ppo, Error, PpoConfig, Summary};

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
/// each checks the env's spaces against the network first. Its methods (`seed`, `run_dir`,
/// `train`, `resume`, `run`, `run_command_line`, `load_policy`, `evaluate`) are [`Train`]'s.
pub struct Trainer<C, E, P, const O: usize> {
    setup: Setup<C>,
    make_env: Box<dyn Fn() -> E>,
    build: Box<dyn Fn(u64) -> P>,
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
        let (low, high) = action_bounds::<A>(&make_env().action_space())?;
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
        build(0).check_spaces(&env.observation_space(), &env.action_space())?;
        Ok(Trainer { setup: Setup::new(C::NAME, config), make_env: Box::new(make_env), build: Box::new(build) })
    }
}

impl<C, E, P, const O: usize> Train for Trainer<C, E, P, O>
where
    C: Algorithm,
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    type Config = C;
    type Policy = P;
    type Error = Error;

    fn setup(&self) -> &Setup<C> {
        &self.setup
    }

    fn setup_mut(&mut self) -> &mut Setup<C> {
        &mut self.setup
    }

    fn train_run(&self, run: Run<C>) -> Result<Outcome<Summary>, Error> {
        let mut agent = Training::new(&run.config.to_ppo(), (self.build)(run.seed), &*self.make_env, run.seed)?;
        ppo::train(run, &mut agent, &*self.make_env)
    }

    fn restore_policy(&self, eval: &Eval<C>) -> Result<P, Error> {
        let mut policy = (self.build)(eval.seed);
        eval.restore(&mut NetWeights(policy.net_mut()))?;
        Ok(policy)
    }

    fn evaluate_policy(&self, policy: &P, episodes: usize, seed: u64) -> Result<EvalResult, Error> {
        evaluate_policy(policy, &*self.make_env, episodes, seed)
    }

    fn eval_episodes(config: &C) -> usize {
        config.to_ppo().eval_episodes
    }

    fn record_policy(&self, policy: &P, episodes: usize, seed: u64, frame: &mut Frames) -> Result<EvalResult, Error> {
        let act = |obs: &[f32]| Ok(policy.greedy_actions(obs));
        Ok(record_greedy(&*self.make_env, episodes, seed, act, frame)?)
    }
}
