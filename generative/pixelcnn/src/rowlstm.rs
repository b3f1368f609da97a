//! PixelRNN with Row LSTM layers (van den Oord, Kalchbrenner & Kavukcuoglu 2016, section 3.1):
//! a 7×7 type-A masked convolution, then LSTM layers that process the image a row at a time,
//! their gates from a masked 1×3 input-to-state convolution of the row and a 1×3 state-to-state
//! convolution of the previous row's hidden state, with residual connections, and a 1×1 head.

use dfdx::nn::{BuildModule, Module, ModuleVisitor, TensorCollection};
use dfdx::prelude::*;
use glimpse::nn::{CentreRow, Conv2D, HorizontalB, MaskA, MaskedConv2D, NnFloat};

use crate::gated::Maps;
use crate::model::{PixelModel, Planes};
use crate::sample::RowLstmPositions;

/// The four gates' convolutions of one kind (input-to-state or state-to-state): input, forget,
/// output and candidate.
#[derive(Debug, Clone)]
pub struct Gates<const I: usize, const H: usize, M, E: Dtype, D: Storage<E>> {
    /// Input gate.
    pub input: MaskedConv2D<I, H, 3, M, E, D>,
    /// Forget gate.
    pub forget: MaskedConv2D<I, H, 3, M, E, D>,
    /// Output gate.
    pub output: MaskedConv2D<I, H, 3, M, E, D>,
    /// Candidate cell values (tanh).
    pub cell: MaskedConv2D<I, H, 3, M, E, D>,
}

impl<const I: usize, const H: usize, M: glimpse::nn::MaskKind, E: NnFloat> TensorCollection<E, Cpu>
    for Gates<I, H, M, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Gates<I, H, M, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("input", |s| &s.input, |s| &mut s.input),
                Self::module("forget", |s| &s.forget, |s| &mut s.forget),
                Self::module("output", |s| &s.output, |s| &mut s.output),
                Self::module("cell", |s| &s.cell, |s| &mut s.cell),
            ),
            |(input, forget, output, cell)| Gates { input, forget, output, cell },
        )
    }
}

impl<const I: usize, const H: usize, M: glimpse::nn::MaskKind> Gates<I, H, M, f32, Cpu> {
    /// The four gates' pre-activations of `x` (each use of `x` but the last on its own tape).
    fn apply<T: Tape<f32, Cpu>>(&self, x: Maps<I, T>) -> [Maps<H, T>; 4] {
        [
            self.input.forward(x.with_empty_tape()),
            self.forget.forward(x.with_empty_tape()),
            self.output.forward(x.with_empty_tape()),
            self.cell.forward(x),
        ]
    }
}

/// One Row LSTM layer on `C` channels with `H` hidden units, and its residual 1×1 output.
#[derive(Debug, Clone)]
pub struct RowLstmLayer<const C: usize, const H: usize, E: Dtype, D: Storage<E>> {
    /// Input-to-state: each pixel's row up to itself (mask B, a 1×3 kernel).
    pub input_to_state: Gates<C, H, HorizontalB, E, D>,
    /// State-to-state: the previous row's hidden state at the column and its two neighbours.
    pub state_to_state: Gates<H, H, CentreRow, E, D>,
    /// The hidden state back to `C` channels, added to the layer's input.
    pub out: Conv2D<H, C, 1, 1, 0, E, D>,
}

impl<const C: usize, const H: usize, E: NnFloat> TensorCollection<E, Cpu> for RowLstmLayer<C, H, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = RowLstmLayer<C, H, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("input_to_state", |s| &s.input_to_state, |s| &mut s.input_to_state),
                Self::module("state_to_state", |s| &s.state_to_state, |s| &mut s.state_to_state),
                Self::module("out", |s| &s.out, |s| &mut s.out),
            ),
            |(input_to_state, state_to_state, out)| RowLstmLayer { input_to_state, state_to_state, out },
        )
    }
}

/// Row `r` of `x` as a one-row map.
fn row<const C: usize, T: Tape<f32, Cpu>>(x: Maps<C, T>, r: usize) -> Maps<C, T> {
    x.slice((.., .., r..r + 1, ..))
}

impl<const C: usize, const H: usize> RowLstmLayer<C, H, f32, Cpu> {
    /// `x` plus the 1×1 output of the hidden states of every row of `x`.
    pub fn run<T: Tape<f32, Cpu>>(&self, x: Maps<C, T>) -> Maps<C, T> {
        let (b, _, rows, w) = *x.shape();
        let dev = x.device().clone();
        // The input-to-state pre-activations of every row at once; each row is sliced from them
        // on its own tape but the last row, which takes the maps' tapes.
        let mut pre = Some(self.input_to_state.apply(x.with_empty_tape()));
        let zeros = || dev.zeros_like(&(b, Const::<H>, 1, w)).put_tape(T::default());
        let (mut h, mut c) = (zeros(), zeros());
        let mut hidden = Vec::with_capacity(rows);
        for r in 0..rows {
            let is: [Maps<H, T>; 4] = if r + 1 == rows {
                pre.take().expect("the maps").map(|m| row(m, r))
            } else {
                pre.as_ref().expect("the maps").each_ref().map(|m| row(m.with_empty_tape(), r))
            };
            let [ii, ff, oo, gg] = is;
            let [si, sf, so, sg] = self.state_to_state.apply(h);
            let (i, f, o, g) = ((ii + si).sigmoid(), (ff + sf).sigmoid(), (oo + so).sigmoid(), (gg + sg).tanh());
            c = f * c + i * g;
            let last = r + 1 == rows;
            let cell = if last { std::mem::replace(&mut c, zeros()) } else { c.with_empty_tape() };
            let h_new = o * cell.tanh();
            h = if last { zeros() } else { h_new.with_empty_tape() };
            hidden.push(h_new);
        }
        let stacked = hidden.stack().permute::<_, Axes5<1, 2, 0, 3, 4>>();
        let maps: Maps<H, T> = stacked.reshape_like(&(b, Const::<H>, rows, w));
        x + self.out.forward(maps)
    }
}

/// PixelRNN with `L` Row LSTM layers on `C` channels with `H` hidden units each.
#[derive(Debug, Clone)]
pub struct RowLstmNet<const C: usize, const H: usize, const L: usize, E: Dtype, D: Storage<E>> {
    /// The 7×7 type-A masked convolution of the image.
    pub first: MaskedConv2D<1, C, 7, MaskA, E, D>,
    /// The Row LSTM layers.
    pub layers: Repeated<RowLstmLayer<C, H, E, D>, L>,
    /// ReLU, 1×1 (C→C), ReLU, 1×1 (C→1).
    pub head: (Conv2D<C, C, 1, 1, 0, E, D>, Conv2D<C, 1, 1, 1, 0, E, D>),
}

impl<const C: usize, const H: usize, const L: usize, E: NnFloat> TensorCollection<E, Cpu>
    for RowLstmNet<C, H, L, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = RowLstmNet<C, H, L, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("first", |s| &s.first, |s| &mut s.first),
                Self::module("layers", |s| &s.layers, |s| &mut s.layers),
                Self::module("head", |s| &s.head, |s| &mut s.head),
            ),
            |(first, layers, head)| RowLstmNet { first, layers, head },
        )
    }
}

/// The PixelRNN of `--model rowlstm`: 32 channels, 4 Row LSTM layers of 32 hidden units.
pub type RowLstm = RowLstmNet<32, 32, 4, f32, Cpu>;

impl<const C: usize, const H: usize, const L: usize> RowLstmNet<C, H, L, f32, Cpu> {
    fn run<T: Tape<f32, Cpu>>(&self, x: Planes<T>) -> Planes<T> {
        let mut y = self.first.forward(x);
        for layer in &self.layers.modules {
            y = layer.run(y);
        }
        let (h1, h2) = &self.head;
        let y = h2.forward(h1.forward(y.relu()).relu());
        let (b, _, hh, ww) = *y.shape();
        y.reshape_like(&(b, Const::<1>, hh, ww))
    }
}

impl<const C: usize, const H: usize, const L: usize> PixelModel for RowLstmNet<C, H, L, f32, Cpu> {
    const NAME: &'static str = "rowlstm";
    type Positions = RowLstmPositions;

    fn build(dev: &Cpu) -> Self {
        BuildModule::build(dev)
    }

    fn logits_traced(&self, x: Planes<OwnedTape<f32, Cpu>>) -> Planes<OwnedTape<f32, Cpu>> {
        self.run(x)
    }

    fn logits(&self, x: Planes) -> Planes {
        self.run(x)
    }

    fn positions(&self, size: (usize, usize)) -> RowLstmPositions {
        RowLstmPositions::new(self, size)
    }
}
