//! Wrappers: [`TimeLimit`] (truncation after a number of steps) and
//! [`RecordEpisodeStatistics`] (episode return and length in `info.episode`).

use crate::env::{Env, EnvError, EpisodeStats, Info, Step};
use crate::spaces::Space;

/// Truncates episodes after `max_steps` steps, like gymnasium's `TimeLimit`.
///
/// A step that both terminates and reaches the limit reports `terminated` and `truncated`.
#[derive(Debug, Clone)]
pub struct TimeLimit<E> {
    /// The wrapped environment.
    pub env: E,
    max_steps: usize,
    elapsed: usize,
}

impl<E> TimeLimit<E> {
    /// Wraps `env` with a limit of `max_steps` steps per episode.
    pub fn new(env: E, max_steps: usize) -> Self {
        Self { env, max_steps, elapsed: 0 }
    }

    /// The limit.
    pub fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// Steps taken in the current episode.
    pub fn elapsed(&self) -> usize {
        self.elapsed
    }
}

impl<E: Env> Env for TimeLimit<E> {
    type Obs = E::Obs;
    type Act = E::Act;
    fn observation_space(&self) -> Space {
        self.env.observation_space()
    }
    fn action_space(&self) -> Space {
        self.env.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info), EnvError> {
        self.elapsed = 0;
        self.env.reset(seed)
    }
    #[inline]
    fn step(&mut self, action: &Self::Act) -> Result<Step<Self::Obs>, EnvError> {
        let mut step = self.env.step(action)?;
        self.elapsed += 1;
        if self.elapsed >= self.max_steps {
            step.truncated = true;
        }
        Ok(step)
    }
}

/// Records the return and length of each episode into `info.episode` on its last step.
#[derive(Debug, Clone)]
pub struct RecordEpisodeStatistics<E> {
    /// The wrapped environment.
    pub env: E,
    ret: f64,
    len: usize,
}

impl<E> RecordEpisodeStatistics<E> {
    /// Wraps `env`.
    pub fn new(env: E) -> Self {
        Self { env, ret: 0.0, len: 0 }
    }
}

impl<E: Env> Env for RecordEpisodeStatistics<E> {
    type Obs = E::Obs;
    type Act = E::Act;
    fn observation_space(&self) -> Space {
        self.env.observation_space()
    }
    fn action_space(&self) -> Space {
        self.env.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<(Self::Obs, Info), EnvError> {
        self.ret = 0.0;
        self.len = 0;
        self.env.reset(seed)
    }
    #[inline]
    fn step(&mut self, action: &Self::Act) -> Result<Step<Self::Obs>, EnvError> {
        let mut step = self.env.step(action)?;
        self.ret += step.reward;
        self.len += 1;
        if step.done() {
            step.info.episode = Some(EpisodeStats { ret: self.ret, len: self.len });
            self.ret = 0.0;
            self.len = 0;
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spaces::{BoxSpace, Discrete};

    /// Counts steps; terminates at step 7.
    struct Counter(usize);
    impl Env for Counter {
        type Obs = [f32; 1];
        type Act = usize;
        fn observation_space(&self) -> Space {
            BoxSpace::new(vec![0.0], vec![100.0]).into()
        }
        fn action_space(&self) -> Space {
            Discrete::new(1).into()
        }
        fn reset(&mut self, _: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
            self.0 = 0;
            Ok(([0.0], Info::default()))
        }
        fn step(&mut self, _: &usize) -> Result<Step<[f32; 1]>, EnvError> {
            self.0 += 1;
            Ok(Step {
                obs: [self.0 as f32],
                reward: 0.5,
                terminated: self.0 == 7,
                truncated: false,
                info: Info::default(),
            })
        }
    }

    #[test]
    fn time_limit_truncates_and_resets_its_count() {
        let mut env = RecordEpisodeStatistics::new(TimeLimit::new(Counter(0), 5));
        for _ in 0..2 {
            env.reset(None).unwrap();
            for t in 1..=5 {
                let s = env.step(&0).unwrap();
                assert_eq!(s.truncated, t == 5);
                assert!(!s.terminated);
                assert_eq!(s.info.episode, (t == 5).then_some(EpisodeStats { ret: 2.5, len: 5 }));
            }
        }
        let mut env = RecordEpisodeStatistics::new(TimeLimit::new(Counter(0), 7));
        env.reset(None).unwrap();
        let last = (0..7).map(|_| env.step(&0).unwrap()).last().unwrap();
        assert!(last.terminated && last.truncated);
        assert_eq!(last.info.episode.unwrap().len, 7);
    }
}
