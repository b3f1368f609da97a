//! Variational autoencoders on MNIST (Kingma & Welling, 2014), as in PyTorch's `examples/vae`.
//!
//! - [`model`]: the [`VaeModel`] trait (encoder to a diagonal Gaussian, decoder to Bernoulli logits)
//!   the MLP architecture 784-400-Z-400-784 ([`MlpVae`]) and a convolutional one ([`ConvVae`]).
//! - [`loss`]: reparameterisation, closed-form KL, the negative ELBO (summed BCE + KL).
//! - [`iw`]: the importance-weighted log-likelihood estimate (Burda et al., 2016) in nats.
//! - [`config`]: [`Config`], the hyperparameters as flags and serde, validated.
//! - [`mod@train`]: [`Trainer`], the checkpointed [`Training`] state and the loop ([`train()`]) on
//!   glimpse's run layer (exact `--stop-after`/`--resume`).
//! - [`figures`]: reconstructions, samples and the 2-D manifold.
//! - [`cli`]: the command line of `examples/vae_mnist.rs` ([`cli::run_with_args`]).

pub mod cli;
pub mod config;
pub mod figures;
pub mod iw;
pub mod loss;
pub mod model;
pub mod train;

pub use config::{Arch, Config, DataView, OutputBias};
pub use iw::iw_log_likelihood;
pub use loss::{kl_divergence, negative_elbo};
pub use model::{log_odds, ConvVae, ConvVaeBuilder, MlpVae, MlpVaeBuilder, VaeModel};
pub use train::{train, Summary, Trainer, Training};

/// Pixels in one MNIST image: the size of the data the models encode and decode.
pub const PIXELS: usize = glimpse::data::mnist::PIXELS;

/// Errors from training, evaluating or sampling a VAE.
pub use glimpse::run::TrainError as VaeError;
