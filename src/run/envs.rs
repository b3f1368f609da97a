//! A training state's environments in a checkpoint ([`SavedEnvs`]), and the files of a run's
//! current snapshot ([`snapshot_files`]), which two runs that ended alike share byte for byte.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{RunError, RUN_STATE};
use crate::checkpoint::{self, CheckpointError};
use crate::vec_env::{VecEnv, VecEnvState};
use crate::Env;

/// The envs of a training state as a checkpoint holds them: their state, or why they could not
/// save it (e.g. a Python env). Such a checkpoint still evaluates, but a run does not resume from
/// it: it could not continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SavedEnvs(pub Result<VecEnvState, String>);

impl SavedEnvs {
    /// The state of `envs`, or why they cannot save it.
    pub fn of<E: Env + 'static>(envs: &VecEnv<E>) -> Self {
        Self(envs.save_state().map_err(|e| e.to_string()))
    }

    /// Restores `envs` from the state saved in `file` (named in the error). Returns why the run
    /// cannot resume when the envs could not be saved (then `envs` are left as they are).
    pub fn restore<E: Env + 'static>(
        &self,
        envs: &mut VecEnv<E>,
        file: &Path,
    ) -> Result<Option<String>, CheckpointError> {
        match &self.0 {
            Ok(state) => {
                let corrupt =
                    |e: crate::EnvError| CheckpointError::Corrupt { path: file.into(), message: e.to_string() };
                envs.restore_state(state).map_err(corrupt)?;
                Ok(None)
            }
            Err(why) => Ok(Some(format!("the checkpoint holds no environment state because {why}"))),
        }
    }
}

/// The snapshot file a trainer keeps its measured times in (seconds per epoch): the one thing a
/// resumed run does not repeat exactly, so [`snapshot_files`] leaves it out.
pub const TIMINGS: &str = "timings.json";

/// Every file of the current snapshot of run `dir` by name, sorted, without the manifest (its
/// checksums cover the wall time) and [`TIMINGS`], and with [`RUN_STATE`] less its
/// `wall_seconds`: what a run stopped with `--stop-after` and resumed shares byte for byte with
/// the uninterrupted run.
pub fn snapshot_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, RunError> {
    let snapshot = checkpoint::current_snapshot(&dir.join("checkpoint"))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&snapshot).map_err(io(&snapshot))? {
        let path = entry.map_err(io(&snapshot))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == checkpoint::MANIFEST || name == TIMINGS {
            continue;
        }
        let mut bytes = std::fs::read(&path).map_err(io(&path))?;
        if name == RUN_STATE {
            let mut state: serde_json::Value = checkpoint::load_json(&path)?;
            if let Some(map) = state.as_object_mut() {
                map.remove("wall_seconds");
            }
            bytes = state.to_string().into_bytes();
        }
        files.push((name, bytes));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_leave_out_the_manifest_and_the_wall_time() {
        let dir = std::env::temp_dir().join(format!("glimpse-snapshot-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let write = |wall_seconds: f64| {
            checkpoint::save_snapshot(&dir.join("checkpoint"), |snap| -> Result<(), CheckpointError> {
                checkpoint::save_json(
                    &serde_json::json!({ "done": 4, "wall_seconds": wall_seconds }),
                    &snap.join(RUN_STATE),
                )?;
                checkpoint::save_json(&[1, 2, 3], &snap.join("weights.json"))
            })
            .unwrap()
        };
        write(1.5);
        let first = snapshot_files(&dir).unwrap();
        let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [RUN_STATE, "weights.json"]);
        assert_eq!(String::from_utf8(first[0].1.clone()).unwrap(), r#"{"done":4}"#);
        // Another wall time, the same files.
        write(9.0);
        assert_eq!(snapshot_files(&dir).unwrap(), first);
        assert!(matches!(snapshot_files(&dir.join("nothing")), Err(RunError::Io { .. } | RunError::Checkpoint(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
