//! Classic-control environments that match gymnasium 1.x exactly: the same float64 dynamics in
//! the same operation order, rewards, termination, truncation limits and float32 observations.
//!
//! Each environment comes raw (for example [`CartPole`]) and registered the way
//! `gymnasium.make` builds it, with its time limit (for example [`cartpole_v1`]).

pub mod cartpole;

pub use cartpole::{cartpole_v1, CartPole};
#[cfg(feature = "python")]
pub mod gym;
