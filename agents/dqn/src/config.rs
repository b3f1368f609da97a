//! DQN hyperparameters: one struct, loadable from TOML/JSON (`--config`) and overridable by flags.

use glimpse::run::{RunConfig, Unit};
use glimpse::validate;
use serde::{Deserialize, Serialize};

/// The TD loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Smooth L1 (Huber, delta 1), as in the Nature DQN paper and SB3.
    Huber,
    /// Mean squared error, as in CleanRL.
    Mse,
}

/// The most parallel environments a run may ask for.
pub const MAX_NUM_ENVS: usize = 1 << 16;
/// The most episodes one greedy evaluation may run side by side.
pub const MAX_EVAL_EPISODES: usize = 1 << 20;
/// The longest n-step return.
pub const MAX_N_STEP: usize = 1 << 12;

/// DQN settings. The defaults solve CartPole-v1 (greedy mean return >= 475 over 100 episodes)
/// in about 20-75k environment steps. The seed is not a setting: it is the run's (`--seed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Environment steps (summed over all envs) before the run stops unsolved.
    #[arg(long, default_value_t = 100_000)]
    pub total_timesteps: u64,
    /// Number of parallel environments collecting experience.
    #[arg(long, default_value_t = 1)]
    pub num_envs: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f32,
    /// Replay buffer capacity in transitions.
    #[arg(long, default_value_t = 50_000)]
    pub buffer_size: usize,
    /// Discount factor.
    #[arg(long, default_value_t = 0.99)]
    pub gamma: f32,
    /// Target update: 1.0 copies the online network every `target_network_frequency` steps;
    /// below 1.0 blends it in (Polyak) at that frequency.
    #[arg(long, default_value_t = 1.0)]
    pub tau: f32,
    /// Environment steps between target-network updates.
    #[arg(long, default_value_t = 500)]
    pub target_network_frequency: u64,
    /// Transitions per gradient step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Exploration rate at the start.
    #[arg(long, default_value_t = 1.0)]
    pub start_e: f64,
    /// Exploration rate at the end of the schedule.
    #[arg(long, default_value_t = 0.05)]
    pub end_e: f64,
    /// Fraction of `total_timesteps` over which epsilon decays linearly.
    #[arg(long, default_value_t = 0.1)]
    pub exploration_fraction: f64,
    /// Environment steps of random play before learning starts.
    #[arg(long, default_value_t = 1000)]
    pub learning_starts: u64,
    /// Environment steps between training phases.
    #[arg(long, default_value_t = 4)]
    pub train_frequency: u64,
    /// Gradient steps per training phase.
    #[arg(long, default_value_t = 2)]
    pub gradient_steps: u64,
    /// Rewards summed per stored transition (n-step returns; 1 = one-step TD).
    #[arg(long, default_value_t = 1)]
    pub n_step: usize,
    /// Double DQN: the online network picks the next action, the target network values it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub double_dqn: bool,
    /// Dueling heads (value + advantage).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub dueling: bool,
    /// Prioritized experience replay.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub prioritized: bool,
    /// Priority exponent alpha of prioritized replay.
    #[arg(long, default_value_t = 0.6)]
    pub per_alpha: f64,
    /// Initial importance-sampling exponent beta, annealed to 1 over the run.
    #[arg(long, default_value_t = 0.4)]
    pub per_beta: f64,
    /// The TD loss.
    #[arg(long, value_enum, default_value_t = Loss::Huber)]
    pub loss: Loss,
    /// Clip the global gradient norm to this (0 disables clipping).
    #[arg(long, default_value_t = 10.0)]
    pub max_grad_norm: f32,
    /// Environment steps between greedy evaluations (0 disables them).
    #[arg(long, default_value_t = 2000)]
    pub eval_frequency: u64,
    /// Episodes per greedy evaluation (0: none, also none at the end).
    #[arg(long, default_value_t = 100)]
    pub eval_episodes: usize,
    /// Stop once a greedy evaluation's mean return reaches this (the environment's "solved" level).
    #[arg(long)]
    pub solve_threshold: Option<f64>,
    /// Environment steps between checkpoints (0: only at --stop-after and at the end).
    #[arg(long, default_value_t = 10_000)]
    pub checkpoint_frequency: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            total_timesteps: 100_000,
            num_envs: 1,
            learning_rate: 1e-3,
            buffer_size: 50_000,
            gamma: 0.99,
            tau: 1.0,
            target_network_frequency: 500,
            batch_size: 64,
            start_e: 1.0,
            end_e: 0.05,
            exploration_fraction: 0.1,
            learning_starts: 1000,
            train_frequency: 4,
            gradient_steps: 2,
            n_step: 1,
            double_dqn: true,
            dueling: false,
            prioritized: false,
            per_alpha: 0.6,
            per_beta: 0.4,
            loss: Loss::Huber,
            max_grad_norm: 10.0,
            eval_frequency: 2000,
            eval_episodes: 100,
            solve_threshold: None,
            checkpoint_frequency: 10_000,
        }
    }
}

impl Config {
    /// The settings of `cartpole_dqn`, stopping at the first greedy evaluation of 100 episodes
    /// averaging ≥ 475 (CartPole-v1 counts as solved there): the defaults with a higher learning
    /// rate (2e-3), a target network copied every 200 steps and exploration annealed over the
    /// first 5,000 steps, chosen by a sweep over seeds 1..10 and checked on seeds 11..20
    /// (docs/dqn.md): median 23k env steps to solve instead of the defaults' 52k.
    pub fn cartpole() -> Self {
        Self {
            learning_rate: 2e-3,
            target_network_frequency: 200,
            exploration_fraction: 0.05,
            solve_threshold: Some(475.0),
            ..Self::default()
        }
    }

    /// The settings of `acrobot_dqn` (with a hidden width of 128): Acrobot's episodes are long (up
    /// to 500 steps of -1) and its reward sparse, so a larger batch, more gradient steps and more
    /// exploration than CartPole; solved at a greedy mean ≥ -100.
    pub fn acrobot() -> Self {
        Self {
            total_timesteps: 100_000,
            learning_rate: 6.3e-4,
            batch_size: 128,
            target_network_frequency: 250,
            train_frequency: 4,
            gradient_steps: 4,
            exploration_fraction: 0.12,
            end_e: 0.1,
            eval_frequency: 5000,
            solve_threshold: Some(-100.0),
            ..Self::default()
        }
    }

    /// Checks every setting, naming the first bad one and what is allowed. The replay buffer is
    /// checked against the memory available for the smallest observation (one value); the agent
    /// checks it again for its real observation size before allocating ([`Config::check_memory`]).
    pub fn validate(&self) -> Result<(), String> {
        validate::at_least("total_timesteps", self.total_timesteps, 1)?;
        validate::between("num_envs", self.num_envs, 1, MAX_NUM_ENVS)?;
        validate::positive("learning_rate", self.learning_rate)?;
        validate::at_least("buffer_size", self.buffer_size, 1)?;
        validate::ensure((1..=self.buffer_size).contains(&self.batch_size), || {
            format!("batch_size must be between 1 and buffer_size ({}), got {}", self.buffer_size, self.batch_size)
        })?;
        validate::unit_interval("gamma", self.gamma)?;
        validate::positive("tau", self.tau)?;
        validate::at_most("tau", self.tau, 1.0)?;
        validate::at_least("target_network_frequency", self.target_network_frequency, 1)?;
        validate::unit_interval("start_e", self.start_e)?;
        validate::unit_interval("end_e", self.end_e)?;
        validate::unit_interval("exploration_fraction", self.exploration_fraction)?;
        validate::at_least("train_frequency", self.train_frequency, 1)?;
        validate::at_least("gradient_steps", self.gradient_steps, 1)?;
        validate::between("n_step", self.n_step, 1, MAX_N_STEP)?;
        validate::unit_interval("per_alpha", self.per_alpha)?;
        validate::unit_interval("per_beta", self.per_beta)?;
        validate::non_negative("max_grad_norm", self.max_grad_norm)?;
        validate::at_most("eval_episodes", self.eval_episodes, MAX_EVAL_EPISODES)?;
        validate::evaluation(self.eval_episodes, self.solve_threshold)?;
        self.check_memory(1)
    }

    /// Bytes of one stored transition with `obs_dim` observation values (observation and next
    /// observation, action, reward, terminated flag, discount: `f32` each), plus its share of the
    /// priority sum tree (two `f64` trees of twice the next power of two of `buffer_size` leaves).
    pub fn transition_bytes(&self, obs_dim: usize) -> u128 {
        let plain = 4 * (2 * obs_dim as u128 + 4);
        if !self.prioritized {
            return plain;
        }
        let leaves = (self.buffer_size.max(1) as u128).next_power_of_two();
        plain + (2 * 2 * 8 * leaves).div_ceil(self.buffer_size.max(1) as u128)
    }

    /// Checks that the replay buffer (twice: a checkpoint writes a copy of it) and the pending
    /// n-step transitions fit in the memory available, for observations of `obs_dim` values.
    pub fn check_memory(&self, obs_dim: usize) -> Result<(), String> {
        let item = self.transition_bytes(obs_dim);
        glimpse::limits::check_memory("buffer_size", 2 * self.buffer_size as u128, item)
            .map_err(|e| format!("{e} (twice the replay buffer: a checkpoint copies it); lower buffer_size"))?;
        glimpse::limits::check_memory("num_envs × n_step", (self.num_envs * self.n_step) as u128, item)
    }

    /// Epsilon after `step` environment steps: linear from `start_e` to `end_e`.
    pub fn epsilon(&self, step: u64) -> f64 {
        let duration = self.exploration_fraction * self.total_timesteps as f64;
        if duration <= 0.0 {
            return self.end_e;
        }
        let frac = (step as f64 / duration).min(1.0);
        self.start_e + frac * (self.end_e - self.start_e)
    }

    /// The importance-sampling exponent of prioritized replay after `step` env steps: linear
    /// from `per_beta` to 1 over the run.
    pub fn beta(&self, step: u64) -> f64 {
        self.per_beta + (1.0 - self.per_beta) * (step as f64 / self.total_timesteps as f64).min(1.0)
    }
}

impl RunConfig for Config {
    const UNIT: Unit = Unit::EnvSteps;
    fn budget(&self) -> u64 {
        self.total_timesteps
    }
    fn validate(&self) -> Result<(), String> {
        Config::validate(self)
    }
    fn checkpoint_every(&self) -> u64 {
        self.checkpoint_frequency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: Config,
    }

    #[test]
    fn clap_defaults_equal_default_and_flags_parse() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.cfg, Config::default());
        let m = Cli::command().get_matches_from(["x", "--double-dqn", "false", "--loss", "mse", "--n-step", "3"]);
        let cfg = Cli::from_arg_matches(&m).unwrap().cfg;
        assert!(!cfg.double_dqn && cfg.loss == Loss::Mse && cfg.n_step == 3);
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("--learning-rate <LEARNING_RATE>") && help.contains("[default: 0.001]"), "{help}");
    }

    #[test]
    fn every_setting_out_of_range_is_named() {
        assert!(Config::default().validate().is_ok());
        let d = Config::default;
        let bad = [
            (Config { total_timesteps: 0, ..d() }, "total_timesteps"),
            (Config { num_envs: 0, ..d() }, "num_envs"),
            (Config { num_envs: MAX_NUM_ENVS + 1, ..d() }, "num_envs"),
            (Config { learning_rate: f32::NAN, ..d() }, "learning_rate"),
            (Config { learning_rate: 0.0, ..d() }, "learning_rate"),
            (Config { buffer_size: 0, ..d() }, "buffer_size"),
            (Config { batch_size: 0, ..d() }, "batch_size"),
            (Config { batch_size: 100, buffer_size: 99, ..d() }, "batch_size"),
            (Config { gamma: 1.5, ..d() }, "gamma"),
            (Config { tau: 0.0, ..d() }, "tau"),
            (Config { target_network_frequency: 0, ..d() }, "target_network_frequency"),
            (Config { start_e: -0.1, ..d() }, "start_e"),
            (Config { end_e: 2.0, ..d() }, "end_e"),
            (Config { exploration_fraction: 1.1, ..d() }, "exploration_fraction"),
            (Config { train_frequency: 0, ..d() }, "train_frequency"),
            (Config { gradient_steps: 0, ..d() }, "gradient_steps"),
            (Config { n_step: 0, ..d() }, "n_step"),
            (Config { n_step: MAX_N_STEP + 1, ..d() }, "n_step"),
            (Config { per_alpha: f64::NAN, ..d() }, "per_alpha"),
            (Config { per_beta: -1.0, ..d() }, "per_beta"),
            (Config { max_grad_norm: f32::INFINITY, ..d() }, "max_grad_norm"),
            (Config { eval_episodes: MAX_EVAL_EPISODES + 1, ..d() }, "eval_episodes"),
            (Config { solve_threshold: Some(f64::NAN), ..d() }, "solve_threshold"),
        ];
        for (cfg, field) in bad {
            let err = cfg.validate().unwrap_err();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }

    #[test]
    fn a_replay_buffer_beyond_memory_is_refused_before_allocating() {
        let huge = Config { buffer_size: usize::MAX / 2, batch_size: 1, ..Config::default() };
        let err = huge.validate().unwrap_err();
        assert!(err.starts_with("buffer_size needs") && err.contains("memory available"), "{err}");
        // What fits for one observation value may not fit for many.
        let available = glimpse::limits::available_memory() as usize;
        let big = Config { buffer_size: available / 64, ..Config::default() };
        assert!(big.check_memory(1).is_ok());
        assert!(big.check_memory(1000).unwrap_err().starts_with("buffer_size"));
        let per = Config { prioritized: true, ..Config::default() };
        assert!(per.transition_bytes(4) > Config::default().transition_bytes(4));
    }

    #[test]
    fn epsilon_decays_linearly_then_stays() {
        let c =
            Config { total_timesteps: 1000, exploration_fraction: 0.5, start_e: 1.0, end_e: 0.1, ..Default::default() };
        assert_eq!(c.epsilon(0), 1.0);
        assert!((c.epsilon(250) - 0.55).abs() < 1e-12);
        assert!((c.epsilon(500) - 0.1).abs() < 1e-12);
        assert!((c.epsilon(900) - 0.1).abs() < 1e-12);
        assert_eq!((c.beta(0), c.beta(1000), c.beta(5000)), (0.4, 1.0, 1.0));
    }
}
