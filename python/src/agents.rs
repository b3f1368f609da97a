//! glimpse's agents (DQN, PPO, A2C, REINFORCE) for Python, by env id: [`Agent`] holds a validated
//! config and, once trained or loaded, the policy; the work goes to the same Rust trainers as the
//! examples', with the same defaults, so a seed gives the same run from Python and from `cargo run`.
//!
//! Networks are typed by their sizes, which are fixed per env: [`dispatch`] picks the trainer
//! for each (agent, env) pair.

use std::fmt::Display;
use std::path::Path;

use glimpse::evaluate::EvalResult;
use glimpse::run::{RlSummary, Train};
use glimpse::Env;
use glimpse_actor_critic::{A2cConfig, ActorCritic, PpoConfig, Trainer as AcTrainer};
use glimpse_dqn::{Config as DqnConfig, Trainer as DqnTrainer};
use glimpse_envs as envs;
use glimpse_reinforce::{ReinforceConfig, Trainer as ReinforceTrainer};
use rand::Rng;
use rand_chacha::ChaCha12Rng;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The agents, by the names of their Python classes (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dqn,
    Ppo,
    A2c,
    Reinforce,
}

impl Kind {
    /// The agent called `name` (`dqn`, `ppo`, `a2c`, `reinforce`).
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "dqn" => Ok(Self::Dqn),
            "ppo" => Ok(Self::Ppo),
            "a2c" => Ok(Self::A2c),
            "reinforce" => Ok(Self::Reinforce),
            other => Err(format!("unknown agent {other:?}; known: dqn, ppo, a2c, reinforce")),
        }
    }
}

impl Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dqn => "DQN",
            Self::Ppo => "PPO",
            Self::A2c => "A2C",
            Self::Reinforce => "REINFORCE",
        })
    }
}

/// The actions for a batch of observations: one integer each, or `width` values each (row-major).
pub enum Actions {
    Discrete(Vec<i64>),
    Continuous { values: Vec<f32>, width: usize },
}

/// A trained policy acting on a batch of observations (whole rows of the env's size, row-major).
pub trait Act: Send {
    /// The actions for `obs`: the policy's mode when `deterministic`, else drawn from `rng`.
    fn act(&self, obs: &[f32], deterministic: bool, rng: &mut ChaCha12Rng) -> Result<Actions, String>;
}

/// A policy with the function that acts with it.
struct Loaded<P, F> {
    policy: P,
    act: F,
}

impl<P: Send, F> Act for Loaded<P, F>
where
    F: Fn(&P, &[f32], bool, &mut ChaCha12Rng) -> Result<Actions, String> + Send,
{
    fn act(&self, obs: &[f32], deterministic: bool, rng: &mut ChaCha12Rng) -> Result<Actions, String> {
        (self.act)(&self.policy, obs, deterministic, rng)
    }
}

/// What Python asks of a trainer.
pub enum Request<'a> {
    /// Builds the trainer (checking the config against the env) and does nothing else.
    Check,
    /// Trains a new run with `seed` in `dir`.
    Learn { seed: u64, dir: &'a Path },
    /// The policy of the last checkpoint in `dir`.
    Load { dir: &'a Path },
    /// Greedy evaluation of that policy: `episodes` episodes, episode i reset with `seed + i`.
    Evaluate { dir: &'a Path, episodes: usize, seed: u64 },
}

/// The answer to a [`Request`].
pub enum Reply {
    Checked,
    Summary(RlSummary),
    Policy(Box<dyn Act>),
    Evaluation(EvalResult),
}

/// Where a request failed: in the config (Python's `ValueError`) or later.
#[derive(Debug)]
pub enum Failure {
    Config(String),
    Run(String),
}

fn run_failure(e: impl Display) -> Failure {
    Failure::Run(e.to_string())
}

/// Serves `request` with `trainer`; `act` is how its policy acts.
fn serve<T, F>(trainer: Result<T, T::Error>, request: Request<'_>, act: F) -> Result<Reply, Failure>
where
    T: Train,
    T::Error: Display,
    T::Policy: Send + 'static,
    F: Fn(&T::Policy, &[f32], bool, &mut ChaCha12Rng) -> Result<Actions, String> + Send + 'static,
{
    let mut trainer = trainer.map_err(|e| Failure::Config(e.to_string()))?;
    match request {
        Request::Check => Ok(Reply::Checked),
        Request::Learn { seed, dir } => {
            let setup = trainer.setup_mut();
            (setup.seed, setup.run_dir) = (seed, Some(dir.to_path_buf()));
            trainer.train().map(Reply::Summary).map_err(run_failure)
        }
        Request::Load { dir } => {
            let policy = trainer.load_policy(dir).map_err(run_failure)?;
            Ok(Reply::Policy(Box::new(Loaded { policy, act })))
        }
        Request::Evaluate { dir, episodes, seed } => {
            trainer.evaluate(dir, episodes, seed).map(Reply::Evaluation).map_err(run_failure)
        }
    }
}

/// The env ids every agent knows.
pub const ENV_IDS: [&str; 5] =
    ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0"];

/// The settings `kind` trains `env_id` with unless told otherwise: the examples' (`cartpole_dqn`,
/// `acrobot_ppo`, ...) where there is one, else the agent's defaults.
pub fn defaults(kind: Kind, env_id: &str) -> Result<Value, Failure> {
    known_env(env_id)?;
    match (kind, env_id) {
        (Kind::Dqn, "CartPole-v1") => json(&DqnConfig::cartpole()),
        (Kind::Dqn, "Acrobot-v1") => json(&DqnConfig::acrobot()),
        (Kind::Dqn, _) => json(&DqnConfig::default()),
        (Kind::Ppo, "CartPole-v1") => json(&PpoConfig::cartpole()),
        (Kind::Ppo, "Acrobot-v1") => json(&PpoConfig::acrobot()),
        (Kind::Ppo, "Pendulum-v1") => json(&PpoConfig::pendulum()),
        (Kind::Ppo, _) => json(&PpoConfig::default()),
        (Kind::A2c, "CartPole-v1") => json(&A2cConfig::cartpole()),
        (Kind::A2c, _) => json(&A2cConfig::default()),
        (Kind::Reinforce, "CartPole-v1") => json(&ReinforceConfig::cartpole()),
        (Kind::Reinforce, _) => json(&ReinforceConfig::default()),
    }
}

/// A config as JSON, through its text: `f32` settings keep their short decimal form (0.001, not
/// the 0.0010000000474974513 of a direct conversion to `f64`), as in the runs' `config.json`.
fn json(config: &impl serde::Serialize) -> Result<Value, Failure> {
    serde_json::to_string(config).and_then(|text| serde_json::from_str(&text)).map_err(run_failure)
}

fn known_env(env_id: &str) -> Result<(), Failure> {
    if ENV_IDS.contains(&env_id) {
        Ok(())
    } else {
        Err(Failure::Config(format!("unknown glimpse env {env_id:?}; known: {ENV_IDS:?}")))
    }
}

/// The full settings of `kind` on `env_id`: [`defaults`] with `overrides` replaced. An unknown
/// name or a value of the wrong type is an error naming the setting; the values' ranges are
/// checked by the trainer ([`Request::Check`]).
pub fn settings(kind: Kind, env_id: &str, overrides: &Map<String, Value>) -> Result<Value, Failure> {
    let Value::Object(defaults) = defaults(kind, env_id)? else {
        return Err(Failure::Run("an agent's settings are not a JSON object".into()));
    };
    let mut merged = defaults.clone();
    for (name, value) in overrides {
        if !defaults.contains_key(name) {
            let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
            let message = format!("{name}: not a setting of {kind}; its settings are {}", known.join(", "));
            return Err(Failure::Config(message));
        }
        // One at a time on the defaults, so that a wrong type names its setting (serde does not).
        let mut one = defaults.clone();
        one.insert(name.clone(), value.clone());
        parses(kind, Value::Object(one)).map_err(|e| Failure::Config(format!("{name}: {e}")))?;
        merged.insert(name.clone(), value.clone());
    }
    Ok(Value::Object(merged))
}

/// Whether `settings` are a config of `kind`'s type.
fn parses(kind: Kind, settings: Value) -> Result<(), serde_json::Error> {
    match kind {
        Kind::Dqn => serde_json::from_value::<DqnConfig>(settings).map(drop),
        Kind::Ppo => serde_json::from_value::<PpoConfig>(settings).map(drop),
        Kind::A2c => serde_json::from_value::<A2cConfig>(settings).map(drop),
        Kind::Reinforce => serde_json::from_value::<ReinforceConfig>(settings).map(drop),
    }
}

/// The config of type `C` in full `settings` (see [`settings`]).
fn config<C: DeserializeOwned>(settings: &Value) -> Result<C, Failure> {
    serde_json::from_value(settings.clone()).map_err(|e| Failure::Config(e.to_string()))
}

/// Serves `request` for agent `kind` on env `env_id` with the full `settings` (see [`merge`]).
pub fn dispatch(kind: Kind, env_id: &str, settings: &Value, request: Request<'_>) -> Result<Reply, Failure> {
    // PPO and A2C build the same policy from their own config types: one trainer per config.
    macro_rules! actor_critic {
        ($build:ident::<$o:literal, $a:literal>, $make:expr) => {
            actor_critic(
                kind,
                settings,
                request,
                |c| AcTrainer::$build::<$o, $a>(c, $make),
                |c| AcTrainer::$build::<$o, $a>(c, $make),
            )
        };
    }
    known_env(env_id)?;
    match (kind, env_id) {
        (Kind::Dqn, "CartPole-v1") => dqn::<_, 4, 2, 64>(settings, envs::cartpole_v1, request),
        (Kind::Dqn, "Acrobot-v1") => dqn::<_, 6, 3, 128>(settings, envs::acrobot_v1, request),
        (Kind::Dqn, "MountainCar-v0") => dqn::<_, 2, 3, 64>(settings, envs::mountain_car_v0, request),
        (Kind::Reinforce, "CartPole-v1") => reinforce::<_, 4, 2>(settings, envs::cartpole_v1, request),
        (Kind::Reinforce, "Acrobot-v1") => reinforce::<_, 6, 3>(settings, envs::acrobot_v1, request),
        (Kind::Reinforce, "MountainCar-v0") => reinforce::<_, 2, 3>(settings, envs::mountain_car_v0, request),
        (Kind::Dqn | Kind::Reinforce, _) => Err(Failure::Config(format!(
            "{env_id} has continuous actions; {kind} needs discrete ones (use PPO or A2C)"
        ))),
        (_, "CartPole-v1") => actor_critic!(discrete::<4, 2>, envs::cartpole_v1),
        (_, "Acrobot-v1") => actor_critic!(discrete::<6, 3>, envs::acrobot_v1),
        (_, "MountainCar-v0") => actor_critic!(discrete::<2, 3>, envs::mountain_car_v0),
        (_, "Pendulum-v1") => actor_critic!(gaussian::<3, 1>, envs::pendulum_v1),
        _ => actor_critic!(gaussian::<2, 1>, envs::mountain_car_continuous_v0),
    }
}

/// DQN with `O` observation values, `A` actions and hidden width `H`. Not deterministic, it acts
/// ε-greedily with the run's final ε (`end_e`), as Stable-Baselines3's DQN does.
fn dqn<E, const O: usize, const A: usize, const H: usize>(
    settings: &Value,
    make_env: fn() -> E,
    request: Request<'_>,
) -> Result<Reply, Failure>
where
    E: Env<Act = usize> + 'static,
{
    let cfg: DqnConfig = config(settings)?;
    let epsilon = cfg.end_e;
    let act = move |p: &glimpse_dqn::Policy<O, A, H>, obs: &[f32], deterministic: bool, rng: &mut ChaCha12Rng| {
        let mut actions = p.actions(obs).map_err(|e| e.to_string())?;
        if !deterministic {
            for a in &mut actions {
                if rng.gen::<f64>() < epsilon {
                    *a = rng.gen_range(0..A);
                }
            }
        }
        Ok(Actions::Discrete(actions.into_iter().map(|a| a as i64).collect()))
    };
    serve(DqnTrainer::<E, O, A, H>::new(cfg, make_env), request, act)
}

/// REINFORCE with `O` observation values and `A` actions.
fn reinforce<E, const O: usize, const A: usize>(
    settings: &Value,
    make_env: fn() -> E,
    request: Request<'_>,
) -> Result<Reply, Failure>
where
    E: Env<Act = usize> + 'static,
{
    let act = |p: &glimpse_reinforce::Reinforce<O, A>, obs: &[f32], deterministic: bool, rng: &mut ChaCha12Rng| {
        Ok(Actions::Discrete(p.act(obs, deterministic, rng).into_iter().map(|a| a as i64).collect()))
    };
    serve(ReinforceTrainer::<E, O, A>::new(config(settings)?, make_env), request, act)
}

/// An env action as Python gets it.
pub trait PyAction: Sized {
    fn into_actions(actions: Vec<Self>) -> Actions;
}

impl PyAction for usize {
    fn into_actions(actions: Vec<Self>) -> Actions {
        Actions::Discrete(actions.into_iter().map(|a| a as i64).collect())
    }
}

impl<const N: usize> PyAction for [f32; N] {
    fn into_actions(actions: Vec<Self>) -> Actions {
        Actions::Continuous { values: actions.into_iter().flatten().collect(), width: N }
    }
}

/// PPO or A2C (as `kind` says) with the trainer that `ppo` or `a2c` builds from its config; both
/// train the same policy type `P` on `O` observation values.
fn actor_critic<P, T1, T2, const O: usize>(
    kind: Kind,
    settings: &Value,
    request: Request<'_>,
    ppo: impl FnOnce(PpoConfig) -> Result<T1, glimpse_actor_critic::Error>,
    a2c: impl FnOnce(A2cConfig) -> Result<T2, glimpse_actor_critic::Error>,
) -> Result<Reply, Failure>
where
    P: ActorCritic<O> + Send + 'static,
    P::Action: PyAction,
    T1: Train<Error = glimpse_actor_critic::Error, Policy = P>,
    T2: Train<Error = glimpse_actor_critic::Error, Policy = P>,
{
    let act = |p: &P, obs: &[f32], deterministic: bool, rng: &mut ChaCha12Rng| {
        Ok(P::Action::into_actions(p.act(obs, deterministic, rng).env_actions))
    };
    if kind == Kind::Ppo {
        serve(ppo(config(settings)?), request, act)
    } else {
        serve(a2c(config(settings)?), request, act)
    }
}
