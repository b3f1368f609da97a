//! Proximal Policy Optimization (Schulman et al. 2017), CleanRL-style: collect `num_steps` steps
//! from `num_envs` envs, compute GAE, then `update_epochs` passes of minibatch updates of the
//! clipped surrogate objective, an (optionally clipped) value loss and an entropy bonus.
//!
//! A2C is the same loop with one epoch over one full batch and no clipping (see [`crate::a2c`]).

use std::time::Instant;

use dfdx::prelude::*;
use glimpse::optim::{Adam, AdamConfig};
use glimpse::rollout::{normalize, Minibatch, RolloutBuffer};
use glimpse::vec_env::{VecEnv, VecEnvState};
use glimpse::{Env, EpisodeStats, Observation};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::policy::{ActorCritic, Column, Evaluation, Traced};
use crate::Error;

/// PPO hyperparameters. `Default` is CleanRL's `ppo.py`; the presets are RL-Zoo's tuned values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PpoConfig {
    /// Seed of the envs (env i gets `seed + i`), the network init and the sampling.
    pub seed: u64,
    /// Number of parallel environments.
    pub num_envs: usize,
    /// Threads stepping the environments (including the learner's).
    pub workers: usize,
    /// Steps per env per rollout.
    pub num_steps: usize,
    /// Environment steps to train for at most.
    pub total_timesteps: u64,
    /// Adam learning rate (initial value when annealed).
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over `total_timesteps`.
    pub anneal_lr: bool,
    /// Discount factor.
    pub gamma: f32,
    /// GAE λ.
    pub gae_lambda: f32,
    /// Passes over each rollout.
    pub update_epochs: usize,
    /// Minibatches per pass.
    pub num_minibatches: usize,
    /// Normalise advantages per minibatch.
    pub norm_adv: bool,
    /// Surrogate clipping ε; `None` gives the unclipped policy gradient (A2C).
    pub clip_coef: Option<f32>,
    /// Clip the value update to ±`clip_coef` around the old value.
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f32,
    /// Value loss coefficient.
    pub vf_coef: f32,
    /// Global gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// Stop an update's epochs early when the approximate KL exceeds this.
    pub target_kl: Option<f32>,
    /// Evaluate every this many updates (0: only at the end).
    pub eval_every: usize,
    /// Greedy episodes in an evaluation.
    pub eval_episodes: usize,
    /// Stop once the greedy evaluation mean return reaches this.
    pub target_return: Option<f64>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            seed: 1,
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
            max_grad_norm: Some(0.5),
            target_kl: None,
            eval_every: 10,
            eval_episodes: 100,
            target_return: None,
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
            eval_every: 5,
            target_return: Some(475.0),
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
            eval_every: 2,
            target_return: Some(-100.0),
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
            eval_every: 1,
            eval_episodes: 100,
            target_return: Some(-200.0),
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.num_envs == 0 || self.num_steps == 0 || self.workers == 0 {
            return bad("num_envs, num_steps and workers must be positive");
        }
        if self.num_minibatches == 0 || self.num_minibatches > self.num_envs * self.num_steps {
            return bad("num_minibatches must be in 1..=num_envs*num_steps");
        }
        if self.update_epochs == 0 {
            return bad("update_epochs must be positive");
        }
        if self.learning_rate.is_nan()
            || self.learning_rate <= 0.0
            || !(0.0..=1.0).contains(&self.gamma)
            || !(0.0..=1.0).contains(&self.gae_lambda)
        {
            return bad("learning_rate must be > 0, gamma and gae_lambda in [0, 1]");
        }
        Ok(())
    }
}

/// What the trainer reports after each update.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateStats {
    /// Update number, from 1.
    pub update: usize,
    /// Environment steps so far (all envs).
    pub env_steps: u64,
    /// Seconds since training started.
    pub wall_seconds: f64,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Mean surrogate policy loss.
    pub policy_loss: f64,
    /// Mean value loss.
    pub value_loss: f64,
    /// Mean policy entropy.
    pub entropy: f64,
    /// Mean approximate KL(old ‖ new) (`(r − 1) − log r`).
    pub approx_kl: f64,
    /// Fraction of samples whose ratio was clipped.
    pub clip_fraction: f64,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Explained variance of the value predictions on this rollout.
    pub explained_variance: f64,
    /// Training episodes that ended during this rollout.
    #[serde(skip)]
    pub episodes: Vec<EpisodeStats>,
    /// Greedy evaluation mean return, when one ran after this update.
    pub eval_mean_return: Option<f64>,
}

/// The result of a training run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrainOutcome {
    /// Environment steps taken.
    pub env_steps: u64,
    /// Seconds spent.
    pub wall_seconds: f64,
    /// Updates done.
    pub updates: usize,
    /// Env steps at which the evaluation first reached `target_return`.
    pub solved_at_step: Option<u64>,
    /// Mean return of the last greedy evaluation.
    pub eval_mean_return: Option<f64>,
    /// `(env_steps, mean training episode return)` after each update that ended episodes.
    pub curve: Vec<(u64, f64)>,
}

/// Greedy evaluation: mean return over `episodes` episodes of `env` (first reset seeded with `seed`).
pub fn evaluate<E, P, const O: usize>(env: &mut E, policy: &P, episodes: usize, seed: u64) -> Result<f64, Error>
where
    E: Env,
    P: ActorCritic<O, Action = E::Act>,
{
    let mut rng = StdRng::seed_from_u64(seed);
    let mut obs = vec![0.0f32; O];
    let mut total = 0.0;
    for ep in 0..episodes {
        let (o, _) = env.reset(if ep == 0 { Some(seed) } else { None })?;
        o.write_to(&mut obs);
        loop {
            let action = policy.act(&obs, true, &mut rng).env_actions.remove(0);
            let step = env.step(&action)?;
            total += step.reward;
            if step.done() {
                break;
            }
            step.obs.write_to(&mut obs);
        }
    }
    Ok(total / episodes.max(1) as f64)
}

/// A fresh Adam optimizer for `policy` with the configured learning rate (ε = 1e-5, as CleanRL).
pub fn optimizer<const O: usize, P: ActorCritic<O>>(policy: &P, cfg: &PpoConfig) -> Adam<P::Net> {
    Adam::new(policy.net(), AdamConfig { lr: cfg.learning_rate as f32, eps: 1e-5, ..Default::default() })
}

/// Where [`train_from`]'s loop stood after an update. Saved with the policy and optimizer, it lets
/// a run continue bit-identically: same updates, same learning-rate schedule, same episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopState {
    /// Updates done.
    pub update: usize,
    /// Env steps done.
    pub env_steps: u64,
    /// The environments (states, running episode statistics, observations), or why they could not
    /// be saved (e.g. a Python env): continuing then fails with that reason.
    pub envs: Result<VecEnvState, String>,
    /// The sampling stream (actions and minibatch order); `StdRng` is this generator.
    pub rng: ChaCha12Rng,
    /// The learning curve so far (see [`TrainOutcome::curve`]).
    pub curve: Vec<(u64, f64)>,
}

/// What [`train_from`] passes to its callback after each update.
pub struct UpdateContext<'a, P: ActorCritic<O>, const O: usize> {
    /// The update's statistics.
    pub stats: &'a UpdateStats,
    /// The current policy.
    pub policy: &'a P,
    /// The optimizer.
    pub opt: &'a Adam<P::Net>,
    /// Saves the loop's state (for a checkpoint), computed only when called.
    pub loop_state: &'a dyn Fn() -> LoopState,
}

/// Trains `policy` with PPO on `envs` (stepped as a [`VecEnv`]) using `opt` (see [`optimizer`]),
/// evaluating greedily on `eval_env`. `on_update` sees every update's statistics, the current policy
/// and the optimizer (for logging and checkpoints).
pub fn train<E, P, const O: usize>(
    envs: Vec<E>,
    eval_env: &mut E,
    policy: &mut P,
    opt: &mut Adam<P::Net>,
    cfg: &PpoConfig,
    mut on_update: impl FnMut(&UpdateStats, &P, &Adam<P::Net>),
) -> Result<TrainOutcome, Error>
where
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    train_from(envs, eval_env, policy, opt, cfg, None, |c: &UpdateContext<'_, P, O>| {
        on_update(c.stats, c.policy, c.opt);
        false
    })
}

/// [`train`], continuing from `resume` (a [`LoopState`] saved by an earlier call, with the policy
/// and optimizer restored by the caller) when given. `on_update` returns `true` to stop after this
/// update (the outcome then covers the updates done so far).
pub fn train_from<E, P, const O: usize>(
    envs: Vec<E>,
    eval_env: &mut E,
    policy: &mut P,
    opt: &mut Adam<P::Net>,
    cfg: &PpoConfig,
    resume: Option<&LoopState>,
    mut on_update: impl FnMut(&UpdateContext<'_, P, O>) -> bool,
) -> Result<TrainOutcome, Error>
where
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    cfg.validate()?;
    if envs.len() != cfg.num_envs {
        return Err(Error::Config(format!("got {} envs, config says num_envs = {}", envs.len(), cfg.num_envs)));
    }
    if E::Obs::DIM != O {
        return Err(Error::Config(format!("env observations have {} values, the network expects {O}", E::Obs::DIM)));
    }
    let start = Instant::now();
    let dev = Cpu::default();
    let (n, t_len) = (cfg.num_envs, cfg.num_steps);
    let mut venv = VecEnv::new(envs, cfg.workers)?;
    let mut buf = RolloutBuffer::new(n, t_len, O, P::ACT_DIM);
    let num_updates = (cfg.total_timesteps / (n * t_len) as u64).max(1) as usize;
    let mut out = TrainOutcome::default();
    let (mut rng, mut obs, first_update) = match resume {
        None => (ChaCha12Rng::seed_from_u64(cfg.seed), venv.reset(Some(cfg.seed))?.to_vec(), 1),
        Some(saved) => {
            let envs = saved.envs.as_ref().map_err(|why| {
                Error::Config(format!("cannot resume exactly: the checkpoint holds no environment state because {why}"))
            })?;
            venv.restore_state(envs)?;
            (out.env_steps, out.updates, out.curve) = (saved.env_steps, saved.update, saved.curve.clone());
            (saved.rng.clone(), venv.observations().to_vec(), saved.update + 1)
        }
    };

    for update in first_update..=num_updates {
        if cfg.anneal_lr {
            opt.cfg.lr = (cfg.learning_rate * (1.0 - (update - 1) as f64 / num_updates as f64)) as f32;
        }
        let episodes = buf.collect(&mut venv, &mut obs, |o| policy.act(o, false, &mut rng), |o| policy.values(o))?;
        out.env_steps += (n * t_len) as u64;
        buf.compute_gae(cfg.gamma, cfg.gae_lambda);

        let mut stats = learn::<O, P>(policy, opt, &buf, cfg, &dev, &mut rng)?;
        stats.update = update;
        stats.env_steps = out.env_steps;
        stats.learning_rate = opt.cfg.lr as f64;
        stats.explained_variance = explained_variance(&buf.values, &buf.returns);
        if !episodes.is_empty() {
            let mean = episodes.iter().map(|e| e.ret).sum::<f64>() / episodes.len() as f64;
            out.curve.push((out.env_steps, mean));
        }
        stats.episodes = episodes;

        // Evaluate: a cheap 10-episode check first, the full evaluation only when it passes.
        let last = update == num_updates;
        if (cfg.eval_every > 0 && update % cfg.eval_every == 0) || last {
            let quick = evaluate::<E, P, O>(eval_env, policy, cfg.eval_episodes.min(10), cfg.seed + 10_000)?;
            let full_needed = cfg.target_return.is_none_or(|t| quick >= t) || last;
            let mean = if full_needed && cfg.eval_episodes > 10 {
                evaluate::<E, P, O>(eval_env, policy, cfg.eval_episodes, cfg.seed + 20_000)?
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
            env_steps: out.env_steps,
            envs: venv.save_state().map_err(|e| e.to_string()),
            rng: rng.clone(),
            curve: out.curve.clone(),
        };
        let stop = on_update(&UpdateContext { stats: &stats, policy, opt, loop_state: &loop_state });
        if out.solved_at_step.is_some() || stop {
            break;
        }
    }
    out.wall_seconds = start.elapsed().as_secs_f64();
    Ok(out)
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

/// The PPO/A2C update over one rollout.
fn learn<const O: usize, P: ActorCritic<O>>(
    policy: &mut P,
    opt: &mut Adam<P::Net>,
    buf: &RolloutBuffer,
    cfg: &PpoConfig,
    dev: &Cpu,
    rng: &mut ChaCha12Rng,
) -> Result<UpdateStats, Error> {
    let mb_size = buf.batch_size().div_ceil(cfg.num_minibatches);
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
            let ev = policy.evaluate(obs, &mb.actions);
            let (loss, parts) = loss(ev, &mb, &adv, cfg, dev);
            let (pg_v, v_v, ent_v) = (parts.policy_loss, parts.value_loss, parts.entropy);
            if !(pg_v.is_finite() && v_v.is_finite() && ent_v.is_finite()) {
                return Err(Error::NonFinite(format!("policy loss {pg_v}, value loss {v_v}, entropy {ent_v}")));
            }
            let mut grads = loss.backward();
            let norm = opt.update(policy.net_mut(), &mut grads, cfg.max_grad_norm.map(|m| m as f32))? as f64;
            if !norm.is_finite() {
                return Err(Error::NonFinite(format!("gradient norm {norm}")));
            }

            sums.policy_loss += pg_v;
            sums.value_loss += v_v;
            sums.entropy += ent_v;
            sums.approx_kl += parts.approx_kl;
            sums.clip_fraction += parts.clip_fraction;
            sums.grad_norm += norm;
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
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explained_variance_is_one_for_perfect_values_and_zero_for_the_mean() {
        let returns = [1.0, 2.0, 3.0, 6.0];
        assert!((explained_variance(&returns, &returns) - 1.0).abs() < 1e-12);
        assert!(explained_variance(&[3.0; 4], &returns).abs() < 1e-12);
    }
}
