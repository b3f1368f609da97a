//! Training the RAM: [`Trainer`] (one Adam step per mini-batch on the hybrid loss),
//! [`Training`] (what a run trains and checkpoints) and one visible loop, [`train()`], on
//! glimpse's run layer.
//!
//! Everything random has its own ChaCha12 stream from the run's seed ([`Stream`]): the order of
//! the training digits and their canvases (1), the first locations and the policy's noise in
//! training (2), the test passes (3, the same draws after every epoch). The training streams are
//! saved in each checkpoint, so `--stop-after` then `--resume` ends bit for bit where the
//! uninterrupted run ends.

use crate::config::{Config, Locations};
use crate::figures::{glimpse_frames, glimpse_paths};
use crate::loss::{hybrid_loss, predictions, BatchStats};
use crate::model::{Core, Looking, Ram, CLASSES};
use crate::sensor::Retina;
use crate::tasks::Task;
use crate::RamError;
use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::data::{Dataset, ImageSet, Mnist};
use glimpse::generative::median;
use glimpse::image::write_gif;
use glimpse::nn::{with_serial_kernels, SharedWeights};
use glimpse::optim::{Adam, AdamConfig, AdamOrder, NonFiniteGradient};
use glimpse::run::{Checkpoint, Control, Run, RunError};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The random streams of a run (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The order of the training digits and their canvases.
    Data = 1,
    /// First locations and policy noise in training.
    Policy = 2,
    /// The test passes.
    Test = 3,
}

/// The ChaCha12 generator of `stream` for `seed` (see [`glimpse::generative::stream`]).
pub fn stream(seed: u64, stream: Stream) -> ChaCha12Rng {
    glimpse::generative::stream(seed, stream as u64)
}

/// The parts a training batch is split into (see [`Trainer::step`]).
pub const SHARDS: usize = 2;

/// The weights' file in a snapshot.
pub const MODEL_FILE: &str = "model.safetensors";

/// How the trainer looks: the policy's samples, or uniform locations for the ablation.
pub fn training_looking(cfg: &Config) -> Looking {
    match cfg.locations {
        Locations::Learned => Looking::Sampled { std: cfg.policy_std() as f32 },
        Locations::Random => Looking::Random,
    }
}

/// Canvases of a task as the model reads them: `images` one after another, values in [0, 1].
pub struct Canvases {
    /// The pixels, `len × side × side`.
    pub images: Vec<f32>,
    /// The labels.
    pub labels: Vec<u8>,
    /// The side.
    pub side: usize,
}

impl Canvases {
    /// Images `index` of `set` as they are (a fixed or external test set).
    pub fn of(set: &ImageSet, index: &[usize]) -> Self {
        let side = set.width();
        let images = index.iter().flat_map(|&i| set.image(i).iter().map(|&v| v as f32 / 255.0)).collect();
        Self { images, labels: index.iter().map(|&i| set.label(i)).collect(), side }
    }

    /// The canvases in `k` consecutive parts of (nearly) equal size; empty parts are left out.
    pub fn split(&self, k: usize) -> Vec<Canvases> {
        let (n, per) = (self.labels.len(), self.side * self.side);
        let size = n.div_ceil(k.max(1)).max(1);
        (0..n)
            .step_by(size)
            .map(|start| {
                let end = (start + size).min(n);
                Canvases {
                    images: self.images[start * per..end * per].to_vec(),
                    labels: self.labels[start..end].to_vec(),
                    side: self.side,
                }
            })
            .collect()
    }

    /// Fresh `task` canvases of digits `index` of `digits`, drawn from `rng`.
    pub fn compose(task: Task, digits: &ImageSet, index: &[usize], rng: &mut ChaCha12Rng) -> Self {
        let side = task.side();
        let mut canvas = vec![0u8; side * side];
        let mut images = Vec::with_capacity(index.len() * side * side);
        for &i in index {
            task.compose(digits, i, rng, &mut canvas);
            images.extend(canvas.iter().map(|&v| v as f32 / 255.0));
        }
        Self { images, labels: index.iter().map(|&i| digits.label(i)).collect(), side }
    }
}

/// A model with its optimizer and generators: one [`Trainer::step`] per mini-batch.
pub struct Trainer<C: Core> {
    /// The model being trained.
    pub model: Ram<C>,
    opt: Adam<Ram<C>>,
    /// The order of the training digits and their canvases.
    pub data: ChaCha12Rng,
    policy: ChaCha12Rng,
    dev: Cpu,
}

impl<C: Core> Trainer<C> {
    /// A fresh model for `retina` (weights from `seed`), Adam at `learning_rate` with PyTorch's
    /// defaults, the streams of `seed`.
    pub fn new(retina: &Retina, learning_rate: f64, seed: u64, dev: &Cpu) -> Self {
        let mut init = glimpse::generative::stream(seed, 0);
        let model = Ram::<C>::new(dev, retina, &mut init);
        let cfg = AdamConfig { lr: learning_rate as f32, order: AdamOrder::Dfdx, ..Default::default() };
        let opt = Adam::new(&model, cfg);
        let (data, policy) = (stream(seed, Stream::Data), stream(seed, Stream::Policy));
        Self { model, opt, data, policy, dev: dev.clone() }
    }

    /// One Adam step on the hybrid loss of `batch`, looking as `looking` says; returns the
    /// batch's figures and its loss. A NaN or infinite gradient changes nothing and is an error.
    ///
    /// The batch goes forward and backward as [`SHARDS`] parts at once on rayon's threads, each
    /// part's products on its own thread and its draws from its own generator (seeded from the
    /// policy stream), and the parts' gradients are added in order: the same step on any number
    /// of threads.
    pub fn step(
        &mut self,
        batch: &Canvases,
        retina: &Retina,
        glimpses: usize,
        looking: Looking,
        std: f32,
    ) -> Result<(BatchStats, f32), NonFiniteGradient> {
        let parts = batch.split(SHARDS);
        let seeds: Vec<u64> = parts.iter().map(|_| self.policy.gen()).collect();
        let (dev, n) = (&self.dev, batch.labels.len());
        // The parts' threads copy the weights out of dfdx once between them.
        let shared = SharedWeights::new(&self.model);
        let mut done: Vec<_> = parts
            .par_iter()
            .zip(seeds)
            .map(|(part, seed)| {
                shared.scope(|model| {
                    with_serial_kernels(|| {
                        let mut rng = ChaCha12Rng::seed_from_u64(seed);
                        let side = (part.side, part.side);
                        let ep = model.episode::<OwnedTape<f32, Cpu>>(
                            &part.images,
                            side,
                            retina,
                            glimpses,
                            looking,
                            &mut rng,
                            dev,
                        );
                        let loss = hybrid_loss(ep, &part.labels, std, dev);
                        // Each part's mean, weighted by its share of the batch: the parts add up to the batch's mean.
                        let total = loss.total * (part.labels.len() as f32 / n as f32);
                        let value = total.array();
                        (total.backward(), loss.stats, value)
                    })
                })
            })
            .collect();
        drop(shared);
        let (mut grads, mut stats, mut value) = done.remove(0);
        for (mut g, st, v) in done {
            glimpse::optim::add_gradients(&self.model, &mut grads, &mut g);
            stats.add(&st);
            value += v;
        }
        self.opt.update(&mut self.model, &mut grads, None).map(|_| (stats, value))
    }

    /// Sets Adam's learning rate for the steps that follow.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.opt.cfg.lr = lr as f32;
    }

    /// Saves the weights ([`MODEL_FILE`]), Adam's moments and both generators into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        checkpoint::save_weights(&self.model, &dir.join(MODEL_FILE))?;
        self.opt.save(dir, "adam")?;
        checkpoint::save_json(&(&self.data, &self.policy), &dir.join("streams.json"))
    }

    /// Restores what [`Trainer::save`] wrote.
    pub fn load(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        checkpoint::load_weights(&mut self.model, &dir.join(MODEL_FILE))?;
        self.opt.load(dir, "adam")?;
        (self.data, self.policy) = checkpoint::load_json(&dir.join("streams.json"))?;
        Ok(())
    }
}

/// The per-epoch figures of a run: with them a resumed run's summary equals the uninterrupted one's.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Curves {
    /// Training loss (cross-entropy + REINFORCE + baseline error) per batch, averaged.
    pub train_loss: Vec<f64>,
    /// Training accuracy (the mean reward).
    pub train_accuracy: Vec<f64>,
    /// Cross-entropy per training image, nats.
    pub train_cross_entropy: Vec<f64>,
    /// The baseline's mean prediction.
    pub baseline: Vec<f64>,
    /// The baseline's mean squared error to the reward.
    pub baseline_error: Vec<f64>,
    /// The variance over images of the REINFORCE term `Σ_t (R − b_t) log π(l_t)`.
    pub reinforce_variance: Vec<f64>,
    /// Test error (fraction misclassified) after each epoch, looking where the policy's mean says.
    pub test_error: Vec<f64>,
}

impl Curves {
    /// Epochs done.
    pub fn epochs(&self) -> u64 {
        self.train_loss.len() as u64
    }
}

/// What a run trains and checkpoints: the trainer, the curves and timings so far.
pub struct Training<C: Core> {
    /// Model, optimizer and generators.
    pub trainer: Trainer<C>,
    /// The figures of the epochs done.
    pub curves: Curves,
    /// Training time of each epoch done (evaluation excluded), seconds; saved apart from the
    /// curves, as the one thing a resumed run does not repeat exactly.
    pub epoch_seconds: Vec<f64>,
}

impl<C: Core> Checkpoint for Training<C> {
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        self.trainer.save(snap)?;
        checkpoint::save_json(&self.curves, &snap.join("curves.json"))?;
        checkpoint::save_json(&self.epoch_seconds, &snap.join(glimpse::run::TIMINGS))
    }

    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        self.trainer.load(snap)?;
        self.curves = checkpoint::load_json(&snap.join("curves.json"))?;
        self.epoch_seconds = checkpoint::load_json(&snap.join(glimpse::run::TIMINGS))?;
        Ok(())
    }
}

/// The RAM's keys in `summary.json`, after the run layer's `seed`, `wall_seconds` and `epochs`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Training time over every process of the run, seconds.
    pub wall_seconds: f64,
    /// Epochs trained.
    pub epochs: u64,
    /// Test error (fraction of the test images misclassified) after the last epoch, the class
    /// log-probabilities averaged over `test_samples` sampled glimpse paths (0: the policy's mean).
    pub test_error: f64,
    /// The sampled paths averaged for `test_error`.
    pub test_samples: usize,
    /// Test error after the last epoch looking where the policy's mean says (the curve's last point).
    pub mean_path_test_error: f64,
    /// The lowest point of that curve (reported beside the last, not chosen by it).
    pub best_test_error: f64,
    /// Training accuracy over the last epoch.
    pub train_accuracy: f64,
    /// Median training time of an epoch (evaluation excluded), seconds.
    pub seconds_per_epoch: f64,
    /// Training time of each epoch, seconds.
    pub epoch_seconds: Vec<f64>,
    /// Test images.
    pub test_images: usize,
}

/// The test set of `cfg`: the external one, else the task's canvases of the MNIST test digits
/// from `test_set_seed`.
pub fn test_set(cfg: &Config, mnist: &Mnist) -> Result<ImageSet, RamError> {
    if let (Some(images), Some(labels)) = (&cfg.test_images, &cfg.test_labels) {
        let set = crate::tasks::load_test_set(images, labels)?;
        let side = cfg.task.side();
        if (set.height(), set.width()) != (side, side) {
            return Err(RamError::Config(format!(
                "{}: images of {}×{}, but the task {:?} reads {side}×{side} canvases",
                images.display(),
                set.height(),
                set.width(),
                cfg.task
            )));
        }
        return Ok(set);
    }
    Ok(cfg.task.generate(&mnist.test, cfg.test_set_seed))
}

/// Trains the RAM of `run`'s config: a fresh model, or the checkpoint of a `--resume`d run, to
/// its epochs, logging the curves and the glimpse-path figure and checkpointing after every
/// epoch through the run layer. Call it on the rayon pool that should do the work (see
/// `glimpse::nn::in_thread_pool`). Returns `None` when `--stop-after` stopped the run.
pub fn train<C: Core>(mut run: Run<Config>) -> Result<Option<Summary>, RamError> {
    let cfg = run.config.clone();
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let digits = mnist.train.take(cfg.train_images);
    let test = test_set(&cfg, &mnist)?;
    let (retina, glimpses) = (cfg.retina().map_err(RamError::Config)?, cfg.glimpse_count());
    let dev = Cpu::seed_from_u64(run.seed);
    let trainer = Trainer::<C>::new(&retina, cfg.base_learning_rate(), run.seed, &dev);
    let mut s = Training { trainer, curves: Curves::default(), epoch_seconds: Vec::new() };
    run.restore(&mut s)?;
    let looking = training_looking(&cfg);
    let batches = digits.len().div_ceil(cfg.batch_size);

    while s.curves.epochs() < cfg.epoch_count() {
        let epoch = s.curves.epochs() + 1;
        let clock = Instant::now();
        let (mut stats, mut loss_sum) = (BatchStats::default(), 0.0f64);
        let mut order: Vec<usize> = (0..digits.len()).collect();
        order.shuffle(&mut s.trainer.data);
        for (b, index) in order.chunks(cfg.batch_size).enumerate() {
            let batch = Canvases::compose(cfg.task, &digits, index, &mut s.trainer.data);
            s.trainer.set_learning_rate(cfg.rate(epoch, b as u64, batches as u64));
            let step = s.trainer.step(&batch, &retina, glimpses, looking, cfg.policy_std() as f32);
            let (batch_stats, loss) = step.map_err(|source| RamError::NonFiniteGradient { source, epoch, batch: b })?;
            if !loss.is_finite() {
                return Err(RamError::NonFinite { loss: loss.into(), epoch, batch: b });
            }
            stats.add(&batch_stats);
            loss_sum += loss as f64;
            if b % 50 == 0 {
                let accuracy = stats.correct as f64 / stats.images as f64;
                run.progress()
                    .message(format!("epoch {epoch} batch {b}/{batches} loss {loss:.4} accuracy {accuracy:.4}"));
            }
        }
        s.epoch_seconds.push(clock.elapsed().as_secs_f64());
        let n = stats.images as f64;
        let c = &mut s.curves;
        c.train_loss.push(loss_sum / batches as f64);
        c.train_accuracy.push(stats.correct as f64 / n);
        c.train_cross_entropy.push(stats.cross_entropy / n);
        c.baseline.push(stats.baseline / n);
        c.baseline_error.push(stats.baseline_error / n);
        c.reinforce_variance.push(stats.reinforce_variance());
        let (error, _) = test_error(&s.trainer.model, &test, &cfg, &retina, 0, run.seed, &dev);
        c.test_error.push(error);
        log_epoch(&mut run, &s, &test, &retina, &dev)?;
        if run.tick(epoch, &s)? == Control::Stop {
            return Ok(None);
        }
    }

    if cfg.figure_images > 0 {
        let frames = glimpse_frames(&s.trainer.model, &test, &cfg, &retina, run.seed, &dev)?;
        write_gif(&frames, 600, &run.path().join("glimpses.gif"))?;
    }
    let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
    let (final_error, _) = test_error(&s.trainer.model, &test, &cfg, &retina, cfg.test_samples, run.seed, &dev);
    let metrics = serde_json::json!({
        "test_error": final_error,
        "test_samples": cfg.test_samples,
        "mean_path_test_error": last(&s.curves.test_error),
        "best_test_error": s.curves.test_error.iter().copied().fold(f64::NAN, f64::min),
        "train_accuracy": last(&s.curves.train_accuracy),
        "seconds_per_epoch": median(&s.epoch_seconds),
        "epoch_seconds": s.epoch_seconds,
        "test_images": test.len(),
    });
    let summary = run.finish(s.curves.epochs(), &s, &metrics)?;
    let bad = |e: serde_json::Error| RunError::Config { path: "summary.json".into(), message: e.to_string() };
    Ok(Some(serde_json::from_value(summary).map_err(bad)?))
}

/// Prints and logs the epoch just done (scalars, then the glimpse paths into the run directory
/// and TensorBoard).
fn log_epoch<C: Core>(
    run: &mut Run<Config>,
    s: &Training<C>,
    test: &ImageSet,
    retina: &Retina,
    dev: &Cpu,
) -> Result<(), RamError> {
    let c = &s.curves;
    let (epoch, i) = (c.epochs(), c.train_loss.len() - 1);
    println!(
        "epoch {epoch}: train loss {:.4} accuracy {:.4} baseline {:.3} test error {:.2}% ({:.2} s)",
        c.train_loss[i],
        c.train_accuracy[i],
        c.baseline[i],
        100.0 * c.test_error[i],
        s.epoch_seconds[i]
    );
    for (tag, v) in [
        ("train/loss", c.train_loss[i]),
        ("train/accuracy", c.train_accuracy[i]),
        ("train/reward", c.train_accuracy[i]),
        ("train/cross_entropy", c.train_cross_entropy[i]),
        ("train/baseline", c.baseline[i]),
        ("train/baseline_error", c.baseline_error[i]),
        ("train/reinforce_variance", c.reinforce_variance[i]),
        ("test/error", c.test_error[i]),
        ("train/seconds_per_epoch", s.epoch_seconds[i]),
    ] {
        run.scalar(tag, v, epoch)?;
    }
    let cfg = run.config.clone();
    if cfg.figure_images > 0 {
        let picture = glimpse_paths(&s.trainer.model, test, &cfg, retina, run.seed, dev)?;
        picture.save_png(&run.path().join("glimpses.png"))?;
        run.writer()?
            .image("glimpses", &picture, epoch)
            .map_err(|source| RunError::Io { path: run.path().to_path_buf(), source })?;
    }
    Ok(())
}

/// How `samples` test passes look: the policy's mean (one pass) for 0, else `samples` sampled
/// paths; uniform locations for the random-locations ablation.
pub fn test_looking(cfg: &Config, samples: usize) -> (Looking, usize) {
    match (cfg.locations, samples) {
        (Locations::Random, m) => (Looking::Random, m.max(1)),
        (Locations::Learned, 0) => (Looking::Mean, 1),
        (Locations::Learned, m) => (Looking::Sampled { std: cfg.policy_std() as f32 }, m),
    }
}

/// Test images per forward pass.
const TEST_BATCH: usize = 500;

/// The generators of the test passes over `chunks` chunks of a test set: one per chunk, seeded
/// from [`Stream::Test`] of `seed` (the same draws at every call, on any number of threads).
pub fn test_streams(seed: u64, chunks: usize) -> Vec<ChaCha12Rng> {
    let mut rng = stream(seed, Stream::Test);
    (0..chunks).map(|_| ChaCha12Rng::seed_from_u64(rng.gen())).collect()
}

/// The fraction of `set` misclassified, and the predictions: the class log-probabilities are
/// averaged over the passes of [`test_looking`] for `samples`, the first locations and the policy's noise drawn
/// from [`test_streams`] of `seed`. Chunks of [`TEST_BATCH`] images run in parallel.
pub fn test_error<C: Core>(
    model: &Ram<C>,
    set: &ImageSet,
    cfg: &Config,
    retina: &Retina,
    samples: usize,
    seed: u64,
    dev: &Cpu,
) -> (f64, Vec<u8>) {
    let (looking, passes) = test_looking(cfg, samples);
    let all: Vec<usize> = (0..set.len()).collect();
    let chunks: Vec<&[usize]> = all.chunks(TEST_BATCH).collect();
    let rngs = test_streams(seed, chunks.len());
    let predicted: Vec<Vec<u8>> = chunks
        .par_iter()
        .zip(rngs)
        .map(|(index, mut rng)| {
            with_serial_kernels(|| {
                let batch = Canvases::of(set, index);
                let mut sum = vec![0.0f32; index.len() * CLASSES];
                for _ in 0..passes {
                    let side = (batch.side, batch.side);
                    let ep = model.episode::<NoneTape>(
                        &batch.images,
                        side,
                        retina,
                        cfg.glimpse_count(),
                        looking,
                        &mut rng,
                        dev,
                    );
                    sum.iter_mut().zip(ep.log_probs.as_vec()).for_each(|(s, v)| *s += v);
                }
                predictions(&sum)
            })
        })
        .collect();
    let predicted: Vec<u8> = predicted.concat();
    let wrong = predicted.iter().zip(set.labels()).filter(|(p, y)| p != y).count();
    (wrong as f64 / set.len().max(1) as f64, predicted)
}
