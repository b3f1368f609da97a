//! Non-finite values stop a run: a NaN or infinity in observations, rewards, losses or parameters
//! is an error naming where it appeared and at which step, instead of a run that goes on training
//! on garbage.

/// A NaN or infinite value where only finite ones are allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} holds {value} at step {step} (value {index} of {len}); training stopped")]
pub struct NonFinite {
    /// What held it (e.g. "observation of env 3", "reward").
    pub what: String,
    /// The step at which it was seen (env steps, gradient steps or epochs: the caller's unit).
    pub step: u64,
    /// Its position in the checked values.
    pub index: usize,
    /// How many values were checked.
    pub len: usize,
    /// The value (NaN or ±inf).
    pub value: f64,
}

/// Checks that every value is finite.
///
/// ```
/// let err = glimpse::finite::check_finite("reward", &[1.0, f32::NAN], 7).unwrap_err();
/// assert_eq!(err.to_string(), "reward holds NaN at step 7 (value 1 of 2); training stopped");
/// ```
pub fn check_finite(what: &str, values: &[f32], step: u64) -> Result<(), NonFinite> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => {
            Err(NonFinite { what: what.into(), step, index, len: values.len(), value: values[index] as f64 })
        }
    }
}

/// [`check_finite`] for `f64` values.
pub fn check_finite_f64(what: &str, values: &[f64], step: u64) -> Result<(), NonFinite> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(NonFinite { what: what.into(), step, index, len: values.len(), value: values[index] }),
    }
}
