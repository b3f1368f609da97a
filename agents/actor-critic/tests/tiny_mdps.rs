//! PPO and A2C learn tiny MDPs (a two-armed bandit, a short chain, a 1-D continuous target) in
//! seconds, through the same [`Trainer`] a user's own env goes through.

use dfdx::tensor::AsArray;
use glimpse::run::Train;
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Env, EnvError, Info, Space, Step};
use glimpse_actor_critic::{
    A2cConfig, ActorCritic, Algorithm, DiscretePolicy, GaussianPolicy, PpoConfig, SeparateDiscrete, SeparateGaussian,
    SharedDiscrete, SharedGaussian, Trainer,
};
use glimpse_envs::toy::{Chain, TwoArmedBandit};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Length of the chain the agents learn.
const CHAIN: usize = 5;

fn temp(name: &str) -> std::path::PathBuf {
    glimpse::testing::scratch_dir("ac-mdp", name)
}

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

/// Probability that the greedy action of a bandit policy is arm 1 (negative if arm 0 is greedy).
fn bandit_policy<P: ActorCritic<1, Action = usize>>(p: &P) -> f32 {
    let out = p.act(&[1.0], true, &mut StdRng::seed_from_u64(0));
    out.log_probs[0].exp() * if out.env_actions[0] == 1 { 1.0 } else { -1.0 }
}

/// Trains on the bandit in `name`'s run directory and returns the trained policy.
fn bandit<C: Algorithm, P: ActorCritic<1, Action = usize> + 'static>(name: &str, cfg: C, build: fn(u64) -> P) -> P {
    let dir = temp(name);
    let trainer = Trainer::new(cfg, || TwoArmedBandit::new(0), build).unwrap().seed(0).run_dir(&dir);
    trainer.train().unwrap();
    let policy = trainer.load_policy(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    policy
}

#[test]
fn ppo_learns_a_two_armed_bandit() {
    let cfg = PpoConfig {
        num_envs: 4,
        num_steps: 16,
        total_timesteps: 4_000,
        learning_rate: 3e-3,
        eval_frequency: 0,
        eval_episodes: 10,
        ..PpoConfig::default()
    };
    let policy = bandit("ppo-bandit", cfg, DiscretePolicy::<_, 2>::build::<SeparateDiscrete<1, 2, 16>>);
    let p_best = bandit_policy(&policy);
    assert!(p_best > 0.9, "greedy arm 1 with probability {p_best}");
}

#[test]
fn a2c_learns_a_two_armed_bandit() {
    let cfg = A2cConfig {
        num_envs: 4,
        num_steps: 5,
        total_timesteps: 6_000,
        learning_rate: 3e-3,
        eval_frequency: 0,
        eval_episodes: 10,
        ..A2cConfig::default()
    };
    let policy = bandit("a2c-bandit", cfg, DiscretePolicy::<_, 2>::build::<SharedDiscrete<1, 2, 16>>);
    let p_best = bandit_policy(&policy);
    assert!(p_best > 0.9, "greedy arm 1 with probability {p_best}");
}

#[test]
fn ppo_learns_a_short_chain() {
    let cfg = PpoConfig {
        num_envs: 4,
        num_steps: 32,
        total_timesteps: 20_000,
        learning_rate: 3e-3,
        gamma: 0.95,
        eval_frequency: 256,
        eval_episodes: 5,
        solve_threshold: Some(1.0 - 3.0 * 0.05 - 1e-6),
        ..PpoConfig::default()
    };
    let dir = temp("chain");
    let make_env = || TimeLimit::new(Chain::<CHAIN>::default(), 12);
    let trainer = Trainer::discrete::<CHAIN, 2>(cfg, make_env).unwrap().seed(0).run_dir(&dir);
    let summary = trainer.train().unwrap();
    assert!(summary.solved, "not solved: {summary:?}");
    assert!(summary.env_steps < 20_000 && summary.solved_at_step == Some(summary.env_steps));
    let eval = trainer.evaluate(&dir, 3, 0).unwrap();
    assert!((eval.mean() - 0.85).abs() < 1e-6, "optimal return is 0.85, got {eval:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Trains a Gaussian policy on [`Target`] and returns it.
fn train_on_target<P: ActorCritic<1, Action = [f32; 1]> + 'static>(
    name: &str,
    build: impl Fn(u64) -> P + 'static,
) -> P {
    let cfg = PpoConfig {
        num_envs: 4,
        num_steps: 32,
        total_timesteps: 12_000,
        learning_rate: 3e-3,
        ent_coef: 0.0,
        eval_frequency: 0,
        eval_episodes: 1,
        ..PpoConfig::default()
    };
    let dir = temp(name);
    let trainer = Trainer::new(cfg, || Target, build).unwrap().seed(0).run_dir(&dir);
    let summary = trainer.train().unwrap();
    assert!(summary.eval_mean_return.unwrap() > -0.01, "{summary:?}");
    let policy = trainer.load_policy(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    policy
}

#[test]
fn ppo_gaussian_policy_finds_a_continuous_target() {
    let build = |seed| GaussianPolicy::build::<SeparateGaussian<1, 1, 16>>(seed, [-2.0], [2.0]);
    let policy = train_on_target("separate", build);
    let a = policy.act(&[0.0], true, &mut StdRng::seed_from_u64(0)).actions[0];
    assert!((a - 0.7).abs() < 0.1, "separate networks: greedy action {a}, want 0.7");
    let std = policy.net.0 .0 .1.log_std.array()[0].exp();
    assert!(std < 0.6, "exploration std should shrink from 1, got {std}");

    let build = |seed| GaussianPolicy::build::<SharedGaussian<1, 1, 16>>(seed, [-2.0], [2.0]);
    let policy = train_on_target("shared", build);
    let a = policy.act(&[0.0], true, &mut StdRng::seed_from_u64(0)).actions[0];
    assert!((a - 0.7).abs() < 0.1, "shared trunk: greedy action {a}, want 0.7");
    let std = policy.net.1 .0 .0.log_std.array()[0].exp();
    assert!(std < 0.6, "exploration std should shrink from 1, got {std}");
}

#[test]
fn greedy_actions_are_the_greedy_acts_for_every_architecture() {
    fn check<P: ActorCritic<3>>(p: &P)
    where
        P::Action: PartialEq,
    {
        let obs: Vec<f32> = (0..3 * 40).map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0).collect();
        let act = p.act(&obs, true, &mut StdRng::seed_from_u64(1)).env_actions;
        assert_eq!(p.greedy_actions(&obs), act);
    }
    check(&DiscretePolicy::build::<SeparateDiscrete<3, 4, 16>>(1));
    check(&DiscretePolicy::build::<SharedDiscrete<3, 4, 16>>(2));
    // Bounds tight enough that some means are clipped.
    check(&GaussianPolicy::build::<SeparateGaussian<3, 2, 16>>(3, [-0.1, -0.2], [0.1, 0.3]));
    check(&GaussianPolicy::build::<SharedGaussian<3, 2, 16>>(4, [-0.1, -0.2], [0.1, 0.3]));
}
