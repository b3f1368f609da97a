//! What a PPO/A2C run trains and steps ([`Training`], saved whole in every checkpoint), its greedy
//! evaluation, and what a run ends with ([`Summary`], [`Outcome`]).

use std::path::Path;

use dfdx::nn::tensor_collection::TensorCollection;
use dfdx::prelude::Cpu;
use glimpse::checkpoint::{load_json, load_weights, save_json, save_weights, CheckpointError};
use glimpse::evaluate::evaluate_greedy;
use glimpse::limits::check_memory;
use glimpse::optim::{Adam, AdamConfig};
use glimpse::rollout::RolloutBuffer;
use glimpse::run::{Checkpoint, RunError};
use glimpse::vec_env::{VecEnv, VecEnvState};
use glimpse::{Env, Observation};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::policy::ActorCritic;
use crate::{Error, PpoConfig};

/// The policy's weights in a checkpoint.
pub const POLICY_FILE: &str = "policy.safetensors";
/// The training loop's state in a checkpoint ([`Progress`], the sampling stream, the envs).
pub const STATE_FILE: &str = "state.json";

/// Everything a PPO/A2C run trains and steps: the policy, its Adam moments, the envs, the
/// sampling stream and the loop's [`Progress`]. A checkpoint saves all of it, so a resumed run
/// continues bit for bit.
pub struct Training<E: Env, P: ActorCritic<O>, const O: usize> {
    /// The policy and value network.
    pub policy: P,
    /// Its optimizer (the learning rate is annealed in place).
    pub opt: Adam<P::Net>,
    /// The training envs.
    pub envs: VecEnv<E>,
    /// The sampling stream: actions and minibatch order (`StdRng` is this generator).
    pub rng: ChaCha12Rng,
    /// Counters, the learning curve and the last evaluation.
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
    /// `(env_steps, mean return of the training episodes that ended in that update)`.
    pub curve: Vec<(u64, f64)>,
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
    rng: ChaCha12Rng,
    /// The envs, or why they could not be saved (resuming then fails with that reason).
    envs: Result<VecEnvState, String>,
}

impl<E: Env + 'static, P: ActorCritic<O, Action = E::Act>, const O: usize> Training<E, P, O> {
    /// A fresh agent: `cfg.num_envs` envs from `make_env`, reset with `seed` (env i with
    /// `seed + i`), and `policy` with a zeroed Adam. Refuses an env whose spaces do not fit the
    /// policy, and a rollout that cannot fit in memory, before allocating anything large.
    pub fn new(cfg: &PpoConfig, policy: P, make_env: &dyn Fn() -> E, seed: u64) -> Result<Self, Error> {
        cfg.validate().map_err(Error::Config)?;
        let first = make_env();
        policy.check_spaces(&first.observation_space(), &first.action_space()).map_err(Error::Spaces)?;
        if E::Obs::DIM != O {
            return Err(Error::Spaces(format!(
                "the network reads {O} observation values, the env gives {}",
                E::Obs::DIM
            )));
        }
        let per_transition = 4 * (O + P::ACT_DIM) as u128 + 4 * 6 + 2;
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
        // ε = 1e-5 as CleanRL.
        let opt = Adam::new(policy.net(), AdamConfig { lr: cfg.learning_rate as f32, eps: 1e-5, ..Default::default() });
        Ok(Self {
            policy,
            opt,
            envs,
            rng: ChaCha12Rng::seed_from_u64(seed),
            progress: Progress::default(),
            rollout: RolloutBuffer::new(cfg.num_envs, cfg.num_steps, O, P::ACT_DIM),
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

impl<E: Env + 'static, P: ActorCritic<O>, const O: usize> Checkpoint for Training<E, P, O> {
    fn save(&self, snapshot: &Path) -> Result<(), CheckpointError> {
        save_weights(self.policy.net(), &snapshot.join(POLICY_FILE))?;
        self.opt.save(snapshot, "adam")?;
        let state = LoopState {
            progress: self.progress.clone(),
            rng: self.rng.clone(),
            envs: self.envs.save_state().map_err(|e| e.to_string()),
        };
        save_json(&state, &snapshot.join(STATE_FILE))
    }

    fn load(&mut self, snapshot: &Path) -> Result<(), CheckpointError> {
        let path = snapshot.join(STATE_FILE);
        let state: LoopState = load_json(&path)?;
        load_weights(self.policy.net_mut(), &snapshot.join(POLICY_FILE))?;
        self.opt.load(snapshot, "adam")?;
        match &state.envs {
            Ok(envs) => {
                self.envs.restore_state(envs).map_err(|e| CheckpointError::Corrupt { path, message: e.to_string() })?;
                self.unresumable = None;
            }
            Err(why) => self.unresumable = Some(why.clone()),
        }
        self.obs = self.envs.observations().to_vec();
        self.rng = state.rng;
        self.progress = state.progress;
        Ok(())
    }
}

/// A network's weights alone, as a checkpoint: what `--eval` and
/// [`Trainer::load_policy`](crate::Trainer::load_policy) read from a run.
pub struct NetWeights<'a, N>(pub &'a mut N);

impl<N: TensorCollection<f32, Cpu>> Checkpoint for NetWeights<'_, N> {
    fn save(&self, snapshot: &Path) -> Result<(), CheckpointError> {
        save_weights(&*self.0, &snapshot.join(POLICY_FILE))
    }
    fn load(&mut self, snapshot: &Path) -> Result<(), CheckpointError> {
        load_weights(self.0, &snapshot.join(POLICY_FILE))
    }
}

/// Greedy evaluation of `policy` (the mode of its distribution): `episodes` episodes of envs from
/// `make_env` run side by side, episode i seeded with `seed + i`, one batched forward pass per
/// step ([`evaluate_greedy`]).
pub fn evaluate_policy<E: Env, P: ActorCritic<O, Action = E::Act>, const O: usize>(
    policy: &P,
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
) -> Result<EvalStats, Error> {
    // The mode draws nothing from it; `act` takes one for sampling.
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let result = evaluate_greedy(make_env, episodes, seed, |obs| Ok(policy.act(obs, true, &mut rng).env_actions))?;
    Ok(EvalStats { mean_return: result.mean(), std_return: result.std(), episodes })
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

/// `--eval DIR`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Environment steps the checkpoint was trained for.
    pub env_steps: u64,
    /// The evaluation's seed (episode i is seeded with seed + i).
    pub seed: u64,
    /// Mean return.
    pub eval_mean_return: f64,
    /// Standard deviation of the returns.
    pub eval_std_return: f64,
    /// Episodes evaluated.
    pub eval_episodes: usize,
}

/// How a launch of a trainer ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run ended (solved or its budget spent): its summary.
    Finished(Summary),
    /// `--stop-after` was reached: a checkpoint is written and `--resume` continues the run.
    Stopped {
        /// Environment steps done.
        env_steps: u64,
    },
    /// `--eval DIR`: the checkpoint's evaluation.
    Evaluated(EvalReport),
}

impl Outcome {
    /// The summary of a finished run.
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Outcome::Finished(s) => Some(s),
            _ => None,
        }
    }
}
