//! What every training example shares: common CLI flags, the run directory (TensorBoard events,
//! config copy, checkpoints, `summary.json`), config files layered under command-line flags,
//! a progress bar and the closing one-line summary.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Serialize};

use crate::checkpoint::{self, CheckpointError};
use crate::log::SummaryWriter;

/// Errors from setting up a run.
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
    /// A config file could not be parsed.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
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
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Flags every training example takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Random seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where events, config, checkpoints and summary.json go [default: runs/<example>-<YYYYmmdd-HHMMSS>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with = "eval")]
    pub resume: Option<PathBuf>,
    /// Load the checkpoint in this run directory and only evaluate it.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Config file (TOML or JSON); flags given on the command line override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Reads a config from a `.toml` or `.json` file (decided by the extension; TOML otherwise).
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T, RunError> {
    let value = load_config_value(path)?;
    serde_json::from_value(value).map_err(|e| RunError::Config { path: path.into(), message: e.to_string() })
}

fn load_config_value(path: &Path) -> Result<serde_json::Value, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Io { path: path.into(), source })?;
    let bad = |message: String| RunError::Config { path: path.into(), message };
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
    } else {
        let v: toml::Value = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        serde_json::to_value(v).map_err(|e| bad(e.to_string()))
    }
}

/// Overlays the keys of a TOML/JSON config file on `base`; unknown keys are an error.
pub fn overlay_config<T: Serialize + DeserializeOwned>(base: &T, path: &Path) -> Result<T, RunError> {
    let bad = |message: String| RunError::Config { path: path.into(), message };
    let mut merged = serde_json::to_value(base).map_err(|e| bad(e.to_string()))?;
    let file = load_config_value(path)?;
    let (Some(base), Some(over)) = (merged.as_object_mut(), file.as_object()) else {
        return Err(bad("expected a table of settings".into()));
    };
    for (key, value) in over {
        if !base.contains_key(key) {
            return Err(bad(format!("unknown setting `{key}`")));
        }
        base.insert(key.clone(), value.clone());
    }
    serde_json::from_value(merged).map_err(|e| bad(e.to_string()))
}

/// Layers a config: `defaults`, then the config file (if any), then flags given on the command line.
///
/// `cli` is the config clap parsed (its defaults filled in for flags not given); `matches` tells
/// which flags were really given. Flag ids must equal the serde field names, which clap's derive
/// does (field `batch_size`, flag `--batch-size`). Pass `cli` as `defaults` unless the example has
/// defaults of its own (e.g. another environment's tuned values). Unknown keys in the file are an error.
pub fn resolve_config<T: Serialize + DeserializeOwned>(
    defaults: &T,
    cli: &T,
    file: Option<&Path>,
    matches: &clap::ArgMatches,
) -> Result<T, RunError> {
    let source = file.unwrap_or(Path::new("<command line>"));
    let bad = |message: String| RunError::Config { path: source.into(), message };
    let mut merged = match file {
        Some(path) => serde_json::to_value(overlay_config(defaults, path)?),
        None => serde_json::to_value(defaults),
    }
    .map_err(|e| bad(e.to_string()))?;
    let given = serde_json::to_value(cli).map_err(|e| bad(e.to_string()))?;
    let (Some(base), Some(given)) = (merged.as_object_mut(), given.as_object()) else {
        return Err(bad("expected a table of settings".into()));
    };
    for (key, value) in given {
        let on_command_line = matches.try_get_raw(key).ok().flatten().is_some()
            && matches.value_source(key) == Some(clap::parser::ValueSource::CommandLine);
        if on_command_line {
            base.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(merged).map_err(|e| bad(e.to_string()))
}

/// A run directory: `events.out.tfevents.*`, `config.json`, `checkpoint/`, `summary.json`.
pub struct RunDir {
    path: PathBuf,
    writer: Option<SummaryWriter>,
}

impl RunDir {
    /// Creates `dir`, or `runs/<example>-<YYYYmmdd-HHMMSS>` (UTC) when `dir` is None.
    pub fn create(example: &str, dir: Option<PathBuf>) -> Result<Self, RunError> {
        let path = match dir {
            Some(d) => d,
            None => {
                let base = format!("runs/{example}-{}", utc_timestamp(SystemTime::now()));
                let mut p = PathBuf::from(&base);
                let mut n = 2;
                while p.exists() {
                    p = PathBuf::from(format!("{base}-{n}"));
                    n += 1;
                }
                p
            }
        };
        std::fs::create_dir_all(&path).map_err(|source| RunError::Io { path: path.clone(), source })?;
        Ok(Self { path, writer: None })
    }

    /// Opens an existing run directory (for `--resume` or `--eval`): it must hold a checkpoint.
    pub fn open(dir: &Path) -> Result<Self, RunError> {
        if !dir.is_dir() {
            return Err(RunError::NotARun { path: dir.into(), message: "no such directory".into() });
        }
        let run = Self { path: dir.into(), writer: None };
        if !run.checkpoint_dir().is_dir() {
            return Err(RunError::NotARun { path: dir.into(), message: "it has no checkpoint/ directory".into() });
        }
        Ok(run)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where checkpoints go (created on first use).
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// Writes `config.json` (atomically).
    pub fn write_config<T: Serialize>(&self, config: &T) -> Result<(), RunError> {
        Ok(checkpoint::save_json(config, &self.path.join("config.json"))?)
    }

    /// Writes `summary.json` (atomically).
    pub fn write_summary(&self, summary: &serde_json::Value) -> Result<(), RunError> {
        Ok(checkpoint::save_json(summary, &self.path.join("summary.json"))?)
    }

    /// The TensorBoard writer for this run (its event file is created on first use).
    pub fn writer(&mut self) -> Result<&mut SummaryWriter, RunError> {
        if self.writer.is_none() {
            let w =
                SummaryWriter::new(&self.path).map_err(|source| RunError::Io { path: self.path.clone(), source })?;
            self.writer = Some(w);
        }
        Ok(self.writer.as_mut().expect("writer was just created"))
    }
}

/// Formats a time as `YYYYmmdd-HHMMSS` in UTC.
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (proleptic Gregorian), valid for any date after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A terminal progress bar: steps, steps/s and the recent episodic return. Hidden when stderr is
/// not a terminal.
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// A bar for `total` steps.
    pub fn new(total: u64) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        let style =
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps ({per_sec}) {msg}")
                .expect("valid template")
                .progress_chars("=> ");
        bar.set_style(style);
        Self { bar }
    }

    /// Moves the bar to `step`, showing the recent return when known.
    pub fn update(&self, step: u64, recent_return: Option<f64>) {
        self.bar.set_position(step);
        if let Some(r) = recent_return {
            self.bar.set_message(format!("return {r:.1}"));
        }
    }

    /// Shows a message after the counters (e.g. the last evaluation).
    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Formats a summary as one line: `key=value` pairs in the JSON object's order.
pub fn summary_line(summary: &serde_json::Value) -> String {
    match summary.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(x) if v.is_f64() => format!("{k}={x:.3}"),
                _ => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => summary.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 13:45:07 UTC, a leap day.
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_709_214_307)), "20240229-134507");
    }

    #[derive(clap::Parser, Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Cfg {
        /// Learning rate.
        #[arg(long, default_value_t = 0.001)]
        lr: f64,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    }

    fn parse(args: &[&str], file: Option<&Path>) -> Result<Cfg, RunError> {
        let matches = Cfg::command().get_matches_from(args);
        let cli = Cfg::from_arg_matches(&matches).unwrap();
        resolve_config(&cli, &cli, file, &matches)
    }

    #[test]
    fn command_line_flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("glimpse-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("c.toml");
        std::fs::write(&toml_path, "lr = 0.5\nbatch_size = 64\n").unwrap();
        let json_path = dir.join("c.json");
        std::fs::write(&json_path, r#"{"batch_size": 8}"#).unwrap();

        assert_eq!(parse(&["x"], None).unwrap(), Cfg { lr: 0.001, batch_size: 32, seed: 1 });
        assert_eq!(parse(&["x"], Some(&toml_path)).unwrap(), Cfg { lr: 0.5, batch_size: 64, seed: 1 });
        let c = parse(&["x", "--batch-size", "16", "--seed", "3"], Some(&toml_path)).unwrap();
        assert_eq!(c, Cfg { lr: 0.5, batch_size: 16, seed: 3 });
        assert_eq!(parse(&["x"], Some(&json_path)).unwrap().batch_size, 8);

        std::fs::write(&toml_path, "learning_rate = 0.5\n").unwrap();
        let err = parse(&["x"], Some(&toml_path)).unwrap_err().to_string();
        assert!(err.contains("unknown setting `learning_rate`") && err.contains("c.toml"), "{err}");
        std::fs::write(&toml_path, "lr = \"fast\"\n").unwrap();
        assert!(parse(&["x"], Some(&toml_path)).is_err());
        // Example-specific defaults sit under the file and the command line.
        let matches = Cfg::command().get_matches_from(["x", "--lr", "0.2"]);
        let cli = Cfg::from_arg_matches(&matches).unwrap();
        let defaults = Cfg { lr: 9.0, batch_size: 99, seed: 5 };
        std::fs::write(&json_path, r#"{"seed": 8}"#).unwrap();
        let c = resolve_config(&defaults, &cli, Some(&json_path), &matches).unwrap();
        assert_eq!(c, Cfg { lr: 0.2, batch_size: 99, seed: 8 });
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = Cfg::parse_from(["x"]);
    }

    #[test]
    fn run_dir_writes_config_summary_and_events() {
        let dir = std::env::temp_dir().join(format!("glimpse-rundir-{}", std::process::id()));
        let mut run = RunDir::create("test", Some(dir.clone())).unwrap();
        run.write_config(&serde_json::json!({"lr": 0.1})).unwrap();
        run.write_summary(&serde_json::json!({"eval_mean_return": 500.0, "solved_at_step": null})).unwrap();
        run.writer().unwrap().scalar("a", 1.0, 0).unwrap();
        run.writer().unwrap().flush().unwrap();
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["eval_mean_return"], 500.0);
        assert_eq!(summary_line(&summary), "eval_mean_return=500.000 solved_at_step=null");
        let events = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("events.out.tfevents."));
        assert_eq!(events.count(), 1);
        assert!(matches!(RunDir::open(&dir), Err(RunError::NotARun { .. })));
        std::fs::create_dir_all(run.checkpoint_dir()).unwrap();
        assert!(RunDir::open(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
