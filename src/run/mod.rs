//! The run layer every trainer uses: the command line (`--seed`, `--run-dir`, `--config`,
//! `--resume`, `--eval`, `--stop-after`), the run directory and its lock, the TensorBoard writer,
//! the progress bar, checkpoint snapshots, the "finished run" and "budget" guards, and
//! `summary.json` with one schema.
//!
//! A trainer's config implements [`RunConfig`] (its budget, unit and validation); the state it
//! trains implements [`Checkpoint`] (save into / load from a snapshot directory). Its loop stays its
//! own and visible:
//!
//! ```no_run
//! # use glimpse::run::*;
//! # use glimpse::checkpoint::CheckpointError;
//! # #[derive(Clone, serde::Serialize, serde::Deserialize, clap::Args)]
//! # struct Config { #[arg(long, default_value_t = 10)] epochs: u64 }
//! # impl RunConfig for Config {
//! #     const UNIT: Unit = Unit::Epochs;
//! #     fn budget(&self) -> u64 { self.epochs }
//! #     fn validate(&self) -> Result<(), String> { Ok(()) }
//! # }
//! # struct State { epoch: u64 }
//! # impl Checkpoint for State {
//! #     fn save(&self, snap: &std::path::Path) -> Result<(), CheckpointError> { glimpse::checkpoint::save_json(&self.epoch, &snap.join("s.json")) }
//! #     fn load(&mut self, snap: &std::path::Path) -> Result<(), CheckpointError> { self.epoch = glimpse::checkpoint::load_json(&snap.join("s.json"))?; Ok(()) }
//! # }
//! # fn main() -> Result<(), RunError> {
//! let mut run = match Launch::<Config>::from_command_line("my_trainer")? {
//!     Launch::Train(run) => run,
//!     Launch::Eval(eval) => {
//!         let mut state = State { epoch: 0 };
//!         eval.restore(&mut state)?;
//!         eval.report(&serde_json::json!({ "epoch": state.epoch }));
//!         return Ok(());
//!     }
//! };
//! let mut state = State { epoch: 0 };
//! run.restore(&mut state)?; // a no-op unless --resume
//! while state.epoch < run.config.epochs {
//!     state.epoch += 1; // ... one epoch of training ...
//!     run.scalar("train/loss", 0.5, state.epoch)?;
//!     if run.tick(state.epoch, &state)? == Control::Stop {
//!         return Ok(()); // --stop-after: checkpoint written, `--resume` continues
//!     }
//! }
//! run.finish(state.epoch, &state, &serde_json::json!({ "test_loss": 0.4 }))?;
//! # Ok(()) }
//! ```

mod config;
mod dir;
mod envs;
mod epochs;
mod outcome;
mod progress;
mod session;
mod trainer;

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;

pub use config::{load_config, overlay_config, resolve_config};
pub use dir::{default_run_dir, holds_checkpoint, utc_timestamp, RunDir, RunLock, LOCK_FILE};
pub use envs::{snapshot_files, SavedEnvs, TIMINGS};
pub use epochs::{load_epochs, save_epochs, TrainError};
pub use outcome::{eval_seed, EvalReport, EvalStats, Outcome, RlMetrics, RlSummary};
pub use progress::{summary_line, Progress};
pub use session::{
    exit_on_error, with_defaults, Checkpoint, Cli, Control, Eval, Launch, Run, RunConfig, RunState, Unit, RUN_STATE,
};
pub use trainer::{Setup, Train};

/// Errors from setting up, checkpointing or finishing a run. Each prints as one readable line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A config file could not be parsed, or a setting is out of range.
    #[error("config {path}: {message}")]
    Config {
        /// The file (or `<command line>`).
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// `--resume`/`--eval` named a directory that is not a run directory.
    #[error("{path} is not a run directory ({message})")]
    NotARun {
        /// The directory.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// A new run was pointed at a directory that already holds a checkpoint.
    #[error("{path} already holds a checkpoint; continue it with --resume {path} or choose another --run-dir")]
    HasCheckpoint {
        /// The directory.
        path: PathBuf,
    },
    /// Another process is writing this run directory.
    #[error("{path} is being written by another process (its .lock is held); wait for it to end")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// `--resume` of a run that ended (solved, or its budget done).
    #[error("the run in {path} is finished (it ended at {unit} {done}); start a new run, or --eval it")]
    Finished {
        /// The directory.
        path: PathBuf,
        /// `env_steps` or `epochs`.
        unit: &'static str,
        /// Where it ended.
        done: u64,
    },
    /// `--resume` with a budget the run has already used up.
    #[error(
        "the run in {path} has done {done} of its {budget} {unit}; raise the budget (--{flag} or --config) to continue"
    )]
    Budget {
        /// The directory.
        path: PathBuf,
        /// `env_steps` or `epochs`.
        unit: &'static str,
        /// The flag that sets the budget.
        flag: &'static str,
        /// Done so far.
        done: u64,
        /// The budget.
        budget: u64,
    },
    /// The resumed run cannot continue exactly (e.g. `--seed` differs, old checkpoint layout).
    #[error("cannot resume {path}: {message}")]
    Resume {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Flags every training example takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Random seed: the same seed gives the same run (with --eval: the evaluation's seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where events, config, checkpoints and summary.json go [default: runs/<example>-<YYYYmmdd-HHMMSS>].
    #[arg(long, conflicts_with_all = ["resume", "eval"])]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its saved config and seed;
    /// flags and --config given now override settings, e.g. a larger budget).
    #[arg(long, conflicts_with = "eval")]
    pub resume: Option<PathBuf>,
    /// Load the checkpoint in this run directory and only evaluate it (writes nothing there).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// With --eval: also write a GIF of the first greedy episodes here (RL examples; their
    /// environments must render).
    #[arg(long, requires = "eval")]
    pub video: Option<PathBuf>,
    /// Config file (TOML or JSON); flags given on the command line override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Stop once this much training is done (env steps or epochs): write a checkpoint and exit
    /// without a summary; `--resume DIR` then continues exactly as if the run had never stopped.
    #[arg(long)]
    pub stop_after: Option<u64>,
}

/// Parses the process's command line into `A` for the example `name` (`--help` and flag errors
/// exit, as clap does), with the matches, which tell the flags given from defaults.
pub fn parse_command_line<A: clap::Parser>(name: &str) -> (A, clap::ArgMatches) {
    let matches = A::command().bin_name(name.to_string()).get_matches();
    let args = A::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (args, matches)
}

/// [`parse_command_line`] on `args` (the first is the program name); a flag error is returned
/// as its one-paragraph message.
pub fn parse_args<A: clap::Parser>(name: &str, args: &[&str]) -> Result<(A, clap::ArgMatches), String> {
    let flags = |e: clap::Error| e.to_string().trim().to_string();
    let matches = A::command().bin_name(name.to_string()).try_get_matches_from(args).map_err(flags)?;
    Ok((A::from_arg_matches(&matches).map_err(flags)?, matches))
}
