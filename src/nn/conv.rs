//! 2d convolution (`Conv2D`) and masked convolution for PixelCNN (`MaskedConv2D`).

use dfdx::nn::{BuildModule, BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection, TensorOptions};
use dfdx::prelude::*;
use rand_distr::Uniform;
use rayon::prelude::*;
use std::sync::Arc;

use super::kernels::{
    col2im_rows_add, col_block_rows, group_images, im2col_rows, matmul, merge_phases_add, raw_grad, split_phases, sum,
    tap_sources, taps, tensor_vec, threads, Geometry, Mat, NnFloat,
};
use super::reuse::recycled_copy;

/// Builders (device- and dtype-free descriptions) of the convolution layers.
pub mod builder {
    use std::marker::PhantomData;

    /// Builder of [`super::Conv2D`]: `I` input channels, `O` output channels, `K×K` kernel,
    /// stride `S`, zero padding `P`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Conv2D<const I: usize, const O: usize, const K: usize, const S: usize = 1, const P: usize = 0>;

    /// Builder of [`super::MaskedConv2D`] with mask kind `M` ([`super::MaskA`] or [`super::MaskB`]).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct MaskedConv2D<const I: usize, const O: usize, const K: usize, M>(PhantomData<M>);
}

/// Fills `t` from Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for linear, conv and
/// recurrent layers (weights and biases alike).
pub fn fill_fan_in_uniform<S: Shape, E, D>(t: &mut Tensor<S, E, D>, fan_in: usize) -> Result<(), D::Err>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    let b = E::one() / E::from(fan_in.max(1)).unwrap().sqrt();
    t.try_fill_with_distr(Uniform::new(-b, b))
}

/// A 2d convolution with bias on `(batch, I, height, width)` images, like `torch.nn.Conv2d`.
///
/// Spatial sizes are runtime values: the output is `(batch, O, out_h, out_w)` with
/// `out = (in + 2P - K) / S + 1`.
#[derive(Debug, Clone)]
pub struct Conv2D<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    E: Dtype,
    D: Storage<E>,
> {
    /// Kernel, shape `(O, I, K, K)` as in PyTorch.
    pub weight: Tensor<Rank4<O, I, K, K>, E, D>,
    /// Bias, one per output channel.
    pub bias: Tensor<Rank1<O>, E, D>,
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, E: NnFloat> BuildOnDevice<Cpu, E>
    for builder::Conv2D<I, O, K, S, P>
where
    Cpu: Device<E>,
{
    type Built = Conv2D<I, O, K, S, P, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, E: NnFloat>
    TensorCollection<E, Cpu> for Conv2D<I, O, K, S, P, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2D<I, O, K, S, P, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, I * K * K)),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, I * K * K)),
                ),
            ),
            |(weight, bias)| Conv2D { weight, bias },
        )
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, E: Dtype, D: Storage<E>>
    NonMutableModule for Conv2D<I, O, K, S, P, E, D>
{
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, E, B, H, W, T>
    Module<Tensor<(B, Const<I>, H, W), E, Cpu, T>> for Conv2D<I, O, K, S, P, E, Cpu>
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
        conv2d(x, &self.weight, &self.bias, S, P, &taps(K, |_, _| true))
    }
}

/// Which taps of a `K×K` kernel a masked convolution keeps (kernel row `i`, column `j`, the
/// centre at `(K/2, K/2)`).
pub trait MaskKind: Default + Clone + Copy + std::fmt::Debug + Send + Sync + 'static {
    /// Whether tap `(i, j)` of a `k×k` kernel is kept.
    fn keeps(k: usize, i: usize, j: usize) -> bool;

    /// The kept taps in raster order.
    fn taps(k: usize) -> Vec<(usize, usize)> {
        taps(k, |i, j| Self::keeps(k, i, j))
    }
}

/// Defines a mask kind from its predicate on `(c, i, j)`, `c` the centre index.
macro_rules! mask_kind {
    ($(#[$doc:meta])* $name:ident, |$c:ident, $i:ident, $j:ident| $keep:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;
        impl MaskKind for $name {
            fn keeps(k: usize, $i: usize, $j: usize) -> bool {
                let $c = k / 2;
                $keep
            }
        }
    };
}

mask_kind!(
    /// PixelCNN mask type A (first layer): the rows above the centre and the centre row left of it.
    MaskA, |c, i, j| i < c || (i == c && j < c)
);
mask_kind!(
    /// PixelCNN mask type B (later layers): mask A plus the centre itself.
    MaskB, |c, i, j| i < c || (i == c && j <= c)
);
mask_kind!(
    /// Gated PixelCNN's vertical stack: the rows above the centre and the centre row, every column
    /// (its output reaches the horizontal stack only shifted down a row, see [`RowAbove`]).
    VerticalStack, |c, i, _j| i <= c
);
mask_kind!(
    /// Gated PixelCNN's horizontal stack, first layer: the centre row left of the centre.
    HorizontalA, |c, i, j| i == c && j < c
);
mask_kind!(
    /// Gated PixelCNN's horizontal stack, later layers: the centre row up to the centre.
    HorizontalB, |c, i, j| i == c && j <= c
);
mask_kind!(
    /// One tap, the pixel above the centre: a 1×1 convolution of the map shifted down a row.
    RowAbove, |c, i, j| i + 1 == c && j == c
);
mask_kind!(
    /// The whole centre row: a 1-d convolution along rows (PixelRNN's state-to-state kernel).
    CentreRow, |c, i, _j| i == c
);

/// Kernel taps kept by a PixelCNN mask of size `k` (rows above the centre, and the centre row
/// left of the centre, plus the centre itself if `include_centre`).
pub fn pixelcnn_mask_taps(k: usize, include_centre: bool) -> Vec<(usize, usize)> {
    if include_centre {
        MaskB::taps(k)
    } else {
        MaskA::taps(k)
    }
}

/// A masked convolution (PixelCNN, Gated PixelCNN, PixelRNN): stride 1, "same" padding `K/2`
/// (odd `K`), the taps of mask kind `M`.
///
/// Masked taps are never read nor written: they have exactly zero gradient, and the work is
/// proportional to the kept taps only.
#[derive(Debug, Clone)]
pub struct MaskedConv2D<const I: usize, const O: usize, const K: usize, M, E: Dtype, D: Storage<E>> {
    /// Kernel, shape `(O, I, K, K)`; masked taps are ignored (and stay at their initial value).
    pub weight: Tensor<Rank4<O, I, K, K>, E, D>,
    /// Bias, one per output channel.
    pub bias: Tensor<Rank1<O>, E, D>,
    mask: std::marker::PhantomData<M>,
}

impl<const I: usize, const O: usize, const K: usize, M: MaskKind, E: NnFloat> BuildOnDevice<Cpu, E>
    for builder::MaskedConv2D<I, O, K, M>
where
    Cpu: Device<E>,
{
    type Built = MaskedConv2D<I, O, K, M, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const O: usize, const K: usize, M: MaskKind, E: NnFloat> TensorCollection<E, Cpu>
    for MaskedConv2D<I, O, K, M, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = MaskedConv2D<I, O, K, M, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, I * M::taps(K).len())),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| fill_fan_in_uniform(t, I * M::taps(K).len())),
                ),
            ),
            |(weight, bias)| MaskedConv2D { weight, bias, mask: Default::default() },
        )
    }
}

impl<const I: usize, const O: usize, const K: usize, M, E: Dtype, D: Storage<E>> NonMutableModule
    for MaskedConv2D<I, O, K, M, E, D>
{
}

impl<const I: usize, const O: usize, const K: usize, M, E, B, H, W, T> Module<Tensor<(B, Const<I>, H, W), E, Cpu, T>>
    for MaskedConv2D<I, O, K, M, E, Cpu>
where
    M: MaskKind,
    E: NnFloat,
    B: Dim,
    H: Dim,
    W: Dim,
    T: Tape<E, Cpu>,
{
    type Output = Tensor<(B, Const<O>, usize, usize), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<I>, H, W), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        assert!(K % 2 == 1, "MaskedConv2D needs an odd kernel size, got {K}");
        conv2d(x, &self.weight, &self.bias, 1, K / 2, &M::taps(K))
    }
}

/// Weight `(O, I, K, K)` restricted to `taps`, as a row-major `O × (I*T)` matrix.
pub(crate) fn gather_taps<E: NnFloat>(w: &[E], (o, i, k): (usize, usize, usize), taps: &[(usize, usize)]) -> Vec<E> {
    let mut wm = Vec::with_capacity(o * i * taps.len());
    for oc in 0..o {
        for ic in 0..i {
            let base = (oc * i + ic) * k * k;
            wm.extend(taps.iter().map(|&(ki, kj)| w[base + ki * k + kj]));
        }
    }
    wm
}

/// Adds the `O × (I*T)` matrix `dwm` into the `(O, I, K, K)` gradient at the given taps.
pub(crate) fn scatter_taps<E: NnFloat>(
    dwm: &[E],
    (o, i, k): (usize, usize, usize),
    taps: &[(usize, usize)],
    dw: &mut [E],
) {
    let t = taps.len();
    for oc in 0..o {
        for ic in 0..i {
            let base = (oc * i + ic) * k * k;
            let row = &dwm[(oc * i + ic) * t..][..t];
            for (&(ki, kj), v) in taps.iter().zip(row) {
                dw[base + ki * k + kj] += *v;
            }
        }
    }
}

/// Convolution of a batch: `out[b] += wm · im2col(x[b])`, parallel over images; `out` holds the
/// bias of each output channel on entry.
///
/// The im2col matrix is built and multiplied in blocks of rows that stay in cache.
pub(crate) fn conv_forward<E: NnFloat>(
    g: &Geometry,
    taps: &[(usize, usize)],
    x: &[E],
    wm: &[E],
    bias: &[E],
    out: &mut [E],
) {
    let (o, n, ct) = (bias.len(), g.out_hw(), g.chans * taps.len());
    let batch = out.len() / (o * n).max(1);
    let per_group = group_images(n, batch);
    let block = col_block_rows(per_group * n, ct);
    let sources = tap_sources(g, taps);
    // `out` starts as the bias of each output channel (see `conv2d`); a group's product goes to
    // `acc` (O x images*n) and is added into each image's (O x n) block.
    let one_group = |(col, phases, acc): &mut (Vec<E>, Vec<E>, Vec<E>), x_g: &[E], out_g: &mut [E], threads| {
        let cols = out_g.len() / o;
        let srcs = phase_sources(g, x_g, phases);
        acc.resize(o * cols, E::zero());
        for r0 in (0..ct).step_by(block) {
            let rows = r0..(r0 + block).min(ct);
            col.resize(rows.len() * cols, E::zero());
            for (i, src) in srcs.chunks(srcs.len() / (cols / n)).enumerate() {
                im2col_rows(g, &sources, src, rows.clone(), &mut col[i * n..], cols);
            }
            let w = Mat { ptr: wm[r0..].as_ptr(), rs: ct, cs: 1 };
            matmul((o, rows.len(), cols), w, Mat::rows(col, cols), acc, r0 > 0, threads);
        }
        for (i, out_b) in out_g.chunks_mut(o * n).enumerate() {
            for (oc, dst) in out_b.chunks_mut(n).enumerate() {
                dst.iter_mut().zip(&acc[oc * cols + i * n..][..n]).for_each(|(d, &v)| *d += v);
            }
        }
    };
    let groups = batch.div_ceil(per_group);
    let (x_chunk, out_chunk) = (per_group * g.in_len(), per_group * o * n);
    if pointwise(g, taps, per_group) {
        // A 1x1 kernel reads each image as it lies: out_b += wm · x_b, no im2col copy.
        let inner = if batch >= threads() { 1 } else { threads() };
        out.par_chunks_mut(o * n).zip(x.par_chunks(g.in_len())).for_each(|(out_b, x_b)| {
            matmul((o, ct, n), Mat::rows(wm, ct), Mat::rows(x_b, n), out_b, true, inner);
        });
        return;
    }
    if groups >= threads() {
        out.par_chunks_mut(out_chunk).zip(x.par_chunks(x_chunk)).for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |scratch, (out_g, x_g)| one_group(scratch, x_g, out_g, 1),
        );
    } else {
        let mut scratch = (Vec::new(), Vec::new(), Vec::new());
        for (out_g, x_g) in out.chunks_mut(out_chunk).zip(x.chunks(x_chunk)) {
            one_group(&mut scratch, x_g, out_g, threads());
        }
    }
}

/// Whether a convolution is pointwise (a 1x1 kernel, stride 1, no padding) on one image per
/// group, so that each image is its own im2col matrix.
fn pointwise(g: &Geometry, taps: &[(usize, usize)], per_group: usize) -> bool {
    taps == [(0, 0)] && g.stride == 1 && g.pad == 0 && g.out_h == g.h && g.out_w == g.w && per_group == 1
}

/// The images of `x` (one after another) as [`im2col_rows`] reads them: `x` itself for stride
/// 1, else each image split into phases, one after another in `buf`.
fn phase_sources<'a, E: NnFloat>(g: &Geometry, x: &'a [E], buf: &'a mut Vec<E>) -> &'a [E] {
    if g.stride == 1 {
        return x;
    }
    let (images, len) = (x.len() / g.in_len(), g.phases_len());
    buf.resize(images * len, E::zero());
    for (x_b, dst) in x.chunks(g.in_len()).zip(buf.chunks_mut(len)) {
        split_phases(g, x_b, dst);
    }
    buf
}

/// Backward of [`conv_forward`]: adds into `dx`, and returns `(dwm, dbias)` for the batch when
/// `weight_grad` (else computes only `dx`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward<E: NnFloat>(
    g: &Geometry,
    taps: &[(usize, usize)],
    x: &[E],
    wm: &[E],
    gout: &[E],
    dx: &mut [E],
    o: usize,
    weight_grad: bool,
) -> Option<(Vec<E>, Vec<E>)> {
    let (n, ct, in_len) = (g.out_hw(), g.chans * taps.len(), g.in_len());
    let batch = gout.len() / (o * n).max(1);
    let per_group = group_images(n, batch);
    let block = col_block_rows(per_group * n, ct);
    let sources = tap_sources(g, taps);
    let parts = threads().min(batch.div_ceil(per_group)).max(1);
    let inner_threads = if parts == 1 { threads() } else { 1 };
    // Each part takes whole groups of images and sums its own weight gradient.
    let per_part = batch.div_ceil(parts).div_ceil(per_group).max(1) * per_group;
    let phased = g.stride > 1;
    let point = pointwise(g, taps, per_group);
    let partials: Vec<(Vec<E>, Vec<E>)> = dx
        .par_chunks_mut(per_part * in_len)
        .zip(x.par_chunks(per_part * in_len))
        .zip(gout.par_chunks(per_part * o * n))
        .map(|((dx_p, x_p), g_p)| {
            let (mut col, mut dcol, mut gt, mut phases, mut dphases) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // The weight gradient transposed (ct × O): its products read the im2col block as
            // it lies (row-major) and the small gout^T strided, which packs much faster than
            // reading the large im2col block transposed.
            let mut dwm_t = vec![E::zero(); if weight_grad { ct * o } else { 0 }];
            let mut db = vec![E::zero(); o];
            let groups = dx_p.chunks_mut(per_group * in_len).zip(x_p.chunks(per_group * in_len));
            if point {
                // A 1x1 kernel: each image is its own im2col matrix and dx its own col2im.
                let w_t = Mat { ptr: wm.as_ptr(), rs: 1, cs: ct };
                for ((dx_b, x_b), g_b) in groups.zip(g_p.chunks(o * n)) {
                    g_b.chunks(n).zip(&mut db).for_each(|(row, d)| *d += sum(row));
                    if weight_grad {
                        let (x_m, g_t) = (Mat::rows(x_b, n), Mat::rows_t(g_b, n));
                        matmul((ct, n, o), x_m, g_t, &mut dwm_t, true, inner_threads);
                    }
                    matmul((ct, o, n), w_t, Mat::rows(g_b, n), dx_b, true, inner_threads);
                }
                return (dwm_t, db);
            }
            for ((dx_g, x_g), g_g) in groups.zip(g_p.chunks(per_group * o * n)) {
                let (images, cols) = (x_g.len() / in_len, x_g.len() / in_len * n);
                let srcs = phase_sources(g, x_g, &mut phases);
                let src_len = srcs.len() / images;
                // The group's output gradient as one (O x images*n) matrix.
                gt.resize(o * cols, E::zero());
                for (i, g_b) in g_g.chunks(o * n).enumerate() {
                    for (oc, row) in g_b.chunks(n).enumerate() {
                        gt[oc * cols + i * n..][..n].copy_from_slice(row);
                        db[oc] += sum(row);
                    }
                }
                // With stride > 1 the input gradient is gathered by phase, then merged into dx.
                if phased {
                    dphases.clear();
                    dphases.resize(images * g.phases_len(), E::zero());
                }
                for r0 in (0..ct).step_by(block) {
                    let rows = r0..(r0 + block).min(ct);
                    let len = rows.len();
                    dcol.resize(len * cols, E::zero());
                    if weight_grad {
                        col.resize(len * cols, E::zero());
                        for (i, src) in srcs.chunks(src_len).enumerate() {
                            im2col_rows(g, &sources, src, rows.clone(), &mut col[i * n..], cols);
                        }
                    }
                    if weight_grad {
                        // dwm^T[rows, :] += col · gt^T
                        let (col_block, gt_t) = (Mat::rows(&col, cols), Mat::rows_t(&gt, cols));
                        matmul((len, cols, o), col_block, gt_t, &mut dwm_t[r0 * o..], true, inner_threads);
                    }
                    // dcol = wm[:, rows]^T · gt
                    let w_t = Mat { ptr: wm[r0..].as_ptr(), rs: 1, cs: ct };
                    matmul((len, o, cols), w_t, Mat::rows(&gt, cols), &mut dcol, false, inner_threads);
                    for i in 0..images {
                        let dst = match phased {
                            true => &mut dphases[i * g.phases_len()..][..g.phases_len()],
                            false => &mut dx_g[i * in_len..][..in_len],
                        };
                        col2im_rows_add(g, &sources, rows.clone(), &dcol[i * n..], cols, dst);
                    }
                }
                if phased {
                    for (dx_b, dp) in dx_g.chunks_mut(in_len).zip(dphases.chunks(g.phases_len())) {
                        merge_phases_add(g, dp, dx_b);
                    }
                }
            }
            (dwm_t, db)
        })
        .collect();
    if !weight_grad {
        return None;
    }
    // The parts' sums added in part order (as lying, ct x O), then transposed in tiles: adding
    // each part straight into the transpose wrote with a stride of ct values, which cost as much
    // as a sixth of a stride-2 convolution's backward pass.
    let mut parts = partials.into_iter();
    let (mut dwm_t, mut db) = parts.next().unwrap_or_else(|| (vec![E::zero(); ct * o], vec![E::zero(); o]));
    for (pw_t, pb) in parts {
        dwm_t.iter_mut().zip(pw_t).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    Some((super::reuse::transposed(&dwm_t, ct, o), db))
}

/// Convolution op on the tape: `x` `(B, I, H, W)` with kernel `weight` restricted to `taps`.
#[allow(clippy::type_complexity)]
pub(crate) fn conv2d<const I: usize, const O: usize, const K: usize, E, B, H, W, T>(
    x: Tensor<(B, Const<I>, H, W), E, Cpu, T>,
    weight: &Tensor<Rank4<O, I, K, K>, E, Cpu>,
    bias: &Tensor<Rank1<O>, E, Cpu>,
    stride: usize,
    pad: usize,
    taps: &[(usize, usize)],
) -> Result<Tensor<(B, Const<O>, usize, usize), E, Cpu, T>, CpuError>
where
    E: NnFloat,
    B: Dim,
    H: Dim,
    W: Dim,
    T: Tape<E, Cpu>,
{
    assert!(stride > 0, "convolution stride must be positive");
    let (b, _, h, w) = *x.shape();
    let g = Geometry::conv(I, (h.size(), w.size()), K, stride, pad);
    // The input stays until the backward pass: copied into a buffer of an earlier call when one is
    // free, not a freshly zeroed one (zeroing a 6 MB input took a twentieth of conv k3 s2).
    let x = x.try_contiguous()?;
    let xs = recycled_copy(&x.retaped::<NoneTape>())?;
    let (x, mut tape) = x.split_tape();
    let wm = gather_taps(&tensor_vec(weight)?, (O, I, K), taps);
    let bias_values = tensor_vec(bias)?;
    let direct = direct_conv::<E>(&g, O, K, taps.len());
    let weight_grad = T::OWNS_TAPE && !super::freeze::parameters_frozen();
    let out = if direct {
        // The direct kernel sets each image's planes to the bias itself, in parallel.
        direct_forward(&g, K, &wm, &bias_values, &xs)
    } else {
        let mut out = Vec::with_capacity(b.size() * O * g.out_hw());
        for _ in 0..b.size() {
            for &v in &bias_values {
                out.extend(std::iter::repeat_n(v, g.out_hw()));
            }
        }
        conv_forward(&g, taps, &xs, &wm, &bias_values, &mut out);
        out
    };
    let out = x.device().try_tensor_from_vec(out, (b, Const::<O>, g.out_h, g.out_w))?;
    if T::OWNS_TAPE {
        let (x_g, w_g, b_g, out_g) = (x.ghost(), weight.ghost(), bias.ghost(), out.ghost());
        let taps = taps.to_vec();
        // The direct backward pass reads the input only for the weight gradient.
        let xs = if direct && !weight_grad { Arc::new(Vec::new()) } else { xs };
        tape.add_backward_op(move |grads| {
            let gout = raw_grad!(grads, &out_g);
            // SAFETY: `grads` outlives this closure body; the other slices taken from it below
            // are of other tensors.
            let gout: &[E] = unsafe { gout.slice() };
            let grads_of_weights = if direct {
                // The input's gradient buffer is zeroed (by dfdx, on one thread) while the
                // weight gradient is computed beside it.
                let (input_grad, grads_of_weights) = rayon::join(
                    || -> Result<(), CpuError> {
                        let dx = raw_grad!(grads, &x_g);
                        // SAFETY: as above.
                        direct_input_grad(&g, K, &wm, gout, unsafe { dx.slice() });
                        Ok(())
                    },
                    || weight_grad.then(|| direct_weight_grad(&g, K, O, &xs, gout)),
                );
                input_grad?;
                grads_of_weights
            } else {
                let dx = raw_grad!(grads, &x_g);
                // SAFETY: as above.
                conv_backward(&g, &taps, &xs, &wm, gout, unsafe { dx.slice() }, O, weight_grad)
            };
            if let Some((dwm, dbias)) = grads_of_weights {
                let (dw, db) = (raw_grad!(grads, &w_g), raw_grad!(grads, &b_g));
                // SAFETY: as above.
                let (dw, db) = unsafe { (dw.slice(), db.slice()) };
                scatter_taps(&dwm, (O, I, K), &taps, dw);
                db.iter_mut().zip(dbias).for_each(|(a, b)| *a += b);
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

/// Whether [`super::conv_direct`] computes this convolution (f32 on AVX-512, every tap, channels
/// in multiples of 32, stride 2 or stride 1 with a kernel > 1×1, padding of at most one
/// position at each end of a row).
pub(crate) fn direct_conv<E: 'static>(g: &Geometry, o: usize, k: usize, taps: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::conv_direct::applies::<E>(g, o, k, taps)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, o, k, taps);
        false
    }
}

/// The values of an f32 slice of the generic float type (`E` is checked to be `f32`).
fn as_f32<E: 'static>(v: &[E]) -> &[f32] {
    assert!(std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>(), "direct convolution is f32 only");
    // SAFETY: E is f32 (checked above).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}

/// [`as_f32`] for a mutable slice.
fn as_f32_mut<E: 'static>(v: &mut [E]) -> &mut [f32] {
    assert!(std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>(), "direct convolution is f32 only");
    // SAFETY: E is f32 (checked above).
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) }
}

/// The direct forward pass for `E = f32` (only called when [`direct_conv`] holds): a new
/// vector, the convolution plus `bias`.
pub(crate) fn direct_forward<E: NnFloat>(g: &Geometry, k: usize, wm: &[E], bias: &[E], x: &[E]) -> Vec<E> {
    #[cfg(target_arch = "x86_64")]
    return from_f32(super::conv_direct::forward(g, k, as_f32(wm), as_f32(bias), as_f32(x)));
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no direct convolution off x86_64: {g:?} {k} {} {} {}", wm.len(), bias.len(), x.len());
}

/// The direct forward pass for `E = f32`, added into `out` (the input gradient of a transposed
/// convolution).
pub(crate) fn direct_forward_add<E: NnFloat>(g: &Geometry, k: usize, wm: &[E], x: &[E], out: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    super::conv_direct::forward_add(g, k, as_f32(wm), as_f32(x), as_f32_mut(out));
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no direct convolution off x86_64: {g:?} {k} {} {} {}", wm.len(), x.len(), out.len());
}

/// The direct input gradient (the transposed convolution) for `E = f32`: adds into `dx`.
pub(crate) fn direct_input_grad<E: NnFloat>(g: &Geometry, k: usize, wm: &[E], gout: &[E], dx: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    {
        super::kernels::count_kernel(super::kernels::KernelPath::DirectConv);
        super::conv_direct::input_grad(g, k, as_f32(wm), as_f32(gout), as_f32_mut(dx));
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no direct convolution off x86_64: {g:?} {k} {} {} {}", wm.len(), gout.len(), dx.len());
}

/// The direct weight and bias gradients for `E = f32`, `o` output channels, from the input `x`:
/// `(dW, db)`.
pub(crate) fn direct_weight_grad<E: NnFloat>(
    g: &Geometry,
    k: usize,
    o: usize,
    x: &[E],
    gout: &[E],
) -> (Vec<E>, Vec<E>) {
    #[cfg(target_arch = "x86_64")]
    {
        let (dw, db) = super::conv_direct::weight_grad_of(g, k, o, as_f32(x), as_f32(gout));
        (from_f32(dw), from_f32(db))
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no direct convolution off x86_64: {g:?} {k} {o} {} {}", x.len(), gout.len());
}

/// An f32 vector as a vector of `E = f32`.
#[cfg(target_arch = "x86_64")]
fn from_f32<E: 'static>(v: Vec<f32>) -> Vec<E> {
    assert!(std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>(), "direct convolution is f32 only");
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: E is f32 (checked above): same size, alignment and allocation.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity()) }
}
