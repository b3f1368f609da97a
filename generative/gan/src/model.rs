//! The DCGAN generator and discriminator for 28x28 digits as typed dfdx modules, with the DCGAN
//! paper's initialisation.
//!
//! - Generator: z (100) -dense-> 128x7x7 -BN, ReLU- -transposed conv 4x4 s2-> 64x14x14 -BN, ReLU-
//!   -transposed conv 4x4 s2-> 1x28x28 -sigmoid-> pixels in [0, 1].
//! - Discriminator: 1x28x28 -conv 4x4 s2-> 64x14x14 -LeakyReLU(0.2)- -conv 4x4 s2-> 128x7x7 -BN,
//!   LeakyReLU(0.2)- -dense-> one logit.

use dfdx::nn::builders;
use dfdx::prelude::*;
use glimpse::nn::{self as nn, builders as nnb, Dense};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Latent dimensions of the generator's input.
pub const LATENT: usize = 100;
/// Pixels of one image.
pub const PIXELS: usize = glimpse::data::mnist::PIXELS;

/// The generator as a dfdx builder: `(batch, 100)` latents to `(batch, 784)` pixels in [0, 1].
pub type GeneratorBuilder = (
    (nnb::Dense<LATENT, 6272>, nnb::Unflatten<128, 7, 7>, nnb::BatchNorm2D<128>, builders::ReLU),
    (nnb::ConvTrans2D<128, 64, 4, 2, 1>, nnb::BatchNorm2D<64>, builders::ReLU),
    (nnb::ConvTrans2D<64, 1, 4, 2, 1>, builders::Sigmoid, nnb::FlattenTo<PIXELS>),
);

/// The built generator (see [`GeneratorBuilder`]).
pub type Generator = (
    (Dense<LATENT, 6272, f32, Cpu>, nn::Unflatten<128, 7, 7>, nn::BatchNorm2D<128, f32, Cpu>, ReLU),
    (nn::ConvTrans2D<128, 64, 4, 2, 1, 0, f32, Cpu>, nn::BatchNorm2D<64, f32, Cpu>, ReLU),
    (nn::ConvTrans2D<64, 1, 4, 2, 1, 0, f32, Cpu>, Sigmoid, nn::FlattenTo<PIXELS>),
);

/// The discriminator as a dfdx builder: `(batch, 784)` pixels to `(batch, 1)` logits of "real".
pub type DiscriminatorBuilder = (
    (nnb::Unflatten<1, 28, 28>, nnb::Conv2D<1, 64, 4, 2, 1>, nn::LeakyReLU<20>),
    (nnb::Conv2D<64, 128, 4, 2, 1>, nnb::BatchNorm2D<128>, nn::LeakyReLU<20>),
    (nnb::FlattenTo<6272>, nnb::Dense<6272, 1>),
);

/// The built discriminator (see [`DiscriminatorBuilder`]).
pub type Discriminator = (
    (nn::Unflatten<1, 28, 28>, nn::Conv2D<1, 64, 4, 2, 1, f32, Cpu>, nn::LeakyReLU<20>),
    (nn::Conv2D<64, 128, 4, 2, 1, f32, Cpu>, nn::BatchNorm2D<128, f32, Cpu>, nn::LeakyReLU<20>),
    (nn::FlattenTo<6272>, Dense<6272, 1, f32, Cpu>),
);

/// Fills `t` with N(mean, std) draws from `rng`.
pub fn fill_normal<S: Shape>(t: &mut Tensor<S, f32, Cpu>, mean: f32, std: f32, rng: &mut impl Rng) {
    let normal = Normal::new(mean, std).expect("a finite std >= 0");
    let values: Vec<f32> = (0..t.shape().num_elements()).map(|_| normal.sample(rng)).collect();
    t.copy_from(&values);
}

/// The DCGAN paper's initialisation (PyTorch's `weights_init`): weights of the dense and
/// convolution layers N(0, 0.02) and biases 0; batch-norm scales N(1, 0.02) and shifts 0.
pub trait DcganInit {
    /// Re-initialises every layer from `rng`.
    fn dcgan_init(&mut self, rng: &mut impl Rng);
}

fn batch_norm<const C: usize>(bn: &mut nn::BatchNorm2D<C, f32, Cpu>, rng: &mut impl Rng) {
    fill_normal(&mut bn.scale, 1.0, 0.02, rng);
    bn.bias.fill_with_zeros();
}

impl DcganInit for Generator {
    fn dcgan_init(&mut self, rng: &mut impl Rng) {
        let ((dense, _, bn1, _), (up1, bn2, _), (up2, _, _)) = self;
        fill_normal(&mut dense.weight, 0.0, 0.02, rng);
        dense.bias.fill_with_zeros();
        batch_norm(bn1, rng);
        fill_normal(&mut up1.weight, 0.0, 0.02, rng);
        up1.bias.fill_with_zeros();
        batch_norm(bn2, rng);
        fill_normal(&mut up2.weight, 0.0, 0.02, rng);
        up2.bias.fill_with_zeros();
    }
}

impl DcganInit for Discriminator {
    fn dcgan_init(&mut self, rng: &mut impl Rng) {
        let ((_, conv1, _), (conv2, bn, _), (_, dense)) = self;
        fill_normal(&mut conv1.weight, 0.0, 0.02, rng);
        conv1.bias.fill_with_zeros();
        fill_normal(&mut conv2.weight, 0.0, 0.02, rng);
        conv2.bias.fill_with_zeros();
        batch_norm(bn, rng);
        fill_normal(&mut dense.weight, 0.0, 0.02, rng);
        dense.bias.fill_with_zeros();
    }
}

/// The discriminator of the hinge objective as a dfdx builder: the DCGAN discriminator without
/// batch norm, its convolution and dense weights spectrally normalised in training (see
/// [`crate::spectral`]), as in Miyato et al.'s SN-GAN.
pub type SnDiscriminatorBuilder = (
    (nnb::Unflatten<1, 28, 28>, nnb::Conv2D<1, 64, 4, 2, 1>, nn::LeakyReLU<20>),
    (nnb::Conv2D<64, 128, 4, 2, 1>, nn::LeakyReLU<20>),
    (nnb::FlattenTo<6272>, nnb::Dense<6272, 1>),
);

/// The built spectrally normalised discriminator (see [`SnDiscriminatorBuilder`]).
pub type SnDiscriminator = (
    (nn::Unflatten<1, 28, 28>, nn::Conv2D<1, 64, 4, 2, 1, f32, Cpu>, nn::LeakyReLU<20>),
    (nn::Conv2D<64, 128, 4, 2, 1, f32, Cpu>, nn::LeakyReLU<20>),
    (nn::FlattenTo<6272>, Dense<6272, 1, f32, Cpu>),
);

impl DcganInit for SnDiscriminator {
    fn dcgan_init(&mut self, rng: &mut impl Rng) {
        let ((_, conv1, _), (conv2, _), (_, dense)) = self;
        fill_normal(&mut conv1.weight, 0.0, 0.02, rng);
        conv1.bias.fill_with_zeros();
        fill_normal(&mut conv2.weight, 0.0, 0.02, rng);
        conv2.bias.fill_with_zeros();
        fill_normal(&mut dense.weight, 0.0, 0.02, rng);
        dense.bias.fill_with_zeros();
    }
}

/// A batch of images as rows of 784 pixels in [0, 1].
pub type Images<T = NoneTape> = Tensor<(usize, Const<PIXELS>), f32, Cpu, T>;
/// A batch of discriminator logits.
pub type Logits<T = NoneTape> = Tensor<(usize, Const<1>), f32, Cpu, T>;

/// What the training loop needs of a discriminator: training (`forward_mut`, taped) and
/// inference (`forward`) passes from images to logits, the DCGAN init, and the weights that
/// spectral normalisation applies to (none for the batch-norm discriminator).
pub trait DiscriminatorNet:
    TensorCollection<f32, Cpu>
    + Clone
    + Send
    + DcganInit
    + ModuleMut<Images<OwnedTape<f32, Cpu>>, Output = Logits<OwnedTape<f32, Cpu>>>
    + ModuleMut<Images, Output = Logits>
    + Module<Images, Output = Logits>
{
    /// Its builder.
    type Builder: BuildOnDevice<Cpu, f32, Built = Self>;
    /// Calls `f(rows, weight)` on each spectrally normalised weight (rows = output channels).
    fn normalised_weights(&mut self, f: &mut dyn FnMut(usize, &mut dyn WeightValues));
}

/// A weight tensor's values as a flat row-major vector, and its gradient in `grads`.
pub trait WeightValues {
    /// A copy of the values.
    fn values(&self) -> Vec<f32>;
    /// Overwrites the values.
    fn set_values(&mut self, values: &[f32]);
    /// The gradient entry of this tensor in `grads` (allocated if absent).
    fn grad<'a>(&self, grads: &'a mut Gradients<f32, Cpu>) -> &'a mut Vec<f32>;
}

impl<S: Shape> WeightValues for Tensor<S, f32, Cpu> {
    fn values(&self) -> Vec<f32> {
        self.as_vec()
    }
    fn set_values(&mut self, values: &[f32]) {
        self.copy_from(values);
    }
    fn grad<'a>(&self, grads: &'a mut Gradients<f32, Cpu>) -> &'a mut Vec<f32> {
        grads.get_or_alloc_mut(self).expect("CPU allocation")
    }
}

impl DiscriminatorNet for Discriminator {
    type Builder = DiscriminatorBuilder;
    fn normalised_weights(&mut self, _: &mut dyn FnMut(usize, &mut dyn WeightValues)) {}
}

impl DiscriminatorNet for SnDiscriminator {
    type Builder = SnDiscriminatorBuilder;
    fn normalised_weights(&mut self, f: &mut dyn FnMut(usize, &mut dyn WeightValues)) {
        f(64, &mut self.0 .1.weight);
        f(128, &mut self.1 .0.weight);
        f(1, &mut self.2 .1.weight);
    }
}
