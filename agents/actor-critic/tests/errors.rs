//! Bad input gives errors, not panics: NaN rewards, a panicking env, mismatched configuration.

use dfdx::prelude::*;
use glimpse::{BoxSpace, Discrete, Env, EnvError, Info, Space, Step};
use glimpse_actor_critic::{ppo, DiscretePolicy, Error, PpoConfig, SeparateDiscrete};

/// One-step episodes whose reward is NaN, or that panic on step `panic_at`.
struct Faulty {
    steps: usize,
    panic_at: Option<usize>,
}
impl Env for Faulty {
    type Obs = [f32; 1];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0], vec![1.0]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }
    fn reset(&mut self, _: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
        Ok(([0.5], Info::default()))
    }
    fn step(&mut self, _: &usize) -> Result<Step<[f32; 1]>, EnvError> {
        self.steps += 1;
        if self.panic_at == Some(self.steps) {
            panic!("env exploded");
        }
        let reward = if self.panic_at.is_some() { 1.0 } else { f64::NAN };
        Ok(Step { obs: [0.5], reward, terminated: true, truncated: false, info: Info::default() })
    }
}

fn run(panic_at: Option<usize>, num_envs: usize) -> Result<ppo::TrainOutcome, Error> {
    let dev = Cpu::seed_from_u64(0);
    let mut policy = DiscretePolicy::<_, 2>::new(dev.build_module::<SeparateDiscrete<1, 2, 8>, f32>(), dev);
    let cfg = PpoConfig { num_envs: 2, num_steps: 8, total_timesteps: 64, eval_every: 0, ..PpoConfig::default() };
    let envs = (0..num_envs).map(|_| Faulty { steps: 0, panic_at }).collect();
    let mut opt = ppo::optimizer::<1, _>(&policy, &cfg);
    let mut eval_env = Faulty { steps: 0, panic_at: None };
    ppo::train::<_, _, 1>(envs, &mut eval_env, &mut policy, &mut opt, &cfg, |_, _, _| {})
}

#[test]
fn nan_rewards_are_a_non_finite_loss_error() {
    assert!(matches!(run(None, 2), Err(Error::NonFinite(_))));
}

#[test]
fn a_panicking_env_is_an_env_error() {
    let e = run(Some(3), 2).unwrap_err();
    assert!(matches!(e, Error::Env(EnvError::Panicked { .. })), "{e}");
}

#[test]
fn a_wrong_number_of_envs_is_a_config_error() {
    assert!(matches!(run(None, 3), Err(Error::Config(_))));
}
