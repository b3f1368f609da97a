//! Greedy evaluation, batched: one function every agent evaluates with.
//!
//! `episodes` copies of the env run side by side; each step the policy sees the observations of
//! the episodes still running as one batch (one forward pass), so evaluating 100 episodes costs
//! about as many forward passes as the longest episode has steps. Episode `i` is reset with
//! `seed + i`, so the result depends on the seed and the policy only, not on the batching.

use crate::finite::{check_finite, NonFinite};
use crate::{Env, EnvError, Observation};

/// The returns and lengths of evaluated episodes, in episode order.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// Undiscounted return of each episode.
    pub returns: Vec<f64>,
    /// Steps of each episode.
    pub lengths: Vec<usize>,
}

impl EvalResult {
    /// Mean return (NaN for no episodes).
    pub fn mean(&self) -> f64 {
        self.returns.iter().sum::<f64>() / self.returns.len() as f64
    }

    /// Population standard deviation of the returns.
    pub fn std(&self) -> f64 {
        let mean = self.mean();
        (self.returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / self.returns.len() as f64).sqrt()
    }
}

/// Runs `episodes` episodes of envs from `make_env` to their end, acting with `act`, which gets a
/// batch of observations (`rows × Obs::DIM` values, row-major) and returns one action per row.
///
/// ```
/// # use glimpse::evaluate::evaluate_greedy;
/// # use glimpse::{Env, EnvError, Info, Space, Step, Discrete};
/// struct Count(u32);
/// impl Env for Count {
///     type Obs = [f32; 1];
///     type Act = usize;
///     fn observation_space(&self) -> Space { glimpse::BoxSpace::new(vec![0.0], vec![10.0]).into() }
///     fn action_space(&self) -> Space { Discrete::new(2).into() }
///     fn reset(&mut self, _: Option<u64>) -> Result<([f32; 1], Info), EnvError> { self.0 = 0; Ok(([0.0], Info::default())) }
///     fn step(&mut self, a: &usize) -> Result<Step<[f32; 1]>, EnvError> {
///         self.0 += 1;
///         Ok(Step { obs: [self.0 as f32], reward: *a as f64, terminated: self.0 == 3, truncated: false, info: Info::default() })
///     }
/// }
/// let result = evaluate_greedy(&|| Count(0), 4, 0, |obs| Ok(vec![1; obs.len()])).unwrap();
/// assert_eq!(result.returns, vec![3.0; 4]);
/// ```
pub fn evaluate_greedy<E: Env>(
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
    mut act: impl FnMut(&[f32]) -> Result<Vec<E::Act>, EnvError>,
) -> Result<EvalResult, EnvError> {
    let dim = E::Obs::DIM;
    let mut envs: Vec<E> = (0..episodes).map(|_| make_env()).collect();
    let mut obs = vec![0.0f32; episodes * dim];
    for (i, env) in envs.iter_mut().enumerate() {
        env.reset(Some(seed.wrapping_add(i as u64)))?.0.write_to(&mut obs[i * dim..(i + 1) * dim]);
    }
    let mut returns = vec![0.0; episodes];
    let mut lengths = vec![0; episodes];
    let mut active: Vec<usize> = (0..episodes).collect();
    let mut rows = Vec::with_capacity(episodes * dim);
    while !active.is_empty() {
        rows.clear();
        for &i in &active {
            rows.extend_from_slice(&obs[i * dim..(i + 1) * dim]);
        }
        check_finite("evaluation observation", &rows, 0).map_err(non_finite)?;
        let actions = act(&rows)?;
        if actions.len() != active.len() {
            let message = format!("the policy gave {} actions for {} observations", actions.len(), active.len());
            return Err(EnvError::Other(message));
        }
        let mut still = Vec::with_capacity(active.len());
        for (&i, action) in active.iter().zip(&actions) {
            let step = envs[i].step(action)?;
            returns[i] += step.reward;
            lengths[i] += 1;
            if !step.done() {
                step.obs.write_to(&mut obs[i * dim..(i + 1) * dim]);
                still.push(i);
            }
        }
        active = still;
    }
    Ok(EvalResult { returns, lengths })
}

fn non_finite(e: NonFinite) -> EnvError {
    EnvError::Other(e.to_string())
}

/// Where a recording hands its frames ([`record_greedy`]): an error stops it.
pub type Frames<'a> = dyn FnMut(crate::image::Image) -> Result<(), EnvError> + 'a;

/// Plays `episodes` greedy episodes one after another, as [`evaluate_greedy`] plays them side by
/// side (episode i reset with `seed + i`, actions from `act`), handing every frame the env
/// renders (after the reset and after each step) to `frame`: a video of the episodes an
/// evaluation with the same seed scores, for a deterministic policy.
pub fn record_greedy<E: Env>(
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
    mut act: impl FnMut(&[f32]) -> Result<Vec<E::Act>, EnvError>,
    frame: &mut Frames,
) -> Result<EvalResult, EnvError> {
    let mut obs = vec![0.0f32; E::Obs::DIM];
    let (mut returns, mut lengths) = (Vec::with_capacity(episodes), Vec::with_capacity(episodes));
    for i in 0..episodes {
        let mut env = make_env();
        env.reset(Some(seed.wrapping_add(i as u64)))?.0.write_to(&mut obs);
        frame(env.render()?)?;
        let (mut ret, mut len) = (0.0, 0);
        loop {
            check_finite("evaluation observation", &obs, 0).map_err(non_finite)?;
            let action =
                act(&obs)?.into_iter().next().ok_or_else(|| EnvError::Other("the policy gave no action".into()))?;
            let step = env.step(&action)?;
            (ret, len) = (ret + step.reward, len + 1);
            frame(env.render()?)?;
            if step.done() {
                break;
            }
            step.obs.write_to(&mut obs);
        }
        returns.push(ret);
        lengths.push(len);
    }
    Ok(EvalResult { returns, lengths })
}
