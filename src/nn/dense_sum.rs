//! [`dense_sum_relu`]: `relu(first(x) + second(y))` for two [`Dense`] layers as one op, the
//! combining step of recurrent models (a glimpse network's "what" and "where", an RNN's input
//! and recurrent terms).
//!
//! Written as two layers, an add and a relu, it makes four tensors and four tape entries per
//! call; here the two products accumulate into one output that starts from both biases, the relu
//! is applied in place, and the backward pass masks the output gradient once and feeds both
//! layers from it.

use dfdx::prelude::*;

use super::dense::Dense;
use super::kernels::{matmul, raw_grad, take_contiguous, threads, Mat, NnFloat};
use super::reuse::{transposed_view, weight_and_transpose, weight_values};
use super::rnn::MergeTapes;

/// `relu(first(x) + second(y))`, with the gradients of both layers' weights and biases and of
/// both inputs; `x` and `y` may each be traced or not. Equal, up to rounding, to
/// `(first.forward(x) + second.forward(y)).relu()`. An all-zero `y` (a recurrent model's first
/// state) skips its two products that would only add zeros.
///
/// ```
/// use dfdx::prelude::*;
/// use glimpse::nn::{builders::Dense, dense_sum_relu};
/// let dev = Cpu::default();
/// let (a, b) = (dev.build_module::<Dense<3, 4>, f32>(), dev.build_module::<Dense<2, 4>, f32>());
/// let (x, y): (Tensor<Rank2<5, 3>, f32, Cpu>, Tensor<Rank2<5, 2>, f32, Cpu>) = (dev.sample_normal(), dev.sample_normal());
/// let fused = dense_sum_relu(&a, x.clone(), &b, y.clone()).unwrap();
/// let plain = (a.forward(x) + b.forward(y)).relu();
/// let gap = (fused - plain).abs().max::<Rank0, _>().array();
/// assert!(gap < 1e-6);
/// ```
#[allow(clippy::type_complexity)]
pub fn dense_sum_relu<const I1: usize, const I2: usize, const O: usize, E: NnFloat, B: Dim, Tx, Ty>(
    first: &Dense<I1, O, E, Cpu>,
    x: Tensor<(B, Const<I1>), E, Cpu, Tx>,
    second: &Dense<I2, O, E, Cpu>,
    y: Tensor<(B, Const<I2>), E, Cpu, Ty>,
) -> Result<Tensor<(B, Const<O>), E, Cpu, Tx::Output>, CpuError>
where
    Tx: Tape<E, Cpu> + MergeTapes<E, Ty>,
    Ty: Tape<E, Cpu>,
{
    let batch = x.shape().0;
    let b = batch.size();
    let (x, xs) = take_contiguous(x)?;
    let (y, ys) = take_contiguous(y)?;
    let (x, x_tape) = x.split_tape();
    let (y, y_tape) = y.split_tape();
    let mut tape = x_tape.merge_tapes(y_tape);
    let (w1, w1t) = weight_and_transpose(&first.weight, (O, I1))?;
    let (w2, w2t) = weight_and_transpose(&second.weight, (O, I2))?;
    let (b1, b2) = (weight_values(&first.bias, None)?, weight_values(&second.bias, None)?);
    let bias: Vec<E> = b1.iter().zip(b2.iter()).map(|(&p, &q)| p + q).collect();
    let mut out = Vec::with_capacity(b * O);
    for _ in 0..b {
        out.extend_from_slice(&bias);
    }
    // out (b x O) += x (b x I1) · W1^T + y (b x I2) · W2^T
    let w1_t = transposed_view((&w1, w1t.as_deref().map(|v| v.as_slice())), (O, I1), b);
    matmul((b, I1, O), Mat::rows(&xs, I1), w1_t, &mut out, true, threads());
    // A recurrent model's first step reads a zero state: its product adds nothing, forward or
    // to the weight's gradient, and is skipped.
    let y_zero = ys.iter().all(|&v| v == E::zero());
    if !y_zero {
        let w2_t = transposed_view((&w2, w2t.as_deref().map(|v| v.as_slice())), (O, I2), b);
        matmul((b, I2, O), Mat::rows(&ys, I2), w2_t, &mut out, true, threads());
    }
    let (zero, one) = (E::zero(), E::one());
    // The relu's derivative (1 where the sum is positive, else 0), then the relu in place.
    let active: Vec<E> = out.iter().map(|&v| if v > zero { one } else { zero }).collect();
    out.iter_mut().zip(&active).for_each(|(v, &a)| *v = if a > zero { *v } else { zero });
    let out = x.device().try_tensor_from_vec(out, (batch, Const::<O>))?;
    if <Tx::Output as Tape<E, Cpu>>::OWNS_TAPE {
        let weight_grad = !super::freeze::parameters_frozen();
        let (x_g, y_g, out_g) = (x.ghost(), y.ghost(), out.ghost());
        let (w1_g, b1_g, w2_g, b2_g) =
            (first.weight.ghost(), first.bias.ghost(), second.weight.ghost(), second.bias.ghost());
        tape.add_backward_op(move |grads| {
            let dy = raw_grad!(grads, &out_g);
            // SAFETY: the output's gradient, allocated here; no other slice of it is live.
            let dz: Vec<E> = unsafe { dy.slice() }.iter().zip(&active).map(|(&d, &a)| d * a).collect();
            // One layer at a time, so that no two live slices come from the same tensor even
            // when both layers, or both inputs, are one tensor.
            macro_rules! layer_backward {
                ($w_g:expr, $b_g:expr, $w:expr, $inputs:expr, $x_g:expr, $width:expr, $zero:expr) => {{
                    if weight_grad {
                        let dw = raw_grad!(grads, $w_g);
                        // SAFETY: the weight's gradient alone is borrowed while this slice lives.
                        let dw = unsafe { dw.slice() };
                        if !$zero {
                            // dW (O x I) += dZ^T (O x b) · x (b x I)
                            matmul(
                                (O, b, $width),
                                Mat::rows_t(&dz, O),
                                Mat::rows($inputs, $width),
                                dw,
                                true,
                                threads(),
                            );
                        }
                        let db = raw_grad!(grads, $b_g);
                        // SAFETY: as above, for the bias.
                        let db = unsafe { db.slice() };
                        for row in dz.chunks_exact(O) {
                            db.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
                        }
                    }
                    let dx = raw_grad!(grads, $x_g);
                    // SAFETY: as above, for the input.
                    let dx = unsafe { dx.slice() };
                    // dX (b x I) += dZ (b x O) · W (O x I)
                    matmul((b, O, $width), Mat::rows(&dz, O), Mat::rows($w, $width), dx, true, threads());
                }};
            }
            layer_backward!(&w1_g, &b1_g, &w1, &xs, &x_g, I1, false);
            layer_backward!(&w2_g, &b2_g, &w2, &ys, &y_g, I2, y_zero);
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
