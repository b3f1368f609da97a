//! Training a VAE on MNIST: [`Config`] with PyTorch's example defaults, and one visible loop, [`train()`].

use crate::iw::iw_log_likelihood;
use crate::loss::negative_elbo;
use crate::model::{Images, VaeModel};
use crate::{VaeError, PIXELS};
use dfdx::prelude::*;
use glimpse::data::{ImageSet, Loader, Mnist, View};
use glimpse::image::Image;
use glimpse::optim::{Adam, AdamConfig, AdamOrder, NonFiniteGradient};
use glimpse::run::{Progress, RunDir};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

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

/// Hyperparameters; the defaults are PyTorch's `examples/vae` ones.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Config {
    /// Training epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Images per mini-batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Latent dimensions: 2, 20 or 50.
    #[arg(long, default_value_t = 20)]
    pub latent: usize,
    /// Architecture.
    #[arg(long, value_enum, default_value_t = Arch::Mlp)]
    pub arch: Arch,
    /// Initial decoder output bias.
    #[arg(long, value_enum, default_value_t = OutputBias::DataMean)]
    #[serde(default)]
    pub output_bias: OutputBias,
    /// Pixel view of the training images.
    #[arg(long, value_enum, default_value_t = DataView::Grey)]
    pub data_view: DataView,
    /// Training images used (the first N); all 60,000 by default.
    #[arg(long, default_value_t = 60_000)]
    pub train_images: usize,
    /// Importance samples per test image for the log-likelihood estimate in nats (0: skip it).
    #[arg(long, default_value_t = 0)]
    pub iw_samples: usize,
    /// Test images for the importance-weighted estimate (the first N of the binarised test set).
    #[arg(long, default_value_t = 10_000)]
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
            lr: 1e-3,
            latent: 20,
            arch: Arch::Mlp,
            output_bias: OutputBias::DataMean,
            data_view: DataView::Grey,
            train_images: 60_000,
            iw_samples: 0,
            iw_images: 10_000,
            threads: 2,
            data_dir: None,
        }
    }
}

/// Final figures of a run, written to `summary.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Summary {
    /// Negative ELBO per test image after the last epoch, as PyTorch's example reports it.
    pub test_loss: f64,
    /// Negative ELBO per training image averaged over the last epoch.
    pub train_loss: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Median training time of an epoch (evaluation excluded), seconds.
    pub seconds_per_epoch: f64,
    /// Training time of each epoch, seconds.
    pub epoch_seconds: Vec<f64>,
    /// Importance-weighted log-likelihood of the binarised test set, nats (when asked for).
    pub iw_log_likelihood: Option<f64>,
    /// Importance samples used for it.
    pub iw_samples: usize,
    /// Whole run, seconds.
    pub wall_seconds: f64,
}

/// A model with its optimizer and gradient buffers: one [`Trainer::step`] per mini-batch.
pub struct Trainer<const Z: usize, M: VaeModel<Z>> {
    /// The model being trained.
    pub model: M,
    opt: Adam<M>,
    grads: Option<Gradients<f32, Cpu>>,
    dev: Cpu,
}

impl<const Z: usize, M: VaeModel<Z>> Trainer<Z, M> {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8) at learning rate `lr`, in
    /// dfdx's order of operations (the VAE's figures were measured with dfdx's own Adam).
    pub fn new(model: M, lr: f64, dev: &Cpu) -> Self {
        let opt = Adam::new(&model, AdamConfig { lr: lr as f32, order: AdamOrder::Dfdx, ..Default::default() });
        let grads = Some(model.alloc_grads());
        Self { model, opt, grads, dev: dev.clone() }
    }

    /// One Adam step on the summed negative ELBO of `x`; returns that sum (divide by the batch size
    /// for the per-image figure). A NaN or infinite gradient changes nothing and is an error.
    pub fn step(&mut self, x: Images<NoneTape>) -> Result<f32, NonFiniteGradient> {
        let mut grads = self.grads.take().expect("gradients are put back after every step");
        self.model.zero_grads(&mut grads);
        let eps = self.dev.sample_normal_like(&(x.shape().0, Const::<Z>));
        let loss = negative_elbo(&self.model, x.traced(grads), eps);
        let value = loss.array();
        let mut grads = loss.backward();
        let update = self.opt.update(&mut self.model, &mut grads, None);
        self.grads = Some(grads);
        update.map(|_| value)
    }

    /// The optimizer (its moments and step count, e.g. to save them).
    pub fn optimizer(&self) -> &Adam<M> {
        &self.opt
    }
}

/// The negative ELBO per image of `set`, summed over batches and divided by its size (PyTorch's report).
pub fn evaluate<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    set: &ImageSet,
    batch_size: usize,
    view: View,
    dev: &Cpu,
) -> f64 {
    let mut loader = Loader::sequential(batch_size, view);
    let mut total = 0.0;
    for batch in loader.epoch(set, dev) {
        let eps = dev.sample_normal_like(&(batch.len(), Const::<Z>));
        total += negative_elbo(model, batch.images, eps).array() as f64;
    }
    total / set.len() as f64
}

/// Bernoulli means of the reconstructions of `x` (decoding the posterior mean), `(n, 784)` row-major.
pub fn reconstruct<const Z: usize, M: VaeModel<Z>>(model: &M, x: Images<NoneTape>) -> Vec<f32> {
    let (mu, _) = model.encode(x);
    model.decode(mu).sigmoid().as_vec()
}

/// Bernoulli means of `n` images decoded from prior samples z ~ N(0, I).
pub fn sample<const Z: usize, M: VaeModel<Z>>(model: &M, n: usize, dev: &Cpu) -> Vec<f32> {
    let z = dev.sample_normal_like(&(n, Const::<Z>));
    model.decode(z).sigmoid().as_vec()
}

/// For a 2-D latent space (None otherwise): the decoder's images over a `side x side` grid of z in
/// [-2.5, 2.5]^2, z0 growing to the right and z1 growing upwards, as in Kingma & Welling's figure.
pub fn latent_manifold<const Z: usize, M: VaeModel<Z>>(model: &M, side: usize, dev: &Cpu) -> Option<Vec<f32>> {
    if Z != 2 || side < 2 {
        return None;
    }
    let at = |i: usize| -2.5 + 5.0 * i as f32 / (side - 1) as f32;
    let z: Vec<f32> = (0..side * side).flat_map(|k| [at(k % side), at(side - 1 - k / side)]).collect();
    Some(model.decode(dev.tensor_from_vec(z, (side * side, Const::<Z>))).sigmoid().as_vec())
}

/// Test images beside their reconstructions: rows alternate originals and reconstructions, 8 pairs a row pair.
pub fn reconstruction_grid<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    test: &ImageSet,
    pairs: usize,
    dev: &Cpu,
) -> Result<Image, VaeError> {
    let (cols, n) = (8, pairs.min(test.len()));
    let originals: Vec<f32> = test.pixels()[..n * PIXELS].iter().map(|&p| p as f32 / 255.0).collect();
    let recon = reconstruct(model, dev.tensor_from_vec(originals.clone(), (n, Const::<PIXELS>)));
    let mut tiles = Vec::with_capacity(2 * n * PIXELS);
    for start in (0..n).step_by(cols) {
        let end = (start + cols).min(n);
        tiles.extend_from_slice(&originals[start * PIXELS..end * PIXELS]);
        tiles.extend(std::iter::repeat_n(0.0, (cols - (end - start)) * PIXELS));
        tiles.extend_from_slice(&recon[start * PIXELS..end * PIXELS]);
        tiles.extend(std::iter::repeat_n(0.0, (cols - (end - start)) * PIXELS));
    }
    Ok(Image::grid(&tiles, tiles.len() / PIXELS, 1, 28, 28, cols)?)
}

/// Writes the PNG grids (reconstructions, samples, and the manifold for a 2-D latent) into the run
/// directory and to TensorBoard at `step`.
pub fn write_figures<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    test: &ImageSet,
    dev: &Cpu,
    run: &mut RunDir,
    step: u64,
) -> Result<(), VaeError> {
    let recon = reconstruction_grid(model, test, 32, dev)?;
    let samples = Image::grid(&sample(model, 64, dev), 64, 1, 28, 28, 8)?;
    recon.save_png(&run.path().join("reconstructions.png"))?;
    samples.save_png(&run.path().join("samples.png"))?;
    let manifold = match latent_manifold(model, 20, dev) {
        Some(images) => Some(Image::grid(&images, 400, 1, 28, 28, 20)?),
        None => None,
    };
    if let Some(m) = &manifold {
        m.save_png(&run.path().join("manifold.png"))?;
    }
    let writer = run.writer()?;
    writer.image("reconstructions", &recon, step)?;
    writer.image("samples", &samples, step)?;
    if let Some(m) = &manifold {
        writer.image("manifold", m, step)?;
    }
    Ok(())
}

/// Trains a VAE as PyTorch's example does and records everything in `run`: TensorBoard scalars
/// (`train/loss`, `test/loss`) and images, PNG grids, a checkpoint after each epoch, `summary.json`.
///
/// Runs on a rayon pool of `config.threads` threads that the calling thread joins (see
/// `glimpse::nn::in_thread_pool`): 25% faster per epoch than driving the global pool from outside.
pub fn train<const Z: usize, M: VaeModel<Z> + BuildModule<Cpu, f32>>(
    config: &Config,
    seed: u64,
    run: &mut RunDir,
    show_progress: bool,
) -> Result<Summary, VaeError> {
    let threads = config.threads.max(1);
    glimpse::nn::in_thread_pool(Some(threads), || train_on_this_pool::<Z, M>(config, seed, run, show_progress))
        .map_err(|e| VaeError::Config(format!("cannot start {threads} threads: {e}")))?
}

fn train_on_this_pool<const Z: usize, M: VaeModel<Z> + BuildModule<Cpu, f32>>(
    config: &Config,
    seed: u64,
    run: &mut RunDir,
    show_progress: bool,
) -> Result<Summary, VaeError> {
    let start = Instant::now();
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(VaeError::Config("batch size and epochs must be positive".into()));
    }
    let mnist = Mnist::load(glimpse::data::Dataset::Mnist, config.data_dir.as_deref())?;
    let train_set = mnist.train.take(config.train_images);
    let dev = Cpu::seed_from_u64(seed);
    let mut model = M::build(&dev);
    if config.output_bias == OutputBias::DataMean {
        model.init_output_bias(&train_set.mean_image(config.data_view.view()));
    }
    let mut trainer = Trainer::<Z, M>::new(model, config.lr, &dev);
    let mut loader = Loader::new(config.batch_size, config.data_view.view(), seed);
    let batches_per_epoch = train_set.len().div_ceil(config.batch_size);
    let progress = show_progress.then(|| Progress::new((config.epochs * batches_per_epoch) as u64));
    let mut epoch_seconds = Vec::new();
    let (mut train_loss, mut test_loss) = (f64::NAN, f64::NAN);

    for epoch in 1..=config.epochs {
        let epoch_start = Instant::now();
        let mut total = 0.0;
        for (b, batch) in loader.epoch(&train_set, &dev).enumerate() {
            let loss =
                trainer.step(batch.images).map_err(|source| VaeError::NonFiniteGradient { source, epoch, batch: b })?;
            let loss = loss as f64;
            if !loss.is_finite() {
                return Err(VaeError::NonFinite { loss, epoch, batch: b });
            }
            total += loss;
            if let Some(p) = &progress {
                p.update(((epoch - 1) * batches_per_epoch + b + 1) as u64, None);
                p.message(format!("epoch {epoch} loss {:.2}", loss / config.batch_size as f64));
            }
        }
        epoch_seconds.push(epoch_start.elapsed().as_secs_f64());
        train_loss = total / train_set.len() as f64;
        test_loss = evaluate(&trainer.model, &mnist.test, config.batch_size, config.data_view.view(), &dev);
        let line = format!(
            "epoch {epoch}: train loss {train_loss:.4} test loss {test_loss:.4} ({:.2} s)",
            epoch_seconds[epoch - 1]
        );
        println!("{line}");
        let writer = run.writer()?;
        writer.scalar("train/loss", train_loss, epoch as u64)?;
        writer.scalar("test/loss", test_loss, epoch as u64)?;
        writer.scalar("train/seconds_per_epoch", epoch_seconds[epoch - 1], epoch as u64)?;
        write_figures(&trainer.model, &mnist.test, &dev, run, epoch as u64)?;
        save_checkpoint(&trainer.model, run, epoch)?;
    }
    if let Some(p) = &progress {
        p.finish();
    }

    let iw_log_likelihood = (config.iw_samples > 0).then(|| {
        let test = mnist.test.take(config.iw_images).binarized_stochastic(seed);
        eprintln!("importance-weighted log-likelihood: {} images x {} samples", test.len(), config.iw_samples);
        let bar = show_progress.then(|| Progress::new(test.len() as u64));
        let estimate = iw_log_likelihood(&trainer.model, &test, config.iw_samples, seed, &dev, |done| {
            if let Some(b) = &bar {
                b.update(done as u64, None);
            }
        });
        if let Some(b) = &bar {
            b.finish();
        }
        println!("importance-weighted log-likelihood ({} samples): {estimate:.2} nats", config.iw_samples);
        estimate
    });
    let mut sorted = epoch_seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let summary = Summary {
        test_loss,
        train_loss,
        epochs: config.epochs,
        seconds_per_epoch: sorted[sorted.len() / 2],
        epoch_seconds,
        iw_log_likelihood,
        iw_samples: config.iw_samples,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    run.write_summary(&serde_json::to_value(&summary).expect("summary serializes"))?;
    run.writer()?.flush()?;
    Ok(summary)
}

/// Saves the weights to `<run>/checkpoint/model.safetensors` and the epoch to `state.json`.
pub fn save_checkpoint<M: TensorCollection<f32, Cpu> + SaveToSafetensors<f32, Cpu>>(
    model: &M,
    run: &RunDir,
    epoch: usize,
) -> Result<(), VaeError> {
    let dir = run.checkpoint_dir();
    std::fs::create_dir_all(&dir).map_err(VaeError::Log)?;
    glimpse::checkpoint::save_weights(model, &dir.join("model.safetensors"))?;
    glimpse::checkpoint::save_json(&serde_json::json!({ "epoch": epoch }), &dir.join("state.json"))?;
    Ok(())
}
