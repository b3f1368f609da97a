//! What a REINFORCE run trains and steps ([`Training`], saved whole in every checkpoint), its
//! greedy evaluation, what a run ends with, and [`Trainer`]: REINFORCE on any env with discrete
//! actions in a few lines, through the run layer.

use std::path::{Path, PathBuf};

use glimpse::checkpoint::{load_json, load_weights, save_json, save_weights, CheckpointError};
use glimpse::evaluate::evaluate_greedy;
use glimpse::limits::check_memory;
use glimpse::rollout::RolloutBuffer;
use glimpse::run::{Checkpoint, Launch, RunArgs, RunError};
use glimpse::vec_env::{VecEnv, VecEnvState};
use glimpse::{Env, Observation};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::{check_spaces, train, Error, Reinforce, ReinforceConfig};

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

/// A greedy evaluation's returns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalStats {
    /// Mean return.
    pub mean_return: f64,
    /// Standard deviation of the returns.
    pub std_return: f64,
    /// Episodes evaluated.
    pub episodes: usize,
}

/// What the checkpoint's [`STATE_FILE`] holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoopState {
    progress: Progress,
    running_mean: Option<f64>,
    rng: ChaCha12Rng,
    /// The envs, or why they could not be saved (resuming then fails with that reason).
    envs: Result<VecEnvState, String>,
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize> Training<E, O, A> {
    /// A fresh run: `cfg.num_envs` envs from `make_env`, reset with `seed` (env i with `seed + i`),
    /// networks drawn from `seed`. Refuses envs whose spaces do not fit the networks, and a rollout
    /// that cannot fit in memory, before allocating anything large.
    pub fn new(cfg: &ReinforceConfig, make_env: &dyn Fn() -> E, seed: u64) -> Result<Self, Error> {
        cfg.validate().map_err(Error::Config)?;
        let first = make_env();
        check_spaces::<O, A>(&first.observation_space(), &first.action_space()).map_err(Error::Spaces)?;
        if E::Obs::DIM != O {
            return Err(Error::Spaces(format!(
                "the network reads {O} observation values, the env gives {}",
                E::Obs::DIM
            )));
        }
        let per_transition = 4 * (O + 1) as u128 + 4 * 6 + 2;
        check_memory(
            "the rollout storage (num_envs × num_steps transitions)",
            cfg.batch_size() as u128,
            per_transition,
        )
        .map_err(Error::Config)?;
        // Evaluations run `eval_episodes` copies of the env side by side.
        let per_episode = (std::mem::size_of::<E>() + 4 * O + 64) as u128;
        check_memory("eval_episodes (episodes evaluated side by side)", cfg.eval_episodes as u128, per_episode)
            .map_err(Error::Config)?;
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
            Some(why) => Err(Error::Resume(format!("the checkpoint holds no environment state because {why}"))),
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
            envs: self.envs.save_state().map_err(|e| e.to_string()),
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
        match &state.envs {
            Ok(envs) => {
                self.envs.restore_state(envs).map_err(|e| CheckpointError::Corrupt { path, message: e.to_string() })?;
                self.unresumable = None;
            }
            Err(why) => self.unresumable = Some(why.clone()),
        }
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
/// per step ([`evaluate_greedy`]).
pub fn evaluate<E: Env<Act = usize>, const O: usize, const A: usize>(
    agent: &Reinforce<O, A>,
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
) -> Result<EvalStats, Error> {
    // The mode draws nothing from it; `act` takes one for sampling.
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let result = evaluate_greedy(make_env, episodes, seed, |obs| Ok(agent.act(obs, true, &mut rng)))?;
    Ok(EvalStats { mean_return: result.mean(), std_return: result.std(), episodes })
}

/// The seed of a run's `k`-th evaluation: fresh episodes every time (as DQN's).
pub fn eval_seed(seed: u64, k: u64) -> u64 {
    seed.wrapping_mul(7_919).wrapping_add(k.wrapping_mul(1_000_000))
}

/// A finished run's `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Seconds spent training, over every process of the run.
    pub wall_seconds: f64,
    /// Environment steps taken (all envs).
    pub env_steps: u64,
    /// Updates done.
    pub updates: u64,
    /// Whether an evaluation reached `solve_threshold`.
    pub solved: bool,
    /// The env step at which it did.
    pub solved_at_step: Option<u64>,
    /// The threshold (none: the run trained its whole budget).
    pub solve_threshold: Option<f64>,
    /// Mean return of the last greedy evaluation.
    pub eval_mean_return: Option<f64>,
    /// Standard deviation of its returns.
    pub eval_std_return: Option<f64>,
    /// Its number of episodes.
    pub eval_episodes: Option<usize>,
}

impl Progress {
    /// What `summary.json` holds beside the run layer's `seed`, `wall_seconds` and `env_steps`.
    pub(crate) fn metrics(&self, solve_threshold: Option<f64>) -> serde_json::Value {
        let eval = self.last_eval.as_ref();
        serde_json::json!({
            "updates": self.updates,
            "solved": self.solved_at_step.is_some(),
            "solved_at_step": self.solved_at_step,
            "solve_threshold": solve_threshold,
            "eval_mean_return": eval.map(|e| e.mean_return),
            "eval_std_return": eval.map(|e| e.std_return),
            "eval_episodes": eval.map(|e| e.episodes),
        })
    }
}

impl Summary {
    /// Reads the summary the run layer wrote.
    pub(crate) fn from_json(summary: serde_json::Value) -> Result<Self, Error> {
        serde_json::from_value(summary)
            .map_err(|e| Error::Run(RunError::Config { path: "summary.json".into(), message: e.to_string() }))
    }
}

/// How a launch of the trainer ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run ended (solved or its budget spent).
    Finished {
        /// Its `summary.json`.
        summary: Summary,
        /// Its curves and counters.
        progress: Box<Progress>,
    },
    /// `--stop-after` was reached: a checkpoint is written and `--resume` continues the run.
    Stopped {
        /// Environment steps done.
        env_steps: u64,
    },
    /// `--eval DIR`: the checkpoint's greedy evaluation.
    Evaluated {
        /// Environment steps the checkpoint was trained for.
        env_steps: u64,
        /// The evaluation.
        eval: EvalStats,
    },
}

/// Trains REINFORCE on envs from a factory, with networks reading `O` observation values and
/// giving `A` logits, in a run directory (TensorBoard events, checkpoints, `summary.json`).
/// [`new`](Trainer::new) checks the config and the env's spaces first.
pub struct Trainer<E, const O: usize, const A: usize> {
    config: ReinforceConfig,
    make_env: Box<dyn Fn() -> E>,
    args: RunArgs,
    name: String,
}

impl<E: Env<Act = usize> + 'static, const O: usize, const A: usize> Trainer<E, O, A> {
    /// A trainer of `config` on envs from `make_env` (seed 1, directory `runs/reinforce-<time>`
    /// unless set). One env is made here to check its spaces.
    pub fn new(config: ReinforceConfig, make_env: impl Fn() -> E + 'static) -> Result<Self, Error> {
        config.validate().map_err(Error::Config)?;
        let env = make_env();
        check_spaces::<O, A>(&env.observation_space(), &env.action_space()).map_err(Error::Spaces)?;
        Ok(Self { config, make_env: Box::new(make_env), args: RunArgs::default(), name: NAME.into() })
    }

    /// The seed of the networks' initialisation, the envs (env i: seed + i) and the sampling (default 1).
    pub fn seed(mut self, seed: u64) -> Self {
        self.args.seed = seed;
        self
    }

    /// The run directory (default `runs/<name>-<YYYYmmdd-HHMMSS>`).
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.args.run_dir = Some(dir.into());
        self
    }

    /// The name in the default run directory (default `reinforce`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Trains a new run to its end (solved, or its budget spent) and returns its summary.
    pub fn train(&self) -> Result<Summary, Error> {
        let args = RunArgs { seed: self.args.seed, run_dir: self.args.run_dir.clone(), ..RunArgs::default() };
        match self.run(&args)? {
            Outcome::Finished { summary, .. } => Ok(summary),
            other => unreachable!("a run without --stop-after or --eval ended as {other:?}"),
        }
    }

    /// Continues the run in `dir` (stopped or killed) to its end, with its saved config and seed.
    pub fn resume(&self, dir: impl AsRef<Path>) -> Result<Summary, Error> {
        let args = RunArgs { resume: Some(dir.as_ref().to_path_buf()), ..RunArgs::default() };
        match self.run(&args)? {
            Outcome::Finished { summary, .. } => Ok(summary),
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
    pub fn launch(&self, launch: Launch<ReinforceConfig>) -> Result<Outcome, Error> {
        match launch {
            Launch::Train(run) => {
                let mut training = Training::<E, O, A>::new(&run.config, &*self.make_env, run.seed)?;
                run.restore(&mut training)?;
                train(run, &mut training, &*self.make_env)
            }
            Launch::Eval(eval) => {
                let mut agent = Reinforce::<O, A>::new(&eval.config, eval.seed);
                eval.restore(&mut PolicyWeights(&mut agent))?;
                let stats = evaluate(&agent, &*self.make_env, eval.config.eval_episodes, eval.seed)?;
                eval.report(&serde_json::json!({
                    "env_steps": eval.done,
                    "seed": eval.seed,
                    "eval_mean_return": stats.mean_return,
                    "eval_std_return": stats.std_return,
                    "eval_episodes": stats.episodes,
                }));
                Ok(Outcome::Evaluated { env_steps: eval.done, eval: stats })
            }
        }
    }

    /// The agent of the last checkpoint in run directory `dir` (its policy; the value network
    /// and optimizers are fresh).
    pub fn load_agent(&self, dir: impl AsRef<Path>) -> Result<Reinforce<O, A>, Error> {
        let args = RunArgs { eval: Some(dir.as_ref().to_path_buf()), ..RunArgs::default() };
        let Launch::Eval(eval) = Launch::from_code(&self.name, &args, &self.config)? else {
            unreachable!("--eval launches an evaluation")
        };
        let mut agent = Reinforce::<O, A>::new(&eval.config, 0);
        eval.restore(&mut PolicyWeights(&mut agent))?;
        Ok(agent)
    }

    /// Greedy evaluation of the policy saved in run directory `dir`: `episodes` episodes, episode
    /// i seeded with `seed + i`. Nothing is written into `dir`.
    pub fn evaluate(&self, dir: impl AsRef<Path>, episodes: usize, seed: u64) -> Result<EvalStats, Error> {
        evaluate(&self.load_agent(dir)?, &*self.make_env, episodes, seed)
    }
}
