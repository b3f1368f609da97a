//! Training the MNIST classifier (`examples/mnist_cnn.rs`) on glimpse's run layer: [`Config`]
//! (flags and serde, validated), [`Training`] (what a run trains and checkpoints) and one loop,
//! [`train()`], with `--stop-after`, `--resume` and `--eval` (test accuracy).
//!
//! Everything random is saved or derived, so that a stopped and resumed run ends bit for bit
//! where the uninterrupted run ends: the loader's shuffling generator and the augmentation's
//! shift generator are saved in each checkpoint; the dropout masks are drawn from the dfdx device
//! of the batches, which for epoch `e` is seeded from `(seed, e)` ([`dropout_seed`]).

use crate::classifier::{accuracy, train_epoch, MnistCnn, MnistCnnModel};
use crate::EvalError;
use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::data::{Dataset, Loader, Mnist, View};
use glimpse::nn::with_threads_awake;
use glimpse::optim::{Adam, AdamConfig, AdamOrder};
use glimpse::run::{Checkpoint, Cli, Control, Eval, Launch, Run, RunConfig, RunError, Unit};
use glimpse::validate;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The example's name: the default run directory's prefix.
pub const EXAMPLE: &str = "mnist_cnn";
/// Training images in MNIST.
pub const MNIST_TRAIN_IMAGES: usize = 60_000;
/// Side of an MNIST image, in pixels.
const SIDE: usize = 28;
/// Test images per forward pass when measuring accuracy.
const EVAL_BATCH: usize = 1000;

/// Hyperparameters (about 99.2% test accuracy after the 8 default epochs). The seed is the
/// run's (`--seed`), not a setting.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Passes over the training images.
    #[arg(long, default_value_t = 8)]
    pub epochs: u64,
    /// Images per Adam step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate of the first epoch.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Factor applied to the learning rate after every epoch, in (0, 1].
    #[arg(long, default_value_t = 0.7)]
    pub lr_decay: f64,
    /// Random translation of training images, in pixels, below 28 (0 turns augmentation off).
    #[arg(long, default_value_t = 2)]
    pub max_shift: usize,
    /// Training images used (the first N, 1 to 60000).
    #[arg(long, default_value_t = MNIST_TRAIN_IMAGES)]
    pub train_images: usize,
    /// Worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Directory holding the MNIST IDX files [default: $MNIST_DIR, else ../shared/data/mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 64,
            learning_rate: 1e-3,
            lr_decay: 0.7,
            max_shift: 2,
            train_images: MNIST_TRAIN_IMAGES,
            threads: None,
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
        // Activations, their gradients and the convolutions' unfolded patches: under 1 MiB an image.
        let (data_dir, images) = (self.data_dir.as_deref(), MNIST_TRAIN_IMAGES);
        validate::epoch_trainer(
            self.epochs,
            self.batch_size,
            1 << 20,
            self.learning_rate,
            self.train_images,
            images,
            data_dir,
        )?;
        validate::ensure(self.lr_decay > 0.0 && self.lr_decay <= 1.0, || {
            format!("lr_decay must be in (0, 1], got {}", self.lr_decay)
        })?;
        validate::ensure(self.max_shift < SIDE, || {
            format!("max_shift must be below the image side ({SIDE}), got {}", self.max_shift)
        })?;
        if let Some(threads) = self.threads {
            glimpse::limits::check_threads("threads", threads)?;
        }
        Ok(())
    }
}

/// The seed of the dfdx device that epoch `epoch` of a run with `seed` draws its batches, and so
/// its dropout masks, from: ChaCha12 of `seed`, stream `epoch` (the loader uses stream 0).
pub fn dropout_seed(seed: u64, epoch: u64) -> u64 {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    rng.next_u64()
}

/// The per-epoch figures of a run: with them a resumed run's summary equals the uninterrupted one's.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Curves {
    /// Mean cross-entropy of each epoch's batches.
    pub train_loss: Vec<f64>,
    /// Test accuracy after each epoch.
    pub test_accuracy: Vec<f64>,
    /// Adam steps taken (the TensorBoard step of `train/loss`).
    pub steps: u64,
}

impl Curves {
    /// Epochs done.
    pub fn epochs(&self) -> u64 {
        self.train_loss.len() as u64
    }
}

/// What a run trains and checkpoints.
pub struct Training {
    /// The classifier.
    pub model: MnistCnnModel,
    /// Its optimizer.
    pub opt: Adam<MnistCnnModel>,
    /// The shuffling loader of the training images.
    pub loader: Loader,
    /// The generator of the augmentation's shifts.
    pub shift_rng: ChaCha12Rng,
    /// The figures of the epochs done.
    pub curves: Curves,
    /// Training time of each epoch done, seconds (saved apart, in `timings.json`: the one thing a
    /// resumed run does not repeat exactly).
    pub epoch_seconds: Vec<f64>,
}

impl Training {
    /// A fresh classifier built on `dev` with Adam (in dfdx's order of operations, as the figures
    /// were measured) and generators seeded from `seed`.
    pub fn new(config: &Config, seed: u64, dev: &Cpu) -> Self {
        let model = dev.build_module::<MnistCnn, f32>();
        let adam = AdamConfig { lr: config.learning_rate as f32, order: AdamOrder::Dfdx, ..Default::default() };
        Self {
            opt: Adam::new(&model, adam),
            model,
            loader: Loader::new(config.batch_size, View::Grey, seed),
            shift_rng: ChaCha12Rng::seed_from_u64(seed.wrapping_add(1)),
            curves: Curves::default(),
            epoch_seconds: Vec::new(),
        }
    }
}

/// The weights' file in a snapshot.
pub const MODEL_FILE: &str = "model.safetensors";

impl Checkpoint for Training {
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        checkpoint::save_weights(&self.model, &snap.join(MODEL_FILE))?;
        self.opt.save(snap, "adam")?;
        checkpoint::save_json(&self.shift_rng, &snap.join("shift.json"))?;
        glimpse::run::save_epochs(snap, &self.loader, &self.curves, &self.epoch_seconds)
    }

    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        checkpoint::load_weights(&mut self.model, &snap.join(MODEL_FILE))?;
        self.opt.load(snap, "adam")?;
        self.shift_rng = checkpoint::load_json(&snap.join("shift.json"))?;
        (self.curves, self.epoch_seconds) = glimpse::run::load_epochs(snap, &mut self.loader)?;
        Ok(())
    }
}

/// `summary.json` of a run: the run layer's `seed`, `wall_seconds`, `epochs`, then the classifier's.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Training time over every process of the run, seconds.
    pub wall_seconds: f64,
    /// Epochs trained.
    pub epochs: u64,
    /// Fraction of the 10,000 test images classified correctly after the last epoch.
    pub test_accuracy: f64,
    /// Mean cross-entropy of the last epoch's batches.
    pub train_loss: f64,
    /// Mean training time of an epoch (evaluation excluded), seconds.
    pub seconds_per_epoch: f64,
    /// Training time of each epoch, seconds.
    pub epoch_seconds: Vec<f64>,
}

/// Trains the classifier of `run`'s config, a fresh one or the checkpoint of a `--resume`d run,
/// logging `train/loss` (every 100 steps) and `test/accuracy` and checkpointing after every epoch.
/// Call it on the rayon pool that should do the work. Returns `None` when `--stop-after` stopped
/// the run.
pub fn train(mut run: Run<Config>) -> Result<Option<Summary>, EvalError> {
    let cfg = run.config.clone();
    let mnist = Mnist::load_with(Dataset::Mnist, cfg.data_dir.as_deref(), false)?;
    let train_set = mnist.train.take(cfg.train_images);
    let dev = Cpu::seed_from_u64(run.seed);
    let mut s = Training::new(&cfg, run.seed, &dev);
    run.restore(&mut s)?;

    while s.curves.epochs() < cfg.epochs {
        let epoch = s.curves.epochs() + 1;
        let clock = Instant::now();
        s.opt.cfg.lr = (cfg.learning_rate * cfg.lr_decay.powi(epoch as i32 - 1)) as f32;
        let batches = Cpu::seed_from_u64(dropout_seed(run.seed, epoch));
        let (mut logged, progress) = (Vec::new(), run.progress());
        let Training { model, opt, loader, shift_rng, .. } = &mut s;
        // Many short parallel operations with serial work between them: the pool's threads
        // wait awake for the next one.
        let stats = with_threads_awake(|| {
            train_epoch(model, opt, loader, &train_set, &batches, cfg.max_shift, shift_rng, |step, loss| {
                if step % 100 == 0 {
                    logged.push((step as u64, loss as f64));
                    progress.message(format!("epoch {epoch} step {step} loss {loss:.3}"));
                }
            })
        })
        .map_err(|message| EvalError::Training { epoch, message })?;
        s.epoch_seconds.push(clock.elapsed().as_secs_f64());
        for (step, loss) in logged {
            run.scalar("train/loss", loss, s.curves.steps + step)?;
        }
        s.curves.steps += stats.steps as u64;
        s.curves.train_loss.push(stats.mean_loss as f64);
        s.curves.test_accuracy.push(accuracy(&s.model, &mnist.test, &dev, EVAL_BATCH));
        let (accuracy, seconds) = (s.curves.test_accuracy[epoch as usize - 1], s.epoch_seconds[epoch as usize - 1]);
        run.scalar("test/accuracy", accuracy, epoch)?;
        run.scalar("train/seconds_per_epoch", seconds, epoch)?;
        println!(
            "epoch {epoch}: train loss {:.4}, test accuracy {:.2}%, {seconds:.1} s",
            stats.mean_loss,
            100.0 * accuracy
        );
        if run.tick(epoch, &s)? == Control::Stop {
            return Ok(None);
        }
    }

    let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
    let metrics = serde_json::json!({
        "test_accuracy": last(&s.curves.test_accuracy),
        "train_loss": last(&s.curves.train_loss),
        "seconds_per_epoch": s.epoch_seconds.iter().sum::<f64>() / s.epoch_seconds.len().max(1) as f64,
        "epoch_seconds": s.epoch_seconds,
    });
    let summary = run.finish(s.curves.epochs(), &s, &metrics)?;
    let bad = |e: serde_json::Error| RunError::Config { path: "summary.json".into(), message: e.to_string() };
    Ok(Some(serde_json::from_value(summary).map_err(bad)?))
}

/// What a command line did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run ended with this summary.
    Finished(Summary),
    /// `--stop-after` stopped it; `--resume` continues it.
    Stopped,
    /// `--eval` printed this evaluation.
    Evaluated(serde_json::Value),
}

/// Parses the process's command line (`--help` and flag errors exit, as clap does) and trains,
/// resumes or evaluates.
pub fn run_command_line() -> Result<Outcome, EvalError> {
    launch(Launch::from_command_line(EXAMPLE)?)
}

/// [`run_command_line`] on `args` (the first is the program name); a flag error is returned.
pub fn run_with_args(args: &[&str]) -> Result<Outcome, EvalError> {
    use clap::{CommandFactory, FromArgMatches};
    let flags = |e: clap::Error| EvalError::Config(e.to_string().trim().to_string());
    let matches = Cli::<Config>::command().bin_name(EXAMPLE).try_get_matches_from(args).map_err(flags)?;
    let cli = Cli::<Config>::from_arg_matches(&matches).map_err(flags)?;
    launch(Launch::new(EXAMPLE, &cli.run, &cli.config, &Config::default(), &matches)?)
}

/// Trains (on a pool of the configured threads) or evaluates.
fn launch(launch: Launch<Config>) -> Result<Outcome, EvalError> {
    // Without this, system time (page faults, thread wake-ups) was over half of each epoch.
    glimpse::nn::keep_freed_memory();
    match launch {
        Launch::Train(run) => {
            let threads = run.config.threads;
            Ok(in_pool(threads, move || train(run))?.map_or(Outcome::Stopped, Outcome::Finished))
        }
        Launch::Eval(eval) => in_pool(eval.config.threads, || evaluate_run(&eval)),
    }
}

/// Runs `f` on a rayon pool of `threads` threads (one per core when `None`) that the calling
/// thread joins.
fn in_pool<R: Send>(threads: Option<usize>, f: impl FnOnce() -> Result<R, EvalError> + Send) -> Result<R, EvalError> {
    glimpse::nn::in_thread_pool(threads, f).map_err(|e| EvalError::Config(format!("cannot start the threads: {e}")))?
}

/// `--eval`: the test accuracy of the checkpoint.
fn evaluate_run(eval: &Eval<Config>) -> Result<Outcome, EvalError> {
    let dev = Cpu::seed_from_u64(eval.seed);
    let mut model = dev.build_module::<MnistCnn, f32>();
    checkpoint::load_weights(&mut model, &eval.snapshot.join(MODEL_FILE))?;
    let mnist = Mnist::load_with(Dataset::Mnist, eval.config.data_dir.as_deref(), false)?;
    let test_accuracy = accuracy(&model, &mnist.test, &dev, EVAL_BATCH);
    Ok(Outcome::Evaluated(eval.report(&serde_json::json!({ "test_accuracy": test_accuracy, "epochs": eval.done }))))
}
