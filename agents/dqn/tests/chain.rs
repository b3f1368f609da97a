//! DQN learns a small deterministic chain MDP, and a run resumed from its checkpoint continues.

use dfdx::prelude::*;
use glimpse::run::RunDir;
use glimpse::wrappers::TimeLimit;
use glimpse_dqn::{evaluate, train, Config, Dqn, QFunction, QNetwork};
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

type Net = <QNetwork<N, 2, 32> as BuildOnDevice<Cpu, f32>>::Built;

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

fn temp_run(name: &str) -> RunDir {
    let dir = std::env::temp_dir().join(format!("glimpse-dqn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    RunDir::create("test", Some(dir)).unwrap()
}

#[test]
fn dqn_learns_the_optimal_q_values_of_a_chain() {
    let mut run = temp_run("chain");
    let mut agent = Dqn::<Net, N, 2>::new(config(4000), 3).unwrap();
    let summary = train(&mut agent, &chain, &mut run, false).unwrap();
    assert_eq!(summary.env_steps, 4000);
    // The greedy policy walks right: N - 2 step costs, then the reward of 1.
    let best = 1.0 + (N - 2) as f64 * STEP_COST as f64;
    assert!((summary.eval_mean_return - best).abs() < 1e-6, "greedy return {}", summary.eval_mean_return);
    // V*(s) = Q*(s, right): STEP_COST for each of the N - 2 - s steps before the last, then 1, discounted;
    // Q*(s, left) = STEP_COST + gamma * V*(max(s-1, 0)).
    let v = |s: usize| {
        let k = (N - 2 - s) as i32;
        STEP_COST * (1.0 - GAMMA.powi(k)) / (1.0 - GAMMA) + GAMMA.powi(k)
    };
    for s in 0..N - 1 {
        let mut o = vec![0.0; N];
        o[s] = 1.0;
        let q = agent.q.q_values(Cpu::default().tensor_from_vec(o, (1, Const::<N>))).as_vec();
        let want = [STEP_COST + GAMMA * v(s.saturating_sub(1)), v(s)];
        for a in 0..2 {
            assert!((q[a] - want[a]).abs() < 0.1, "Q({s}, {a}) = {} but Q* = {}", q[a], want[a]);
        }
    }
    std::fs::remove_dir_all(run.path()).unwrap();
}

#[test]
fn a_resumed_run_continues_from_its_checkpoint() {
    let mut run = temp_run("resume");
    let mut agent = Dqn::<Net, N, 2>::new(config(1500), 5).unwrap();
    train(&mut agent, &chain, &mut run, false).unwrap();
    let (steps, grad_steps) = (agent.state.global_step, agent.state.gradient_steps);

    // A new process would do this: open the run, rebuild the agent, load, raise the budget, go on.
    let run_path = run.path().to_path_buf();
    let mut reopened = RunDir::open(&run_path).unwrap();
    let mut resumed = Dqn::<Net, N, 2>::new(config(3000), 77).unwrap();
    resumed.load(&reopened.checkpoint_dir()).unwrap();
    assert_eq!(resumed.state, agent.state);
    assert_eq!(resumed.q.0.weight.as_vec(), agent.q.0.weight.as_vec());
    assert_eq!(resumed.opt.moments().1 .2.weight.as_vec(), agent.opt.moments().1 .2.weight.as_vec());
    let summary = train(&mut resumed, &chain, &mut reopened, false).unwrap();
    assert_eq!(summary.env_steps, 3000);
    assert!(resumed.state.gradient_steps > grad_steps && steps == 1500);
    let returns = evaluate::<Net, _, N, 2>(&resumed.q, &chain, 3, 0).unwrap();
    let best = 1.0 + (N - 2) as f64 * STEP_COST as f64;
    assert!(returns.iter().all(|r| (r - best).abs() < 1e-6), "{returns:?}");
    std::fs::remove_dir_all(&run_path).unwrap();
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let weights = |seed: u64| {
        let mut run = temp_run(&format!("repro-{seed}-{:?}", std::thread::current().id()));
        let mut cfg = config(800);
        cfg.prioritized = true;
        cfg.n_step = 2;
        let mut agent = Dqn::<Net, N, 2>::new(cfg, seed).unwrap();
        train(&mut agent, &chain, &mut run, false).unwrap();
        std::fs::remove_dir_all(run.path()).unwrap();
        (agent.q.0.weight.as_vec(), agent.state.gradient_steps)
    };
    let (a, b, c) = (weights(11), weights(11), weights(12));
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
}
