//! Autoregressive models of binarized MNIST: PixelCNN, Gated PixelCNN and PixelRNN's Row LSTM
//! (van den Oord et al. 2016), with exact test log-likelihoods in nats and fast cached sampling
//! (Ramachandran et al. 2017).
//!
//! - [`model`]: the [`PixelModel`] trait and the PixelCNN as a typed dfdx module.
//! - [`gated`]: the Gated PixelCNN (vertical and horizontal stacks, no blind spot).
//! - [`rowlstm`]: PixelRNN with Row LSTM layers.
//! - [`sample`]: the naive and fast samplers (bit-identical per seed) and image completion.
//! - [`figures`]: sample and completion grids.
//! - [`config`]: [`Config`], the hyperparameters as flags and serde, validated.
//! - [`mod@train`]: the checkpointed [`Training`] state and the loop ([`train()`]) on glimpse's
//!   run layer, scored by the exact test NLL ([`test_nll`]).
//! - [`cli`]: the command line of `examples/pixelcnn_mnist.rs`.

pub mod cli;
pub mod config;
pub mod figures;
pub mod gated;
pub mod model;
pub mod rowlstm;
pub mod sample;
pub mod train;

pub use config::{Config, ModelKind};
pub use gated::GatedPixelCnn;
pub use model::{PixelCnn, PixelModel, Planes};
pub use rowlstm::RowLstm;
pub use train::{test_nll, train, Summary, Training};

/// Errors from training, evaluating or sampling.
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    /// Loading the data set failed.
    #[error(transparent)]
    Data(#[from] glimpse::data::DataError),
    /// Setting up, checkpointing or finishing the run failed.
    #[error(transparent)]
    Run(#[from] glimpse::run::RunError),
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] glimpse::checkpoint::CheckpointError),
    /// Writing an image failed.
    #[error(transparent)]
    Image(#[from] glimpse::image::ImageError),
    /// Writing sample files failed.
    #[error(transparent)]
    Samples(#[from] glimpse::generative::SampleError),
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
        source: glimpse::optim::NonFiniteGradient,
        /// The epoch (from 1).
        epoch: u64,
        /// The batch in the epoch (from 0).
        batch: usize,
    },
    /// The command line or configuration is not usable.
    #[error("bad configuration: {0}")]
    Config(String),
}
