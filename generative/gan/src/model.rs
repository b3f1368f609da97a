//! The DCGAN generator and discriminator for 28x28 digits as typed dfdx modules, with the DCGAN
//! paper's initialisation.
//!
//! - Generator: z (100) -dense-> 128x7x7 -BN, ReLU- -transposed conv 4x4 s2-> 64x14x14 -BN, ReLU-
//!   -transposed conv 4x4 s2-> 1x28x28 -sigmoid-> pixels in [0, 1].
//! - Discriminator: 1x28x28 -conv 4x4 s2-> 64x14x14 -LeakyReLU(0.2)- -conv 4x4 s2-> 128x7x7 -BN,
//!   LeakyReLU(0.2)- -dense-> one logit.
//! - Class-conditional (the default): the generator reads z followed by the label's one-hot code,
//!   and the discriminator is a projection discriminator ([`Projection`]): its logit gains
//!   `<embed[y], h>`, `h` the 6272 features its dense layer reads.

use dfdx::nn::{builders, BuildModule, ModuleVisitor, TensorCollection, TensorOptions};
use dfdx::prelude::*;
use dfdx::tensor::Merge;
use glimpse::nn::{self as nn, builders as nnb, Dense};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Latent dimensions of the generator's input.
pub const LATENT: usize = 100;
/// Pixels of one image.
pub const PIXELS: usize = glimpse::data::mnist::PIXELS;

/// Classes of MNIST: the labels of a conditional GAN.
pub const CLASSES: usize = 10;
/// Inputs of the conditional generator: the latent, then the label's one-hot code.
pub const CONDITIONAL_INPUT: usize = LATENT + CLASSES;
/// Features the discriminator's last (dense) layer reads: 128 maps of 7x7.
pub const FEATURES: usize = 6272;

/// The generator as a dfdx builder: `(batch, IN)` inputs to `(batch, 784)` pixels in [0, 1].
pub type GeneratorBuilderOf<const IN: usize> = (
    (nnb::Dense<IN, FEATURES>, nnb::Unflatten<128, 7, 7>, nnb::BatchNorm2D<128>, nn::FastReLU),
    (nnb::ConvTrans2D<128, 64, 4, 2, 1>, nnb::BatchNorm2D<64>, nn::FastReLU),
    (nnb::ConvTrans2D<64, 1, 4, 2, 1>, builders::Sigmoid, nnb::FlattenTo<PIXELS>),
);

/// The built generator of `IN` inputs (see [`GeneratorBuilderOf`]).
pub type GeneratorOf<const IN: usize> = (
    (Dense<IN, FEATURES, f32, Cpu>, nn::Unflatten<128, 7, 7>, nn::BatchNorm2D<128, f32, Cpu>, nn::FastReLU),
    (nn::ConvTrans2D<128, 64, 4, 2, 1, 0, f32, Cpu>, nn::BatchNorm2D<64, f32, Cpu>, nn::FastReLU),
    (nn::ConvTrans2D<64, 1, 4, 2, 1, 0, f32, Cpu>, Sigmoid, nn::FlattenTo<PIXELS>),
);

/// The unconditional generator's builder: 100 latents in.
pub type GeneratorBuilder = GeneratorBuilderOf<LATENT>;
/// The unconditional generator: 100 latents to an image.
pub type Generator = GeneratorOf<LATENT>;
/// The conditional generator: 100 latents and a one-hot label (110 inputs) to an image.
pub type ConditionalGenerator = GeneratorOf<CONDITIONAL_INPUT>;

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

impl<const IN: usize> DcganInit for GeneratorOf<IN> {
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

/// The discriminator's layers before its dense layer, as a dfdx builder: `(batch, 784)` pixels to
/// `(batch, 6272)` features (the conditional discriminator's [`Projection::features`]).
pub type FeaturesBuilder = (
    (nnb::Unflatten<1, 28, 28>, nnb::Conv2D<1, 64, 4, 2, 1>, nn::LeakyReLU<20>),
    (nnb::Conv2D<64, 128, 4, 2, 1>, nnb::BatchNorm2D<128>, nn::LeakyReLU<20>),
    nnb::FlattenTo<FEATURES>,
);

/// The built features (see [`FeaturesBuilder`]).
pub type Features = (
    (nn::Unflatten<1, 28, 28>, nn::Conv2D<1, 64, 4, 2, 1, f32, Cpu>, nn::LeakyReLU<20>),
    (nn::Conv2D<64, 128, 4, 2, 1, f32, Cpu>, nn::BatchNorm2D<128, f32, Cpu>, nn::LeakyReLU<20>),
    nn::FlattenTo<FEATURES>,
);

/// The spectrally normalised discriminator's features (no batch norm) as a dfdx builder.
pub type SnFeaturesBuilder = (
    (nnb::Unflatten<1, 28, 28>, nnb::Conv2D<1, 64, 4, 2, 1>, nn::LeakyReLU<20>),
    (nnb::Conv2D<64, 128, 4, 2, 1>, nn::LeakyReLU<20>),
    nnb::FlattenTo<FEATURES>,
);

/// The built spectrally normalised features (see [`SnFeaturesBuilder`]).
pub type SnFeatures = (
    (nn::Unflatten<1, 28, 28>, nn::Conv2D<1, 64, 4, 2, 1, f32, Cpu>, nn::LeakyReLU<20>),
    (nn::Conv2D<64, 128, 4, 2, 1, f32, Cpu>, nn::LeakyReLU<20>),
    nn::FlattenTo<FEATURES>,
);

/// A projection discriminator (Miyato and Koyama 2018): `logit = head(h) + <embed[y], h>`, with
/// `h = features(x)` and `embed[y]` the row of image `x`'s label `y`. Tensor names `features.*`,
/// `head.weight`, `head.bias` and `embed`.
#[derive(Debug, Clone)]
pub struct Projection<F, E: Dtype, D: Storage<E>> {
    /// The layers from pixels to the 6272 features.
    pub features: F,
    /// The unconditional part of the logit.
    pub head: Dense<FEATURES, 1, E, D>,
    /// One row of 6272 weights per class.
    pub embed: Tensor<Rank2<CLASSES, FEATURES>, E, D>,
}

/// The builder of a [`Projection`] over the features that `F` builds.
pub struct ProjectionBuilder<F>(std::marker::PhantomData<F>);

impl<F: BuildOnDevice<Cpu, f32>> BuildOnDevice<Cpu, f32> for ProjectionBuilder<F>
where
    F::Built: TensorCollection<f32, Cpu>,
{
    type Built = Projection<F::Built, f32, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<F: TensorCollection<f32, Cpu>> TensorCollection<f32, Cpu> for Projection<F, f32, Cpu> {
    type To<E2: Dtype, D2: Device<E2>> = Projection<F::To<E2, D2>, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, f32, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("features", |s| &s.features, |s| &mut s.features),
                Self::module("head", |s| &s.head, |s| &mut s.head),
                // Reset to zero here; `DcganInit` draws it.
                Self::tensor("embed", |s| &s.embed, |s| &mut s.embed, TensorOptions::reset_to_zeros()),
            ),
            |(features, head, embed)| Projection { features, head, embed },
        )
    }
}

/// `(batch, CLASSES)` one-hot codes of `labels` (each below [`CLASSES`]).
pub fn one_hot(labels: &[usize], dev: &Cpu) -> Tensor<(usize, Const<CLASSES>), f32, Cpu> {
    let mut codes = vec![0.0; labels.len() * CLASSES];
    for (row, &label) in labels.iter().enumerate() {
        assert!(label < CLASSES, "label {label} is not below {CLASSES}");
        codes[row * CLASSES + label] = 1.0;
    }
    dev.tensor_from_vec(codes, (labels.len(), Const::<CLASSES>))
}

impl<F> Projection<F, f32, Cpu> {
    /// The logits from the features `h` of a batch whose labels are `labels`.
    fn project<T: Tape<f32, Cpu> + Merge<NoneTape>>(
        &self,
        h: Tensor<(usize, Const<FEATURES>), f32, Cpu, T>,
        labels: &[usize],
    ) -> Logits<T> {
        let b = h.shape().0;
        assert_eq!(labels.len(), b, "one label per image");
        let (h, tape) = h.split_tape();
        // One-hot codes times the embedding pick each image's row (with its gradient).
        let rows = one_hot(labels, h.device()).put_tape(tape).matmul(self.embed.retaped::<T>());
        let (projection, tape) = (rows * h.clone()).sum::<(usize,), Axis<1>>().split_tape();
        self.head.forward(h.put_tape(tape)) + projection.reshape_like(&(b, Const::<1>))
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

impl<F: DcganInit> DcganInit for Projection<F, f32, Cpu> {
    fn dcgan_init(&mut self, rng: &mut impl Rng) {
        self.features.dcgan_init(rng);
        fill_normal(&mut self.head.weight, 0.0, 0.02, rng);
        self.head.bias.fill_with_zeros();
        fill_normal(&mut self.embed, 0.0, 0.02, rng);
    }
}

impl DcganInit for Features {
    fn dcgan_init(&mut self, rng: &mut impl Rng) {
        let ((_, conv1, _), (conv2, bn, _), _) = self;
        fill_normal(&mut conv1.weight, 0.0, 0.02, rng);
        conv1.bias.fill_with_zeros();
        fill_normal(&mut conv2.weight, 0.0, 0.02, rng);
        conv2.bias.fill_with_zeros();
        batch_norm(bn, rng);
    }
}

impl DcganInit for SnFeatures {
    fn dcgan_init(&mut self, rng: &mut impl Rng) {
        let ((_, conv1, _), (conv2, _), _) = self;
        fill_normal(&mut conv1.weight, 0.0, 0.02, rng);
        conv1.bias.fill_with_zeros();
        fill_normal(&mut conv2.weight, 0.0, 0.02, rng);
        conv2.bias.fill_with_zeros();
    }
}

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

/// Training-mode logits with a tape.
pub type TapedLogits = Logits<OwnedTape<f32, Cpu>>;
/// Training-mode images with a tape.
pub type TapedImages = Images<OwnedTape<f32, Cpu>>;

/// What the training loop needs of a generator: training (taped, batch statistics) and inference
/// (running statistics) passes from latents and labels to images, and the DCGAN init.
pub trait GeneratorNet: TensorCollection<f32, Cpu> + Clone + Send + DcganInit {
    /// Its builder.
    type Builder: BuildOnDevice<Cpu, f32, Built = Self>;
    /// Whether its images depend on the labels.
    const CONDITIONAL: bool;
    /// The training pass of latents `z` (`(batch, 100)`) and `labels` (one per row; ignored by
    /// an unconditional generator), taped into `grads`.
    fn forward_train(&mut self, z: Latents, labels: &[usize], grads: Gradients<f32, Cpu>) -> TapedImages;
    /// The inference pass.
    fn forward_eval(&self, z: Latents, labels: &[usize]) -> Images;
}

/// A batch of latents.
pub type Latents = Tensor<(usize, Const<LATENT>), f32, Cpu>;

/// The generator's input of `IN` values per row: the latents, then (when `IN` is
/// [`CONDITIONAL_INPUT`]) the labels' one-hot codes.
fn generator_input<const IN: usize>(z: Latents, labels: &[usize]) -> Tensor<(usize, Const<IN>), f32, Cpu> {
    let (rows, dev) = (z.shape().0, z.device().clone());
    if IN == LATENT {
        return dev.tensor_from_vec(z.as_vec(), (rows, Const::<IN>));
    }
    assert_eq!(IN, CONDITIONAL_INPUT, "a generator reads {LATENT} or {CONDITIONAL_INPUT} values");
    assert_eq!(labels.len(), rows, "one label per latent");
    let codes = one_hot(labels, &dev).as_vec();
    let z = z.as_vec();
    let values = z.chunks(LATENT).zip(codes.chunks(CLASSES)).flat_map(|(z, c)| z.iter().chain(c)).copied();
    dev.tensor_from_vec(values.collect(), (rows, Const::<IN>))
}

impl<const IN: usize> GeneratorNet for GeneratorOf<IN> {
    type Builder = GeneratorBuilderOf<IN>;
    const CONDITIONAL: bool = IN != LATENT;
    fn forward_train(&mut self, z: Latents, labels: &[usize], grads: Gradients<f32, Cpu>) -> TapedImages {
        self.forward_mut(generator_input::<IN>(z, labels).traced(grads))
    }
    fn forward_eval(&self, z: Latents, labels: &[usize]) -> Images {
        self.forward(generator_input::<IN>(z, labels))
    }
}

/// What the training loop needs of a discriminator: training (taped, batch statistics) and
/// inference passes from images and their labels to logits, the DCGAN init, and the weights that
/// spectral normalisation applies to (none for the batch-norm discriminators).
pub trait DiscriminatorNet: TensorCollection<f32, Cpu> + Clone + Send + DcganInit {
    /// Its builder.
    type Builder: BuildOnDevice<Cpu, f32, Built = Self>;
    /// Whether its logits depend on the labels.
    const CONDITIONAL: bool;
    /// The training pass of `images` with their `labels` (ignored when unconditional).
    fn forward_train(&mut self, images: TapedImages, labels: &[usize]) -> TapedLogits;
    /// The inference pass.
    fn forward_eval(&self, images: Images, labels: &[usize]) -> Logits;
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

/// The [`DiscriminatorNet`] items of an unconditional tuple network.
macro_rules! unconditional {
    () => {
        const CONDITIONAL: bool = false;
        fn forward_train(&mut self, images: TapedImages, _: &[usize]) -> TapedLogits {
            self.forward_mut(images)
        }
        fn forward_eval(&self, images: Images, _: &[usize]) -> Logits {
            self.forward(images)
        }
    };
}

/// The [`DiscriminatorNet`] items of a [`Projection`] network.
macro_rules! conditional {
    () => {
        const CONDITIONAL: bool = true;
        fn forward_train(&mut self, images: TapedImages, labels: &[usize]) -> TapedLogits {
            let h = self.features.forward_mut(images);
            self.project(h, labels)
        }
        fn forward_eval(&self, images: Images, labels: &[usize]) -> Logits {
            self.project(self.features.forward(images), labels)
        }
    };
}

impl DiscriminatorNet for Discriminator {
    type Builder = DiscriminatorBuilder;
    unconditional!();
    fn normalised_weights(&mut self, _: &mut dyn FnMut(usize, &mut dyn WeightValues)) {}
}

impl DiscriminatorNet for SnDiscriminator {
    type Builder = SnDiscriminatorBuilder;
    unconditional!();
    fn normalised_weights(&mut self, f: &mut dyn FnMut(usize, &mut dyn WeightValues)) {
        f(64, &mut self.0 .1.weight);
        f(128, &mut self.1 .0.weight);
        f(1, &mut self.2 .1.weight);
    }
}

/// The conditional batch-norm discriminator.
pub type ConditionalDiscriminator = Projection<Features, f32, Cpu>;
/// The conditional spectrally normalised discriminator (the embedding normalised too, as in
/// Miyato and Koyama's).
pub type SnConditionalDiscriminator = Projection<SnFeatures, f32, Cpu>;

impl DiscriminatorNet for ConditionalDiscriminator {
    type Builder = ProjectionBuilder<FeaturesBuilder>;
    conditional!();
    fn normalised_weights(&mut self, _: &mut dyn FnMut(usize, &mut dyn WeightValues)) {}
}

impl DiscriminatorNet for SnConditionalDiscriminator {
    type Builder = ProjectionBuilder<SnFeaturesBuilder>;
    conditional!();
    fn normalised_weights(&mut self, f: &mut dyn FnMut(usize, &mut dyn WeightValues)) {
        f(64, &mut self.features.0 .1.weight);
        f(128, &mut self.features.1 .0.weight);
        f(1, &mut self.head.weight);
        f(CLASSES, &mut self.embed);
    }
}
