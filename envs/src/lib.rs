//! Classic-control environments that match gymnasium 1.x exactly: the same float64 dynamics in
//! the same operation order, rewards, termination, truncation limits and float32 observations,
//! and the same seeded resets (numpy's `SeedSequence` + `PCG64` + `uniform`, see [`np_random`]).
//!
//! Each environment comes raw (for example [`CartPole`]) and registered the way
//! `gymnasium.make` builds it, with its time limit (for example [`cartpole_v1`]).
//!
//! ```
//! use glimpse::Env;
//! let mut env = glimpse_envs::cartpole_v1();
//! let (obs, _) = env.reset(Some(42)).unwrap();
//! // gymnasium.make("CartPole-v1").reset(seed=42)[0]
//! assert_eq!(obs, [0.027395604, -0.006112156, 0.035859793, 0.019736802]);
//! ```

pub mod acrobot;
pub mod cartpole;
pub mod mountain_car;
pub mod mountain_car_continuous;
pub mod np_random;
mod numpy_scalar;

pub mod pendulum;
pub mod render;
pub mod toy;

pub use acrobot::{acrobot_v1, Acrobot};
pub use cartpole::{cartpole_v1, CartPole};
pub use mountain_car::{mountain_car_v0, MountainCar};
pub use mountain_car_continuous::{mountain_car_continuous_v0, MountainCarContinuous};
pub use pendulum::{pendulum_v1, Pendulum};

#[cfg(feature = "python")]
pub mod gym;
