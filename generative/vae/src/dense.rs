//! [`Dense`]: a fully connected layer with the same parameters as dfdx's `Linear`, computed by the
//! `gemm` crate 0.19, whose AVX-512 kernels (feature `x86-v4`, chosen at run time) are 2-3x faster
//! on this batch size than the gemm 0.15 kernels inside dfdx 0.13's matmul.
//!
//! The forward pass and its backward pass (weight, bias and input gradients) are one op each on the
//! tape. [`Dense::forward_data`] skips the input gradient, which a first layer fed with data never needs.

use dfdx::nn::{BuildOnDevice, Module, NonMutableModule, TensorCollection, TensorOptions};
use dfdx::prelude::*;
use glimpse::nn::fill_fan_in_uniform;

/// Device-free description of [`Dense`], for module tuples built with `dev.build_module`.
pub mod builder {
    /// A fully connected layer from `I` to `O` features.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Dense<const I: usize, const O: usize>;
}

impl<const I: usize, const O: usize> BuildOnDevice<Cpu, f32> for builder::Dense<I, O> {
    type Built = Dense<I, O, f32, Cpu>;
}

/// y = x W^T + b for a batch x of shape `(batch, I)`. Parameters and their initialisation
/// (uniform in ±1/sqrt(I), as PyTorch's `nn.Linear`) are those of dfdx's `Linear`, so checkpoints
/// use the same names (`weight` of shape `(O, I)`, `bias`).
#[derive(Debug, Clone)]
pub struct Dense<const I: usize, const O: usize, E: Dtype, D: Storage<E>> {
    /// Weight matrix, shape `(O, I)`.
    pub weight: Tensor<Rank2<O, I>, E, D>,
    /// Bias vector, shape `(O,)`.
    pub bias: Tensor<Rank1<O>, E, D>,
}

impl<const I: usize, const O: usize, E: Dtype, D: Storage<E>> NonMutableModule for Dense<I, O, E, D> {}

impl<const I: usize, const O: usize, E, D> TensorCollection<E, D> for Dense<I, O, E, D>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Dense<I, O, E2, D2>;

    fn iter_tensors<V: dfdx::nn::ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
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

impl<const I: usize, const O: usize, B: Dim, T: Tape<f32, Cpu>> Module<Tensor<(B, Const<I>), f32, Cpu, T>>
    for Dense<I, O, f32, Cpu>
{
    type Output = Tensor<(B, Const<O>), f32, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<I>), f32, Cpu, T>) -> Result<Self::Output, CpuError> {
        let (x, tape) = x.split_tape();
        dense(self, x, tape, true)
    }
}

impl<const I: usize, const O: usize> Dense<I, O, f32, Cpu> {
    /// The forward pass for a data input (no gradient flows to `x`); `tape` records the parameters' gradients.
    pub fn forward_data<B: Dim, T: Tape<f32, Cpu>>(
        &self,
        x: Tensor<(B, Const<I>), f32, Cpu>,
        tape: T,
    ) -> Tensor<(B, Const<O>), f32, Cpu, T> {
        dense(self, x, tape, false).expect("CPU allocation")
    }
}

/// Copies a tensor's values out in row-major order.
fn values<S: Shape>(t: &Tensor<S, f32, Cpu>) -> Result<Vec<f32>, CpuError> {
    let t = t.clone().try_contiguous()?;
    let mut buf = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut buf);
    Ok(buf)
}

/// `dst (m x n, row-major, row stride rs_dst) (+)= lhs (m x k) * rhs (k x n)`, strides given as (row, col).
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    // SAFETY: the asserted lengths cover every index the strides reach (row-major m x n, m x k, k x n).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

fn dense<const I: usize, const O: usize, B: Dim, T: Tape<f32, Cpu>>(
    layer: &Dense<I, O, f32, Cpu>,
    x: Tensor<(B, Const<I>), f32, Cpu>,
    mut tape: T,
    input_grad: bool,
) -> Result<Tensor<(B, Const<O>), f32, Cpu, T>, CpuError> {
    let batch = x.shape().0;
    let b = batch.size();
    let xs = values(&x)?;
    let ws = values(&layer.weight)?;
    let bias = values(&layer.bias)?;
    let mut out = Vec::with_capacity(b * O);
    for _ in 0..b {
        out.extend_from_slice(&bias);
    }
    // out (b x O) += x (b x I) * W^T (I x O); W^T[i, o] = W[o * I + i].
    matmul((b, O, I), &mut out, true, &xs, (I, 1), &ws, (1, I));
    let out = x.device().try_tensor_from_vec(out, (batch, Const::<O>))?;
    if T::OWNS_TAPE {
        let (x_g, w_g, b_g, out_g) = (x.ghost(), layer.weight.ghost(), layer.bias.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let dy: Vec<f32> = grads.get_or_alloc_mut(&out_g)?.to_vec();
            // dW (O x I) += dY^T (O x b) * x (b x I)
            matmul((O, I, b), grads.get_or_alloc_mut(&w_g)?, true, &dy, (1, O), &xs, (I, 1));
            let db = grads.get_or_alloc_mut(&b_g)?;
            for row in dy.chunks_exact(O) {
                db.iter_mut().zip(row).for_each(|(g, d)| *g += d);
            }
            if input_grad {
                // dX (b x I) += dY (b x O) * W (O x I)
                matmul((b, I, O), grads.get_or_alloc_mut(&x_g)?, true, &dy, (O, 1), &ws, (I, 1));
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
