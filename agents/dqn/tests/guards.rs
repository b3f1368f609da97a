//! Training refuses what it cannot do right: an env whose spaces do not fit the Q-network, and
//! NaN or infinite observations, rewards and gradients (each stops the run with an error naming
//! the step and where it appeared, and the network keeps finite weights).

use glimpse::optim::check_finite_params;
use glimpse::validate::SpaceMismatch;
use glimpse_dqn::prelude::*;
use glimpse_dqn::{train, MlpQ, Training};
use glimpse_envs::{acrobot_v1, cartpole_v1};

fn config() -> Config {
    Config {
        total_timesteps: 2000,
        learning_starts: 100,
        buffer_size: 2000,
        batch_size: 16,
        eval_frequency: 0,
        eval_episodes: 0,
        checkpoint_frequency: 0,
        ..Config::default()
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    glimpse::testing::scratch_dir("dqn-guards", name)
}

/// A new run of `cfg` in `dir`, as code (not a command line) starts one.
fn new_run(cfg: &Config, dir: &std::path::Path) -> Run<Config> {
    let args = RunArgs { seed: 2, run_dir: Some(dir.into()), ..RunArgs::default() };
    match Launch::new("guards", &args, cfg, cfg, &clap::ArgMatches::default()).unwrap() {
        Launch::Train(run) => run,
        Launch::Eval(_) => panic!("not a training run"),
    }
}

#[test]
fn a_two_action_network_on_a_three_action_env_is_refused_at_construction() {
    // Acrobot has 6 observation values and Discrete(3) actions.
    let err = Trainer::<_, 6, 2>::new(config(), acrobot_v1).err().expect("a wrong action count is accepted");
    assert!(matches!(err, Error::Spaces(SpaceMismatch::DiscreteActions { expected: 2, .. })), "{err}");
    let message = err.to_string();
    assert!(message.contains("one of 2 actions") && message.contains("Discrete(3)"), "{message}");
    let err = Trainer::<_, 4, 3>::new(config(), acrobot_v1).err().expect("a wrong observation size is accepted");
    assert!(err.to_string().contains("reads 4 observation values") && err.to_string().contains("6 values"), "{err}");
    // The state a training loop trains checks it too, whoever builds it.
    let state = Training::<MlpQ<6, 2, 16>, _, 6, 2>::new(&config(), &acrobot_v1, 0);
    assert!(matches!(state, Err(Error::Spaces(SpaceMismatch::DiscreteActions { .. }))));
    // And a trained policy is not evaluated on an env it does not fit.
    let dir = temp("spaces-eval");
    let cfg = Config { total_timesteps: 200, ..config() };
    let trainer = Trainer::<_, 4, 2>::new(cfg, cartpole_v1).unwrap().run_dir(&dir);
    trainer.train().unwrap();
    let err = evaluate_policy(&trainer.load_policy(&dir).unwrap(), &acrobot_v1, 2, 0).unwrap_err();
    assert!(matches!(err, Error::Spaces(SpaceMismatch::Observation { expected: 4, .. })), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CartPole whose observation (or reward) turns NaN at its `at`-th step.
struct Poisoned {
    env: glimpse::wrappers::TimeLimit<glimpse_envs::CartPole>,
    steps: u64,
    at: u64,
    reward: bool,
}

impl Env for Poisoned {
    type Obs = [f32; 4];
    type Act = usize;
    fn observation_space(&self) -> Space {
        self.env.observation_space()
    }
    fn action_space(&self) -> Space {
        self.env.action_space()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 4], Info), EnvError> {
        self.env.reset(seed)
    }
    fn step(&mut self, action: &usize) -> Result<Step<[f32; 4]>, EnvError> {
        let mut step = self.env.step(action)?;
        self.steps += 1;
        if self.steps >= self.at {
            if self.reward {
                step.reward = f64::NAN;
            } else {
                step.obs[2] = f32::NAN;
            }
        }
        Ok(step)
    }
}

fn poisoned(at: u64, reward: bool) -> impl Fn() -> Poisoned {
    move || Poisoned { env: cartpole_v1(), steps: 0, at, reward }
}

#[test]
fn a_nan_observation_stops_training_with_the_step_and_the_weights_stay_finite() {
    let dir = temp("nan-obs");
    let cfg = config();
    let make = poisoned(700, false);
    let mut state = Training::<MlpQ<4, 2, 64>, _, 4, 2>::new(&cfg, &make, 2).unwrap();
    let err = train(new_run(&cfg, &dir), &mut state, &make).unwrap_err();
    assert!(matches!(err, Error::NonFiniteEnv { env: 0, env_step: 700, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("env 0 gave a non-finite observation (NaN) at env step 700"), "{message}");
    assert!(state.agent.state.gradient_steps > 100, "it trained before the NaN");
    check_finite_params(&state.agent.q).expect("a NaN reached the Q-network");
    check_finite_params(&state.agent.target).expect("a NaN reached the target network");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_nan_reward_stops_training_with_the_step() {
    let dir = temp("nan-reward");
    let trainer = Trainer::<_, 4, 2>::new(Config { num_envs: 2, ..config() }, poisoned(300, true)).unwrap();
    let err = trainer.run_dir(&dir).train().unwrap_err();
    // Both envs step together: the 300th step of each is env step 600; env 0 is named first.
    assert!(matches!(err, Error::NonFiniteEnv { what: "reward", env: 0, env_step: 600, .. }), "{err}");
    assert!(!glimpse::run::holds_checkpoint(&dir), "no checkpoint of a poisoned run");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_nan_gradient_stops_training_and_changes_no_weight() {
    let dir = temp("nan-grad");
    let cfg = config();
    let make = || cartpole_v1();
    let mut state = Training::<MlpQ<4, 2, 64>, _, 4, 2>::new(&cfg, &make, 2).unwrap();
    // Poisoned weights: one NaN in the middle layer. The ReLU after it turns its unit's NaN into
    // 0, so the loss stays finite, but the backward pass carries the NaN into the gradient.
    let mut w = state.agent.q.2.weight.as_vec();
    w[7] = f32::NAN;
    state.agent.q.2.weight.copy_from(&w);
    let first_layer = state.agent.q.0.weight.as_vec();
    let err = train(new_run(&cfg, &dir), &mut state, &make).unwrap_err();
    assert!(matches!(err, Error::NonFiniteGradient { gradient_step: 0, env_step: 100, .. }), "{err}");
    assert!(err.to_string().contains("gradient norm is NaN at gradient step 0 (env step 100)"), "{err}");
    assert_eq!(state.agent.q.0.weight.as_vec(), first_layer, "the refused step changed a weight");
    assert_eq!(state.agent.opt.t, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
