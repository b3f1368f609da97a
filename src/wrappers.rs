//! Wrappers: [`TimeLimit`] (truncation after a number of steps) and
//! [`RecordEpisodeStatistics`] (episode return and length in `info.episode`).

use serde::{Deserialize, Serialize};

use crate::env::{from_env_state, to_env_state, Env, EnvError, EnvState, EpisodeStats, Info, Step};
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
    fn save_state(&self) -> Result<EnvState, EnvError> {
        let state =
            WrapperState { max_steps: self.max_steps, count: self.elapsed, ret: 0.0, env: self.env.save_state()? };
        to_env_state("TimeLimit", &state)
    }
    fn render(&self) -> Result<crate::image::Image, EnvError> {
        self.env.render()
    }
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        let s: WrapperState = from_env_state("TimeLimit", state)?;
        if s.max_steps != self.max_steps {
            return Err(EnvError::BadState(format!(
                "TimeLimit: the state was saved with max_steps {}, this env has {}",
                s.max_steps, self.max_steps
            )));
        }
        self.env.restore_state(&s.env)?;
        self.elapsed = s.count;
        Ok(())
    }
}

/// What a wrapper saves (see [`Env::save_state`]): its own counters and the wrapped env's state.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrapperState {
    /// `TimeLimit`'s limit (checked on restore); 0 for other wrappers.
    max_steps: usize,
    /// Steps in the current episode.
    count: usize,
    /// Return so far in the current episode (`RecordEpisodeStatistics`).
    ret: f64,
    /// The wrapped env's state.
    env: EnvState,
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
    fn save_state(&self) -> Result<EnvState, EnvError> {
        let state = WrapperState { max_steps: 0, count: self.len, ret: self.ret, env: self.env.save_state()? };
        to_env_state("RecordEpisodeStatistics", &state)
    }
    fn render(&self) -> Result<crate::image::Image, EnvError> {
        self.env.render()
    }
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        let s: WrapperState = from_env_state("RecordEpisodeStatistics", state)?;
        self.env.restore_state(&s.env)?;
        (self.len, self.ret) = (s.count, s.ret);
        Ok(())
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
        fn save_state(&self) -> Result<EnvState, EnvError> {
            to_env_state("Counter", &self.0)
        }
        fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
            self.0 = from_env_state("Counter", state)?;
            Ok(())
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

    #[test]
    fn wrapper_states_restore_counters_and_the_inner_env() {
        let mut env = RecordEpisodeStatistics::new(TimeLimit::new(Counter(0), 5));
        env.reset(None).unwrap();
        env.step(&0).unwrap();
        env.step(&0).unwrap();
        let saved = env.save_state().unwrap();
        let mut fresh = RecordEpisodeStatistics::new(TimeLimit::new(Counter(0), 5));
        fresh.restore_state(&saved).unwrap();
        // Mid-episode: the time limit and the episode statistics go on from step 2.
        for t in 3..=5 {
            let (a, b) = (env.step(&0).unwrap(), fresh.step(&0).unwrap());
            assert_eq!(a, b);
            assert_eq!(b.truncated, t == 5);
        }
        assert_eq!(fresh.env.elapsed(), env.env.elapsed());
        // A different limit, or a state of another shape, is a clear error.
        let err = TimeLimit::new(Counter(0), 6).restore_state(&TimeLimit::new(Counter(0), 5).save_state().unwrap());
        assert!(matches!(&err, Err(EnvError::BadState(m)) if m.contains("max_steps 5")), "{err:?}");
        let err = TimeLimit::new(Counter(0), 5).restore_state(&serde_json::json!({"elapsed": 3}));
        assert!(matches!(err, Err(EnvError::BadState(_))), "{err:?}");
    }

    #[test]
    fn an_env_without_state_support_says_so_through_wrappers() {
        struct Opaque;
        impl Env for Opaque {
            type Obs = [f32; 1];
            type Act = usize;
            fn observation_space(&self) -> Space {
                BoxSpace::new(vec![0.0], vec![1.0]).into()
            }
            fn action_space(&self) -> Space {
                Discrete::new(1).into()
            }
            fn reset(&mut self, _: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
                Ok(([0.0], Info::default()))
            }
            fn step(&mut self, _: &usize) -> Result<Step<[f32; 1]>, EnvError> {
                Ok(Step { obs: [0.0], reward: 0.0, terminated: false, truncated: false, info: Info::default() })
            }
        }
        let env = RecordEpisodeStatistics::new(TimeLimit::new(Opaque, 5));
        let err = env.save_state().unwrap_err();
        assert!(matches!(&err, EnvError::Unsupported(m) if m.contains("Opaque")), "{err}");
    }

    #[test]
    fn saved_floats_round_trip_exactly_through_json() {
        // Env states hold float64 physics: JSON must give back the very same bits.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let back: f64 = from_env_state("f", &to_env_state("f", &v).unwrap()).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
            let text: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(text.to_bits(), v.to_bits(), "{v:e}");
        }
    }
}
