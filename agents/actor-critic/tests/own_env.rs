//! A user's own env, trained with PPO through the library API in a few lines (TensorBoard,
//! checkpoints and evaluation included), without naming a dfdx type.

use glimpse_actor_critic::prelude::*;
use glimpse_actor_critic::{GaussianMlp, SeparateGaussian};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// A point on a line must reach a target: observation `[x, target − x]`, action a velocity in
/// [-1, 1] (0.1 per step at most), reward −|target − x| per step and +1 on arrival (which ends
/// the episode). It cannot save its state.
struct Reach {
    x: f32,
    target: f32,
    rng: ChaCha12Rng,
}

impl Reach {
    fn new() -> Self {
        Self { x: 0.0, target: 0.0, rng: ChaCha12Rng::seed_from_u64(0) }
    }
    fn obs(&self) -> [f32; 2] {
        [self.x, self.target - self.x]
    }
}

impl Env for Reach {
    type Obs = [f32; 2];
    type Act = [f32; 1];
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![-1.0, -2.0], vec![1.0, 2.0]).into()
    }
    fn action_space(&self) -> Space {
        BoxSpace::new(vec![-1.0], vec![1.0]).into()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 2], Info), EnvError> {
        if let Some(s) = seed {
            self.rng = ChaCha12Rng::seed_from_u64(s);
        }
        (self.x, self.target) = (self.rng.gen_range(-1.0..1.0), self.rng.gen_range(-1.0..1.0));
        Ok((self.obs(), Info::default()))
    }
    fn step(&mut self, a: &[f32; 1]) -> Result<Step<[f32; 2]>, EnvError> {
        if !(-1.0..=1.0).contains(&a[0]) {
            return Err(EnvError::InvalidAction(format!("{a:?} is not in [-1, 1]")));
        }
        self.x = (self.x + 0.1 * a[0]).clamp(-1.0, 1.0);
        let distance = (self.target - self.x).abs();
        let arrived = distance < 0.05;
        let reward = -distance as f64 + if arrived { 1.0 } else { 0.0 };
        Ok(Step { obs: self.obs(), reward, terminated: arrived, truncated: false, info: Info::default() })
    }
}

#[test]
fn ppo_trains_and_evaluates_a_users_own_env_through_the_library_api() -> Result<(), Error> {
    std::env::set_var("GLIMPSE_NO_PROGRESS", "1");
    let dir = std::env::temp_dir().join(format!("glimpse-own-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // What a user writes:
    let cfg =
        PpoConfig { num_envs: 8, num_steps: 64, total_timesteps: 40_960, learning_rate: 3e-3, ..Default::default() };
    let trainer = Trainer::gaussian::<2, 1>(cfg, || TimeLimit::new(Reach::new(), 30))?.seed(3).run_dir(&dir);
    let summary = trainer.train()?;
    let trained = trainer.evaluate(&dir, 100, 1000)?;

    assert_eq!(summary.env_steps, 40_960);
    assert!(dir.join("summary.json").is_file() && dir.join("checkpoint").is_dir());
    // The same network untrained (seed 3, no updates) on the same 100 episodes.
    let untrained = GaussianMlp::<2, 1>::build::<SeparateGaussian<2, 1, 64>>(3, [-1.0], [1.0]);
    let make_env = || TimeLimit::new(Reach::new(), 30);
    let before = evaluate_policy(&untrained, &make_env, 100, 1000)?;
    assert!(before.mean() < -10.0, "untrained {before:?}");
    assert!(trained.mean() > -6.0, "trained {trained:?}, untrained {before:?}, summary {summary:?}");
    assert_eq!(trained.returns.len(), 100);

    // The env cannot save its state: the run trained and checkpointed, but is not resumed.
    let split = dir.with_extension("split");
    let _ = std::fs::remove_dir_all(&split);
    let args = RunArgs { seed: 3, run_dir: Some(split.clone()), stop_after: Some(1024), ..RunArgs::default() };
    assert_eq!(trainer.run(&args)?, Outcome::Stopped { done: 1024 });
    let err = trainer.resume(&split).unwrap_err();
    assert!(matches!(err, Error::Resume(_)) && err.to_string().contains("cannot save its state"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&split).unwrap();
    Ok(())
}
