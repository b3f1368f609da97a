//! Bad input gives errors, not panics, and nothing trains on garbage: a NaN observation or reward,
//! a NaN gradient, a panicking env, an env whose spaces do not fit the network, bad settings.

use dfdx::prelude::*;
use glimpse::optim::check_finite_params;
use glimpse::validate::SpaceMismatch;
use glimpse_actor_critic::policy::{ActOutput, Evaluation, ObsBatch, Traced};
use glimpse_actor_critic::prelude::*;
use glimpse_actor_critic::{ppo, ActorCritic, DiscretePolicy, SeparateDiscrete, Training};
use rand::Rng;

/// One-step episodes; env `bad_env` (of those reset with seeds 0, 1, ...) emits a NaN observation
/// (or reward, or panics) on its `bad_step`-th step.
struct Faulty {
    env: u64,
    steps: u64,
    fault: Fault,
}

#[derive(Clone, Copy)]
enum Fault {
    None,
    NanObservation,
    NanReward,
    Panic,
}

const BAD_ENV: u64 = 1;
const BAD_STEP: u64 = 37;

impl Env for Faulty {
    type Obs = [f32; 2];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0; 2], vec![1.0; 2]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 2], Info), EnvError> {
        if let Some(s) = seed {
            self.env = s;
        }
        Ok(([0.5, 0.25], Info::default()))
    }
    fn step(&mut self, a: &usize) -> Result<Step<[f32; 2]>, EnvError> {
        self.steps += 1;
        let (mut obs, mut reward) = ([0.5, 0.25], *a as f64);
        if self.env == BAD_ENV && self.steps == BAD_STEP {
            match self.fault {
                Fault::NanObservation => obs[1] = f32::NAN,
                Fault::NanReward => reward = f64::NAN,
                Fault::Panic => panic!("env exploded"),
                Fault::None => {}
            }
        }
        Ok(Step { obs, reward, terminated: true, truncated: false, info: Info::default() })
    }
}

fn cfg() -> PpoConfig {
    PpoConfig {
        num_envs: 2,
        num_steps: 8,
        total_timesteps: 256,
        eval_frequency: 0,
        eval_episodes: 2,
        checkpoint_frequency: 0,
        ..PpoConfig::default()
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    glimpse::testing::scratch_dir("ac-errors", name)
}

/// Trains `policy` on faulty envs through the library's parts (so the agent can be inspected).
fn train<P: ActorCritic<2, Action = usize>>(
    name: &str,
    fault: Fault,
    policy: P,
) -> (Result<Outcome<Summary>, Error>, Training<Faulty, P, 2>) {
    let make_env = move || Faulty { env: 0, steps: 0, fault };
    let dir = temp(name);
    let args = RunArgs { seed: 0, run_dir: Some(dir.clone()), ..RunArgs::default() };
    let Launch::Train(run) = Launch::from_code("test", &args, &cfg()).unwrap() else { panic!("not a training run") };
    let mut agent = Training::new(&cfg(), policy, &make_env, run.seed).unwrap();
    let result = ppo::train(run, &mut agent, &make_env);
    std::fs::remove_dir_all(&dir).unwrap();
    (result, agent)
}

fn mlp(seed: u64) -> DiscretePolicy<glimpse_actor_critic::Built<SeparateDiscrete<2, 2, 8>>, 2> {
    DiscretePolicy::build::<SeparateDiscrete<2, 2, 8>>(seed)
}

#[test]
fn a_nan_observation_stops_ppo_naming_env_and_step_with_the_weights_still_finite() {
    let (result, agent) = train("nan-obs", Fault::NanObservation, mlp(3));
    let Err(Error::NonFinite(e)) = result else { panic!("expected a non-finite error, got {result:?}") };
    // Env 1's 37th step is the 37th step of both envs together: 2 × 37 env steps.
    assert_eq!((e.what.as_str(), e.step, e.index), ("observation of env 1", 2 * BAD_STEP, 1), "{e}");
    assert!(e.to_string().contains("holds NaN at step 74"), "{e}");
    // The four updates before it trained; the NaN reached neither the buffer nor the weights.
    assert_eq!(agent.progress.updates, 4);
    assert!(check_finite_params(agent.policy.net()).is_ok());
    assert!(agent.opt.t > 0);
}

#[test]
fn a_nan_reward_stops_ppo_naming_env_and_step() {
    let (result, _) = train("nan-reward", Fault::NanReward, mlp(3));
    let Err(Error::NonFinite(e)) = result else { panic!("expected a non-finite error, got {result:?}") };
    assert_eq!((e.what.as_str(), e.step), ("reward of env 1", 2 * BAD_STEP), "{e}");
}

#[test]
fn a_panicking_env_is_an_env_error() {
    let (result, _) = train("panic", Fault::Panic, mlp(3));
    assert!(matches!(result, Err(Error::Env(EnvError::Panicked { .. }))), "{result:?}");
}

/// A policy whose loss is finite but whose gradient is NaN: `sqrt(0 · x)` adds 0 to the values
/// and has an infinite derivative, times the 0 (a NaN).
struct NanGradient(DiscretePolicy<glimpse_actor_critic::Built<SeparateDiscrete<2, 2, 8>>, 2>);

impl ActorCritic<2> for NanGradient {
    type Action = usize;
    type Net = glimpse_actor_critic::Built<SeparateDiscrete<2, 2, 8>>;
    const ACT_DIM: usize = 1;
    fn check_spaces(&self, observation: &Space, action: &Space) -> Result<(), SpaceMismatch> {
        ActorCritic::<2>::check_spaces(&self.0, observation, action)
    }
    fn net(&self) -> &Self::Net {
        &self.0.net
    }
    fn net_mut(&mut self) -> &mut Self::Net {
        &mut self.0.net
    }
    fn act<R: Rng + ?Sized>(&self, obs: &[f32], greedy: bool, rng: &mut R) -> ActOutput<usize> {
        ActorCritic::<2>::act(&self.0, obs, greedy, rng)
    }
    fn greedy_actions(&self, obs: &[f32]) -> Vec<usize> {
        ActorCritic::<2>::greedy_actions(&self.0, obs)
    }
    fn values(&self, obs: &[f32]) -> Vec<f32> {
        ActorCritic::<2>::values(&self.0, obs)
    }
    fn evaluate(&self, obs: ObsBatch<2, Traced>, actions: &[f32]) -> Evaluation {
        let ev = ActorCritic::<2>::evaluate(&self.0, obs, actions);
        let zero = (ev.values.with_empty_tape() * 0.0).sqrt();
        let values = ev.values + zero;
        Evaluation { values, ..ev }
    }
}

#[test]
fn a_nan_gradient_stops_ppo_and_leaves_the_weights_unchanged() {
    let policy = NanGradient(mlp(3));
    let before = policy.0.net.0 .0 .0 .0.weight.as_vec();
    let (result, agent) = train("nan-grad", Fault::None, policy);
    let Err(err @ Error::NonFiniteGradient { env_step, .. }) = &result else {
        panic!("expected a non-finite gradient, got {result:?}")
    };
    assert_eq!(*env_step, 16, "the first update, after one rollout of 2 × 8 steps");
    let msg = err.to_string();
    assert!(msg.contains("non-finite gradient at env step 16") && msg.contains("no parameter was changed"), "{msg}");
    assert_eq!(agent.policy.0.net.0 .0 .0 .0.weight.as_vec(), before);
    assert_eq!(agent.opt.t, 0);
}

#[test]
fn an_env_whose_spaces_do_not_fit_the_network_is_refused_at_construction() {
    // A 2-action policy on Acrobot's 3 actions.
    let err = Trainer::discrete::<6, 2>(cfg(), glimpse_envs::acrobot_v1).err().expect("refused");
    assert!(matches!(err, Error::Spaces(SpaceMismatch::DiscreteActions { expected: 2, .. })), "{err}");
    assert!(
        err.to_string().contains("one of 2 actions (Discrete(2)), but the env's action space is Discrete(3)"),
        "{err}"
    );
    // A network reading 5 values of Acrobot's 6.
    let err = Trainer::discrete::<5, 3>(cfg(), glimpse_envs::acrobot_v1).err().expect("refused");
    assert!(err.to_string().contains("reads 5 observation values"), "{err}");
    // The agent checks too, whoever builds it.
    let make_env = glimpse_envs::acrobot_v1;
    let policy = DiscretePolicy::build::<SeparateDiscrete<6, 2, 8>>(0);
    assert!(matches!(Training::<_, _, 6>::new(&cfg(), policy, &make_env, 0), Err(Error::Spaces(_))));
    assert!(Trainer::discrete::<6, 3>(cfg(), glimpse_envs::acrobot_v1).is_ok());
}

#[test]
fn bad_settings_are_refused_before_anything_is_allocated() {
    let err = Trainer::discrete::<4, 2>(PpoConfig { num_envs: 0, ..cfg() }, glimpse_envs::cartpole_v1).err().unwrap();
    assert!(matches!(&err, Error::Config(m) if m.contains("num_envs")), "{err}");
    // 2^62 transitions of rollout storage.
    let huge = PpoConfig { num_envs: 1 << 31, num_steps: 1 << 31, total_timesteps: u64::MAX, ..cfg() };
    let err = Trainer::discrete::<4, 2>(huge, glimpse_envs::cartpole_v1).err().unwrap();
    assert!(err.to_string().contains("rollout storage") && err.to_string().contains("memory available"), "{err}");
    let err = Trainer::discrete::<4, 2>(PpoConfig { eval_episodes: 0, ..cfg() }, glimpse_envs::cartpole_v1);
    assert!(err.err().unwrap().to_string().contains("eval_episodes"));
}
