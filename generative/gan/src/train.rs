//! Training the GAN: [`Gan`] (both networks and optimizers; one [`Gan::step`] per mini-batch),
//! [`Training`] (what a run checkpoints) and one visible loop, [`train()`], on glimpse's run layer.
//!
//! Random streams from the run's seed (see [`glimpse::generative::stream`]): the loader's
//! shuffling (its own generator), the training latents ([`Stream::Training`]), the fixed latents
//! of the sample grid shown after every epoch ([`Stream::Grid`]), `--sample`'s latents
//! ([`Stream::Samples`]) and the initial weights ([`Stream::Init`]). The loader's and the
//! latents' generators are saved in each checkpoint, so `--stop-after` then `--resume` ends bit
//! for bit where the uninterrupted run ends.

use crate::config::{Config, Objective};
use crate::model::{DiscriminatorNet, GeneratorNet, Images, Logits, CLASSES, LATENT, PIXELS};
use crate::spectral::SpectralNorm;
use crate::GanError;
use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::data::{Dataset, Loader, Mnist, View};
use glimpse::generative::{median, standard_normal};
use glimpse::image::Image;
use glimpse::nn::with_threads_awake;
use glimpse::optim::{Adam, AdamConfig, AdamOrder, NonFiniteGradient};
use glimpse::run::{Checkpoint, Control, Run, RunError};
use rand::Rng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The random streams of a run (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The latents of training.
    Training = 1,
    /// The fixed latents of the grid shown after each epoch.
    Grid = 2,
    /// The latents of `--sample` and of the final samples.
    Samples = 3,
    /// The initial weights.
    Init = 4,
}

/// The ChaCha12 generator of `stream` for `seed`.
pub fn stream(seed: u64, stream: Stream) -> ChaCha12Rng {
    glimpse::generative::stream(seed, stream as u64)
}

/// Means over one step's batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    /// The discriminator's loss (real and generated terms summed).
    pub d_loss: f32,
    /// The generator's loss.
    pub g_loss: f32,
    /// Mean D(x), the probability of "real" given to the real images.
    pub d_real: f32,
    /// Mean D(G(z)) before the discriminator's update.
    pub d_fake: f32,
}

/// The discriminator's loss on real (`real = true`) or generated logits (a mean over the batch).
pub fn d_loss<T: Tape<f32, Cpu>>(objective: Objective, logits: Logits<T>, real: bool) -> Tensor<(), f32, Cpu, T> {
    match objective {
        Objective::Ns => {
            let target = logits.device().ones_like(&logits) * if real { 1.0 } else { 0.0 };
            binary_cross_entropy_with_logits_loss(logits, target)
        }
        // relu(1 - D(x)) and relu(1 + D(G(z))).
        Objective::Hinge => match real {
            true => (logits.negate() + 1.0).relu().mean(),
            false => (logits + 1.0).relu().mean(),
        },
    }
}

/// The generator's loss on the discriminator's logits of its images (a mean over the batch).
pub fn g_loss<T: Tape<f32, Cpu>>(objective: Objective, logits: Logits<T>) -> Tensor<(), f32, Cpu, T> {
    match objective {
        Objective::Ns => {
            let target = logits.device().ones_like(&logits);
            binary_cross_entropy_with_logits_loss(logits, target)
        }
        Objective::Hinge => logits.mean().negate(),
    }
}

/// Mean sigmoid of `logits`.
fn mean_probability(logits: &Logits<NoneTape>) -> f32 {
    let v = logits.as_vec();
    v.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).sum::<f32>() / v.len().max(1) as f32
}

/// Both networks, their Adam optimizers, gradient buffers, the spectral-normalisation states of
/// the discriminator's weights (none for the batch-norm discriminator) and the generator of
/// training latents (and, for a conditional GAN, the generated images' labels).
pub struct Gan<G: GeneratorNet, D: DiscriminatorNet> {
    /// The generator.
    pub generator: G,
    /// The discriminator.
    pub discriminator: D,
    g_opt: Adam<G>,
    d_opt: Adam<D>,
    spectral: Vec<SpectralNorm>,
    g_grads: Option<Gradients<f32, Cpu>>,
    d_grads: Option<Gradients<f32, Cpu>>,
    objective: Objective,
    noise: ChaCha12Rng,
    dev: Cpu,
}

/// Where a step failed: which network's gradient was not finite.
#[derive(Debug, Clone)]
pub struct StepError {
    /// "discriminator" or "generator".
    pub network: &'static str,
    /// What the optimizer saw.
    pub source: NonFiniteGradient,
}

impl<G: GeneratorNet, D: DiscriminatorNet> Gan<G, D> {
    /// Fresh networks with the DCGAN initialisation ([`Stream::Init`] of `seed`), Adam for each
    /// with `config`'s learning rate and betas (eps 1e-8), training latents from
    /// [`Stream::Training`].
    pub fn new(config: &Config, seed: u64, dev: &Cpu) -> Self {
        assert_eq!(G::CONDITIONAL, D::CONDITIONAL, "both networks conditional, or neither");
        let mut init = stream(seed, Stream::Init);
        let mut generator = dev.build_module::<G::Builder, f32>();
        generator.dcgan_init(&mut init);
        let mut discriminator = dev.build_module::<D::Builder, f32>();
        discriminator.dcgan_init(&mut init);
        let mut spectral = Vec::new();
        discriminator.normalised_weights(&mut |rows, _| spectral.push(SpectralNorm::new(rows, &mut init)));
        let adam = AdamConfig {
            lr: config.learning_rate as f32,
            beta1: config.beta1 as f32,
            beta2: config.beta2 as f32,
            order: AdamOrder::Dfdx,
            ..Default::default()
        };
        Self {
            g_opt: Adam::new(&generator, adam),
            d_opt: Adam::new(&discriminator, adam),
            g_grads: Some(generator.alloc_grads()),
            d_grads: Some(discriminator.alloc_grads()),
            generator,
            discriminator,
            spectral,
            objective: config.objective,
            noise: stream(seed, Stream::Training),
            dev: dev.clone(),
        }
    }

    /// One step on a batch of real images and their labels: the discriminator on the real batch
    /// and on a generated one (separate forward passes, so separate batch statistics; gradients
    /// summed) and one Adam step for it, then the generator's loss on the same generated images
    /// through the updated discriminator and one Adam step for the generator, as PyTorch's DCGAN
    /// example does. A conditional GAN draws the generated images' labels uniformly.
    ///
    /// A NaN or infinite gradient is an error; the network it belongs to is then unchanged.
    pub fn step(&mut self, real: Images, labels: &[usize]) -> Result<StepStats, StepError> {
        let b = real.shape().0;
        let z = standard_normal::<LATENT>(&mut self.noise, b, &self.dev);
        let fake_labels: Vec<usize> = match G::CONDITIONAL {
            true => (0..b).map(|_| self.noise.gen_range(0..CLASSES)).collect(),
            false => Vec::new(),
        };
        let mut g_grads = self.g_grads.take().unwrap_or_else(|| self.generator.alloc_grads());
        self.generator.zero_grads(&mut g_grads);
        let fake = self.generator.forward_train(z, &fake_labels, g_grads);
        let (fake, g_tape) = fake.split_tape();

        let mut d_grads = self.d_grads.take().unwrap_or_else(|| self.discriminator.alloc_grads());
        self.discriminator.zero_grads(&mut d_grads);
        self.normalise();
        let real_logits = self.discriminator.forward_train(real.traced(d_grads), labels);
        let d_real = mean_probability(&real_logits.retaped());
        let loss_real = d_loss(self.objective, real_logits, true);
        let loss_real_value = loss_real.array();
        let d_grads = loss_real.backward();
        let fake_logits = self.discriminator.forward_train(fake.clone().traced(d_grads), &fake_labels);
        let d_fake = mean_probability(&fake_logits.retaped());
        let loss_fake = d_loss(self.objective, fake_logits, false);
        let d_loss_value = loss_real_value + loss_fake.array();
        let mut d_grads = loss_fake.backward();
        self.restore(Some(&mut d_grads));
        let update = self.d_opt.update(&mut self.discriminator, &mut d_grads, None);
        self.d_grads = Some(d_grads);
        update.map_err(|source| StepError { network: "discriminator", source })?;

        self.normalise();
        // The discriminator only passes the gradient on to the generator here.
        let discriminator = &mut self.discriminator;
        let logits =
            glimpse::nn::with_frozen_parameters(|| discriminator.forward_train(fake.put_tape(g_tape), &fake_labels));
        let loss = g_loss(self.objective, logits);
        let g_loss_value = loss.array();
        let mut g_grads = loss.backward();
        self.restore(None);
        let update = self.g_opt.update(&mut self.generator, &mut g_grads, None);
        self.g_grads = Some(g_grads);
        update.map_err(|source| StepError { network: "generator", source })?;
        Ok(StepStats { d_loss: d_loss_value, g_loss: g_loss_value, d_real, d_fake })
    }

    /// Swaps each spectrally normalised weight of the discriminator for `W / sigma` (one power
    /// step each).
    fn normalise(&mut self) {
        let mut states = self.spectral.iter_mut();
        self.discriminator.normalised_weights(&mut |_, w| {
            let mut values = w.values();
            states.next().expect("one state per weight").normalise(&mut values);
            w.set_values(&values);
        });
    }

    /// Swaps the raw weights back, mapping their gradients in `grads` (when given) through the
    /// normalisation.
    fn restore(&mut self, mut grads: Option<&mut Gradients<f32, Cpu>>) {
        let mut states = self.spectral.iter_mut();
        self.discriminator.normalised_weights(&mut |_, w| {
            let mut values = w.values();
            let state = states.next().expect("one state per weight");
            match grads.as_deref_mut() {
                Some(g) => state.restore(&mut values, Some(&mut w.grad(g)[..])),
                None => state.restore(&mut values, None),
            }
            w.set_values(&values);
        });
    }

    /// D(x): the discriminator's probabilities of "real" for `images` with their `labels` in
    /// inference mode (running batch-norm statistics; spectrally normalised weights with their
    /// current estimates, which this power step refines as a training pass would).
    pub fn discriminate(&mut self, images: Images, labels: &[usize]) -> Vec<f32> {
        self.normalise();
        let logits = self.discriminator.forward_eval(images, labels).as_vec();
        self.restore(None);
        logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect()
    }

    /// Saves both networks, both optimizers, the spectral-normalisation states and the latents'
    /// generator into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        checkpoint::save_weights(&self.generator, &dir.join(GENERATOR_FILE))?;
        checkpoint::save_weights(&self.discriminator, &dir.join(DISCRIMINATOR_FILE))?;
        self.g_opt.save(dir, "g_adam")?;
        self.d_opt.save(dir, "d_adam")?;
        checkpoint::save_json(&self.spectral, &dir.join("spectral.json"))?;
        checkpoint::save_json(&self.noise, &dir.join("noise.json"))
    }

    /// Restores what [`Gan::save`] wrote.
    pub fn load(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        checkpoint::load_weights(&mut self.generator, &dir.join(GENERATOR_FILE))?;
        checkpoint::load_weights(&mut self.discriminator, &dir.join(DISCRIMINATOR_FILE))?;
        self.g_opt.load(dir, "g_adam")?;
        self.d_opt.load(dir, "d_adam")?;
        let spectral: Vec<SpectralNorm> = checkpoint::load_json(&dir.join("spectral.json"))?;
        if spectral.len() != self.spectral.len()
            || spectral.iter().zip(&self.spectral).any(|(a, b)| a.u.len() != b.u.len() || a.rows != b.rows)
        {
            let message = "spectral.json does not match the discriminator's weights".to_string();
            return Err(CheckpointError::Corrupt { path: dir.join("spectral.json"), message });
        }
        self.spectral = spectral;
        self.noise = checkpoint::load_json(&dir.join("noise.json"))?;
        Ok(())
    }
}

/// The generator's weights in a snapshot.
pub const GENERATOR_FILE: &str = "generator.safetensors";
/// The discriminator's weights in a snapshot.
pub const DISCRIMINATOR_FILE: &str = "discriminator.safetensors";

/// The label of the `i`-th image a conditional generator draws: the classes in turn, so that
/// every class has its share (and each column of a 10-wide grid is one digit).
pub fn sample_label(i: usize) -> usize {
    i % CLASSES
}

/// `n` images from `generator` in inference mode (batch norm with its running statistics), from
/// latents drawn from `rng` (and labels [`sample_label`]), as rows of 784 pixels in [0, 1] one
/// after another.
pub fn generate<G: GeneratorNet>(generator: &G, n: usize, rng: &mut ChaCha12Rng, dev: &Cpu) -> Vec<f32> {
    const ROWS_PER_CALL: usize = 500;
    let mut out = Vec::with_capacity(n * PIXELS);
    while out.len() < n * PIXELS {
        let first = out.len() / PIXELS;
        let rows = (n - first).min(ROWS_PER_CALL);
        let labels: Vec<usize> = (first..first + rows).map(sample_label).collect();
        out.extend(generator.forward_eval(standard_normal::<LATENT>(rng, rows, dev), &labels).as_vec());
    }
    out
}

/// Writes `n` images of `generator` from latents of `seed` ([`Stream::Samples`]) to `out` as
/// `uint8 [n, 28, 28]`, a PNG grid beside it, and for a conditional generator the images' labels
/// ([`sample_label`]) as `uint8 [n]` in [`glimpse::generative::labels_path`]; prints what it wrote.
pub fn write_samples<G: GeneratorNet>(
    generator: &G,
    n: usize,
    seed: u64,
    out: &Path,
    dev: &Cpu,
) -> Result<std::path::PathBuf, GanError> {
    let images = generate(generator, n, &mut stream(seed, Stream::Samples), dev);
    let png = glimpse::generative::write_samples(out, &images, 28)?;
    println!("wrote {} ({n} images) and {}", out.display(), png.display());
    if G::CONDITIONAL {
        let labels: Vec<usize> = (0..n).map(sample_label).collect();
        let path = glimpse::generative::write_labels(out, &labels)?;
        println!("wrote {} (the class each image was drawn for)", path.display());
    }
    Ok(png)
}

/// The per-epoch means of a run: with them a resumed run's summary equals the uninterrupted one's.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Curves {
    /// The discriminator's loss.
    pub d_loss: Vec<f64>,
    /// The generator's loss.
    pub g_loss: Vec<f64>,
    /// Mean D(x).
    pub d_real: Vec<f64>,
    /// Mean D(G(z)).
    pub d_fake: Vec<f64>,
}

impl Curves {
    /// Epochs done.
    pub fn epochs(&self) -> u64 {
        self.d_loss.len() as u64
    }

    fn push(&mut self, sums: [f64; 4], steps: usize) {
        let n = steps.max(1) as f64;
        self.d_loss.push(sums[0] / n);
        self.g_loss.push(sums[1] / n);
        self.d_real.push(sums[2] / n);
        self.d_fake.push(sums[3] / n);
    }
}

/// What a run trains and checkpoints: the GAN, the loader, the curves and timings so far.
pub struct Training<G: GeneratorNet, D: DiscriminatorNet> {
    /// Networks, optimizers and latents.
    pub gan: Gan<G, D>,
    /// The shuffling loader of the training images (the last partial batch dropped).
    pub loader: Loader,
    /// The means of the epochs done.
    pub curves: Curves,
    /// Training time of each epoch done, seconds; saved apart from the curves (`timings.json`),
    /// as the one thing a resumed run does not repeat exactly.
    pub epoch_seconds: Vec<f64>,
}

impl<G: GeneratorNet, D: DiscriminatorNet> Training<G, D> {
    /// A fresh GAN for `config`, its loader seeded with `seed`.
    pub fn new(config: &Config, seed: u64, dev: &Cpu) -> Self {
        let loader = Loader::new(config.batch_size, View::Grey, seed).drop_last(true);
        Self { gan: Gan::new(config, seed, dev), loader, curves: Curves::default(), epoch_seconds: Vec::new() }
    }
}

impl<G: GeneratorNet, D: DiscriminatorNet> Checkpoint for Training<G, D> {
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        self.gan.save(snap)?;
        glimpse::run::save_epochs(snap, &self.loader, &self.curves, &self.epoch_seconds)
    }

    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        self.gan.load(snap)?;
        (self.curves, self.epoch_seconds) = glimpse::run::load_epochs(snap, &mut self.loader)?;
        Ok(())
    }
}

/// The GAN's keys in `summary.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Training time over every process of the run, seconds.
    pub wall_seconds: f64,
    /// Epochs trained.
    pub epochs: u64,
    /// The discriminator's loss over the last epoch.
    pub d_loss: f64,
    /// The generator's loss over the last epoch.
    pub g_loss: f64,
    /// Mean D(x) over the last epoch.
    pub d_real: f64,
    /// Mean D(G(z)) over the last epoch.
    pub d_fake: f64,
    /// Median training time of an epoch, seconds.
    pub seconds_per_epoch: f64,
    /// Training time of each epoch, seconds.
    pub epoch_seconds: Vec<f64>,
    /// The final samples' file in the run directory (`uint8 [N, 28, 28]`), when written.
    pub samples: Option<String>,
}

/// The final samples' file in the run directory.
pub const SAMPLES_FILE: &str = "samples.npy";

/// Images in the grid shown after every epoch: 10 rows of 10 (one digit per column when
/// conditional).
pub const GRID_IMAGES: usize = 100;

/// Trains the GAN of `run`'s config: fresh networks, or the checkpoint of a `--resume`d run, to
/// its epochs, logging the losses, D(x), D(G(z)) and the fixed-latent grid (PNG in the run
/// directory and TensorBoard) and checkpointing after every epoch; at the end writes
/// `final_samples` images to `RUN/samples.npy`. Call it on the rayon pool that should do the
/// work. Returns `None` when `--stop-after` stopped the run.
pub fn train<G: GeneratorNet, D: DiscriminatorNet>(mut run: Run<Config>) -> Result<Option<Summary>, GanError> {
    let cfg = run.config.clone();
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let train_set = mnist.train.take(cfg.train_images);
    let dev = Cpu::seed_from_u64(run.seed);
    let mut s = Training::<G, D>::new(&cfg, run.seed, &dev);
    run.restore(&mut s)?;
    let batches = train_set.len() / cfg.batch_size;

    while s.curves.epochs() < cfg.epochs {
        let epoch = s.curves.epochs() + 1;
        let clock = Instant::now();
        // Many short parallel operations with serial work between them: the pool's threads wait
        // awake for the next one.
        let sums = with_threads_awake(|| -> Result<[f64; 4], GanError> {
            let mut sums = [0.0f64; 4];
            for (b, batch) in s.loader.epoch(&train_set, &dev).enumerate() {
                let stats = s.gan.step(batch.images, &batch.labels).map_err(|e| GanError::NonFiniteGradient {
                    network: e.network,
                    source: e.source,
                    epoch,
                    batch: b,
                })?;
                if !(stats.d_loss.is_finite() && stats.g_loss.is_finite()) {
                    return Err(GanError::NonFinite { d_loss: stats.d_loss, g_loss: stats.g_loss, epoch, batch: b });
                }
                for (sum, v) in sums.iter_mut().zip([stats.d_loss, stats.g_loss, stats.d_real, stats.d_fake]) {
                    *sum += v as f64;
                }
                if b % 20 == 0 {
                    run.progress().message(format!(
                        "epoch {epoch} batch {b}/{batches} D {:.3} G {:.3} D(x) {:.2} D(G(z)) {:.2}",
                        stats.d_loss, stats.g_loss, stats.d_real, stats.d_fake
                    ));
                }
            }
            Ok(sums)
        })?;
        s.epoch_seconds.push(clock.elapsed().as_secs_f64());
        s.curves.push(sums, batches);
        log_epoch(&mut run, &s, &dev)?;
        if run.tick(epoch, &s)? == Control::Stop {
            return Ok(None);
        }
    }

    let samples = match cfg.final_samples {
        0 => None,
        n => {
            let path = run.path().join(SAMPLES_FILE);
            write_samples(&s.gan.generator, n, run.seed, &path, &dev)?;
            Some(SAMPLES_FILE.to_string())
        }
    };
    let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
    let c = &s.curves;
    let metrics = serde_json::json!({
        "d_loss": last(&c.d_loss),
        "g_loss": last(&c.g_loss),
        "d_real": last(&c.d_real),
        "d_fake": last(&c.d_fake),
        "seconds_per_epoch": median(&s.epoch_seconds),
        "epoch_seconds": s.epoch_seconds,
        "samples": samples,
    });
    let summary = run.finish(s.curves.epochs(), &s, &metrics)?;
    let bad = |e: serde_json::Error| RunError::Config { path: "summary.json".into(), message: e.to_string() };
    Ok(Some(serde_json::from_value(summary).map_err(bad)?))
}

/// Prints and logs the epoch just done: the scalars, then the grid of the fixed latents
/// (`RUN/grid.png`, `RUN/grids/epoch-NNN.png` and TensorBoard).
fn log_epoch<G: GeneratorNet, D: DiscriminatorNet>(
    run: &mut Run<Config>,
    s: &Training<G, D>,
    dev: &Cpu,
) -> Result<(), GanError> {
    let c = &s.curves;
    let (epoch, i) = (c.epochs(), c.d_loss.len() - 1);
    println!(
        "epoch {epoch}: D loss {:.4} G loss {:.4} D(x) {:.3} D(G(z)) {:.3} ({:.2} s)",
        c.d_loss[i], c.g_loss[i], c.d_real[i], c.d_fake[i], s.epoch_seconds[i]
    );
    for (tag, v) in [
        ("train/d_loss", c.d_loss[i]),
        ("train/g_loss", c.g_loss[i]),
        ("train/d_real", c.d_real[i]),
        ("train/d_fake", c.d_fake[i]),
        ("train/seconds_per_epoch", s.epoch_seconds[i]),
    ] {
        run.scalar(tag, v, epoch)?;
    }
    let images = generate(&s.gan.generator, GRID_IMAGES, &mut stream(run.seed, Stream::Grid), dev);
    let grid = Image::grid(&images, GRID_IMAGES, 1, 28, 28, CLASSES)?;
    let dir = run.path().join("grids");
    std::fs::create_dir_all(&dir).map_err(GanError::Log)?;
    grid.save_png(&dir.join(format!("epoch-{epoch:03}.png")))?;
    grid.save_png(&run.path().join("grid.png"))?;
    run.writer()?.image("samples", &grid, epoch)?;
    Ok(())
}
