//! The pre-activation residual bottleneck of PixelCNN (van den Oord et al. 2016, Figure 5) as one
//! op: `y = x + expand(relu(masked(relu(reduce(relu(x))))))`, a 1×1 convolution from `C` to `H`
//! channels, a masked `K×K` one, and a 1×1 back to `C`.
//!
//! As a tuple of seven dfdx ops every step allocated, zeroed and copied each intermediate map of
//! the whole batch (3 MB apiece for the MNIST PixelCNN), and each op ran after the last had left
//! the cache. Here each image goes through the whole block while its maps stay in the core's L2
//! cache, and the backward pass recomputes the cheap parts (the first ReLU and the unfolding)
//! instead of storing them. The forward values are those of the tuple, bit for bit.

use dfdx::nn::{BuildModule, BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::conv::{gather_taps, scatter_taps, Conv2D, MaskKind, MaskedConv2D};
use super::kernels::{
    col2im_rows_add, im2col_rows, matmul, raw_grad, sum, take_contiguous, tap_sources, tensor_vec, threads, Geometry,
    Mat, NnFloat, TapSource,
};

/// Builder of [`ResidualBottleneck`].
pub mod builder {
    /// Builder of [`super::ResidualBottleneck`]: `C` channels, an `H`-channel bottleneck, a
    /// `K×K` convolution masked by `M`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ResidualBottleneck<const C: usize, const H: usize, const K: usize, M>(std::marker::PhantomData<M>);
}

/// PixelCNN's residual block: `y = x + expand(relu(masked(relu(reduce(relu(x))))))` on
/// `(batch, C, height, width)` maps, computed image by image as one op.
///
/// Its tensors are named as those of the equivalent dfdx tuple
/// `Residual<(ReLU, Conv2D<C, H, 1>, ReLU, MaskedConv2D<H, H, K, M>, ReLU, Conv2D<H, C, 1>)>`
/// (`0.1.*`, `0.3.*`, `0.5.*`), so checkpoints of either load into the other.
#[derive(Debug, Clone)]
pub struct ResidualBottleneck<const C: usize, const H: usize, const K: usize, M, E: Dtype, D: Storage<E>> {
    /// The 1×1 convolution from `C` to `H` channels.
    pub reduce: Conv2D<C, H, 1, 1, 0, E, D>,
    /// The masked `K×K` convolution.
    pub masked: MaskedConv2D<H, H, K, M, E, D>,
    /// The 1×1 convolution from `H` back to `C` channels.
    pub expand: Conv2D<H, C, 1, 1, 0, E, D>,
}

impl<const C: usize, const H: usize, const K: usize, M: MaskKind, E: NnFloat> BuildOnDevice<Cpu, E>
    for builder::ResidualBottleneck<C, H, K, M>
where
    Cpu: Device<E>,
{
    type Built = ResidualBottleneck<C, H, K, M, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const C: usize, const H: usize, const K: usize, M: MaskKind, E: NnFloat> TensorCollection<E, Cpu>
    for ResidualBottleneck<C, H, K, M, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ResidualBottleneck<C, H, K, M, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("0.1", |s| &s.reduce, |s| &mut s.reduce),
                Self::module("0.3", |s| &s.masked, |s| &mut s.masked),
                Self::module("0.5", |s| &s.expand, |s| &mut s.expand),
            ),
            |(reduce, masked, expand)| ResidualBottleneck { reduce, masked, expand },
        )
    }
}

impl<const C: usize, const H: usize, const K: usize, M, E: Dtype, D: Storage<E>> NonMutableModule
    for ResidualBottleneck<C, H, K, M, E, D>
{
}

impl<const C: usize, const H: usize, const K: usize, M, E, B, Hd, Wd, T>
    Module<Tensor<(B, Const<C>, Hd, Wd), E, Cpu, T>> for ResidualBottleneck<C, H, K, M, E, Cpu>
where
    M: MaskKind,
    E: NnFloat,
    B: Dim,
    Hd: Dim,
    Wd: Dim,
    T: Tape<E, Cpu>,
{
    type Output = Tensor<(B, Const<C>, Hd, Wd), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<C>, Hd, Wd), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        assert!(K % 2 == 1, "ResidualBottleneck needs an odd kernel size, got {K}");
        let shape = *x.shape();
        let (b, n) = (shape.0.size(), shape.2.size() * shape.3.size());
        let taps = M::taps(K);
        let block = Block {
            geometry: Geometry::conv(H, (shape.2.size(), shape.3.size()), K, 1, K / 2),
            sources: Vec::new(),
            c: C,
            h: H,
            w1: tensor_vec(&self.reduce.weight)?,
            b1: tensor_vec(&self.reduce.bias)?,
            w2: gather_taps(&tensor_vec(&self.masked.weight)?, (H, H, K), &taps),
            b2: tensor_vec(&self.masked.bias)?,
            w3: tensor_vec(&self.expand.weight)?,
            b3: tensor_vec(&self.expand.bias)?,
        };
        let block = Block { sources: tap_sources(&block.geometry, &taps), ..block };
        let (x, xs) = take_contiguous(x)?;
        let (x, mut tape) = x.split_tape();
        // Each map starts as its bias, written once (no zeroing first).
        let mut out = bias_planes(&block.b3, n, b);
        let saved = if T::OWNS_TAPE {
            // The ReLU outputs of the first two convolutions, which the backward pass needs.
            let (mut a1, mut a2) = (bias_planes(&block.b1, n, b), bias_planes(&block.b2, n, b));
            block.forward(&xs, &mut out, Some((&mut a1, &mut a2)));
            Some((a1, a2))
        } else {
            block.forward(&xs, &mut out, None);
            None
        };
        let out = x.device().try_tensor_from_vec(out, shape)?;
        if let Some((a1, a2)) = saved {
            let (x_g, out_g) = (x.ghost(), out.ghost());
            let (w1_g, w2_g, w3_g) =
                (self.reduce.weight.ghost(), self.masked.weight.ghost(), self.expand.weight.ghost());
            let (b1_g, b2_g, b3_g) = (self.reduce.bias.ghost(), self.masked.bias.ghost(), self.expand.bias.ghost());
            let weight_grad = !super::freeze::parameters_frozen();
            tape.add_backward_op(move |grads| {
                let (gout, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
                // SAFETY: distinct tensor ids; `grads` outlives this closure body.
                let (gout, dx) = unsafe { (gout.slice(), dx.slice()) };
                let grads_of_weights = block.backward(&xs, &a1, &a2, gout, dx, weight_grad);
                if let Some(g) = grads_of_weights {
                    let (dw1, dw2, dw3) = (raw_grad!(grads, &w1_g), raw_grad!(grads, &w2_g), raw_grad!(grads, &w3_g));
                    let (db1, db2, db3) = (raw_grad!(grads, &b1_g), raw_grad!(grads, &b2_g), raw_grad!(grads, &b3_g));
                    // SAFETY: as above.
                    let (dw1, dw2, dw3) = unsafe { (dw1.slice(), dw2.slice(), dw3.slice()) };
                    let (db1, db2, db3) = unsafe { (db1.slice(), db2.slice(), db3.slice()) };
                    add(dw1, &g.w1);
                    scatter_taps(&g.w2, (H, H, K), &taps, dw2);
                    add(dw3, &g.w3);
                    add(db1, &g.b1);
                    add(db2, &g.b2);
                    add(db3, &g.b3);
                }
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

/// `dst += src`, element by element.
fn add<E: NnFloat>(dst: &mut [E], src: &[E]) {
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
}

/// `v = max(v, 0)`, as dfdx's ReLU computes it.
fn relu_in_place<E: NnFloat>(v: &mut [E]) {
    v.iter_mut().for_each(|x| *x = x.max(E::zero()));
}

/// `g = 0` where the ReLU output `a` is not positive (the ReLU's gradient, as dfdx's).
fn relu_grad<E: NnFloat>(g: &mut [E], a: &[E]) {
    g.iter_mut().zip(a).for_each(|(g, &a)| *g = if a > E::zero() { *g } else { E::zero() });
}

/// `images` copies of `len` values of each entry of `bias` in turn: the bias of every channel's map.
fn bias_planes<E: NnFloat>(bias: &[E], len: usize, images: usize) -> Vec<E> {
    let mut v = Vec::with_capacity(bias.len() * len * images);
    for _ in 0..images {
        bias.iter().for_each(|&b| v.extend(std::iter::repeat_n(b, len)));
    }
    v
}

/// `rows` of `len` values each, every one filled with its entry of `values`.
fn fill_rows<E: NnFloat>(dst: &mut [E], values: &[E], len: usize) {
    dst.chunks_mut(len).zip(values).for_each(|(row, &v)| row.fill(v));
}

/// One call's weights (row-major, the masked kernel restricted to its taps) and geometry.
struct Block<E> {
    geometry: Geometry,
    sources: Vec<Option<TapSource>>,
    c: usize,
    h: usize,
    /// `H × C`.
    w1: Vec<E>,
    b1: Vec<E>,
    /// `H × H·taps`.
    w2: Vec<E>,
    b2: Vec<E>,
    /// `C × H`.
    w3: Vec<E>,
    b3: Vec<E>,
}

/// The block's parameter gradients, in the layout of [`Block`]'s weights.
struct BlockGrads<E> {
    w1: Vec<E>,
    b1: Vec<E>,
    w2: Vec<E>,
    b2: Vec<E>,
    w3: Vec<E>,
    b3: Vec<E>,
}

/// Per-thread buffers of one image's intermediate maps.
#[derive(Default)]
struct Scratch<E> {
    wide: Vec<E>,
    narrow: Vec<E>,
    col: Vec<E>,
    a1: Vec<E>,
    a2: Vec<E>,
}

impl<E: NnFloat> Block<E> {
    fn n(&self) -> usize {
        self.geometry.out_hw()
    }

    fn rows(&self) -> usize {
        self.w2.len() / self.h
    }

    /// `out = block(x)` for a batch, `out` holding the last convolution's bias on entry; `saved`
    /// receives the two inner ReLU outputs (holding the other two biases on entry).
    fn forward(&self, x: &[E], out: &mut [E], saved: Option<(&mut [E], &mut [E])>) {
        let (wide, narrow) = (self.c * self.n(), self.h * self.n());
        let batch = x.len() / wide.max(1);
        let inner = if batch >= threads() { 1 } else { threads() };
        let images = out.par_chunks_mut(wide).zip(x.par_chunks(wide));
        match saved {
            Some((a1, a2)) => images
                .zip(a1.par_chunks_mut(narrow).zip(a2.par_chunks_mut(narrow)))
                .for_each_init(Scratch::default, |s, ((out_b, x_b), (a1_b, a2_b))| {
                    self.forward_image(x_b, out_b, a1_b, a2_b, s, inner)
                }),
            None => images.for_each_init(Scratch::default, |s, (out_b, x_b)| {
                let (mut a1, mut a2) = (std::mem::take(&mut s.a1), std::mem::take(&mut s.a2));
                a1.resize(narrow, E::zero());
                a2.resize(narrow, E::zero());
                fill_rows(&mut a1, &self.b1, self.n());
                fill_rows(&mut a2, &self.b2, self.n());
                self.forward_image(x_b, out_b, &mut a1, &mut a2, s, inner);
                (s.a1, s.a2) = (a1, a2);
            }),
        }
    }

    /// One image through the block (`out`, `a1` and `a2` holding their biases on entry), with the
    /// same operations in the same order as the tuple of dfdx ops (so the same values, bit for bit).
    fn forward_image(&self, x: &[E], out: &mut [E], a1: &mut [E], a2: &mut [E], s: &mut Scratch<E>, threads: usize) {
        let (c, h, n, rows) = (self.c, self.h, self.n(), self.rows());
        s.wide.clear();
        s.wide.extend(x.iter().map(|v| v.max(E::zero())));
        matmul((h, c, n), Mat::rows(&self.w1, c), Mat::rows(&s.wide, n), a1, true, threads);
        relu_in_place(a1);
        s.col.resize(rows * n, E::zero());
        im2col_rows(&self.geometry, &self.sources, a1, 0..rows, &mut s.col, n);
        s.narrow.resize(h * n, E::zero());
        matmul((h, rows, n), Mat::rows(&self.w2, rows), Mat::rows(&s.col, n), &mut s.narrow, false, threads);
        add(a2, &s.narrow);
        relu_in_place(a2);
        matmul((c, h, n), Mat::rows(&self.w3, h), Mat::rows(a2, n), out, true, threads);
        add(out, x);
    }

    /// Adds the input gradient into `dx` and returns the parameter gradients when `weight_grad`.
    ///
    /// The batch is cut into one part per thread; each sums its own weight gradients (transposed,
    /// so that the products read the maps as they lie), added up in part order afterwards.
    fn backward(
        &self,
        x: &[E],
        a1: &[E],
        a2: &[E],
        gout: &[E],
        dx: &mut [E],
        weight_grad: bool,
    ) -> Option<BlockGrads<E>> {
        let (wide, narrow) = (self.c * self.n(), self.h * self.n());
        let batch = x.len() / wide.max(1);
        let parts = threads().min(batch).max(1);
        let inner = if parts == 1 { threads() } else { 1 };
        let per_part = batch.div_ceil(parts).max(1);
        let partials: Vec<BlockGrads<E>> = dx
            .par_chunks_mut(per_part * wide)
            .zip(x.par_chunks(per_part * wide))
            .zip(gout.par_chunks(per_part * wide))
            .zip(a1.par_chunks(per_part * narrow).zip(a2.par_chunks(per_part * narrow)))
            .map(|(((dx_p, x_p), g_p), (a1_p, a2_p))| {
                let mut grads = self.zero_grads(weight_grad);
                let mut s = Scratch::default();
                let images = dx_p.chunks_mut(wide).zip(x_p.chunks(wide)).zip(g_p.chunks(wide));
                for (((dx_b, x_b), g_b), (a1_b, a2_b)) in images.zip(a1_p.chunks(narrow).zip(a2_p.chunks(narrow))) {
                    self.backward_image(x_b, a1_b, a2_b, g_b, dx_b, &mut grads, weight_grad, &mut s, inner);
                }
                grads
            })
            .collect();
        if !weight_grad {
            return None;
        }
        let mut parts = partials.into_iter();
        let mut total = parts.next().unwrap_or_else(|| self.zero_grads(true));
        for p in parts {
            add(&mut total.w1, &p.w1);
            add(&mut total.w2, &p.w2);
            add(&mut total.w3, &p.w3);
            add(&mut total.b1, &p.b1);
            add(&mut total.b2, &p.b2);
            add(&mut total.b3, &p.b3);
        }
        let (c, h, rows) = (self.c, self.h, self.rows());
        use super::reuse::transposed;
        Some(BlockGrads {
            w1: transposed(&total.w1, c, h),
            w2: transposed(&total.w2, rows, h),
            w3: transposed(&total.w3, h, c),
            ..total
        })
    }

    /// Zeroed gradient sums (weights transposed: `C × H`, `H·taps × H`, `H × C`).
    fn zero_grads(&self, weights: bool) -> BlockGrads<E> {
        let zeros = |len: usize| vec![E::zero(); if weights { len } else { 0 }];
        BlockGrads {
            w1: zeros(self.w1.len()),
            b1: zeros(self.h),
            w2: zeros(self.w2.len()),
            b2: zeros(self.h),
            w3: zeros(self.w3.len()),
            b3: zeros(self.c),
        }
    }

    /// One image's backward pass: `dx += dy + (the branch's input gradient)`; the weight
    /// gradients (transposed) are added into `grads` when `weight_grad`.
    #[allow(clippy::too_many_arguments)]
    fn backward_image(
        &self,
        x: &[E],
        a1: &[E],
        a2: &[E],
        gy: &[E],
        dx: &mut [E],
        grads: &mut BlockGrads<E>,
        weight_grad: bool,
        s: &mut Scratch<E>,
        threads: usize,
    ) {
        let (c, h, n, rows) = (self.c, self.h, self.n(), self.rows());
        add(dx, gy);
        // expand: y = w3 · a2 + b3
        if weight_grad {
            gy.chunks(n).zip(&mut grads.b3).for_each(|(row, d)| *d += sum(row));
            matmul((h, n, c), Mat::rows(a2, n), Mat::rows_t(gy, n), &mut grads.w3, true, threads);
        }
        s.narrow.resize(h * n, E::zero());
        let w3_t = Mat { ptr: self.w3.as_ptr(), rs: 1, cs: h };
        matmul((h, c, n), w3_t, Mat::rows(gy, n), &mut s.narrow, false, threads);
        relu_grad(&mut s.narrow, a2);
        // masked: a2 = relu(w2 · im2col(a1) + b2)
        s.col.resize(rows * n, E::zero());
        if weight_grad {
            s.narrow.chunks(n).zip(&mut grads.b2).for_each(|(row, d)| *d += sum(row));
            im2col_rows(&self.geometry, &self.sources, a1, 0..rows, &mut s.col, n);
            matmul((rows, n, h), Mat::rows(&s.col, n), Mat::rows_t(&s.narrow, n), &mut grads.w2, true, threads);
        }
        let w2_t = Mat { ptr: self.w2.as_ptr(), rs: 1, cs: rows };
        matmul((rows, h, n), w2_t, Mat::rows(&s.narrow, n), &mut s.col, false, threads);
        s.a1.clear();
        s.a1.resize(h * n, E::zero());
        col2im_rows_add(&self.geometry, &self.sources, 0..rows, &s.col, n, &mut s.a1);
        relu_grad(&mut s.a1, a1);
        // reduce: a1 = relu(w1 · relu(x) + b1)
        if weight_grad {
            s.a1.chunks(n).zip(&mut grads.b1).for_each(|(row, d)| *d += sum(row));
            s.wide.clear();
            s.wide.extend(x.iter().map(|v| v.max(E::zero())));
            matmul((c, n, h), Mat::rows(&s.wide, n), Mat::rows_t(&s.a1, n), &mut grads.w1, true, threads);
        }
        s.wide.resize(c * n, E::zero());
        let w1_t = Mat { ptr: self.w1.as_ptr(), rs: 1, cs: c };
        matmul((c, h, n), w1_t, Mat::rows(&s.a1, n), &mut s.wide, false, threads);
        relu_grad(&mut s.wide, x);
        add(dx, &s.wide);
    }
}
