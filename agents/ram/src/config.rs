//! The RAM's hyperparameters ([`Config`]) as command-line flags and serde, validated before a
//! run writes anything. The glimpse settings default to the paper's for each task (Tables 1–2 of
//! arXiv 1406.6247): 6 glimpses of 8×8 at 1 scale on 28×28 MNIST, 6 of 12×12 at 3 scales on the
//! 60×60 tasks, 8 of 12×12 at 4 scales on 100×100.

use crate::model::MAX_GLIMPSE;
use crate::sensor::Retina;
use crate::tasks::Task;
use glimpse::run::{RunConfig, Unit};
use glimpse::validate;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The recurrent core.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CoreKind {
    /// The paper's ReLU RNN of 256 units.
    Rnn,
    /// An LSTM of 256 units.
    Lstm,
}

/// Where the glimpses after the first look.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Locations {
    /// Chosen by the location network, trained by REINFORCE.
    Learned,
    /// Uniform at random (the paper's ablation): no policy, no REINFORCE.
    Random,
}

/// How the learning rate changes over a run.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `learning_rate` throughout.
    Constant,
    /// Half a cosine from `learning_rate` at the first step to 0 after the last, step by step.
    Cosine,
}

impl LrSchedule {
    /// The schedule of run directories written before there was a choice.
    fn before_cosine() -> Option<Self> {
        Some(LrSchedule::Constant)
    }
}

/// Training images in MNIST.
pub const MNIST_TRAIN_IMAGES: usize = 60_000;

/// Hyperparameters. The seed is the run's (`--seed`), not a setting.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The task.
    #[arg(long, value_enum, default_value_t = Task::Mnist)]
    pub task: Task,
    /// Training epochs (passes over the training digits, each on freshly drawn canvases)
    /// [default: the task's, 150 on 28×28, 300 on 60×60, 120 on 100×100].
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Images per mini-batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate [default: the task's, 3e-4 on 28×28, 1e-3 on the larger canvases].
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// How the learning rate changes over the run [default: the task's, constant on 28×28,
    /// cosine on the larger canvases].
    #[arg(long, value_enum)]
    #[serde(default = "LrSchedule::before_cosine")]
    pub lr_schedule: Option<LrSchedule>,
    /// Glimpses per image [default: the task's, 6 or 8].
    #[arg(long)]
    pub glimpses: Option<usize>,
    /// Side of a glimpse patch in pixels [default: the task's, 8 or 12].
    #[arg(long)]
    pub patch: Option<usize>,
    /// Patches per glimpse, each twice as wide as the last [default: the task's, 1, 3 or 4].
    #[arg(long)]
    pub scales: Option<usize>,
    /// The recurrent core.
    #[arg(long, value_enum, default_value_t = CoreKind::Rnn)]
    pub core: CoreKind,
    /// Where the glimpses after the first look.
    #[arg(long, value_enum, default_value_t = Locations::Learned)]
    pub locations: Locations,
    /// Standard deviation of the Gaussian location policy, locations spanning [-1, 1] [default:
    /// the task's, 0.05 on 28×28, 0.25 on the larger canvases].
    #[arg(long)]
    pub std: Option<f64>,
    /// The final test (and `--eval`): the class log-probabilities of M sampled glimpse paths
    /// averaged (0: one pass where the policy's mean says, as the per-epoch curve looks).
    #[arg(long, default_value_t = 10)]
    pub test_samples: usize,
    /// Training digits used (the first N, 1 to 60000).
    #[arg(long, default_value_t = MNIST_TRAIN_IMAGES)]
    pub train_images: usize,
    /// The seed of the test canvases (the same test set for every --seed).
    #[arg(long, default_value_t = 0)]
    pub test_set_seed: u64,
    /// An external test set instead: images as `.npy` (`uint8` or `float32` in [0, 1], `[N, H, W]`).
    #[arg(long, requires = "test_labels")]
    pub test_images: Option<PathBuf>,
    /// Its labels as `.npy` (integers 0–9, `[N]`).
    #[arg(long, requires = "test_images")]
    pub test_labels: Option<PathBuf>,
    /// Test images drawn with their glimpse paths in `glimpses.png` after each epoch (0: none).
    #[arg(long, default_value_t = 16)]
    pub figure_images: usize,
    /// Threads for the matrix products and the sensor (2 matches the PyTorch benchmark).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Directory of the MNIST files [default: $MNIST_DIR, else ../shared/data/mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            task: Task::Mnist,
            epochs: None,
            batch_size: 128,
            learning_rate: None,
            lr_schedule: None,
            glimpses: None,
            patch: None,
            scales: None,
            core: CoreKind::Rnn,
            locations: Locations::Learned,
            std: None,
            test_samples: 10,
            train_images: MNIST_TRAIN_IMAGES,
            test_set_seed: 0,
            test_images: None,
            test_labels: None,
            figure_images: 16,
            threads: 2,
            data_dir: None,
        }
    }
}

impl Config {
    /// Training epochs: the flag, else the task's (the budgets of the results in docs/ram.md:
    /// 150 on 28×28, 300 on 60×60, 120 on 100×100).
    pub fn epoch_count(&self) -> u64 {
        self.epochs.unwrap_or(match self.task {
            Task::Mnist => 150,
            Task::Translated | Task::Cluttered60 => 300,
            Task::Cluttered100 => 120,
        })
    }

    /// Adam's learning rate at the start: the flag, else the task's (3e-4 on 28×28, 1e-3 on the
    /// larger canvases, where it learns about twice as fast as 3e-4).
    pub fn base_learning_rate(&self) -> f64 {
        self.learning_rate.unwrap_or(if self.task == Task::Mnist { 3e-4 } else { 1e-3 })
    }

    /// The learning-rate schedule: the flag, else the task's (constant on 28×28, cosine on the
    /// larger canvases).
    pub fn schedule(&self) -> LrSchedule {
        self.lr_schedule.unwrap_or(if self.task == Task::Mnist { LrSchedule::Constant } else { LrSchedule::Cosine })
    }

    /// Glimpses per image: the flag, else the task's (8 on 100×100, else 6).
    pub fn glimpse_count(&self) -> usize {
        self.glimpses.unwrap_or(if self.task == Task::Cluttered100 { 8 } else { 6 })
    }

    /// The location policy's standard deviation: the flag, else the task's (0.05 on 28×28 as
    /// kevinzakka/recurrent-visual-attention; 0.25 on the larger canvases, where the digit must
    /// be searched for).
    pub fn policy_std(&self) -> f64 {
        self.std.unwrap_or(if self.task == Task::Mnist { 0.05 } else { 0.25 })
    }

    /// The learning rate at step `step` (0-based) of `steps_per_epoch` in epoch `epoch` (1-based).
    pub fn rate(&self, epoch: u64, step: u64, steps_per_epoch: u64) -> f64 {
        let lr = self.base_learning_rate();
        match self.schedule() {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let done = (epoch - 1) * steps_per_epoch + step;
                glimpse::optim::cosine_rate(lr, done, self.epoch_count() * steps_per_epoch)
            }
        }
    }

    /// The sensor: the flags, else the task's (8×8 at 1 scale on 28×28, 12×12 at 3 scales on
    /// 60×60, at 4 on 100×100).
    pub fn retina(&self) -> Result<Retina, String> {
        let (patch, scales) = match self.task {
            Task::Mnist => (8, 1),
            Task::Translated | Task::Cluttered60 => (12, 3),
            Task::Cluttered100 => (12, 4),
        };
        Retina::new(self.patch.unwrap_or(patch), self.scales.unwrap_or(scales))
    }
}

impl RunConfig for Config {
    const UNIT: Unit = Unit::Epochs;

    fn budget(&self) -> u64 {
        self.epoch_count()
    }

    fn checkpoint_every(&self) -> u64 {
        1
    }

    fn validate(&self) -> Result<(), String> {
        let side = self.task.side();
        // A canvas, its glimpses and the activations of every step, with their gradients.
        let bytes = (4 * side * side + 64 * 1024) as u128;
        let data_dir = self.data_dir.as_deref();
        validate::epoch_trainer(
            self.epoch_count(),
            self.batch_size,
            bytes,
            self.base_learning_rate(),
            self.train_images,
            MNIST_TRAIN_IMAGES,
            data_dir,
        )?;
        validate::between("glimpses", self.glimpse_count(), 1, 64)?;
        let retina = self.retina()?;
        validate::ensure(retina.len() <= MAX_GLIMPSE, || {
            format!(
                "a glimpse of {} patches of {}×{} is {} values; at most {MAX_GLIMPSE} are built in",
                retina.scales(),
                retina.patch(),
                retina.patch(),
                retina.len()
            )
        })?;
        let std = self.policy_std();
        validate::ensure(std.is_finite() && std > 0.0 && std <= 2.0, || format!("std must be in (0, 2], got {std}"))?;
        validate::at_most("test_samples", self.test_samples, 100)?;
        validate::at_most("figure_images", self.figure_images, 64)?;
        glimpse::limits::check_threads("threads", self.threads)?;
        for path in [&self.test_images, &self.test_labels].into_iter().flatten() {
            validate::ensure(path.is_file(), || format!("{} is not a file", path.display()))?;
        }
        validate::ensure(self.test_images.is_some() == self.test_labels.is_some(), || {
            "test_images and test_labels go together".into()
        })
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

    fn parse(args: &[&str]) -> Config {
        Flags::try_parse_from(std::iter::once("ram").chain(args.iter().copied())).unwrap().config
    }

    #[test]
    fn the_flags_defaults_are_the_default_config_and_the_tasks_use_the_papers_glimpses() {
        assert_eq!(parse(&[]), Config::default());
        let setting = |c: &Config| {
            let r = c.retina().unwrap();
            (c.glimpse_count(), r.patch(), r.scales())
        };
        assert_eq!(setting(&parse(&[])), (6, 8, 1));
        assert_eq!(setting(&parse(&["--task", "translated"])), (6, 12, 3));
        assert_eq!(setting(&parse(&["--task", "cluttered60"])), (6, 12, 3));
        assert_eq!(setting(&parse(&["--task", "cluttered100"])), (8, 12, 4));
        assert_eq!(setting(&parse(&["--task", "cluttered100", "--scales", "2", "--glimpses", "3"])), (3, 12, 2));
        let budget = |c: &Config| (c.epoch_count(), c.base_learning_rate(), c.schedule());
        assert_eq!(budget(&parse(&[])), (150, 3e-4, LrSchedule::Constant));
        assert_eq!(budget(&parse(&["--task", "cluttered60"])), (300, 1e-3, LrSchedule::Cosine));
        assert_eq!(budget(&parse(&["--task", "cluttered100"])), (120, 1e-3, LrSchedule::Cosine));
        let set =
            parse(&["--task", "translated", "--epochs", "7", "--learning-rate", "0.01", "--lr-schedule", "constant"]);
        assert_eq!(budget(&set), (7, 0.01, LrSchedule::Constant));
    }

    #[test]
    fn every_bad_setting_is_refused_with_its_name() {
        let refused = |args: &[&str], word: &str| {
            let message = parse(args).validate().unwrap_err();
            assert!(message.contains(word), "{args:?}: {message}");
        };
        refused(&["--epochs", "0"], "epochs");
        refused(&["--batch-size", "0"], "batch_size");
        refused(&["--learning-rate", "NaN"], "learning_rate");
        refused(&["--glimpses", "0"], "glimpses");
        refused(&["--patch", "0"], "patch");
        refused(&["--scales", "9"], "scales");
        refused(&["--patch", "16", "--scales", "5"], "1024");
        refused(&["--std", "0"], "std");
        refused(&["--std", "inf"], "std");
        refused(&["--test-samples", "1000"], "test_samples");
        refused(&["--threads", "0"], "threads");
        refused(&["--train-images", "70000"], "train_images");
        refused(&["--test-images", "/nonexistent.npy", "--test-labels", "/nonexistent.npy"], "not a file");
    }
}
