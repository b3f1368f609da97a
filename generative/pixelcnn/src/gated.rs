//! The Gated PixelCNN of van den Oord et al. (2016, "Conditional Image Generation with PixelCNN
//! Decoders"): a vertical stack (the rows above) and a horizontal stack (the row so far), gated
//! `tanh(a) · sigmoid(b)` units, the vertical stack feeding the horizontal one shifted down a row,
//! so that no pixel above or to the left is out of reach (no blind spot).

use dfdx::nn::{BuildModule, Module, ModuleVisitor, TensorCollection};
use dfdx::prelude::*;
use glimpse::nn::{Conv2D, HorizontalA, HorizontalB, MaskKind, MaskedConv2D, NnFloat, RowAbove, VerticalStack};

use crate::model::{PixelModel, Planes};
use crate::sample::GatedPositions;

/// Feature maps of `C` channels with tape `T`.
pub type Maps<const C: usize, T> = Tensor<(usize, Const<C>, usize, usize), f32, Cpu, T>;

/// One gated layer from `I` to `P` channels, `K×K` kernels, horizontal mask `HM`.
///
/// `va, vb` = the vertical convolutions of the vertical input; the vertical output is
/// `tanh(va) · sigmoid(vb)`; the horizontal pre-activations add the 1×1 links of `va, vb` shifted
/// down a row to the horizontal convolutions of the horizontal input, and the horizontal output is
/// the 1×1 `out` of their gated product (plus the input, past the first layer).
#[derive(Debug, Clone)]
pub struct GatedLayer<const I: usize, const P: usize, const K: usize, HM, E: Dtype, D: Storage<E>> {
    /// Vertical stack, tanh half.
    pub v_tanh: MaskedConv2D<I, P, K, VerticalStack, E, D>,
    /// Vertical stack, gate half.
    pub v_gate: MaskedConv2D<I, P, K, VerticalStack, E, D>,
    /// Horizontal stack, tanh half.
    pub h_tanh: MaskedConv2D<I, P, K, HM, E, D>,
    /// Horizontal stack, gate half.
    pub h_gate: MaskedConv2D<I, P, K, HM, E, D>,
    /// The vertical tanh half, a row down, into the horizontal one.
    pub link_tanh: MaskedConv2D<P, P, 3, RowAbove, E, D>,
    /// The vertical gate half, a row down, into the horizontal one.
    pub link_gate: MaskedConv2D<P, P, 3, RowAbove, E, D>,
    /// 1×1 convolution of the horizontal gated units.
    pub out: Conv2D<P, P, 1, 1, 0, E, D>,
}

impl<const I: usize, const P: usize, const K: usize, HM: MaskKind, E: NnFloat> TensorCollection<E, Cpu>
    for GatedLayer<I, P, K, HM, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = GatedLayer<I, P, K, HM, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("v_tanh", |s| &s.v_tanh, |s| &mut s.v_tanh),
                    Self::module("v_gate", |s| &s.v_gate, |s| &mut s.v_gate),
                    Self::module("h_tanh", |s| &s.h_tanh, |s| &mut s.h_tanh),
                    Self::module("h_gate", |s| &s.h_gate, |s| &mut s.h_gate),
                ),
                (
                    Self::module("link_tanh", |s| &s.link_tanh, |s| &mut s.link_tanh),
                    Self::module("link_gate", |s| &s.link_gate, |s| &mut s.link_gate),
                    Self::module("out", |s| &s.out, |s| &mut s.out),
                ),
            ),
            |((v_tanh, v_gate, h_tanh, h_gate), (link_tanh, link_gate, out))| GatedLayer {
                v_tanh,
                v_gate,
                h_tanh,
                h_gate,
                link_tanh,
                link_gate,
                out,
            },
        )
    }
}

impl<const I: usize, const P: usize, const K: usize, HM: MaskKind> GatedLayer<I, P, K, HM, f32, Cpu> {
    /// The vertical output (none for the `last` layer, whose vertical stack only feeds the
    /// horizontal one) and the horizontal `out` before any residual, from vertical input `v` and
    /// horizontal input `h`.
    pub fn gates<T: Tape<f32, Cpu>>(
        &self,
        v: Maps<I, T>,
        h: Maps<I, T>,
        last: bool,
    ) -> (Option<Maps<P, T>>, Maps<P, T>) {
        let va = self.v_tanh.forward(v.with_empty_tape());
        let vb = self.v_gate.forward(v);
        // A traced value used twice: each use but the last on an empty tape of its own, merged back
        // where the branches meet.
        let (la, lb, v_out) = if last {
            (self.link_tanh.forward(va), self.link_gate.forward(vb), None)
        } else {
            let (la, lb) = (self.link_tanh.forward(va.with_empty_tape()), self.link_gate.forward(vb.with_empty_tape()));
            (la, lb, Some(va.tanh() * vb.sigmoid()))
        };
        let ha = self.h_tanh.forward(h.with_empty_tape()) + la;
        let hb = self.h_gate.forward(h) + lb;
        (v_out, self.out.forward(ha.tanh() * hb.sigmoid()))
    }
}

/// Gated PixelCNN with `P` channels: a 7×7 first gated layer, `L` gated 3×3 layers with residual
/// horizontal connections, then ReLU, 1×1 (P→P), ReLU, 1×1 (P→1): one logit per pixel.
#[derive(Debug, Clone)]
pub struct GatedPixelCnnNet<const P: usize, const L: usize, E: Dtype, D: Storage<E>> {
    /// The first layer, on the image (horizontal mask A: the pixel itself is not seen).
    pub first: GatedLayer<1, P, 7, HorizontalA, E, D>,
    /// The later layers.
    pub layers: Repeated<GatedLayer<P, P, 3, HorizontalB, E, D>, L>,
    /// Output layers.
    pub head: (Conv2D<P, P, 1, 1, 0, E, D>, Conv2D<P, 1, 1, 1, 0, E, D>),
}

impl<const P: usize, const L: usize, E: NnFloat> TensorCollection<E, Cpu> for GatedPixelCnnNet<P, L, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = GatedPixelCnnNet<P, L, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("first", |s| &s.first, |s| &mut s.first),
                Self::module("layers", |s| &s.layers, |s| &mut s.layers),
                Self::module("head", |s| &s.head, |s| &mut s.head),
            ),
            |(first, layers, head)| GatedPixelCnnNet { first, layers, head },
        )
    }
}

/// The Gated PixelCNN of `--model gated`: 16 channels, 7×7 first layer, 10 gated 3×3 layers
/// (about as much work per image as [`crate::PixelCnn`]).
pub type GatedPixelCnn = GatedPixelCnnNet<16, 10, f32, Cpu>;

impl<const P: usize, const L: usize> GatedPixelCnnNet<P, L, f32, Cpu> {
    fn run<T: Tape<f32, Cpu>>(&self, x: Planes<T>) -> Planes<T> {
        let (v, h) = self.first.gates(x.with_empty_tape(), x, L == 0);
        let (mut v, mut h) = (v, h);
        for (i, layer) in self.layers.modules.iter().enumerate() {
            let v_in = v.take().expect("every layer but the last passes its vertical stack on");
            let (v_out, out) = layer.gates(v_in, h.with_empty_tape(), i + 1 == L);
            (v, h) = (v_out, h + out);
        }
        let (h1, h2) = &self.head;
        let y = h2.forward(h1.forward(h.relu()).relu());
        let (b, _, hh, ww) = *y.shape();
        y.reshape_like(&(b, Const::<1>, hh, ww))
    }
}

impl<const P: usize, const L: usize> PixelModel for GatedPixelCnnNet<P, L, f32, Cpu> {
    const NAME: &'static str = "gated";
    type Positions = GatedPositions;

    fn build(dev: &Cpu) -> Self {
        BuildModule::build(dev)
    }

    fn logits_traced(&self, x: Planes<OwnedTape<f32, Cpu>>) -> Planes<OwnedTape<f32, Cpu>> {
        self.run(x)
    }

    fn logits(&self, x: Planes) -> Planes {
        self.run(x)
    }

    fn positions(&self, size: (usize, usize)) -> GatedPositions {
        GatedPositions::new(self, size)
    }
}
