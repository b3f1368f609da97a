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
pub use glimpse::run::TrainError as PixelError;
