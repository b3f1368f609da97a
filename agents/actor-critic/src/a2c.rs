//! Synchronous advantage actor-critic (A2C, Mnih et al. 2016): n-step rollouts from N envs stepped
//! on worker threads, GAE(λ) advantages, one gradient step per rollout on
//! `−A·log π(a|s) + c_v·(V − R)² / 2 − c_e·H`.
//!
//! The loop is PPO's ([`crate::ppo::train`]) with one epoch over one full batch and no clipping:
//! at the behaviour policy the ratio is 1 and its gradient is that of `log π`, so the clipped
//! machinery reduces exactly to the A2C gradient.

use glimpse::optim::Adam;
use glimpse::Env;
use serde::{Deserialize, Serialize};

use crate::policy::ActorCritic;
use crate::ppo::{self, PpoConfig, TrainOutcome, UpdateStats};
use crate::Error;

/// A2C hyperparameters (defaults after SB3/RL-Zoo's CartPole A2C; Adam instead of RMSprop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct A2cConfig {
    /// Seed of the envs, the network init and the sampling.
    pub seed: u64,
    /// Number of parallel environments.
    pub num_envs: usize,
    /// Threads stepping the environments (including the learner's).
    pub workers: usize,
    /// n of the n-step rollout (steps per env per update).
    pub num_steps: usize,
    /// Environment steps to train for at most.
    pub total_timesteps: u64,
    /// Adam learning rate (initial value when annealed).
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0.
    pub anneal_lr: bool,
    /// Discount factor.
    pub gamma: f32,
    /// GAE λ (1.0: plain n-step returns).
    pub gae_lambda: f32,
    /// Normalise advantages per update.
    pub norm_adv: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f32,
    /// Value loss coefficient.
    pub vf_coef: f32,
    /// Global gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// Evaluate every this many updates.
    pub eval_every: usize,
    /// Greedy episodes in an evaluation.
    pub eval_episodes: usize,
    /// Stop once the greedy evaluation mean return reaches this.
    pub target_return: Option<f64>,
}

impl Default for A2cConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            num_envs: 8,
            workers: 1,
            num_steps: 5,
            total_timesteps: 500_000,
            learning_rate: 7e-4,
            anneal_lr: true,
            gamma: 0.99,
            gae_lambda: 1.0,
            norm_adv: false,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: Some(0.5),
            eval_every: 250,
            eval_episodes: 100,
            target_return: None,
        }
    }
}

impl A2cConfig {
    /// CartPole-v1: 8 envs × 5 steps on 2 worker threads, γ 0.99, λ 1 (n-step returns), lr 7e-4.
    pub fn cartpole() -> Self {
        Self { workers: 2, total_timesteps: 500_000, target_return: Some(475.0), ..Self::default() }
    }

    /// The same run expressed as a PPO configuration (1 epoch, 1 minibatch, no clipping).
    pub fn to_ppo(&self) -> PpoConfig {
        PpoConfig {
            seed: self.seed,
            num_envs: self.num_envs,
            workers: self.workers,
            num_steps: self.num_steps,
            total_timesteps: self.total_timesteps,
            learning_rate: self.learning_rate,
            anneal_lr: self.anneal_lr,
            gamma: self.gamma,
            gae_lambda: self.gae_lambda,
            update_epochs: 1,
            num_minibatches: 1,
            norm_adv: self.norm_adv,
            clip_coef: None,
            clip_vloss: false,
            ent_coef: self.ent_coef,
            vf_coef: self.vf_coef,
            max_grad_norm: self.max_grad_norm,
            target_kl: None,
            eval_every: self.eval_every,
            eval_episodes: self.eval_episodes,
            target_return: self.target_return,
        }
    }
}

/// Trains `policy` with A2C; see [`ppo::train`] for the arguments.
pub fn train<E, P, const O: usize>(
    envs: Vec<E>,
    eval_env: &mut E,
    policy: &mut P,
    opt: &mut Adam<P::Net>,
    cfg: &A2cConfig,
    on_update: impl FnMut(&UpdateStats, &P, &Adam<P::Net>),
) -> Result<TrainOutcome, Error>
where
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    ppo::train::<E, P, O>(envs, eval_env, policy, opt, &cfg.to_ppo(), on_update)
}
