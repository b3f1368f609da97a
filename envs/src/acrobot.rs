//! Acrobot-v1 (Sutton 1996; the book's dynamics), as gymnasium's `AcrobotEnv`.

use std::f64::consts::PI;

use glimpse::env::{from_env_state, to_env_state};
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Discrete, Env, EnvError, EnvState, Info, Space, Step};

use crate::np_random::{reseed, NpRandom};
use crate::numpy_scalar::{self, pow2};

/// Integration time step in seconds.
const DT: f64 = 0.2;
const LINK_LENGTH_1: f64 = 1.0;
/// The second link's length (only the picture uses it: the dynamics need only the first).
const LINK_LENGTH_2: f64 = 1.0;
const LINK_MASS_1: f64 = 1.0;
const LINK_MASS_2: f64 = 1.0;
const LINK_COM_POS_1: f64 = 0.5;
const LINK_COM_POS_2: f64 = 0.5;
const LINK_MOI: f64 = 1.0;
const G: f64 = 9.8;
/// Bound on the first joint's angular velocity: 4π.
pub const MAX_VEL_1: f64 = 4.0 * PI;
/// Bound on the second joint's angular velocity: 9π.
pub const MAX_VEL_2: f64 = 9.0 * PI;
/// Torque applied for actions 0, 1 and 2.
const AVAIL_TORQUE: [f64; 3] = [-1.0, 0.0, 1.0];

/// Two links hanging from a fixed joint; torque -1, 0 or +1 on the middle joint; reward -1 per
/// step until the free end rises one link length above the fixed joint.
///
/// Serializes (all fields, RNG included) for [`Env::save_state`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acrobot {
    /// `[theta1, theta2, dtheta1, dtheta2]`, like gymnasium's `env.unwrapped.state` (float32
    /// values right after a reset, float64 after a step).
    pub state: [f64; 4],
    needs_reset: bool,
    rng: Option<NpRandom>,
}

impl Default for Acrobot {
    fn default() -> Self {
        Self::new()
    }
}

impl Acrobot {
    /// An Acrobot that must be [`reset`](Env::reset) before the first step.
    pub fn new() -> Self {
        Self { state: [0.0; 4], needs_reset: true, rng: None }
    }

    /// Sets the state directly, for tests and bindings.
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = state;
        self.needs_reset = false;
    }

    /// True when the free end is above the target height.
    #[inline]
    fn terminal(&self) -> bool {
        let [theta1, theta2, ..] = self.state;
        -theta1.cos() - (theta2 + theta1).cos() > 1.0
    }

    /// `[cos θ1, sin θ1, cos θ2, sin θ2, dθ1, dθ2]` of a float64 state.
    #[inline]
    fn obs(&self) -> [f32; 6] {
        let [t1, t2, d1, d2] = self.state;
        [t1.cos(), t1.sin(), t2.cos(), t2.sin(), d1, d2].map(|v| v as f32)
    }
}

/// Time derivative of `[theta1, theta2, dtheta1, dtheta2]` under torque `a` (book dynamics).
#[inline]
fn dsdt(s: [f64; 4], a: f64) -> [f64; 4] {
    let (m1, m2, l1, lc1, lc2, i1, i2) =
        (LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, LINK_MOI);
    let [theta1, theta2, dtheta1, dtheta2] = s;
    let d1 = m1 * (lc1 * lc1) + m2 * ((l1 * l1) + (lc2 * lc2) + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
    let d2 = m2 * ((lc2 * lc2) + l1 * lc2 * theta2.cos()) + i2;
    let phi2 = m2 * lc2 * G * (theta1 + theta2 - PI / 2.0).cos();
    let phi1 = -m2 * l1 * lc2 * pow2(dtheta2) * theta2.sin() - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
        + (m1 * lc1 + m2 * l1) * G * (theta1 - PI / 2.0).cos()
        + phi2;
    let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * pow2(dtheta1) * theta2.sin() - phi2)
        / (m2 * (lc2 * lc2) + i2 - pow2(d2) / d1);
    let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    [dtheta1, dtheta2, ddtheta1, ddtheta2]
}

/// `y + h * k`, element-wise.
#[inline]
fn axpy(y: [f64; 4], h: f64, k: [f64; 4]) -> [f64; 4] {
    std::array::from_fn(|i| y[i] + h * k[i])
}

/// One classical Runge-Kutta step of length [`DT`] (gymnasium's `rk4` over `t = [0, dt]`).
#[inline]
fn rk4(y0: [f64; 4], torque: f64) -> [f64; 4] {
    let dt = DT - 0.0;
    let dt2 = dt / 2.0;
    let k1 = dsdt(y0, torque);
    let k2 = dsdt(axpy(y0, dt2, k1), torque);
    let k3 = dsdt(axpy(y0, dt2, k2), torque);
    let k4 = dsdt(axpy(y0, dt, k3), torque);
    std::array::from_fn(|i| y0[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
}

/// Wraps `x` into `[m, M]` by whole turns, as gymnasium's `wrap`.
#[inline]
fn wrap(mut x: f64, m: f64, big_m: f64) -> f64 {
    let diff = big_m - m;
    // Far outside (only a state set or restored by hand gets there: a step moves an angle by less
    // than one turn), jump by whole turns first: subtracting one turn from 1e308 changes nothing,
    // and the loops below would never end. An infinite angle stays as it is.
    if x.is_infinite() {
        return x;
    }
    if x > big_m + 4.0 * diff || x < m - 4.0 * diff {
        x = m + (x - m).rem_euclid(diff);
    }
    while x > big_m {
        x -= diff;
    }
    while x < m {
        x += diff;
    }
    x
}

/// Python's `min(max(x, m), M)`.
#[inline]
fn bound(x: f64, m: f64, big_m: f64) -> f64 {
    let x = if m > x { m } else { x };
    if big_m < x {
        big_m
    } else {
        x
    }
}

impl Env for Acrobot {
    type Obs = [f32; 6];
    type Act = usize;

    fn observation_space(&self) -> Space {
        let high = [1.0, 1.0, 1.0, 1.0, MAX_VEL_1 as f32, MAX_VEL_2 as f32];
        BoxSpace::new(high.map(|v: f32| -v).to_vec(), high.to_vec()).into()
    }

    fn action_space(&self) -> Space {
        Discrete::new(3).into()
    }

    /// The frame gymnasium's `rgb_array` mode draws (see [`crate::render`]).
    fn render(&self) -> Result<glimpse::image::Image, EnvError> {
        Ok(crate::render::acrobot(&self.state, LINK_LENGTH_1, LINK_LENGTH_2))
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("Acrobot", self)
    }

    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        *self = from_env_state("Acrobot", state)?;
        Ok(())
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 6], Info), EnvError> {
        // gymnasium draws float64 values and keeps them as float32; the first observation's
        // cosines and sines are therefore numpy float32 functions.
        let s = reseed(&mut self.rng, seed).uniform_array([-0.1; 4], [0.1; 4]).map(|v| v as f32);
        self.state = s.map(f64::from);
        self.needs_reset = false;
        let obs = [
            numpy_scalar::cos(s[0]),
            numpy_scalar::sin(s[0]),
            numpy_scalar::cos(s[1]),
            numpy_scalar::sin(s[1]),
            s[2],
            s[3],
        ];
        Ok((obs, Info::default()))
    }

    #[inline]
    fn step(&mut self, action: &usize) -> Result<Step<[f32; 6]>, EnvError> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("Acrobot: call reset before step".into()));
        }
        let Some(&torque) = AVAIL_TORQUE.get(*action) else {
            return Err(EnvError::InvalidAction(format!("Acrobot: action {action} is not in Discrete(3)")));
        };
        let ns = rk4(self.state, torque);
        self.state = [
            wrap(ns[0], -PI, PI),
            wrap(ns[1], -PI, PI),
            bound(ns[2], -MAX_VEL_1, MAX_VEL_1),
            bound(ns[3], -MAX_VEL_2, MAX_VEL_2),
        ];
        let terminated = self.terminal();
        let reward = if terminated { 0.0 } else { -1.0 };
        Ok(Step { obs: self.obs(), reward, terminated, truncated: false, info: Info::default() })
    }
}

/// Acrobot-v1 as `gymnasium.make("Acrobot-v1")` builds it: truncated after 500 steps.
pub fn acrobot_v1() -> TimeLimit<Acrobot> {
    TimeLimit::new(Acrobot::new(), 500)
}
