//! Training on dynamically binarised MNIST: [`Training`] (what a run trains and checkpoints) and
//! one visible loop, [`train()`], on glimpse's run layer, scored after every epoch by the exact
//! test negative log-likelihood in nats ([`test_nll`]).
//!
//! Randomness: the model's initialisation comes from the run's seed (dfdx's device generator),
//! the loader's shuffling and binarisation from its own seeded ChaCha12 generator (saved in every
//! checkpoint), and the test set is binarised once with `test_binarization_seed`, the same for
//! every run. So `--stop-after` then `--resume` ends bit for bit where the uninterrupted run ends.

use crate::config::Config;
use crate::model::{PixelModel, Planes};
use crate::PixelError;
use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::data::{Dataset, ImageSet, Loader, Mnist, View};
use glimpse::generative::median;
use glimpse::nn::{bernoulli_nll_sum, bernoulli_nll_with_logits, with_threads_awake};
use glimpse::optim::{Adam, AdamConfig, AdamOrder};
use glimpse::run::{Checkpoint, Control, Run, RunError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The weights' file in a snapshot.
pub const MODEL_FILE: &str = "model.safetensors";

/// The per-epoch figures of a run: with them a resumed run's summary equals the uninterrupted one's.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Curves {
    /// Negative log-likelihood per training image (nats), averaged over each epoch.
    pub train_nll: Vec<f64>,
    /// Exact negative log-likelihood per test image (nats) after each epoch.
    pub test_nll: Vec<f64>,
}

impl Curves {
    /// Epochs done.
    pub fn epochs(&self) -> u64 {
        self.train_nll.len() as u64
    }
}

/// A model with its optimizer and gradient buffers: one [`Trainer::step`] per mini-batch.
pub struct Trainer<M: PixelModel> {
    /// The model being trained.
    pub model: M,
    /// Its optimizer (the learning rate of the current epoch in `cfg.lr`).
    pub opt: Adam<M>,
    grads: Vec<Gradients<f32, Cpu>>,
}

impl<M: PixelModel> Trainer<M> {
    /// A fresh model built on `dev` (its generator seeded by the run) and Adam at `learning_rate`.
    pub fn new(learning_rate: f64, dev: &Cpu) -> Self {
        let model = M::build(dev);
        let cfg = AdamConfig { lr: learning_rate as f32, order: AdamOrder::Dfdx, ..Default::default() };
        let opt = Adam::new(&model, cfg);
        Self { model, opt, grads: Vec::new() }
    }

    /// One Adam step on the mean over `x`'s images of their negative log-likelihood; returns that
    /// mean (nats per image). A NaN or infinite gradient changes nothing and is an error.
    ///
    /// With two or more threads and images, the batch's two halves go forward and backward on
    /// two threads at once (dfdx's elementwise ops run on one thread each), and the second half's
    /// gradients are added into the first's: the same sums whatever the scheduling.
    pub fn step(&mut self, x: Planes) -> Result<f32, glimpse::optim::NonFiniteGradient> {
        let n = x.shape().0;
        let (mut grads, value) = if n >= 2 && rayon::current_num_threads() >= 2 {
            let (a, b) = split_batch(&x, n / 2);
            let (mut ga, mut gb) = (self.grads.pop(), self.grads.pop());
            let model = &self.model;
            let ((mut ga, la), (mut gb, lb)) =
                rayon::join(|| half_step(model, a, n, ga.take()), || half_step(model, b, n, gb.take()));
            glimpse::optim::add_gradients(&self.model, &mut ga, &mut gb);
            self.grads.push(gb);
            (ga, la + lb)
        } else {
            half_step(&self.model, x, n, self.grads.pop())
        };
        let update = self.opt.update(&mut self.model, &mut grads, None);
        self.grads.push(grads);
        update.map(|_| value)
    }
}

/// The summed negative log-likelihood of `x`'s images divided by `n`, and its gradients (in
/// `grads`, zeroed first, when given).
fn half_step<M: PixelModel>(
    model: &M,
    x: Planes,
    n: usize,
    grads: Option<Gradients<f32, Cpu>>,
) -> (Gradients<f32, Cpu>, f32) {
    let mut grads = grads.unwrap_or_else(|| model.alloc_grads());
    model.zero_grads(&mut grads);
    let logits = model.logits_traced(x.clone().traced(grads));
    let loss = bernoulli_nll_with_logits(logits, &x) / n as f32;
    let value = loss.array();
    (loss.backward(), value)
}

/// The first `k` images of `x` and the rest.
fn split_batch(x: &Planes, k: usize) -> (Planes, Planes) {
    let (n, _, h, w) = *x.shape();
    let mut values = x.as_vec();
    let rest = values.split_off(k * h * w);
    let dev = x.device();
    (dev.tensor_from_vec(values, (k, Const::<1>, h, w)), dev.tensor_from_vec(rest, (n - k, Const::<1>, h, w)))
}

/// What a run trains and checkpoints: the trainer, the loader, the curves and timings.
pub struct Training<M: PixelModel> {
    /// Model and optimizer.
    pub trainer: Trainer<M>,
    /// The shuffling, binarising loader of the training images.
    pub loader: Loader,
    /// The figures of the epochs done.
    pub curves: Curves,
    /// Training time of each epoch (scoring excluded), seconds.
    pub epoch_seconds: Vec<f64>,
}

impl<M: PixelModel> Training<M> {
    /// A fresh [`Trainer`] for `config` on `dev`, and a loader that binarises every batch afresh,
    /// seeded with `seed`.
    pub fn new(config: &Config, seed: u64, dev: &Cpu) -> Self {
        let trainer = Trainer::new(config.learning_rate, dev);
        let loader = Loader::new(config.batch_size, View::Stochastic, seed);
        Self { trainer, loader, curves: Curves::default(), epoch_seconds: Vec::new() }
    }
}

impl<M: PixelModel> Checkpoint for Training<M> {
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        checkpoint::save_weights(&self.trainer.model, &snap.join(MODEL_FILE))?;
        self.trainer.opt.save(snap, "adam")?;
        glimpse::run::save_epochs(snap, &self.loader, &self.curves, &self.epoch_seconds)
    }

    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        checkpoint::load_weights(&mut self.trainer.model, &snap.join(MODEL_FILE))?;
        self.trainer.opt.load(snap, "adam")?;
        (self.curves, self.epoch_seconds) = glimpse::run::load_epochs(snap, &mut self.loader)?;
        Ok(())
    }
}

/// The model's keys in `summary.json`, after the run layer's `seed`, `wall_seconds` and `epochs`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Training time over every process of the run, seconds.
    pub wall_seconds: f64,
    /// Epochs trained.
    pub epochs: u64,
    /// Exact negative log-likelihood per test image after the last epoch, nats.
    pub test_nll_nats: f64,
    /// The test binarisation it was measured on.
    pub test_binarization: String,
    /// Negative log-likelihood per training image averaged over the last epoch, nats.
    pub train_nll_nats: f64,
    /// Test NLL after each epoch, nats.
    pub test_nll_curve: Vec<f64>,
    /// Median training time of an epoch (scoring excluded), seconds.
    pub seconds_per_epoch: f64,
    /// Training time of each epoch, seconds.
    pub epoch_seconds: Vec<f64>,
}

/// How the test images are binarised for scoring (named in every report).
pub fn test_binarization(config: &Config) -> String {
    format!("stochastic, fixed (seed {}), first {} test images", config.test_binarization_seed, config.test_images)
}

/// The scored test set of `config`: its first `test_images` binarised once with `test_binarization_seed`.
pub fn test_set(test: &ImageSet, config: &Config) -> ImageSet {
    test.take(config.test_images).binarized_stochastic(config.test_binarization_seed)
}

/// The exact negative log-likelihood per image of the binary images `set` (pixels 0 or 255), nats:
/// the sum over pixels of the Bernoulli terms, averaged over the images.
pub fn test_nll<M: PixelModel>(model: &M, set: &ImageSet, dev: &Cpu) -> f64 {
    let mut total = 0.0;
    for batch in Loader::sequential(100, View::Grey).epoch::<784>(set, dev) {
        let x = batch.image_planes();
        let logits = model.logits(x.clone());
        total += bernoulli_nll_sum(&logits.as_vec(), &x.as_vec());
    }
    total / set.len().max(1) as f64
}

/// Trains the model of `run`'s config: a fresh one, or the checkpoint of a `--resume`d run, to
/// its epochs, logging `train/nll` and `test/nll` (nats) and checkpointing after every epoch.
/// Call it on the rayon pool that should do the work. Returns `None` when `--stop-after` stopped it.
pub fn train<M: PixelModel>(mut run: Run<Config>) -> Result<Option<Summary>, PixelError> {
    let cfg = run.config.clone();
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let (train_set, test) = (mnist.train.take(cfg.train_images), test_set(&mnist.test, &cfg));
    let dev = Cpu::seed_from_u64(run.seed);
    let mut s = Training::<M>::new(&cfg, run.seed, &dev);
    run.restore(&mut s)?;
    let batches = train_set.len().div_ceil(cfg.batch_size);

    while s.curves.epochs() < cfg.epochs {
        let epoch = s.curves.epochs() + 1;
        let clock = Instant::now();
        // Many short parallel operations with serial work between them: the pool's threads wait
        // awake for the next one.
        let total = with_threads_awake(|| -> Result<f64, PixelError> {
            let mut total = 0.0;
            for (b, batch) in s.loader.epoch::<784>(&train_set, &dev).enumerate() {
                let n = batch.len() as f64;
                s.trainer.opt.cfg.lr = cfg.lr_schedule.rate(&cfg, epoch, b as u64, batches as u64) as f32;
                let step = s.trainer.step(batch.image_planes());
                let nll = step.map_err(|source| PixelError::NonFiniteGradient { source, epoch, batch: b })? as f64;
                if !nll.is_finite() {
                    return Err(PixelError::NonFinite { loss: nll, epoch, batch: b });
                }
                total += nll * n;
                if b % 50 == 0 {
                    run.progress().message(format!("epoch {epoch} batch {b}/{batches} nll {nll:.2}"));
                }
            }
            Ok(total)
        })?;
        s.epoch_seconds.push(clock.elapsed().as_secs_f64());
        s.curves.train_nll.push(total / train_set.len() as f64);
        s.curves.test_nll.push(test_nll(&s.trainer.model, &test, &dev));
        log_epoch(&mut run, &s, &test)?;
        if run.tick(epoch, &s)? == Control::Stop {
            return Ok(None);
        }
    }

    let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
    let metrics = serde_json::json!({
        "test_nll_nats": last(&s.curves.test_nll),
        "test_binarization": test_binarization(&cfg),
        "train_nll_nats": last(&s.curves.train_nll),
        "test_nll_curve": s.curves.test_nll,
        "seconds_per_epoch": median(&s.epoch_seconds),
        "epoch_seconds": s.epoch_seconds,
    });
    let summary = run.finish(s.curves.epochs(), &s, &metrics)?;
    let bad = |e: serde_json::Error| RunError::Config { path: "summary.json".into(), message: e.to_string() };
    Ok(Some(serde_json::from_value(summary).map_err(bad)?))
}

/// Prints and logs the epoch just done: scalars, then samples and completions of `test` digits
/// (PNG and TensorBoard).
fn log_epoch<M: PixelModel>(run: &mut Run<Config>, s: &Training<M>, test: &ImageSet) -> Result<(), PixelError> {
    let c = &s.curves;
    let (epoch, i) = (c.epochs(), c.train_nll.len() - 1);
    let wall: f64 = s.epoch_seconds.iter().sum();
    println!(
        "epoch {epoch}: train nll {:.3} test nll {:.3} nats ({:.1} s, {:.0} s of training so far)",
        c.train_nll[i], c.test_nll[i], s.epoch_seconds[i], wall
    );
    run.scalar("train/nll", c.train_nll[i], epoch)?;
    run.scalar("test/nll", c.test_nll[i], epoch)?;
    run.scalar("train/seconds_per_epoch", s.epoch_seconds[i], epoch)?;
    run.scalar("train/learning_rate", s.trainer.opt.cfg.lr as f64, epoch)?;
    let (dir, seed) = (run.path().to_path_buf(), run.seed);
    crate::figures::write_figures(&s.trainer.model, test, seed, &dir, run.writer()?, epoch)
}
