//! MountainCar-v0 (Moore 1990), as gymnasium's `MountainCarEnv`.

use glimpse::env::{from_env_state, to_env_state};
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Discrete, Env, EnvError, EnvState, Info, Space, Step};

use crate::np_random::{reseed, NpRandom};

/// Leftmost position (the car stops there).
pub const MIN_POSITION: f64 = -1.2;
/// Rightmost position.
pub const MAX_POSITION: f64 = 0.6;
/// Bound on the speed.
pub const MAX_SPEED: f64 = 0.07;
/// Position of the flag.
pub const GOAL_POSITION: f64 = 0.5;
const FORCE: f64 = 0.001;
const GRAVITY: f64 = 0.0025;

/// A car in a valley that must rock back and forth to reach the flag; action 0 accelerates left,
/// 1 not at all, 2 right; reward -1 per step.
///
/// Serializes (all fields, RNG included) for [`Env::save_state`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountainCar {
    /// `[position, velocity]` in float64, like gymnasium's `env.unwrapped.state`.
    pub state: [f64; 2],
    needs_reset: bool,
    rng: Option<NpRandom>,
}

impl Default for MountainCar {
    fn default() -> Self {
        Self::new()
    }
}

impl MountainCar {
    /// A MountainCar that must be [`reset`](Env::reset) before the first step.
    pub fn new() -> Self {
        Self { state: [0.0; 2], needs_reset: true, rng: None }
    }

    /// Sets the state directly, for tests and bindings.
    pub fn set_state(&mut self, state: [f64; 2]) {
        self.state = state;
        self.needs_reset = false;
    }
}

impl Env for MountainCar {
    type Obs = [f32; 2];
    type Act = usize;

    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![MIN_POSITION as f32, -MAX_SPEED as f32], vec![MAX_POSITION as f32, MAX_SPEED as f32]).into()
    }

    fn action_space(&self) -> Space {
        Discrete::new(3).into()
    }

    /// The frame gymnasium's `rgb_array` mode draws (see [`crate::render`]).
    fn render(&self) -> Result<glimpse::image::Image, EnvError> {
        Ok(crate::render::mountain_car(self.state[0], MIN_POSITION, MAX_POSITION, GOAL_POSITION))
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("MountainCar", self)
    }

    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        *self = from_env_state("MountainCar", state)?;
        Ok(())
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 2], Info), EnvError> {
        self.state = [reseed(&mut self.rng, seed).uniform(-0.6, -0.4), 0.0];
        self.needs_reset = false;
        Ok((self.state.map(|v| v as f32), Info::default()))
    }

    #[inline]
    fn step(&mut self, action: &usize) -> Result<Step<[f32; 2]>, EnvError> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("MountainCar: call reset before step".into()));
        }
        if *action > 2 {
            return Err(EnvError::InvalidAction(format!("MountainCar: action {action} is not in Discrete(3)")));
        }
        let [mut position, mut velocity] = self.state;
        velocity += (*action as f64 - 1.0) * FORCE + (3.0 * position).cos() * (-GRAVITY);
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED);
        position += velocity;
        position = position.clamp(MIN_POSITION, MAX_POSITION);
        if position == MIN_POSITION && velocity < 0.0 {
            velocity = 0.0;
        }
        let terminated = position >= GOAL_POSITION && velocity >= 0.0;
        self.state = [position, velocity];
        Ok(Step {
            obs: self.state.map(|v| v as f32),
            reward: -1.0,
            terminated,
            truncated: false,
            info: Info::default(),
        })
    }
}

/// MountainCar-v0 as `gymnasium.make("MountainCar-v0")` builds it: truncated after 200 steps.
pub fn mountain_car_v0() -> TimeLimit<MountainCar> {
    TimeLimit::new(MountainCar::new(), 200)
}
