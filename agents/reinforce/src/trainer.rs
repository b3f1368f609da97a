//! What a REINFORCE run trains and steps ([`Training`], saved whole in every checkpoint), its
//! greedy evaluation, and [`Trainer`]: REINFORCE on any env with discrete actions in a few lines,
//! through the run layer (its methods are every glimpse agent's, [`Train`]).

use std::path::Path;

use glimpse::checkpoint::{load_json, load_weights, save_json, save_weights, CheckpointError};
use glimpse::evaluate::{evaluate_greedy, record_greedy, EvalResult, Frames};
use glimpse::rollout::RolloutBuffer;
use glimpse::run::{Checkpoint, Eval, EvalStats, Outcome, RlMetrics, Run, SavedEnvs, Setup, Train};
use glimpse::validate::{self, discrete_spaces, SpaceMismatch};
use glimpse::vec_env::VecEnv;
use glimpse::{Env, Observation};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::{train, Error, Reinforce, ReinforceConfig, Summary};

/// The name a run started from code goes by (its default directory is `runs/reinforce-<time>`).
const NAME: &str = "reinforce";
/// The policy's weights in a checkpoint.
pub const POLICY_FILE: &str = "policy.safetensors";
/// The value network's weights in a checkpoint.
pub const VALUE_FILE: &str = "value.safetensors";
/// The training loop's state in a checkpoint.
pub const STATE_FILE: &str = "state.json";

/// Everything a REINFORCE run trains and steps: the agent (both networks, both optimizers, the
/// running mean), the envs, the sampling stream and the loop's [`Progress`]. A checkpoint saves
/// all of it, so a resumed run continues bit for bit.
pub struct Training<E: Env, const O: usize, const A: usize> {
    /// The networks and optimizers.
    pub agent: Reinforce<O, A>,
    /// The training envs.
    pub envs: VecEnv<E>,
    /// The sampling stream (`StdRng` is this generator).
    pub rng: ChaCha12Rng,
    /// Counters, curves and the last evaluation.
    pub progress: Progress,
    pub(crate) rollout: RolloutBuffer,
    /// The envs' current observations `[num_envs × O]`.
    pub(crate) obs: Vec<f32>,
    /// Set when a loaded checkpoint holds no env state (an env that cannot save it): why.
    unresumable: Option<String>,
}

/// Where the training loop stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Updates done.
    pub updates: u64,
    /// Environment steps done (all envs).
    pub env_steps: u64,
    /// `(env_steps, mean return of the episodes that ended in that update)`.
    pub curve: Vec<(u64, f64)>,
    /// Every gradient-variance estimate, `(env_steps, variance)`.
    pub grad_variances: Vec<(u64, f64)>,
    /// Every same-batch estimate for all baselines, `(env_steps, [none, running mean, value])`.
    pub same_batch_grad_variances: Vec<(u64, [f64; 3])>,
    /// Greedy evaluations done (evaluation k's episodes are seeded from the run's seed and k).
    pub evals: u64,
    /// The last greedy evaluation.
    pub last_eval: Option<EvalStats>,
    /// The env step at which an evaluation reached `solve_threshold`.
    pub solved_at_step: Option<u64>,
}

/// What the checkpoint's [`STATE_FILE`] holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoopState {
    progress: Progress,
    running_mean: Option<f64>,
    rng: ChaCha12Rng,
    /// The envs, or why they could not be saved (resuming then fails with that reason).
    envs: SavedEnvs,
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize> Training<E, O, A> {
    /// A fresh run: `cfg.num_envs` envs from `make_env`, reset with `seed` (env i with `seed + i`),
    /// networks drawn from `seed`. Refuses envs whose spaces do not fit the networks, and a rollout
    /// that cannot fit in memory, before allocating anything large.
    pub fn new(cfg: &ReinforceConfig, make_env: &dyn Fn() -> E, seed: u64) -> Result<Self, Error> {
        cfg.validate().map_err(Error::Config)?;
        let first = make_env();
        discrete_spaces::<O, A>(&first.observation_space(), &first.action_space())?;
        if E::Obs::DIM != O {
            let found = format!("{} values per observation (its Obs type)", E::Obs::DIM);
            return Err(SpaceMismatch::Observation { expected: O, found }.into());
        }
        validate::rollout_memory(cfg.batch_size(), O, 1).map_err(Error::Config)?;
        let env_bytes = std::mem::size_of::<E>();
        validate::evaluation_memory(cfg.eval_episodes, env_bytes, O).map_err(Error::Config)?;
        let envs = std::iter::once(first).chain((1..cfg.num_envs).map(|_| make_env())).collect();
        let mut envs = VecEnv::new(envs, cfg.workers)?;
        let obs = envs.reset(Some(seed))?.to_vec();
        Ok(Self {
            agent: Reinforce::new(cfg, seed),
            envs,
            rng: ChaCha12Rng::seed_from_u64(seed),
            progress: Progress::default(),
            rollout: RolloutBuffer::new(cfg.num_envs, cfg.num_steps, O, 1),
            obs,
            unresumable: None,
        })
    }

    /// Fails when the loaded checkpoint cannot be continued exactly.
    pub(crate) fn check_resumable(&self) -> Result<(), Error> {
        match &self.unresumable {
            None => Ok(()),
            Some(why) => Err(Error::Resume(why.clone())),
        }
    }
}

impl<E: Env + 'static, const O: usize, const A: usize> Checkpoint for Training<E, O, A> {
    fn save(&self, snapshot: &Path) -> Result<(), CheckpointError> {
        save_weights(&self.agent.policy, &snapshot.join(POLICY_FILE))?;
        save_weights(&self.agent.value, &snapshot.join(VALUE_FILE))?;
        self.agent.policy_opt.save(snapshot, "policy_adam")?;
        self.agent.value_opt.save(snapshot, "value_adam")?;
        let state = LoopState {
            progress: self.progress.clone(),
            running_mean: self.agent.running_mean,
            rng: self.rng.clone(),
            envs: SavedEnvs::of(&self.envs),
        };
        save_json(&state, &snapshot.join(STATE_FILE))
    }

    fn load(&mut self, snapshot: &Path) -> Result<(), CheckpointError> {
        let path = snapshot.join(STATE_FILE);
        let state: LoopState = load_json(&path)?;
        load_weights(&mut self.agent.policy, &snapshot.join(POLICY_FILE))?;
        load_weights(&mut self.agent.value, &snapshot.join(VALUE_FILE))?;
        self.agent.policy_opt.load(snapshot, "policy_adam")?;
        self.agent.value_opt.load(snapshot, "value_adam")?;
        self.unresumable = state.envs.restore(&mut self.envs, &path)?;
        self.obs = self.envs.observations().to_vec();
        self.agent.running_mean = state.running_mean;
        self.rng = state.rng;
        self.progress = state.progress;
        Ok(())
    }
}

/// The policy's weights alone, as a checkpoint: what `--eval` reads from a run.
struct PolicyWeights<'a, const O: usize, const A: usize>(&'a mut Reinforce<O, A>);

impl<const O: usize, const A: usize> Checkpoint for PolicyWeights<'_, O, A> {
    fn save(&self, snapshot: &Path) -> Result<(), CheckpointError> {
        save_weights(&self.0.policy, &snapshot.join(POLICY_FILE))
    }
    fn load(&mut self, snapshot: &Path) -> Result<(), CheckpointError> {
        load_weights(&mut self.0.policy, &snapshot.join(POLICY_FILE))
    }
}

/// Greedy evaluation of `agent`'s policy (its most probable action): `episodes` episodes of envs
/// from `make_env` run side by side, episode i seeded with `seed + i`, one batched forward pass
/// per step ([`evaluate_greedy`]); the env's spaces are checked first.
pub fn evaluate_policy<E: Env<Act = usize>, const O: usize, const A: usize>(
    agent: &Reinforce<O, A>,
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
) -> Result<EvalResult, Error> {
    let env = make_env();
    discrete_spaces::<O, A>(&env.observation_space(), &env.action_space())?;
    // The mode draws nothing from it; `act` takes one for sampling.
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    Ok(evaluate_greedy(make_env, episodes, seed, |obs| Ok(agent.act(obs, true, &mut rng)))?)
}

impl Progress {
    /// What `summary.json` holds beside the run layer's `seed`, `wall_seconds` and `env_steps`.
    pub(crate) fn metrics(&self, solve_threshold: Option<f64>) -> RlMetrics {
        RlMetrics::new(self.updates, self.solved_at_step, solve_threshold, self.last_eval.as_ref())
    }
}

/// Trains REINFORCE on envs from a factory, with networks reading `O` observation values and
/// giving `A` logits, in a run directory (TensorBoard events, checkpoints, `summary.json`).
/// [`new`](Trainer::new) checks the config and the env's spaces first. Its methods (`seed`,
/// `run_dir`, `train`, `resume`, `run`, `run_command_line`, `load_policy`, `evaluate`) are
/// [`Train`]'s.
pub struct Trainer<E, const O: usize, const A: usize> {
    setup: Setup<ReinforceConfig>,
    make_env: Box<dyn Fn() -> E>,
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize> Trainer<E, O, A> {
    /// A trainer of `config` on envs from `make_env` (seed 1, directory `runs/reinforce-<time>`
    /// unless set). One env is made here to check its spaces.
    pub fn new(config: ReinforceConfig, make_env: impl Fn() -> E + 'static) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let env = make_env();
        discrete_spaces::<O, A>(&env.observation_space(), &env.action_space())?;
        Ok(Self { setup: Setup::new(NAME, config), make_env: Box::new(make_env) })
    }

    /// The loop's progress (learning curve, gradient-variance estimates, counters, last
    /// evaluation) saved in the last checkpoint of run directory `dir`.
    pub fn load_progress(&self, dir: impl AsRef<Path>) -> Result<Progress, Error> {
        let eval = self.setup.open(dir.as_ref())?;
        let state: LoopState = load_json(&eval.snapshot.join(STATE_FILE)).map_err(glimpse::run::RunError::from)?;
        Ok(state.progress)
    }
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize> Train for Trainer<E, O, A> {
    type Config = ReinforceConfig;
    type Policy = Reinforce<O, A>;
    type Error = Error;

    fn setup(&self) -> &Setup<ReinforceConfig> {
        &self.setup
    }

    fn setup_mut(&mut self) -> &mut Setup<ReinforceConfig> {
        &mut self.setup
    }

    fn train_run(&self, run: Run<ReinforceConfig>) -> Result<Outcome<Summary>, Error> {
        let mut training = Training::<E, O, A>::new(&run.config, &*self.make_env, run.seed)?;
        train(run, &mut training, &*self.make_env)
    }

    /// The agent of the checkpoint: its policy (the value network and optimizers are fresh).
    fn restore_policy(&self, eval: &Eval<ReinforceConfig>) -> Result<Reinforce<O, A>, Error> {
        let mut agent = Reinforce::<O, A>::new(&eval.config, eval.seed);
        eval.restore(&mut PolicyWeights(&mut agent))?;
        Ok(agent)
    }

    fn evaluate_policy(&self, agent: &Reinforce<O, A>, episodes: usize, seed: u64) -> Result<EvalResult, Error> {
        evaluate_policy(agent, &*self.make_env, episodes, seed)
    }

    fn eval_episodes(config: &ReinforceConfig) -> usize {
        config.eval_episodes
    }

    fn record_policy(
        &self,
        agent: &Reinforce<O, A>,
        episodes: usize,
        seed: u64,
        frame: &mut Frames,
    ) -> Result<EvalResult, Error> {
        // The mode draws nothing from it; `act` takes one for sampling.
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let act = |obs: &[f32]| Ok(agent.act(obs, true, &mut rng));
        Ok(record_greedy(&*self.make_env, episodes, seed, act, frame)?)
    }
}
