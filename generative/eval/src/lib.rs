//! Networks that evaluate generative models on MNIST.
//!
//! - [`classifier`]: a small convolutional classifier ([`classifier::MnistCnn`], ~99.2% test
//!   accuracy), one training epoch ([`classifier::train_epoch`]), [`classifier::accuracy`], and
//!   its 128-d penultimate layer ([`classifier::features`]), the feature space for
//!   Inception-score and FID-style metrics of generated digits.
//! - [`train`]: training it on glimpse's run layer (`examples/mnist_cnn.rs`: [`train::Config`],
//!   the checkpointed [`train::Training`], exact `--stop-after`/`--resume`, `--eval`).

pub mod classifier;
pub mod train;

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
}
