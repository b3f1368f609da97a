//! MountainCarContinuous-v0, as gymnasium's `Continuous_MountainCarEnv`.
//!
//! gymnasium keeps this environment's state as a float32 array after each step, and mixes float32
//! and Python floats in its arithmetic. Under numpy 2 (NEP 50) a float32 combined with a Python
//! float stays float32, while a float32 combined with a float64 array element becomes float64.
//! [`Scalar`] follows those rules so that every step rounds exactly where gymnasium's does.

use glimpse::env::{from_env_state, to_env_state};
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Env, EnvError, EnvState, Info, Space, Step};

use crate::np_random::{reseed, NpRandom};
use crate::numpy_scalar::pow2;

/// Leftmost position (the car stops there).
pub const MIN_POSITION: f64 = -1.2;
/// Rightmost position.
pub const MAX_POSITION: f64 = 0.6;
/// Bound on the speed.
pub const MAX_SPEED: f64 = 0.07;
/// Position of the flag.
pub const GOAL_POSITION: f64 = 0.45;
const POWER: f64 = 0.0015;

/// A number as numpy types it inside gymnasium's `step`.
#[derive(Debug, Clone, Copy)]
enum Scalar {
    /// `np.float32`.
    F32(f32),
    /// `np.float64` (an element of a float64 array).
    F64(f64),
    /// A Python `float` or `int`: "weak", it takes the other operand's precision.
    Py(f64),
}

use Scalar::{Py, F32, F64};

impl Scalar {
    fn value(self) -> f64 {
        match self {
            F32(x) => x as f64,
            F64(x) | Py(x) => x,
        }
    }

    /// Applies `op` in the precision numpy picks for `self op other`.
    #[inline]
    fn binary(self, other: Scalar, op32: fn(f32, f32) -> f32, op64: fn(f64, f64) -> f64) -> Scalar {
        match (self, other) {
            (F32(a), F32(b)) => F32(op32(a, b)),
            (F32(a), Py(b)) => F32(op32(a, b as f32)),
            (Py(a), F32(b)) => F32(op32(a as f32, b)),
            (Py(a), Py(b)) => Py(op64(a, b)),
            (a, b) => F64(op64(a.value(), b.value())),
        }
    }

    fn add(self, other: Scalar) -> Scalar {
        self.binary(other, |a, b| a + b, |a, b| a + b)
    }

    fn sub(self, other: Scalar) -> Scalar {
        self.binary(other, |a, b| a - b, |a, b| a - b)
    }

    fn mul(self, other: Scalar) -> Scalar {
        self.binary(other, |a, b| a * b, |a, b| a * b)
    }

    /// Compares with a Python number, which numpy casts to float32 against a float32.
    fn cmp_py(self, other: f64) -> Option<std::cmp::Ordering> {
        match self {
            F32(a) => a.partial_cmp(&(other as f32)),
            F64(a) | Py(a) => a.partial_cmp(&other),
        }
    }

    fn gt(self, other: f64) -> bool {
        self.cmp_py(other) == Some(std::cmp::Ordering::Greater)
    }

    fn lt(self, other: f64) -> bool {
        self.cmp_py(other) == Some(std::cmp::Ordering::Less)
    }

    fn eq(self, other: f64) -> bool {
        self.cmp_py(other) == Some(std::cmp::Ordering::Equal)
    }

    fn ge(self, other: f64) -> bool {
        matches!(self.cmp_py(other), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
    }
}

/// MountainCar with a continuous force in [-1, 1]; reward +100 at the flag minus 0.1·action² per step.
///
/// Actions outside [-1, 1] are clipped for the dynamics but penalised unclipped, as in gymnasium;
/// non-finite actions are rejected.
///
/// Serializes (all fields, RNG included) for [`Env::save_state`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountainCarContinuous {
    /// `[position, velocity]`, like gymnasium's `env.unwrapped.state`.
    pub state: [f64; 2],
    /// Whether gymnasium would hold `state` as a float32 array (true after every step) rather
    /// than float64 (after a reset); the next step's rounding depends on it.
    pub state_is_f32: bool,
    needs_reset: bool,
    rng: Option<NpRandom>,
}

impl Default for MountainCarContinuous {
    fn default() -> Self {
        Self::new()
    }
}

impl MountainCarContinuous {
    /// A MountainCarContinuous that must be [`reset`](Env::reset) before the first step.
    pub fn new() -> Self {
        Self { state: [0.0; 2], state_is_f32: false, needs_reset: true, rng: None }
    }

    /// Sets the state as a float64 array, for tests and bindings.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = state;
        self.state_is_f32 = false;
        self.needs_reset = false;
    }

    /// Sets the state as a float32 array (the dtype gymnasium holds after a step).
    pub fn set_state_f32(&mut self, state: [f32; 2]) {
        self.state = state.map(f64::from);
        self.state_is_f32 = true;
        self.needs_reset = false;
    }
}

impl Env for MountainCarContinuous {
    type Obs = [f32; 2];
    type Act = [f32; 1];

    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![MIN_POSITION as f32, -MAX_SPEED as f32], vec![MAX_POSITION as f32, MAX_SPEED as f32]).into()
    }

    fn action_space(&self) -> Space {
        BoxSpace::new(vec![-1.0], vec![1.0]).into()
    }

    /// The frame gymnasium's `rgb_array` mode draws (see [`crate::render`]).
    fn render(&self) -> Result<glimpse::image::Image, EnvError> {
        Ok(crate::render::mountain_car(self.state[0], MIN_POSITION, MAX_POSITION, GOAL_POSITION))
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("MountainCarContinuous", self)
    }

    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        *self = from_env_state("MountainCarContinuous", state)?;
        Ok(())
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 2], Info), EnvError> {
        self.state = [reseed(&mut self.rng, seed).uniform(-0.6, -0.4), 0.0];
        self.state_is_f32 = false;
        self.needs_reset = false;
        Ok((self.state.map(|v| v as f32), Info::default()))
    }

    #[inline]
    fn step(&mut self, action: &[f32; 1]) -> Result<Step<[f32; 2]>, EnvError> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("MountainCarContinuous: call reset before step".into()));
        }
        let a = action[0];
        if !a.is_finite() {
            return Err(EnvError::InvalidAction(format!("MountainCarContinuous: action {a} is not finite")));
        }
        let [p, v] = self.state;
        let (mut position, mut velocity) =
            if self.state_is_f32 { (F32(p as f32), F32(v as f32)) } else { (F64(p), F64(v)) };
        // Python's min(max(a, -1.0), 1.0) keeps the float32 unless a bound wins.
        let force = if a < -1.0 {
            Py(-1.0)
        } else if a > 1.0 {
            Py(1.0)
        } else {
            F32(a)
        };
        let slope = Py(0.0025 * position.mul(Py(3.0)).value().cos());
        velocity = velocity.add(force.mul(Py(POWER)).sub(slope));
        if velocity.gt(MAX_SPEED) {
            velocity = Py(MAX_SPEED);
        }
        if velocity.lt(-MAX_SPEED) {
            velocity = Py(-MAX_SPEED);
        }
        position = position.add(velocity);
        if position.gt(MAX_POSITION) {
            position = Py(MAX_POSITION);
        }
        if position.lt(MIN_POSITION) {
            position = Py(MIN_POSITION);
        }
        if position.eq(MIN_POSITION) && velocity.lt(0.0) {
            velocity = Py(0.0);
        }
        let terminated = position.ge(GOAL_POSITION) && velocity.ge(0.0);
        let bonus = if terminated { 100.0 } else { 0.0 };
        let reward = bonus - pow2(a as f64) * 0.1;
        let obs = [position.value() as f32, velocity.value() as f32];
        self.state = obs.map(f64::from);
        self.state_is_f32 = true;
        Ok(Step { obs, reward, terminated, truncated: false, info: Info::default() })
    }
}

/// MountainCarContinuous-v0 as `gymnasium.make("MountainCarContinuous-v0")` builds it: truncated
/// after 999 steps.
pub fn mountain_car_continuous_v0() -> TimeLimit<MountainCarContinuous> {
    TimeLimit::new(MountainCarContinuous::new(), 999)
}
