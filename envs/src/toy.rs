//! Tiny MDPs with known optimal policies, for testing that an agent learns at all, in seconds.

use glimpse::env::{from_env_state, to_env_state};
use glimpse::{BoxSpace, Discrete, Env, EnvError, EnvState, Info, Space, Step};
use rand::{Rng, SeedableRng};
// ChaCha12 is what `rand::rngs::StdRng` runs (the same stream), and it can be saved.
use rand_chacha::ChaCha12Rng;

/// A one-step, two-armed bandit: arm 1 pays 1 with probability 0.8, arm 0 with probability 0.2.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TwoArmedBandit {
    rng: ChaCha12Rng,
}

impl TwoArmedBandit {
    /// A bandit whose rewards are drawn from a generator seeded with `seed` (reseeded by `reset(Some(..))`).
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha12Rng::seed_from_u64(seed) }
    }
}

impl Env for TwoArmedBandit {
    type Obs = [f32; 1];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![1.0], vec![1.0]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
        if let Some(s) = seed {
            self.rng = ChaCha12Rng::seed_from_u64(s);
        }
        Ok(([1.0], Info::default()))
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("TwoArmedBandit", self)
    }
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        *self = from_env_state("TwoArmedBandit", state)?;
        Ok(())
    }
    fn step(&mut self, a: &usize) -> Result<Step<[f32; 1]>, EnvError> {
        let p = [0.2, 0.8]
            .get(*a)
            .copied()
            .ok_or_else(|| EnvError::InvalidAction(format!("bandit action {a} is not in Discrete(2)")))?;
        let reward = self.rng.gen_bool(p) as u8 as f64;
        Ok(Step { obs: [1.0], reward, terminated: true, truncated: false, info: Info::default() })
    }
}

/// States `0..N` in a line with one-hot observations, starting at 0: action 1 moves right, 0 left;
/// reaching state `N - 1` pays 1 and terminates, every other step costs 0.05.
#[derive(Debug, Clone, Default)]
pub struct Chain<const N: usize> {
    /// The current state.
    pub state: usize,
}

impl<const N: usize> Chain<N> {
    fn obs(&self) -> [f32; N] {
        std::array::from_fn(|i| (i == self.state) as u8 as f32)
    }
}

impl<const N: usize> Env for Chain<N> {
    type Obs = [f32; N];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0; N], vec![1.0; N]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }
    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("Chain", &self.state)
    }
    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        self.state = from_env_state("Chain", state)?;
        if self.state >= N {
            return Err(EnvError::BadState(format!("Chain: state {} is not below {N}", self.state)));
        }
        Ok(())
    }
    fn reset(&mut self, _: Option<u64>) -> Result<([f32; N], Info), EnvError> {
        self.state = 0;
        Ok((self.obs(), Info::default()))
    }
    fn step(&mut self, a: &usize) -> Result<Step<[f32; N]>, EnvError> {
        match a {
            0 => self.state = self.state.saturating_sub(1),
            1 => self.state += 1,
            _ => return Err(EnvError::InvalidAction(format!("chain action {a} is not in Discrete(2)"))),
        }
        let end = self.state == N - 1;
        let reward = if end { 1.0 } else { -0.05 };
        Ok(Step { obs: self.obs(), reward, terminated: end, truncated: false, info: Info::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_policy_reaches_the_end_of_the_chain() {
        let mut env = Chain::<5>::default();
        env.reset(None).unwrap();
        let steps: Vec<_> = (0..4).map(|_| env.step(&1).unwrap()).collect();
        assert_eq!(steps.iter().map(|s| s.reward).sum::<f64>(), 1.0 - 3.0 * 0.05);
        assert!(steps[3].terminated && steps[3].obs == [0.0, 0.0, 0.0, 0.0, 1.0]);
        assert!(env.step(&2).is_err());
    }

    #[test]
    fn toy_states_restore_exactly() {
        let mut bandit = TwoArmedBandit::new(5);
        bandit.step(&1).unwrap();
        let mut copy = TwoArmedBandit::new(0);
        copy.restore_state(&bandit.save_state().unwrap()).unwrap();
        let rewards = |env: &mut TwoArmedBandit| (0..64).map(|_| env.step(&1).unwrap().reward).collect::<Vec<_>>();
        assert_eq!(rewards(&mut bandit), rewards(&mut copy));
        let mut chain = Chain::<5>::default();
        chain.reset(None).unwrap();
        chain.step(&1).unwrap();
        let mut other = Chain::<5>::default();
        other.restore_state(&chain.save_state().unwrap()).unwrap();
        assert_eq!(other.state, 1);
        assert!(Chain::<3>::default().restore_state(&serde_json::json!(7)).is_err());
    }

    #[test]
    fn bandit_arms_pay_with_their_probabilities() {
        let mut env = TwoArmedBandit::new(3);
        let mean = |env: &mut TwoArmedBandit, a| (0..4000).map(|_| env.step(&a).unwrap().reward).sum::<f64>() / 4000.0;
        assert!((mean(&mut env, 1) - 0.8).abs() < 0.03);
        assert!((mean(&mut env, 0) - 0.2).abs() < 0.03);
        assert!(env.step(&2).is_err());
    }
}
