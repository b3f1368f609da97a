//! VAE architectures as typed dfdx modules, and the [`VaeModel`] trait the losses and training use.

use crate::dense::{builder, Dense};
use crate::PIXELS;
use dfdx::nn::{builders, modules};
use dfdx::prelude::{Const, Cpu, Module, ReLU, SplitTape, Tape, Tensor, TensorCollection};

/// A batch of flattened images, `(batch, 784)`.
pub type Images<T> = Tensor<(usize, Const<PIXELS>), f32, Cpu, T>;
/// A batch of latent vectors, `(batch, Z)`.
pub type Latents<const Z: usize, T> = Tensor<(usize, Const<Z>), f32, Cpu, T>;

/// A VAE with a diagonal-Gaussian encoder q(z|x) and a Bernoulli decoder p(x|z), prior N(0, I).
pub trait VaeModel<const Z: usize>: TensorCollection<f32, Cpu> + Sized {
    /// The encoder: the mean and log-variance of q(z|x). `x` is data: no gradient flows back to it.
    fn encode<T: Tape<f32, Cpu>>(&self, x: Images<T>) -> (Latents<Z, T>, Latents<Z, T>);
    /// The decoder: the logits of the 784 Bernoulli pixels of p(x|z).
    fn decode<T: Tape<f32, Cpu>>(&self, z: Latents<Z, T>) -> Images<T>;
}

/// The MLP VAE of PyTorch's example, as a dfdx builder: encoder 784-400 (ReLU) then two heads of size Z
/// (mean, log-variance); decoder Z-400 (ReLU)-784 (logits).
pub type MlpVaeBuilder<const Z: usize> = (
    (
        (builder::Dense<PIXELS, 400>, builders::ReLU),
        builders::SplitInto<(builder::Dense<400, Z>, builder::Dense<400, Z>)>,
    ),
    (builder::Dense<Z, 400>, builders::ReLU, builder::Dense<400, PIXELS>),
);

/// The built MLP VAE: `.0` is the encoder, `.1` the decoder (see [`MlpVaeBuilder`]).
pub type MlpVae<const Z: usize> = (
    ((Dense<PIXELS, 400, f32, Cpu>, ReLU), modules::SplitInto<(Dense<400, Z, f32, Cpu>, Dense<400, Z, f32, Cpu>)>),
    (Dense<Z, 400, f32, Cpu>, ReLU, Dense<400, PIXELS, f32, Cpu>),
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
}
