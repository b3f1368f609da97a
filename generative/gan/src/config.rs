//! The GAN's hyperparameters ([`Config`], the DCGAN paper's defaults) as command-line flags and
//! serde, validated before a run writes anything.

use glimpse::run::{RunConfig, Unit};
use glimpse::validate;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The adversarial objective.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Goodfellow et al.'s non-saturating loss: the discriminator minimises the binary
    /// cross-entropy of real (1) and generated (0) images, the generator that of its images as 1.
    Ns,
    /// The hinge loss (Miyato et al. 2018): the discriminator minimises E[relu(1 - D(x))] +
    /// E[relu(1 + D(G(z)))], the generator -E[D(G(z))].
    Hinge,
}

/// Training images in MNIST.
pub const MNIST_TRAIN_IMAGES: usize = 60_000;

/// Hyperparameters; the defaults are the DCGAN paper's (Adam 2e-4, beta1 0.5, batch 128) with
/// the non-saturating loss. The seed is the run's (`--seed`), not a setting.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Training epochs (passes over the training images).
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Images per mini-batch (the last partial batch of an epoch is dropped).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate of both networks.
    #[arg(long, default_value_t = 2e-4)]
    pub learning_rate: f64,
    /// Adam's beta1 (the DCGAN paper's 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f64,
    /// Adam's beta2.
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// The adversarial objective.
    #[arg(long, value_enum, default_value_t = Objective::Ns)]
    pub objective: Objective,
    /// Class-conditional: the generator reads the label's one-hot code beside z and the
    /// discriminator is a projection discriminator; samples cycle through the ten digits.
    /// `--conditional false` trains the unconditional DCGAN (a run directory without this
    /// setting is one).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    #[serde(default)]
    pub conditional: bool,
    /// Training images used (the first N, 1 to 60000).
    #[arg(long, default_value_t = MNIST_TRAIN_IMAGES)]
    pub train_images: usize,
    /// Samples written and scored at the end of training (0: none).
    #[arg(long, default_value_t = 10_000)]
    pub final_samples: usize,
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
            learning_rate: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            objective: Objective::Ns,
            conditional: true,
            train_images: MNIST_TRAIN_IMAGES,
            final_samples: 10_000,
            threads: 2,
            data_dir: None,
        }
    }
}

/// A generous bound on the training memory per image of a batch: both networks' activations and
/// their gradients, and the convolutions' unfolded patches.
const BYTES_PER_IMAGE: u128 = 2 << 20;

impl RunConfig for Config {
    const UNIT: Unit = Unit::Epochs;

    fn budget(&self) -> u64 {
        self.epochs
    }

    fn checkpoint_every(&self) -> u64 {
        1
    }

    fn validate(&self) -> Result<(), String> {
        let data_dir = self.data_dir.as_deref();
        validate::epoch_trainer(
            self.epochs,
            self.batch_size,
            BYTES_PER_IMAGE,
            self.learning_rate,
            self.train_images,
            MNIST_TRAIN_IMAGES,
            data_dir,
        )?;
        if self.batch_size < 2 {
            return Err(format!("batch_size must be at least 2 (batch normalisation), got {}", self.batch_size));
        }
        if self.batch_size > self.train_images {
            return Err(format!(
                "batch_size {} is larger than train_images {}: every batch would be dropped",
                self.batch_size, self.train_images
            ));
        }
        validate::between("beta1", self.beta1, 0.0, 0.999_999)?;
        validate::between("beta2", self.beta2, 0.0, 0.999_999_9)?;
        glimpse::limits::check_memory("final_samples", self.final_samples as u128, 784 * 5)?;
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
        let parsed = Flags::try_parse_from(["gan"]).unwrap().config;
        assert_eq!(parsed, Config::default());
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn every_bad_setting_is_refused_with_its_name() {
        type Case = (fn(&mut Config), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.epochs = 0, "epochs must be at least 1"),
            (|c| c.batch_size = 0, "batch_size must be at least 1"),
            (|c| c.batch_size = 1, "batch_size must be at least 2"),
            (|c| c.batch_size = usize::MAX, "batch_size needs"),
            (|c| c.learning_rate = -1.0, "learning_rate must be a finite number > 0"),
            (|c| c.learning_rate = f64::NAN, "learning_rate must be a finite number > 0"),
            (|c| c.beta1 = 1.0, "beta1 must be between"),
            (|c| c.beta1 = -0.1, "beta1 must be between"),
            (|c| c.beta2 = f64::NAN, "beta2 must be between"),
            (|c| c.train_images = 0, "train_images must be between 1 and 60000"),
            (
                |c| {
                    c.train_images = 100;
                    c.batch_size = 128
                },
                "batch_size 128 is larger than train_images 100",
            ),
            (|c| c.final_samples = usize::MAX, "final_samples needs"),
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
