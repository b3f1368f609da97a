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

/// The file in a checkpoint directory naming its current snapshot (see [`save_snapshot`]).
pub const LATEST: &str = "LATEST";

/// The file in a snapshot listing its files with their sizes and CRC-32C.
pub const MANIFEST: &str = "MANIFEST.json";

/// One file of a snapshot, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
struct ManifestEntry {
    name: String,
    bytes: u64,
    crc32c: u32,
}

/// Saves a checkpoint made of several files so that a crash at any moment leaves a complete one:
/// `write` fills a fresh snapshot directory inside `dir`; a manifest of every file's size and
/// CRC-32C is added; then `dir/LATEST` (written atomically) names the new snapshot, and older
/// snapshots are removed. Returns the snapshot's path. Load with [`current_snapshot`].
pub fn save_snapshot<E: From<CheckpointError>>(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<PathBuf, E> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let name = format!("snap-{stamp:x}-{}", std::process::id());
    let tmp = dir.join(format!(".tmp-{name}"));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write(&tmp)?;
    let mut entries = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&tmp)
        .map_err(io(&tmp))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(&tmp))?;
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        entries.push(ManifestEntry { name, bytes: bytes.len() as u64, crc32c: crc32c::crc32c(&bytes) });
    }
    save_json(&entries, &tmp.join(MANIFEST))?;
    let snapshot = dir.join(&name);
    std::fs::rename(&tmp, &snapshot).map_err(io(&snapshot))?;
    write_atomic(&dir.join(LATEST), name.as_bytes()).map_err(io(&dir.join(LATEST)))?;
    // Older snapshots (and leftovers of interrupted saves) are no longer needed.
    if let Ok(old) = std::fs::read_dir(dir) {
        for entry in old.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if (n.starts_with("snap-") || n.starts_with(".tmp-snap-")) && n != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(snapshot)
}

/// The current snapshot in checkpoint directory `dir` (see [`save_snapshot`]), after checking
/// every file against its manifest: a missing, truncated or altered file, or one the manifest does
/// not list, is a [`CheckpointError::Corrupt`] naming it. A directory without `LATEST` (a checkpoint written
/// before snapshots existed) is returned unchecked.
pub fn current_snapshot(dir: &Path) -> Result<PathBuf, CheckpointError> {
    let latest = dir.join(LATEST);
    if !latest.exists() {
        return Ok(dir.to_path_buf());
    }
    let name =
        std::fs::read_to_string(&latest).map_err(|source| CheckpointError::Io { path: latest.clone(), source })?;
    let name = name.trim();
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(CheckpointError::Corrupt { path: latest, message: format!("{name:?} is not a snapshot name") });
    }
    let snapshot = dir.join(name);
    let entries: Vec<ManifestEntry> = load_json(&snapshot.join(MANIFEST))?;
    for e in &entries {
        // A plain file name inside the snapshot: never an absolute path or `..` (a manifest naming
        // /dev/zero would otherwise be read forever).
        let plain = !e.name.is_empty() && !e.name.contains(['/', '\\']) && e.name != "." && e.name != "..";
        if !plain {
            let message = format!("lists {:?}, which is not a file name inside the snapshot", e.name);
            return Err(CheckpointError::Corrupt { path: snapshot.join(MANIFEST), message });
        }
        let path = snapshot.join(&e.name);
        let io = |source| CheckpointError::Io { path: path.clone(), source };
        // The size is compared before reading, so a huge file is not read into memory.
        let size = std::fs::metadata(&path).map_err(io)?.len();
        if size != e.bytes || !path.is_file() {
            let message = format!("{size} bytes, the manifest says {} (truncated?)", e.bytes);
            return Err(CheckpointError::Corrupt { path, message });
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        if bytes.len() as u64 != e.bytes {
            let message = format!("{} bytes, the manifest says {} (truncated?)", bytes.len(), e.bytes);
            return Err(CheckpointError::Corrupt { path, message });
        }
        if crc32c::crc32c(&bytes) != e.crc32c {
            return Err(CheckpointError::Corrupt { path, message: "its checksum does not match the manifest".into() });
        }
    }
    // Every file of the snapshot is listed: a loader never reads a file the manifest does not vouch for.
    let io = |source| CheckpointError::Io { path: snapshot.clone(), source };
    for file in std::fs::read_dir(&snapshot).map_err(io)? {
        let file = file.map_err(io)?.file_name().to_string_lossy().into_owned();
        if file != MANIFEST && !entries.iter().any(|e| e.name == file) {
            let message = format!("does not list {file:?}, which the snapshot holds");
            return Err(CheckpointError::Corrupt { path: snapshot.join(MANIFEST), message });
        }
    }
    Ok(snapshot)
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

    #[test]
    fn snapshots_replace_each_other_whole_and_damage_is_named() {
        let dir = temp_dir("snap");
        let first = save_snapshot::<CheckpointError>(&dir, |d| save_json(&1u32, &d.join("a.json"))).unwrap();
        assert_eq!(current_snapshot(&dir).unwrap(), first);
        // A save that fails half-way leaves the previous snapshot current and intact.
        let failed = save_snapshot::<CheckpointError>(&dir, |d| {
            save_json(&2u32, &d.join("a.json"))?;
            Err(CheckpointError::Corrupt { path: d.into(), message: "simulated crash".into() })
        });
        assert!(failed.is_err());
        let current = current_snapshot(&dir).unwrap();
        assert_eq!(load_json::<u32>(&current.join("a.json")).unwrap(), 1);
        let second = save_snapshot::<CheckpointError>(&dir, |d| save_json(&[3u32; 8], &d.join("a.json"))).unwrap();
        assert_eq!(current_snapshot(&dir).unwrap(), second);
        assert!(!first.exists(), "the old snapshot is removed");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        // Only LATEST and the new snapshot are left.
        assert_eq!(left.len(), 2, "{left:?}");
        // Truncation and bit flips are named.
        let file = second.join("a.json");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..1]).unwrap();
        let err = current_snapshot(&dir).unwrap_err().to_string();
        assert!(err.contains("a.json") && err.contains("truncated"), "{err}");
        let mut flipped = bytes.clone();
        flipped[0] ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        assert!(current_snapshot(&dir).unwrap_err().to_string().contains("checksum"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file the manifest does not list (added later, or a manifest edited to omit it) would be
    /// read unchecked: the snapshot is refused, naming it.
    #[test]
    fn a_file_the_manifest_does_not_list_is_refused() {
        let dir = temp_dir("unlisted");
        let snap = save_snapshot::<CheckpointError>(&dir, |d| {
            save_json(&1u32, &d.join("a.json"))?;
            save_json(&2u32, &d.join("b.json"))
        })
        .unwrap();
        assert_eq!(current_snapshot(&dir).unwrap(), snap);
        let manifest: Vec<ManifestEntry> = load_json(&snap.join(MANIFEST)).unwrap();
        let without_b: Vec<_> = manifest.into_iter().filter(|e| e.name != "b.json").collect();
        save_json(&without_b, &snap.join(MANIFEST)).unwrap();
        let err = current_snapshot(&dir).unwrap_err().to_string();
        assert!(err.contains("does not list \"b.json\""), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
