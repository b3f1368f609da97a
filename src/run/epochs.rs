//! What every epoch trainer checkpoints besides its networks and optimizers: the data loader's
//! generator, its per-epoch curves and the epoch timings.

use crate::checkpoint::{load_json, save_json, CheckpointError};
use crate::data::Loader;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Saves the loader's generator (`loader.json`), the curves (`curves.json`) and the epoch
/// timings ([`super::TIMINGS`], kept apart: the one thing a resumed run does not repeat exactly)
/// into snapshot `snap`.
pub fn save_epochs<C: Serialize>(
    snap: &Path,
    loader: &Loader,
    curves: &C,
    epoch_seconds: &[f64],
) -> Result<(), CheckpointError> {
    save_json(loader.generator(), &snap.join("loader.json"))?;
    save_json(curves, &snap.join("curves.json"))?;
    save_json(&epoch_seconds, &snap.join(super::TIMINGS))
}

/// Restores what [`save_epochs`] wrote: sets the loader's generator, returns the curves and timings.
pub fn load_epochs<C: DeserializeOwned>(snap: &Path, loader: &mut Loader) -> Result<(C, Vec<f64>), CheckpointError> {
    loader.set_generator(load_json(&snap.join("loader.json"))?);
    Ok((load_json(&snap.join("curves.json"))?, load_json(&snap.join(super::TIMINGS))?))
}
