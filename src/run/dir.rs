//! The run directory (`events.out.tfevents.*`, `config.json`, `checkpoint/`, `summary.json`) and
//! the lock that keeps a second process from writing into it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::RunError;
use crate::checkpoint;
use crate::log::SummaryWriter;

/// The file whose exclusive lock a writing process holds.
pub const LOCK_FILE: &str = ".lock";

/// A run directory: `events.out.tfevents.*`, `config.json`, `checkpoint/`, `summary.json`.
pub struct RunDir {
    path: PathBuf,
    writer: Option<SummaryWriter>,
    _lock: Option<RunLock>,
}

impl RunDir {
    /// Creates `dir`, or `runs/<example>-<YYYYmmdd-HHMMSS>` (UTC) when `dir` is None.
    pub fn create(example: &str, dir: Option<PathBuf>) -> Result<Self, RunError> {
        let path = dir.unwrap_or_else(|| default_run_dir(example));
        std::fs::create_dir_all(&path).map_err(|source| RunError::Io { path: path.clone(), source })?;
        Ok(Self { path, writer: None, _lock: None })
    }

    /// Opens an existing run directory (for `--resume` or `--eval`): it must hold a checkpoint.
    pub fn open(dir: &Path) -> Result<Self, RunError> {
        if !dir.is_dir() {
            return Err(RunError::NotARun { path: dir.into(), message: "no such directory".into() });
        }
        let run = Self { path: dir.into(), writer: None, _lock: None };
        if !run.checkpoint_dir().is_dir() {
            return Err(RunError::NotARun { path: dir.into(), message: "it has no checkpoint/ directory".into() });
        }
        Ok(run)
    }

    /// Takes the directory's lock for writing (see [`RunLock`]); held until `self` is dropped.
    pub fn lock(&mut self) -> Result<(), RunError> {
        if self._lock.is_none() {
            self._lock = Some(RunLock::acquire(&self.path)?);
        }
        Ok(())
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

    /// Flushes the TensorBoard writer, if one was opened.
    pub fn flush(&mut self) -> Result<(), RunError> {
        if let Some(w) = &mut self.writer {
            w.flush().map_err(|source| RunError::Io { path: w.path().to_path_buf(), source })?;
        }
        Ok(())
    }
}

/// `runs/<example>-<YYYYmmdd-HHMMSS>` (UTC), with `-2`, `-3`, ... appended if that exists.
pub fn default_run_dir(example: &str) -> PathBuf {
    let base = format!("runs/{example}-{}", utc_timestamp(SystemTime::now()));
    let mut p = PathBuf::from(&base);
    let mut n = 2;
    while p.exists() {
        p = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    p
}

/// Whether `dir` holds a checkpoint (a `checkpoint/` directory with anything in it).
pub fn holds_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("checkpoint")).is_ok_and(|mut entries| entries.next().is_some())
}

/// An exclusive advisory lock (`flock`) on `DIR/.lock`: a second process that tries to write the
/// same run directory is refused. The kernel releases it when the process ends, however it ends,
/// so a killed run leaves no stale lock behind.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `dir`, or fails with [`RunError::Locked`] if another process holds the lock.
    pub fn acquire(dir: &Path) -> Result<Self, RunError> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| RunError::Io { path: path.clone(), source })?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                return Err(if err.kind() == std::io::ErrorKind::WouldBlock {
                    RunError::Locked { path: dir.into() }
                } else {
                    RunError::Io { path, source: err }
                });
            }
        }
        Ok(Self { _file: file })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 13:45:07 UTC, a leap day.
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_709_214_307)), "20240229-134507");
    }

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("glimpse-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = RunLock::acquire(&dir).unwrap();
        // flock locks belong to open file descriptions: a second open in this process conflicts too.
        let err = RunLock::acquire(&dir).err().expect("second lock refused");
        assert!(matches!(err, RunError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another process"), "{err}");
        drop(first);
        assert!(RunLock::acquire(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
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
        assert_eq!(super::super::summary_line(&summary), "eval_mean_return=500.000 solved_at_step=null");
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
