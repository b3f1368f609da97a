//! The library API for training DQN on one's own env ([`Trainer`], whose methods are every
//! agent's: [`glimpse::run::Train`]) and for using a trained run's greedy [`Policy`]. A run
//! started from code has the same directory, TensorBoard events, checkpoints and `summary.json`
//! as one started from an example's command line.

use std::path::Path;

use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::evaluate::{evaluate_greedy, record_greedy, EvalResult, Frames};
use glimpse::run::{Checkpoint, Eval, Outcome, Run, Setup, Train};
use glimpse::validate::discrete_spaces;
use glimpse::Env;

use crate::network::Obs;
use crate::{greedy_actions, train, Config, DuelingQ, Error, MlpQ, QFunction, Summary, Training};

/// The name a run started from code goes by (its default directory is `runs/dqn-<time>`).
const NAME: &str = "dqn";

/// Trains a DQN with `O` observation values, `A` actions and hidden width `H` on envs from a
/// closure, in a run directory (TensorBoard events, checkpoints, `summary.json`). Its methods
/// (`seed`, `run_dir`, `train`, `resume`, `run`, `run_command_line`, `load_policy`, `evaluate`)
/// are [`Train`]'s.
///
/// [`new`](Trainer::new) checks the config and the env's spaces against the network, so a
/// 2-action network on a 3-action env is an error before anything runs.
pub struct Trainer<E, const O: usize, const A: usize, const H: usize = 64> {
    setup: Setup<Config>,
    make_env: Box<dyn Fn() -> E>,
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize, const H: usize> Trainer<E, O, A, H> {
    /// A new run of `config` on envs from `make_env` (seed 1, directory `runs/dqn-<time>` unless
    /// set). One env is made here to check its spaces.
    pub fn new(config: Config, make_env: impl Fn() -> E + 'static) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let env = make_env();
        discrete_spaces::<O, A>(&env.observation_space(), &env.action_space())?;
        Ok(Self { setup: Setup::new(NAME, config), make_env: Box::new(make_env) })
    }
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize, const H: usize> Train for Trainer<E, O, A, H> {
    type Config = Config;
    type Policy = Policy<O, A, H>;
    type Error = Error;

    fn setup(&self) -> &Setup<Config> {
        &self.setup
    }

    fn setup_mut(&mut self) -> &mut Setup<Config> {
        &mut self.setup
    }

    /// Trains with the plain or the dueling network of hidden width `H`, as the run's config says.
    fn train_run(&self, run: Run<Config>) -> Result<Outcome<Summary>, Error> {
        fn go<Q: QFunction<O, A>, E: Env<Act = usize> + 'static, const O: usize, const A: usize>(
            run: Run<Config>,
            make_env: &dyn Fn() -> E,
        ) -> Result<Outcome<Summary>, Error> {
            let mut state = Training::<Q, E, O, A>::new(&run.config, make_env, run.seed)?;
            train(run, &mut state, make_env)
        }
        if run.config.dueling {
            go::<DuelingQ<O, A, H>, E, O, A>(run, &*self.make_env)
        } else {
            go::<MlpQ<O, A, H>, E, O, A>(run, &*self.make_env)
        }
    }

    fn restore_policy(&self, eval: &Eval<Config>) -> Result<Policy<O, A, H>, Error> {
        let dev = Cpu::default();
        let net = if eval.config.dueling {
            Net::Dueling(<DuelingQ<O, A, H> as QFunction<O, A>>::build(&dev))
        } else {
            Net::Plain(<MlpQ<O, A, H> as QFunction<O, A>>::build(&dev))
        };
        let mut policy = Policy { net, dev };
        eval.restore(&mut policy)?;
        Ok(policy)
    }

    fn evaluate_policy(&self, policy: &Policy<O, A, H>, episodes: usize, seed: u64) -> Result<EvalResult, Error> {
        evaluate_policy(policy, &*self.make_env, episodes, seed)
    }

    fn eval_episodes(config: &Config) -> usize {
        config.eval_episodes
    }

    fn record_policy(
        &self,
        policy: &Policy<O, A, H>,
        episodes: usize,
        seed: u64,
        frame: &mut Frames,
    ) -> Result<EvalResult, Error> {
        let act = |obs: &[f32]| policy.actions(obs).map_err(|e| glimpse::EnvError::Other(e.to_string()));
        Ok(record_greedy(&*self.make_env, episodes, seed, act, frame)?)
    }
}

/// The network of a [`Policy`].
enum Net<const O: usize, const A: usize, const H: usize> {
    Plain(MlpQ<O, A, H>),
    Dueling(DuelingQ<O, A, H>),
}

/// The greedy policy of a trained run (its online Q-network), from
/// [`load_policy`](Train::load_policy).
pub struct Policy<const O: usize, const A: usize, const H: usize = 64> {
    net: Net<O, A, H>,
    dev: Cpu,
}

impl<const O: usize, const A: usize, const H: usize> Policy<O, A, H> {
    /// The greedy action for each observation of a batch (`rows × O` values, row-major).
    pub fn actions(&self, obs: &[f32]) -> Result<Vec<usize>, Error> {
        whole_rows::<O>(obs)?;
        Ok(match &self.net {
            Net::Plain(q) => greedy_actions::<_, O, A>(q, &self.dev, obs),
            Net::Dueling(q) => greedy_actions::<_, O, A>(q, &self.dev, obs),
        })
    }

    /// Q(s, a) of every action for each observation of a batch: `rows × A` values, row-major.
    pub fn q_values(&self, obs: &[f32]) -> Result<Vec<f32>, Error> {
        let rows = whole_rows::<O>(obs)?;
        let x: Obs<O> = self.dev.tensor_from_vec(obs.to_vec(), (rows, Const::<O>));
        Ok(match &self.net {
            Net::Plain(q) => q.q_values(x).as_vec(),
            Net::Dueling(q) => q.q_values(x).as_vec(),
        })
    }
}

/// Greedy evaluation of `policy`: `episodes` episodes of envs from `make_env` side by side,
/// episode i reset with `seed + i` ([`evaluate_greedy`]); the env's spaces are checked first.
pub fn evaluate_policy<E: Env<Act = usize>, const O: usize, const A: usize, const H: usize>(
    policy: &Policy<O, A, H>,
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
) -> Result<EvalResult, Error> {
    let env = make_env();
    discrete_spaces::<O, A>(&env.observation_space(), &env.action_space())?;
    let act = |obs: &[f32]| policy.actions(obs).map_err(|e| glimpse::EnvError::Other(e.to_string()));
    Ok(evaluate_greedy(make_env, episodes, seed, act)?)
}

/// Only the online network: `q.safetensors` of a DQN snapshot.
impl<const O: usize, const A: usize, const H: usize> Checkpoint for Policy<O, A, H> {
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        let path = snap.join("q.safetensors");
        match &self.net {
            Net::Plain(q) => checkpoint::save_weights(q, &path),
            Net::Dueling(q) => checkpoint::save_weights(q, &path),
        }
    }

    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        let path = snap.join("q.safetensors");
        match &mut self.net {
            Net::Plain(q) => checkpoint::load_weights(q, &path),
            Net::Dueling(q) => checkpoint::load_weights(q, &path),
        }
    }
}

/// The number of observations of `O` values in `obs`; an error when it is not whole.
fn whole_rows<const O: usize>(obs: &[f32]) -> Result<usize, Error> {
    if !obs.len().is_multiple_of(O) {
        let message = format!("{} observation values are not whole observations of {O}", obs.len());
        return Err(Error::Env(glimpse::EnvError::Other(message)));
    }
    Ok(obs.len() / O)
}
