//! A small convolutional MNIST classifier: the network, a training epoch and evaluation.
//!
//! Besides `examples/mnist_cnn.rs`, it serves as the feature extractor for evaluating generative
//! models on MNIST (its 128-d penultimate layer, see [`features`]).

use dfdx::prelude::*;
use glimpse::data::augment::random_shift;
use glimpse::data::{ImageSet, Loader, View};
use glimpse::nn::builders::{Conv2D, FastReLU, FlattenTo, HashDropout, MaxPool2D, Unflatten};
use glimpse::optim::Adam;
use rand::Rng;

/// The feature layers: 28x28 image rows -> 128 features (dropout acts only in `forward_mut`).
///
/// Each convolution is max-pooled before its ReLU: the same function as ReLU then pooling
/// (both are monotone; same values, same gradients, bit for bit), with the ReLU on a quarter
/// of the values (`mnist_cnn` 19.5 -> 15.1 s per epoch on a Zen 4).
pub type MnistFeatures = (
    Unflatten<1, 28, 28>,
    (Conv2D<1, 32, 3, 1, 1>, MaxPool2D<2, 2>, FastReLU),
    (Conv2D<32, 64, 3, 1, 1>, MaxPool2D<2, 2>, FastReLU, HashDropout<4>),
    (FlattenTo<3136>, Linear<3136, 128>, FastReLU),
);

/// The classifier: features, dropout (p = 0.5), then 10 logits.
pub type MnistCnn = (MnistFeatures, HashDropout<2>, Linear<128, 10>);

/// The built classifier on the CPU in f32.
pub type MnistCnnModel = <MnistCnn as BuildOnDevice<Cpu, f32>>::Built;

/// Statistics of one training epoch.
#[derive(Debug, Clone, Copy)]
pub struct EpochStats {
    /// Mean cross-entropy over the epoch's batches.
    pub mean_loss: f32,
    /// Number of optimizer steps taken.
    pub steps: usize,
}

/// One pass over `set` (28x28 images) with Adam, each batch shifted by up to `max_shift` pixels
/// (see [`random_shift`], drawn from `rng`); `on_step(step_in_epoch, loss)` is called after
/// every update.
///
/// Returns an error when the loss or the gradient becomes NaN or infinite (the optimizer then
/// changed nothing).
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    model: &mut MnistCnnModel,
    opt: &mut Adam<MnistCnnModel>,
    loader: &mut Loader,
    set: &ImageSet,
    dev: &Cpu,
    max_shift: usize,
    rng: &mut impl Rng,
    mut on_step: impl FnMut(usize, f32),
) -> Result<EpochStats, String> {
    if (set.height(), set.width()) != (28, 28) {
        return Err(format!("the classifier takes 28x28 images, the set holds {}x{}", set.height(), set.width()));
    }
    if max_shift >= 28 {
        return Err(format!("max_shift must be below the image side (28), got {max_shift}"));
    }
    let mut grads = model.alloc_grads();
    let (mut total, mut steps) = (0.0, 0);
    for batch in loader.epoch::<784>(set, dev) {
        let targets = batch.one_hot(dev);
        let images = match max_shift {
            0 => batch.images,
            _ => {
                let shifted = random_shift(&batch.images.as_vec(), 28, 28, max_shift, rng);
                dev.tensor_from_vec(shifted, *batch.images.shape())
            }
        };
        let logits = model.forward_mut(images.traced(grads));
        let loss = cross_entropy_with_logits_loss(logits, targets);
        let value = loss.array();
        if !value.is_finite() {
            return Err(format!("loss became {value} at step {steps}"));
        }
        grads = loss.backward();
        opt.update_and_zero(model, &mut grads, None).map_err(|e| e.to_string())?;
        on_step(steps, value);
        total += value;
        steps += 1;
    }
    Ok(EpochStats { mean_loss: total / steps.max(1) as f32, steps })
}

/// Fraction of `set` classified correctly, in batches of `batch_size`.
pub fn accuracy(model: &MnistCnnModel, set: &ImageSet, dev: &Cpu, batch_size: usize) -> f64 {
    let mut correct = 0usize;
    for batch in Loader::sequential(batch_size, View::Grey).epoch::<784>(set, dev) {
        let logits = model.forward(batch.images).as_vec();
        for (row, &label) in logits.chunks(10).zip(&batch.labels) {
            let pred = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0);
            correct += (pred == label) as usize;
        }
    }
    correct as f64 / set.len().max(1) as f64
}

/// The 128-d penultimate activations of `images` (rows of 784 values in [0, 1]).
pub fn features(
    model: &MnistCnnModel,
    images: Tensor<(usize, Const<784>), f32, Cpu>,
) -> Tensor<(usize, Const<128>), f32, Cpu> {
    model.0.forward(images)
}
