//! VecEnv: auto-reset semantics, determinism across worker counts, errors, panics and shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dfdx::prelude::*;
use glimpse::vec_env::VecEnv;
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Discrete, Env, EnvError, EpisodeStats, Info, Space, Step};
use glimpse_envs::{cartpole_v1, CartPole};

/// A reproducible action sequence (splitmix64), independent of the env code under test.
struct Actions(u64);
impl Actions {
    fn next(&mut self, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) & 1) as usize
            })
            .collect()
    }
}

/// Everything one step returns, owned, for comparisons.
#[derive(Debug, PartialEq)]
struct Record {
    obs: Vec<u32>,
    final_obs: Vec<u32>,
    rewards: Vec<u32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    episodes: Vec<(usize, EpisodeStats)>,
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Runs `steps` batch steps of CartPole-v1 with a short time limit (to exercise truncation).
fn cartpole_run(n: usize, workers: usize, steps: usize) -> Vec<Record> {
    let envs = (0..n).map(|_| TimeLimit::new(CartPole::new(), 30)).collect();
    let mut venv = VecEnv::new(envs, workers).unwrap();
    venv.reset(Some(42)).unwrap();
    let mut actions = Actions(1);
    (0..steps)
        .map(|_| {
            let s = venv.step(&actions.next(n)).unwrap();
            Record {
                obs: bits(s.obs),
                final_obs: bits(s.final_obs),
                rewards: bits(s.rewards),
                terminated: s.terminated.to_vec(),
                truncated: s.truncated.to_vec(),
                episodes: s.episodes.to_vec(),
            }
        })
        .collect()
}

#[test]
fn same_seeds_give_bitwise_equal_trajectories_for_any_worker_count() {
    let one = cartpole_run(7, 1, 400);
    let episodes: usize = one.iter().map(|r| r.episodes.len()).sum();
    let truncations: usize = one.iter().flat_map(|r| &r.truncated).filter(|&&t| t).count();
    assert!(episodes > 50 && truncations > 0, "too few episodes to test auto-reset: {episodes}, {truncations}");
    for workers in [2, 3] {
        assert!(one == cartpole_run(7, workers, 400), "W = {workers} differs from W = 1");
    }
    // Chunks of several envs each.
    let one = cartpole_run(100, 1, 100);
    for workers in [2, 3] {
        assert!(one == cartpole_run(100, workers, 100), "N = 100: W = {workers} differs from W = 1");
    }
    // Another seed gives another trajectory (the comparison above can fail).
    let envs = (0..7).map(|_| TimeLimit::new(CartPole::new(), 30)).collect();
    let mut venv = VecEnv::new(envs, 2).unwrap();
    assert_ne!(bits(venv.reset(Some(43)).unwrap()), cartpole_run(7, 1, 1)[0].obs);
}

#[test]
fn matches_single_envs_stepped_by_hand_with_auto_reset() {
    let (n, seed) = (5, 7u64);
    let mut venv = VecEnv::new((0..n).map(|_| cartpole_v1()).collect(), 2).unwrap();
    let first = venv.reset(Some(seed)).unwrap().to_vec();
    let mut singles: Vec<_> = (0..n).map(|_| cartpole_v1()).collect();
    let mut stats = vec![EpisodeStats::default(); n];
    for (i, env) in singles.iter_mut().enumerate() {
        let (obs, _) = env.reset(Some(seed + i as u64)).unwrap();
        assert_eq!(&first[i * 4..i * 4 + 4], &obs, "env {i} is seeded with seed + i");
    }
    let mut actions = Actions(3);
    let mut ended = 0;
    for _ in 0..300 {
        let a = actions.next(n);
        let s = venv.step(&a).unwrap();
        let mut expected_episodes = vec![];
        for (i, env) in singles.iter_mut().enumerate() {
            let step = env.step(&a[i]).unwrap();
            assert_eq!(&s.final_obs[i * 4..i * 4 + 4], &step.obs);
            assert_eq!(s.rewards[i], step.reward as f32);
            assert_eq!((s.terminated[i], s.truncated[i]), (step.terminated, step.truncated));
            stats[i].ret += step.reward;
            stats[i].len += 1;
            if step.done() {
                expected_episodes.push((i, stats[i]));
                stats[i] = EpisodeStats::default();
                let (next, _) = env.reset(None).unwrap();
                assert_eq!(&s.obs[i * 4..i * 4 + 4], &next, "env {i}: obs row is the next episode's first obs");
            } else {
                assert_eq!(&s.obs[i * 4..i * 4 + 4], &step.obs);
            }
        }
        ended += expected_episodes.len();
        assert_eq!(s.episodes, &expected_episodes[..]);
        let obs = s.obs.to_vec();
        assert_eq!(venv.observations(), &obs[..]);
    }
    assert!(ended > 20, "{ended} episodes");
}

/// Observation = steps taken; terminates when the action is 1; optionally panics from a chosen step.
struct Counter {
    t: u32,
    panic_from: Option<u32>,
    /// Panic only on a VecEnv worker thread; from step 3 on the calling thread, dawdle instead,
    /// so that the workers claim the other chunks.
    panic_only_on_worker: bool,
    drops: Option<Arc<AtomicUsize>>,
}

impl Counter {
    fn new() -> Self {
        Self { t: 0, panic_from: None, panic_only_on_worker: false, drops: None }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        if let Some(d) = &self.drops {
            d.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Env for Counter {
    type Obs = [f32; 2];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0, 0.0], vec![1e6, 1.0]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }
    fn reset(&mut self, _: Option<u64>) -> Result<([f32; 2], Info), EnvError> {
        self.t = 0;
        Ok(([0.0, 1.0], Info::default()))
    }
    fn step(&mut self, a: &usize) -> Result<Step<[f32; 2]>, EnvError> {
        if *a > 1 {
            return Err(EnvError::InvalidAction(format!("{a} is not in Discrete(2)")));
        }
        self.t += 1;
        let on_worker = std::thread::current().name().is_some_and(|n| n.starts_with("vec-env"));
        if self.panic_from.is_some_and(|p| self.t >= p) && (on_worker || !self.panic_only_on_worker) {
            panic!("counter reached {} on a worker: {on_worker}", self.t);
        }
        if self.panic_only_on_worker && !on_worker && self.t >= 3 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let obs = [self.t as f32, 0.0];
        Ok(Step { obs, reward: 0.5, terminated: *a == 1, truncated: false, info: Info::default() })
    }
}

#[test]
fn truncation_keeps_the_final_observation_and_reports_episode_stats() {
    let envs = (0..3).map(|_| TimeLimit::new(Counter::new(), 4)).collect();
    let mut venv = VecEnv::new(envs, 2).unwrap();
    assert_eq!(venv.reset(None).unwrap(), &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    for t in 1..=3 {
        let s = venv.step(&[0, 0, 0]).unwrap();
        assert_eq!(s.obs, &[t as f32, 0.0, t as f32, 0.0, t as f32, 0.0]);
        assert_eq!(s.final_obs, s.obs);
        assert!(s.episodes.is_empty());
    }
    // env 1 terminates on its 4th step while envs 0 and 2 reach the time limit.
    let s = venv.step(&[0, 1, 0]).unwrap();
    assert_eq!(s.terminated, &[false, true, false]);
    assert_eq!(s.truncated, &[true, true, true]);
    assert_eq!(s.final_obs, &[4.0, 0.0, 4.0, 0.0, 4.0, 0.0]);
    assert_eq!(s.obs, &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(s.rewards, &[0.5; 3]);
    let stats = EpisodeStats { ret: 2.0, len: 4 };
    assert_eq!(s.episodes, &[(0, stats), (1, stats), (2, stats)]);
    // The next episode starts from zero.
    let s = venv.step(&[1, 0, 0]).unwrap();
    assert_eq!(s.episodes, &[(0, EpisodeStats { ret: 0.5, len: 1 })]);
    assert_eq!(s.final_obs, &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
}

fn counters(n: usize, panic_env: usize, on_worker: bool, drops: &Arc<AtomicUsize>) -> Vec<Counter> {
    (0..n)
        .map(|i| Counter {
            t: 0,
            panic_from: (i == panic_env).then_some(3),
            panic_only_on_worker: on_worker,
            drops: Some(drops.clone()),
        })
        .collect()
}

/// Runs `f` on another thread and fails if it does not finish within 20 s (instead of hanging).
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("{what} did not finish: hang"))
}

#[test]
fn a_panicking_env_returns_an_error_and_drop_joins_the_threads() {
    // Env 5 of 7 on 3 workers panics from its 3rd step, but only on a spawned worker thread (the
    // chunks are claimed dynamically); env 0 on 1 worker panics on the calling thread.
    for (panic_env, workers, on_worker) in [(5, 3, true), (0, 1, false)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let envs = counters(7, panic_env, on_worker, &drops);
        let (venv, err, steps) = within_deadline("stepping until the panic", move || {
            let mut venv = VecEnv::new(envs, workers).unwrap();
            venv.reset(Some(0)).unwrap();
            for steps in 1..=200 {
                if let Err(e) = venv.step(&[0; 7]) {
                    return (venv, e, steps);
                }
            }
            panic!("env {panic_env} never panicked");
        });
        assert!(steps >= 3, "panicked at step {steps}");
        match &err {
            EnvError::Panicked { index, message } => {
                assert_eq!(*index, panic_env);
                assert!(message.starts_with("counter reached"), "{message}");
                assert!(message.ends_with(&format!("on a worker: {on_worker}")), "{message}");
            }
            e => panic!("expected Panicked, got {e:?}"),
        }
        let mut venv = venv;
        assert_eq!(venv.step(&[0; 7]).map(|_| ()).unwrap_err(), err, "poisoned for good");
        assert_eq!(venv.reset(Some(1)).map(|_| ()).unwrap_err(), err);
        within_deadline("drop after a panic", move || drop(venv));
        assert_eq!(drops.load(Ordering::SeqCst), 7, "every env dropped");
    }
}

#[test]
fn drop_joins_worker_threads_without_a_panic() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut venv = VecEnv::new(counters(5, usize::MAX, false, &drops), 2).unwrap();
    venv.reset(None).unwrap();
    venv.step(&[0; 5]).unwrap();
    within_deadline("drop", move || drop(venv));
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

#[test]
fn invalid_actions_are_errors() {
    let mut venv = VecEnv::new((0..4).map(|_| Counter::new()).collect(), 2).unwrap();
    assert!(matches!(venv.step(&[0; 4]), Err(EnvError::NeedsReset(_))), "step before reset");
    venv.reset(None).unwrap();
    // A wrong count is rejected before any env moves.
    let e = venv.step(&[0; 3]).map(|_| ()).unwrap_err();
    assert!(matches!(&e, EnvError::InvalidAction(m) if m.contains("expected 4 actions")), "{e:?}");
    assert_eq!(venv.step(&[0; 4]).unwrap().obs[0], 1.0, "nothing stepped before");
    // An action an env rejects names that env; the batch then needs a reset.
    let e = venv.step(&[0, 0, 9, 0]).map(|_| ()).unwrap_err();
    assert!(matches!(&e, EnvError::InvalidAction(m) if m.starts_with("env 2:")), "{e:?}");
    assert!(matches!(venv.step(&[0; 4]), Err(EnvError::NeedsReset(_))));
    venv.reset(None).unwrap();
    assert_eq!(venv.step(&[0; 4]).unwrap().obs, &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn construction_checks_its_arguments() {
    fn is_send<T: Send>(_: &T) {}
    assert!(VecEnv::<Counter>::new(vec![], 1).is_err());
    assert!(VecEnv::new(vec![Counter::new()], 0).is_err());
    let venv = VecEnv::new((0..3).map(|_| Counter::new()).collect(), 8).unwrap();
    assert_eq!((venv.num_envs(), venv.num_workers(), venv.obs_dim()), (3, 3, 2));
    assert_eq!(venv.action_space(), &Space::Discrete(Discrete::new(2)));
    is_send(&venv);
}

#[test]
fn observations_feed_a_dfdx_tensor() {
    let dev = Cpu::default();
    let mut venv = VecEnv::new((0..6).map(|_| cartpole_v1()).collect(), 2).unwrap();
    let obs = venv.reset(Some(0)).unwrap().to_vec();
    let t = venv.obs_tensor::<4, _>(&dev).unwrap();
    assert_eq!(t.shape(), &(6, Const::<4>));
    assert_eq!(t.as_vec(), obs);
    let s = venv.step(&[1; 6]).unwrap().obs.to_vec();
    let mut reused = t.clone();
    venv.copy_obs_into(&mut reused).unwrap();
    assert_eq!(reused.as_vec(), s);
    assert!(venv.obs_tensor::<3, _>(&dev).is_err(), "wrong width");
    let mut wrong_rows: Tensor<(usize, Const<4>), f32, _> = dev.zeros_like(&(5, Const::<4>));
    assert!(venv.copy_obs_into(&mut wrong_rows).is_err());
}
