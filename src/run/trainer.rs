//! The library API every RL agent's `Trainer` has, written once: [`Train`]. An agent holds a
//! [`Setup`] and implements four small methods (train a run with its own loop, restore and
//! evaluate its policy, the episodes `--eval` plays); the builder (`seed`, `run_dir`, `name`),
//! `train`, `resume`, `run`, `run_command_line`, `load_policy` and `evaluate` come with it, the
//! same for DQN, PPO, A2C and REINFORCE:
//!
//! ```no_run
//! # fn demo<T: glimpse::run::Train>(trainer: T) -> Result<(), T::Error> {
//! use glimpse::run::Train;
//! let trainer = trainer.seed(1).run_dir("runs/mine");
//! let summary = trainer.train()?; // run dir, TensorBoard, checkpoints, summary.json
//! let result = trainer.evaluate("runs/mine", 100, 7)?; // greedy, episode i seeded 7 + i
//! println!("{} env steps, greedy mean {}", summary.env_steps, result.mean());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use super::{with_defaults, Cli, Eval, EvalReport, Launch, Outcome, RlSummary, Run, RunArgs, RunConfig, RunError};
use crate::evaluate::{EvalResult, Frames};

/// What a trainer started from code sets its runs up with: the config, the seed, the run
/// directory and the name its default run directory starts with.
#[derive(Debug, Clone)]
pub struct Setup<C> {
    /// The settings of a new run (and the defaults `--help` shows).
    pub config: C,
    /// The seed of a new run (default 1, as `--seed`).
    pub seed: u64,
    /// The directory of a new run (default `runs/<name>-<YYYYmmdd-HHMMSS>`).
    pub run_dir: Option<PathBuf>,
    /// The name of the default run directory.
    pub name: String,
}

impl<C: RunConfig> Setup<C> {
    /// A new run of `config`, seed 1, in `runs/<name>-<time>`.
    pub fn new(name: &str, config: C) -> Self {
        Self { config, seed: 1, run_dir: None, name: name.to_string() }
    }

    /// What `args` ask for, with this config under `args.config` (a resumed or evaluated run
    /// keeps its saved config).
    pub fn launch(&self, args: &RunArgs) -> Result<Launch<C>, RunError> {
        Launch::from_code(&self.name, args, &self.config)
    }

    /// The flags of a new run with this seed and run directory.
    pub fn new_run(&self) -> RunArgs {
        RunArgs { seed: self.seed, run_dir: self.run_dir.clone(), ..RunArgs::default() }
    }

    /// Opens the last checkpoint of run directory `dir` (finished or not), reading nothing else
    /// and writing nothing.
    pub fn open(&self, dir: &Path) -> Result<Eval<C>, RunError> {
        let args = RunArgs { eval: Some(dir.to_path_buf()), ..RunArgs::default() };
        match self.launch(&args)? {
            Launch::Eval(eval) => Ok(eval),
            Launch::Train(_) => unreachable!("--eval launches an evaluation"),
        }
    }
}

impl<C: RunConfig + clap::Args> Launch<C> {
    /// [`from_command_line_with`](Launch::from_command_line_with) on the given arguments (the
    /// first is the program name) instead of the process's; a flag error (or `--help`) is
    /// returned as [`RunError::Config`] rather than printed.
    pub fn from_args_with(example: &str, defaults: &C, args: &[&str]) -> Result<Self, RunError> {
        let command = with_defaults(Cli::<C>::command().bin_name(example.to_string()), defaults);
        let flags = |e: clap::Error| RunError::Config { path: "<command line>".into(), message: e.to_string() };
        let matches = command.try_get_matches_from(args).map_err(flags)?;
        let cli = Cli::<C>::from_arg_matches(&matches).map_err(flags)?;
        Self::new(example, &cli.run, &cli.config, defaults, &matches)
    }
}

/// An RL agent's trainer: envs from a factory, a network checked against their spaces, and one
/// training loop of the agent's own ([`train_run`](Train::train_run)); everything else a user
/// calls is provided here, so every agent has the same API.
pub trait Train: Sized {
    /// The agent's settings.
    type Config: RunConfig + clap::Args;
    /// What a trained run's checkpoint gives back to act with.
    type Policy;
    /// The agent's error.
    type Error: From<RunError>;

    /// The config, seed, run directory and name.
    fn setup(&self) -> &Setup<Self::Config>;
    /// The same, to change.
    fn setup_mut(&mut self) -> &mut Setup<Self::Config>;
    /// Trains `run` (a new one, or `--resume`d: its checkpoint is loaded) with the agent's loop.
    fn train_run(&self, run: Run<Self::Config>) -> Result<Outcome<RlSummary>, Self::Error>;
    /// The policy saved in `eval`'s checkpoint.
    fn restore_policy(&self, eval: &Eval<Self::Config>) -> Result<Self::Policy, Self::Error>;
    /// Greedy evaluation of `policy` on `episodes` envs from the trainer's factory, episode i
    /// reset with `seed + i` ([`crate::evaluate::evaluate_greedy`]).
    fn evaluate_policy(&self, policy: &Self::Policy, episodes: usize, seed: u64) -> Result<EvalResult, Self::Error>;
    /// The episodes `--eval` plays with this config (its `eval_episodes`).
    fn eval_episodes(config: &Self::Config) -> usize;
    /// Plays `episodes` greedy episodes of `policy` one after another, episode i reset with
    /// `seed + i`, handing each rendered frame to `frame` ([`crate::evaluate::record_greedy`]).
    fn record_policy(
        &self,
        policy: &Self::Policy,
        episodes: usize,
        seed: u64,
        frame: &mut Frames,
    ) -> Result<EvalResult, Self::Error>;

    /// The seed of a new run: the networks' initialisation, the envs (env i reset with seed + i)
    /// and the sampling (default 1).
    fn seed(mut self, seed: u64) -> Self {
        self.setup_mut().seed = seed;
        self
    }

    /// Where a new run's files go (default `runs/<name>-<YYYYmmdd-HHMMSS>`); it must not hold a
    /// checkpoint already.
    fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.setup_mut().run_dir = Some(dir.into());
        self
    }

    /// The name the default run directory starts with (default the agent's: `dqn`, `ppo`, ...).
    fn name(mut self, name: &str) -> Self {
        self.setup_mut().name = name.to_string();
        self
    }

    /// The settings of a new run.
    fn config(&self) -> &Self::Config {
        &self.setup().config
    }

    /// Trains a new run to its end (solved, or its budget spent); returns its summary.
    fn train(&self) -> Result<RlSummary, Self::Error> {
        match self.run(&self.setup().new_run())? {
            Outcome::Finished(summary) => Ok(summary),
            _ => unreachable!("a run without --stop-after or --eval ends finished"),
        }
    }

    /// Continues the run in `dir` (stopped, or killed) from its last checkpoint to its end, with
    /// its saved config and seed (this trainer's are not used); returns its summary.
    fn resume(&self, dir: impl AsRef<Path>) -> Result<RlSummary, Self::Error> {
        let args = RunArgs { resume: Some(dir.as_ref().to_path_buf()), ..RunArgs::default() };
        match self.run(&args)? {
            Outcome::Finished(summary) => Ok(summary),
            _ => unreachable!("a resume without --stop-after ends finished"),
        }
    }

    /// Does what `args` ask for (a new run, `resume`, `eval`, `stop_after`: the builder's seed
    /// and run directory are not used), with this trainer's config under `args.config`.
    fn run(&self, args: &RunArgs) -> Result<Outcome<RlSummary>, Self::Error> {
        self.launch(self.setup().launch(args)?)
    }

    /// Parses the process's command line (the [`RunArgs`] flags and one flag per setting, this
    /// trainer's config as the defaults `--help` shows) and does what it asks for.
    fn run_command_line(&self, example: &str) -> Result<Outcome<RlSummary>, Self::Error> {
        self.launch(Launch::from_command_line_with(example, self.config())?)
    }

    /// [`run_command_line`](Train::run_command_line) on `args` (the first is the program name)
    /// instead of the process's command line; a flag error is returned, not printed.
    fn run_command_line_from(&self, args: &[&str]) -> Result<Outcome<RlSummary>, Self::Error> {
        let example = args.first().copied().unwrap_or(self.setup().name.as_str());
        self.launch(Launch::from_args_with(example, self.config(), args)?)
    }

    /// Trains, resumes or evaluates (one line printed) as `launch` says.
    fn launch(&self, launch: Launch<Self::Config>) -> Result<Outcome<RlSummary>, Self::Error> {
        match launch {
            Launch::Train(run) => self.train_run(run),
            Launch::Eval(eval) => {
                let policy = self.restore_policy(&eval)?;
                let result = self.evaluate_policy(&policy, Self::eval_episodes(&eval.config), eval.seed)?;
                let report = EvalReport::new(eval.done, eval.seed, &result);
                if let Some(path) = &eval.video {
                    let episodes = Self::eval_episodes(&eval.config).clamp(1, VIDEO_EPISODES);
                    write_video(path, |frame| self.record_policy(&policy, episodes, eval.seed, frame))?;
                }
                eval.report(&report);
                Ok(Outcome::Evaluated(report))
            }
        }
    }

    /// The policy of the last checkpoint in run directory `dir` (finished or not).
    fn load_policy(&self, dir: impl AsRef<Path>) -> Result<Self::Policy, Self::Error> {
        self.restore_policy(&self.setup().open(dir.as_ref())?)
    }

    /// Greedy evaluation of the policy saved in run directory `dir`: `episodes` episodes, episode
    /// i seeded with `seed + i`. Nothing is written into `dir`.
    fn evaluate(&self, dir: impl AsRef<Path>, episodes: usize, seed: u64) -> Result<EvalResult, Self::Error> {
        self.evaluate_policy(&self.load_policy(dir)?, episodes, seed)
    }
}

/// Episodes `--eval --video` records (the first of the evaluation's, at most).
pub const VIDEO_EPISODES: usize = 3;

/// Frames per second of `--video` GIFs.
const VIDEO_FPS: u16 = 30;

/// Writes the frames `record` hands out as a GIF at `path`. A frame that cannot be encoded stops
/// the recording with its error; a GIF that cannot be written is a [`RunError::Config`] naming
/// the file.
fn write_video<E: From<RunError>>(
    path: &Path,
    record: impl FnOnce(&mut Frames) -> Result<EvalResult, E>,
) -> Result<(), E> {
    let fail = |message: String| RunError::Config { path: path.to_path_buf(), message };
    let encode = |e: crate::image::ImageError| crate::EnvError::Other(format!("{}: {e}", path.display()));
    let mut gif: Option<crate::image::GifWriter> = None;
    record(&mut |frame| {
        let writer = match &mut gif {
            Some(writer) => writer,
            None => {
                gif.insert(crate::image::GifWriter::new(frame.width, frame.height, 1000 / VIDEO_FPS).map_err(encode)?)
            }
        };
        writer.push(&frame).map_err(encode)
    })?;
    let writer = gif.ok_or_else(|| fail("no frames were recorded".into()))?;
    writer.finish(path).map_err(|e| fail(e.to_string()).into())
}
