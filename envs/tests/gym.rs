//! `GymEnv` against gymnasium itself (feature `python`; `.ci/run` runs it with the venv active).
//!
//! Without gymnasium importable these tests print that they skipped, unless
//! `GLIMPSE_REQUIRE_PYTHON=1`, where that is a failure.
#![cfg(feature = "python")]

use glimpse::{Env, EnvError, Space};
use glimpse_envs::gym::{GymEnv, KwArg};
use glimpse_envs::CartPole;
use pyo3::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// gymnasium's CartPole, or `None` (after saying so) when Python is not set up and not required.
fn gym_cartpole() -> Option<GymEnv<4>> {
    match GymEnv::make("CartPole-v1") {
        Ok(env) => Some(env),
        Err(e) if std::env::var("GLIMPSE_REQUIRE_PYTHON").as_deref() != Ok("1") => {
            eprintln!("skipped: gymnasium is not importable ({e}); activate a venv with gymnasium");
            None
        }
        Err(e) => panic!("GLIMPSE_REQUIRE_PYTHON=1 but gymnasium is not usable: {e}"),
    }
}

/// `env.unwrapped.state` of a gymnasium env, as float64.
fn gym_state(env: &GymEnv<4>) -> [f64; 4] {
    env.with_python(|_, e| e.getattr("unwrapped")?.getattr("state")?.call_method0("tolist")?.extract()).unwrap()
}

fn set_gym_state(env: &GymEnv<4>, state: [f64; 4]) {
    env.with_python(|py, e| -> PyResult<()> {
        let array = py.import("numpy")?.call_method1("array", (state.to_vec(),))?;
        e.getattr("unwrapped")?.setattr("state", array)
    })
    .unwrap();
}

#[test]
fn gym_cartpole_steps_like_our_cartpole_from_the_same_states() {
    let Some(mut gym) = gym_cartpole() else { return };
    let mut ours = CartPole::new();
    let mut rng = StdRng::seed_from_u64(11);
    gym.reset(Some(0)).unwrap();
    for i in 0..2000 {
        // Random states, including some beyond the termination thresholds.
        let state =
            [rng.gen_range(-3.0..3.0), rng.gen_range(-3.0..3.0), rng.gen_range(-0.3..0.3), rng.gen_range(-3.0..3.0)];
        let action = rng.gen_range(0..2usize);
        set_gym_state(&gym, state);
        ours.set_state(state);
        let g = gym.step(&action).unwrap();
        let o = ours.step(&action).unwrap();
        assert_eq!(g.obs, o.obs, "pair {i}: state {state:?}, action {action}");
        assert_eq!((g.reward, g.terminated, g.truncated), (o.reward, o.terminated, o.truncated), "pair {i}");
        let gs = gym_state(&gym);
        for (a, b) in gs.iter().zip(&ours.state) {
            assert!((a - b).abs() <= 1e-12, "pair {i}: float64 state {gs:?} vs {:?}", ours.state);
        }
        if g.terminated {
            gym.reset(None).unwrap();
        }
    }
}

#[test]
fn whole_episodes_match_and_time_limit_truncates() {
    let Some(mut gym) = gym_cartpole() else { return };
    let mut ours = CartPole::new();
    // Episodes from the same start state with the same actions give the same trajectory.
    for seed in 0..5u64 {
        let (obs, _) = gym.reset(Some(seed)).unwrap();
        let (again, _) = gym.reset(Some(seed)).unwrap();
        assert_eq!(obs, again, "seeded resets repeat");
        ours.set_state(gym_state(&gym));
        let mut rng = StdRng::seed_from_u64(seed);
        for t in 0.. {
            let a = rng.gen_range(0..2usize);
            let (g, o) = (gym.step(&a).unwrap(), ours.step(&a).unwrap());
            assert_eq!((g.obs, g.reward, g.terminated), (o.obs, o.reward, o.terminated), "seed {seed} step {t}");
            if g.terminated || g.truncated {
                break;
            }
        }
    }
    // gymnasium's TimeLimit reports truncation through GymEnv.
    let mut short: GymEnv<4> = GymEnv::make_with("CartPole-v1", &[("max_episode_steps", KwArg::Int(3))]).unwrap();
    short.reset(Some(1)).unwrap();
    let flags: Vec<bool> = (0..3).map(|i| short.step(&(i % 2)).unwrap().truncated).collect();
    assert_eq!(flags, [false, false, true]);
}

#[test]
fn spaces_are_mapped_and_continuous_actions_work() {
    let Some(gym) = gym_cartpole() else { return };
    assert_eq!(gym.action_space(), Space::Discrete(glimpse::Discrete::new(2)));
    let obs = gym.observation_space();
    let b = obs.as_box().unwrap();
    assert_eq!((b.shape.clone(), b.high[0]), (vec![4], 4.8));

    let mut pendulum: GymEnv<3, [f32; 1]> = GymEnv::make("Pendulum-v1").unwrap();
    let b = pendulum.action_space();
    assert_eq!((b.as_box().unwrap().low.clone(), b.as_box().unwrap().high.clone()), (vec![-2.0], vec![2.0]));
    let (obs, _) = pendulum.reset(Some(3)).unwrap();
    assert!((obs[0].powi(2) + obs[1].powi(2) - 1.0).abs() < 1e-5, "cos/sin of the angle: {obs:?}");
    let s = pendulum.step(&[1.5]).unwrap();
    assert!(s.reward <= 0.0 && !s.terminated);
}

#[test]
fn errors_carry_the_python_message() {
    let Some(mut gym) = gym_cartpole() else { return };
    // gymnasium's OrderEnforcing raises ResetNeeded when stepping before reset.
    let e = gym.step(&0).unwrap_err();
    assert!(e.to_string().contains("ResetNeeded"), "{e}");
    gym.reset(Some(0)).unwrap();
    assert!(matches!(gym.step(&2), Err(EnvError::InvalidAction(_))));

    let e = GymEnv::<4>::make("NoSuchEnv-v0").unwrap_err().to_string();
    assert!(e.contains("NoSuchEnv") && e.contains("NameNotFound"), "{e}");
    let e = GymEnv::<3>::make("CartPole-v1").unwrap_err().to_string();
    assert!(e.contains("shape [4]") && e.contains("GymEnv<3>"), "{e}");
    let e = GymEnv::<4, [f32; 1]>::make("CartPole-v1").unwrap_err().to_string();
    assert!(e.contains("needs a Box action space"), "{e}");
    let e = GymEnv::<3, usize>::make("Pendulum-v1").unwrap_err().to_string();
    assert!(e.contains("needs a Discrete action space"), "{e}");
    let e = GymEnv::<4>::make_with("CartPole-v1", &[("no_such_kwarg", KwArg::Int(1))]).unwrap_err().to_string();
    assert!(e.contains("TypeError") && e.contains("no_such_kwarg"), "{e}");
}

/// Registers `Grid64-v0`: float64 observations of shape (2, 2), a Box action of shape (2,), and a
/// step that raises a `RuntimeError("boom at 3")` on its fourth call.
fn register_grid64() {
    Python::attach(|py| {
        py.run(
            cr#"
import gymnasium as gym, numpy as np
class Grid64(gym.Env):
    observation_space = gym.spaces.Box(-10.0, 10.0, shape=(2, 2), dtype=np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([[0.1, 0.2], [0.3, 0.4]]), {"level": 7, "name": "x"}
    def step(self, action):
        if self.t == 3:
            raise RuntimeError(f"boom at {self.t}")
        self.t += 1
        obs = np.asfortranarray(np.array([[0.0, 1.0], [2.0, 3.0]]) + float(action[0]) + self.t)
        return obs, float(action[1]), False, False, {}
if "Grid64-v0" not in gym.registry:
    gym.register("Grid64-v0", entry_point=Grid64)
"#,
            None,
            None,
        )
    })
    .unwrap();
}

#[test]
fn multi_dimensional_float64_observations_infos_and_python_exceptions() {
    if gym_cartpole().is_none() {
        return;
    }
    register_grid64();
    let mut env: GymEnv<4, [f32; 2]> = GymEnv::make("Grid64-v0").unwrap();
    let b = env.observation_space();
    assert_eq!(b.as_box().unwrap().shape, vec![2, 2]);
    let (obs, info) = env.reset(Some(0)).unwrap();
    assert_eq!(obs, [0.1, 0.2, 0.3, 0.4], "float64 converted, flattened row-major");
    assert_eq!(info.get("level"), Some(7.0));
    assert_eq!(info.values.len(), 1, "non-numeric entries are skipped");
    let s = env.step(&[0.5, -0.25]).unwrap();
    assert_eq!((s.obs, s.reward), ([1.5, 2.5, 3.5, 4.5], -0.25), "Fortran-ordered arrays are read correctly");
    assert!(matches!(env.step(&[f32::NAN, 0.0]), Err(EnvError::InvalidAction(_))));
    env.step(&[0.0, 0.0]).unwrap();
    env.step(&[0.0, 0.0]).unwrap();
    let e = env.step(&[0.0, 0.0]).unwrap_err().to_string();
    assert!(e.contains("RuntimeError: boom at 3"), "{e}");
    // The env stays usable after a Python exception.
    assert_eq!(env.reset(None).unwrap().0, [0.1, 0.2, 0.3, 0.4]);
    // A wrong N names the shape.
    let e = GymEnv::<3, [f32; 2]>::make("Grid64-v0").unwrap_err().to_string();
    assert!(e.contains("[2, 2]") && e.contains("holds 4 values"), "{e}");
}

#[test]
fn a_gym_env_says_it_cannot_save_its_state() {
    let Some(gym) = gym_cartpole() else { return };
    let env = glimpse::wrappers::TimeLimit::new(gym, 500);
    let err = env.save_state().unwrap_err();
    assert!(matches!(&err, EnvError::Unsupported(m) if m.contains("CartPole-v1") && m.contains("resume")), "{err}");
}
