//! Proximal Policy Optimization (Schulman et al. 2017), CleanRL-style: collect `num_steps` steps
//! from `num_envs` envs, compute GAE, then `update_epochs` passes of minibatch updates of the
//! clipped surrogate objective, an (optionally clipped) value loss and an entropy bonus.
//!
//! A2C is the same loop with one epoch over one full batch and no clipping (see [`crate::a2c`]).
//! [`train`] is the whole loop; the run layer ([`glimpse::run`]) does its logging, checkpoints,
//! `--stop-after` and `summary.json`.

use dfdx::prelude::*;
use glimpse::finite::check_finite_f64;
use glimpse::optim::{check_finite_params, Adam};
use glimpse::rollout::{normalize, Minibatch, RolloutBuffer};
use glimpse::run::{eval_seed, Control, EvalStats, Outcome, Run, RunConfig, Unit};
use glimpse::validate;
use glimpse::{Env, EpisodeStats};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::policy::{ActorCritic, Column, Evaluation, Traced};
use crate::trainer::Algorithm;
use crate::training::{evaluate_policy, Training};
use crate::{Error, Summary};

/// PPO hyperparameters. `Default` is CleanRL's `ppo.py`; the presets are RL-Zoo's tuned values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct PpoConfig {
    /// Number of parallel environments (env i is first reset with seed + i).
    #[arg(long, default_value_t = 4)]
    pub num_envs: usize,
    /// Threads stepping the environments, the learner's included (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Steps per env per rollout.
    #[arg(long, default_value_t = 128)]
    pub num_steps: usize,
    /// Environment steps (all envs together) to train for at most.
    #[arg(long, default_value_t = 500_000)]
    pub total_timesteps: u64,
    /// Adam learning rate (its starting value when annealed).
    #[arg(long, default_value_t = 2.5e-4)]
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over `total_timesteps`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub anneal_lr: bool,
    /// Discount factor.
    #[arg(long, default_value_t = 0.99)]
    pub gamma: f32,
    /// GAE λ.
    #[arg(long, default_value_t = 0.95)]
    pub gae_lambda: f32,
    /// Passes over each rollout.
    #[arg(long, default_value_t = 4)]
    pub update_epochs: usize,
    /// Minibatches per pass.
    #[arg(long, default_value_t = 4)]
    pub num_minibatches: usize,
    /// Normalise advantages per minibatch.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub norm_adv: bool,
    /// Surrogate clipping ε (`null` in a config file: no clipping, the A2C loss).
    #[arg(long, default_value = "0.2")]
    pub clip_coef: Option<f32>,
    /// Clip the value update to ±`clip_coef` around the old value.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    #[arg(long, default_value_t = 0.01)]
    pub ent_coef: f32,
    /// Value loss coefficient.
    #[arg(long, default_value_t = 0.5)]
    pub vf_coef: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 0.5)]
    pub max_grad_norm: f32,
    /// Stop an update's epochs early once their mean approximate KL exceeds this (unset: never).
    #[arg(long)]
    pub target_kl: Option<f32>,
    /// Environment steps between greedy evaluations (0: only at the end).
    #[arg(long, default_value_t = 5120)]
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

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            num_envs: 4,
            workers: 1,
            num_steps: 128,
            total_timesteps: 500_000,
            learning_rate: 2.5e-4,
            anneal_lr: true,
            gamma: 0.99,
            gae_lambda: 0.95,
            update_epochs: 4,
            num_minibatches: 4,
            norm_adv: true,
            clip_coef: Some(0.2),
            clip_vloss: true,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            target_kl: None,
            eval_frequency: 5120,
            eval_episodes: 100,
            solve_threshold: None,
            checkpoint_frequency: 10_000,
        }
    }
}

impl PpoConfig {
    /// CartPole-v1 (RL-Zoo): 8 envs × 32 steps, 20 epochs of one minibatch, γ 0.98, λ 0.8, lr 1e-3.
    pub fn cartpole() -> Self {
        Self {
            num_envs: 8,
            num_steps: 32,
            total_timesteps: 200_000,
            learning_rate: 1e-3,
            gamma: 0.98,
            gae_lambda: 0.8,
            update_epochs: 20,
            num_minibatches: 1,
            ent_coef: 0.0,
            eval_frequency: 1280,
            solve_threshold: Some(475.0),
            ..Self::default()
        }
    }

    /// Acrobot-v1 (after RL-Zoo): 16 envs × 256 steps, 4 epochs, λ 0.94.
    pub fn acrobot() -> Self {
        Self {
            num_envs: 16,
            num_steps: 256,
            total_timesteps: 1_000_000,
            learning_rate: 1e-3,
            gamma: 0.99,
            gae_lambda: 0.94,
            update_epochs: 4,
            num_minibatches: 16,
            ent_coef: 0.0,
            eval_frequency: 8192,
            solve_threshold: Some(-100.0),
            ..Self::default()
        }
    }

    /// Pendulum-v1 (after RL-Zoo): 4 envs × 1024 steps, 10 epochs of 64-sample minibatches,
    /// lr 1e-3, λ 0.95; γ 0.95 instead of RL-Zoo's 0.9 (without gSDE, 0.9 plateaued near −210 here).
    pub fn pendulum() -> Self {
        Self {
            num_envs: 4,
            num_steps: 1024,
            total_timesteps: 300_000,
            learning_rate: 1e-3,
            gamma: 0.95,
            gae_lambda: 0.95,
            update_epochs: 10,
            num_minibatches: 64,
            ent_coef: 0.0,
            clip_vloss: false,
            eval_frequency: 4096,
            eval_episodes: 100,
            solve_threshold: Some(-200.0),
            ..Self::default()
        }
    }

    /// Transitions per rollout, `num_envs × num_steps`.
    pub fn batch_size(&self) -> usize {
        self.num_envs.saturating_mul(self.num_steps)
    }

    /// Checks every setting; the message names the first bad one and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        validate::rollout(self.num_envs, self.workers, self.num_steps, self.total_timesteps)?;
        validate::positive("learning_rate", self.learning_rate)?;
        validate::unit_interval("gamma", self.gamma)?;
        validate::unit_interval("gae_lambda", self.gae_lambda)?;
        validate::at_least("update_epochs", self.update_epochs, 1)?;
        validate::ensure((1..=self.batch_size()).contains(&self.num_minibatches), || {
            format!(
                "num_minibatches must be in 1..={} (num_envs × num_steps), got {}",
                self.batch_size(),
                self.num_minibatches
            )
        })?;
        if let Some(c) = self.clip_coef {
            validate::positive("clip_coef", c)?;
        }
        validate::non_negative("ent_coef", self.ent_coef)?;
        validate::non_negative("vf_coef", self.vf_coef)?;
        validate::non_negative("max_grad_norm", self.max_grad_norm)?;
        if let Some(k) = self.target_kl {
            validate::positive("target_kl", k)?;
        }
        validate::at_least("eval_episodes", self.eval_episodes, 1)?;
        validate::evaluation(self.eval_episodes, self.solve_threshold)
    }
}

impl RunConfig for PpoConfig {
    const UNIT: Unit = Unit::EnvSteps;
    fn budget(&self) -> u64 {
        self.total_timesteps
    }
    fn validate(&self) -> Result<(), String> {
        PpoConfig::validate(self)
    }
    fn checkpoint_every(&self) -> u64 {
        self.checkpoint_frequency
    }
}

impl Algorithm for PpoConfig {
    const NAME: &'static str = "ppo";
    fn to_ppo(&self) -> PpoConfig {
        self.clone()
    }
}

/// The means of one update's minibatch statistics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateStats {
    /// Surrogate policy loss.
    pub policy_loss: f64,
    /// Value loss.
    pub value_loss: f64,
    /// Policy entropy.
    pub entropy: f64,
    /// Approximate KL(old ‖ new) (`(r − 1) − log r`).
    pub approx_kl: f64,
    /// Fraction of samples whose ratio was clipped.
    pub clip_fraction: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// Trains `agent` with PPO (with A2C when the run's config is an [`A2cConfig`](crate::A2cConfig))
/// until the budget is spent or a greedy evaluation on envs from `make_env` reaches
/// `solve_threshold`. `run` logs, checkpoints, stops at `--stop-after` and writes the summary;
/// `agent` must be built from the run's config and seed ([`Training::new`]), and a `--resume`d
/// run's checkpoint is loaded into it here.
pub fn train<C, E, P, const O: usize>(
    mut run: Run<C>,
    agent: &mut Training<E, P, O>,
    make_env: &dyn Fn() -> E,
) -> Result<Outcome<Summary>, Error>
where
    C: Algorithm,
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    let cfg = run.config.to_ppo();
    run.restore(agent)?;
    agent.check_resumable()?;
    let dev = Cpu::default();
    let batch = cfg.batch_size() as u64;
    let num_updates = cfg.total_timesteps / batch;
    while agent.progress.updates < num_updates {
        let update = agent.progress.updates + 1;
        if cfg.anneal_lr {
            agent.opt.cfg.lr = (cfg.learning_rate * (1.0 - (update - 1) as f64 / num_updates as f64)) as f32;
        }
        // Rollout: `num_steps` steps of every env with the current (stochastic) policy, then GAE.
        let steps_before = agent.progress.env_steps;
        let Training { policy, rng, envs, rollout, obs, .. } = &mut *agent;
        let episodes = rollout.collect(envs, obs, steps_before, |o| policy.act(o, false, rng), |o| policy.values(o))?;
        let step = steps_before + batch;
        rollout.compute_gae(cfg.gamma, cfg.gae_lambda);

        // Learn: `update_epochs` passes of minibatch steps on the clipped surrogate.
        let stats = learn(&mut agent.policy, &mut agent.opt, &agent.rollout, &cfg, &dev, &mut agent.rng, step)?;
        check_finite_params(agent.policy.net()).map_err(|source| Error::NonFiniteParams { env_step: step, source })?;
        agent.progress.updates = update;
        agent.progress.env_steps = step;
        let ev = explained_variance(&agent.rollout.values, &agent.rollout.returns);
        log_update(&mut run, step, agent.opt.cfg.lr, &stats, ev, &episodes)?;
        if let Some(mean) = mean_return(&episodes) {
            agent.progress.curve.push((step, mean));
        }

        // Evaluate greedily every `eval_frequency` steps and after the last update.
        let due = cfg.eval_frequency > 0 && step / cfg.eval_frequency > steps_before / cfg.eval_frequency;
        if due || update == num_updates {
            let p = &mut agent.progress;
            p.evals += 1;
            let seed = eval_seed(run.seed, p.evals);
            let eval = EvalStats::from(&evaluate_policy(&agent.policy, make_env, cfg.eval_episodes, seed)?);
            log_eval(&mut run, step, &eval)?;
            if cfg.solve_threshold.is_some_and(|t| eval.mean_return >= t) {
                agent.progress.solved_at_step = Some(step);
            }
            agent.progress.last_eval = Some(eval);
        }
        if agent.progress.solved_at_step.is_some() {
            break;
        }
        if run.tick(step, agent)? == Control::Stop {
            return Ok(Outcome::Stopped { done: step });
        }
    }
    finish(run, agent, &cfg)
}

/// Ends the run: the final checkpoint and `summary.json` (see [`crate::Summary`]).
fn finish<C: RunConfig, E: Env + 'static, P: ActorCritic<O>, const O: usize>(
    run: Run<C>,
    agent: &Training<E, P, O>,
    cfg: &PpoConfig,
) -> Result<Outcome<Summary>, Error> {
    let metrics = agent.progress.metrics(cfg.solve_threshold);
    Ok(Outcome::Finished(Summary::finish(run, agent.progress.env_steps, agent, &metrics)?))
}

/// An evaluation's TensorBoard scalars.
fn log_eval<C: RunConfig>(run: &mut Run<C>, step: u64, eval: &EvalStats) -> Result<(), Error> {
    run.scalar("eval/mean_return", eval.mean_return, step)?;
    run.scalar("eval/std_return", eval.std_return, step)?;
    run.progress().message(format!("eval {:.1}", eval.mean_return));
    Ok(())
}

/// Mean return of the episodes that ended, if any did.
fn mean_return(episodes: &[EpisodeStats]) -> Option<f64> {
    (!episodes.is_empty()).then(|| episodes.iter().map(|e| e.ret).sum::<f64>() / episodes.len() as f64)
}

/// One update's TensorBoard scalars (CleanRL's tags) and the training episodes that ended.
fn log_update<C: RunConfig>(
    run: &mut Run<C>,
    step: u64,
    learning_rate: f32,
    s: &UpdateStats,
    explained_variance: f64,
    episodes: &[EpisodeStats],
) -> Result<(), Error> {
    for (tag, v) in [
        ("charts/learning_rate", learning_rate as f64),
        ("losses/policy_loss", s.policy_loss),
        ("losses/value_loss", s.value_loss),
        ("losses/entropy", s.entropy),
        ("losses/approx_kl", s.approx_kl),
        ("losses/clip_fraction", s.clip_fraction),
        ("losses/grad_norm", s.grad_norm),
        ("losses/explained_variance", explained_variance),
    ] {
        if v.is_finite() {
            run.scalar(tag, v, step)?;
        }
    }
    for e in episodes {
        run.scalar("charts/episodic_return", e.ret, step)?;
        run.scalar("charts/episodic_length", e.len as f64, step)?;
    }
    run.progress().update(step, mean_return(episodes));
    Ok(())
}

/// `1 − Var(returns − values) / Var(returns)`.
pub fn explained_variance(values: &[f32], returns: &[f32]) -> f64 {
    let var = |x: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = x.collect();
        let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
        v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / v.len().max(1) as f64
    };
    let var_y = var(&mut returns.iter().map(|&r| r as f64));
    let var_res = var(&mut returns.iter().zip(values).map(|(&r, &v)| (r - v) as f64));
    if var_y == 0.0 {
        f64::NAN
    } else {
        1.0 - var_res / var_y
    }
}

/// The parts of [`loss`], as plain numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossParts {
    /// Surrogate policy loss.
    pub policy_loss: f64,
    /// Value loss (before `vf_coef`).
    pub value_loss: f64,
    /// Mean entropy.
    pub entropy: f64,
    /// Mean `(r − 1) − log r`, an estimate of KL(old ‖ new).
    pub approx_kl: f64,
    /// Fraction of rows with `|r − 1| > clip_coef`.
    pub clip_fraction: f64,
}

/// PPO's minibatch loss `L_clip + vf_coef · L_V − ent_coef · H` (A2C's when `clip_coef` is
/// `None`), from a traced [`Evaluation`] of the minibatch's actions and the (already
/// normalised, if wanted) advantages `adv`.
pub fn loss(
    ev: Evaluation,
    mb: &Minibatch,
    adv: &[f32],
    cfg: &PpoConfig,
    dev: &Cpu,
) -> (Tensor<(), f32, Cpu, Traced>, LossParts) {
    let b = mb.len();
    let col = |v: Vec<f32>| -> Column { dev.tensor_from_vec(v, (b,)) };
    // Ratio statistics, computed outside the graph.
    let (mut kl, mut clipped) = (0.0f64, 0usize);
    for (nl, ol) in ev.log_probs.as_vec().iter().zip(&mb.log_probs) {
        let log_ratio = (nl - ol) as f64;
        kl += log_ratio.exp() - 1.0 - log_ratio;
        if cfg.clip_coef.is_some_and(|c| (log_ratio.exp() - 1.0).abs() > c as f64) {
            clipped += 1;
        }
    }

    let ratio = (ev.log_probs - col(mb.log_probs.clone())).exp();
    let neg_adv = col(adv.iter().map(|a| -a).collect());
    let pg_loss = match cfg.clip_coef {
        Some(c) => {
            let unclipped = ratio.with_empty_tape() * neg_adv.clone();
            let clipped = ratio.clamp(1.0 - c, 1.0 + c) * neg_adv;
            unclipped.maximum(clipped).mean()
        }
        None => (ratio * neg_adv).mean(),
    };
    let returns = col(mb.returns.clone());
    let v_loss = match (cfg.clip_vloss, cfg.clip_coef) {
        (true, Some(c)) => {
            let old_v = col(mb.values.clone());
            let unclipped = (ev.values.with_empty_tape() - returns.clone()).square();
            let v_clipped = (ev.values - old_v.clone()).clamp(-c, c) + old_v;
            let clipped = (v_clipped - returns).square();
            unclipped.maximum(clipped).mean() * 0.5
        }
        _ => (ev.values - returns).square().mean() * 0.5,
    };
    let entropy = ev.entropy.mean();
    let parts = LossParts {
        policy_loss: pg_loss.array() as f64,
        value_loss: v_loss.array() as f64,
        entropy: entropy.array() as f64,
        approx_kl: kl / b.max(1) as f64,
        clip_fraction: clipped as f64 / b.max(1) as f64,
    };
    (pg_loss + v_loss * cfg.vf_coef - entropy * cfg.ent_coef, parts)
}

/// The PPO/A2C update over one rollout: `update_epochs` passes of shuffled minibatches, each one
/// Adam step on [`loss`]. `step` (env steps) names where a non-finite value appeared.
fn learn<const O: usize, P: ActorCritic<O>>(
    policy: &mut P,
    opt: &mut Adam<P::Net>,
    buf: &RolloutBuffer,
    cfg: &PpoConfig,
    dev: &Cpu,
    rng: &mut ChaCha12Rng,
    step: u64,
) -> Result<UpdateStats, Error> {
    let mb_size = buf.batch_size().div_ceil(cfg.num_minibatches);
    let max_norm = (cfg.max_grad_norm > 0.0).then_some(cfg.max_grad_norm);
    let mut sums = UpdateStats::default();
    let mut count = 0usize;
    'epochs: for _ in 0..cfg.update_epochs {
        let mut epoch_kl = Vec::new();
        for idx in buf.minibatch_indices(mb_size, rng) {
            let mb = buf.minibatch(&idx);
            let b = mb.len();
            let mut adv = mb.advantages.clone();
            if cfg.norm_adv && b > 1 {
                normalize(&mut adv);
            }
            let grads = policy.net().alloc_grads();
            let obs = dev.tensor_from_vec(mb.obs.clone(), (b, Const::<O>)).traced(grads);
            let (loss, parts) = loss(policy.evaluate(obs, &mb.actions), &mb, &adv, cfg, dev);
            let values = [parts.policy_loss, parts.value_loss, parts.entropy];
            check_finite_f64("the loss (policy loss, value loss, entropy)", &values, step)?;
            let mut grads = loss.backward();
            let norm = opt
                .update(policy.net_mut(), &mut grads, max_norm)
                .map_err(|source| Error::NonFiniteGradient { env_step: step, source })?;

            sums.policy_loss += parts.policy_loss;
            sums.value_loss += parts.value_loss;
            sums.entropy += parts.entropy;
            sums.approx_kl += parts.approx_kl;
            sums.clip_fraction += parts.clip_fraction;
            sums.grad_norm += norm as f64;
            count += 1;
            epoch_kl.push(parts.approx_kl);
        }
        if let Some(target) = cfg.target_kl {
            if epoch_kl.iter().sum::<f64>() / epoch_kl.len() as f64 > target as f64 {
                break 'epochs;
            }
        }
    }
    let c = count.max(1) as f64;
    Ok(UpdateStats {
        policy_loss: sums.policy_loss / c,
        value_loss: sums.value_loss / c,
        entropy: sums.entropy / c,
        approx_kl: sums.approx_kl / c,
        clip_fraction: sums.clip_fraction / c,
        grad_norm: sums.grad_norm / c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: PpoConfig,
    }

    #[test]
    fn explained_variance_is_one_for_perfect_values_and_zero_for_the_mean() {
        let returns = [1.0, 2.0, 3.0, 6.0];
        assert!((explained_variance(&returns, &returns) - 1.0).abs() < 1e-12);
        assert!(explained_variance(&[3.0; 4], &returns).abs() < 1e-12);
    }

    #[test]
    fn flag_defaults_are_the_documented_defaults_and_every_preset_is_valid() {
        assert_eq!(Cli::parse_from(["x"]).cfg, PpoConfig::default());
        let help = Cli::command().render_help().to_string();
        for flag in ["--learning-rate <LEARNING_RATE>", "[default: 0.00025]", "--clip-coef", "[default: 0.2]"] {
            assert!(help.contains(flag), "{flag} missing from\n{help}");
        }
        let m = Cli::command().get_matches_from(["x", "--norm-adv", "false", "--target-kl", "0.02"]);
        let cfg = Cli::from_arg_matches(&m).unwrap().cfg;
        assert!(!cfg.norm_adv && cfg.target_kl == Some(0.02));
        for preset in [PpoConfig::default(), PpoConfig::cartpole(), PpoConfig::acrobot(), PpoConfig::pendulum()] {
            assert_eq!(preset.validate(), Ok(()));
        }
    }

    #[test]
    fn every_bad_setting_is_named() {
        let bad: [(&str, PpoConfig); 10] = [
            ("num_envs", PpoConfig { num_envs: 0, ..Default::default() }),
            ("workers", PpoConfig { workers: 0, ..Default::default() }),
            ("learning_rate", PpoConfig { learning_rate: f64::NAN, ..Default::default() }),
            ("gamma", PpoConfig { gamma: 1.5, ..Default::default() }),
            ("gae_lambda", PpoConfig { gae_lambda: -0.1, ..Default::default() }),
            ("num_minibatches", PpoConfig { num_minibatches: 513, ..Default::default() }),
            ("clip_coef", PpoConfig { clip_coef: Some(0.0), ..Default::default() }),
            ("max_grad_norm", PpoConfig { max_grad_norm: -1.0, ..Default::default() }),
            ("total_timesteps", PpoConfig { total_timesteps: 100, ..Default::default() }),
            ("num_steps", PpoConfig { num_envs: 1 << 20, num_steps: 1 << 40, ..Default::default() }),
        ];
        for (field, cfg) in bad {
            let err = cfg.validate().unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
