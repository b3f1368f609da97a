//! Compares the classic-control environments with gymnasium's own numbers, written by
//! `envs/tests/golden/generate.py` (no Python needed here):
//! - 1000 random (state, action) pairs per env stepped from a state set directly: next state and
//!   reward within 1e-12 (bit-identical on x86-64 Linux, see [`TOL`]), observation and `terminated` identical;
//! - whole seeded episodes of the registered env (`reset(seed)`, then `reset(None)` continuing the
//!   stream): every observation, reward, `terminated` and `truncated`, including truncation at
//!   the time limit;
//! - observation and action spaces;
//! - numpy's `SeedSequence`, `PCG64` raw outputs and `uniform` draws.
//!
//! Run with `--nocapture` to see the largest difference observed per env. When `GLIMPSE_PYTHON`
//! names a Python with gymnasium, `matches_live_gymnasium` also regenerates the data into a
//! temporary folder and compares with that.

use std::path::{Path, PathBuf};

use base64::Engine;
use glimpse::wrappers::TimeLimit;
use glimpse::{Env, EnvError, Space};
use glimpse_envs::np_random::{NpRandom, Pcg64, SeedSequence};
use glimpse_envs::{
    acrobot_v1, cartpole_v1, mountain_car_continuous_v0, mountain_car_v0, pendulum_v1, Acrobot, CartPole, MountainCar,
    MountainCarContinuous, Pendulum,
};
use serde::Deserialize;

/// Largest difference allowed between a float64 value and gymnasium's.
///
/// On x86-64 Linux with glibc (where the golden data was made) the C library's `cos`, `sin` and
/// `pow`, which both numpy and Rust call, give identical bits, so every value must match exactly:
/// that catches a changed operation order, whose effect is far below 1e-12. Elsewhere a different
/// libm may differ in the last bit, and the documented tolerance applies.
const TOL: f64 = if cfg!(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")) { 0.0 } else { 1e-12 };

#[derive(Deserialize)]
struct Golden {
    id: String,
    gymnasium: String,
    max_episode_steps: usize,
    observation_space: SpaceJson,
    action_space: SpaceJson,
    pairs: Pairs,
    episodes: Vec<Episode>,
}

#[derive(Deserialize)]
struct SpaceJson {
    kind: String,
    n: Option<usize>,
    start: Option<i64>,
    low: Option<Vec<String>>,
    high: Option<Vec<String>>,
    shape: Option<Vec<usize>>,
    dtype: String,
}

#[derive(Deserialize)]
struct Pairs {
    count: usize,
    state: String,
    action: String,
    next_state: String,
    obs: String,
    reward: String,
    terminated: String,
    state_f32: Option<String>,
}

#[derive(Deserialize)]
struct Episode {
    seed: Option<u64>,
    steps: usize,
    actions: String,
    obs: String,
    reward: String,
    terminated: String,
    truncated: String,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> T {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bytes(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(b64).expect("valid base64")
}

fn f64s(b64: &str) -> Vec<f64> {
    bytes(b64).chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn f32s(b64: &str) -> Vec<f32> {
    bytes(b64).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn flags(s: &str) -> Vec<bool> {
    s.bytes().map(|b| b == b'1').collect()
}

/// Actions as the golden files store them: digits for discrete, float32 base64 for continuous.
trait GoldenAction: Sized {
    fn decode(s: &str) -> Vec<Self>;
}

impl GoldenAction for usize {
    fn decode(s: &str) -> Vec<Self> {
        s.bytes().map(|b| (b - b'0') as usize).collect()
    }
}

impl GoldenAction for [f32; 1] {
    fn decode(s: &str) -> Vec<Self> {
        f32s(s).into_iter().map(|a| [a]).collect()
    }
}

/// What the comparison needs from each raw environment.
trait GoldenEnv: Env<Act: GoldenAction> + Sized {
    const FILE: &'static str;
    fn make() -> TimeLimit<Self>;
    fn raw() -> Self;
    fn put_state(&mut self, state: &[f64], as_f32: bool);
    fn state(&self) -> Vec<f64>;
}

macro_rules! golden_env {
    ($t:ty, $file:literal, $make:ident, $n:literal) => {
        impl GoldenEnv for $t {
            const FILE: &'static str = $file;
            fn make() -> TimeLimit<Self> {
                $make()
            }
            fn raw() -> Self {
                <$t>::new()
            }
            fn put_state(&mut self, state: &[f64], as_f32: bool) {
                assert!(!as_f32, "only MountainCarContinuous has float32 states");
                self.set_state(<[f64; $n]>::try_from(state).unwrap());
            }
            fn state(&self) -> Vec<f64> {
                self.state.to_vec()
            }
        }
    };
}

golden_env!(CartPole, "CartPole-v1.json", cartpole_v1, 4);
golden_env!(Acrobot, "Acrobot-v1.json", acrobot_v1, 4);
golden_env!(MountainCar, "MountainCar-v0.json", mountain_car_v0, 2);
golden_env!(Pendulum, "Pendulum-v1.json", pendulum_v1, 2);

impl GoldenEnv for MountainCarContinuous {
    const FILE: &'static str = "MountainCarContinuous-v0.json";
    fn make() -> TimeLimit<Self> {
        mountain_car_continuous_v0()
    }
    fn raw() -> Self {
        Self::new()
    }
    fn put_state(&mut self, state: &[f64], as_f32: bool) {
        if as_f32 {
            self.set_state_f32([state[0] as f32, state[1] as f32]);
        } else {
            self.set_state([state[0], state[1]]);
        }
    }
    fn state(&self) -> Vec<f64> {
        self.state.to_vec()
    }
}

/// Largest differences seen for one env.
#[derive(Debug, Default)]
struct MaxDiff {
    state: f64,
    reward: f64,
    obs: f64,
    /// Observations that differ at all (allowed only for Acrobot's reset, see `check_reset_obs`).
    obs_mismatches: usize,
}

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn obs_vec<E: Env>(obs: &E::Obs) -> Vec<f32> {
    let mut out = vec![0.0; <E::Obs as glimpse::Observation>::DIM];
    glimpse::Observation::write_to(obs, &mut out);
    out
}

fn check_space(space: &Space, golden: &SpaceJson, what: &str) {
    match space {
        Space::Discrete(d) => {
            assert_eq!(golden.kind, "discrete", "{what}");
            assert_eq!(Some(d.n), golden.n, "{what}");
            assert_eq!(Some(d.start), golden.start, "{what}");
        }
        Space::Box(b) => {
            assert_eq!(golden.kind, "box", "{what}");
            assert_eq!(golden.dtype, "float32", "{what}");
            let parse = |v: &Option<Vec<String>>| -> Vec<f32> {
                v.as_ref().unwrap().iter().map(|s| s.parse::<f32>().unwrap()).collect()
            };
            assert_eq!(b.low, parse(&golden.low), "{what} low");
            assert_eq!(b.high, parse(&golden.high), "{what} high");
            assert_eq!(Some(&b.shape), golden.shape.as_ref(), "{what} shape");
        }
    }
}

fn check_pairs<E: GoldenEnv>(g: &Golden, diff: &mut MaxDiff) {
    let p = &g.pairs;
    let states = f32s(&p.state);
    let actions = E::Act::decode(&p.action);
    let next = f64s(&p.next_state);
    let obs = f32s(&p.obs);
    let rewards = f64s(&p.reward);
    let terminated = flags(&p.terminated);
    let as_f32 = p.state_f32.as_deref().map(flags).unwrap_or_else(|| vec![false; p.count]);
    let (s_dim, o_dim) = (states.len() / p.count, <E::Obs as glimpse::Observation>::DIM);
    assert!(p.count >= 1000 && actions.len() == p.count && terminated.len() == p.count);
    assert!(terminated.iter().any(|&t| t) || g.id == "Pendulum-v1", "{}: no terminal pair", g.id);
    let mut env = E::raw();
    for i in 0..p.count {
        let state: Vec<f64> = states[i * s_dim..(i + 1) * s_dim].iter().map(|&v| v as f64).collect();
        env.put_state(&state, as_f32[i]);
        let step = env.step(&actions[i]).unwrap_or_else(|e| panic!("{} pair {i}: {e}", g.id));
        let want_state = &next[i * s_dim..(i + 1) * s_dim];
        let d = max_abs(&env.state(), want_state);
        assert!(d <= TOL, "{} pair {i}: state {:?} from {state:?}, gymnasium {want_state:?}", g.id, env.state());
        diff.state = diff.state.max(d);
        let want_obs = &obs[i * o_dim..(i + 1) * o_dim];
        assert_eq!(obs_vec::<E>(&step.obs), want_obs, "{} pair {i}: observation", g.id);
        let d = (step.reward - rewards[i]).abs();
        assert!(d <= TOL, "{} pair {i}: reward {} vs gymnasium {}", g.id, step.reward, rewards[i]);
        diff.reward = diff.reward.max(d);
        assert_eq!(step.terminated, terminated[i], "{} pair {i}: terminated", g.id);
        assert!(!step.truncated, "{} pair {i}: the raw env never truncates", g.id);
    }
}

/// Reset observations must match exactly, except Acrobot's cosines and sines: gymnasium applies
/// numpy's float32 `cos`/`sin` to its float32 reset state, whose last bit depends on the CPU's
/// SIMD path; glimpse rounds the float64 value, so those may differ by one float32 ulp.
fn check_reset_obs(id: &str, got: &[f32], want: &[f32], diff: &mut MaxDiff) {
    for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
        if a == b {
            continue;
        }
        let trig = id == "Acrobot-v1" && k < 4;
        let ulps = (a.to_bits() as i64 - b.to_bits() as i64).abs();
        assert!(trig && ulps <= 1, "{id}: reset observation {got:?}, gymnasium {want:?}");
        diff.obs = diff.obs.max((a as f64 - b as f64).abs());
        diff.obs_mismatches += 1;
    }
}

fn check_episodes<E: GoldenEnv>(g: &Golden, diff: &mut MaxDiff) {
    let mut env = E::make();
    assert_eq!(env.max_steps(), g.max_episode_steps, "{}: time limit", g.id);
    assert!(g.episodes.iter().any(|e| e.truncated.ends_with('1') && e.steps == g.max_episode_steps));
    for (n, ep) in g.episodes.iter().enumerate() {
        let actions = E::Act::decode(&ep.actions);
        let obs = f32s(&ep.obs);
        let rewards = f64s(&ep.reward);
        let (terminated, truncated) = (flags(&ep.terminated), flags(&ep.truncated));
        let dim = <E::Obs as glimpse::Observation>::DIM;
        assert!(actions.len() == ep.steps && obs.len() == (ep.steps + 1) * dim && rewards.len() == ep.steps);
        let (first, _) = env.reset(ep.seed).unwrap();
        check_reset_obs(&g.id, &obs_vec::<E>(&first), &obs[..dim], diff);
        for t in 0..ep.steps {
            let what = format!("{} episode {n} (seed {:?}) step {t}", g.id, ep.seed);
            let step = env.step(&actions[t]).unwrap_or_else(|e| panic!("{what}: {e}"));
            let got: Vec<f64> = obs_vec::<E>(&step.obs).iter().map(|&v| v as f64).collect();
            let want: Vec<f64> = obs[(t + 1) * dim..(t + 2) * dim].iter().map(|&v| v as f64).collect();
            let d = max_abs(&got, &want);
            assert!(d <= TOL, "{what}: observation {got:?}, gymnasium {want:?}");
            diff.obs = diff.obs.max(d);
            let d = (step.reward - rewards[t]).abs();
            assert!(d <= TOL, "{what}: reward {} vs gymnasium {}", step.reward, rewards[t]);
            diff.reward = diff.reward.max(d);
            assert_eq!((step.terminated, step.truncated), (terminated[t], truncated[t]), "{what}: end flags");
        }
    }
}

fn check_env<E: GoldenEnv>(dir: &Path) {
    let g: Golden = load(dir, E::FILE);
    assert!(g.gymnasium.starts_with("1."), "golden data from gymnasium {}", g.gymnasium);
    let raw = E::raw();
    check_space(&raw.observation_space(), &g.observation_space, &format!("{} observation space", g.id));
    check_space(&raw.action_space(), &g.action_space, &format!("{} action space", g.id));
    let mut diff = MaxDiff::default();
    check_pairs::<E>(&g, &mut diff);
    check_episodes::<E>(&g, &mut diff);
    eprintln!("{}: max |diff| vs gymnasium {}: {diff:?}", g.id, g.gymnasium);
}

#[test]
fn cartpole_matches_gymnasium() {
    check_env::<CartPole>(&golden_dir());
}

#[test]
fn acrobot_matches_gymnasium() {
    check_env::<Acrobot>(&golden_dir());
}

#[test]
fn mountain_car_matches_gymnasium() {
    check_env::<MountainCar>(&golden_dir());
}

#[test]
fn mountain_car_continuous_matches_gymnasium() {
    check_env::<MountainCarContinuous>(&golden_dir());
}

#[test]
fn pendulum_matches_gymnasium() {
    check_env::<Pendulum>(&golden_dir());
}

#[derive(Deserialize)]
struct NpGolden {
    seeds: Vec<NpSeed>,
}

#[derive(Deserialize)]
struct NpSeed {
    seed: u64,
    generate_state_u32: Vec<u32>,
    generate_state_u64: Vec<u64>,
    random_raw: Vec<u64>,
    uniform: String,
}

#[test]
fn np_random_matches_numpy() {
    check_np_random(&golden_dir());
}

fn check_np_random(dir: &Path) {
    let g: NpGolden = load(dir, "np_random.json");
    for s in &g.seeds {
        let seq = SeedSequence::new(s.seed as u128);
        assert_eq!(seq.generate_u32(s.generate_state_u32.len()), s.generate_state_u32, "seed {}", s.seed);
        assert_eq!(seq.generate_u64(s.generate_state_u64.len()), s.generate_state_u64, "seed {}", s.seed);
        let mut bits = Pcg64::from_seed_sequence(&seq);
        let raw: Vec<u64> = s.random_raw.iter().map(|_| bits.next_u64()).collect();
        assert_eq!(raw, s.random_raw, "seed {}", s.seed);
        let mut rng = NpRandom::from_seed(s.seed);
        let mut got = rng.uniform_array([-0.05; 4], [0.05; 4]).to_vec();
        got.push(rng.uniform(-0.6, -0.4));
        got.extend((0..3).map(|_| rng.random()));
        assert_eq!(got, f64s(&s.uniform), "seed {}", s.seed);
    }
}

/// Steps each env with `bad` after a reset and expects `InvalidAction`; steps a fresh one and
/// expects `NeedsReset`.
fn check_errors<E: Env>(make: fn() -> E, good: E::Act, bad: &[E::Act])
where
    E::Obs: std::fmt::Debug,
{
    let mut env = make();
    assert!(matches!(env.step(&good), Err(EnvError::NeedsReset(_))));
    env.reset(Some(0)).unwrap();
    for a in bad {
        match env.step(a) {
            Err(EnvError::InvalidAction(msg)) => assert!(!msg.is_empty()),
            other => panic!("action {a:?}: expected InvalidAction, got {other:?}"),
        }
    }
    assert!(env.step(&good).is_ok(), "a rejected action must leave the env usable");
}

#[test]
fn invalid_actions_and_step_before_reset_are_errors() {
    check_errors(cartpole_v1, 1, &[2, usize::MAX]);
    check_errors(acrobot_v1, 2, &[3, 100]);
    check_errors(mountain_car_v0, 0, &[3]);
    check_errors(mountain_car_continuous_v0, [0.5], &[[f32::NAN], [f32::INFINITY], [f32::NEG_INFINITY]]);
    check_errors(pendulum_v1, [-1.0], &[[f32::NAN], [f32::INFINITY]]);
    check_errors(CartPole::new, 0, &[7]);
    check_errors(Pendulum::new, [0.0], &[[f32::NAN]]);
}

#[test]
fn same_seed_same_episode_and_none_continues_the_stream() {
    let mut a = acrobot_v1();
    let mut b = acrobot_v1();
    let first = a.reset(Some(5)).unwrap().0;
    assert_eq!(first, b.reset(Some(5)).unwrap().0);
    let second = a.reset(None).unwrap().0;
    assert_ne!(first, second);
    assert_eq!(second, b.reset(None).unwrap().0);
    assert_eq!(first, a.reset(Some(5)).unwrap().0);
}

/// Regenerates the golden data with the gymnasium and numpy of `$GLIMPSE_PYTHON` and compares
/// with that; skipped (with a message) when it is unset, unless `GLIMPSE_REQUIRE_PYTHON=1`.
#[test]
fn matches_live_gymnasium() {
    let Some(python) = std::env::var_os("GLIMPSE_PYTHON") else {
        assert!(std::env::var("GLIMPSE_REQUIRE_PYTHON").as_deref() != Ok("1"), "GLIMPSE_PYTHON is not set");
        eprintln!("skipped: set GLIMPSE_PYTHON to a Python with gymnasium to compare with live gymnasium");
        return;
    };
    let dir = std::env::temp_dir().join(format!("glimpse-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new(python)
        .arg(golden_dir().join("generate.py"))
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run generate.py");
    assert!(status.success(), "generate.py failed: {status}");
    check_np_random(&dir);
    check_env::<CartPole>(&dir);
    check_env::<Acrobot>(&dir);
    check_env::<MountainCar>(&dir);
    check_env::<MountainCarContinuous>(&dir);
    check_env::<Pendulum>(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}
