//! REINFORCE: the loss gradient matches finite differences, the variance estimate is right on
//! known data, and every baseline learns a two-armed bandit and a short chain MDP in seconds.

use dfdx::prelude::*;
use glimpse::run::Train;
use glimpse::wrappers::TimeLimit;
use glimpse_envs::toy::{Chain, TwoArmedBandit};
use glimpse_reinforce::{flat_grads, grad_variance, Baseline, Reinforce, ReinforceConfig, Trainer};
/// Length of the chain the agents learn.
const CHAIN: usize = 5;

fn temp(name: &str) -> std::path::PathBuf {
    glimpse::testing::scratch_dir("reinforce", name)
}

#[test]
fn policy_loss_gradient_matches_finite_differences() {
    let mut agent = Reinforce::<3, 4>::new(&ReinforceConfig::default(), 3);
    let obs = [0.3f32, -1.2, 0.8, 1.5, 0.1, -0.4, -0.7, 0.9, 0.2];
    let actions = [2usize, 0, 3];
    let weights = [1.5f32, -0.7, 0.4];
    let ent_coef = 0.1;
    let (loss, _) = agent.policy_loss(&obs, &actions, &weights, ent_coef);
    let grads = loss.backward();
    let analytic = grads.get(&agent.policy.0.weight).as_vec();
    let analytic_out = grads.get(&agent.policy.4.bias).as_vec();
    let eps = 1e-2f32;
    let loss_at = |agent: &Reinforce<3, 4>| agent.policy_loss(&obs, &actions, &weights, ent_coef).0.array() as f64;
    // Every first-layer weight and every output bias.
    for k in 0..analytic.len() {
        let base = agent.policy.0.weight.as_vec();
        let mut v = base.clone();
        v[k] += eps;
        agent.policy.0.weight.copy_from(&v);
        let up = loss_at(&agent);
        v[k] -= 2.0 * eps;
        agent.policy.0.weight.copy_from(&v);
        let down = loss_at(&agent);
        agent.policy.0.weight.copy_from(&base);
        let fd = (up - down) / (2.0 * eps as f64);
        assert!((fd - analytic[k] as f64).abs() < 2e-3 + 2e-2 * fd.abs(), "weight {k}: fd {fd} vs {}", analytic[k]);
    }
    for k in 0..4 {
        let base = agent.policy.4.bias.as_vec();
        let mut v = base.clone();
        v[k] += eps;
        agent.policy.4.bias.copy_from(&v);
        let up = loss_at(&agent);
        v[k] -= 2.0 * eps;
        agent.policy.4.bias.copy_from(&v);
        let down = loss_at(&agent);
        agent.policy.4.bias.copy_from(&base);
        let fd = (up - down) / (2.0 * eps as f64);
        assert!(
            (fd - analytic_out[k] as f64).abs() < 2e-3 + 2e-2 * fd.abs(),
            "bias {k}: fd {fd} vs {}",
            analytic_out[k]
        );
    }
    // Closed form for the output bias without entropy: ∂/∂b_j of −mean_i w_i log π(a_i) is
    // mean_i w_i (π_j(s_i) − 1[a_i = j]).
    let (loss, _) = agent.policy_loss(&obs, &actions, &weights, 0.0);
    let g = loss.backward().get(&agent.policy.4.bias).as_vec();
    let dev = Cpu::default();
    let logits = agent.policy.forward(dev.tensor_from_vec(obs.to_vec(), (3, Const::<3>))).softmax::<Axis<1>>().as_vec();
    for j in 0..4 {
        let expect: f32 =
            (0..3).map(|i| weights[i] * (logits[i * 4 + j] - (actions[i] == j) as u8 as f32)).sum::<f32>() / 3.0;
        assert!((g[j] - expect).abs() < 1e-5, "bias {j}: {} vs {expect}", g[j]);
    }
    assert_eq!(flat_grads(&agent.policy, &grads).len(), 3 * 64 + 64 + 64 * 64 + 64 + 64 * 4 + 4);
}

#[test]
fn grad_variance_is_the_sample_variance_summed_over_parameters() {
    let groups = vec![vec![1.0, 0.0], vec![3.0, 0.0], vec![2.0, 3.0]];
    // param 0: mean 2, var (1 + 1 + 0)/2 = 1; param 1: mean 1, var (1 + 1 + 4)/2 = 3.
    assert!((grad_variance(&groups).unwrap() - 4.0).abs() < 1e-12);
    assert!(grad_variance(&groups[..1]).is_none());
}

fn bandit_p_best(agent: &Reinforce<1, 2>) -> f32 {
    let dev = Cpu::default();
    agent.policy.forward(dev.tensor([[1.0f32]])).softmax::<Axis<1>>().array()[0][1]
}

#[test]
fn every_baseline_learns_a_two_armed_bandit() {
    for baseline in [Baseline::None, Baseline::RunningMean, Baseline::Value] {
        let cfg = ReinforceConfig {
            num_envs: 4,
            num_steps: 32,
            total_timesteps: 8_000,
            learning_rate: 1e-2,
            baseline,
            grad_variance_frequency: 1280,
            eval_frequency: 0,
            eval_episodes: 10,
            ..Default::default()
        };
        let dir = temp(&format!("bandit-{}", baseline.name()));
        let trainer = Trainer::<_, 1, 2>::new(cfg, || TwoArmedBandit::new(0)).unwrap().seed(0).run_dir(&dir);
        trainer.train().unwrap();
        let progress = trainer.load_progress(&dir).unwrap();
        let p = bandit_p_best(&trainer.load_policy(&dir).unwrap());
        assert!(p > 0.9, "{baseline:?}: P(best arm) = {p}");
        let v = &progress.grad_variances;
        assert!(v.len() == 6 && v.iter().all(|(_, v)| v.is_finite() && *v >= 0.0), "{v:?}");
        assert_eq!(progress.same_batch_grad_variances.len(), v.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn reinforce_learns_a_short_chain() {
    for baseline in [Baseline::RunningMean, Baseline::Value] {
        let cfg = ReinforceConfig {
            num_envs: 4,
            num_steps: 48,
            total_timesteps: 40_000,
            learning_rate: 5e-3,
            gamma: 0.95,
            baseline,
            eval_frequency: 384,
            eval_episodes: 5,
            solve_threshold: Some(0.85 - 1e-6),
            ..Default::default()
        };
        let dir = temp(&format!("chain-{}", baseline.name()));
        let make_env = || TimeLimit::new(Chain::<CHAIN>::default(), 12);
        let trainer = Trainer::<_, CHAIN, 2>::new(cfg, make_env).unwrap().seed(0).run_dir(&dir);
        let summary = trainer.train().unwrap();
        assert!(summary.solved, "{baseline:?} not solved: {summary:?}");
        let eval = trainer.evaluate(&dir, 2, 0).unwrap();
        assert!((eval.mean() - 0.85).abs() < 1e-6, "optimal return is 0.85, got {eval:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
