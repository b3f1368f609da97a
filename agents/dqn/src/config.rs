//! DQN hyperparameters: one struct, loadable from TOML/JSON (`--config`) and overridable by flags.

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

/// DQN settings. The defaults solve CartPole-v1 (greedy mean return >= 475 over 100 episodes)
/// in about 10-20k environment steps.
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
    /// Episodes per greedy evaluation.
    #[arg(long, default_value_t = 100)]
    pub eval_episodes: usize,
    /// Stop once a greedy evaluation's mean return reaches this (the environment's "solved" level).
    #[arg(long)]
    pub solve_threshold: Option<f64>,
    /// Environment steps between checkpoints (0: only at the end).
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
    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 9] = [
            (self.num_envs >= 1, "num_envs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.buffer_size >= self.batch_size, "buffer_size must be at least batch_size"),
            (self.learning_rate > 0.0 && self.learning_rate.is_finite(), "learning_rate must be positive"),
            ((0.0..=1.0).contains(&self.gamma), "gamma must lie in [0, 1]"),
            (self.tau > 0.0 && self.tau <= 1.0, "tau must lie in (0, 1]"),
            (self.n_step >= 1, "n_step must be at least 1"),
            (self.train_frequency >= 1 && self.target_network_frequency >= 1, "frequencies must be at least 1"),
            ((0.0..=1.0).contains(&self.exploration_fraction), "exploration_fraction must lie in [0, 1]"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err((*msg).to_string()),
            None => Ok(()),
        }
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
        assert!(Config::default().validate().is_ok());
        assert!(Config { gamma: 1.5, ..Default::default() }.validate().unwrap_err().contains("gamma"));
    }

    #[test]
    fn epsilon_decays_linearly_then_stays() {
        let c =
            Config { total_timesteps: 1000, exploration_fraction: 0.5, start_e: 1.0, end_e: 0.1, ..Default::default() };
        assert_eq!(c.epsilon(0), 1.0);
        assert!((c.epsilon(250) - 0.55).abs() < 1e-12);
        assert!((c.epsilon(500) - 0.1).abs() < 1e-12);
        assert!((c.epsilon(900) - 0.1).abs() < 1e-12);
    }
}
