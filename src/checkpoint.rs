//! Checkpoints: dfdx module weights as safetensors, training state as JSON, both written atomically.
//!
//! Every file is written to a temporary name in the same directory and renamed into place, so a
//! crash mid-write leaves the previous checkpoint intact. Loading a truncated, corrupt or
//! wrongly-shaped file returns a [`CheckpointError`] naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::tensor_ops::Device;
use serde::{de::DeserializeOwned, Serialize};

/// Errors from saving or loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The weights file is missing, truncated, corrupt, or its tensors do not fit the module.
    #[error("checkpoint weights {path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What went wrong, as the safetensors reader reported it.
        message: String,
    },
    /// A binary file (e.g. a saved replay buffer) is truncated or does not have the expected layout.
    #[error("checkpoint file {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// The JSON state file is not valid JSON or does not match the expected fields.
    #[error("checkpoint state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Saves a module's tensors to a `.safetensors` file, atomically.
pub fn save_weights<M, D>(model: &M, path: &Path) -> Result<(), CheckpointError>
where
    D: Device<f32>,
    M: SaveToSafetensors<f32, D>,
{
    let tmp = temp_path(path);
    let io_err = |source| CheckpointError::Io { path: path.to_path_buf(), source };
    if let Err(e) = model.save_safetensors(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(CheckpointError::Weights { path: path.to_path_buf(), message: format!("{e:?}") });
    }
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

/// Loads a module's tensors from a `.safetensors` file written by [`save_weights`].
pub fn load_weights<M, D>(model: &mut M, path: &Path) -> Result<(), CheckpointError>
where
    D: Device<f32>,
    M: LoadFromSafetensors<f32, D>,
{
    if !path.is_file() {
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    model
        .load_safetensors(path)
        .map_err(|e| CheckpointError::Weights { path: path.to_path_buf(), message: format!("{e:?}") })
}

/// Saves any serde value as pretty JSON, atomically.
pub fn save_json<T: Serialize + ?Sized>(value: &T, path: &Path) -> Result<(), CheckpointError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|source| CheckpointError::State { path: path.to_path_buf(), source })?;
    write_atomic(path, &bytes).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })
}

/// Loads a serde value from a JSON file.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| CheckpointError::State { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::prelude::*;

    type Net = (Linear<3, 4>, ReLU, Linear<4, 2>);

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("glimpse-ckpt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn weights_round_trip_and_bad_files_are_errors() {
        let dev = Cpu::seed_from_u64(0);
        let a = dev.build_module::<Net, f32>();
        let dir = temp_dir("weights");
        let path = dir.join("model.safetensors");
        save_weights(&a, &path).unwrap();
        let mut b = dev.build_module::<Net, f32>();
        assert_ne!(a.0.weight.as_vec(), b.0.weight.as_vec());
        load_weights(&mut b, &path).unwrap();
        assert_eq!(a.0.weight.as_vec(), b.0.weight.as_vec());
        assert_eq!(a.2.bias.as_vec(), b.2.bias.as_vec());

        // Truncated file.
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_weights(&mut b, &cut).unwrap_err();
        assert!(matches!(err, CheckpointError::Weights { .. }), "{err}");
        assert!(err.to_string().contains("cut.safetensors"));
        // Missing file and wrong shapes.
        assert!(matches!(load_weights(&mut b, &dir.join("none")), Err(CheckpointError::Io { .. })));
        let mut other = dev.build_module::<(Linear<3, 5>, ReLU, Linear<5, 2>), f32>();
        assert!(load_weights(&mut other, &path).is_err());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_state_round_trips_and_corrupt_json_is_an_error() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct State {
            step: u64,
            eps: f64,
        }
        let dir = temp_dir("json");
        let path = dir.join("state.json");
        save_json(&State { step: 7, eps: 0.25 }, &path).unwrap();
        assert_eq!(load_json::<State>(&path).unwrap(), State { step: 7, eps: 0.25 });
        std::fs::write(&path, b"{\"step\": 7, \"ep").unwrap();
        let err = load_json::<State>(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::State { .. }) && err.to_string().contains("state.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
