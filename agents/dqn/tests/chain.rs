//! DQN learns a small deterministic chain MDP, and a run resumed from its checkpoint continues.

use dfdx::prelude::*;
use glimpse::env::{from_env_state, to_env_state};
use glimpse::run::RunDir;
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Discrete, Env, EnvError, EnvState, Info, Space, Step};
use glimpse_dqn::{evaluate, train, Config, Dqn, QFunction, QNetwork};

const N: usize = 6;
const GAMMA: f32 = 0.9;

/// States 0..N in a line, one-hot observations; action 1 moves right, 0 left. Reaching the right
/// end pays 1 and terminates; episodes are truncated after 20 steps.
struct Chain {
    pos: usize,
}

impl Chain {
    fn obs(&self) -> [f32; N] {
        let mut o = [0.0; N];
        o[self.pos] = 1.0;
        o
    }
}

impl Env for Chain {
    type Obs = [f32; N];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0; N], vec![1.0; N]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }
    fn reset(&mut self, _: Option<u64>) -> Result<([f32; N], Info), EnvError> {
        self.pos = 0;
        Ok((self.obs(), Info::default()))
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("Chain", &self.pos)
    }
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        self.pos = from_env_state("Chain", state)?;
        Ok(())
    }
    fn step(&mut self, a: &usize) -> Result<Step<[f32; N]>, EnvError> {
        match a {
            0 => self.pos = self.pos.saturating_sub(1),
            1 => self.pos += 1,
            _ => return Err(EnvError::InvalidAction(format!("{a}"))),
        }
        let end = self.pos == N - 1;
        Ok(Step { obs: self.obs(), reward: end as u8 as f64, terminated: end, truncated: false, info: Info::default() })
    }
}

fn chain() -> TimeLimit<Chain> {
    TimeLimit::new(Chain { pos: 0 }, 20)
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
    assert_eq!(summary.eval_mean_return, 1.0, "greedy policy does not reach the end");
    // Q*(s, right) = gamma^(N-2-s); Q*(s, left) = gamma * V*(max(s-1, 0)).
    let v = |s: usize| GAMMA.powi((N - 2 - s) as i32);
    for s in 0..N - 1 {
        let mut o = vec![0.0; N];
        o[s] = 1.0;
        let q = agent.q.q_values(Cpu::default().tensor_from_vec(o, (1, Const::<N>))).as_vec();
        let want = [GAMMA * v(s.saturating_sub(1)), v(s)];
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
    assert_eq!(returns, vec![1.0; 3]);
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
