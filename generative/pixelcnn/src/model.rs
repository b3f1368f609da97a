//! The PixelCNN of van den Oord et al. (2016) as a typed dfdx module: a 7×7 type-A masked
//! convolution, residual blocks of type-B masked convolutions (1×1 → 3×3 → 1×1, the paper's
//! Figure 5), two 1×1 output layers and one Bernoulli logit per pixel.

use crate::sample::{Autoregressive, PixelCnnPositions};
use dfdx::prelude::*;
use glimpse::nn::{self as nn, builders as nnb, MaskA, MaskB};

/// A batch of binary images `(batch, 1, height, width)`, with tape `T`.
pub type Planes<T = NoneTape> = Tensor<(usize, Const<1>, usize, usize), f32, Cpu, T>;

/// A model of p(x) as a product of per-pixel Bernoulli conditionals in raster order: the logit
/// of pixel i depends on pixels before i only.
pub trait PixelModel: TensorCollection<f32, Cpu> + Clone + Sized + Send + Sync + 'static {
    /// The model's name in configs and reports.
    const NAME: &'static str;
    /// A freshly initialised model.
    fn build(dev: &Cpu) -> Self;
    /// One logit per pixel of `x` (training: with the tape).
    fn logits_traced(&self, x: Planes<OwnedTape<f32, Cpu>>) -> Planes<OwnedTape<f32, Cpu>>;
    /// One logit per pixel of `x` (inference).
    fn logits(&self, x: Planes) -> Planes;
    /// The model in the samplers' per-position form.
    type Positions: Autoregressive;
    /// The per-position form of this model for `(height, width)` images.
    fn positions(&self, size: (usize, usize)) -> Self::Positions;
}

/// `L` residual blocks of `C` channels with `H`-channel bottlenecks (the paper has `C = 2H`),
/// each ReLU, 1×1 to `H`, ReLU, masked 3×3 type B, ReLU, 1×1 to `C`, plus its input; computed
/// as one op (its checkpoints are those of dfdx's `Repeated` of the equivalent `Residual` tuples).
pub type ResidualBlocksBuilder<const C: usize, const H: usize, const L: usize> = nnb::ResidualStack<C, H, 3, MaskB, L>;

/// The built residual blocks (see [`ResidualBlocksBuilder`]).
pub type ResidualBlocks<const C: usize, const H: usize, const L: usize> =
    nn::ResidualStack<C, H, 3, MaskB, L, f32, Cpu>;

/// PixelCNN with `C` channels, `H`-channel bottlenecks and `L` residual blocks, as a builder.
pub type PixelCnnBuilder<const C: usize, const H: usize, const L: usize> = (
    nnb::MaskedConv2D<1, C, 7, MaskA>,
    ResidualBlocksBuilder<C, H, L>,
    (nn::FastReLU, nnb::Conv2D<C, C, 1>, nn::FastReLU, nnb::Conv2D<C, 1, 1>),
);

/// The built PixelCNN (see [`PixelCnnBuilder`]).
pub type PixelCnnNet<const C: usize, const H: usize, const L: usize> = (
    nn::MaskedConv2D<1, C, 7, MaskA, f32, Cpu>,
    ResidualBlocks<C, H, L>,
    (nn::FastReLU, nn::Conv2D<C, C, 1, 1, 0, f32, Cpu>, nn::FastReLU, nn::Conv2D<C, 1, 1, 1, 0, f32, Cpu>),
);

/// The paper's MNIST PixelCNN as EugenHotaj/pytorch-generative sizes it: 32 channels, 16-channel
/// bottlenecks, 15 residual blocks (about 54k parameters).
pub type PixelCnn = PixelCnnNet<32, 16, 15>;

impl<const C: usize, const H: usize, const L: usize> PixelModel for PixelCnnNet<C, H, L> {
    const NAME: &'static str = "pixelcnn";

    fn build(dev: &Cpu) -> Self {
        dev.build_module::<PixelCnnBuilder<C, H, L>, f32>()
    }

    fn logits_traced(&self, x: Planes<OwnedTape<f32, Cpu>>) -> Planes<OwnedTape<f32, Cpu>> {
        let y = self.forward(x);
        let (b, _, h, w) = *y.shape();
        y.reshape_like(&(b, Const::<1>, h, w))
    }

    fn logits(&self, x: Planes) -> Planes {
        let y = self.forward(x);
        let (b, _, h, w) = *y.shape();
        y.reshape_like(&(b, Const::<1>, h, w))
    }

    type Positions = PixelCnnPositions;

    fn positions(&self, size: (usize, usize)) -> PixelCnnPositions {
        PixelCnnPositions::new(self, size)
    }
}
