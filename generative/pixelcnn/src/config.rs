//! The hyperparameters ([`Config`]) as command-line flags and serde, validated before a run writes
//! anything.

use glimpse::run::{RunConfig, Unit};
use glimpse::validate;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which model of p(x).
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// PixelCNN: masked 7×7 type A, 15 residual blocks of masked 3×3 type B, 32 channels.
    Pixelcnn,
    /// Gated PixelCNN: vertical and horizontal stacks, gated units, 7×7 then 10 3×3 layers, 16 channels.
    Gated,
    /// PixelRNN with Row LSTM layers: 7×7 type A, then 4 Row LSTM layers of 32 hidden units, 32 channels.
    Rowlstm,
}

/// How the learning rate changes over a run.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Multiplied by `lr_decay` after every epoch.
    Exponential,
    /// Half a cosine from `learning_rate` at the first step to 0 after the last, step by step
    /// (Loshchilov and Hutter's SGDR without restarts); `lr_decay` is not used.
    Cosine,
}

impl LrSchedule {
    /// The schedule of run directories written before there was a choice, so that they resume
    /// as they began.
    fn before_cosine() -> Self {
        LrSchedule::Exponential
    }

    /// The learning rate of step `step` (0-based) of `steps_per_epoch * epochs`, in epoch
    /// `epoch` (1-based).
    pub fn rate(self, config: &Config, epoch: u64, step: u64, steps_per_epoch: u64) -> f64 {
        match self {
            LrSchedule::Exponential => config.learning_rate * config.lr_decay.powi(epoch as i32 - 1),
            LrSchedule::Cosine => {
                let done = (epoch - 1) * steps_per_epoch + step;
                glimpse::optim::cosine_rate(config.learning_rate, done, config.epochs * steps_per_epoch)
            }
        }
    }
}

/// Training images in MNIST.
pub const MNIST_TRAIN_IMAGES: usize = 60_000;
/// Test images in MNIST.
pub const MNIST_TEST_IMAGES: usize = 10_000;

/// Hyperparameters. The seed is the run's (`--seed`), not a setting.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The model.
    #[arg(long, value_enum, default_value_t = ModelKind::Pixelcnn)]
    pub model: ModelKind,
    /// Training epochs (passes over the training images, binarised afresh each time).
    #[arg(long, default_value_t = 60)]
    pub epochs: u64,
    /// Images per mini-batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Adam learning rate of the first epoch.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// How the learning rate changes: cosine annealing to 0 over `epochs`, or exponential decay.
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    #[serde(default = "LrSchedule::before_cosine")]
    pub lr_schedule: LrSchedule,
    /// With `--lr-schedule exponential`, the learning rate is multiplied by this after every
    /// epoch (1: constant).
    #[arg(long, default_value_t = 0.95)]
    pub lr_decay: f64,
    /// Training images used (the first N, 1 to 60000).
    #[arg(long, default_value_t = MNIST_TRAIN_IMAGES)]
    pub train_images: usize,
    /// Test images scored after every epoch (the first N, 1 to 10000).
    #[arg(long, default_value_t = MNIST_TEST_IMAGES)]
    pub test_images: usize,
    /// Seed of the one stochastic binarisation of the test images that every run is scored on
    /// (each pixel 1 with probability grey/255).
    #[arg(long, default_value_t = 0)]
    pub test_binarization_seed: u64,
    /// Matrix-product threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Directory of the MNIST files [default: $MNIST_DIR, else ../shared/data/mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: ModelKind::Pixelcnn,
            epochs: 60,
            batch_size: 32,
            learning_rate: 1e-3,
            lr_schedule: LrSchedule::Cosine,
            lr_decay: 0.95,
            train_images: MNIST_TRAIN_IMAGES,
            test_images: MNIST_TEST_IMAGES,
            test_binarization_seed: 0,
            threads: 2,
            data_dir: None,
        }
    }
}

/// A generous bound on the training memory per image of a batch: 32 channels of 784 pixels in
/// each of about 100 activations, their gradients and the unfolded patches.
const BYTES_PER_IMAGE: u128 = 4 << 20;

impl RunConfig for Config {
    const UNIT: Unit = Unit::Epochs;

    fn budget(&self) -> u64 {
        self.epochs
    }

    fn checkpoint_every(&self) -> u64 {
        1
    }

    fn validate(&self) -> Result<(), String> {
        validate::epoch_trainer(
            self.epochs,
            self.batch_size,
            BYTES_PER_IMAGE,
            self.learning_rate,
            self.train_images,
            MNIST_TRAIN_IMAGES,
            self.data_dir.as_deref(),
        )?;
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return Err(format!("lr_decay must be in (0, 1], got {}", self.lr_decay));
        }
        if !(1..=MNIST_TEST_IMAGES).contains(&self.test_images) {
            return Err(format!("test_images must be between 1 and {MNIST_TEST_IMAGES}, got {}", self.test_images));
        }
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
        let parsed = Flags::try_parse_from(["pixelcnn"]).unwrap().config;
        assert_eq!(parsed, Config::default());
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn the_cosine_schedule_starts_at_the_rate_halves_midway_and_ends_near_zero() {
        let config = Config { epochs: 4, ..Config::default() };
        let rate = |epoch, step| LrSchedule::Cosine.rate(&config, epoch, step, 10);
        assert_eq!(rate(1, 0), config.learning_rate);
        assert!((rate(3, 0) - config.learning_rate / 2.0).abs() < 1e-12);
        assert!(rate(4, 9) > 0.0 && rate(4, 9) < config.learning_rate * 0.002);
        let exponential = |epoch| LrSchedule::Exponential.rate(&config, epoch, 7, 10);
        assert_eq!(exponential(1), config.learning_rate);
        assert!((exponential(3) - config.learning_rate * 0.95 * 0.95).abs() < 1e-15);
    }

    #[test]
    fn every_bad_setting_is_refused_with_its_name() {
        type Case = (fn(&mut Config), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.epochs = 0, "epochs must be at least 1"),
            (|c| c.batch_size = 0, "batch_size must be at least 1"),
            (|c| c.batch_size = usize::MAX, "batch_size needs"),
            (|c| c.learning_rate = f64::NAN, "learning_rate must be a finite number > 0, got NaN"),
            (|c| c.lr_decay = 0.0, "lr_decay must be in (0, 1], got 0"),
            (|c| c.lr_decay = 1.5, "lr_decay must be in (0, 1], got 1.5"),
            (|c| c.train_images = 0, "train_images must be between 1 and 60000, got 0"),
            (|c| c.test_images = 10_001, "test_images must be between 1 and 10000, got 10001"),
            (|c| c.threads = 0, "threads must be between 1 and"),
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
