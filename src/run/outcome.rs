//! What a launch of an RL trainer ends with, the same for every agent: [`Outcome`] (finished,
//! stopped or evaluated), [`RlSummary`] (its `summary.json`), [`EvalReport`] (what `--eval`
//! prints) and [`EvalStats`] (one greedy evaluation in numbers).

use serde::{Deserialize, Serialize};

use super::{Checkpoint, Run, RunConfig, RunError};
use crate::evaluate::EvalResult;

/// How one launch of a trainer ended: `S` is its summary, `R` what `--eval` reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S, R = EvalReport> {
    /// The run ended (solved, or its budget spent): its summary.
    Finished(S),
    /// `--stop-after` was reached: a checkpoint is written and `--resume` continues the run.
    Stopped {
        /// Training done (env steps or epochs).
        done: u64,
    },
    /// `--eval DIR`: the checkpoint's evaluation.
    Evaluated(R),
}

impl<S, R> Outcome<S, R> {
    /// The summary of a finished run.
    pub fn summary(&self) -> Option<&S> {
        match self {
            Outcome::Finished(s) => Some(s),
            _ => None,
        }
    }
}

/// A greedy evaluation's returns in numbers (what a run keeps of its last evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalStats {
    /// Mean return.
    pub mean_return: f64,
    /// Standard deviation of the returns.
    pub std_return: f64,
    /// Episodes evaluated.
    pub episodes: usize,
}

impl From<&EvalResult> for EvalStats {
    fn from(result: &EvalResult) -> Self {
        Self { mean_return: result.mean(), std_return: result.std(), episodes: result.returns.len() }
    }
}

/// What `--eval DIR` prints (one line, with the checkpoint) and returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalReport {
    /// Environment steps the checkpoint was trained for.
    pub env_steps: u64,
    /// The evaluation's seed (episode i is seeded with seed + i).
    pub seed: u64,
    /// Mean return.
    pub eval_mean_return: f64,
    /// Standard deviation of the returns.
    pub eval_std_return: f64,
    /// Episodes evaluated.
    pub eval_episodes: usize,
}

impl EvalReport {
    /// The report of `result`, an evaluation with `seed` of a checkpoint trained for `env_steps`.
    pub fn new(env_steps: u64, seed: u64, result: &EvalResult) -> Self {
        let stats = EvalStats::from(result);
        Self {
            env_steps,
            seed,
            eval_mean_return: stats.mean_return,
            eval_std_return: stats.std_return,
            eval_episodes: stats.episodes,
        }
    }
}

/// The seed of a run's `k`-th greedy evaluation: fresh episodes every time, the same ones for
/// the same run seed.
pub fn eval_seed(seed: u64, k: u64) -> u64 {
    seed.wrapping_mul(7_919).wrapping_add(k.wrapping_mul(1_000_000))
}

/// An RL trainer's keys in `summary.json`, after the run layer's `seed`, `wall_seconds` and
/// `env_steps`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlMetrics {
    /// Learning updates done: gradient steps (DQN), or rollouts learned from (PPO, A2C, REINFORCE).
    pub updates: u64,
    /// Whether a greedy evaluation reached `solve_threshold`.
    pub solved: bool,
    /// The env step at which one did.
    pub solved_at_step: Option<u64>,
    /// The threshold (none: the run trained its whole budget).
    pub solve_threshold: Option<f64>,
    /// Mean return of the last greedy evaluation (none without one).
    pub eval_mean_return: Option<f64>,
    /// Standard deviation of its returns.
    pub eval_std_return: Option<f64>,
    /// Its number of episodes.
    pub eval_episodes: Option<usize>,
}

impl RlMetrics {
    /// The metrics of a run that did `updates`, was solved at `solved_at_step` (if it was) of
    /// `solve_threshold`, and whose last greedy evaluation is `last_eval`.
    pub fn new(
        updates: u64,
        solved_at_step: Option<u64>,
        solve_threshold: Option<f64>,
        last_eval: Option<&EvalStats>,
    ) -> Self {
        Self {
            updates,
            solved: solved_at_step.is_some(),
            solved_at_step,
            solve_threshold,
            eval_mean_return: last_eval.map(|e| e.mean_return),
            eval_std_return: last_eval.map(|e| e.std_return),
            eval_episodes: last_eval.map(|e| e.episodes),
        }
    }
}

/// A finished RL run's `summary.json`: the run layer's keys, then [`RlMetrics`]'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlSummary {
    /// The run's seed.
    pub seed: u64,
    /// Seconds spent training, over every process of the run.
    pub wall_seconds: f64,
    /// Environment steps taken (all envs).
    pub env_steps: u64,
    /// Learning updates done: gradient steps (DQN), or rollouts learned from (PPO, A2C, REINFORCE).
    pub updates: u64,
    /// Whether a greedy evaluation reached `solve_threshold`.
    pub solved: bool,
    /// The env step at which one did.
    pub solved_at_step: Option<u64>,
    /// The threshold (none: the run trained its whole budget).
    pub solve_threshold: Option<f64>,
    /// Mean return of the last greedy evaluation (none without one).
    pub eval_mean_return: Option<f64>,
    /// Standard deviation of its returns.
    pub eval_std_return: Option<f64>,
    /// Its number of episodes.
    pub eval_episodes: Option<usize>,
}

impl RlSummary {
    /// Ends `run` at `done` env steps ([`Run::finish`]: the final checkpoint of `state`, then
    /// `summary.json` with `metrics`) and returns the summary written.
    pub fn finish<C: RunConfig>(
        run: Run<C>,
        done: u64,
        state: &impl Checkpoint,
        metrics: &RlMetrics,
    ) -> Result<Self, RunError> {
        let summary = run.finish(done, state, metrics)?;
        serde_json::from_value(summary)
            .map_err(|e| RunError::Config { path: "summary.json".into(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_reports_of_an_evaluation() {
        let result = EvalResult { returns: vec![1.0, 3.0], lengths: vec![5, 7] };
        let stats = EvalStats::from(&result);
        assert_eq!((stats.mean_return, stats.std_return, stats.episodes), (2.0, 1.0, 2));
        let report = EvalReport::new(400, 9, &result);
        assert_eq!((report.env_steps, report.seed, report.eval_mean_return, report.eval_episodes), (400, 9, 2.0, 2));
        let metrics = RlMetrics::new(12, Some(400), Some(1.5), Some(&stats));
        assert!(metrics.solved && metrics.eval_std_return == Some(1.0));
        assert!(!RlMetrics::new(12, None, None, None).solved);
        assert_eq!((eval_seed(1, 0), eval_seed(1, 2)), (7_919, 2_007_919));
        let outcome: Outcome<u8> = Outcome::Finished(3);
        assert_eq!((outcome.summary(), Outcome::<u8>::Stopped { done: 4 }.summary()), (Some(&3), None));
    }
}
