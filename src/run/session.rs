//! One run of a trainer: [`Launch`] decides between a new run, `--resume` and `--eval` (validating
//! everything before anything is written); [`Run`] checkpoints, stops and finishes it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{CommandFactory, FromArgMatches};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{holds_checkpoint, resolve_config, summary_line, Progress, RunArgs, RunDir, RunError};
use crate::checkpoint::{self, CheckpointError};
use crate::log::SummaryWriter;

/// What a trainer measures its progress in: the summary's key and the unit of `--stop-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Environment steps (all envs together): RL agents.
    EnvSteps,
    /// Passes over the training set: generative models and classifiers.
    Epochs,
}

impl Unit {
    /// The key in `summary.json` and `run.json`: `env_steps` or `epochs`.
    pub fn key(self) -> &'static str {
        match self {
            Unit::EnvSteps => "env_steps",
            Unit::Epochs => "epochs",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Unit::EnvSteps => "env step",
            Unit::Epochs => "epoch",
        }
    }

    fn budget_flag(self) -> &'static str {
        match self {
            Unit::EnvSteps => "total-timesteps",
            Unit::Epochs => "epochs",
        }
    }
}

/// A trainer's config, as the run layer needs it: serde (saved in the run and its checkpoints),
/// a budget and a validation that runs before anything is written.
pub trait RunConfig: Serialize + DeserializeOwned + Clone {
    /// The unit of [`budget`](RunConfig::budget) and of progress.
    const UNIT: Unit;
    /// How much training the run does at most (`total_timesteps` or `epochs`).
    fn budget(&self) -> u64;
    /// Checks every setting (ranges, sizes that cannot fit in memory); the message names the
    /// setting and says what is allowed.
    fn validate(&self) -> Result<(), String>;
    /// Checkpoint at least every this many units ([`Run::tick`]); 0: only where the trainer calls
    /// [`Run::checkpoint`], at `--stop-after` and at the end.
    fn checkpoint_every(&self) -> u64 {
        0
    }
}

/// The state a trainer trains (networks, optimizers, loop state): saved into and loaded from a
/// snapshot directory. Whatever `save` writes, `load` must restore so that the run continues bit
/// for bit.
pub trait Checkpoint {
    /// Writes the state's files into `snapshot` (a fresh directory).
    fn save(&self, snapshot: &Path) -> Result<(), CheckpointError>;
    /// Restores what [`save`](Checkpoint::save) wrote.
    fn load(&mut self, snapshot: &Path) -> Result<(), CheckpointError>;
}

/// The file the run layer adds to every snapshot.
pub const RUN_STATE: &str = "run.json";

/// What the run layer keeps in each snapshot beside the trainer's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    /// The run's seed.
    pub seed: u64,
    /// The unit of `done`.
    pub unit: Unit,
    /// Training done when the snapshot was written.
    pub done: u64,
    /// Seconds spent training up to the snapshot, over every process of the run.
    pub wall_seconds: f64,
    /// Set by [`Run::finish`]: such a run is not resumed.
    pub finished: bool,
    /// The config in effect.
    pub config: serde_json::Value,
}

/// Whether a training loop goes on after [`Run::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// `--stop-after` was reached: a checkpoint is written; return without finishing.
    Stop,
}

/// Trains a model (a new run), continues one (--resume DIR) or evaluates one (--eval DIR).
///
/// The command line of every trainer: [`RunArgs`] and the config's own flags.
#[derive(clap::Parser, Debug)]
#[command(long_about = None)]
pub struct Cli<C: clap::Args> {
    /// Seed, run directory, resume, eval, config file, stop-after.
    #[command(flatten)]
    pub run: RunArgs,
    /// The trainer's settings.
    #[command(flatten)]
    pub config: C,
}

/// What the command line asked for.
pub enum Launch<C> {
    /// Train: a new run, or `--resume` of a saved one.
    Train(Run<C>),
    /// `--eval DIR`: load DIR's checkpoint and evaluate it.
    Eval(Eval<C>),
}

impl<C: RunConfig + clap::Args> Launch<C> {
    /// Parses the process's command line as a [`Cli<C>`] (the config's flags default to their
    /// `#[arg(default_value_t)]`s) and prepares the run. `--help` and flag errors exit, as clap does.
    pub fn from_command_line(example: &str) -> Result<Self, RunError> {
        let matches = Cli::<C>::command().bin_name(example.to_string()).get_matches();
        let cli = Cli::<C>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        Self::new(example, &cli.run, &cli.config, &cli.config, &matches)
    }

    /// [`from_command_line`](Launch::from_command_line) with an example's own defaults (e.g. tuned
    /// hyperparameters for its env): `--help` shows them, and they sit under `--config` and flags.
    pub fn from_command_line_with(example: &str, defaults: &C) -> Result<Self, RunError> {
        let command = with_defaults(Cli::<C>::command().bin_name(example.to_string()), defaults);
        let matches = command.get_matches();
        let cli = Cli::<C>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        Self::new(example, &cli.run, &cli.config, defaults, &matches)
    }
}

/// Sets the default of every flag whose id is a field of `defaults` to that field's value, so that
/// `--help` documents the defaults in effect. Fields that are `null` (an unset `Option`) keep no
/// default. Bool fields must be flags that take a value (`ArgAction::Set`).
pub fn with_defaults<T: Serialize>(mut command: clap::Command, defaults: &T) -> clap::Command {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(defaults) else { return command };
    for (key, value) in map {
        let text = match value {
            serde_json::Value::Null | serde_json::Value::Array(_) | serde_json::Value::Object(_) => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) if n.is_f64() => float_text(n.as_f64().unwrap_or(f64::NAN)),
            other => other.to_string(),
        };
        if command.get_arguments().any(|a| a.get_id() == key.as_str()) {
            command = command.mut_arg(key, |a| a.default_value(text));
        }
    }
    command
}

/// A float default as `--help` shows it: serde widens an `f32` field to `f64` (0.98 becomes
/// 0.9800000190734863), so a value that is exactly an `f32` is written as that `f32` (`0.98`),
/// which parses back to the same `f32`.
fn float_text(v: f64) -> String {
    let narrow = v as f32;
    if narrow as f64 == v {
        narrow.to_string()
    } else {
        v.to_string()
    }
}

impl<C: RunConfig> Launch<C> {
    /// Prepares a run started from code (not a command line): `config` for a new run; a resumed
    /// or evaluated run (`args.resume`, `args.eval`) keeps the config it saved.
    pub fn from_code(example: &str, args: &RunArgs, config: &C) -> Result<Self, RunError> {
        Self::new(example, args, config, config, &clap::ArgMatches::default())
    }

    /// Prepares a run from parsed flags: `cli` is the config clap parsed, `defaults` what lies
    /// under a `--config` file for a new run (usually `cli` itself, or tuned values of the
    /// example), `matches` tells which flags were given.
    ///
    /// Everything is checked before anything is written: the config (layered and validated),
    /// for a new run that the directory holds no checkpoint, for `--resume` that the checkpoint
    /// is intact, not finished and has budget left, and the directory's lock.
    pub fn new(
        example: &str,
        args: &RunArgs,
        cli: &C,
        defaults: &C,
        matches: &clap::ArgMatches,
    ) -> Result<Self, RunError> {
        let seed_given = matches.try_get_raw("seed").ok().flatten().is_some()
            && matches.value_source("seed") == Some(clap::parser::ValueSource::CommandLine);
        if let Some(dir) = &args.eval {
            let (snapshot, state) = open_snapshot(dir)?;
            let config = saved_config::<C>(dir, &state, cli, args, matches)?;
            if args.video.is_some() && C::UNIT == Unit::Epochs {
                let message = "--video records episodes of an RL agent; this trainer has none".to_string();
                return Err(RunError::Config { path: "<command line>".into(), message });
            }
            let video = args.video.clone();
            return Ok(Launch::Eval(Eval {
                config,
                seed: args.seed,
                dir: dir.clone(),
                snapshot,
                done: state.done,
                video,
            }));
        }
        if let Some(dir) = &args.resume {
            let (snapshot, state) = open_snapshot(dir)?;
            if seed_given && args.seed != state.seed {
                let message = format!("it was started with --seed {}; a resumed run keeps its seed", state.seed);
                return Err(RunError::Resume { path: dir.clone(), message });
            }
            if state.unit != C::UNIT {
                let message = format!("it counts {}, this trainer {}", state.unit.key(), C::UNIT.key());
                return Err(RunError::Resume { path: dir.clone(), message });
            }
            if state.finished {
                return Err(RunError::Finished { path: dir.clone(), unit: C::UNIT.key(), done: state.done });
            }
            let config = saved_config::<C>(dir, &state, cli, args, matches)?;
            if state.done >= config.budget() {
                return Err(RunError::Budget {
                    path: dir.clone(),
                    unit: C::UNIT.key(),
                    flag: C::UNIT.budget_flag(),
                    done: state.done,
                    budget: config.budget(),
                });
            }
            let mut run_dir = RunDir::open(dir)?;
            run_dir.lock()?;
            run_dir.write_config(&config)?;
            let run = Run::start(run_dir, config, state.seed, Some(snapshot), &state, args.stop_after);
            return Ok(Launch::Train(run));
        }
        let source = args.config.clone().unwrap_or_else(|| "<command line>".into());
        let config = resolve_config(defaults, cli, args.config.as_deref(), matches)?;
        config.validate().map_err(|message| RunError::Config { path: source, message })?;
        let path = args.run_dir.clone().unwrap_or_else(|| super::default_run_dir(example));
        if holds_checkpoint(&path) {
            return Err(RunError::HasCheckpoint { path });
        }
        let mut run_dir = RunDir::create(example, Some(path.clone()))?;
        run_dir.lock()?;
        // Checked again under the lock: another process may have started in between.
        if holds_checkpoint(&path) {
            return Err(RunError::HasCheckpoint { path });
        }
        run_dir.write_config(&config)?;
        let fresh = RunState {
            seed: args.seed,
            unit: C::UNIT,
            done: 0,
            wall_seconds: 0.0,
            finished: false,
            config: serde_json::Value::Null,
        };
        Ok(Launch::Train(Run::start(run_dir, config, args.seed, None, &fresh, args.stop_after)))
    }
}

/// Reads and checks the current snapshot of run `dir` and its [`RunState`].
fn open_snapshot(dir: &Path) -> Result<(PathBuf, RunState), RunError> {
    let run = RunDir::open(dir)?;
    let checkpoint_dir = run.checkpoint_dir();
    if !checkpoint_dir.join(checkpoint::LATEST).exists() {
        if let Some(message) = missing_latest(&checkpoint_dir) {
            return Err(RunError::Resume { path: dir.into(), message });
        }
    }
    let snapshot = checkpoint::current_snapshot(&checkpoint_dir)?;
    let file = snapshot.join(super::RUN_STATE);
    if !file.is_file() {
        let message = format!("its checkpoint has no {} (written by an older version of glimpse)", super::RUN_STATE);
        return Err(RunError::Resume { path: dir.into(), message });
    }
    Ok((snapshot, checkpoint::load_json(&file)?))
}

/// When a checkpoint directory holds snapshots but no `LATEST` naming the current one (deleted by
/// hand?), the message saying so and how to pick one; `None` when it holds no snapshot.
fn missing_latest(checkpoint_dir: &Path) -> Option<String> {
    let mut snapshots: Vec<String> = std::fs::read_dir(checkpoint_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with("snap-"))
        .collect();
    if snapshots.is_empty() {
        return None;
    }
    snapshots.sort();
    Some(format!(
        "{} is missing: it names the current snapshot (found: {}); write the name of the snapshot to resume from into it",
        checkpoint_dir.join(checkpoint::LATEST).display(),
        snapshots.join(", ")
    ))
}

/// The config saved in `state`, with `--config` and the flags given on the command line on top,
/// validated.
fn saved_config<C: RunConfig>(
    dir: &Path,
    state: &RunState,
    cli: &C,
    args: &RunArgs,
    matches: &clap::ArgMatches,
) -> Result<C, RunError> {
    let source = dir.join("checkpoint").join(super::RUN_STATE);
    let saved: C = serde_json::from_value(state.config.clone())
        .map_err(|e| RunError::Config { path: source.clone(), message: e.to_string() })?;
    let config = resolve_config(&saved, cli, args.config.as_deref(), matches)?;
    let source = args.config.clone().unwrap_or(source);
    config.validate().map_err(|message| RunError::Config { path: source, message })?;
    Ok(config)
}

/// `--eval DIR`: the saved config and the checkpoint to evaluate. Nothing is written into DIR
/// (it may be read-only); [`Eval::report`] prints the result.
pub struct Eval<C> {
    /// The run's config (flags given now on top, e.g. the number of evaluation episodes).
    pub config: C,
    /// The seed given on the command line, for the evaluation.
    pub seed: u64,
    /// The run directory.
    pub dir: PathBuf,
    /// The checked snapshot.
    pub snapshot: PathBuf,
    /// Training done when the snapshot was written.
    pub done: u64,
    /// Where `--video` asked for a GIF of greedy episodes.
    pub video: Option<PathBuf>,
}

impl<C> Eval<C> {
    /// Loads the checkpoint into `state`.
    pub fn restore(&self, state: &mut impl Checkpoint) -> Result<(), RunError> {
        Ok(state.load(&self.snapshot)?)
    }

    /// Prints the evaluation as one line (`key=value ... checkpoint=DIR`) and returns it as JSON.
    pub fn report(&self, metrics: &impl Serialize) -> serde_json::Value {
        let mut value = serde_json::to_value(metrics).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert("checkpoint".into(), self.dir.display().to_string().into());
        }
        println!("{}", summary_line(&value));
        value
    }
}

/// A training run in progress: its directory (locked), config, seed, TensorBoard writer and
/// progress bar.
pub struct Run<C> {
    /// The settings (validated).
    pub config: C,
    /// The seed (a resumed run's own).
    pub seed: u64,
    dir: RunDir,
    resume_from: Option<PathBuf>,
    done_at_start: u64,
    prior_seconds: f64,
    started: Instant,
    stop_after: Option<u64>,
    last_tick: u64,
    progress: Progress,
}

impl<C: RunConfig> Run<C> {
    fn start(
        dir: RunDir,
        config: C,
        seed: u64,
        resume_from: Option<PathBuf>,
        state: &RunState,
        stop_after: Option<u64>,
    ) -> Self {
        let progress = if std::env::var_os("GLIMPSE_NO_PROGRESS").is_some() {
            Progress::hidden()
        } else {
            Progress::with_unit(config.budget(), C::UNIT.key())
        };
        progress.update(state.done, None);
        Self {
            config,
            seed,
            dir,
            resume_from,
            done_at_start: state.done,
            prior_seconds: state.wall_seconds,
            started: Instant::now(),
            stop_after,
            last_tick: state.done,
            progress,
        }
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether this run continues a saved one (`--resume`).
    pub fn resumed(&self) -> bool {
        self.resume_from.is_some()
    }

    /// Training done when this process started (0 for a new run).
    pub fn done_at_start(&self) -> u64 {
        self.done_at_start
    }

    /// Loads the checkpoint being resumed into `state`; returns whether there was one.
    pub fn restore(&self, state: &mut impl Checkpoint) -> Result<bool, RunError> {
        match &self.resume_from {
            Some(snapshot) => {
                state.load(snapshot)?;
                eprintln!("resuming {} at {} {}", self.path().display(), C::UNIT.label(), self.done_at_start);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The TensorBoard writer.
    pub fn writer(&mut self) -> Result<&mut SummaryWriter, RunError> {
        self.dir.writer()
    }

    /// Logs one TensorBoard scalar.
    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) -> Result<(), RunError> {
        let w = self.dir.writer()?;
        w.scalar(tag, value, step).map_err(|source| RunError::Io { path: w.path().to_path_buf(), source })
    }

    /// The progress bar.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Seconds spent training, over every process of the run.
    pub fn wall_seconds(&self) -> f64 {
        self.prior_seconds + self.started.elapsed().as_secs_f64()
    }

    /// Writes a checkpoint snapshot of `state` at `done` (atomic: a crash leaves the previous one).
    pub fn checkpoint(&mut self, done: u64, state: &impl Checkpoint) -> Result<(), RunError> {
        self.write_snapshot(done, state, false)
    }

    fn write_snapshot(&mut self, done: u64, state: &impl Checkpoint, finished: bool) -> Result<(), RunError> {
        let run_state = RunState {
            seed: self.seed,
            unit: C::UNIT,
            done,
            wall_seconds: self.wall_seconds(),
            finished,
            config: serde_json::to_value(&self.config)
                .map_err(|e| RunError::Config { path: "config".into(), message: e.to_string() })?,
        };
        checkpoint::save_snapshot(&self.dir.checkpoint_dir(), |snap| -> Result<(), CheckpointError> {
            state.save(snap)?;
            checkpoint::save_json(&run_state, &snap.join(super::RUN_STATE))
        })?;
        Ok(())
    }

    /// Call after each step or epoch with the training done so far: moves the progress bar,
    /// checkpoints every [`RunConfig::checkpoint_every`], and at `--stop-after` writes a
    /// checkpoint, says how to continue and returns [`Control::Stop`].
    pub fn tick(&mut self, done: u64, state: &impl Checkpoint) -> Result<Control, RunError> {
        let prev = std::mem::replace(&mut self.last_tick, done);
        self.progress.update(done, None);
        if self.stop_after.is_some_and(|s| done >= s) && done < self.config.budget() {
            self.write_snapshot(done, state, false)?;
            self.dir.flush()?;
            self.progress.finish();
            println!("stopped at {} {done}; continue with --resume {}", C::UNIT.label(), self.path().display());
            return Ok(Control::Stop);
        }
        let every = self.config.checkpoint_every();
        if every > 0 && done / every > prev / every {
            self.write_snapshot(done, state, false)?;
        }
        Ok(Control::Continue)
    }

    /// Ends the run: a final checkpoint marked finished (a later `--resume` is refused), then
    /// `summary.json` = `seed`, `wall_seconds`, `env_steps` or `epochs`, then `metrics`' keys (an
    /// object). Prints the summary line and returns the summary.
    pub fn finish(
        mut self,
        done: u64,
        state: &impl Checkpoint,
        metrics: &impl Serialize,
    ) -> Result<serde_json::Value, RunError> {
        self.progress.finish();
        let wall_seconds = self.wall_seconds();
        self.write_snapshot(done, state, true)?;
        let mut summary = serde_json::Map::new();
        summary.insert("seed".into(), self.seed.into());
        summary.insert("wall_seconds".into(), wall_seconds.into());
        summary.insert(C::UNIT.key().into(), done.into());
        let metrics = serde_json::to_value(metrics)
            .map_err(|e| RunError::Config { path: "summary".into(), message: e.to_string() })?;
        match metrics {
            serde_json::Value::Object(map) => summary.extend(map),
            serde_json::Value::Null => {}
            other => {
                summary.insert("metrics".into(), other);
            }
        }
        let summary = serde_json::Value::Object(summary);
        self.dir.write_summary(&summary)?;
        self.dir.flush()?;
        println!("{} run_dir={}", summary_line(&summary), self.path().display());
        Ok(summary)
    }
}

/// Runs `main` and, on an error, prints it as one line (`error: ...`, its `Display`, never the
/// `Debug` form) and exits with status 1. For examples: `fn main() { exit_on_error(run()) }`.
pub fn exit_on_error<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        /// Epochs.
        #[arg(long, default_value_t = 4)]
        epochs: u64,
        /// Learning rate.
        #[arg(long, default_value_t = 0.1)]
        learning_rate: f64,
    }

    impl RunConfig for Cfg {
        const UNIT: Unit = Unit::Epochs;
        fn budget(&self) -> u64 {
            self.epochs
        }
        fn validate(&self) -> Result<(), String> {
            if self.learning_rate > 0.0 {
                Ok(())
            } else {
                Err(format!("learning_rate must be > 0, got {}", self.learning_rate))
            }
        }
    }

    /// A counter whose value is its whole state.
    #[derive(Default)]
    struct Counter(u64);

    impl Checkpoint for Counter {
        fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
            checkpoint::save_json(&self.0, &snap.join("counter.json"))
        }
        fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
            self.0 = checkpoint::load_json(&snap.join("counter.json"))?;
            Ok(())
        }
    }

    fn launch(args: &[&str]) -> Result<Launch<Cfg>, RunError> {
        let matches = Cli::<Cfg>::command().try_get_matches_from(args).unwrap();
        let cli = Cli::<Cfg>::from_arg_matches(&matches).unwrap();
        Launch::new("test", &cli.run, &cli.config, &cli.config, &matches)
    }

    /// Trains the counter to its budget (or `--stop-after`), one tick per epoch.
    fn train(args: &[&str]) -> Result<Option<serde_json::Value>, RunError> {
        let Launch::Train(mut run) = launch(args)? else { panic!("not a training run") };
        let mut state = Counter::default();
        run.restore(&mut state)?;
        while state.0 < run.config.epochs {
            state.0 += 1;
            if run.tick(state.0, &state)? == Control::Stop {
                return Ok(None);
            }
        }
        let value = state.0;
        run.finish(state.0, &state, &serde_json::json!({ "value": value })).map(Some)
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("glimpse-session-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn stop_resume_finish_and_the_guards() {
        std::env::set_var("GLIMPSE_NO_PROGRESS", "1");
        let dir = temp("guards");
        let d = dir.to_str().unwrap();
        assert!(train(&["t", "--run-dir", d, "--seed", "5", "--stop-after", "2"]).unwrap().is_none());
        // A new run into a directory with a checkpoint is refused.
        let err = train(&["t", "--run-dir", d]).unwrap_err();
        assert!(matches!(err, RunError::HasCheckpoint { .. }), "{err}");
        // A rejected config on --resume changes nothing on disk and leaves the run resumable.
        let config_before = std::fs::read(dir.join("config.json")).unwrap();
        let err = train(&["t", "--resume", d, "--learning-rate=-1"]).unwrap_err();
        assert!(err.to_string().contains("learning_rate must be > 0"), "{err}");
        assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), config_before);
        // Another seed is refused; the saved one is kept.
        assert!(matches!(train(&["t", "--resume", d, "--seed", "6"]), Err(RunError::Resume { .. })));
        // Two writers: while one holds the lock, a resume is refused.
        let lock = crate::run::RunLock::acquire(&dir).unwrap();
        assert!(matches!(train(&["t", "--resume", d]), Err(RunError::Locked { .. })));
        drop(lock);
        let summary = train(&["t", "--resume", d]).unwrap().unwrap();
        assert_eq!(summary["epochs"], 4);
        assert_eq!(summary["seed"], 5);
        assert_eq!(summary["value"], 4);
        assert!(summary["wall_seconds"].as_f64().unwrap() >= 0.0);
        // A finished run is not resumed, even with a larger budget.
        let err = train(&["t", "--resume", d, "--epochs", "9"]).unwrap_err();
        assert!(matches!(err, RunError::Finished { .. }), "{err}");
        // --eval reads the checkpoint and the saved config.
        let Launch::Eval(eval) = launch(&["t", "--eval", d]).unwrap() else { panic!("not an eval") };
        let mut state = Counter::default();
        eval.restore(&mut state).unwrap();
        assert_eq!((state.0, eval.done, eval.config.epochs), (4, 4, 4));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stopped_and_resumed_run_equals_the_uninterrupted_one_and_budget_is_checked() {
        std::env::set_var("GLIMPSE_NO_PROGRESS", "1");
        let (a, b) = (temp("whole"), temp("parts"));
        let whole = train(&["t", "--run-dir", a.to_str().unwrap()]).unwrap().unwrap();
        // Reaching --stop-after at the budget is the end of the run, not a stop.
        let b_args = ["t", "--run-dir", b.to_str().unwrap(), "--stop-after", "3", "--epochs", "3"];
        assert!(train(&b_args).unwrap().is_some());
        assert!(matches!(launch(&["t", "--resume", b.to_str().unwrap()]), Err(RunError::Finished { .. })));
        let parts = temp("parts2");
        let p = parts.to_str().unwrap();
        assert!(train(&["t", "--run-dir", p, "--stop-after", "1"]).unwrap().is_none());
        let err = train(&["t", "--resume", p, "--epochs", "1"]).unwrap_err();
        assert!(matches!(err, RunError::Budget { .. }) && err.to_string().contains("--epochs"), "{err}");
        let resumed = train(&["t", "--resume", p]).unwrap().unwrap();
        for key in ["seed", "epochs", "value"] {
            assert_eq!(whole[key], resumed[key], "{key}");
        }
        for d in [a, b, parts] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn a_deleted_latest_is_named_in_the_resume_error() {
        std::env::set_var("GLIMPSE_NO_PROGRESS", "1");
        let dir = temp("latest");
        let d = dir.to_str().unwrap();
        assert!(train(&["t", "--run-dir", d, "--stop-after", "2"]).unwrap().is_none());
        std::fs::remove_file(dir.join("checkpoint").join(checkpoint::LATEST)).unwrap();
        for args in [["t", "--resume", d], ["t", "--eval", d]] {
            let err = launch(&args).err().expect("refused");
            let message = err.to_string();
            assert!(message.contains("LATEST is missing") && message.contains("found: snap-"), "{message}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn example_defaults_show_in_help_and_sit_under_flags() {
        let defaults = Cfg { epochs: 7, learning_rate: 0.25 };
        let mut command = with_defaults(Cli::<Cfg>::command(), &defaults);
        let help = command.render_help().to_string();
        assert!(help.contains("[default: 7]") && help.contains("[default: 0.25]"), "{help}");
        // An f32 setting shows the value it was written as, not its f64 widening.
        #[derive(Serialize)]
        struct Narrow {
            learning_rate: f32,
        }
        let help = with_defaults(Cli::<Cfg>::command(), &Narrow { learning_rate: 0.98 }).render_help().to_string();
        assert!(help.contains("[default: 0.98]"), "{help}");
        assert_eq!((float_text(1e-3), float_text(0.1f32 as f64)), ("0.001".to_string(), "0.1".to_string()));
        let matches = command.try_get_matches_from(["t", "--epochs", "3"]).unwrap();
        let cli = Cli::<Cfg>::from_arg_matches(&matches).unwrap();
        let c = resolve_config(&defaults, &cli.config, None, &matches).unwrap();
        assert_eq!(c, Cfg { epochs: 3, learning_rate: 0.25 });
    }

    #[test]
    fn a_new_run_with_a_bad_config_writes_nothing() {
        let dir = temp("badcfg");
        let err = train(&["t", "--run-dir", dir.to_str().unwrap(), "--learning-rate", "0"]).unwrap_err();
        assert!(matches!(err, RunError::Config { .. }), "{err}");
        assert!(!dir.exists());
    }
}
