//! REINFORCE (Williams 1992): Monte-Carlo policy gradient with reward-to-go, a choice of baseline
//! (none, a running mean of returns, a learned state-value network) and an entropy bonus.
//!
//! Each update collects `num_steps` steps from `num_envs` envs, computes the reward-to-go `G_t`
//! of every step whose episode ended inside the batch (steps of an unfinished episode are left
//! out: their return is not known yet), and takes one gradient step on
//! `−mean[(G_t − b(s_t)) · log π(a_t|s_t)] − c_e · mean[H(π(·|s_t))]`.
//! The baseline does not change the expected gradient, only its variance, which the trainer can
//! estimate ([`ReinforceConfig::grad_variance_every`]).

pub mod cli;
pub mod plot;

use std::time::Instant;

use dfdx::nn::tensor_collection::{RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorRef};
use dfdx::prelude::*;
use glimpse::distributions::Categorical;
use glimpse::optim::{Adam, AdamConfig};
use glimpse::rollout::{PolicyStep, RolloutBuffer};
use glimpse::vec_env::{VecEnv, VecEnvState};
use glimpse::{Env, EnvError, Observation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

/// Two tanh hidden layers of width `H` to `A` logits.
pub type PolicyNet<const O: usize, const A: usize, const H: usize> =
    (Linear<O, H>, Tanh, Linear<H, H>, Tanh, Linear<H, A>);
/// Two tanh hidden layers of width `H` to one value.
pub type ValueNet<const O: usize, const H: usize> = (Linear<O, H>, Tanh, Linear<H, H>, Tanh, Linear<H, 1>);

/// The hidden width used by [`Reinforce::new`].
pub const HIDDEN: usize = 64;

/// What is subtracted from the return before it weights `∇ log π`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// Nothing: the plain reward-to-go estimator.
    None,
    /// An exponential running mean of the observed returns.
    RunningMean,
    /// A learned state-value network V(s), regressed on the returns.
    Value,
}

impl Baseline {
    /// Every baseline, in the order of [`UpdateStats::same_batch_grad_variance`].
    pub const ALL: [Baseline; 3] = [Baseline::None, Baseline::RunningMean, Baseline::Value];

    /// Name used in file names and plots.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::None => "none",
            Baseline::RunningMean => "running-mean",
            Baseline::Value => "value",
        }
    }
}

/// REINFORCE hyperparameters; defaults solve CartPole-v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReinforceConfig {
    /// Seed of the envs (env i gets `seed + i`), the networks and the sampling.
    pub seed: u64,
    /// Number of parallel environments.
    pub num_envs: usize,
    /// Threads stepping the environments (including the learner's).
    pub workers: usize,
    /// Steps per env per update.
    pub num_steps: usize,
    /// Environment steps to train for at most.
    pub total_timesteps: u64,
    /// Policy learning rate (Adam).
    pub learning_rate: f64,
    /// Value-network learning rate (Adam), for [`Baseline::Value`].
    pub value_learning_rate: f64,
    /// Gradient steps on the value network per update.
    pub value_epochs: usize,
    /// Discount factor of the reward-to-go.
    pub gamma: f32,
    /// The baseline.
    pub baseline: Baseline,
    /// Decay of the running mean of returns ([`Baseline::RunningMean`]).
    pub running_mean_decay: f64,
    /// Entropy bonus coefficient.
    pub ent_coef: f32,
    /// Global gradient-norm clip.
    pub max_grad_norm: Option<f32>,
    /// Estimate the policy-gradient variance every this many updates (0: never). The estimate is
    /// made for every baseline on the same batch, so the running mean and the value network are
    /// then trained whichever baseline the policy uses.
    pub grad_variance_every: usize,
    /// Evaluate greedily every this many updates (0: only at the end).
    pub eval_every: usize,
    /// Greedy episodes in an evaluation.
    pub eval_episodes: usize,
    /// Stop once the greedy evaluation mean return reaches this.
    pub target_return: Option<f64>,
}

impl Default for ReinforceConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            num_envs: 8,
            workers: 1,
            num_steps: 256,
            total_timesteps: 1_000_000,
            learning_rate: 2e-3,
            value_learning_rate: 2e-3,
            value_epochs: 5,
            gamma: 0.99,
            baseline: Baseline::Value,
            running_mean_decay: 0.9,
            ent_coef: 0.0,
            max_grad_norm: Some(1.0),
            grad_variance_every: 0,
            eval_every: 5,
            eval_episodes: 100,
            target_return: None,
        }
    }
}

/// Errors of the REINFORCE trainer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment failed.
    #[error("environment error: {0}")]
    Env(#[from] EnvError),
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A loss became NaN or infinite.
    #[error("non-finite loss: {0}")]
    NonFinite(String),
    /// A gradient became NaN or infinite (the optimizer refused the step).
    #[error(transparent)]
    NonFiniteGradient(#[from] glimpse::optim::NonFiniteGradient),
}

/// Statistics of one update.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateStats {
    /// Update number, from 1.
    pub update: usize,
    /// Environment steps so far.
    pub env_steps: u64,
    /// Seconds since training started.
    pub wall_seconds: f64,
    /// Policy loss (without the entropy term).
    pub policy_loss: f64,
    /// Mean policy entropy.
    pub entropy: f64,
    /// Value-network loss ([`Baseline::Value`]).
    pub value_loss: Option<f64>,
    /// Steps used (those whose episode ended in the batch).
    pub samples: usize,
    /// Policy-gradient norm before clipping.
    pub grad_norm: f64,
    /// Estimated variance of the policy gradient (see [`grad_variance`]), when measured.
    pub grad_variance: Option<f64>,
    /// The variance each baseline (in [`Baseline::ALL`] order) would give on this same batch.
    pub same_batch_grad_variance: Option<[f64; 3]>,
    /// Returns of the training episodes that ended during this update.
    pub episode_returns: Vec<f64>,
    /// Greedy evaluation mean return, when one ran.
    pub eval_mean_return: Option<f64>,
}

/// The result of a training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// Environment steps taken.
    pub env_steps: u64,
    /// Seconds spent.
    pub wall_seconds: f64,
    /// Updates done.
    pub updates: usize,
    /// Env steps at which the evaluation first reached the target.
    pub solved_at_step: Option<u64>,
    /// Mean return of the last greedy evaluation.
    pub eval_mean_return: Option<f64>,
    /// `(env_steps, mean return of the episodes that ended in that update)`.
    pub curve: Vec<(u64, f64)>,
    /// Every gradient-variance estimate, `(env_steps, variance)`.
    pub grad_variances: Vec<(u64, f64)>,
    /// Every same-batch estimate for all baselines, `(env_steps, [none, running mean, value])`.
    pub same_batch_grad_variances: Vec<(u64, [f64; 3])>,
}

/// A REINFORCE agent: a categorical policy over `A` actions, a value network (used only with
/// [`Baseline::Value`]) and their optimizers.
pub struct Reinforce<const O: usize, const A: usize> {
    /// The policy network.
    pub policy: <PolicyNet<O, A, HIDDEN> as BuildOnDevice<Cpu, f32>>::Built,
    /// The value network.
    pub value: <ValueNet<O, HIDDEN> as BuildOnDevice<Cpu, f32>>::Built,
    /// Policy optimizer.
    pub policy_opt: Adam<<PolicyNet<O, A, HIDDEN> as BuildOnDevice<Cpu, f32>>::Built>,
    /// Value optimizer.
    pub value_opt: Adam<<ValueNet<O, HIDDEN> as BuildOnDevice<Cpu, f32>>::Built>,
    /// Running mean of returns ([`Baseline::RunningMean`]); `None` before the first batch.
    pub running_mean: Option<f64>,
    dev: Cpu,
}

impl<const O: usize, const A: usize> Reinforce<O, A> {
    /// Fresh networks initialised from `cfg.seed`.
    pub fn new(cfg: &ReinforceConfig) -> Self {
        let dev = Cpu::seed_from_u64(cfg.seed);
        let policy = dev.build_module::<PolicyNet<O, A, HIDDEN>, f32>();
        let value = dev.build_module::<ValueNet<O, HIDDEN>, f32>();
        let policy_opt = Adam::new(&policy, AdamConfig { lr: cfg.learning_rate as f32, ..Default::default() });
        let value_opt = Adam::new(&value, AdamConfig { lr: cfg.value_learning_rate as f32, ..Default::default() });
        Self { policy, value, policy_opt, value_opt, running_mean: None, dev }
    }

    fn batch(&self, obs: &[f32]) -> Tensor<(usize, Const<O>), f32, Cpu> {
        self.dev.tensor_from_vec(obs.to_vec(), (obs.len() / O, Const))
    }

    /// Samples (or, when `greedy`, takes the most probable) actions for `obs` (flat `[N * O]`).
    pub fn act<R: Rng + ?Sized>(&self, obs: &[f32], greedy: bool, rng: &mut R) -> Vec<usize> {
        let dist = Categorical::from_logits(self.policy.forward(self.batch(obs)));
        if greedy {
            dist.mode()
        } else {
            dist.sample(rng)
        }
    }

    /// V(s) for `obs` (flat `[N * O]`).
    pub fn values(&self, obs: &[f32]) -> Vec<f32> {
        self.value.forward(self.batch(obs)).as_vec()
    }

    /// The policy loss `−mean(w·log π(a|s)) − ent_coef·mean(H)` on the given rows, traced, with
    /// the mean entropy as a plain number.
    pub fn policy_loss(
        &self,
        obs: &[f32],
        actions: &[usize],
        weights: &[f32],
        ent_coef: f32,
    ) -> (Tensor<(), f32, Cpu, OwnedTape<f32, Cpu>>, f32) {
        let n = actions.len();
        let x = self.batch(obs).traced(self.policy.alloc_grads());
        let (logp, ent) = Categorical::from_logits(self.policy.forward(x)).log_prob_and_entropy(actions);
        let w = self.dev.tensor_from_vec(weights.iter().map(|v| -v).collect(), (n,));
        let entropy = ent.mean();
        let ent_value = entropy.array();
        ((logp * w).mean() - entropy * ent_coef, ent_value)
    }
}

/// Flattens the gradients of every parameter of a module into one vector.
struct Flatten<'a> {
    grads: &'a Gradients<f32, Cpu>,
    out: Vec<f32>,
}

impl TensorVisitor<f32, Cpu> for Flatten<'_> {
    type Viewer = ViewTensorRef;
    type Err = <Cpu as HasErr>::Err;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        t: &Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        if opts.do_gradient_update {
            self.out.extend(self.grads.get(t).as_vec());
        }
        Ok(None)
    }
}

/// All parameter gradients of `model` as one flat vector.
pub fn flat_grads<M: TensorCollection<f32, Cpu>>(model: &M, grads: &Gradients<f32, Cpu>) -> Vec<f32> {
    let mut f = Flatten { grads, out: Vec::new() };
    M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut f }).expect("cpu visit cannot fail");
    f.out
}

/// Variance of a policy-gradient estimate from independent groups of samples: with `g_k` the
/// gradient of group k's mean loss, returns `Σ_params (1/(K−1)) Σ_k (g_k − ḡ)²`, the trace of the
/// covariance of a one-group gradient estimate. `None` with fewer than two groups.
pub fn grad_variance(group_grads: &[Vec<f32>]) -> Option<f64> {
    let k = group_grads.len();
    if k < 2 {
        return None;
    }
    let dim = group_grads[0].len();
    let mut total = 0.0;
    for j in 0..dim {
        let mean = group_grads.iter().map(|g| g[j] as f64).sum::<f64>() / k as f64;
        total += group_grads.iter().map(|g| (g[j] as f64 - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
    }
    Some(total)
}

/// Greedy evaluation: mean return over `episodes` episodes (first reset seeded with `seed`).
pub fn evaluate<E, const O: usize, const A: usize>(
    env: &mut E,
    agent: &Reinforce<O, A>,
    episodes: usize,
    seed: u64,
) -> Result<f64, Error>
where
    E: Env<Act = usize>,
{
    let mut rng = StdRng::seed_from_u64(seed);
    let mut obs = vec![0.0; O];
    let mut total = 0.0;
    for ep in 0..episodes {
        env.reset(if ep == 0 { Some(seed) } else { None })?.0.write_to(&mut obs);
        loop {
            let step = env.step(&agent.act(&obs, true, &mut rng)[0])?;
            total += step.reward;
            if step.done() {
                break;
            }
            step.obs.write_to(&mut obs);
        }
    }
    Ok(total / episodes.max(1) as f64)
}

/// Where [`train_from`]'s loop stood after an update. Saved with the networks, optimizers and
/// running mean, it lets a run continue bit-identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopState {
    /// Updates done.
    pub update: usize,
    /// The environments, or why they could not be saved (continuing then fails with that reason).
    pub envs: Result<VecEnvState, String>,
    /// The sampling stream; `StdRng` is this generator.
    pub rng: ChaCha12Rng,
    /// The outcome so far (curves and counters).
    pub outcome: TrainOutcome,
}

/// Trains `agent` with REINFORCE on `envs` (a [`VecEnv`]); `on_update` sees every update.
pub fn train<E, const O: usize, const A: usize>(
    envs: Vec<E>,
    eval_env: &mut E,
    agent: &mut Reinforce<O, A>,
    cfg: &ReinforceConfig,
    mut on_update: impl FnMut(&UpdateStats, &Reinforce<O, A>),
) -> Result<TrainOutcome, Error>
where
    E: Env<Act = usize> + 'static,
{
    train_from(envs, eval_env, agent, cfg, None, |s, a, _| {
        on_update(s, a);
        false
    })
}

/// [`train`], continuing from `resume` (saved by an earlier call; the caller restores the agent)
/// when given. `on_update` also gets the loop's state (computed when called, for checkpoints) and
/// returns `true` to stop after this update.
pub fn train_from<E, const O: usize, const A: usize>(
    envs: Vec<E>,
    eval_env: &mut E,
    agent: &mut Reinforce<O, A>,
    cfg: &ReinforceConfig,
    resume: Option<&LoopState>,
    mut on_update: impl FnMut(&UpdateStats, &Reinforce<O, A>, &dyn Fn() -> LoopState) -> bool,
) -> Result<TrainOutcome, Error>
where
    E: Env<Act = usize> + 'static,
{
    if envs.len() != cfg.num_envs || cfg.num_envs == 0 || cfg.num_steps == 0 || cfg.workers == 0 {
        return Err(Error::Config(format!(
            "need num_envs = envs.len() = {} > 0, num_steps > 0 and workers > 0",
            envs.len()
        )));
    }
    if E::Obs::DIM != O {
        return Err(Error::Config(format!("env observations have {} values, the network expects {O}", E::Obs::DIM)));
    }
    let start = Instant::now();
    let (n, t_len) = (cfg.num_envs, cfg.num_steps);
    let mut venv = VecEnv::new(envs, cfg.workers)?;
    let mut buf = RolloutBuffer::new(n, t_len, O, 1);
    let num_updates = (cfg.total_timesteps / (n * t_len) as u64).max(1) as usize;
    let (mut rng, mut obs, mut out, first_update) = match resume {
        None => {
            (ChaCha12Rng::seed_from_u64(cfg.seed), venv.reset(Some(cfg.seed))?.to_vec(), TrainOutcome::default(), 1)
        }
        Some(saved) => {
            let envs = saved.envs.as_ref().map_err(|why| {
                Error::Config(format!("cannot resume exactly: the checkpoint holds no environment state because {why}"))
            })?;
            venv.restore_state(envs)?;
            (saved.rng.clone(), venv.observations().to_vec(), saved.outcome.clone(), saved.update + 1)
        }
    };
    let zeros = vec![0.0; n];

    for update in first_update..=num_updates {
        // Monte-Carlo returns: an episode's return is what it earned, with no bootstrap.
        let act = |o: &[f32]| {
            let env_actions = agent.act(o, false, &mut rng);
            let actions = env_actions.iter().map(|&a| a as f32).collect();
            PolicyStep { env_actions, actions, log_probs: zeros.clone(), values: zeros.clone() }
        };
        let episodes = buf
            .collect(&mut venv, &mut obs, out.env_steps, act, |o| vec![0.0; o.len() / O])
            .map_err(|e| Error::Config(e.to_string()))?;
        let episode_returns: Vec<f64> = episodes.iter().map(|e| e.ret).collect();
        out.env_steps += (n * t_len) as u64;
        buf.compute_returns(cfg.gamma);
        let mask = buf.complete_episode_mask();
        let idx: Vec<usize> = (0..mask.len()).filter(|&k| mask[k]).collect();

        let mut stats = UpdateStats { update, samples: idx.len(), ..Default::default() };
        if !idx.is_empty() {
            learn(agent, &buf, &idx, cfg, &mut stats, update)?;
        }
        stats.env_steps = out.env_steps;
        if let Some(v) = stats.grad_variance {
            out.grad_variances.push((out.env_steps, v));
        }
        if let Some(v) = stats.same_batch_grad_variance {
            out.same_batch_grad_variances.push((out.env_steps, v));
        }
        if !episode_returns.is_empty() {
            out.curve.push((out.env_steps, episode_returns.iter().sum::<f64>() / episode_returns.len() as f64));
        }
        stats.episode_returns = episode_returns;

        let last = update == num_updates;
        if (cfg.eval_every > 0 && update % cfg.eval_every == 0) || last {
            let quick = evaluate(eval_env, agent, cfg.eval_episodes.min(10), cfg.seed + 10_000)?;
            let full_needed = cfg.target_return.is_none_or(|t| quick >= t) || last;
            let mean = if full_needed && cfg.eval_episodes > 10 {
                evaluate(eval_env, agent, cfg.eval_episodes, cfg.seed + 20_000)?
            } else {
                quick
            };
            stats.eval_mean_return = Some(mean);
            out.eval_mean_return = Some(mean);
            if full_needed && cfg.target_return.is_some_and(|t| mean >= t) {
                out.solved_at_step = Some(out.env_steps);
            }
        }
        stats.wall_seconds = start.elapsed().as_secs_f64();
        out.updates = update;
        let loop_state = || LoopState {
            update,
            envs: venv.save_state().map_err(|e| e.to_string()),
            rng: rng.clone(),
            outcome: TrainOutcome { wall_seconds: 0.0, ..out.clone() },
        };
        let stop = on_update(&stats, agent, &loop_state);
        if out.solved_at_step.is_some() || stop {
            break;
        }
    }
    out.wall_seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

/// One policy step (and the baseline's update) on the steps `idx` of `buf`.
fn learn<const O: usize, const A: usize>(
    agent: &mut Reinforce<O, A>,
    buf: &RolloutBuffer,
    idx: &[usize],
    cfg: &ReinforceConfig,
    stats: &mut UpdateStats,
    update: usize,
) -> Result<(), Error> {
    let mb = buf.minibatch(idx);
    let actions: Vec<usize> = mb.actions.iter().map(|&a| a as usize).collect();
    // The weights each baseline would give, on the same batch.
    let value_of = agent.values(&mb.obs);
    let mean = agent.running_mean.unwrap_or(0.0) as f32;
    let weights_for = |b: Baseline| -> Vec<f32> {
        match b {
            Baseline::None => mb.returns.clone(),
            Baseline::RunningMean => mb.returns.iter().map(|g| g - mean).collect(),
            Baseline::Value => mb.returns.iter().zip(&value_of).map(|(g, v)| g - v).collect(),
        }
    };
    let weights = weights_for(cfg.baseline);

    let diagnostics = cfg.grad_variance_every > 0;
    if diagnostics && update.is_multiple_of(cfg.grad_variance_every) {
        let all = Baseline::ALL.map(|b| grad_variance_by_env(agent, buf, idx, &weights_for(b), cfg.ent_coef));
        if let [Some(none), Some(running_mean), Some(value)] = all {
            stats.same_batch_grad_variance = Some([none, running_mean, value]);
        }
        stats.grad_variance = all[Baseline::ALL.iter().position(|&b| b == cfg.baseline).unwrap_or(0)];
    }

    let (loss, entropy) = agent.policy_loss(&mb.obs, &actions, &weights, cfg.ent_coef);
    let loss_value = loss.array();
    if !loss_value.is_finite() {
        return Err(Error::NonFinite(format!("policy loss {loss_value}")));
    }
    let mut grads = loss.backward();
    stats.grad_norm = agent.policy_opt.update(&mut agent.policy, &mut grads, cfg.max_grad_norm)? as f64;
    stats.policy_loss = (loss_value + cfg.ent_coef * entropy) as f64;
    stats.entropy = entropy as f64;

    // The running mean and the value network are kept up to date when used, and also for the
    // same-batch variance diagnostics.
    if cfg.baseline == Baseline::RunningMean || diagnostics {
        let batch_mean = mb.returns.iter().map(|&g| g as f64).sum::<f64>() / idx.len() as f64;
        let d = cfg.running_mean_decay;
        agent.running_mean = Some(agent.running_mean.map_or(batch_mean, |m| d * m + (1.0 - d) * batch_mean));
    }
    if cfg.baseline == Baseline::Value || diagnostics {
        let n = idx.len();
        let target = agent.dev.tensor_from_vec(mb.returns.clone(), (n, Const::<1>));
        let mut loss_sum = 0.0;
        for _ in 0..cfg.value_epochs {
            let x = agent.batch(&mb.obs).traced(agent.value.alloc_grads());
            let loss = mse_loss(agent.value.forward(x), target.clone());
            let v = loss.array();
            if !v.is_finite() {
                return Err(Error::NonFinite(format!("value loss {v}")));
            }
            loss_sum += v as f64;
            let mut grads = loss.backward();
            agent.value_opt.update(&mut agent.value, &mut grads, cfg.max_grad_norm)?;
        }
        stats.value_loss = Some(loss_sum / cfg.value_epochs.max(1) as f64);
    }
    Ok(())
}

/// Gradient variance across envs: each env's steps form an independent group.
fn grad_variance_by_env<const O: usize, const A: usize>(
    agent: &Reinforce<O, A>,
    buf: &RolloutBuffer,
    idx: &[usize],
    weights: &[f32],
    ent_coef: f32,
) -> Option<f64> {
    let mut groups = Vec::new();
    for env in 0..buf.num_envs {
        let rows: Vec<usize> = (0..idx.len()).filter(|&r| idx[r] % buf.num_envs == env).collect();
        if rows.is_empty() {
            continue;
        }
        let obs: Vec<f32> = rows.iter().flat_map(|&r| buf.obs[idx[r] * O..(idx[r] + 1) * O].iter().copied()).collect();
        let actions: Vec<usize> = rows.iter().map(|&r| buf.actions[idx[r]] as usize).collect();
        let w: Vec<f32> = rows.iter().map(|&r| weights[r]).collect();
        let (loss, _) = agent.policy_loss(&obs, &actions, &w, ent_coef);
        groups.push(flat_grads(&agent.policy, &loss.backward()));
    }
    grad_variance(&groups)
}
