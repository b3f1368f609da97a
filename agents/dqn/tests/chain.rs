//! DQN learns a small deterministic chain MDP through the library API a user of their own env
//! writes (`Trainer`, `Policy`: no dfdx, no command line), and its runs are reproducible.

use glimpse_dqn::prelude::*;
use glimpse_envs::toy::Chain;

const N: usize = 6;
const GAMMA: f32 = 0.9;
/// `Chain`'s reward for a step that does not reach the end.
const STEP_COST: f32 = -0.05;

/// States 0..N in a line, one-hot observations; action 1 moves right, 0 left. Reaching the right
/// end pays 1 and terminates, other steps cost 0.05; episodes are truncated after 20 steps.
fn chain() -> TimeLimit<Chain<N>> {
    TimeLimit::new(Chain::default(), 20)
}

fn config(total: u64) -> Config {
    Config {
        total_timesteps: total,
        gamma: GAMMA,
        learning_starts: 200,
        buffer_size: 5000,
        batch_size: 32,
        exploration_fraction: 0.5,
        train_frequency: 1,
        gradient_steps: 1,
        target_network_frequency: 100,
        eval_frequency: 0,
        eval_episodes: 5,
        checkpoint_frequency: 0,
        ..Config::default()
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    glimpse::testing::scratch_dir("dqn", name)
}

/// The greedy policy walks right: N - 2 step costs, then the reward of 1.
fn best_return() -> f64 {
    1.0 + (N - 2) as f64 * STEP_COST as f64
}

#[test]
fn dqn_learns_the_optimal_q_values_of_a_chain_through_the_library_api() {
    let dir = temp("chain");
    let trainer = Trainer::<_, N, 2, 32>::new(config(4000), chain).unwrap().seed(3).run_dir(&dir);
    let summary = trainer.train().unwrap();
    assert_eq!((summary.env_steps, summary.seed, summary.solved_at_step, summary.solved), (4000, 3, None, false));
    assert_eq!((summary.eval_episodes, summary.solve_threshold), (Some(5), None));
    let mean = summary.eval_mean_return.unwrap();
    assert!((mean - best_return()).abs() < 1e-6, "greedy return {mean}");
    // What train() returned is what it wrote.
    let written: Summary = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(written, summary);

    // The saved policy: Q* everywhere. V*(s) = Q*(s, right): STEP_COST for each of the N - 2 - s
    // steps before the last, then 1, discounted; Q*(s, left) = STEP_COST + gamma * V*(max(s-1, 0)).
    let policy = trainer.load_policy(&dir).unwrap();
    let v = |s: usize| {
        let k = (N - 2 - s) as i32;
        STEP_COST * (1.0 - GAMMA.powi(k)) / (1.0 - GAMMA) + GAMMA.powi(k)
    };
    for s in 0..N - 1 {
        let mut o = vec![0.0; N];
        o[s] = 1.0;
        let q = policy.q_values(&o).unwrap();
        let want = [STEP_COST + GAMMA * v(s.saturating_sub(1)), v(s)];
        for a in 0..2 {
            assert!((q[a] - want[a]).abs() < 0.1, "Q({s}, {a}) = {} but Q* = {}", q[a], want[a]);
        }
        assert_eq!(policy.actions(&o).unwrap(), vec![1]);
    }
    let result = evaluate_policy(&policy, &chain, 3, 0).unwrap();
    assert!(result.returns.iter().all(|r| (r - best_return()).abs() < 1e-6), "{result:?}");
    assert_eq!(result.lengths, vec![N - 1; 3]);
    // The trainer evaluates the saved policy the same way.
    assert_eq!(trainer.evaluate(&dir, 3, 0).unwrap(), result);
    assert!(policy.actions(&[0.0; N + 1]).is_err(), "a partial observation is an error");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_stopped_from_code_resumes_to_the_same_end() {
    let (whole, split) = (temp("api-whole"), temp("api-split"));
    let cfg = Config { prioritized: true, n_step: 2, ..config(1500) };
    let expected = Trainer::<_, N, 2, 32>::new(cfg.clone(), chain).unwrap().seed(5).run_dir(&whole).train().unwrap();
    let trainer = Trainer::<_, N, 2, 32>::new(cfg.clone(), chain).unwrap();
    let stop = RunArgs { seed: 5, run_dir: Some(split.clone()), stop_after: Some(777), ..RunArgs::default() };
    assert_eq!(trainer.run(&stop).unwrap(), Outcome::Stopped { done: 777 });
    // Resuming keeps the saved seed and config: the ones given here are not used.
    let other = Config { learning_rate: 0.5, ..cfg };
    let resumed = Trainer::<_, N, 2, 32>::new(other, chain).unwrap().seed(99).resume(&split).unwrap();
    assert_eq!(Summary { wall_seconds: 0.0, ..resumed }, Summary { wall_seconds: 0.0, ..expected });
    let weights = |d: &std::path::Path| {
        let snap = glimpse::checkpoint::current_snapshot(&d.join("checkpoint")).unwrap();
        std::fs::read(snap.join("q.safetensors")).unwrap()
    };
    assert!(weights(&whole) == weights(&split), "the final weights differ");
    for d in [whole, split] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let weights = |seed: u64, name: &str| {
        let dir = temp(&format!("repro-{name}"));
        let cfg = Config { prioritized: true, n_step: 2, ..config(800) };
        let trainer = Trainer::<_, N, 2, 32>::new(cfg, chain).unwrap().seed(seed).run_dir(&dir);
        let s = trainer.train().unwrap();
        let q = trainer.load_policy(&dir).unwrap().q_values(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (q, s.updates, s.eval_mean_return)
    };
    let (a, b, c) = (weights(11, "a"), weights(11, "b"), weights(12, "c"));
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
}
