//! VAE architectures as typed dfdx modules, and the [`VaeModel`] trait the losses and training use.

use crate::PIXELS;
use dfdx::nn::{builders, modules};
use dfdx::prelude::{BuildModule, Const, Cpu, HasShape, Module, ReshapeTo, SplitTape, Tape, Tensor, TensorCollection};
use glimpse::nn::{self as nn, builders as nn_builders, Dense};

/// A batch of flattened images, `(batch, 784)`.
pub type Images<T> = Tensor<(usize, Const<PIXELS>), f32, Cpu, T>;
/// A batch of latent vectors, `(batch, Z)`.
pub type Latents<const Z: usize, T> = Tensor<(usize, Const<Z>), f32, Cpu, T>;

/// A VAE with a diagonal-Gaussian encoder q(z|x) and a Bernoulli decoder p(x|z), prior N(0, I),
/// built on the CPU (`M::build(&dev)`).
pub trait VaeModel<const Z: usize>: TensorCollection<f32, Cpu> + BuildModule<Cpu, f32> + Clone + Send + Sized {
    /// The encoder: the mean and log-variance of q(z|x). `x` is data: no gradient flows back to it.
    fn encode<T: Tape<f32, Cpu>>(&self, x: Images<T>) -> (Latents<Z, T>, Latents<Z, T>);
    /// The decoder: the logits of the 784 Bernoulli pixels of p(x|z).
    fn decode<T: Tape<f32, Cpu>>(&self, z: Latents<Z, T>) -> Images<T>;
    /// Sets the decoder's output bias to the log-odds of `mean_image` (784 pixel means in [0, 1], see
    /// [`log_odds`]), so that training starts from the data's marginal instead of grey 0.5 everywhere.
    fn init_output_bias(&mut self, mean_image: &[f32]);
}

/// The log-odds ln(p / (1 - p)) of a pixel mean, with p clipped to [0.001, 0.999] as Burda et al.'s IWAE
/// code does: pixels that are always black start at -6.9, not at minus infinity.
pub fn log_odds(p: f32) -> f32 {
    let p = p.clamp(1e-3, 1.0 - 1e-3);
    (p / (1.0 - p)).ln()
}

/// The MLP VAE of PyTorch's example, as a dfdx builder: encoder 784-400 (ReLU) then two heads of size Z
/// (mean, log-variance); decoder Z-400 (ReLU)-784 (logits).
pub type MlpVaeBuilder<const Z: usize> = (
    (
        (nn_builders::Dense<PIXELS, 400>, nn::FastReLU),
        builders::SplitInto<(nn_builders::Dense<400, Z>, nn_builders::Dense<400, Z>)>,
    ),
    (nn_builders::Dense<Z, 400>, nn::FastReLU, nn_builders::Dense<400, PIXELS>),
);

/// The built MLP VAE: `.0` is the encoder, `.1` the decoder (see [`MlpVaeBuilder`]).
pub type MlpVae<const Z: usize> = (
    (
        (Dense<PIXELS, 400, f32, Cpu>, nn::FastReLU),
        modules::SplitInto<(Dense<400, Z, f32, Cpu>, Dense<400, Z, f32, Cpu>)>,
    ),
    (Dense<Z, 400, f32, Cpu>, nn::FastReLU, Dense<400, PIXELS, f32, Cpu>),
);

impl<const Z: usize> VaeModel<Z> for MlpVae<Z> {
    fn encode<T: Tape<f32, Cpu>>(&self, x: Images<T>) -> (Latents<Z, T>, Latents<Z, T>) {
        let ((input, relu), heads) = &self.0;
        let (x, tape) = x.split_tape();
        heads.forward(relu.forward(input.forward_data(x, tape)))
    }

    fn decode<T: Tape<f32, Cpu>>(&self, z: Latents<Z, T>) -> Images<T> {
        self.1.forward(z)
    }

    /// One bias per pixel.
    fn init_output_bias(&mut self, mean_image: &[f32]) {
        assert_eq!(mean_image.len(), PIXELS, "one mean per pixel");
        let bias: Vec<f32> = mean_image.iter().map(|&p| log_odds(p)).collect();
        self.1 .2.bias.copy_from(&bias);
    }
}

/// A convolutional VAE builder. Encoder: 1x28x28 -conv 4x4 s2-> 32x14x14 -conv 4x4 s2-> 64x7x7 (ReLUs), a
/// 256-unit dense layer, then the two heads of size Z. Decoder: the mirror image with transposed
/// convolutions, ending in 784 Bernoulli logits.
pub type ConvVaeBuilder<const Z: usize> = (
    (
        (nn_builders::Conv2D<1, 32, 4, 2, 1>, nn::FastReLU, nn_builders::Conv2D<32, 64, 4, 2, 1>, nn::FastReLU),
        (nn_builders::FlattenTo<3136>, nn_builders::Dense<3136, 256>, nn::FastReLU),
        builders::SplitInto<(nn_builders::Dense<256, Z>, nn_builders::Dense<256, Z>)>,
    ),
    (
        (
            nn_builders::Dense<Z, 256>,
            nn::FastReLU,
            nn_builders::Dense<256, 3136>,
            nn::FastReLU,
            nn_builders::Unflatten<64, 7, 7>,
        ),
        (
            nn_builders::ConvTrans2D<64, 32, 4, 2, 1>,
            nn::FastReLU,
            nn_builders::ConvTrans2D<32, 1, 4, 2, 1>,
            nn_builders::FlattenTo<PIXELS>,
        ),
    ),
);

/// The built convolutional VAE: `.0` is the encoder, `.1` the decoder (see [`ConvVaeBuilder`]).
pub type ConvVae<const Z: usize> = (
    (
        (nn::Conv2D<1, 32, 4, 2, 1, f32, Cpu>, nn::FastReLU, nn::Conv2D<32, 64, 4, 2, 1, f32, Cpu>, nn::FastReLU),
        (nn::FlattenTo<3136>, Dense<3136, 256, f32, Cpu>, nn::FastReLU),
        modules::SplitInto<(Dense<256, Z, f32, Cpu>, Dense<256, Z, f32, Cpu>)>,
    ),
    (
        (Dense<Z, 256, f32, Cpu>, nn::FastReLU, Dense<256, 3136, f32, Cpu>, nn::FastReLU, nn::Unflatten<64, 7, 7>),
        (
            nn::ConvTrans2D<64, 32, 4, 2, 1, 0, f32, Cpu>,
            nn::FastReLU,
            nn::ConvTrans2D<32, 1, 4, 2, 1, 0, f32, Cpu>,
            nn::FlattenTo<PIXELS>,
        ),
    ),
);

impl<const Z: usize> VaeModel<Z> for ConvVae<Z> {
    fn encode<T: Tape<f32, Cpu>>(&self, x: Images<T>) -> (Latents<Z, T>, Latents<Z, T>) {
        let b = x.shape().0;
        let images = x.reshape_like(&(b, Const::<1>, Const::<28>, Const::<28>));
        self.0.forward(images)
    }

    fn decode<T: Tape<f32, Cpu>>(&self, z: Latents<Z, T>) -> Images<T> {
        self.1.forward(z)
    }

    /// The last transposed convolution has one bias for all pixels: the log-odds of the mean pixel.
    fn init_output_bias(&mut self, mean_image: &[f32]) {
        assert_eq!(mean_image.len(), PIXELS, "one mean per pixel");
        let mean = mean_image.iter().sum::<f32>() / PIXELS as f32;
        self.1 .1 .2.bias.copy_from(&[log_odds(mean)]);
    }
}
