//! CartPole-v1 (Barto, Sutton & Anderson), as gymnasium's `CartPoleEnv`.

use glimpse::env::{from_env_state, to_env_state};
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Discrete, Env, EnvError, EnvState, Info, Space, Step};

use crate::np_random::{reseed, NpRandom};

const GRAVITY: f64 = 9.8;
const MASSCART: f64 = 1.0;
const MASSPOLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASSPOLE + MASSCART;
const LENGTH: f64 = 0.5;
const POLEMASS_LENGTH: f64 = MASSPOLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
const TAU: f64 = 0.02;
/// Pole angle beyond which the episode terminates: 12 degrees.
pub const THETA_THRESHOLD: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
/// Cart position beyond which the episode terminates.
pub const X_THRESHOLD: f64 = 2.4;

/// A pole balanced on a cart; action 0 pushes left, 1 pushes right; reward 1 per step.
///
/// Serializes (all fields, RNG included) for [`Env::save_state`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartPole {
    /// `[x, x_dot, theta, theta_dot]` in float64, like gymnasium's `env.unwrapped.state`.
    pub state: [f64; 4],
    steps_beyond_terminated: Option<usize>,
    needs_reset: bool,
    rng: Option<NpRandom>,
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPole {
    /// A CartPole that must be [`reset`](Env::reset) before the first step.
    pub fn new() -> Self {
        Self { state: [0.0; 4], steps_beyond_terminated: None, needs_reset: true, rng: None }
    }

    /// Sets the state directly (and clears the terminated flag), for tests and bindings.
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.state = state;
        self.steps_beyond_terminated = None;
        self.needs_reset = false;
    }

    #[inline]
    fn obs(&self) -> [f32; 4] {
        self.state.map(|v| v as f32)
    }
}

impl Env for CartPole {
    type Obs = [f32; 4];
    type Act = usize;

    fn observation_space(&self) -> Space {
        let high = [X_THRESHOLD * 2.0, f64::INFINITY, THETA_THRESHOLD * 2.0, f64::INFINITY].map(|v| v as f32);
        BoxSpace::new(high.map(|v| -v).to_vec(), high.to_vec()).into()
    }

    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }

    /// The frame gymnasium's `rgb_array` mode draws (see [`crate::render`]).
    fn render(&self) -> Result<glimpse::image::Image, EnvError> {
        Ok(crate::render::cartpole(&self.state, X_THRESHOLD, LENGTH))
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("CartPole", self)
    }

    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        *self = from_env_state("CartPole", state)?;
        Ok(())
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 4], Info), EnvError> {
        self.state = reseed(&mut self.rng, seed).uniform_array([-0.05; 4], [0.05; 4]);
        self.steps_beyond_terminated = None;
        self.needs_reset = false;
        Ok((self.obs(), Info::default()))
    }

    #[inline]
    fn step(&mut self, action: &usize) -> Result<Step<[f32; 4]>, EnvError> {
        if self.needs_reset {
            return Err(EnvError::NeedsReset("CartPole: call reset before step".into()));
        }
        if *action > 1 {
            return Err(EnvError::InvalidAction(format!("CartPole: action {action} is not in Discrete(2)")));
        }
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if *action == 1 { FORCE_MAG } else { -FORCE_MAG };
        let costheta = theta.cos();
        let sintheta = theta.sin();
        let temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS));
        let xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
        self.state = [x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc];

        let [x, _, theta, _] = self.state;
        let terminated =
            !(-X_THRESHOLD..=X_THRESHOLD).contains(&x) || !(-THETA_THRESHOLD..=THETA_THRESHOLD).contains(&theta);
        let reward = if !terminated {
            1.0
        } else if let Some(n) = self.steps_beyond_terminated.as_mut() {
            *n += 1;
            0.0
        } else {
            self.steps_beyond_terminated = Some(0);
            1.0
        };
        Ok(Step { obs: self.obs(), reward, terminated, truncated: false, info: Info::default() })
    }
}

/// CartPole-v1 as `gymnasium.make("CartPole-v1")` builds it: truncated after 500 steps.
pub fn cartpole_v1() -> TimeLimit<CartPole> {
    TimeLimit::new(CartPole::new(), 500)
}
