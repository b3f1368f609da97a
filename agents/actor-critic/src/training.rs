//! What a PPO/A2C run trains and steps ([`Training`], saved whole in every checkpoint) and its
//! greedy evaluation ([`evaluate_policy`]).

use std::path::Path;

use dfdx::nn::tensor_collection::TensorCollection;
use dfdx::prelude::Cpu;
use glimpse::checkpoint::{load_json, load_weights, save_json, save_weights, CheckpointError};
use glimpse::evaluate::{evaluate_greedy, EvalResult};
use glimpse::optim::{Adam, AdamConfig};
use glimpse::rollout::RolloutBuffer;
use glimpse::run::{Checkpoint, EvalStats, RlMetrics, SavedEnvs};
use glimpse::validate::{self, SpaceMismatch};
use glimpse::vec_env::VecEnv;
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

/// What the checkpoint's [`STATE_FILE`] holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoopState {
    progress: Progress,
    rng: ChaCha12Rng,
    /// The envs, or why they could not be saved (resuming then fails with that reason).
    envs: SavedEnvs,
}

impl<E: Env + 'static, P: ActorCritic<O, Action = E::Act>, const O: usize> Training<E, P, O> {
    /// A fresh agent: `cfg.num_envs` envs from `make_env`, reset with `seed` (env i with
    /// `seed + i`), and `policy` with a zeroed Adam. Refuses an env whose spaces do not fit the
    /// policy, and a rollout that cannot fit in memory, before allocating anything large.
    pub fn new(cfg: &PpoConfig, policy: P, make_env: &dyn Fn() -> E, seed: u64) -> Result<Self, Error> {
        cfg.validate().map_err(Error::Config)?;
        let first = make_env();
        policy.check_spaces(&first.observation_space(), &first.action_space())?;
        if E::Obs::DIM != O {
            let found = format!("{} values per observation (its Obs type)", E::Obs::DIM);
            return Err(SpaceMismatch::Observation { expected: O, found }.into());
        }
        validate::rollout_memory(cfg.batch_size(), O, P::ACT_DIM).map_err(Error::Config)?;
        let env_bytes = std::mem::size_of::<E>();
        validate::evaluation_memory(cfg.eval_episodes, env_bytes, O).map_err(Error::Config)?;
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
            Some(why) => Err(Error::Resume(why.clone())),
        }
    }
}

impl<E: Env + 'static, P: ActorCritic<O>, const O: usize> Checkpoint for Training<E, P, O> {
    fn save(&self, snapshot: &Path) -> Result<(), CheckpointError> {
        save_weights(self.policy.net(), &snapshot.join(POLICY_FILE))?;
        self.opt.save(snapshot, "adam")?;
        let state =
            LoopState { progress: self.progress.clone(), rng: self.rng.clone(), envs: SavedEnvs::of(&self.envs) };
        save_json(&state, &snapshot.join(STATE_FILE))
    }

    fn load(&mut self, snapshot: &Path) -> Result<(), CheckpointError> {
        let path = snapshot.join(STATE_FILE);
        let state: LoopState = load_json(&path)?;
        load_weights(self.policy.net_mut(), &snapshot.join(POLICY_FILE))?;
        self.opt.load(snapshot, "adam")?;
        self.unresumable = state.envs.restore(&mut self.envs, &path)?;
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
/// step ([`evaluate_greedy`]); the env's spaces are checked first.
pub fn evaluate_policy<E: Env, P: ActorCritic<O, Action = E::Act>, const O: usize>(
    policy: &P,
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
) -> Result<EvalResult, Error> {
    let env = make_env();
    policy.check_spaces(&env.observation_space(), &env.action_space())?;
    Ok(evaluate_greedy(make_env, episodes, seed, |obs| Ok(policy.greedy_actions(obs)))?)
}

impl Progress {
    /// What `summary.json` holds beside the run layer's `seed`, `wall_seconds` and `env_steps`.
    pub(crate) fn metrics(&self, solve_threshold: Option<f64>) -> RlMetrics {
        RlMetrics::new(self.updates, self.solved_at_step, solve_threshold, self.last_eval.as_ref())
    }
}
