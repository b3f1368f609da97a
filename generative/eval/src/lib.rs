//! Networks that evaluate generative models on MNIST.
//!
//! - [`classifier`]: a small convolutional classifier ([`classifier::MnistCnn`], ~99.2% test
//!   accuracy), one training epoch ([`classifier::train_epoch`]), [`classifier::accuracy`], and
//!   its 128-d penultimate layer ([`classifier::features`]), the feature space for
//!   Inception-score and FID-style metrics of generated digits.
//! - [`train`]: training it on glimpse's run layer (`examples/mnist_cnn.rs`: [`train::Config`],
//!   the checkpointed [`train::Training`], exact `--stop-after`/`--resume`, `--eval`).
//! - [`score`]: the scores of a set of generated (or real) digits: the Inception-style score,
//!   the Fréchet distance of the classifier's features to the test set's, the class histogram.
//! - [`cli`]: `examples/mnist_score.rs`, those scores for `.npy` files of samples, beside the
//!   real data's, as a table and JSON.

pub mod classifier;
pub mod cli;
pub mod score;
pub mod train;

use std::path::PathBuf;

/// Errors from training or evaluating the classifier.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Loading MNIST failed.
    #[error(transparent)]
    Data(#[from] glimpse::data::DataError),
    /// Setting up, checkpointing or finishing the run failed.
    #[error(transparent)]
    Run(#[from] glimpse::run::RunError),
    /// Loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] glimpse::checkpoint::CheckpointError),
    /// An epoch failed (a non-finite loss or gradient, images of another size).
    #[error("epoch {epoch}: {message}")]
    Training {
        /// The epoch (from 1).
        epoch: u64,
        /// What went wrong.
        message: String,
    },
    /// The command line is not usable.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The classifier's run directory cannot be used (not an `mnist_cnn` run, a damaged checkpoint).
    #[error("classifier {path}: {message}")]
    Classifier {
        /// The run directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Values that cannot be scored (empty, too few rows, not finite, mismatched sizes).
    #[error("{0}")]
    Input(String),
    /// A file of samples is not a set of 28x28 images.
    #[error("{path}: {message}")]
    Samples {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}
