//! Validation before anything is allocated or trained: of settings (each error names the setting,
//! says what is allowed and what was given), and of an env's spaces against the network built for
//! it ([`SpaceMismatch`]). The memory and thread-count limits come from [`crate::limits`].
//!
//! ```
//! use glimpse::validate;
//! let check = |learning_rate: f32, gamma: f32| -> Result<(), String> {
//!     validate::positive("learning_rate", learning_rate)?;
//!     validate::unit_interval("gamma", gamma)
//! };
//! assert!(check(1e-3, 0.99).is_ok());
//! assert_eq!(check(1e-3, 1.5).unwrap_err(), "gamma must lie in [0, 1], got 1.5");
//! ```

use std::fmt::Display;

use crate::limits::{check_memory, check_threads};
use crate::spaces::{BoxSpace, Space};

/// `Err(message())` unless `ok`: for a rule the helpers below do not cover.
pub fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

/// `value >= min`.
pub fn at_least<T: PartialOrd + Display>(name: &str, value: T, min: T) -> Result<(), String> {
    ensure(value >= min, || format!("{name} must be at least {min}, got {value}"))
}

/// `value <= max`.
pub fn at_most<T: PartialOrd + Display>(name: &str, value: T, max: T) -> Result<(), String> {
    ensure(value <= max, || format!("{name} must be at most {max}, got {value}"))
}

/// `min <= value <= max`.
pub fn between<T: PartialOrd + Display>(name: &str, value: T, min: T, max: T) -> Result<(), String> {
    ensure(min <= value && value <= max, || format!("{name} must be between {min} and {max}, got {value}"))
}

/// Finite and `> 0`.
pub fn positive<T: Into<f64> + Display + Copy>(name: &str, value: T) -> Result<(), String> {
    let v: f64 = value.into();
    ensure(v.is_finite() && v > 0.0, || format!("{name} must be a finite number > 0, got {value}"))
}

/// Finite and `>= 0`.
pub fn non_negative<T: Into<f64> + Display + Copy>(name: &str, value: T) -> Result<(), String> {
    let v: f64 = value.into();
    ensure(v.is_finite() && v >= 0.0, || format!("{name} must be a finite number >= 0, got {value}"))
}

/// In `[0, 1]` (NaN is not).
pub fn unit_interval<T: Into<f64> + Display + Copy>(name: &str, value: T) -> Result<(), String> {
    ensure((0.0..=1.0).contains(&value.into()), || format!("{name} must lie in [0, 1], got {value}"))
}

/// `dir`, when given, is an existing directory.
pub fn existing_dir(name: &str, dir: Option<&std::path::Path>) -> Result<(), String> {
    match dir {
        Some(d) => ensure(d.is_dir(), || format!("{name} {} is not a directory", d.display())),
        None => Ok(()),
    }
}

/// The settings every epoch-based trainer has: `epochs` and `batch_size` at least 1, a batch of
/// `bytes_per_image` per image that fits in memory, a finite `learning_rate > 0`, `train_images`
/// in `1..=available`, and `data_dir` an existing directory when given.
pub fn epoch_trainer(
    epochs: u64,
    batch_size: usize,
    bytes_per_image: u128,
    learning_rate: f64,
    train_images: usize,
    available: usize,
    data_dir: Option<&std::path::Path>,
) -> Result<(), String> {
    at_least("epochs", epochs, 1)?;
    at_least("batch_size", batch_size, 1)?;
    check_memory("batch_size", batch_size as u128, bytes_per_image)?;
    positive("learning_rate", learning_rate)?;
    between("train_images", train_images, 1, available)?;
    existing_dir("data_dir", data_dir)
}

/// Bytes of on-policy rollout storage ([`crate::rollout::RolloutBuffer`]) per transition with
/// `obs_dim` observation and `act_dim` action values: those, and log-prob, value, reward,
/// bootstrap value, advantage and return (`f32` each) and the two episode-end flags.
pub fn rollout_transition_bytes(obs_dim: usize, act_dim: usize) -> u128 {
    4 * (obs_dim as u128 + act_dim as u128) + 4 * 6 + 2
}

/// Checks that `transitions` of rollout storage with `obs_dim` observation and `act_dim` action
/// values fit in the memory available.
pub fn rollout_memory(transitions: usize, obs_dim: usize, act_dim: usize) -> Result<(), String> {
    let item = rollout_transition_bytes(obs_dim, act_dim);
    check_memory("the rollout storage (num_envs × num_steps transitions)", transitions as u128, item)
}

/// The shape of an on-policy rollout: `num_envs` envs stepped on `workers` threads for
/// `num_steps` steps each, whose storage fits in memory (for observations and actions of one
/// value at the least), and a budget of at least one rollout.
pub fn rollout(num_envs: usize, workers: usize, num_steps: usize, total_timesteps: u64) -> Result<(), String> {
    at_least("num_envs", num_envs, 1)?;
    at_least("num_steps", num_steps, 1)?;
    check_threads("workers", workers)?;
    rollout_memory(num_envs.saturating_mul(num_steps), 1, 1)?;
    let batch = num_envs as u128 * num_steps as u128;
    ensure(total_timesteps as u128 >= batch, || {
        format!("total_timesteps must be at least one rollout (num_envs × num_steps = {batch}), got {total_timesteps}")
    })
}

/// Checks that `eval_episodes` episodes side by side (one env of `env_bytes` bytes, one
/// observation row of `obs_dim` values and the episode's statistics each) fit in memory.
pub fn evaluation_memory(eval_episodes: usize, env_bytes: usize, obs_dim: usize) -> Result<(), String> {
    let item = env_bytes as u128 + 4 * obs_dim as u128 + 64;
    check_memory("eval_episodes (episodes evaluated side by side)", eval_episodes as u128, item)
}

/// The greedy evaluation's settings: its episodes fit in memory (for the smallest env), and the
/// threshold at which a run counts as solved, if any, is finite.
pub fn evaluation(eval_episodes: usize, solve_threshold: Option<f64>) -> Result<(), String> {
    evaluation_memory(eval_episodes, 0, 0)?;
    match solve_threshold {
        Some(t) if !t.is_finite() => Err(format!("solve_threshold must be finite, got {t}")),
        _ => Ok(()),
    }
}

/// An env whose observation or action space does not fit the network built for it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpaceMismatch {
    /// The env's observations do not have the values the network reads.
    #[error("the network reads {expected} observation values, but the env's observation space is {found}")]
    Observation {
        /// The network's input size.
        expected: usize,
        /// The env's space, as [`describe`] writes it.
        found: String,
    },
    /// The env's actions are not the `Discrete(expected)` the network picks from.
    #[error(
        "the network picks one of {expected} actions (Discrete({expected})), but the env's action space is {found}"
    )]
    DiscreteActions {
        /// The network's action count.
        expected: usize,
        /// The env's space.
        found: String,
    },
    /// The env's actions are not a box of the values the network outputs.
    #[error("the network outputs a box of {expected} action values, but the env's action space is {found}")]
    BoxActions {
        /// The network's action size.
        expected: usize,
        /// The env's space.
        found: String,
    },
}

/// A space as one would write it: `Discrete(3)`, `Discrete(3, start=1)`, `Box(shape [4], 4 values)`.
pub fn describe(space: &Space) -> String {
    match space {
        Space::Discrete(d) if d.start == 0 => format!("Discrete({})", d.n),
        Space::Discrete(d) => format!("Discrete({}, start={})", d.n, d.start),
        Space::Box(b) => format!("Box(shape {:?}, {} values)", b.shape, b.dim()),
    }
}

/// Checks that observations from `space` have the `O` values a network reads.
pub fn observation_space<const O: usize>(space: &Space) -> Result<(), SpaceMismatch> {
    match space.flat_dim() {
        n if n == O => Ok(()),
        _ => Err(SpaceMismatch::Observation { expected: O, found: describe(space) }),
    }
}

/// Checks that `space` is `Discrete(A)` starting at 0: the actions a network with `A` outputs picks.
pub fn discrete_actions<const A: usize>(space: &Space) -> Result<(), SpaceMismatch> {
    match space {
        Space::Discrete(d) if d.n == A && d.start == 0 => Ok(()),
        _ => Err(SpaceMismatch::DiscreteActions { expected: A, found: describe(space) }),
    }
}

/// Checks the spaces of an env for a network that reads `O` observation values and picks one of
/// `A` actions: [`observation_space`] and [`discrete_actions`].
pub fn discrete_spaces<const O: usize, const A: usize>(
    observation: &Space,
    action: &Space,
) -> Result<(), SpaceMismatch> {
    observation_space::<O>(observation)?;
    discrete_actions::<A>(action)
}

/// The box of `A` action values `space` is, or why it is not.
pub fn box_actions<const A: usize>(space: &Space) -> Result<&BoxSpace, SpaceMismatch> {
    match space {
        Space::Box(b) if b.dim() == A => Ok(b),
        _ => Err(SpaceMismatch::BoxActions { expected: A, found: describe(space) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spaces::Discrete;

    #[test]
    fn each_check_names_the_setting_and_what_was_given() {
        assert_eq!(at_least("num_envs", 0usize, 1), Err("num_envs must be at least 1, got 0".into()));
        assert!(at_least("num_envs", 1usize, 1).is_ok());
        assert_eq!(at_most("n", 5u64, 4), Err("n must be at most 4, got 5".into()));
        assert_eq!(between("n_step", 9usize, 1, 8), Err("n_step must be between 1 and 8, got 9".into()));
        assert!(between("n_step", 8usize, 1, 8).is_ok());
        // An f32 setting shows as written, not widened to f64.
        assert_eq!(unit_interval("gamma", 1.1f32), Err("gamma must lie in [0, 1], got 1.1".into()));
        assert!(unit_interval("gamma", f64::NAN).is_err() && unit_interval("gamma", 0.0f32).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(positive("learning_rate", bad)
                .unwrap_err()
                .starts_with("learning_rate must be a finite number > 0"));
        }
        assert!(non_negative("ent_coef", 0.0f32).is_ok() && non_negative("ent_coef", f32::NAN).is_err());
        assert_eq!(ensure(false, || "custom".into()), Err("custom".to_string()));
    }

    #[test]
    fn rollouts_and_evaluations_beyond_memory_or_budget_are_refused() {
        assert!(rollout(8, 1, 128, 1024).is_ok());
        let err = rollout(8, 1, 128, 1023).unwrap_err();
        assert!(err.starts_with("total_timesteps must be at least one rollout") && err.contains("1024"), "{err}");
        assert!(rollout(0, 1, 128, 1024).unwrap_err().starts_with("num_envs"));
        assert!(rollout(8, 0, 128, 1024).unwrap_err().starts_with("workers"));
        let err = rollout(1 << 31, 1, 1 << 31, u64::MAX).unwrap_err();
        assert!(err.contains("rollout storage") && err.contains("memory available"), "{err}");
        assert_eq!(rollout_transition_bytes(1, 1), 34);
        assert!(evaluation(100, Some(475.0)).is_ok() && evaluation(0, None).is_ok());
        assert!(evaluation(100, Some(f64::NAN)).unwrap_err().starts_with("solve_threshold must be finite"));
        assert!(evaluation(usize::MAX, None).unwrap_err().starts_with("eval_episodes"));
    }

    #[test]
    fn spaces_are_checked_against_the_network_and_named() {
        let obs: Space = BoxSpace::new(vec![0.0; 4], vec![1.0; 4]).into();
        assert!(observation_space::<4>(&obs).is_ok());
        let err = observation_space::<3>(&obs).unwrap_err().to_string();
        assert!(err.contains("reads 3 observation values") && err.contains("Box(shape [4], 4 values)"), "{err}");
        assert!(discrete_actions::<2>(&Discrete::new(2).into()).is_ok());
        let err = discrete_actions::<2>(&Discrete::new(3).into()).unwrap_err();
        assert_eq!(err, SpaceMismatch::DiscreteActions { expected: 2, found: "Discrete(3)".into() });
        assert!(err.to_string().contains("one of 2 actions") && err.to_string().contains("Discrete(3)"), "{err}");
        let shifted = Discrete { n: 2, start: 1 };
        assert!(discrete_actions::<2>(&shifted.into()).unwrap_err().to_string().contains("start=1"));
        assert!(discrete_actions::<4>(&obs).unwrap_err().to_string().contains("Box(shape [4]"));
        assert!(discrete_spaces::<4, 2>(&obs, &Discrete::new(2).into()).is_ok());
        let err = discrete_spaces::<5, 2>(&obs, &Discrete::new(3).into()).unwrap_err();
        assert!(matches!(err, SpaceMismatch::Observation { expected: 5, .. }), "{err}");
        assert_eq!(box_actions::<4>(&obs).unwrap().dim(), 4);
        let err = box_actions::<2>(&Discrete::new(2).into()).unwrap_err().to_string();
        assert!(err.contains("box of 2 action values") && err.contains("Discrete(2)"), "{err}");
    }
}
