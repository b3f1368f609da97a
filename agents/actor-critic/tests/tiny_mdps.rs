//! PPO and A2C learn tiny MDPs (a two-armed bandit, a short chain, a 1-D continuous target) in
//! seconds.

use dfdx::prelude::*;
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Env, EnvError, Info, Space, Step};
use glimpse_actor_critic::policy::ActorCritic;
use glimpse_actor_critic::{a2c, ppo, A2cConfig, DiscretePolicy, GaussianPolicy, PpoConfig, SeparateDiscrete};
use glimpse_actor_critic::{SeparateGaussian, SharedDiscrete, SharedGaussian};
use glimpse_envs::toy::{Chain, TwoArmedBandit};
/// Length of the chain the agents learn.
const CHAIN: usize = 5;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// One step; action a in [-2, 2] earns −(a − 0.7)².
struct Target;
impl Env for Target {
    type Obs = [f32; 1];
    type Act = [f32; 1];
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0], vec![0.0]).into()
    }
    fn action_space(&self) -> Space {
        BoxSpace::new(vec![-2.0], vec![2.0]).into()
    }
    fn reset(&mut self, _: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
        Ok(([0.0], Info::default()))
    }
    fn step(&mut self, a: &[f32; 1]) -> Result<Step<[f32; 1]>, EnvError> {
        let reward = -((a[0] - 0.7) as f64).powi(2);
        Ok(Step { obs: [0.0], reward, terminated: true, truncated: false, info: Info::default() })
    }
}

fn bandit_policy<P: ActorCritic<1, Action = usize>>(p: &P) -> f32 {
    let out = p.act(&[1.0], true, &mut StdRng::seed_from_u64(0));
    out.log_probs[0].exp() * if out.env_actions[0] == 1 { 1.0 } else { -1.0 }
}

#[test]
fn ppo_learns_a_two_armed_bandit() {
    let dev = Cpu::default();
    let mut policy = DiscretePolicy::<_, 2>::new(dev.build_module::<SeparateDiscrete<1, 2, 16>, f32>(), dev.clone());
    let cfg = PpoConfig {
        num_envs: 4,
        num_steps: 16,
        total_timesteps: 4_000,
        learning_rate: 3e-3,
        eval_every: 0,
        eval_episodes: 10,
        ..PpoConfig::default()
    };
    let envs = (0..4).map(TwoArmedBandit::new).collect();
    let mut opt = ppo::optimizer::<1, _>(&policy, &cfg);
    let out =
        ppo::train::<_, _, 1>(envs, &mut TwoArmedBandit::new(9), &mut policy, &mut opt, &cfg, |_, _, _| {}).unwrap();
    let p_best = bandit_policy(&policy);
    assert!(p_best > 0.9, "greedy arm 1 with probability {p_best} after {} steps", out.env_steps);
}

#[test]
fn a2c_learns_a_two_armed_bandit() {
    let dev = Cpu::default();
    let mut policy = DiscretePolicy::<_, 2>::new(dev.build_module::<SharedDiscrete<1, 2, 16>, f32>(), dev.clone());
    let cfg = A2cConfig {
        num_envs: 4,
        num_steps: 5,
        total_timesteps: 6_000,
        learning_rate: 3e-3,
        eval_every: 0,
        eval_episodes: 10,
        ..A2cConfig::default()
    };
    let envs = (0..4).map(TwoArmedBandit::new).collect();
    let mut opt = ppo::optimizer::<1, _>(&policy, &cfg.to_ppo());
    a2c::train::<_, _, 1>(envs, &mut TwoArmedBandit::new(9), &mut policy, &mut opt, &cfg, |_, _, _| {}).unwrap();
    let p_best = bandit_policy(&policy);
    assert!(p_best > 0.9, "greedy arm 1 with probability {p_best}");
}

#[test]
fn ppo_learns_a_short_chain() {
    let dev = Cpu::default();
    let mut policy =
        DiscretePolicy::<_, 2>::new(dev.build_module::<SeparateDiscrete<CHAIN, 2, 16>, f32>(), dev.clone());
    let cfg = PpoConfig {
        num_envs: 4,
        num_steps: 32,
        total_timesteps: 20_000,
        learning_rate: 3e-3,
        gamma: 0.95,
        eval_every: 2,
        eval_episodes: 5,
        target_return: Some(1.0 - 3.0 * 0.05 - 1e-6),
        ..PpoConfig::default()
    };
    let envs = (0..4).map(|_| TimeLimit::new(Chain::<5>::default(), 12)).collect();
    let mut eval_env = TimeLimit::new(Chain::<5>::default(), 12);
    let mut opt = ppo::optimizer::<CHAIN, _>(&policy, &cfg);
    let out = ppo::train::<_, _, CHAIN>(envs, &mut eval_env, &mut policy, &mut opt, &cfg, |_, _, _| {}).unwrap();
    assert!(out.solved_at_step.is_some(), "not solved: eval {:?} after {} steps", out.eval_mean_return, out.env_steps);
    let ret = ppo::evaluate::<_, _, CHAIN>(&mut eval_env, &policy, 3, 0).unwrap();
    assert!((ret - 0.85).abs() < 1e-6, "optimal return is 0.85, got {ret}");
}

/// Trains a Gaussian policy on [`Target`] and returns its greedy action.
fn train_on_target<P: ActorCritic<1, Action = [f32; 1]>>(policy: &mut P) -> f32 {
    let cfg = PpoConfig {
        num_envs: 4,
        num_steps: 32,
        total_timesteps: 12_000,
        learning_rate: 3e-3,
        ent_coef: 0.0,
        eval_every: 0,
        eval_episodes: 1,
        ..PpoConfig::default()
    };
    let envs = (0..4).map(|_| Target).collect();
    let mut opt = ppo::optimizer::<1, _>(policy, &cfg);
    ppo::train::<_, _, 1>(envs, &mut Target, policy, &mut opt, &cfg, |_, _, _| {}).unwrap();
    policy.act(&[0.0], true, &mut StdRng::seed_from_u64(0)).actions[0]
}

#[test]
fn ppo_gaussian_policy_finds_a_continuous_target() {
    let dev = Cpu::default();
    let net = dev.build_module::<SeparateGaussian<1, 1, 16>, f32>();
    let mut policy = GaussianPolicy::new(net, dev.clone(), [-2.0], [2.0]);
    let a = train_on_target(&mut policy);
    assert!((a - 0.7).abs() < 0.1, "separate networks: greedy action {a}, want 0.7");
    let std = policy.net.0 .0 .1.log_std.array()[0].exp();
    assert!(std < 0.6, "exploration std should shrink from 1, got {std}");

    let net = dev.build_module::<SharedGaussian<1, 1, 16>, f32>();
    let mut policy = GaussianPolicy::new(net, dev.clone(), [-2.0], [2.0]);
    let a = train_on_target(&mut policy);
    assert!((a - 0.7).abs() < 0.1, "shared trunk: greedy action {a}, want 0.7");
    let std = policy.net.1 .0 .0.log_std.array()[0].exp();
    assert!(std < 0.6, "exploration std should shrink from 1, got {std}");
}
