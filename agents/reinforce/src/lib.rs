//! REINFORCE (Williams 1992): Monte-Carlo policy gradient with reward-to-go, a choice of baseline
//! (none, a running mean of returns, a learned state-value network) and an entropy bonus.
//!
//! Each update collects `num_steps` steps from `num_envs` envs, computes the reward-to-go `G_t`
//! of every step whose episode ended inside the batch (steps of an unfinished episode are left
//! out: their return is not known yet), and takes one gradient step on
//! `−mean[(G_t − b(s_t)) · log π(a_t|s_t)] − c_e · mean[H(π(·|s_t))]`.
//! The baseline does not change the expected gradient, only its variance, which the trainer can
//! estimate ([`ReinforceConfig::grad_variance_frequency`]).
//!
//! [`train`] is the whole loop, on the run layer ([`glimpse::run`]); [`Trainer`] runs it on any
//! env with a discrete action space (its methods are every glimpse agent's,
//! [`glimpse::run::Train`]):
//!
//! ```no_run
//! use glimpse_reinforce::prelude::*;
//! let summary = Trainer::<_, 4, 2>::new(ReinforceConfig::cartpole(), glimpse_envs::cartpole_v1)?.seed(2).train()?;
//! println!("solved at {:?}", summary.solved_at_step);
//! # Ok::<(), glimpse_reinforce::Error>(())
//! ```

pub mod trainer;

use dfdx::nn::tensor_collection::{RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorRef};
use dfdx::prelude::*;
use glimpse::distributions::Categorical;
use glimpse::finite::{check_finite, NonFinite};
use glimpse::nn::builders::{Dense, FastTanh};
use glimpse::optim::{check_finite_params, Adam, AdamConfig, NonFiniteGradient, NonFiniteParams};
use glimpse::rollout::{PolicyStep, RolloutBuffer, RolloutError};
use glimpse::run::{eval_seed, Control, EvalStats, Outcome, Run, RunConfig, RunError, Unit};
use glimpse::validate::{self, SpaceMismatch};
use glimpse::{Env, EnvError, EpisodeStats};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use glimpse::run::RlSummary as Summary;
pub use trainer::{evaluate_policy, Progress, Trainer, Training};

/// What a user training REINFORCE on their own env names: `use glimpse_reinforce::prelude::*;`.
pub mod prelude {
    pub use crate::{evaluate_policy, Baseline, Error, ReinforceConfig, Summary, Trainer};
    pub use glimpse::prelude::*;
}

/// Two tanh hidden layers of width `H` to `A` logits.
pub type PolicyNet<const O: usize, const A: usize, const H: usize> =
    (Dense<O, H>, FastTanh, Dense<H, H>, FastTanh, Dense<H, A>);
/// Two tanh hidden layers of width `H` to one value.
pub type ValueNet<const O: usize, const H: usize> = (Dense<O, H>, FastTanh, Dense<H, H>, FastTanh, Dense<H, 1>);

/// The hidden width used by [`Reinforce::new`].
pub const HIDDEN: usize = 64;

/// The built policy network of [`Reinforce`].
pub type Policy<const O: usize, const A: usize> = <PolicyNet<O, A, HIDDEN> as BuildOnDevice<Cpu, f32>>::Built;
/// The built value network of [`Reinforce`].
pub type Value<const O: usize> = <ValueNet<O, HIDDEN> as BuildOnDevice<Cpu, f32>>::Built;

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

/// REINFORCE hyperparameters; the defaults solve CartPole-v1 ([`ReinforceConfig::cartpole`] adds
/// the threshold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ReinforceConfig {
    /// Number of parallel environments (env i is first reset with seed + i).
    #[arg(long, default_value_t = 8)]
    pub num_envs: usize,
    /// Threads stepping the environments, the learner's included (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Steps per env per update.
    #[arg(long, default_value_t = 256)]
    pub num_steps: usize,
    /// Environment steps (all envs together) to train for at most.
    #[arg(long, default_value_t = 1_000_000)]
    pub total_timesteps: u64,
    /// Policy learning rate (Adam).
    #[arg(long, default_value_t = 2e-3)]
    pub learning_rate: f64,
    /// Value-network learning rate (Adam), for the value baseline.
    #[arg(long, default_value_t = 2e-3)]
    pub value_learning_rate: f64,
    /// Gradient steps on the value network per update.
    #[arg(long, default_value_t = 5)]
    pub value_epochs: usize,
    /// Discount factor of the reward-to-go.
    #[arg(long, default_value_t = 0.99)]
    pub gamma: f32,
    /// What is subtracted from the return.
    #[arg(long, value_enum, default_value_t = Baseline::Value)]
    pub baseline: Baseline,
    /// Decay of the running mean of returns (the running-mean baseline).
    #[arg(long, default_value_t = 0.9)]
    pub running_mean_decay: f64,
    /// Entropy bonus coefficient.
    #[arg(long, default_value_t = 0.0)]
    pub ent_coef: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    /// Environment steps between policy-gradient variance estimates (0: never). Each estimate is
    /// made for every baseline on the same batch, so the running mean and the value network are
    /// then trained whichever baseline the policy uses.
    #[arg(long, default_value_t = 0)]
    pub grad_variance_frequency: u64,
    /// Environment steps between greedy evaluations (0: only at the end).
    #[arg(long, default_value_t = 10_240)]
    pub eval_frequency: u64,
    /// Episodes per greedy evaluation (run side by side, episode i seeded with seed + i).
    #[arg(long, default_value_t = 100)]
    pub eval_episodes: usize,
    /// Stop once a greedy evaluation's mean return reaches this (unset: train the whole budget).
    #[arg(long)]
    pub solve_threshold: Option<f64>,
    /// Environment steps between checkpoints (0: only at `--stop-after` and at the end).
    #[arg(long, default_value_t = 10_000)]
    pub checkpoint_frequency: u64,
}

impl Default for ReinforceConfig {
    fn default() -> Self {
        Self {
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
            max_grad_norm: 1.0,
            grad_variance_frequency: 0,
            eval_frequency: 10_240,
            eval_episodes: 100,
            solve_threshold: None,
            checkpoint_frequency: 10_000,
        }
    }
}

impl ReinforceConfig {
    /// CartPole-v1: the defaults, stopping at a greedy mean of 475.
    pub fn cartpole() -> Self {
        Self { solve_threshold: Some(475.0), ..Self::default() }
    }

    /// Transitions per update, `num_envs × num_steps`.
    pub fn batch_size(&self) -> usize {
        self.num_envs.saturating_mul(self.num_steps)
    }

    /// Checks every setting; the message names the first bad one and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        validate::rollout(self.num_envs, self.workers, self.num_steps, self.total_timesteps)?;
        validate::positive("learning_rate", self.learning_rate)?;
        validate::positive("value_learning_rate", self.value_learning_rate)?;
        validate::at_least("value_epochs", self.value_epochs, 1)?;
        validate::unit_interval("gamma", self.gamma)?;
        validate::unit_interval("running_mean_decay", self.running_mean_decay)?;
        validate::non_negative("ent_coef", self.ent_coef)?;
        validate::non_negative("max_grad_norm", self.max_grad_norm)?;
        validate::at_least("eval_episodes", self.eval_episodes, 1)?;
        validate::evaluation(self.eval_episodes, self.solve_threshold)
    }
}

impl RunConfig for ReinforceConfig {
    const UNIT: Unit = Unit::EnvSteps;
    fn budget(&self) -> u64 {
        self.total_timesteps
    }
    fn validate(&self) -> Result<(), String> {
        ReinforceConfig::validate(self)
    }
    fn checkpoint_every(&self) -> u64 {
        self.checkpoint_frequency
    }
}

/// Errors of the REINFORCE trainer. Each prints as one readable line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run layer refused or failed (run directory, config file, checkpoint, guards).
    #[error(transparent)]
    Run(#[from] RunError),
    /// An environment failed.
    #[error("environment error: {0}")]
    Env(#[from] EnvError),
    /// The env's observation or action space does not fit the networks.
    #[error(transparent)]
    Spaces(#[from] SpaceMismatch),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A NaN or infinity in an observation, a reward or a loss.
    #[error(transparent)]
    NonFinite(#[from] NonFinite),
    /// The optimizer refused a NaN or infinite gradient (the weights are unchanged).
    #[error("non-finite gradient of the {network} at env step {env_step}: {source}; training stopped")]
    NonFiniteGradient {
        /// `policy` or `value network`.
        network: &'static str,
        /// Environment steps done.
        env_step: u64,
        /// The optimizer's refusal.
        source: NonFiniteGradient,
    },
    /// An update left a parameter NaN or infinite.
    #[error("after the update at env step {env_step}, the {network}'s {source}; training stopped")]
    NonFiniteParams {
        /// `policy` or `value network`.
        network: &'static str,
        /// Environment steps done.
        env_step: u64,
        /// The tensor and its values.
        source: NonFiniteParams,
    },
    /// A checkpoint cannot be continued exactly.
    #[error("cannot resume exactly: {0}")]
    Resume(String),
}

impl From<RolloutError> for Error {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::Env(e) => Error::Env(e),
            RolloutError::NonFinite(e) => Error::NonFinite(e),
        }
    }
}

/// Statistics of one update.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateStats {
    /// Policy loss (without the entropy term).
    pub policy_loss: f64,
    /// Mean policy entropy.
    pub entropy: f64,
    /// Value-network loss (when the value network was trained).
    pub value_loss: Option<f64>,
    /// Steps used (those whose episode ended in the batch).
    pub samples: usize,
    /// Policy-gradient norm before clipping.
    pub grad_norm: f64,
    /// Estimated variance of the policy gradient (see [`grad_variance`]), when measured.
    pub grad_variance: Option<f64>,
    /// The variance each baseline (in [`Baseline::ALL`] order) would give on this same batch.
    pub same_batch_grad_variance: Option<[f64; 3]>,
}

/// A REINFORCE agent: a categorical policy over `A` actions, a value network (trained for the
/// value baseline) and their optimizers.
pub struct Reinforce<const O: usize, const A: usize> {
    /// The policy network.
    pub policy: Policy<O, A>,
    /// The value network.
    pub value: Value<O>,
    /// Policy optimizer.
    pub policy_opt: Adam<Policy<O, A>>,
    /// Value optimizer.
    pub value_opt: Adam<Value<O>>,
    /// Running mean of returns (the running-mean baseline); `None` before the first batch.
    pub running_mean: Option<f64>,
    dev: Cpu,
}

impl<const O: usize, const A: usize> Reinforce<O, A> {
    /// Fresh networks initialised from `seed`, with the learning rates of `cfg`.
    pub fn new(cfg: &ReinforceConfig, seed: u64) -> Self {
        let dev = Cpu::seed_from_u64(seed);
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

/// Trains with REINFORCE until the budget is spent or a greedy evaluation on envs from
/// `make_env` reaches `solve_threshold`. `run` logs, checkpoints, stops at `--stop-after` and
/// writes the summary; `t` must be built from the run's config and seed ([`Training::new`]), and
/// a `--resume`d run's checkpoint is loaded into it here.
pub fn train<E: Env<Act = usize> + 'static, const O: usize, const A: usize>(
    mut run: Run<ReinforceConfig>,
    t: &mut Training<E, O, A>,
    make_env: &dyn Fn() -> E,
) -> Result<Outcome<Summary>, Error> {
    let cfg = run.config.clone();
    run.restore(t)?;
    t.check_resumable()?;
    let batch = cfg.batch_size() as u64;
    let num_updates = cfg.total_timesteps / batch;
    let zeros = vec![0.0; cfg.num_envs];
    while t.progress.updates < num_updates {
        let update = t.progress.updates + 1;
        // Rollout: Monte-Carlo returns need no critic (an episode's return is what it earned).
        let steps_before = t.progress.env_steps;
        let Training { agent, rng, envs, rollout, obs, .. } = &mut *t;
        let act = |o: &[f32]| {
            let env_actions = agent.act(o, false, rng);
            let actions = env_actions.iter().map(|&a| a as f32).collect();
            PolicyStep { env_actions, actions, log_probs: zeros.clone(), values: zeros.clone() }
        };
        let episodes = rollout.collect(envs, obs, steps_before, act, |o| vec![0.0; o.len() / O])?;
        let step = steps_before + batch;
        rollout.compute_returns(cfg.gamma);

        // Learn on the steps whose episode ended in this batch.
        let mask = rollout.complete_episode_mask();
        let idx: Vec<usize> = (0..mask.len()).filter(|&k| mask[k]).collect();
        let f = cfg.grad_variance_frequency;
        let measure = f > 0 && step / f > steps_before / f;
        let stats = learn(agent, rollout, &idx, &cfg, measure, step)?;
        check_params(agent, step)?;
        let p = &mut t.progress;
        (p.updates, p.env_steps) = (update, step);
        p.grad_variances.extend(stats.grad_variance.map(|v| (step, v)));
        p.same_batch_grad_variances.extend(stats.same_batch_grad_variance.map(|v| (step, v)));
        p.curve.extend(mean_return(&episodes).map(|m| (step, m)));
        log_update(&mut run, step, &stats, &episodes)?;

        // Evaluate greedily every `eval_frequency` steps and after the last update.
        let due = cfg.eval_frequency > 0 && step / cfg.eval_frequency > steps_before / cfg.eval_frequency;
        if due || update == num_updates {
            t.progress.evals += 1;
            let seed = eval_seed(run.seed, t.progress.evals);
            let eval = EvalStats::from(&evaluate_policy(&t.agent, make_env, cfg.eval_episodes, seed)?);
            run.scalar("eval/mean_return", eval.mean_return, step)?;
            run.scalar("eval/std_return", eval.std_return, step)?;
            run.progress().message(format!("eval {:.1}", eval.mean_return));
            if cfg.solve_threshold.is_some_and(|th| eval.mean_return >= th) {
                t.progress.solved_at_step = Some(step);
            }
            t.progress.last_eval = Some(eval);
        }
        if t.progress.solved_at_step.is_some() {
            break;
        }
        if run.tick(step, t)? == Control::Stop {
            return Ok(Outcome::Stopped { done: step });
        }
    }
    let metrics = t.progress.metrics(cfg.solve_threshold);
    Ok(Outcome::Finished(Summary::finish(run, t.progress.env_steps, t, &metrics)?))
}

/// Mean return of the episodes that ended, if any did.
fn mean_return(episodes: &[EpisodeStats]) -> Option<f64> {
    (!episodes.is_empty()).then(|| episodes.iter().map(|e| e.ret).sum::<f64>() / episodes.len() as f64)
}

/// Fails when an update left a parameter of either network NaN or infinite.
fn check_params<const O: usize, const A: usize>(agent: &Reinforce<O, A>, step: u64) -> Result<(), Error> {
    let bad = |network| move |source| Error::NonFiniteParams { network, env_step: step, source };
    check_finite_params(&agent.policy).map_err(bad("policy"))?;
    check_finite_params(&agent.value).map_err(bad("value network"))
}

/// One update's TensorBoard scalars and the training episodes that ended.
fn log_update(
    run: &mut Run<ReinforceConfig>,
    step: u64,
    s: &UpdateStats,
    episodes: &[EpisodeStats],
) -> Result<(), Error> {
    run.scalar("losses/policy_loss", s.policy_loss, step)?;
    run.scalar("losses/entropy", s.entropy, step)?;
    run.scalar("losses/grad_norm", s.grad_norm, step)?;
    run.scalar("charts/samples", s.samples as f64, step)?;
    if let Some(v) = s.value_loss {
        run.scalar("losses/value_loss", v, step)?;
    }
    if let Some(v) = s.grad_variance {
        run.scalar("losses/grad_variance", v, step)?;
    }
    for e in episodes {
        run.scalar("charts/episodic_return", e.ret, step)?;
        run.scalar("charts/episodic_length", e.len as f64, step)?;
    }
    run.progress().update(step, mean_return(episodes));
    Ok(())
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

/// One policy step (and the baseline's update) on the steps `idx` of `buf`; with `measure`, the
/// gradient variance of every baseline on this batch first. `step` (env steps) names where a
/// non-finite value appeared.
fn learn<const O: usize, const A: usize>(
    agent: &mut Reinforce<O, A>,
    buf: &RolloutBuffer,
    idx: &[usize],
    cfg: &ReinforceConfig,
    measure: bool,
    step: u64,
) -> Result<UpdateStats, Error> {
    let mut stats = UpdateStats { samples: idx.len(), ..Default::default() };
    if idx.is_empty() {
        return Ok(stats);
    }
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

    let diagnostics = cfg.grad_variance_frequency > 0;
    if measure {
        let all = Baseline::ALL.map(|b| grad_variance_by_env(agent, buf, idx, &weights_for(b), cfg.ent_coef));
        if let [Some(none), Some(running_mean), Some(value)] = all {
            stats.same_batch_grad_variance = Some([none, running_mean, value]);
        }
        stats.grad_variance = all[Baseline::ALL.iter().position(|&b| b == cfg.baseline).unwrap_or(0)];
    }

    let max_norm = (cfg.max_grad_norm > 0.0).then_some(cfg.max_grad_norm);
    let (loss, entropy) = agent.policy_loss(&mb.obs, &actions, &weights, cfg.ent_coef);
    let loss_value = loss.array();
    check_finite("the policy loss", &[loss_value], step)?;
    let mut grads = loss.backward();
    stats.grad_norm = agent
        .policy_opt
        .update(&mut agent.policy, &mut grads, max_norm)
        .map_err(|source| Error::NonFiniteGradient { network: "policy", env_step: step, source })?
        as f64;
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
            check_finite("the value loss", &[v], step)?;
            loss_sum += v as f64;
            let mut grads = loss.backward();
            agent
                .value_opt
                .update(&mut agent.value, &mut grads, max_norm)
                .map_err(|source| Error::NonFiniteGradient { network: "value network", env_step: step, source })?;
        }
        stats.value_loss = Some(loss_sum / cfg.value_epochs.max(1) as f64);
    }
    Ok(stats)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: ReinforceConfig,
    }

    #[test]
    fn flag_defaults_are_the_documented_defaults_and_bad_settings_are_named() {
        assert_eq!(Cli::parse_from(["x"]).cfg, ReinforceConfig::default());
        assert_eq!(Cli::parse_from(["x", "--baseline", "running-mean"]).cfg.baseline, Baseline::RunningMean);
        assert_eq!(ReinforceConfig::cartpole().validate(), Ok(()));
        let bad: [(&str, ReinforceConfig); 5] = [
            ("num_envs", ReinforceConfig { num_envs: 0, ..Default::default() }),
            ("value_epochs", ReinforceConfig { value_epochs: 0, ..Default::default() }),
            ("running_mean_decay", ReinforceConfig { running_mean_decay: 1.5, ..Default::default() }),
            ("total_timesteps", ReinforceConfig { total_timesteps: 2047, ..Default::default() }),
            ("rollout storage", ReinforceConfig { num_steps: 1 << 60, ..Default::default() }),
        ];
        for (what, cfg) in bad {
            let err = cfg.validate().unwrap_err();
            assert!(err.contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn a_three_action_env_is_refused_by_a_two_action_trainer() {
        let err = Trainer::<_, 6, 2>::new(ReinforceConfig::default(), glimpse_envs::acrobot_v1).err().expect("refused");
        assert!(matches!(err, Error::Spaces(SpaceMismatch::DiscreteActions { expected: 2, .. })), "{err}");
        let err = Trainer::<_, 5, 3>::new(ReinforceConfig::default(), glimpse_envs::acrobot_v1).err().expect("refused");
        assert!(err.to_string().contains("reads 5 observation values"), "{err}");
        assert!(Trainer::<_, 6, 3>::new(ReinforceConfig::default(), glimpse_envs::acrobot_v1).is_ok());
    }
}
