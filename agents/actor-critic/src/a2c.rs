//! Synchronous advantage actor-critic (A2C, Mnih et al. 2016): n-step rollouts from N envs stepped
//! on worker threads, GAE(λ) advantages, one gradient step per rollout on
//! `−A·log π(a|s) + c_v·(V − R)² / 2 − c_e·H`.
//!
//! The loop is PPO's ([`crate::ppo::train`]) with one epoch over one full batch and no clipping:
//! at the behaviour policy the ratio is 1 and its gradient is that of `log π`, so the clipped
//! machinery reduces exactly to the A2C gradient. [`A2cConfig::to_ppo`] is that reduction.

use glimpse::run::{Outcome, Run, RunConfig, Unit};
use glimpse::validate;
use glimpse::Env;
use serde::{Deserialize, Serialize};

use crate::policy::ActorCritic;
use crate::ppo::{self, PpoConfig};
use crate::trainer::Algorithm;
use crate::training::Training;
use crate::{Error, Summary};

/// A2C hyperparameters (defaults after SB3/RL-Zoo's CartPole A2C; Adam instead of RMSprop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct A2cConfig {
    /// Number of parallel environments (env i is first reset with seed + i).
    #[arg(long, default_value_t = 8)]
    pub num_envs: usize,
    /// Threads stepping the environments, the learner's included (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// n of the n-step rollout (steps per env per update).
    #[arg(long, default_value_t = 5)]
    pub num_steps: usize,
    /// Environment steps (all envs together) to train for at most.
    #[arg(long, default_value_t = 500_000)]
    pub total_timesteps: u64,
    /// Adam learning rate (its starting value when annealed).
    #[arg(long, default_value_t = 7e-4)]
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over `total_timesteps`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub anneal_lr: bool,
    /// Discount factor.
    #[arg(long, default_value_t = 0.99)]
    pub gamma: f32,
    /// GAE λ (1.0: plain n-step returns).
    #[arg(long, default_value_t = 1.0)]
    pub gae_lambda: f32,
    /// Normalise advantages per update.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub norm_adv: bool,
    /// Entropy bonus coefficient.
    #[arg(long, default_value_t = 0.0)]
    pub ent_coef: f32,
    /// Value loss coefficient.
    #[arg(long, default_value_t = 0.5)]
    pub vf_coef: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 0.5)]
    pub max_grad_norm: f32,
    /// Environment steps between greedy evaluations (0: only at the end).
    #[arg(long, default_value_t = 10_000)]
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

impl Default for A2cConfig {
    fn default() -> Self {
        Self {
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
            max_grad_norm: 0.5,
            eval_frequency: 10_000,
            eval_episodes: 100,
            solve_threshold: None,
            checkpoint_frequency: 10_000,
        }
    }
}

impl A2cConfig {
    /// CartPole-v1: 8 envs × 5 steps on 2 worker threads, γ 0.99, λ 1 (n-step returns), lr 7e-4.
    pub fn cartpole() -> Self {
        Self { workers: 2, solve_threshold: Some(475.0), ..Self::default() }
    }

    /// The same run as a PPO configuration: one epoch over one minibatch, no clipping.
    pub fn to_ppo(&self) -> PpoConfig {
        PpoConfig {
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
            eval_frequency: self.eval_frequency,
            eval_episodes: self.eval_episodes,
            solve_threshold: self.solve_threshold,
            checkpoint_frequency: self.checkpoint_frequency,
        }
    }

    /// Checks every setting; the message names the first bad one and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        validate::rollout(self.num_envs, self.workers, self.num_steps, self.total_timesteps)?;
        validate::positive("learning_rate", self.learning_rate)?;
        validate::unit_interval("gamma", self.gamma)?;
        validate::unit_interval("gae_lambda", self.gae_lambda)?;
        validate::non_negative("ent_coef", self.ent_coef)?;
        validate::non_negative("vf_coef", self.vf_coef)?;
        validate::non_negative("max_grad_norm", self.max_grad_norm)?;
        validate::at_least("eval_episodes", self.eval_episodes, 1)?;
        validate::evaluation(self.eval_episodes, self.solve_threshold)
    }
}

impl RunConfig for A2cConfig {
    const UNIT: Unit = Unit::EnvSteps;
    fn budget(&self) -> u64 {
        self.total_timesteps
    }
    fn validate(&self) -> Result<(), String> {
        A2cConfig::validate(self)
    }
    fn checkpoint_every(&self) -> u64 {
        self.checkpoint_frequency
    }
}

impl Algorithm for A2cConfig {
    const NAME: &'static str = "a2c";
    fn to_ppo(&self) -> PpoConfig {
        A2cConfig::to_ppo(self)
    }
}

/// Trains `agent` with A2C: [`ppo::train`] on [`A2cConfig::to_ppo`].
pub fn train<E, P, const O: usize>(
    run: Run<A2cConfig>,
    agent: &mut Training<E, P, O>,
    make_env: &dyn Fn() -> E,
) -> Result<Outcome<Summary>, Error>
where
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    ppo::train(run, agent, make_env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: A2cConfig,
    }

    #[test]
    fn flag_defaults_are_the_documented_defaults_and_the_ppo_form_is_valid() {
        assert_eq!(Cli::parse_from(["x"]).cfg, A2cConfig::default());
        for cfg in [A2cConfig::default(), A2cConfig::cartpole()] {
            assert_eq!(cfg.validate(), Ok(()));
            let ppo = cfg.to_ppo();
            assert_eq!(ppo.validate(), Ok(()));
            assert_eq!((ppo.update_epochs, ppo.num_minibatches, ppo.clip_coef), (1, 1, None));
        }
        let err = A2cConfig { vf_coef: f32::INFINITY, ..Default::default() }.validate().unwrap_err();
        assert!(err.contains("vf_coef"), "{err}");
    }
}
