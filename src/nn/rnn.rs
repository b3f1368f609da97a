//! Recurrent cells (`LSTMCell`, `GRUCell`) as fused tape ops, plus sequence unrolling with
//! backpropagation through time.
//!
//! Gate layouts follow PyTorch (`LSTMCell`: i, f, g, o; `GRUCell`: r, z, n), so weights can be
//! compared with or copied from `torch.nn.LSTMCell`/`GRUCell` (the LSTM's two biases are one here).

use dfdx::nn::{BuildModule, BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection, TensorOptions};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::conv::fill_fan_in_uniform;
use super::kernels::{matmul, raw_grad, take_contiguous, tensor_vec, threads, Mat, NnFloat, SIDE_BY_SIDE_MACS};
use super::reuse::{transposed_view, two_weights_and_transposes, weight_values};
use std::sync::Arc;

/// Builders of the recurrent cells.
pub mod builder {
    /// Builder of [`super::LSTMCell`] with `I` inputs and `H` hidden units.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct LSTMCell<const I: usize, const H: usize>;
    /// Builder of [`super::GRUCell`] with `I` inputs and `H` hidden units.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct GRUCell<const I: usize, const H: usize>;
}

/// Combines the tapes of two op inputs when either, both or neither is traced.
pub trait MergeTapes<E: Dtype, Rhs>: Sized {
    /// The tape the op's output carries.
    type Output: Tape<E, Cpu>;
    /// Merges `rhs` into `self`.
    fn merge_tapes(self, rhs: Rhs) -> Self::Output;
}

impl<E: Dtype> MergeTapes<E, NoneTape> for NoneTape {
    type Output = NoneTape;
    fn merge_tapes(self, _: NoneTape) -> NoneTape {
        NoneTape
    }
}

impl<E: Dtype> MergeTapes<E, OwnedTape<E, Cpu>> for NoneTape {
    type Output = OwnedTape<E, Cpu>;
    fn merge_tapes(self, rhs: OwnedTape<E, Cpu>) -> OwnedTape<E, Cpu> {
        rhs
    }
}

impl<E: Dtype> MergeTapes<E, NoneTape> for OwnedTape<E, Cpu> {
    type Output = OwnedTape<E, Cpu>;
    fn merge_tapes(self, _: NoneTape) -> OwnedTape<E, Cpu> {
        self
    }
}

impl<E: Dtype> MergeTapes<E, OwnedTape<E, Cpu>> for OwnedTape<E, Cpu> {
    type Output = OwnedTape<E, Cpu>;
    fn merge_tapes(self, rhs: OwnedTape<E, Cpu>) -> OwnedTape<E, Cpu> {
        self.merge(rhs)
    }
}

/// Adds `src` into the gradient of `t` (allocating it if needed).
macro_rules! add_grad {
    ($grads:expr, $t:expr, $src:expr) => {{
        let dst: &mut Vec<_> = $grads.get_or_alloc_mut($t)?;
        dst.iter_mut().zip($src.iter()).for_each(|(a, b)| *a += *b);
    }};
}

/// Copies the gradient of `t` (zeros if nothing flowed into it).
macro_rules! read_grad {
    ($grads:expr, $t:expr) => {{
        let g: &mut Vec<_> = $grads.get_or_alloc_mut($t)?;
        g.clone()
    }};
}

/// The logistic function; for `f32` through glimpse's branch-free `e^x`, so loops of it vectorize.
#[inline(always)]
fn sigmoid<E: NnFloat>(v: E) -> E {
    match v.to_f32() {
        Some(x) if is_f32::<E>() => E::from(1.0 / (1.0 + super::activation::exp_f32(-x))).unwrap_or(v),
        _ => E::one() / (E::one() + (-v).exp()),
    }
}

/// `tanh`: [`super::tanh_f32`] for `f32`; else through `exp`, several times faster than libm's
/// `tanh` and exact at the saturated ends.
#[inline(always)]
fn tanh<E: NnFloat>(v: E) -> E {
    match v.to_f32() {
        Some(x) if is_f32::<E>() => E::from(super::tanh_f32(x)).unwrap_or(v),
        _ => {
            let two = E::one() + E::one();
            E::one() - two / ((two * v).exp() + E::one())
        }
    }
}

#[inline(always)]
fn is_f32<E: 'static>() -> bool {
    std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
}

/// One row of the LSTM's forward pointwise work: gate activations in place (`g` is `[i f g o]`),
/// the new cell state `c1`, its `tanh` and the new hidden state `h1`.
#[inline(always)]
fn lstm_forward_row<E: NnFloat>(g: &mut [E], c0: &[E], c1: &mut [E], tc: &mut [E], h1: &mut [E]) {
    let h = c0.len();
    let (i, rest) = g.split_at_mut(h);
    let (f, rest) = rest.split_at_mut(h);
    let (gg, o) = rest.split_at_mut(h);
    for j in 0..h {
        i[j] = sigmoid(i[j]);
        f[j] = sigmoid(f[j]);
        gg[j] = tanh(gg[j]);
        o[j] = sigmoid(o[j]);
        c1[j] = f[j] * c0[j] + i[j] * gg[j];
        tc[j] = tanh(c1[j]);
        h1[j] = o[j] * tc[j];
    }
}

/// One row of the LSTM's backward pointwise work: the gates' pre-activation gradients `dp` and
/// the previous cell state's gradient `dc0`, from the output gradients `gh`, `gc`.
#[inline(always)]
fn lstm_backward_row<E: NnFloat>(dp: &mut [E], dc0: &mut [E], g: &[E], (tc, c0): (&[E], &[E]), (gh, gc): (&[E], &[E])) {
    let (h, one) = (dc0.len(), E::one());
    for j in 0..h {
        let (i, f, gg, o) = (g[j], g[h + j], g[2 * h + j], g[3 * h + j]);
        let dc = gc[j] + gh[j] * o * (one - tc[j] * tc[j]);
        dp[j] = dc * gg * i * (one - i);
        dp[h + j] = dc * c0[j] * f * (one - f);
        dp[2 * h + j] = dc * i * (one - gg * gg);
        dp[3 * h + j] = gh[j] * tc[j] * o * (one - o);
        dc0[j] = dc * f;
    }
}

/// `$name(args)` runs `$row(args)` compiled for AVX-512 (16 lanes) where the CPU has it: the
/// same operations (Rust fuses no multiply-adds), so the same bits.
macro_rules! wide_row {
    ($name:ident => $row:ident($($arg:ident: $ty:ty),*)) => {
        fn $name<E: NnFloat>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512<E: NnFloat>($($arg: $ty),*) {
                $row($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if super::avx512::available() {
                // SAFETY: the CPU has AVX-512F, checked just above.
                return unsafe { avx512($($arg),*) };
            }
            $row($($arg),*)
        }
    };
}

wide_row!(wide_lstm_forward_row => lstm_forward_row(g: &mut [E], c0: &[E], c1: &mut [E], tc: &mut [E], h1: &mut [E]));
wide_row!(wide_lstm_backward_row => lstm_backward_row(dp: &mut [E], dc0: &mut [E], g: &[E], c: (&[E], &[E]), grad: (&[E], &[E])));

/// Batch rows per rayon task in the pointwise loops.
const MIN_ROWS_PER_TASK: usize = 8;

/// `pre[B × G] (+)= input[B × F] · weight[G × F]^T`, then `+ bias` per row when given.
fn project<E: NnFloat>(
    input: &[E],
    weight: &Weight<E>,
    bias: Option<&[E]>,
    (b, f, g): (usize, usize, usize),
    pre: &mut [E],
) {
    let w_t = transposed_view((&weight.0, weight.1.as_deref().map(|v| v.as_slice())), (g, f), b);
    if let Some(bias) = bias {
        pre.chunks_mut(g).for_each(|row| row.copy_from_slice(bias));
    }
    matmul((b, f, g), Mat::rows(input, f), w_t, pre, bias.is_some(), threads());
}

/// A gate weight's values and, inside a [`super::with_weight_reuse`] scope, its transpose.
type Weight<E> = (Arc<Vec<E>>, Option<Arc<Vec<E>>>);

/// Gradients of a cell's two projections `pre[B × G] = input[B × F] · weight[G × F]^T (+ bias)`,
/// of the input `x` and of the hidden state `h` (`(dpre, input, input's ghost, weight, weight's
/// ghost, (B, F, G))` each; then the biases, `(dpre, bias's ghost)`), added into `grads` in
/// place: `d_input += dpre · weight`, `d_weight += dpre^T · input`, `d_bias += Σ dpre`. No
/// temporaries: at batch 32, allocating, zeroing and adding a copy of each weight's gradient cost
/// a sixth of an LSTM cell's training step. When both are large and their four gradients are
/// distinct buffers, the two projections run side by side on two threads, one each (the same
/// sums as on more threads); else one after the other on all threads.
macro_rules! projections_backward {
    ($grads:expr, $(($dpre:expr, $input:expr, $input_g:expr, $weight:expr, $weight_g:expr, $dims:expr)),+ ; $(($bdpre:expr, $bias_g:expr)),*) => {{
        let projections = [$(($dpre, $input, raw_grad!($grads, $input_g), $weight, raw_grad!($grads, $weight_g), $dims)),+];
        let run = |dpre: &[_], input: &[_], d_input: &mut [_], weight: &[_], d_weight: &mut [_], (b, f, g): (usize, usize, usize), threads: usize| {
            matmul((b, g, f), Mat::rows(dpre, g), Mat::rows(weight, f), d_input, true, threads);
            matmul((g, b, f), Mat::rows_t(dpre, g), Mat::rows(input, f), d_weight, true, threads);
        };
        let mut addrs: Vec<usize> = projections.iter().flat_map(|p| [p.2.addr(), p.4.addr()]).collect();
        addrs.sort_unstable();
        addrs.dedup();
        let large = projections.iter().all(|p| p.5 .0 * p.5 .1 * p.5 .2 >= SIDE_BY_SIDE_MACS);
        if large && threads() >= 2 && addrs.len() == 4 {
            // SAFETY: four distinct buffers (checked just above); `grads` outlives them.
            let [a, b] = projections.map(|(dpre, input, dx, w, dw, dims)| unsafe { (dpre, input, dx.slice(), w, dw.slice(), dims) });
            rayon::join(move || run(a.0, a.1, a.2, a.3, a.4, a.5, 1), move || run(b.0, b.1, b.2, b.3, b.4, b.5, 1));
        } else {
            for (dpre, input, dx, w, dw, dims) in projections {
                // SAFETY: an input's and a weight's gradients (distinct tensors), one projection at
                // a time; `grads` outlives them.
                run(dpre, input, unsafe { dx.slice() }, w, unsafe { dw.slice() }, dims, threads());
            }
        }
        $(
            let (dpre, d_bias): (&[_], &mut Vec<_>) = ($bdpre, $grads.get_or_alloc_mut($bias_g)?);
            let g = d_bias.len();
            for row in dpre.chunks(g) {
                d_bias.iter_mut().zip(row).for_each(|(a, v)| *a += *v);
            }
        )*
    }};
}

/// Hidden and cell state of an [`LSTMCell`] for a batch; `h` carries the tape.
///
/// `c` carries no tape of its own: its gradient flows only when the state is passed to the
/// next step (use `h` for anything else).
#[derive(Debug, Clone)]
pub struct LstmState<B: Dim, const H: usize, E: Dtype, T = NoneTape> {
    /// Hidden state `(batch, H)`.
    pub h: Tensor<(B, Const<H>), E, Cpu, T>,
    /// Cell state `(batch, H)`.
    pub c: Tensor<(B, Const<H>), E, Cpu>,
}

impl<B: Dim, const H: usize, E: NnFloat> LstmState<B, H, E> {
    /// All-zero state for `batch` sequences.
    pub fn zeros(dev: &Cpu, batch: B) -> Self
    where
        Cpu: Device<E>,
    {
        Self { h: dev.zeros_like(&(batch, Const)), c: dev.zeros_like(&(batch, Const)) }
    }
}

impl<B: Dim, const H: usize, E: NnFloat, T> LstmState<B, H, E, T> {
    /// The same state without a tape (truncated backpropagation through time).
    pub fn detach(&self) -> LstmState<B, H, E> {
        LstmState { h: self.h.retaped(), c: self.c.clone() }
    }
}

/// A long short-term memory cell, like `torch.nn.LSTMCell(I, H)`.
#[derive(Debug, Clone)]
pub struct LSTMCell<const I: usize, const H: usize, E: Dtype, D: Storage<E>> {
    /// Input weights of the gates (i, f, g, o), shape `(4, H, I)`.
    pub weight_ih: Tensor<Rank3<4, H, I>, E, D>,
    /// Recurrent weights of the gates, shape `(4, H, H)`.
    pub weight_hh: Tensor<Rank3<4, H, H>, E, D>,
    /// Gate biases, shape `(4, H)`.
    pub bias: Tensor<Rank2<4, H>, E, D>,
}

/// A gated recurrent unit cell, like `torch.nn.GRUCell(I, H)`.
#[derive(Debug, Clone)]
pub struct GRUCell<const I: usize, const H: usize, E: Dtype, D: Storage<E>> {
    /// Input weights of the gates (r, z, n), shape `(3, H, I)`.
    pub weight_ih: Tensor<Rank3<3, H, I>, E, D>,
    /// Recurrent weights of the gates, shape `(3, H, H)`.
    pub weight_hh: Tensor<Rank3<3, H, H>, E, D>,
    /// Input-side biases, shape `(3, H)`.
    pub bias_ih: Tensor<Rank2<3, H>, E, D>,
    /// Recurrent-side biases, shape `(3, H)` (the `n` part is gated by `r`).
    pub bias_hh: Tensor<Rank2<3, H>, E, D>,
}

impl<const I: usize, const H: usize, E: NnFloat> BuildOnDevice<Cpu, E> for builder::LSTMCell<I, H>
where
    Cpu: Device<E>,
{
    type Built = LSTMCell<I, H, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const H: usize, E: NnFloat> BuildOnDevice<Cpu, E> for builder::GRUCell<I, H>
where
    Cpu: Device<E>,
{
    type Built = GRUCell<I, H, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const H: usize, E: NnFloat> TensorCollection<E, Cpu> for LSTMCell<I, H, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = LSTMCell<I, H, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // PyTorch initialises every recurrent parameter from Uniform(-1/sqrt(H), 1/sqrt(H)).
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight_ih",
                    |s| &s.weight_ih,
                    |s| &mut s.weight_ih,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, H)),
                ),
                Self::tensor(
                    "weight_hh",
                    |s| &s.weight_hh,
                    |s| &mut s.weight_hh,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, H)),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, H)),
                ),
            ),
            |(weight_ih, weight_hh, bias)| LSTMCell { weight_ih, weight_hh, bias },
        )
    }
}

impl<const I: usize, const H: usize, E: NnFloat> TensorCollection<E, Cpu> for GRUCell<I, H, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = GRUCell<I, H, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight_ih",
                    |s| &s.weight_ih,
                    |s| &mut s.weight_ih,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, H)),
                ),
                Self::tensor(
                    "weight_hh",
                    |s| &s.weight_hh,
                    |s| &mut s.weight_hh,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, H)),
                ),
                Self::tensor(
                    "bias_ih",
                    |s| &s.bias_ih,
                    |s| &mut s.bias_ih,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, H)),
                ),
                Self::tensor(
                    "bias_hh",
                    |s| &s.bias_hh,
                    |s| &mut s.bias_hh,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, H)),
                ),
            ),
            |(weight_ih, weight_hh, bias_ih, bias_hh)| GRUCell { weight_ih, weight_hh, bias_ih, bias_hh },
        )
    }
}

impl<const I: usize, const H: usize, E: Dtype, D: Storage<E>> NonMutableModule for LSTMCell<I, H, E, D> {}
impl<const I: usize, const H: usize, E: Dtype, D: Storage<E>> NonMutableModule for GRUCell<I, H, E, D> {}

impl<const I: usize, const H: usize, E: NnFloat> LSTMCell<I, H, E, Cpu> {
    /// One step: `(x, (h, c)) -> (h', c')`; `x` and `h` may each be traced or not.
    #[allow(clippy::type_complexity)]
    pub fn try_step<B: Dim, Tx, Th>(
        &self,
        x: Tensor<(B, Const<I>), E, Cpu, Tx>,
        state: LstmState<B, H, E, Th>,
    ) -> Result<LstmState<B, H, E, Tx::Output>, CpuError>
    where
        Tx: Tape<E, Cpu> + MergeTapes<E, Th>,
        Th: Tape<E, Cpu>,
    {
        let batch = x.shape().0;
        let b = batch.size();
        let (x, xs) = take_contiguous(x)?;
        let (h, hs) = take_contiguous(state.h)?;
        let cs = tensor_vec(&state.c)?;
        let (x, x_tape) = x.split_tape();
        let (h, h_tape) = h.split_tape();
        let mut tape = x_tape.merge_tapes(h_tape);
        let [w_ih, w_hh] = two_weights_and_transposes((&self.weight_ih, (4 * H, I)), (&self.weight_hh, (4 * H, H)))?;
        let bias = weight_values(&self.bias, None)?;

        // Gate pre-activations, then activations in place: [i f g o] per row.
        let mut gates = vec![E::zero(); b * 4 * H];
        project(&xs, &w_ih, Some(&bias), (b, I, 4 * H), &mut gates);
        let w_hh_t = transposed_view((&w_hh.0, w_hh.1.as_deref().map(|v| v.as_slice())), (4 * H, H), b);
        matmul((b, H, 4 * H), Mat::rows(&hs, H), w_hh_t, &mut gates, true, threads());
        let mut c_new = vec![E::zero(); b * H];
        let mut h_new = vec![E::zero(); b * H];
        let mut tanh_c = vec![E::zero(); b * H];
        gates
            .par_chunks_mut(4 * H)
            .zip(c_new.par_chunks_mut(H))
            .zip(h_new.par_chunks_mut(H))
            .zip(tanh_c.par_chunks_mut(H))
            .zip(cs.par_chunks(H))
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|((((g, c1), h1), tc), c0)| wide_lstm_forward_row(g, c0, c1, tc, h1));
        let dev = x.device().clone();
        let h_out = dev.try_tensor_from_vec(h_new, (batch, Const::<H>))?;
        let c_out = dev.try_tensor_from_vec(c_new, (batch, Const::<H>))?;
        if <Tx::Output as Tape<E, Cpu>>::OWNS_TAPE {
            let (x_g, h_g, c_g) = (x.ghost(), h.ghost(), state.c.ghost());
            let (wih_g, whh_g, b_g) = (self.weight_ih.ghost(), self.weight_hh.ghost(), self.bias.ghost());
            let (h_out_g, c_out_g) = (h_out.ghost(), c_out.ghost());
            tape.add_backward_op(move |grads| {
                let gh = read_grad!(grads, &h_out_g);
                let gc = read_grad!(grads, &c_out_g);
                let mut dpre = vec![E::zero(); b * 4 * H];
                let mut dc_prev = vec![E::zero(); b * H];
                dpre.par_chunks_mut(4 * H)
                    .zip(dc_prev.par_chunks_mut(H))
                    .zip(gates.par_chunks(4 * H))
                    .zip(tanh_c.par_chunks(H))
                    .zip(cs.par_chunks(H))
                    .zip(gh.par_chunks(H).zip(gc.par_chunks(H)))
                    .with_min_len(MIN_ROWS_PER_TASK)
                    .for_each(|(((((dp, dc0), g), tc), c0), grad)| wide_lstm_backward_row(dp, dc0, g, (tc, c0), grad));
                projections_backward!(grads,
                    (&dpre[..], &xs[..], &x_g, &w_ih.0[..], &wih_g, (b, I, 4 * H)),
                    (&dpre[..], &hs[..], &h_g, &w_hh.0[..], &whh_g, (b, H, 4 * H)); (&dpre[..], &b_g));
                add_grad!(grads, &c_g, dc_prev);
                Ok(())
            });
        }
        Ok(LstmState { h: h_out.put_tape(tape), c: c_out })
    }

    /// Runs the cell over a time-major sequence `(steps, batch, I)` from `state`, with
    /// backpropagation through time. Returns every hidden state `(steps, batch, H)` (carrying the
    /// tape) and the final state without a tape.
    #[allow(clippy::type_complexity)]
    pub fn try_unroll<S: Dim, B: Dim, T, Th>(
        &self,
        xs: Tensor<(S, B, Const<I>), E, Cpu, T>,
        state: LstmState<B, H, E, Th>,
    ) -> Result<(Tensor<(S, B, Const<H>), E, Cpu, T>, LstmState<B, H, E>), CpuError>
    where
        T: Tape<E, Cpu> + MergeTapes<E, Th, Output = T> + MergeTapes<E, T, Output = T>,
        Th: Tape<E, Cpu>,
    {
        let steps = xs.shape().0;
        let inputs = split_steps(xs)?;
        let mut hidden = Vec::with_capacity(inputs.len());
        let mut inputs = inputs.into_iter();
        let Some(first) = inputs.next() else {
            return Ok((empty_sequence(steps, state.h.shape().0, state.h.device())?, state.detach()));
        };
        let mut state = self.try_step(first, state)?;
        for x in inputs {
            hidden.push(state.h.retaped::<T>());
            state = self.try_step(x, state)?;
        }
        let last = state.detach();
        hidden.push(state.h);
        Ok((stack_steps(steps, hidden)?, last))
    }
}

impl<const I: usize, const H: usize, E: NnFloat> GRUCell<I, H, E, Cpu> {
    /// One step: `(x, h) -> h'`; `x` and `h` may each be traced or not.
    #[allow(clippy::type_complexity)]
    pub fn try_step<B: Dim, Tx, Th>(
        &self,
        x: Tensor<(B, Const<I>), E, Cpu, Tx>,
        h: Tensor<(B, Const<H>), E, Cpu, Th>,
    ) -> Result<Tensor<(B, Const<H>), E, Cpu, Tx::Output>, CpuError>
    where
        Tx: Tape<E, Cpu> + MergeTapes<E, Th>,
        Th: Tape<E, Cpu>,
    {
        let batch = x.shape().0;
        let b = batch.size();
        let (x, xs) = take_contiguous(x)?;
        let (h, hs) = take_contiguous(h)?;
        let (x, x_tape) = x.split_tape();
        let (h, h_tape) = h.split_tape();
        let mut tape = x_tape.merge_tapes(h_tape);
        let [w_ih, w_hh] = two_weights_and_transposes((&self.weight_ih, (3 * H, I)), (&self.weight_hh, (3 * H, H)))?;
        let mut gi = vec![E::zero(); b * 3 * H];
        project(&xs, &w_ih, Some(&weight_values(&self.bias_ih, None)?), (b, I, 3 * H), &mut gi);
        let mut gh = vec![E::zero(); b * 3 * H];
        project(&hs, &w_hh, Some(&weight_values(&self.bias_hh, None)?), (b, H, 3 * H), &mut gh);
        // gi becomes the activations [r z n] per row; gh keeps W_hn h + b_hn for the backward.
        let mut h_new = vec![E::zero(); b * H];
        gi.par_chunks_mut(3 * H)
            .zip(gh.par_chunks(3 * H))
            .zip(h_new.par_chunks_mut(H))
            .zip(hs.par_chunks(H))
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(((a, ghr), h1), h0)| {
                for j in 0..H {
                    let r = sigmoid(a[j] + ghr[j]);
                    let z = sigmoid(a[H + j] + ghr[H + j]);
                    let n = tanh(a[2 * H + j] + r * ghr[2 * H + j]);
                    a[j] = r;
                    a[H + j] = z;
                    a[2 * H + j] = n;
                    h1[j] = (E::one() - z) * n + z * h0[j];
                }
            });
        let h_out = x.device().try_tensor_from_vec(h_new, (batch, Const::<H>))?;
        if <Tx::Output as Tape<E, Cpu>>::OWNS_TAPE {
            let (x_g, h_g, out_g) = (x.ghost(), h.ghost(), h_out.ghost());
            let (wih_g, whh_g) = (self.weight_ih.ghost(), self.weight_hh.ghost());
            let (bih_g, bhh_g) = (self.bias_ih.ghost(), self.bias_hh.ghost());
            tape.add_backward_op(move |grads| {
                let g_out = read_grad!(grads, &out_g);
                let mut dgi = vec![E::zero(); b * 3 * H];
                let mut dgh = vec![E::zero(); b * 3 * H];
                let mut dh_direct = vec![E::zero(); b * H];
                dgi.par_chunks_mut(3 * H)
                    .zip(dgh.par_chunks_mut(3 * H))
                    .zip(dh_direct.par_chunks_mut(H))
                    .zip(gi.par_chunks(3 * H).zip(gh.par_chunks(3 * H)))
                    .zip(hs.par_chunks(H).zip(g_out.par_chunks(H)))
                    .with_min_len(MIN_ROWS_PER_TASK)
                    .for_each(|((((di, dh_), dd), (a, ghr)), (h0, g))| {
                        let one = E::one();
                        for j in 0..H {
                            let (r, z, n) = (a[j], a[H + j], a[2 * H + j]);
                            let dn = g[j] * (one - z) * (one - n * n);
                            let dz = g[j] * (h0[j] - n) * z * (one - z);
                            let dr = dn * ghr[2 * H + j] * r * (one - r);
                            di[j] = dr;
                            di[H + j] = dz;
                            di[2 * H + j] = dn;
                            dh_[j] = dr;
                            dh_[H + j] = dz;
                            dh_[2 * H + j] = dn * r;
                            dd[j] = g[j] * z;
                        }
                    });
                projections_backward!(grads,
                    (&dgi[..], &xs[..], &x_g, &w_ih.0[..], &wih_g, (b, I, 3 * H)),
                    (&dgh[..], &hs[..], &h_g, &w_hh.0[..], &whh_g, (b, H, 3 * H)); (&dgi[..], &bih_g), (&dgh[..], &bhh_g));
                add_grad!(grads, &h_g, dh_direct);
                Ok(())
            });
        }
        Ok(h_out.put_tape(tape))
    }

    /// Runs the cell over a time-major sequence `(steps, batch, I)` from `h`, with
    /// backpropagation through time. Returns every hidden state `(steps, batch, H)` (carrying the
    /// tape) and the final hidden state without a tape.
    #[allow(clippy::type_complexity)]
    pub fn try_unroll<S: Dim, B: Dim, T, Th>(
        &self,
        xs: Tensor<(S, B, Const<I>), E, Cpu, T>,
        h: Tensor<(B, Const<H>), E, Cpu, Th>,
    ) -> Result<(Tensor<(S, B, Const<H>), E, Cpu, T>, Tensor<(B, Const<H>), E, Cpu>), CpuError>
    where
        T: Tape<E, Cpu> + MergeTapes<E, Th, Output = T> + MergeTapes<E, T, Output = T>,
        Th: Tape<E, Cpu>,
    {
        let steps = xs.shape().0;
        let mut inputs = split_steps(xs)?.into_iter();
        let Some(first) = inputs.next() else {
            return Ok((empty_sequence(steps, h.shape().0, h.device())?, h.retaped()));
        };
        let mut hidden = Vec::new();
        let mut h = self.try_step(first, h)?;
        for x in inputs {
            hidden.push(h.retaped::<T>());
            h = self.try_step(x, h)?;
        }
        let last = h.retaped();
        hidden.push(h);
        Ok((stack_steps(steps, hidden)?, last))
    }
}

impl<const I: usize, const H: usize, E, B, Tx, Th> Module<(Tensor<(B, Const<I>), E, Cpu, Tx>, LstmState<B, H, E, Th>)>
    for LSTMCell<I, H, E, Cpu>
where
    E: NnFloat,
    B: Dim,
    Tx: Tape<E, Cpu> + MergeTapes<E, Th>,
    Th: Tape<E, Cpu>,
{
    type Output = LstmState<B, H, E, Tx::Output>;
    type Error = CpuError;

    fn try_forward(
        &self,
        (x, state): (Tensor<(B, Const<I>), E, Cpu, Tx>, LstmState<B, H, E, Th>),
    ) -> Result<Self::Output, CpuError> {
        self.try_step(x, state)
    }
}

impl<const I: usize, const H: usize, E, B, Tx, Th>
    Module<(Tensor<(B, Const<I>), E, Cpu, Tx>, Tensor<(B, Const<H>), E, Cpu, Th>)> for GRUCell<I, H, E, Cpu>
where
    E: NnFloat,
    B: Dim,
    Tx: Tape<E, Cpu> + MergeTapes<E, Th>,
    Th: Tape<E, Cpu>,
{
    type Output = Tensor<(B, Const<H>), E, Cpu, Tx::Output>;
    type Error = CpuError;

    fn try_forward(
        &self,
        (x, h): (Tensor<(B, Const<I>), E, Cpu, Tx>, Tensor<(B, Const<H>), E, Cpu, Th>),
    ) -> Result<Self::Output, CpuError> {
        self.try_step(x, h)
    }
}

/// An empty `(0, batch, F)` sequence.
#[allow(clippy::type_complexity)]
fn empty_sequence<S: Dim, B: Dim, const F: usize, E: NnFloat, T: Tape<E, Cpu>>(
    steps: S,
    batch: B,
    dev: &Cpu,
) -> Result<Tensor<(S, B, Const<F>), E, Cpu, T>, CpuError> {
    Ok(dev.try_tensor_from_vec(Vec::new(), (steps, batch, Const::<F>))?.retaped())
}

/// Splits a time-major sequence into its steps. The first step carries the tape (with the
/// backward op that gathers every step's gradient); the others carry empty tapes.
#[allow(clippy::type_complexity)]
pub fn split_steps<S: Dim, B: Dim, const F: usize, E: NnFloat, T: Tape<E, Cpu>>(
    xs: Tensor<(S, B, Const<F>), E, Cpu, T>,
) -> Result<Vec<Tensor<(B, Const<F>), E, Cpu, T>>, CpuError> {
    let (steps, batch, _) = *xs.shape();
    let (xs, data) = take_contiguous(xs)?;
    let (xs, mut tape) = xs.split_tape();
    let step_len = batch.size() * F;
    let mut parts = Vec::with_capacity(steps.size());
    for chunk in data.chunks(step_len.max(1)).take(steps.size()) {
        parts.push(xs.device().try_tensor_from_vec(chunk.to_vec(), (batch, Const::<F>))?);
    }
    if T::OWNS_TAPE {
        let xs_g = xs.ghost();
        let part_gs: Vec<_> = parts.iter().map(|p| p.ghost()).collect();
        tape.add_backward_op(move |grads| {
            let mut dxs = Vec::with_capacity(step_len * part_gs.len());
            for p in &part_gs {
                dxs.extend(read_grad!(grads, p));
            }
            add_grad!(grads, &xs_g, dxs);
            Ok(())
        });
    }
    let mut tape = Some(tape);
    let parts = parts.into_iter().map(|p| p.put_tape(tape.take().unwrap_or_default())).collect();
    Ok(parts)
}

/// Stacks per-step tensors into a time-major `(steps, batch, F)` sequence, merging their tapes.
#[allow(clippy::type_complexity)]
pub fn stack_steps<S: Dim, B: Dim, const F: usize, E: NnFloat, T>(
    steps: S,
    parts: Vec<Tensor<(B, Const<F>), E, Cpu, T>>,
) -> Result<Tensor<(S, B, Const<F>), E, Cpu, T>, CpuError>
where
    T: Tape<E, Cpu> + MergeTapes<E, T, Output = T>,
{
    assert_eq!(steps.size(), parts.len(), "stack_steps: {} steps declared, {} given", steps.size(), parts.len());
    assert!(!parts.is_empty(), "stack_steps: no steps");
    let batch = parts[0].shape().0;
    let dev = parts[0].device().clone();
    let mut tape = T::default();
    let mut data = Vec::with_capacity(parts.len() * batch.size() * F);
    let mut ghosts = Vec::with_capacity(parts.len());
    for p in parts {
        let (p, t) = p.split_tape();
        data.extend(tensor_vec(&p)?);
        ghosts.push(p.ghost());
        tape = tape.merge_tapes(t);
    }
    let out = dev.try_tensor_from_vec(data, (steps, batch, Const::<F>))?;
    if T::OWNS_TAPE {
        let out_g = out.ghost();
        let step_len = batch.size() * F;
        tape.add_backward_op(move |grads| {
            let g = read_grad!(grads, &out_g);
            for (p, chunk) in ghosts.iter().zip(g.chunks(step_len.max(1))) {
                add_grad!(grads, p, chunk);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
