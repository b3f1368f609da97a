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

/// What stops an epoch trainer: its data, run directory, checkpoints, figures or logs failing, a
/// loss or gradient that is not finite, or a configuration that cannot work. Each prints as one
/// readable line.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Loading the data set or writing a `.npy` file failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Setting up, checkpointing or finishing the run failed.
    #[error(transparent)]
    Run(#[from] super::RunError),
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Writing an image failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// Writing sample files failed.
    #[error(transparent)]
    Samples(#[from] crate::generative::SampleError),
    /// Writing TensorBoard events failed.
    #[error("TensorBoard writer: {0}")]
    Log(#[from] std::io::Error),
    /// The loss became NaN or infinite.
    #[error("the loss is not finite ({loss}) at epoch {epoch}, batch {batch}; try a lower learning rate")]
    NonFinite {
        /// The loss.
        loss: f64,
        /// The epoch (from 1).
        epoch: u64,
        /// The batch in the epoch (from 0).
        batch: usize,
    },
    /// A gradient became NaN or infinite; the optimizer refused the step.
    #[error("at epoch {epoch}, batch {batch}: {source}; try a lower learning rate")]
    NonFiniteGradient {
        /// What the optimizer saw.
        source: crate::optim::NonFiniteGradient,
        /// The epoch (from 1).
        epoch: u64,
        /// The batch in the epoch (from 0).
        batch: usize,
    },
    /// The command line or configuration is not usable.
    #[error("bad configuration: {0}")]
    Config(String),
}
