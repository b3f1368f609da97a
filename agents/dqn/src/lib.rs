//! Deep Q-Networks (Mnih et al. 2015) with the usual improvements as options: Double DQN,
//! dueling heads, n-step returns, prioritized replay, Polyak target updates.
//!
//! Reads like a CleanRL script: [`Config`] at the top, the network as a typed dfdx module
//! ([`network::QNetwork`]), the agent's pieces ([`Dqn::act`], [`Dqn::observe`], [`Dqn::train_step`])
//! and one visible loop in [`train`]. The replay buffer, vector env, TensorBoard writer,
//! checkpoints and optimizer come from the shared `glimpse` layer.

pub mod cli;
pub mod config;
pub mod network;

use std::path::Path;
use std::time::Instant;

use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::optim::{copy_params, polyak_update, Adam, AdamConfig};
use glimpse::replay::{Batch, NStep, NStepState, PrioritizedReplay, ReplayBuffer};
use glimpse::run::{Progress, RunDir, RunError};
use glimpse::vec_env::{VecEnv, VecEnvState};
use glimpse::{Env, EnvError, Observation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use config::{Config, Loss};
pub use network::{DuelingQNetwork, QFunction, QNetwork};

/// Everything that can stop a DQN run.
#[derive(Debug, thiserror::Error)]
pub enum DqnError {
    /// A setting is out of range.
    #[error("invalid config: {0}")]
    Config(String),
    /// The environment failed.
    #[error("environment: {0}")]
    Env(#[from] EnvError),
    /// The run directory or TensorBoard file could not be written.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A run cannot continue exactly from where it stopped.
    #[error("cannot resume exactly: {0}")]
    Resume(String),
    /// The loss became NaN or infinite: training diverged.
    #[error("the TD loss became {loss} at gradient step {gradient_step} (env step {env_step}); lower the learning rate or enable gradient clipping")]
    NonFiniteLoss {
        /// The loss value.
        loss: f32,
        /// Gradient steps done.
        gradient_step: u64,
        /// Environment steps done.
        env_step: u64,
    },
    /// A gradient became NaN or infinite (the optimizer refused the step).
    #[error(transparent)]
    NonFiniteGradient(#[from] glimpse::optim::NonFiniteGradient),
}

impl From<std::io::Error> for DqnError {
    fn from(e: std::io::Error) -> Self {
        DqnError::Run(RunError::Io { path: "<tensorboard>".into(), source: e })
    }
}

enum Replay {
    Uniform(ReplayBuffer),
    Prioritized(PrioritizedReplay),
}

impl Replay {
    fn len(&self) -> usize {
        match self {
            Replay::Uniform(b) => b.len(),
            Replay::Prioritized(p) => p.len(),
        }
    }
    fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        match self {
            Replay::Uniform(b) => b.save(path),
            Replay::Prioritized(p) => p.save(path),
        }
    }
    fn load(&mut self, path: &Path) -> Result<(), CheckpointError> {
        match self {
            Replay::Uniform(b) => b.load(path),
            Replay::Prioritized(p) => p.load(path),
        }
    }
    fn push(&mut self, o: &[f32], a: &[f32], r: f32, n: &[f32], t: bool, d: f32) {
        match self {
            Replay::Uniform(b) => b.push(o, a, r, n, t, d),
            Replay::Prioritized(p) => p.push(o, a, r, n, t, d),
        };
    }
}

/// A scalar loss carrying the tape of the online network.
type TracedLoss = Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>;

/// Counters and random state saved in the checkpoint's `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Environment steps taken (all envs together).
    pub global_step: u64,
    /// Gradient steps taken.
    pub gradient_steps: u64,
    /// Episodes finished.
    pub episodes: u64,
    /// The run's seed.
    pub seed: u64,
    /// The agent's random stream (exploration and replay sampling).
    pub rng: ChaCha8Rng,
}

/// Where [`train`]'s loop stood when it saved a checkpoint: with it a resumed run continues
/// bit-identically (same episodes, same evaluations, same logged averages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopState {
    /// The environments (states, running episode statistics, current observations), or why
    /// they could not be saved (e.g. a Python env): resuming then fails with that reason.
    pub envs: Result<VecEnvState, String>,
    /// Greedy evaluations done (their seeds follow this count).
    pub evals: u64,
    /// Sums of loss, mean Q and gradient norm since the last logged average, and their count.
    pub stat_sums: [f64; 3],
    /// Gradient steps in `stat_sums`.
    pub stat_count: u64,
    /// The last (up to 20) episode returns, for the progress bar.
    pub recent_returns: std::collections::VecDeque<f64>,
    /// Set in the final checkpoint of a run that reached `solve_threshold`: such a run is finished.
    #[serde(default)]
    pub solved_at_step: Option<u64>,
}

/// What a checkpoint holds besides networks, optimizer, replay and [`TrainState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingState {
    /// Steps waiting for their n-step return.
    nstep: NStepState,
    /// Q(s, a) of the last trained batch (logged as a histogram at evaluations).
    last_q_values: Vec<f64>,
    /// The training loop, when the agent was saved by [`train`].
    train_loop: Option<LoopState>,
}

/// Loss, mean Q and gradient norm of one gradient step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainStats {
    /// The TD loss.
    pub loss: f32,
    /// Mean Q(s, a) over the batch.
    pub mean_q: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// A DQN agent: online and target networks, optimizer, replay, and counters.
///
/// The dfdx device's random generator is used only to initialise the networks; everything random
/// after that draws from `state.rng`, which checkpoints save.
pub struct Dqn<Q, const O: usize, const A: usize> {
    /// The settings.
    pub cfg: Config,
    /// The online Q-network.
    pub q: Q,
    /// The target network: an independent copy (own tensors), never traced.
    pub target: Q,
    /// The optimizer of `q`.
    pub opt: Adam<Q>,
    /// Counters and random state.
    pub state: TrainState,
    dev: Cpu,
    grads: Option<Gradients<f32, Cpu>>,
    replay: Replay,
    nstep: NStep,
    batch: Batch,
    last_q_values: Vec<f32>,
    /// Where [`train`] stopped (saved with the agent; a later `train` call continues from it).
    pub train_loop: Option<LoopState>,
}

impl<Q: QFunction<O, A>, const O: usize, const A: usize> Dqn<Q, O, A> {
    /// A fresh agent; `seed` fixes the network initialisation, exploration and sampling.
    pub fn new(cfg: Config, seed: u64) -> Result<Self, DqnError> {
        cfg.validate().map_err(DqnError::Config)?;
        let dev = Cpu::seed_from_u64(seed);
        let q = Q::build(&dev);
        // A separately built module, then a value copy: `clone()` would share tensor ids with `q`.
        let mut target = Q::build(&dev);
        copy_params(&mut target, &q);
        let opt = Adam::new(&q, AdamConfig { lr: cfg.learning_rate, ..Default::default() });
        let grads = Some(q.alloc_grads());
        let replay = if cfg.prioritized {
            Replay::Prioritized(PrioritizedReplay::new(cfg.buffer_size, O, 1, cfg.per_alpha))
        } else {
            Replay::Uniform(ReplayBuffer::new(cfg.buffer_size, O, 1))
        };
        let nstep = NStep::new(cfg.num_envs, cfg.n_step, cfg.gamma, O, 1);
        let state = TrainState {
            global_step: 0,
            gradient_steps: 0,
            episodes: 0,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x5eed)),
        };
        Ok(Self {
            cfg,
            q,
            target,
            opt,
            state,
            dev,
            grads,
            replay,
            nstep,
            batch: Batch::default(),
            last_q_values: vec![],
            train_loop: None,
        })
    }

    /// Number of stored transitions.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }

    /// Greedy actions for a batch of observations `[rows * O]`.
    pub fn greedy_actions(&self, obs: &[f32]) -> Vec<usize> {
        greedy_actions(&self.q, &self.dev, obs)
    }

    /// Epsilon-greedy actions for a batch of observations `[rows * O]` into `actions`.
    pub fn act(&mut self, obs: &[f32], epsilon: f64, actions: &mut Vec<usize>) {
        let rows = obs.len() / O;
        actions.clear();
        let explore: Vec<bool> = (0..rows).map(|_| self.state.rng.gen::<f64>() < epsilon).collect();
        let greedy = if explore.iter().all(|&e| e) { vec![] } else { self.greedy_actions(obs) };
        for (i, &e) in explore.iter().enumerate() {
            actions.push(if e { self.state.rng.gen_range(0..A) } else { greedy[i] });
        }
    }

    /// Records env `env`'s transition; `next_obs` is the true next observation (the final one
    /// when the episode ended).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        env: usize,
        obs: &[f32],
        action: usize,
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
        truncated: bool,
    ) {
        let replay = &mut self.replay;
        self.nstep.push(env, obs, &[action as f32], reward, next_obs, terminated, truncated, |o, a, r, n, t, d| {
            replay.push(o, a, r, n, t, d)
        });
    }

    /// One gradient step on a sampled batch. `beta` is the importance-sampling exponent
    /// (ignored without prioritized replay).
    pub fn train_step(&mut self, beta: f64) -> Result<TrainStats, DqnError> {
        let grads = self.grads.take().expect("gradients are put back after every step");
        let (loss, targets, q_sa_values) = self.td_loss(beta, grads);
        let loss_value = loss.array();
        if !loss_value.is_finite() {
            self.grads = Some(self.q.alloc_grads());
            return Err(DqnError::NonFiniteLoss {
                loss: loss_value,
                gradient_step: self.state.gradient_steps,
                env_step: self.state.global_step,
            });
        }
        let mut grads = loss.backward();
        let max_norm = (self.cfg.max_grad_norm > 0.0).then_some(self.cfg.max_grad_norm);
        let grad_norm = self.opt.update(&mut self.q, &mut grads, max_norm);
        self.q.zero_grads(&mut grads);
        self.grads = Some(grads);
        let grad_norm = grad_norm?;
        self.state.gradient_steps += 1;

        if let Replay::Prioritized(per) = &mut self.replay {
            let td: Vec<f32> = q_sa_values.iter().zip(&targets).map(|(q, y)| q - y).collect();
            per.update_priorities(&self.batch.indices, &td);
        }
        let mean_q = q_sa_values.iter().sum::<f32>() / q_sa_values.len() as f32;
        self.last_q_values = q_sa_values;
        Ok(TrainStats { loss: loss_value, mean_q, grad_norm })
    }

    /// Samples a batch and builds the TD loss on a tape started from `grads`. Returns the loss,
    /// the TD targets and Q(s, a) of the batch.
    fn td_loss(&mut self, beta: f64, grads: Gradients<f32, Cpu>) -> (TracedLoss, Vec<f32>, Vec<f32>) {
        let b = self.cfg.batch_size;
        match &self.replay {
            Replay::Uniform(buf) => buf.sample(b, &mut self.state.rng, &mut self.batch),
            Replay::Prioritized(per) => per.sample(b, beta, &mut self.state.rng, &mut self.batch),
        }
        let batch = &self.batch;

        // TD target from the target network, computed without any tape: no gradient can reach it.
        let next_obs: Obs<O> = self.dev.tensor_from_vec(batch.next_obs.clone(), (b, Const::<O>));
        let next_target = self.target.q_values(next_obs.clone()).as_vec();
        let next_actions = if self.cfg.double_dqn {
            network::argmax_rows::<A>(&self.q.q_values(next_obs).as_vec())
        } else {
            network::argmax_rows::<A>(&next_target)
        };
        let bootstrap = batch.bootstrap();
        let targets: Vec<f32> =
            (0..b).map(|i| batch.rewards[i] + bootstrap[i] * next_target[i * A + next_actions[i]]).collect();

        let obs: Obs<O> = self.dev.tensor_from_vec(batch.obs.clone(), (b, Const::<O>));
        let actions = self.dev.tensor_from_vec(batch.discrete_actions(), (b,));
        let y = self.dev.tensor_from_vec(targets.clone(), (b,));
        let w = self.dev.tensor_from_vec(batch.weights.clone(), (b,));
        let q_sa = self.q.q_values(obs.trace(grads)).select(actions);
        let q_sa_values = q_sa.retaped::<NoneTape>().as_vec();
        let elementwise = match self.cfg.loss {
            Loss::Huber => q_sa.huber_error(y, 1.0),
            Loss::Mse => (q_sa - y).square(),
        };
        ((elementwise * w).mean(), targets, q_sa_values)
    }

    /// Updates the target network: a hard copy when `tau == 1`, else Polyak averaging.
    pub fn update_target(&mut self) {
        if self.cfg.tau >= 1.0 {
            copy_params(&mut self.target, &self.q);
        } else {
            polyak_update(&mut self.target, &self.q, self.cfg.tau);
        }
    }

    /// Writes a checkpoint into `dir`: networks, optimizer, replay (with priorities), counters and
    /// random state, pending n-step transitions and [`train_loop`](Dqn::train_loop). The files go
    /// into a fresh snapshot that replaces the previous one only once complete
    /// ([`checkpoint::save_snapshot`]), so a crash mid-save leaves the last checkpoint intact.
    pub fn save(&self, dir: &Path) -> Result<(), DqnError> {
        let pending = PendingState {
            nstep: self.nstep.save_state(),
            last_q_values: self.last_q_values.iter().map(|&x| x as f64).collect(),
            train_loop: self.train_loop.clone(),
        };
        checkpoint::save_snapshot(dir, |snap| -> Result<(), DqnError> {
            checkpoint::save_weights(&self.q, &snap.join("q.safetensors"))?;
            checkpoint::save_weights(&self.target, &snap.join("target.safetensors"))?;
            self.opt.save(snap, "adam")?;
            self.replay.save(&snap.join("replay.bin"))?;
            checkpoint::save_json(&self.cfg, &snap.join("config.json"))?;
            checkpoint::save_json(&pending, &snap.join("pending.json"))?;
            checkpoint::save_json(&self.state, &snap.join("state.json"))?;
            Ok(())
        })?;
        Ok(())
    }

    /// Restores what [`save`](Dqn::save) wrote into `dir`. A truncated or corrupt file is an
    /// error naming it.
    pub fn load(&mut self, dir: &Path) -> Result<(), DqnError> {
        let snap = checkpoint::current_snapshot(dir)?;
        let state: TrainState = checkpoint::load_json(&snap.join("state.json"))?;
        let pending: PendingState = checkpoint::load_json(&snap.join("pending.json"))?;
        // The manifest check above has read every file, so a failure below is unlikely to leave
        // the agent half-loaded; n-step sizes are checked before anything changes.
        let mut nstep = self.nstep.clone();
        nstep
            .restore(&pending.nstep)
            .map_err(|message| CheckpointError::Corrupt { path: snap.join("pending.json"), message })?;
        checkpoint::load_weights(&mut self.q, &snap.join("q.safetensors"))?;
        checkpoint::load_weights(&mut self.target, &snap.join("target.safetensors"))?;
        self.opt.load(&snap, "adam")?;
        self.replay.load(&snap.join("replay.bin"))?;
        self.state = state;
        self.nstep = nstep;
        self.last_q_values = pending.last_q_values.iter().map(|&x| x as f32).collect();
        self.train_loop = pending.train_loop;
        Ok(())
    }

    /// Q-values of the last trained batch (for histograms).
    pub fn last_q_values(&self) -> &[f32] {
        &self.last_q_values
    }
}

/// The config saved in checkpoint directory `dir` (by [`Dqn::save`]).
pub fn saved_config(dir: &Path) -> Result<Config, DqnError> {
    let snapshot = checkpoint::current_snapshot(dir)?;
    Ok(checkpoint::load_json(&snapshot.join("config.json"))?)
}

/// Greedy actions of `q` for a batch of observations `[rows * O]`.
pub fn greedy_actions<Q: QFunction<O, A>, const O: usize, const A: usize>(q: &Q, dev: &Cpu, obs: &[f32]) -> Vec<usize> {
    let rows = obs.len() / O;
    let x: Obs<O> = dev.tensor_from_vec(obs.to_vec(), (rows, Const::<O>));
    network::argmax_rows::<A>(&q.q_values(x).as_vec())
}

use network::Obs;

/// Runs `episodes` greedy episodes side by side (one batched forward pass per step) and returns
/// their returns. Episode i is seeded with `seed + i`.
pub fn evaluate<Q, E, const O: usize, const A: usize>(
    q: &Q,
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
) -> Result<Vec<f64>, EnvError>
where
    Q: QFunction<O, A>,
    E: Env<Act = usize>,
{
    if E::Obs::DIM != O {
        return Err(EnvError::Other(format!("the Q-network takes {O} inputs, the env gives {}", E::Obs::DIM)));
    }
    let dev = Cpu::default();
    let mut envs: Vec<E> = (0..episodes).map(|_| make_env()).collect();
    let mut obs = vec![0.0f32; episodes * O];
    for (i, env) in envs.iter_mut().enumerate() {
        env.reset(Some(seed.wrapping_add(i as u64)))?.0.write_to(&mut obs[i * O..(i + 1) * O]);
    }
    let mut returns = vec![0.0; episodes];
    let mut active: Vec<usize> = (0..episodes).collect();
    let mut rows = Vec::with_capacity(episodes * O);
    while !active.is_empty() {
        rows.clear();
        for &i in &active {
            rows.extend_from_slice(&obs[i * O..(i + 1) * O]);
        }
        let actions = greedy_actions::<Q, O, A>(q, &dev, &rows);
        let mut still = Vec::with_capacity(active.len());
        for (k, &i) in active.iter().enumerate() {
            let step = envs[i].step(&actions[k])?;
            returns[i] += step.reward;
            if !step.done() {
                step.obs.write_to(&mut obs[i * O..(i + 1) * O]);
                still.push(i);
            }
        }
        active = still;
    }
    Ok(returns)
}

/// What a run reports in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean return of the last greedy evaluation.
    pub eval_mean_return: f64,
    /// Standard deviation of that evaluation's returns.
    pub eval_std_return: f64,
    /// Episodes in that evaluation.
    pub eval_episodes: usize,
    /// Environment steps taken.
    pub env_steps: u64,
    /// Gradient steps taken.
    pub gradient_steps: u64,
    /// Seconds from start to end of training (this process only, when resumed).
    pub wall_seconds: f64,
    /// Environment step at which an evaluation first reached the threshold, if it did.
    pub solved_at_step: Option<u64>,
    /// The seed.
    pub seed: u64,
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (mean, (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// How many multiples of `every` lie in `(prev, now]`.
fn crossings(prev: u64, now: u64, every: u64) -> u64 {
    match (now.checked_div(every), prev.checked_div(every)) {
        (Some(a), Some(b)) => a - b,
        _ => 0,
    }
}

/// Trains `agent` on `cfg.num_envs` copies of the env until an evaluation reaches
/// `cfg.solve_threshold` or `cfg.total_timesteps` steps are taken; logs to `run` and checkpoints
/// into `run.checkpoint_dir()`. Continues from where the agent stopped (so a loaded agent resumes
/// exactly, see [`train_until`]).
pub fn train<Q, E, const O: usize, const A: usize>(
    agent: &mut Dqn<Q, O, A>,
    make_env: &dyn Fn() -> E,
    run: &mut RunDir,
    show_progress: bool,
) -> Result<Summary, DqnError>
where
    Q: QFunction<O, A>,
    E: Env<Act = usize> + 'static,
{
    train_until(agent, make_env, run, show_progress, None)?
        .ok_or_else(|| DqnError::Config("training stopped without a stop step".into()))
}

/// [`train`], but stops after the step that reaches `stop_at` env steps (if given and before the
/// end): saves a checkpoint and returns `None`. Loading that checkpoint into a fresh agent and
/// calling `train` again gives bit-for-bit the weights, logs and summary of an uninterrupted run
/// (wall time and the `charts/SPS` log aside), because the checkpoint holds the environments'
/// states, the pending n-step transitions, the priorities and every counter and random stream.
///
/// An agent that has taken steps but holds no [`LoopState`] (e.g. it trained outside `train`), or
/// whose envs could not save their state, is a [`DqnError::Resume`] error rather than a run that
/// silently differs.
pub fn train_until<Q, E, const O: usize, const A: usize>(
    agent: &mut Dqn<Q, O, A>,
    make_env: &dyn Fn() -> E,
    run: &mut RunDir,
    show_progress: bool,
    stop_at: Option<u64>,
) -> Result<Option<Summary>, DqnError>
where
    Q: QFunction<O, A>,
    E: Env<Act = usize> + 'static,
{
    let cfg = agent.cfg.clone();
    let start = Instant::now();
    let seed = agent.state.seed;
    let mut envs = VecEnv::new((0..cfg.num_envs).map(|_| make_env()).collect(), 1)?;
    if envs.obs_dim() != O {
        return Err(DqnError::Config(format!("the Q-network takes {O} inputs, the env gives {}", envs.obs_dim())));
    }
    let mut lp = match agent.train_loop.take() {
        Some(saved) => {
            if let Some(step) = saved.solved_at_step {
                return Err(DqnError::Resume(format!(
                    "the run is finished: it was solved at env step {step}; start a new run to train further"
                )));
            }
            let state = saved
                .envs
                .as_ref()
                .map_err(|why| DqnError::Resume(format!("the checkpoint holds no environment state because {why}")))?;
            envs.restore_state(state)?;
            saved
        }
        None if agent.state.global_step > 0 => {
            return Err(DqnError::Resume(format!(
                "the agent has taken {} env steps but holds no saved training loop (environments, \
                 counters); load it from a checkpoint written by `train`",
                agent.state.global_step
            )))
        }
        None => {
            envs.reset(Some(seed.wrapping_mul(1_000_003)))?;
            LoopState {
                envs: Err("not saved yet".into()),
                evals: 0,
                stat_sums: [0.0; 3],
                stat_count: 0,
                recent_returns: Default::default(),
                solved_at_step: None,
            }
        }
    };
    let progress = show_progress.then(|| Progress::new(cfg.total_timesteps));
    let mut obs = envs.observations().to_vec();
    let mut actions = Vec::with_capacity(cfg.num_envs);
    let mut last_eval: Option<(f64, f64)> = None;
    let mut solved_at_step = None;
    let steps_at_start = agent.state.global_step;
    // Saves the agent with the loop's state (the envs' state, or why it cannot be saved).
    let save = |agent: &mut Dqn<Q, O, A>, envs: &VecEnv<E>, lp: &mut LoopState, run: &RunDir| {
        lp.envs = envs.save_state().map_err(|e| e.to_string());
        agent.train_loop = Some(lp.clone());
        agent.save(&run.checkpoint_dir())
    };

    while agent.state.global_step < cfg.total_timesteps {
        let prev = agent.state.global_step;
        let epsilon = cfg.epsilon(prev);
        agent.act(&obs, epsilon, &mut actions);
        let step = envs.step(&actions)?;
        for i in 0..cfg.num_envs {
            agent.observe(
                i,
                &obs[i * O..(i + 1) * O],
                actions[i],
                step.rewards[i],
                &step.final_obs[i * O..(i + 1) * O],
                step.terminated[i],
                step.truncated[i],
            );
        }
        obs.copy_from_slice(step.obs);
        let now = prev + cfg.num_envs as u64;
        agent.state.global_step = now;
        let writer = run.writer()?;
        for (_, ep) in step.episodes {
            agent.state.episodes += 1;
            writer.scalar("charts/episodic_return", ep.ret, now)?;
            writer.scalar("charts/episodic_length", ep.len as f64, now)?;
            writer.scalar("charts/epsilon", epsilon, now)?;
            lp.recent_returns.push_back(ep.ret);
            if lp.recent_returns.len() > 20 {
                lp.recent_returns.pop_front();
            }
        }

        // Learn.
        if now >= cfg.learning_starts && agent.replay_len() >= cfg.batch_size {
            let phases = crossings(prev, now, cfg.train_frequency);
            let beta = cfg.per_beta + (1.0 - cfg.per_beta) * (now as f64 / cfg.total_timesteps as f64).min(1.0);
            for _ in 0..phases * cfg.gradient_steps {
                let s = agent.train_step(beta)?;
                for (sum, x) in lp.stat_sums.iter_mut().zip([s.loss, s.mean_q, s.grad_norm]) {
                    *sum += x as f64;
                }
                lp.stat_count += 1;
                if lp.stat_count == 100 {
                    let n = lp.stat_count as f64;
                    writer.scalar("losses/td_loss", lp.stat_sums[0] / n, now)?;
                    writer.scalar("losses/q_values", lp.stat_sums[1] / n, now)?;
                    writer.scalar("losses/grad_norm", lp.stat_sums[2] / n, now)?;
                    let sps = (now - steps_at_start) as f64 / start.elapsed().as_secs_f64();
                    writer.scalar("charts/SPS", sps, now)?;
                    (lp.stat_sums, lp.stat_count) = ([0.0; 3], 0);
                }
            }
            if crossings(prev, now, cfg.target_network_frequency) > 0 {
                agent.update_target();
            }
        }

        // Evaluate greedily; stop when solved.
        if now >= cfg.learning_starts && crossings(prev, now, cfg.eval_frequency) > 0 && cfg.eval_episodes > 0 {
            lp.evals += 1;
            let eval_seed = seed.wrapping_mul(7_919).wrapping_add(1_000_000 * lp.evals);
            let returns = evaluate::<Q, E, O, A>(&agent.q, make_env, cfg.eval_episodes, eval_seed)?;
            let (mean, std) = mean_std(&returns);
            last_eval = Some((mean, std));
            let writer = run.writer()?;
            writer.scalar("eval/mean_return", mean, now)?;
            writer.scalar("eval/std_return", std, now)?;
            if !agent.last_q_values().is_empty() {
                writer.histogram("eval/batch_q_values", agent.last_q_values(), now)?;
            }
            if let Some(p) = &progress {
                p.message(format!("eval {mean:.1}"));
            }
            if cfg.solve_threshold.is_some_and(|t| mean >= t) {
                solved_at_step = Some(now);
                break;
            }
        }
        if crossings(prev, now, cfg.checkpoint_frequency) > 0 {
            save(agent, &envs, &mut lp, run)?;
        }
        if now < cfg.total_timesteps && stop_at.is_some_and(|s| now >= s) {
            save(agent, &envs, &mut lp, run)?;
            run.writer()?.flush()?;
            if let Some(p) = &progress {
                p.finish();
            }
            return Ok(None);
        }
        if let Some(p) = &progress {
            if crossings(prev, now, 250) > 0 {
                let recent = (!lp.recent_returns.is_empty())
                    .then(|| lp.recent_returns.iter().sum::<f64>() / lp.recent_returns.len() as f64);
                p.update(now, recent);
            }
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }

    let (eval_mean_return, eval_std_return) = match (solved_at_step, last_eval) {
        (Some(_), Some(e)) => e,
        _ if cfg.eval_episodes > 0 => {
            let eval_seed = seed.wrapping_mul(7_919).wrapping_add(999_000_000);
            mean_std(&evaluate::<Q, E, O, A>(&agent.q, make_env, cfg.eval_episodes, eval_seed)?)
        }
        _ => (f64::NAN, f64::NAN),
    };
    lp.solved_at_step = solved_at_step;
    save(agent, &envs, &mut lp, run)?;
    let writer = run.writer()?;
    writer.scalar("eval/final_mean_return", eval_mean_return, agent.state.global_step)?;
    writer.flush()?;
    Ok(Some(Summary {
        eval_mean_return,
        eval_std_return,
        eval_episodes: cfg.eval_episodes,
        env_steps: agent.state.global_step,
        gradient_steps: agent.state.gradient_steps,
        wall_seconds: start.elapsed().as_secs_f64(),
        solved_at_step,
        seed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Net = <QNetwork<3, 2, 8> as BuildOnDevice<Cpu, f32>>::Built;

    fn filled_agent(cfg: Config) -> Dqn<Net, 3, 2> {
        let mut agent = Dqn::<Net, 3, 2>::new(cfg, 4).unwrap();
        for t in 0..200 {
            let x = t as f32 / 200.0;
            agent.observe(0, &[x, -x, 1.0], t % 2, x, &[x + 0.01, -x, 1.0], t % 50 == 49, false);
        }
        agent
    }

    #[test]
    fn the_target_network_receives_no_gradient() {
        let mut agent = filled_agent(Config { batch_size: 16, ..Default::default() });
        let target_before = agent.target.0.weight.as_vec();
        let grads = agent.q.alloc_grads();
        let (loss, _, _) = agent.td_loss(0.4, grads);
        let grads = loss.backward();
        // The online network has gradients; the target network's tensors have no entry at all
        // (`Gradients::get` panics on a tensor it never saw).
        assert!(grads.get(&agent.q.0.weight).as_vec().iter().any(|&g| g != 0.0));
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&agent.target.0.weight)));
        let last = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&agent.target.4.weight)));
        assert!(first.is_err() && last.is_err(), "the target network got a gradient entry");
        // Training steps change the online network and leave the target alone until updated.
        for _ in 0..5 {
            agent.train_step(0.4).unwrap();
        }
        assert_eq!(agent.target.0.weight.as_vec(), target_before);
        assert_ne!(agent.q.0.weight.as_vec(), target_before);
        agent.update_target();
        assert_eq!(agent.target.0.weight.as_vec(), agent.q.0.weight.as_vec());
    }

    #[test]
    fn a_diverging_loss_is_an_error() {
        let mut agent = filled_agent(Config { batch_size: 8, ..Default::default() });
        agent.q.4.bias.copy_from(&[f32::NAN; 2]);
        let err = agent.train_step(0.4).unwrap_err();
        assert!(matches!(err, DqnError::NonFiniteLoss { .. }), "{err}");
        assert!(err.to_string().contains("NaN"));
    }

    #[test]
    fn checkpoint_round_trip_restores_weights_optimizer_and_counters() {
        let mut agent = filled_agent(Config { batch_size: 16, prioritized: true, ..Default::default() });
        for _ in 0..10 {
            agent.train_step(0.4).unwrap();
        }
        agent.state.global_step = 1234;
        let dir = std::env::temp_dir().join(format!("glimpse-dqn-ckpt-{}", std::process::id()));
        agent.save(&dir).unwrap();
        let mut restored = Dqn::<Net, 3, 2>::new(agent.cfg.clone(), 99).unwrap();
        restored.load(&dir).unwrap();
        assert_eq!(restored.state, agent.state);
        assert_eq!(restored.q.2.weight.as_vec(), agent.q.2.weight.as_vec());
        assert_eq!(restored.target.4.bias.as_vec(), agent.target.4.bias.as_vec());
        assert_eq!(restored.opt.t, agent.opt.t);
        assert_eq!(restored.replay_len(), agent.replay_len());
        assert_eq!(restored.opt.moments().0 .0.weight.as_vec(), agent.opt.moments().0 .0.weight.as_vec());
        assert_eq!(restored.opt.moments().1 .4.weight.as_vec(), agent.opt.moments().1 .4.weight.as_vec());
        // Both agents now act identically (same weights and same random stream).
        let obs = [0.1, 0.2, 0.3, -0.5, 0.0, 1.0];
        let (mut a1, mut a2) = (vec![], vec![]);
        agent.act(&obs, 0.5, &mut a1);
        restored.act(&obs, 0.5, &mut a2);
        assert_eq!(a1, a2);
        // A truncated weights file is a clear error.
        let q_file = checkpoint::current_snapshot(&dir).unwrap().join("q.safetensors");
        let bytes = std::fs::read(&q_file).unwrap();
        std::fs::write(&q_file, &bytes[..bytes.len() - 10]).unwrap();
        let err = restored.load(&dir).unwrap_err().to_string();
        assert!(err.contains("q.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
