//! The library API for training DQN on one's own env ([`Trainer`]) and for using a trained
//! run's greedy policy ([`Policy`]), both through the run layer: a run started from code has
//! the same directory, TensorBoard events, checkpoints and `summary.json` as one started from
//! an example's command line.

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::evaluate::{evaluate_greedy, EvalResult};
use glimpse::run::{Checkpoint, Eval, Launch, Run, RunArgs};
use glimpse::Env;

use crate::network::Obs;
use crate::{check_spaces, greedy_actions, train, Config, DqnError, DuelingQ, MlpQ, QFunction, Summary, Training};

/// The name a run started from code goes by (its default directory is `runs/dqn-<time>`).
const NAME: &str = "dqn";

/// Trains a DQN with `O` observation values, `A` actions and hidden width `H` on envs from a
/// closure, in a run directory (TensorBoard events, checkpoints, `summary.json`).
///
/// [`new`](Trainer::new) checks the config and the env's spaces against the network, so a
/// 2-action network on a 3-action env is an error before anything runs.
pub struct Trainer<E, const O: usize, const A: usize, const H: usize = 64> {
    cfg: Config,
    make_env: Box<dyn Fn() -> E>,
    args: RunArgs,
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize, const H: usize> Trainer<E, O, A, H> {
    /// A new run of `cfg` on envs from `make_env` (seed 1, directory `runs/dqn-<time>` unless
    /// set). One env is made here to check its spaces.
    pub fn new(cfg: Config, make_env: impl Fn() -> E + 'static) -> Result<Self, DqnError> {
        cfg.validate().map_err(DqnError::Config)?;
        let env = make_env();
        check_spaces::<O, A>(&env.observation_space(), &env.action_space())?;
        let args = RunArgs { seed: 1, ..RunArgs::default() };
        Ok(Self { cfg, make_env: Box::new(make_env), args })
    }

    /// The run's seed: the same seed gives the same run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.args.seed = seed;
        self
    }

    /// Where the run's files go; it must not hold a checkpoint already.
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.args.run_dir = Some(dir.into());
        self
    }

    /// Continue the run saved in `dir` (stopped by [`train_until`](Trainer::train_until), or
    /// killed) from its last checkpoint, with its saved config and seed: the config given to
    /// [`new`](Trainer::new) and [`seed`](Trainer::seed) are not used.
    pub fn resume(mut self, dir: impl Into<PathBuf>) -> Self {
        (self.args.resume, self.args.run_dir) = (Some(dir.into()), None);
        self
    }

    /// Trains until an evaluation reaches `solve_threshold` or `total_timesteps` are done;
    /// prints and returns the summary.
    pub fn train(self) -> Result<Summary, DqnError> {
        let summary = self.train_until(None)?;
        summary.ok_or_else(|| DqnError::Config("the run stopped early without a --stop-after".into()))
    }

    /// [`train`](Trainer::train), but stops once `stop_after` env steps are done (when that is
    /// before the end): writes a checkpoint and returns `None`; [`resume`](Trainer::resume)
    /// then continues exactly as if the run had never stopped.
    pub fn train_until(mut self, stop_after: Option<u64>) -> Result<Option<Summary>, DqnError> {
        self.args.stop_after = stop_after;
        let matches = clap::ArgMatches::default(); // nothing given on a command line
        match Launch::new(NAME, &self.args, &self.cfg, &self.cfg, &matches)? {
            Launch::Train(run) => train_run::<E, O, A, H>(run, &*self.make_env),
            Launch::Eval(_) => Err(DqnError::Config("a Trainer does not evaluate; use Policy::load".into())),
        }
    }
}

/// Trains `run` with the plain or the dueling network of hidden width `H`, as its config says.
pub fn train_run<E, const O: usize, const A: usize, const H: usize>(
    run: Run<Config>,
    make_env: &dyn Fn() -> E,
) -> Result<Option<Summary>, DqnError>
where
    E: Env<Act = usize> + 'static,
{
    fn go<Q: QFunction<O, A>, E: Env<Act = usize> + 'static, const O: usize, const A: usize>(
        run: Run<Config>,
        make_env: &dyn Fn() -> E,
    ) -> Result<Option<Summary>, DqnError> {
        let mut state = Training::<Q, E, O, A>::new(run.config.clone(), make_env, run.seed)?;
        train(&mut state, run, make_env)
    }
    if run.config.dueling {
        go::<DuelingQ<O, A, H>, E, O, A>(run, make_env)
    } else {
        go::<MlpQ<O, A, H>, E, O, A>(run, make_env)
    }
}

/// The network of a [`Policy`].
enum Net<const O: usize, const A: usize, const H: usize> {
    Plain(MlpQ<O, A, H>),
    Dueling(DuelingQ<O, A, H>),
}

/// The greedy policy of a trained run (its online Q-network), loaded from the run directory.
pub struct Policy<const O: usize, const A: usize, const H: usize = 64> {
    net: Net<O, A, H>,
    dev: Cpu,
}

impl<const O: usize, const A: usize, const H: usize> Policy<O, A, H> {
    /// Loads the last checkpoint of the run in `run_dir` (finished or not); reads nothing else
    /// and writes nothing.
    pub fn load(run_dir: impl AsRef<Path>) -> Result<Self, DqnError> {
        let args = RunArgs { eval: Some(run_dir.as_ref().into()), ..RunArgs::default() };
        let cfg = Config::default();
        match Launch::new(NAME, &args, &cfg, &cfg, &clap::ArgMatches::default())? {
            Launch::Eval(eval) => Self::from_eval(&eval),
            Launch::Train(_) => Err(DqnError::Config("Policy::load opened a run for training".into())),
        }
    }

    /// Loads the checkpoint of an `--eval` launch.
    pub fn from_eval(eval: &Eval<Config>) -> Result<Self, DqnError> {
        let dev = Cpu::default();
        let net = if eval.config.dueling {
            Net::Dueling(<DuelingQ<O, A, H> as QFunction<O, A>>::build(&dev))
        } else {
            Net::Plain(<MlpQ<O, A, H> as QFunction<O, A>>::build(&dev))
        };
        let mut policy = Self { net, dev };
        eval.restore(&mut policy)?;
        Ok(policy)
    }

    /// The greedy action for each observation of a batch (`rows × O` values, row-major).
    pub fn actions(&self, obs: &[f32]) -> Result<Vec<usize>, DqnError> {
        whole_rows::<O>(obs)?;
        Ok(match &self.net {
            Net::Plain(q) => greedy_actions::<_, O, A>(q, &self.dev, obs),
            Net::Dueling(q) => greedy_actions::<_, O, A>(q, &self.dev, obs),
        })
    }

    /// Q(s, a) of every action for each observation of a batch: `rows × A` values, row-major.
    pub fn q_values(&self, obs: &[f32]) -> Result<Vec<f32>, DqnError> {
        let rows = whole_rows::<O>(obs)?;
        let x: Obs<O> = self.dev.tensor_from_vec(obs.to_vec(), (rows, Const::<O>));
        Ok(match &self.net {
            Net::Plain(q) => q.q_values(x).as_vec(),
            Net::Dueling(q) => q.q_values(x).as_vec(),
        })
    }

    /// Runs `episodes` greedy episodes side by side on envs from `make_env`, episode i reset
    /// with `seed + i` ([`glimpse::evaluate::evaluate_greedy`]); checks the env's spaces first.
    pub fn evaluate<E: Env<Act = usize>>(
        &self,
        make_env: &dyn Fn() -> E,
        episodes: usize,
        seed: u64,
    ) -> Result<EvalResult, DqnError> {
        let env = make_env();
        check_spaces::<O, A>(&env.observation_space(), &env.action_space())?;
        let act = |obs: &[f32]| self.actions(obs).map_err(|e| glimpse::EnvError::Other(e.to_string()));
        Ok(evaluate_greedy(make_env, episodes, seed, act)?)
    }
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
fn whole_rows<const O: usize>(obs: &[f32]) -> Result<usize, DqnError> {
    if !obs.len().is_multiple_of(O) {
        let message = format!("{} observation values are not whole observations of {O}", obs.len());
        return Err(DqnError::Env(glimpse::EnvError::Other(message)));
    }
    Ok(obs.len() / O)
}
