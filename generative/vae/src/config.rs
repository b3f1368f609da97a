//! The VAE's hyperparameters ([`Config`], PyTorch's `examples/vae` defaults) as command-line flags
//! and serde, validated before a run writes anything.

use glimpse::data::View;
use glimpse::run::{RunConfig, Unit};
use glimpse::validate;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How training images are presented to the model.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataView {
    /// Grey levels in [0, 1], as PyTorch's example does.
    Grey,
    /// Pixels above 0.5 become 1, others 0.
    Threshold,
    /// Each pixel is 1 with probability grey/255, drawn afresh every epoch (dynamic binarisation).
    Stochastic,
}

impl DataView {
    /// The loader view for this choice.
    pub fn view(self) -> View {
        match self {
            DataView::Grey => View::Grey,
            DataView::Threshold => View::Threshold(0.5),
            DataView::Stochastic => View::Stochastic,
        }
    }
}

/// How the decoder's output bias starts.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OutputBias {
    /// The log-odds of the mean training image (Burda et al.'s IWAE code; see `VaeModel::init_output_bias`).
    #[default]
    DataMean,
    /// Uniform in ±1/sqrt(fan-in), PyTorch's `nn.Linear` default, as in PyTorch's example.
    Pytorch,
}

/// Which architecture.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 784-400-Z-400-784, PyTorch's example.
    Mlp,
    /// Convolutional encoder, transposed-convolution decoder (see `ConvVae`).
    Conv,
}

impl Arch {
    /// The latent sizes compiled in for this architecture.
    pub fn latents(self) -> &'static [usize] {
        match self {
            Arch::Mlp => &[2, 20, 50],
            Arch::Conv => &[2, 20],
        }
    }

    /// A generous bound on the training memory per image of a batch (activations, their gradients
    /// and the convolutions' unfolded patches), for rejecting batch sizes that cannot fit.
    fn bytes_per_image(self) -> u128 {
        match self {
            Arch::Mlp => 32 << 10,
            Arch::Conv => 1 << 20,
        }
    }
}

/// Training images in MNIST.
pub const MNIST_TRAIN_IMAGES: usize = 60_000;
/// Test images in MNIST.
pub const MNIST_TEST_IMAGES: usize = 10_000;

/// Hyperparameters; the defaults are PyTorch's `examples/vae` ones. The seed is the run's
/// (`--seed`), not a setting.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Training epochs (passes over the training images).
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Images per mini-batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Latent dimensions: 2, 20 or 50 (mlp); 2 or 20 (conv).
    #[arg(long, default_value_t = 20)]
    pub latent: usize,
    /// Architecture.
    #[arg(long, value_enum, default_value_t = Arch::Mlp)]
    pub arch: Arch,
    /// Initial decoder output bias.
    #[arg(long, value_enum, default_value_t = OutputBias::DataMean)]
    pub output_bias: OutputBias,
    /// Pixel view of the training images.
    #[arg(long, value_enum, default_value_t = DataView::Grey)]
    pub data_view: DataView,
    /// Training images used (the first N, 1 to 60000).
    #[arg(long, default_value_t = MNIST_TRAIN_IMAGES)]
    pub train_images: usize,
    /// Importance samples per test image for the log-likelihood estimate in nats (0: skip it).
    #[arg(long, default_value_t = 0)]
    pub iw_samples: usize,
    /// Test images for the importance-weighted estimate (the first N of the binarised test set, 1 to 10000).
    #[arg(long, default_value_t = MNIST_TEST_IMAGES)]
    pub iw_images: usize,
    /// Matrix-product threads (2 matches the PyTorch benchmark).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Directory of the MNIST files [default: $MNIST_DIR, else ../shared/data/mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            learning_rate: 1e-3,
            latent: 20,
            arch: Arch::Mlp,
            output_bias: OutputBias::DataMean,
            data_view: DataView::Grey,
            train_images: MNIST_TRAIN_IMAGES,
            iw_samples: 0,
            iw_images: MNIST_TEST_IMAGES,
            threads: 2,
            data_dir: None,
        }
    }
}

impl RunConfig for Config {
    const UNIT: Unit = Unit::Epochs;

    fn budget(&self) -> u64 {
        self.epochs
    }

    fn checkpoint_every(&self) -> u64 {
        1
    }

    fn validate(&self) -> Result<(), String> {
        let (data_dir, images) = (self.data_dir.as_deref(), MNIST_TRAIN_IMAGES);
        let bytes = self.arch.bytes_per_image();
        validate::epoch_trainer(
            self.epochs,
            self.batch_size,
            bytes,
            self.learning_rate,
            self.train_images,
            images,
            data_dir,
        )?;
        if !self.arch.latents().contains(&self.latent) {
            return Err(format!(
                "latent {} is not built in for arch {:?}; use one of {:?}",
                self.latent,
                self.arch,
                self.arch.latents()
            ));
        }
        if !(1..=MNIST_TEST_IMAGES).contains(&self.iw_images) {
            return Err(format!("iw_images must be between 1 and {MNIST_TEST_IMAGES}, got {}", self.iw_images));
        }
        // One log-weight (f64) per importance sample of an image; the decoder sees at most 1024 at a time.
        glimpse::limits::check_memory("iw_samples", self.iw_samples as u128, 8)?;
        glimpse::limits::check_threads("threads", self.threads)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn the_flags_defaults_are_the_default_config_and_it_is_valid() {
        let parsed = Flags::try_parse_from(["vae"]).unwrap().config;
        assert_eq!(parsed, Config::default());
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn every_bad_setting_is_refused_with_its_name() {
        type Case = (fn(&mut Config), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.epochs = 0, "epochs must be at least 1"),
            (|c| c.batch_size = 0, "batch_size must be at least 1"),
            (|c| c.batch_size = usize::MAX, "batch_size needs"),
            (|c| c.learning_rate = 0.0, "learning_rate must be a finite number > 0, got 0"),
            (|c| c.learning_rate = f64::NAN, "learning_rate must be a finite number > 0, got NaN"),
            (|c| c.learning_rate = f64::INFINITY, "learning_rate must be a finite number > 0, got inf"),
            (|c| c.latent = 7, "latent 7 is not built in for arch Mlp; use one of [2, 20, 50]"),
            (
                |c| {
                    c.arch = Arch::Conv;
                    c.latent = 50
                },
                "latent 50 is not built in for arch Conv",
            ),
            (|c| c.train_images = 0, "train_images must be between 1 and 60000, got 0"),
            (|c| c.train_images = 60_001, "train_images must be between 1 and 60000"),
            (|c| c.iw_images = 0, "iw_images must be between 1 and 10000"),
            (|c| c.iw_samples = usize::MAX, "iw_samples needs"),
            (|c| c.threads = 0, "threads must be between 1 and"),
            (|c| c.threads = 5000, "got 5000"),
            (|c| c.data_dir = Some("/nonexistent/mnist".into()), "data_dir /nonexistent/mnist is not a directory"),
        ];
        for (change, message) in cases {
            let mut config = Config::default();
            change(&mut config);
            let err = config.validate().unwrap_err();
            assert!(err.contains(message), "{err:?} should contain {message:?}");
        }
    }
}
