//! [`Dense`]: a fully connected layer with the parameters of dfdx's `Linear`, computed with the
//! matrix products the other layers use (the AVX-512 kernel for f32 where the CPU has it, else
//! the `gemm` crate), instead of dfdx 0.13's matmul, whose `gemm` 0.15 kernels stop at AVX2 on
//! stable Rust.
//!
//! The forward pass and its backward pass (weight, bias and input gradients) are one op each on
//! the tape. [`Dense::forward_data`] skips the input gradient, which a first layer fed with data
//! never needs.

use dfdx::nn::{BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection, TensorOptions};
use dfdx::prelude::*;

use super::conv::fill_fan_in_uniform;
use super::kernels::{matmul, raw_grad, take_contiguous, tensor_vec, threads, Mat, NnFloat, SIDE_BY_SIDE_MACS};
use super::reuse::{transposed_view, weight_and_transpose, weight_values};

/// Device-free description of [`Dense`], for module tuples built with `dev.build_module`.
pub mod builder {
    /// A fully connected layer from `I` to `O` features.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Dense<const I: usize, const O: usize>;
    /// A fully connected layer from up to `MAX_I` (a run-time width) to `O` features.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct DenseUpTo<const MAX_I: usize, const O: usize>;
}

impl<const I: usize, const O: usize, E: NnFloat> BuildOnDevice<Cpu, E> for builder::Dense<I, O>
where
    Cpu: Device<E>,
{
    type Built = Dense<I, O, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

/// `y = x W^T + b` for a batch `x` of shape `(batch, I)`, like `torch.nn.Linear`. Parameters and
/// their initialisation (uniform in ±1/sqrt(I)) are those of dfdx's `Linear`, so checkpoints use
/// the same names (`weight` of shape `(O, I)`, `bias`) and are interchangeable.
#[derive(Debug, Clone)]
pub struct Dense<const I: usize, const O: usize, E: Dtype, D: Storage<E>> {
    /// Weight matrix, shape `(O, I)`.
    pub weight: Tensor<Rank2<O, I>, E, D>,
    /// Bias vector, shape `(O,)`.
    pub bias: Tensor<Rank1<O>, E, D>,
}

impl<const I: usize, const O: usize, E: Dtype, D: Storage<E>> NonMutableModule for Dense<I, O, E, D> {}

impl<const I: usize, const O: usize, E: NnFloat> TensorCollection<E, Cpu> for Dense<I, O, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Dense<I, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, I)),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, I)),
                ),
            ),
            |(weight, bias)| Dense { weight, bias },
        )
    }
}

impl<const I: usize, const O: usize, E: NnFloat, B: Dim, T: Tape<E, Cpu>> Module<Tensor<(B, Const<I>), E, Cpu, T>>
    for Dense<I, O, E, Cpu>
where
    Cpu: Device<E>,
{
    type Output = Tensor<(B, Const<O>), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<I>), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        let (x, tape) = x.split_tape();
        dense(self, x, tape, true)
    }
}

impl<const I: usize, const O: usize, E: NnFloat> Dense<I, O, E, Cpu>
where
    Cpu: Device<E>,
{
    /// The forward pass for a data input (no gradient flows to `x`); `tape` records the
    /// parameters' gradients.
    pub fn forward_data<B: Dim, T: Tape<E, Cpu>>(
        &self,
        x: Tensor<(B, Const<I>), E, Cpu>,
        tape: T,
    ) -> Tensor<(B, Const<O>), E, Cpu, T> {
        dense(self, x, tape, false).expect("CPU allocation")
    }
}

fn dense<const I: usize, const O: usize, E: NnFloat, B: Dim, T: Tape<E, Cpu>>(
    layer: &Dense<I, O, E, Cpu>,
    x: Tensor<(B, Const<I>), E, Cpu>,
    mut tape: T,
    input_grad: bool,
) -> Result<Tensor<(B, Const<O>), E, Cpu, T>, CpuError> {
    let batch = x.shape().0;
    let b = batch.size();
    // Large layers copy their input and their weight out of dfdx on two threads at once (1.6 MB
    // of weight and 0.8 MB of input at 3136 -> 128, batch 64); small ones stay on this thread.
    let ((x, xs), (ws, wt)) = if b * I + O * I >= super::kernels::PARALLEL_COPIES {
        // `weight_and_transpose` reads this thread's reuse scope: it runs here, as rayon runs
        // the first closure of a join on the calling thread.
        let (weights, input) = rayon::join(|| weight_and_transpose(&layer.weight, (O, I)), || take_contiguous(x));
        (input?, weights?)
    } else {
        (take_contiguous(x)?, weight_and_transpose(&layer.weight, (O, I))?)
    };
    let bias = weight_values(&layer.bias, None)?;
    let mut out = Vec::with_capacity(b * O);
    for _ in 0..b {
        out.extend_from_slice(&bias);
    }
    // out (b x O) += x (b x I) · W^T (I x O)
    let w_t = transposed_view((&ws, wt.as_deref().map(|v| v.as_slice())), (O, I), b);
    matmul((b, I, O), Mat::rows(&xs, I), w_t, &mut out, true, threads());
    let out = x.device().try_tensor_from_vec(out, (batch, Const::<O>))?;
    if T::OWNS_TAPE {
        let (x_g, w_g, b_g, out_g) = (x.ghost(), layer.weight.ghost(), layer.bias.ghost(), out.ghost());
        let weight_grad = !super::freeze::parameters_frozen();
        tape.add_backward_op(move |grads| {
            let dy = raw_grad!(grads, &out_g);
            // SAFETY: distinct tensors' gradients, all allocated here; `grads` outlives them.
            let dy = unsafe { dy.slice() };
            // dW (O x I) += dY^T (O x b) · x (b x I), db += the rows of dY
            let weight_grads = |dw: &mut [E], db: &mut [E], threads: usize| {
                matmul((O, b, I), Mat::rows_t(dy, O), Mat::rows(&xs, I), dw, true, threads);
                for row in dy.chunks_exact(O) {
                    db.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
                }
            };
            // dX (b x I) += dY (b x O) · W (O x I)
            let input_grads = |dx: &mut [E], threads: usize| {
                matmul((b, O, I), Mat::rows(dy, O), Mat::rows(&ws, I), dx, true, threads)
            };
            let wgrads = if weight_grad {
                let (dw, db) = (raw_grad!(grads, &w_g), raw_grad!(grads, &b_g));
                // SAFETY: as above.
                Some(unsafe { (dw.slice(), db.slice()) })
            } else {
                None
            };
            match wgrads {
                // Two large products run side by side, one thread each (the same sums as on
                // more threads), the input's gradient buffer zeroed beside the first.
                Some((dw, db)) if input_grad && threads() >= 2 && b * O * I >= SIDE_BY_SIDE_MACS => {
                    let (dx_done, ()) = rayon::join(
                        || -> Result<(), CpuError> {
                            let dx = raw_grad!(grads, &x_g);
                            // SAFETY: as above.
                            input_grads(unsafe { dx.slice() }, 1);
                            Ok(())
                        },
                        || weight_grads(dw, db, 1),
                    );
                    dx_done?;
                }
                wgrads => {
                    if let Some((dw, db)) = wgrads {
                        weight_grads(dw, db, threads());
                    }
                    if input_grad {
                        let dx = raw_grad!(grads, &x_g);
                        // SAFETY: as above.
                        input_grads(unsafe { dx.slice() }, threads());
                    }
                }
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// A fully connected layer for data inputs whose width is known only at run time, up to
/// `MAX_I`: `y = x W[..width] + b` for `x` of shape `(batch, width)`.
///
/// dfdx modules (and so optimizers and checkpoints) need constant shapes, so the weight is
/// stored for `MAX_I` inputs, input-major (`(MAX_I, O)`), and a forward pass of width `w` uses
/// its first `w` rows; the others get zero gradients and stay as they are. Built for glimpse
/// sensors whose size is a setting. Call [`DenseUpTo::init_width`] once the width is known, to
/// initialise as `torch.nn.Linear(width, O)` does.
#[derive(Debug, Clone)]
pub struct DenseUpTo<const MAX_I: usize, const O: usize, E: Dtype, D: Storage<E>> {
    /// Weight matrix, shape `(MAX_I, O)`: row `i` holds input `i`'s weights.
    pub weight: Tensor<Rank2<MAX_I, O>, E, D>,
    /// Bias vector, shape `(O,)`.
    pub bias: Tensor<Rank1<O>, E, D>,
}

impl<const MAX_I: usize, const O: usize, E: NnFloat> BuildOnDevice<Cpu, E> for builder::DenseUpTo<MAX_I, O>
where
    Cpu: Device<E>,
{
    type Built = DenseUpTo<MAX_I, O, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const MAX_I: usize, const O: usize, E: Dtype, D: Storage<E>> NonMutableModule for DenseUpTo<MAX_I, O, E, D> {}

impl<const MAX_I: usize, const O: usize, E: NnFloat> TensorCollection<E, Cpu> for DenseUpTo<MAX_I, O, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = DenseUpTo<MAX_I, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, MAX_I)),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, MAX_I)),
                ),
            ),
            |(weight, bias)| DenseUpTo { weight, bias },
        )
    }
}

impl<const MAX_I: usize, const O: usize, E: NnFloat> DenseUpTo<MAX_I, O, E, Cpu>
where
    Cpu: Device<E>,
{
    /// Re-initialises for inputs of `width`: the first `width` weight rows and the bias uniform
    /// in ±1/sqrt(width) (`torch.nn.Linear`'s init), the other rows zero.
    ///
    /// # Panics
    /// If `width` is 0 or more than `MAX_I`.
    pub fn init_width(&mut self, width: usize, rng: &mut impl rand::Rng) {
        assert!((1..=MAX_I).contains(&width), "width {width} is not in 1..={MAX_I}");
        let bound = 1.0 / (width as f64).sqrt();
        let mut draw = |n: usize| -> Vec<E> {
            (0..n)
                .map(|_| <E as num_traits::NumCast>::from(rng.gen_range(-bound..bound)).expect("f64 converts"))
                .collect()
        };
        let mut weight = draw(width * O);
        weight.resize(MAX_I * O, E::zero());
        self.weight.copy_from(&weight);
        self.bias.copy_from(&draw(O));
    }

    /// The forward pass for a data input of `width ≤ MAX_I` columns (no gradient flows to `x`);
    /// `tape` records the parameters' gradients.
    ///
    /// # Panics
    /// If `x` is wider than `MAX_I`.
    pub fn forward_data<B: Dim, T: Tape<E, Cpu>>(
        &self,
        x: Tensor<(B, usize), E, Cpu>,
        tape: T,
    ) -> Tensor<(B, Const<O>), E, Cpu, T> {
        dense_up_to(self, x, tape)
    }
}

fn dense_up_to<const MAX_I: usize, const O: usize, E: NnFloat, B: Dim, T: Tape<E, Cpu>>(
    layer: &DenseUpTo<MAX_I, O, E, Cpu>,
    x: Tensor<(B, usize), E, Cpu>,
    mut tape: T,
) -> Tensor<(B, Const<O>), E, Cpu, T> {
    let (batch, width) = *x.shape();
    assert!(width <= MAX_I, "input width {width} is more than the layer's {MAX_I}");
    let b = batch.size();
    let xs = tensor_vec(&x).expect("CPU allocation");
    // The rows past `width` are never read.
    let ws = weight_values(&layer.weight, None).expect("CPU allocation");
    let bias = weight_values(&layer.bias, None).expect("CPU allocation");
    let mut out = Vec::with_capacity(b * O);
    for _ in 0..b {
        out.extend_from_slice(&bias);
    }
    // out (b x O) += x (b x width) · W[..width] (width x O)
    matmul((b, width, O), Mat::rows(&xs, width), Mat::rows(&ws, O), &mut out, true, threads());
    let out = x.device().tensor_from_vec(out, (batch, Const::<O>));
    if T::OWNS_TAPE && !super::freeze::parameters_frozen() {
        let (w_g, b_g, out_g) = (layer.weight.ghost(), layer.bias.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy = raw_grad!(grads, &out_g);
            let (dw, db) = (raw_grad!(grads, &w_g), raw_grad!(grads, &b_g));
            // SAFETY: distinct tensors' gradients, all allocated here; `grads` outlives them.
            let (dy, dw, db) = unsafe { (dy.slice(), dw.slice(), db.slice()) };
            // dW[..width] (width x O) += x^T (width x b) · dY (b x O)
            matmul((width, b, O), Mat::rows_t(&xs, width), Mat::rows(dy, O), &mut dw[..width * O], true, threads());
            for row in dy.chunks_exact(O) {
                db.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}
