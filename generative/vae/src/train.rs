//! Training a VAE on MNIST: [`Trainer`] (one Adam step per mini-batch), [`Training`] (what a run
//! trains and checkpoints) and one visible loop, [`train()`], on glimpse's run layer.
//!
//! Everything random in training has its own ChaCha12 stream from the run's seed ([`stream`]):
//! the loader's shuffling and binarisation (stream 0, the loader's own), the reparameterisation
//! noise (1), the noise of the test-loss evaluation (2, the same draws after every epoch) and the
//! prior samples of the figures (3). The loader's and the noise's generators are saved in each
//! checkpoint, so `--stop-after` then `--resume` ends bit for bit where the uninterrupted run ends.

use crate::config::Config;
use crate::figures::write_figures;
use crate::iw::iw_log_likelihood;
use crate::loss::negative_elbo;
use crate::model::{Images, VaeModel};
use crate::VaeError;
use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::data::{Dataset, ImageSet, Loader, Mnist, View};
use glimpse::generative::{median, standard_normal};
use glimpse::nn::with_threads_awake;
use glimpse::optim::{Adam, AdamConfig, AdamOrder, NonFiniteGradient};
use glimpse::run::{Checkpoint, Control, Run, RunError};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The random streams of a run (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The reparameterisation noise of training.
    Training = 1,
    /// The noise of the test-loss evaluation.
    Evaluation = 2,
    /// Prior samples z ~ N(0, I) for figures and `--sample`.
    Samples = 3,
}

/// The ChaCha12 generator of `stream` for `seed` (see [`glimpse::generative::stream`]).
pub fn stream(seed: u64, stream: Stream) -> ChaCha12Rng {
    glimpse::generative::stream(seed, stream as u64)
}

/// A model with its optimizer, gradient buffers and noise generator: one [`Trainer::step`] per
/// mini-batch.
pub struct Trainer<const Z: usize, M: VaeModel<Z>> {
    /// The model being trained.
    pub model: M,
    opt: Adam<M>,
    grads: Option<Gradients<f32, Cpu>>,
    noise: ChaCha12Rng,
    dev: Cpu,
}

/// The weights' file in a snapshot.
pub const MODEL_FILE: &str = "model.safetensors";

impl<const Z: usize, M: VaeModel<Z>> Trainer<Z, M> {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8) at `learning_rate`, in dfdx's
    /// order of operations; the noise is [`Stream::Training`] of `seed`.
    pub fn new(model: M, learning_rate: f64, seed: u64, dev: &Cpu) -> Self {
        let cfg = AdamConfig { lr: learning_rate as f32, order: AdamOrder::Dfdx, ..Default::default() };
        let opt = Adam::new(&model, cfg);
        let grads = Some(model.alloc_grads());
        Self { model, opt, grads, noise: stream(seed, Stream::Training), dev: dev.clone() }
    }

    /// One Adam step on the summed negative ELBO of `x`; returns that sum (divide by the batch size
    /// for the per-image figure). A NaN or infinite gradient changes nothing and is an error.
    pub fn step(&mut self, x: Images<NoneTape>) -> Result<f32, NonFiniteGradient> {
        // Zeroed: fresh, or by the last step's `update_and_zero`.
        let grads = self.grads.take().unwrap_or_else(|| self.model.alloc_grads());
        let eps = standard_normal::<Z>(&mut self.noise, x.shape().0, &self.dev);
        let loss = negative_elbo(&self.model, x.traced(grads), eps);
        let value = loss.array();
        let mut grads = loss.backward();
        // A refused step leaves the gradients as they are: the next step allocates fresh ones.
        self.opt.update_and_zero(&mut self.model, &mut grads, None)?;
        self.grads = Some(grads);
        Ok(value)
    }

    /// The optimizer (its moments and step count).
    pub fn optimizer(&self) -> &Adam<M> {
        &self.opt
    }

    /// Saves the weights ([`MODEL_FILE`]), Adam's moments and the noise generator into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        checkpoint::save_weights(&self.model, &dir.join(MODEL_FILE))?;
        self.opt.save(dir, "adam")?;
        checkpoint::save_json(&self.noise, &dir.join("noise.json"))
    }

    /// Restores what [`Trainer::save`] wrote.
    pub fn load(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        checkpoint::load_weights(&mut self.model, &dir.join(MODEL_FILE))?;
        self.opt.load(dir, "adam")?;
        self.noise = checkpoint::load_json(&dir.join("noise.json"))?;
        Ok(())
    }
}

/// The per-epoch losses of a run: with them a resumed run's summary equals the uninterrupted one's.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Curves {
    /// Negative ELBO per training image, averaged over each epoch.
    pub train_loss: Vec<f64>,
    /// Negative ELBO per test image after each epoch.
    pub test_loss: Vec<f64>,
}

impl Curves {
    /// Epochs done.
    pub fn epochs(&self) -> u64 {
        self.train_loss.len() as u64
    }
}

/// What a run trains and checkpoints: the trainer, the loader, the curves and timings so far.
pub struct Training<const Z: usize, M: VaeModel<Z>> {
    /// Model, optimizer and noise.
    pub trainer: Trainer<Z, M>,
    /// The shuffling loader of the training images.
    pub loader: Loader,
    /// The losses of the epochs done.
    pub curves: Curves,
    /// Training time of each epoch done (evaluation excluded), seconds; saved apart from the
    /// curves (`timings.json`), as the one thing a resumed run does not repeat exactly.
    pub epoch_seconds: Vec<f64>,
}

impl<const Z: usize, M: VaeModel<Z>> Training<Z, M> {
    /// A fresh model for `config` built on `dev` (its output bias from `train_set`, see
    /// [`crate::OutputBias`]), its trainer and loader seeded with `seed`.
    pub fn new(config: &Config, train_set: &ImageSet, seed: u64, dev: &Cpu) -> Self {
        let view = config.data_view.view();
        let mut model = M::build(dev);
        if config.output_bias == crate::OutputBias::DataMean {
            model.init_output_bias(&train_set.mean_image(view));
        }
        let trainer = Trainer::new(model, config.learning_rate, seed, dev);
        let loader = Loader::new(config.batch_size, view, seed);
        Self { trainer, loader, curves: Curves::default(), epoch_seconds: Vec::new() }
    }
}

impl<const Z: usize, M: VaeModel<Z>> Checkpoint for Training<Z, M> {
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        self.trainer.save(snap)?;
        glimpse::run::save_epochs(snap, &self.loader, &self.curves, &self.epoch_seconds)
    }

    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        self.trainer.load(snap)?;
        (self.curves, self.epoch_seconds) = glimpse::run::load_epochs(snap, &mut self.loader)?;
        Ok(())
    }
}

/// The VAE's keys in `summary.json`, after the run layer's `seed`, `wall_seconds` and `epochs`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Training time over every process of the run, seconds.
    pub wall_seconds: f64,
    /// Epochs trained.
    pub epochs: u64,
    /// Negative ELBO per test image after the last epoch, as PyTorch's example reports it.
    pub test_loss: f64,
    /// Negative ELBO per training image averaged over the last epoch.
    pub train_loss: f64,
    /// Median training time of an epoch (evaluation excluded), seconds.
    pub seconds_per_epoch: f64,
    /// Training time of each epoch, seconds.
    pub epoch_seconds: Vec<f64>,
    /// Importance-weighted log-likelihood of the binarised test set, nats (when asked for).
    pub iw_log_likelihood: Option<f64>,
    /// Importance samples used for it.
    pub iw_samples: usize,
}

/// Trains the VAE of `run`'s config: a fresh model, or the checkpoint of a `--resume`d run, to
/// its epochs, logging `train/loss`, `test/loss`, figures (PNG and TensorBoard) and checkpointing
/// after every epoch through the run layer. Call it on the rayon pool that should do the work
/// (see `glimpse::nn::in_thread_pool`). Returns `None` when `--stop-after` stopped the run.
pub fn train<const Z: usize, M: VaeModel<Z>>(mut run: Run<Config>) -> Result<Option<Summary>, VaeError> {
    let cfg = run.config.clone();
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let train_set = mnist.train.take(cfg.train_images);
    let dev = Cpu::seed_from_u64(run.seed);
    let mut s = Training::<Z, M>::new(&cfg, &train_set, run.seed, &dev);
    run.restore(&mut s)?;
    let batches = train_set.len().div_ceil(cfg.batch_size);

    while s.curves.epochs() < cfg.epochs {
        let epoch = s.curves.epochs() + 1;
        let clock = Instant::now();
        // Many short parallel products with serial work between them: the pool's threads wait
        // awake for the next one.
        let total = with_threads_awake(|| -> Result<f64, VaeError> {
            let mut total = 0.0;
            for (b, batch) in s.loader.epoch(&train_set, &dev).enumerate() {
                let step = s.trainer.step(batch.images);
                let loss = step.map_err(|source| VaeError::NonFiniteGradient { source, epoch, batch: b })? as f64;
                if !loss.is_finite() {
                    return Err(VaeError::NonFinite { loss, epoch, batch: b });
                }
                total += loss;
                if b % 50 == 0 {
                    let per_image = loss / cfg.batch_size as f64;
                    run.progress().message(format!("epoch {epoch} batch {b}/{batches} loss {per_image:.2}"));
                }
            }
            Ok(total)
        })?;
        s.epoch_seconds.push(clock.elapsed().as_secs_f64());
        s.curves.train_loss.push(total / train_set.len() as f64);
        let view = cfg.data_view.view();
        s.curves.test_loss.push(evaluate(&s.trainer.model, &mnist.test, cfg.batch_size, view, run.seed, &dev));
        log_epoch(&mut run, &s, &mnist.test, &dev)?;
        if run.tick(epoch, &s)? == Control::Stop {
            return Ok(None);
        }
    }

    let iw_log_likelihood = (cfg.iw_samples > 0).then(|| {
        let show = |line: String| run.progress().message(line);
        let estimate = importance_weighted(&s.trainer.model, &mnist.test, &cfg, run.seed, &dev, show);
        println!("importance-weighted log-likelihood ({} samples): {estimate:.2} nats", cfg.iw_samples);
        estimate
    });
    let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
    let metrics = serde_json::json!({
        "test_loss": last(&s.curves.test_loss),
        "train_loss": last(&s.curves.train_loss),
        "seconds_per_epoch": median(&s.epoch_seconds),
        "epoch_seconds": s.epoch_seconds,
        "iw_log_likelihood": iw_log_likelihood,
        "iw_samples": cfg.iw_samples,
    });
    let summary = run.finish(s.curves.epochs(), &s, &metrics)?;
    let bad = |e: serde_json::Error| RunError::Config { path: "summary.json".into(), message: e.to_string() };
    Ok(Some(serde_json::from_value(summary).map_err(bad)?))
}

/// Prints and logs the epoch just done (scalars, then the figures into the run directory and
/// TensorBoard).
fn log_epoch<const Z: usize, M: VaeModel<Z>>(
    run: &mut Run<Config>,
    s: &Training<Z, M>,
    test: &ImageSet,
    dev: &Cpu,
) -> Result<(), VaeError> {
    let c = &s.curves;
    let (epoch, i) = (c.epochs(), c.train_loss.len() - 1);
    println!(
        "epoch {epoch}: train loss {:.4} test loss {:.4} ({:.2} s)",
        c.train_loss[i], c.test_loss[i], s.epoch_seconds[i]
    );
    run.scalar("train/loss", c.train_loss[i], epoch)?;
    run.scalar("test/loss", c.test_loss[i], epoch)?;
    run.scalar("train/seconds_per_epoch", s.epoch_seconds[i], epoch)?;
    let (dir, seed) = (run.path().to_path_buf(), run.seed);
    write_figures(&s.trainer.model, test, seed, dev, &dir, run.writer()?, epoch)
}

/// The importance-weighted estimate of `config.iw_samples` samples on the first
/// `config.iw_images` test images, stochastically binarised with `seed`; `show` gets a progress line.
pub fn importance_weighted<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    test: &ImageSet,
    config: &Config,
    seed: u64,
    dev: &Cpu,
    show: impl Fn(String),
) -> f64 {
    let test = test.take(config.iw_images).binarized_stochastic(seed);
    let n = test.len();
    iw_log_likelihood(model, &test, config.iw_samples, seed, dev, |done| {
        if done % 100 == 0 || done == n {
            show(format!("log-likelihood: {done}/{n} images x {} samples", config.iw_samples));
        }
    })
}

/// The negative ELBO per image of `set`, summed over batches and divided by its size (PyTorch's
/// report), with the noise of [`Stream::Evaluation`] of `seed`: the same draws at every call.
pub fn evaluate<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    set: &ImageSet,
    batch_size: usize,
    view: View,
    seed: u64,
    dev: &Cpu,
) -> f64 {
    let mut noise = stream(seed, Stream::Evaluation);
    let mut loader = Loader::sequential(batch_size, view);
    let mut total = 0.0;
    for batch in loader.epoch(set, dev) {
        let eps = standard_normal::<Z>(&mut noise, batch.len(), dev);
        total += negative_elbo(model, batch.images, eps).array() as f64;
    }
    total / set.len().max(1) as f64
}
