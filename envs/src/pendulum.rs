//! Pendulum-v1, as gymnasium's `PendulumEnv` (default gravity `g = 10.0`).

use std::f64::consts::PI;

use glimpse::env::{from_env_state, to_env_state};
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Env, EnvError, EnvState, Info, Space, Step};

use crate::np_random::{reseed, NpRandom};
use crate::numpy_scalar::{pow2, pow2_f32};

/// Bound on the angular velocity.
pub const MAX_SPEED: f64 = 8.0;
/// Bound on the torque; larger actions are clipped.
pub const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const G: f64 = 10.0;
const M: f64 = 1.0;
const L: f64 = 1.0;

/// Python's `x % m` for floats as numpy computes it: the result has the sign of `m`.
#[inline]
fn py_mod(x: f64, m: f64) -> f64 {
    let r = x % m;
    if r == 0.0 {
        0.0f64.copysign(m)
    } else if (m < 0.0) != (r < 0.0) {
        r + m
    } else {
        r
    }
}

/// Maps an angle into [-π, π), as gymnasium's `angle_normalize`.
#[inline]
fn angle_normalize(x: f64) -> f64 {
    py_mod(x + PI, 2.0 * PI) - PI
}

/// A pendulum to swing up and hold upright with torque in [-2, 2]; reward
/// `-(θ² + 0.1·θ̇² + 0.001·u²)` with θ normalised to [-π, π).
///
/// Actions outside [-2, 2] are clipped, as in gymnasium; non-finite actions are rejected.
///
/// Serializes (all fields, RNG included) for [`Env::save_state`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pendulum {
    /// `[theta, theta_dot]` in float64, like gymnasium's `env.unwrapped.state`.
    pub state: [f64; 2],
    needs_reset: bool,
    rng: Option<NpRandom>,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new()
    }
}

impl Pendulum {
    /// A Pendulum that must be [`reset`](Env::reset) before the first step.
    pub fn new() -> Self {
        Self { state: [0.0; 2], needs_reset: true, rng: None }
    }

    /// Sets the state directly, for tests and bindings.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = state;
        self.needs_reset = false;
    }

    #[inline]
    fn obs(&self) -> [f32; 3] {
        let [theta, theta_dot] = self.state;
        [theta.cos() as f32, theta.sin() as f32, theta_dot as f32]
    }
}

impl Env for Pendulum {
    type Obs = [f32; 3];
    type Act = [f32; 1];

    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![-1.0, -1.0, -MAX_SPEED as f32], vec![1.0, 1.0, MAX_SPEED as f32]).into()
    }

    fn action_space(&self) -> Space {
        BoxSpace::new(vec![-MAX_TORQUE], vec![MAX_TORQUE]).into()
    }

    /// The frame gymnasium's `rgb_array` mode draws (see [`crate::render`]).
    fn render(&self) -> Result<glimpse::image::Image, EnvError> {
        Ok(crate::render::pendulum(&self.state))
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("Pendulum", self)
    }

    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        *self = from_env_state("Pendulum", state)?;
        Ok(())
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 3], Info), EnvError> {
        self.state = reseed(&mut self.rng, seed).uniform_array([-PI, -1.0], [PI, 1.0]);
        self.needs_reset = false;
        Ok((self.obs(), Info::default()))
    }

    #[inline]
    fn step(&mut self, action: &[f32; 1]) -> Result<Step<[f32; 3]>, EnvError> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("Pendulum: call reset before step".into()));
        }
        if !action[0].is_finite() {
            return Err(EnvError::InvalidAction(format!("Pendulum: action {} is not finite", action[0])));
        }
        let [th, thdot] = self.state;
        // The torque stays float32 (numpy 2 keeps float32 op Python float in float32).
        let u = action[0].clamp(-MAX_TORQUE, MAX_TORQUE);
        let an = angle_normalize(th);
        let costs = pow2(an) + 0.1 * pow2(thdot) + (0.001f32 * pow2_f32(u)) as f64;
        let torque_term = ((3.0 / (M * L * L)) as f32 * u) as f64;
        let newthdot = thdot + (3.0 * G / (2.0 * L) * th.sin() + torque_term) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        self.state = [newth, newthdot];
        Ok(Step { obs: self.obs(), reward: -costs, terminated: false, truncated: false, info: Info::default() })
    }
}

/// Pendulum-v1 as `gymnasium.make("Pendulum-v1")` builds it: truncated after 200 steps.
pub fn pendulum_v1() -> TimeLimit<Pendulum> {
    TimeLimit::new(Pendulum::new(), 200)
}
