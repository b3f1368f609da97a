//! Transposed 2d convolution (`ConvTrans2D`), the gradient of a convolution used as a layer.

use dfdx::nn::{BuildModule, BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection, TensorOptions};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::conv::{direct_conv, direct_forward_add, direct_input_grad, direct_weight_grad, fill_fan_in_uniform};
use super::kernels::{
    col2im_add, im2col, matmul, raw_grad, sum, take_contiguous, taps, tensor_vec, threads, Geometry, Mat, NnFloat,
};

/// Builder of [`ConvTrans2D`](super::ConvTrans2D).
pub mod builder {
    /// Builder of [`super::ConvTrans2D`]: `I` input channels, `O` output channels, `K×K` kernel,
    /// stride `S`, padding `P`, output padding `OP` (< `S`).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ConvTrans2D<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize = 1,
        const P: usize = 0,
        const OP: usize = 0,
    >;
}

/// A transposed 2d convolution with bias, like `torch.nn.ConvTranspose2d`.
///
/// Output size `out = (in - 1) * S - 2P + K + OP`, e.g. `K=4, S=2, P=1` doubles the size.
#[derive(Debug, Clone)]
pub struct ConvTrans2D<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const OP: usize,
    E: Dtype,
    D: Storage<E>,
> {
    /// Kernel, shape `(I, O, K, K)` as in PyTorch.
    pub weight: Tensor<Rank4<I, O, K, K>, E, D>,
    /// Bias, one per output channel.
    pub bias: Tensor<Rank1<O>, E, D>,
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const OP: usize, E: NnFloat>
    BuildOnDevice<Cpu, E> for builder::ConvTrans2D<I, O, K, S, P, OP>
where
    Cpu: Device<E>,
{
    type Built = ConvTrans2D<I, O, K, S, P, OP, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const OP: usize, E: NnFloat>
    TensorCollection<E, Cpu> for ConvTrans2D<I, O, K, S, P, OP, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ConvTrans2D<I, O, K, S, P, OP, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // PyTorch computes fan-in of a transposed conv from weight dim 1 (= O) times K*K.
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, O * K * K)),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, O * K * K)),
                ),
            ),
            |(weight, bias)| ConvTrans2D { weight, bias },
        )
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const OP: usize, E: Dtype, D>
    NonMutableModule for ConvTrans2D<I, O, K, S, P, OP, E, D>
where
    D: Storage<E>,
{
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const OP: usize,
        E,
        B,
        H,
        W,
        T,
    > Module<Tensor<(B, Const<I>, H, W), E, Cpu, T>> for ConvTrans2D<I, O, K, S, P, OP, E, Cpu>
where
    E: NnFloat,
    B: Dim,
    H: Dim,
    W: Dim,
    T: Tape<E, Cpu>,
{
    type Output = Tensor<(B, Const<O>, usize, usize), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<I>, H, W), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        conv_trans2d(x, &self.weight, &self.bias, S, P, OP)
    }
}

/// Geometry of the convolution whose input gradient this transposed convolution computes:
/// its input is our `O × out_h × out_w` output, its output our `h × w` input.
fn transposed_geometry(o: usize, (h, w): (usize, usize), k: usize, s: usize, p: usize, op: usize) -> Geometry {
    assert!(s > 0 && op < s, "transposed convolution: output padding {op} must be smaller than stride {s}");
    assert!(h > 0 && w > 0, "transposed convolution: empty {h}x{w} input");
    let out = |n: usize| {
        ((n - 1) * s + k + op).checked_sub(2 * p).filter(|&v| v > 0).unwrap_or_else(|| {
            panic!("transposed convolution: padding {p} too large for a {n}-wide input with kernel {k}")
        })
    };
    Geometry { chans: o, h: out(h), w: out(w), stride: s, pad: p, out_h: h, out_w: w }
}

/// Transposed convolution op on the tape: `x` `(B, I, H, W)`, kernel `(I, O, K, K)`.
#[allow(clippy::type_complexity)]
pub(crate) fn conv_trans2d<const I: usize, const O: usize, const K: usize, E, B, H, W, T>(
    x: Tensor<(B, Const<I>, H, W), E, Cpu, T>,
    weight: &Tensor<Rank4<I, O, K, K>, E, Cpu>,
    bias: &Tensor<Rank1<O>, E, Cpu>,
    stride: usize,
    pad: usize,
    out_pad: usize,
) -> Result<Tensor<(B, Const<O>, usize, usize), E, Cpu, T>, CpuError>
where
    E: NnFloat,
    B: Dim,
    H: Dim,
    W: Dim,
    T: Tape<E, Cpu>,
{
    let (b, _, h, w) = *x.shape();
    let g = transposed_geometry(O, (h.size(), w.size()), K, stride, pad, out_pad);
    let all_taps = taps(K, |_, _| true);
    let (x, xs) = take_contiguous(x)?;
    let (x, mut tape) = x.split_tape();
    let wm = tensor_vec(weight)?;
    let mut out = vec![E::zero(); b.size() * g.in_len()];
    // This is the input gradient of a convolution with `I` outputs: the direct kernels take it
    // where they take that convolution.
    let direct = direct_conv::<E>(&g, I, K, K * K);
    if direct {
        let bias = tensor_vec(bias)?;
        for (c, plane) in out.chunks_mut(g.h * g.w).enumerate() {
            plane.fill(bias[c % O]);
        }
        direct_input_grad(&g, K, &wm, &xs, &mut out);
    } else {
        forward(&g, &all_taps, &xs, &wm, &tensor_vec(bias)?, &mut out);
    }
    let out = x.device().try_tensor_from_vec(out, (b, Const::<O>, g.h, g.w))?;
    if T::OWNS_TAPE {
        let (x_g, w_g, b_g, out_g) = (x.ghost(), weight.ghost(), bias.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let (gout, dx, dw, db) =
                (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g), raw_grad!(grads, &w_g), raw_grad!(grads, &b_g));
            // SAFETY: four distinct tensor ids; `grads` outlives this closure body.
            let (gout, dx, dw, db) = unsafe { (gout.slice(), dx.slice(), dw.slice(), db.slice()) };
            if direct {
                direct_forward_add(&g, K, &wm, gout, dx);
                let (dwv, dbv) = direct_weight_grad(&g, K, I, gout, &xs);
                dw.iter_mut().zip(dwv).for_each(|(a, b)| *a += b);
                db.iter_mut().zip(dbv).for_each(|(a, b)| *a += b);
            } else {
                backward(&g, &all_taps, &xs, &wm, gout, dx, dw, db);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// `out[b] = col2im(wm^T · x[b]) + bias`, parallel over images; `wm` is `I × (O*K*K)`.
fn forward<E: NnFloat>(g: &Geometry, taps: &[(usize, usize)], x: &[E], wm: &[E], bias: &[E], out: &mut [E]) {
    let (o, okk, hw) = (bias.len(), g.chans * taps.len(), g.out_hw());
    let i = wm.len() / okk;
    let one_image = |col: &mut Vec<E>, x_b: &[E], out_b: &mut [E], threads: usize| {
        matmul((okk, i, hw), Mat::rows_t(wm, okk), Mat::rows(x_b, hw), col, false, threads);
        let plane = g.h * g.w;
        for (p, &b) in out_b.chunks_mut(plane).zip(bias) {
            p.fill(b);
        }
        col2im_add(g, taps, col, out_b);
    };
    let batch = out.len() / (o * g.h * g.w).max(1);
    if batch >= threads() {
        out.par_chunks_mut(g.in_len())
            .zip(x.par_chunks(i * hw))
            .for_each_init(|| vec![E::zero(); okk * hw], |col, (out_b, x_b)| one_image(col, x_b, out_b, 1));
    } else {
        let mut col = vec![E::zero(); okk * hw];
        for (out_b, x_b) in out.chunks_mut(g.in_len()).zip(x.chunks(i * hw)) {
            one_image(&mut col, x_b, out_b, threads());
        }
    }
}

/// Backward of [`forward`]: adds into `dx`, `dw` (`I × O*K*K`) and `db`.
#[allow(clippy::too_many_arguments)]
fn backward<E: NnFloat>(
    g: &Geometry,
    taps: &[(usize, usize)],
    x: &[E],
    wm: &[E],
    gout: &[E],
    dx: &mut [E],
    dw: &mut [E],
    db: &mut [E],
) {
    let (o, okk, hw) = (db.len(), g.chans * taps.len(), g.out_hw());
    let (i, out_len) = (wm.len() / okk, g.in_len());
    let batch = gout.len() / out_len.max(1);
    let groups = threads().min(batch).max(1);
    let inner_threads = if groups == 1 { threads() } else { 1 };
    let per_group = batch.div_ceil(groups).max(1);
    let partials: Vec<(Vec<E>, Vec<E>)> = dx
        .par_chunks_mut(per_group * i * hw)
        .zip(x.par_chunks(per_group * i * hw))
        .zip(gout.par_chunks(per_group * out_len))
        .map(|((dx_c, x_c), g_c)| {
            let mut gcol = vec![E::zero(); okk * hw];
            let mut dwp = vec![E::zero(); i * okk];
            let mut dbp = vec![E::zero(); o];
            for ((dx_b, x_b), g_b) in dx_c.chunks_mut(i * hw).zip(x_c.chunks(i * hw)).zip(g_c.chunks(out_len)) {
                im2col(g, taps, g_b, &mut gcol);
                matmul((i, okk, hw), Mat::rows(wm, okk), Mat::rows(&gcol, hw), dx_b, true, inner_threads);
                matmul((i, hw, okk), Mat::rows(x_b, hw), Mat::rows_t(&gcol, hw), &mut dwp, true, inner_threads);
                for (d, plane) in dbp.iter_mut().zip(g_b.chunks(g.h * g.w)) {
                    *d += sum(plane);
                }
            }
            (dwp, dbp)
        })
        .collect();
    for (pw, pb) in partials {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
}
