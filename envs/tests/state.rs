//! Saved env states (`Env::save_state`) restore exactly: a restored env steps, ends episodes and
//! draws its next random reset bit for bit like the original.

use glimpse::{Env, EnvError, Step};
use glimpse_envs::{acrobot_v1, cartpole_v1, mountain_car_continuous_v0, mountain_car_v0, pendulum_v1};

/// A small xorshift stream for the actions, independent of the envs' own generators.
struct Actions(u64);

impl Actions {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Everything a step returns, floats as bits.
fn fingerprint<O: AsRef<[f32]>>(s: &Step<O>) -> (Vec<u32>, u64, bool, bool) {
    (s.obs.as_ref().iter().map(|x| x.to_bits()).collect(), s.reward.to_bits(), s.terminated, s.truncated)
}

/// Plays `before` steps, saves the state (through JSON text, as a checkpoint does), restores it
/// into a fresh env, then plays both for `after` steps with auto-reset on episode ends
/// (`reset(None)` draws from the env's saved random stream) and compares everything.
fn check_round_trip<E>(make: fn() -> E, before: usize, after: usize, action: impl Fn(u64) -> E::Act) -> usize
where
    E: Env,
    E::Obs: AsRef<[f32]>,
{
    let mut rng = Actions(0x1234_5678_9abc_def1);
    let mut env = make();
    env.reset(Some(3)).unwrap();
    for _ in 0..before {
        if env.step(&action(rng.next())).unwrap().done() {
            env.reset(None).unwrap();
        }
    }
    let text = serde_json::to_string(&env.save_state().unwrap()).unwrap();
    let mut restored = make();
    restored.restore_state(&serde_json::from_str(&text).unwrap()).unwrap();
    let mut resets = 0;
    for _ in 0..after {
        let a = action(rng.next());
        let (x, y) = (env.step(&a).unwrap(), restored.step(&a).unwrap());
        assert_eq!(fingerprint(&x), fingerprint(&y));
        if x.done() {
            resets += 1;
            let (ox, oy) = (env.reset(None).unwrap().0, restored.reset(None).unwrap().0);
            assert_eq!(ox.as_ref(), oy.as_ref(), "the reset after an episode end differs");
        }
    }
    resets
}

fn discrete(n: u64) -> impl Fn(u64) -> usize {
    move |r| (r % n) as usize
}

fn continuous(scale: f32) -> impl Fn(u64) -> [f32; 1] {
    move |r| [((r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale]
}

#[test]
fn cartpole_restores_mid_episode_and_resets_alike() {
    // Random CartPole episodes last ~20 steps: many seeded-stream resets after the restore.
    assert!(check_round_trip(cartpole_v1, 7, 600, discrete(2)) > 10);
}

#[test]
fn acrobot_restores_mid_episode_and_resets_alike() {
    // 500-step time limit: the truncation count carries over the restore.
    assert!(check_round_trip(acrobot_v1, 250, 900, discrete(3)) >= 1);
}

#[test]
fn mountain_car_restores_mid_episode_and_resets_alike() {
    assert!(check_round_trip(mountain_car_v0, 150, 500, discrete(3)) >= 2);
}

#[test]
fn mountain_car_continuous_restores_mid_episode_and_resets_alike() {
    // Actions beyond [-1, 1] exercise the clipped (Python-float) path too.
    assert!(check_round_trip(mountain_car_continuous_v0, 300, 1100, continuous(1.5)) >= 1);
}

#[test]
fn pendulum_restores_mid_episode_and_resets_alike() {
    assert!(check_round_trip(pendulum_v1, 120, 500, continuous(2.5)) >= 2);
}

#[test]
fn a_state_of_another_env_is_a_clear_error() {
    let mut cartpole = cartpole_v1();
    cartpole.reset(Some(0)).unwrap();
    let saved = cartpole.save_state().unwrap();
    let err = acrobot_v1().restore_state(&saved).unwrap_err();
    assert!(matches!(&err, EnvError::BadState(m) if m.contains("Acrobot")), "{err}");
    // Same env, different time limit.
    let mut short = glimpse::wrappers::TimeLimit::new(glimpse_envs::CartPole::new(), 10);
    let err = short.restore_state(&saved).unwrap_err();
    assert!(err.to_string().contains("max_steps 500"), "{err}");
}

#[test]
fn a_vec_env_restores_its_envs_episode_statistics_and_observations() {
    use glimpse::vec_env::{VecEnv, VecEnvState};
    let mut rng = Actions(99);
    let mut a = VecEnv::new((0..3).map(|_| cartpole_v1()).collect(), 2).unwrap();
    a.reset(Some(11)).unwrap();
    for _ in 0..37 {
        let acts: Vec<usize> = (0..3).map(|_| (rng.next() % 2) as usize).collect();
        a.step(&acts).unwrap();
    }
    let text = serde_json::to_string(&a.save_state().unwrap()).unwrap();
    let state: VecEnvState = serde_json::from_str(&text).unwrap();
    assert!(state.lengths.iter().any(|&l| l > 0), "mid-episode");
    let mut b = VecEnv::new((0..3).map(|_| cartpole_v1()).collect(), 1).unwrap();
    b.restore_state(&state).unwrap();
    assert_eq!(a.observations(), b.observations());
    let mut episodes = 0;
    for _ in 0..300 {
        let acts: Vec<usize> = (0..3).map(|_| (rng.next() % 2) as usize).collect();
        let x = a.step(&acts).unwrap();
        let x = (x.obs.to_vec(), x.rewards.to_vec(), x.terminated.to_vec(), x.final_obs.to_vec(), x.episodes.to_vec());
        let y = b.step(&acts).unwrap();
        let y = (y.obs.to_vec(), y.rewards.to_vec(), y.terminated.to_vec(), y.final_obs.to_vec(), y.episodes.to_vec());
        episodes += x.4.len();
        assert_eq!(x, y);
    }
    assert!(episodes > 10);
    // Another number of envs is a clear error.
    let mut c = VecEnv::new((0..2).map(|_| cartpole_v1()).collect(), 1).unwrap();
    assert!(matches!(c.restore_state(&state), Err(EnvError::BadState(m)) if m.contains("3 envs")));
}
