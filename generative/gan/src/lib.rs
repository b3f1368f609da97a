//! Generative adversarial networks on MNIST: DCGAN (Radford et al. 2016) with the non-saturating
//! loss of Goodfellow et al. (2014), or the hinge loss.
//!
//! - [`model`]: the [`Generator`] and [`Discriminator`] as typed dfdx modules and the DCGAN
//!   initialisation ([`DcganInit`]).
//! - [`spectral`]: spectral normalisation of the hinge objective's discriminator weights.
//! - [`config`]: [`Config`], the hyperparameters as flags and serde, validated.
//! - [`mod@train`]: [`Gan`] (one step of both networks), the checkpointed [`Training`] state and
//!   the loop ([`train()`]) on glimpse's run layer (exact `--stop-after`/`--resume`).
//! - [`cli`]: the command line of `examples/gan_mnist.rs` ([`cli::run_with_args`]).

pub mod cli;
pub mod config;
pub mod model;
pub mod spectral;
pub mod train;

pub use config::{Config, Objective};
pub use model::{
    ConditionalDiscriminator, ConditionalGenerator, DcganInit, Discriminator, DiscriminatorNet, Generator,
    GeneratorNet, SnConditionalDiscriminator, SnDiscriminator, CLASSES, LATENT, PIXELS,
};
pub use train::{generate, train, Gan, StepStats, Summary, Training};

/// Errors from training, evaluating or sampling a GAN.
#[derive(Debug, thiserror::Error)]
pub enum GanError {
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
    /// Writing TensorBoard events or the grids' directory failed.
    #[error("writing the run's figures: {0}")]
    Log(#[from] std::io::Error),
    /// A loss became NaN or infinite.
    #[error(
        "the losses are not finite (D {d_loss}, G {g_loss}) at epoch {epoch}, batch {batch}; try a lower learning rate"
    )]
    NonFinite {
        /// The discriminator's loss.
        d_loss: f32,
        /// The generator's loss.
        g_loss: f32,
        /// The epoch (from 1).
        epoch: u64,
        /// The batch in the epoch (from 0).
        batch: usize,
    },
    /// A gradient became NaN or infinite; the optimizer refused the step.
    #[error("at epoch {epoch}, batch {batch}, the {network}: {source}; try a lower learning rate")]
    NonFiniteGradient {
        /// Which network.
        network: &'static str,
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
