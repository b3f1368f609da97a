//! Validation of settings, before anything is allocated: each check names the setting and says
//! what is allowed.

use glimpse::limits::{check_memory, check_threads};

/// `value >= min`.
pub(crate) fn at_least(name: &str, value: u64, min: u64) -> Result<(), String> {
    if value < min {
        return Err(format!("{name} must be at least {min}, got {value}"));
    }
    Ok(())
}

/// Finite and `> 0`.
pub(crate) fn positive(name: &str, value: f64) -> Result<(), String> {
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("{name} must be a finite number > 0, got {value}"));
    }
    Ok(())
}

/// Finite and `>= 0`.
pub(crate) fn non_negative(name: &str, value: f64) -> Result<(), String> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{name} must be a finite number >= 0, got {value}"));
    }
    Ok(())
}

/// In `[0, 1]`.
pub(crate) fn unit_interval(name: &str, value: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{name} must lie in [0, 1], got {value}"));
    }
    Ok(())
}

/// Bytes the rollout storage needs per transition at the least (one observation value, one action
/// value, and log-prob, value, reward, flags, bootstrap value, advantage and return).
const MIN_TRANSITION_BYTES: u128 = 4 * 2 + 4 * 6 + 2;

/// The rollout's shape: envs, worker threads, steps per env, and a budget of at least one rollout
/// whose storage fits in memory.
pub(crate) fn rollout(num_envs: usize, workers: usize, num_steps: usize, total_timesteps: u64) -> Result<(), String> {
    at_least("num_envs", num_envs as u64, 1)?;
    at_least("num_steps", num_steps as u64, 1)?;
    check_threads("workers", workers)?;
    let batch = num_envs as u128 * num_steps as u128;
    check_memory("the rollout storage (num_envs × num_steps transitions)", batch, MIN_TRANSITION_BYTES)?;
    if (total_timesteps as u128) < batch {
        return Err(format!(
            "total_timesteps must be at least one rollout (num_envs × num_steps = {batch}), got {total_timesteps}"
        ));
    }
    Ok(())
}

/// The greedy evaluation: at least one episode, each env copy fits in memory, a finite threshold.
pub(crate) fn evaluation(eval_episodes: usize, solve_threshold: Option<f64>) -> Result<(), String> {
    at_least("eval_episodes", eval_episodes as u64, 1)?;
    // Episodes run side by side: one env, one observation row and the episode's statistics each.
    check_memory("eval_episodes (episodes evaluated side by side)", eval_episodes as u128, 64)?;
    if let Some(t) = solve_threshold {
        if !t.is_finite() {
            return Err(format!("solve_threshold must be finite, got {t}"));
        }
    }
    Ok(())
}
