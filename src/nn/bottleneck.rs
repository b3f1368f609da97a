//! The pre-activation residual bottleneck of PixelCNN (van den Oord et al. 2016, Figure 5) as one
//! op: `y = x + expand(relu(masked(relu(reduce(relu(x))))))`, a 1×1 convolution from `C` to `H`
//! channels, a masked `K×K` one, and a 1×1 back to `C`; and a stack of them as one op.
//!
//! As a tuple of seven dfdx ops every step allocated, zeroed and copied each intermediate map of
//! the whole batch (3 MB apiece for the MNIST PixelCNN), and each op ran after the last had left
//! the cache. Here each image goes through the whole stack while its maps stay in the core's L2
//! cache; the backward pass updates one gradient map in place from the last block to the first
//! and recomputes the cheap parts (the first ReLU and the unfolding) instead of storing them. The
//! forward values are those of the tuples, bit for bit.

use dfdx::nn::{BuildModule, BuildOnDevice, Module, ModuleVisitor, NonMutableModule, TensorCollection};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::conv::{gather_taps, scatter_taps, Conv2D, MaskKind, MaskedConv2D};
use super::kernels::{
    col2im_rows_add, im2col_rows, matmul, raw_grad, sum, take_contiguous, tap_sources, tensor_vec, threads, Geometry,
    Mat, NnFloat, TapSource,
};

/// Builders of [`ResidualBottleneck`] and [`ResidualStack`].
pub mod builder {
    /// Builder of [`super::ResidualBottleneck`]: `C` channels, an `H`-channel bottleneck, a
    /// `K×K` convolution masked by `M`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ResidualBottleneck<const C: usize, const H: usize, const K: usize, M>(std::marker::PhantomData<M>);

    /// Builder of [`super::ResidualStack`]: `L` blocks of [`ResidualBottleneck`].
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ResidualStack<const C: usize, const H: usize, const K: usize, M, const L: usize>(
        std::marker::PhantomData<M>,
    );
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
        forward_blocks(&[self], x)
    }
}

/// `L` [`ResidualBottleneck`] blocks one after another (as dfdx's `Repeated`, with the same
/// tensor names), computed as one op: each image goes through all of them in turn.
#[derive(Debug, Clone)]
pub struct ResidualStack<const C: usize, const H: usize, const K: usize, M, const L: usize, E: Dtype, D: Storage<E>> {
    /// The blocks, first to last (`L` of them).
    pub blocks: Vec<ResidualBottleneck<C, H, K, M, E, D>>,
}

impl<const C: usize, const H: usize, const K: usize, M: MaskKind, const L: usize, E: NnFloat> BuildOnDevice<Cpu, E>
    for builder::ResidualStack<C, H, K, M, L>
where
    Cpu: Device<E>,
{
    type Built = ResidualStack<C, H, K, M, L, E, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

impl<const C: usize, const H: usize, const K: usize, M: MaskKind, const L: usize, E: NnFloat> TensorCollection<E, Cpu>
    for ResidualStack<C, H, K, M, L, E, Cpu>
where
    Cpu: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ResidualStack<C, H, K, M, L, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, Cpu>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let names: Vec<String> = (0..L).map(|i| format!("{i}")).collect();
        visitor.visit_fields(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| Self::module(name, move |s| &s.blocks[i], move |s| &mut s.blocks[i]))
                .collect::<Vec<_>>(),
            |blocks| ResidualStack { blocks },
        )
    }
}

impl<const C: usize, const H: usize, const K: usize, M, const L: usize, E: Dtype, D: Storage<E>> NonMutableModule
    for ResidualStack<C, H, K, M, L, E, D>
{
}

impl<const C: usize, const H: usize, const K: usize, M, const L: usize, E, B, Hd, Wd, T>
    Module<Tensor<(B, Const<C>, Hd, Wd), E, Cpu, T>> for ResidualStack<C, H, K, M, L, E, Cpu>
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
        forward_blocks(&self.blocks.iter().collect::<Vec<_>>(), x)
    }
}

/// The blocks `modules` one after another on `x`, as one op on the tape.
#[allow(clippy::type_complexity)]
fn forward_blocks<const C: usize, const H: usize, const K: usize, M, E, B, Hd, Wd, T>(
    modules: &[&ResidualBottleneck<C, H, K, M, E, Cpu>],
    x: Tensor<(B, Const<C>, Hd, Wd), E, Cpu, T>,
) -> Result<Tensor<(B, Const<C>, Hd, Wd), E, Cpu, T>, CpuError>
where
    M: MaskKind,
    E: NnFloat,
    B: Dim,
    Hd: Dim,
    Wd: Dim,
    T: Tape<E, Cpu>,
{
    assert!(K % 2 == 1, "ResidualBottleneck needs an odd kernel size, got {K}");
    if modules.is_empty() {
        return Ok(x);
    }
    let shape = *x.shape();
    let (b, size) = (shape.0.size(), (shape.2.size(), shape.3.size()));
    let taps = M::taps(K);
    let geometry = Geometry::conv(H, size, K, 1, K / 2);
    let sources = tap_sources(&geometry, &taps);
    let blocks = modules
        .iter()
        .map(|m| {
            Ok(Block {
                geometry,
                sources: sources.clone(),
                c: C,
                h: H,
                w1: tensor_vec(&m.reduce.weight)?,
                b1: tensor_vec(&m.reduce.bias)?,
                w2: gather_taps(&tensor_vec(&m.masked.weight)?, (H, H, K), &taps),
                b2: tensor_vec(&m.masked.bias)?,
                w3: tensor_vec(&m.expand.weight)?,
                b3: tensor_vec(&m.expand.bias)?,
            })
        })
        .collect::<Result<Vec<_>, CpuError>>()?;
    let stack = Stack { blocks };
    let (x, xs) = take_contiguous(x)?;
    let (x, mut tape) = x.split_tape();
    // Every value of `out` is written by the forward pass: a recycled buffer needs no zeroing.
    let mut out = recycle::take(xs.len());
    let saved = if T::OWNS_TAPE {
        let mut saved = stack.saved(b);
        stack.forward(&xs, &mut out, Some(&mut saved));
        Some(saved)
    } else {
        stack.forward(&xs, &mut out, None);
        None
    };
    recycle::give(xs);
    let out = x.device().try_tensor_from_vec(out, shape)?;
    if let Some(saved) = saved {
        let (x_g, out_g) = (x.ghost(), out.ghost());
        let ghosts: Vec<_> = modules
            .iter()
            .map(|m| {
                let weights = (m.reduce.weight.ghost(), m.masked.weight.ghost(), m.expand.weight.ghost());
                (weights, (m.reduce.bias.ghost(), m.masked.bias.ghost(), m.expand.bias.ghost()))
            })
            .collect();
        let weight_grad = !super::freeze::parameters_frozen();
        tape.add_backward_op(move |grads| {
            let (gout, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
            // SAFETY: distinct tensor ids; `grads` outlives this closure body.
            let (gout, dx) = unsafe { (gout.slice(), dx.slice()) };
            let block_grads = stack.backward(&saved, gout, dx, weight_grad);
            saved.recycle();
            for (g, ((w1_g, w2_g, w3_g), (b1_g, b2_g, b3_g))) in block_grads.into_iter().zip(&ghosts) {
                let (dw1, dw2, dw3) = (raw_grad!(grads, w1_g), raw_grad!(grads, w2_g), raw_grad!(grads, w3_g));
                let (db1, db2, db3) = (raw_grad!(grads, b1_g), raw_grad!(grads, b2_g), raw_grad!(grads, b3_g));
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

/// `dst += src`, element by element.
fn add<E: NnFloat>(dst: &mut [E], src: &[E]) {
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
}

/// `v = max(v, 0)`, as dfdx's ReLU computes it.
fn relu_in_place<E: NnFloat>(v: &mut [E]) {
    v.iter_mut().for_each(|x| *x = x.max(E::zero()));
}

/// `g = 0` where the ReLU output `a` is not positive (the ReLU's gradient, as dfdx's), row by row
/// of `a.len() / sums.len()` values; each row's sum (the bias gradient) is added into `sums` when given.
fn relu_grad_rows<E: NnFloat>(g: &mut [E], a: &[E], sums: Option<&mut [E]>) {
    let relu_grad =
        |g: &mut [E], a: &[E]| g.iter_mut().zip(a).for_each(|(g, &a)| *g = if a > E::zero() { *g } else { E::zero() });
    match sums {
        Some(sums) => {
            let n = g.len() / sums.len().max(1);
            for ((g, a), d) in g.chunks_mut(n).zip(a.chunks(n)).zip(sums) {
                relu_grad(g, a);
                *d += sum(g);
            }
        }
        None => relu_grad(g, a),
    }
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
    ga1: Vec<E>,
    cur: Vec<E>,
    next: Vec<E>,
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

    /// One image through the block, `out`, `a1` and `a2` written whole, with the same operations
    /// in the same order as the tuple of dfdx ops (so the same values, bit for bit).
    fn forward_image(&self, x: &[E], out: &mut [E], a1: &mut [E], a2: &mut [E], s: &mut Scratch<E>, threads: usize) {
        let (c, h, n, rows) = (self.c, self.h, self.n(), self.rows());
        s.wide.clear();
        s.wide.extend(x.iter().map(|v| v.max(E::zero())));
        fill_rows(a1, &self.b1, n);
        matmul((h, c, n), Mat::rows(&self.w1, c), Mat::rows(&s.wide, n), a1, true, threads);
        relu_in_place(a1);
        s.col.resize(rows * n, E::zero());
        im2col_rows(&self.geometry, &self.sources, a1, 0..rows, &mut s.col, n);
        s.narrow.resize(h * n, E::zero());
        matmul((h, rows, n), Mat::rows(&self.w2, rows), Mat::rows(&s.col, n), &mut s.narrow, false, threads);
        for ((a2, narrow), &b) in a2.chunks_mut(n).zip(s.narrow.chunks(n)).zip(&self.b2) {
            a2.iter_mut().zip(narrow).for_each(|(a, &v)| *a = (b + v).max(E::zero()));
        }
        fill_rows(out, &self.b3, n);
        matmul((c, h, n), Mat::rows(&self.w3, h), Mat::rows(a2, n), out, true, threads);
        add(out, x);
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

    /// One image's backward pass through the block, `g` the gradient of its output on entry and of
    /// its input on return (`g + the branch's input gradient`); the weight gradients (transposed)
    /// are added into `grads` when `weight_grad`.
    #[allow(clippy::too_many_arguments)]
    fn backward_image(
        &self,
        (x, a1, a2): (&[E], &[E], &[E]),
        g: &mut [E],
        grads: &mut BlockGrads<E>,
        weight_grad: bool,
        s: &mut Scratch<E>,
        threads: usize,
    ) {
        let (c, h, n, rows) = (self.c, self.h, self.n(), self.rows());
        let gy = &*g;
        // expand: y = x + w3 · a2 + b3
        if weight_grad {
            gy.chunks(n).zip(&mut grads.b3).for_each(|(row, d)| *d += sum(row));
            matmul((h, n, c), Mat::rows(a2, n), Mat::rows_t(gy, n), &mut grads.w3, true, threads);
        }
        s.narrow.resize(h * n, E::zero());
        let w3_t = Mat { ptr: self.w3.as_ptr(), rs: 1, cs: h };
        matmul((h, c, n), w3_t, Mat::rows(gy, n), &mut s.narrow, false, threads);
        relu_grad_rows(&mut s.narrow, a2, weight_grad.then_some(&mut grads.b2[..]));
        // masked: a2 = relu(w2 · im2col(a1) + b2)
        s.col.resize(rows * n, E::zero());
        if weight_grad {
            im2col_rows(&self.geometry, &self.sources, a1, 0..rows, &mut s.col, n);
            matmul((rows, n, h), Mat::rows(&s.col, n), Mat::rows_t(&s.narrow, n), &mut grads.w2, true, threads);
        }
        let w2_t = Mat { ptr: self.w2.as_ptr(), rs: 1, cs: rows };
        matmul((rows, h, n), w2_t, Mat::rows(&s.narrow, n), &mut s.col, false, threads);
        s.ga1.clear();
        s.ga1.resize(h * n, E::zero());
        col2im_rows_add(&self.geometry, &self.sources, 0..rows, &s.col, n, &mut s.ga1);
        relu_grad_rows(&mut s.ga1, a1, weight_grad.then_some(&mut grads.b1[..]));
        // reduce: a1 = relu(w1 · relu(x) + b1)
        if weight_grad {
            s.wide.clear();
            s.wide.extend(x.iter().map(|v| v.max(E::zero())));
            matmul((c, n, h), Mat::rows(&s.wide, n), Mat::rows_t(&s.ga1, n), &mut grads.w1, true, threads);
        }
        s.wide.resize(c * n, E::zero());
        let w1_t = Mat { ptr: self.w1.as_ptr(), rs: 1, cs: c };
        matmul((c, h, n), w1_t, Mat::rows(&s.ga1, n), &mut s.wide, false, threads);
        g.iter_mut().zip(&s.wide).zip(x).for_each(|((g, &d), &x)| *g += if x > E::zero() { d } else { E::zero() });
    }
}

/// Blocks one after another.
struct Stack<E> {
    blocks: Vec<Block<E>>,
}

/// What the backward pass of a [`Stack`] needs, image-major: each image's input of every block
/// (`inputs`), and its two inner ReLU outputs (`a1`, `a2`).
struct Saved<E> {
    inputs: Vec<E>,
    a1: Vec<E>,
    a2: Vec<E>,
}

impl<E: NnFloat> Saved<E> {
    /// Hands the buffers back for the next step's forward pass.
    fn recycle(self) {
        recycle::give(self.inputs);
        recycle::give(self.a1);
        recycle::give(self.a2);
    }
}

impl<E: NnFloat> Stack<E> {
    /// Values of one image's map with `C` (`wide`) and `H` (`narrow`) channels.
    fn maps(&self) -> (usize, usize) {
        let b = &self.blocks[0];
        (b.c * b.n(), b.h * b.n())
    }

    /// Buffers for the saved maps of `batch` images (recycled: their values are all overwritten).
    fn saved(&self, batch: usize) -> Saved<E> {
        let ((wide, narrow), l) = (self.maps(), self.blocks.len());
        Saved {
            inputs: recycle::take(batch * l * wide),
            a1: recycle::take(batch * l * narrow),
            a2: recycle::take(batch * l * narrow),
        }
    }

    /// `out = stack(x)` for a batch, parallel over images, each through every block in turn;
    /// `saved` receives what the backward pass needs.
    fn forward(&self, x: &[E], out: &mut [E], saved: Option<&mut Saved<E>>) {
        let ((wide, narrow), l) = (self.maps(), self.blocks.len());
        let batch = x.len() / wide.max(1);
        let inner = if batch >= threads() { 1 } else { threads() };
        let images = out.par_chunks_mut(wide).zip(x.par_chunks(wide));
        match saved {
            Some(sv) => {
                let per_image = sv
                    .inputs
                    .par_chunks_mut(l * wide)
                    .zip(sv.a1.par_chunks_mut(l * narrow).zip(sv.a2.par_chunks_mut(l * narrow)));
                images.zip(per_image).for_each_init(Scratch::default, |s, ((out_b, x_b), (ins, (a1, a2)))| {
                    ins[..wide].copy_from_slice(x_b);
                    for (i, block) in self.blocks.iter().enumerate() {
                        let (a1, a2) = (&mut a1[i * narrow..][..narrow], &mut a2[i * narrow..][..narrow]);
                        let (done, rest) = ins.split_at_mut((i + 1) * wide);
                        let x_i = &done[i * wide..];
                        let y = if i + 1 < l { &mut rest[..wide] } else { &mut *out_b };
                        block.forward_image(x_i, y, a1, a2, s, inner);
                    }
                });
            }
            None => images.for_each_init(Scratch::default, |s, (out_b, x_b)| {
                let (mut cur, mut next, mut a1, mut a2) = (
                    std::mem::take(&mut s.cur),
                    std::mem::take(&mut s.next),
                    std::mem::take(&mut s.a1),
                    std::mem::take(&mut s.a2),
                );
                cur.clear();
                cur.extend_from_slice(x_b);
                next.resize(wide, E::zero());
                a1.resize(narrow, E::zero());
                a2.resize(narrow, E::zero());
                for block in &self.blocks {
                    block.forward_image(&cur, &mut next, &mut a1, &mut a2, s, inner);
                    std::mem::swap(&mut cur, &mut next);
                }
                out_b.copy_from_slice(&cur);
                (s.cur, s.next, s.a1, s.a2) = (cur, next, a1, a2);
            }),
        }
    }

    /// Adds the input gradient into `dx` and returns each block's parameter gradients (empty when
    /// not `weight_grad`).
    ///
    /// The batch is cut into one part per thread; each takes its images back through every block,
    /// summing its own weight gradients (transposed, so that the products read the maps as they
    /// lie), added up in part order afterwards.
    fn backward(&self, saved: &Saved<E>, gout: &[E], dx: &mut [E], weight_grad: bool) -> Vec<BlockGrads<E>> {
        let ((wide, narrow), l) = (self.maps(), self.blocks.len());
        let batch = gout.len() / wide.max(1);
        let parts = threads().min(batch).max(1);
        let inner = if parts == 1 { threads() } else { 1 };
        let per_part = batch.div_ceil(parts).max(1);
        let partials: Vec<Vec<BlockGrads<E>>> = dx
            .par_chunks_mut(per_part * wide)
            .zip(gout.par_chunks(per_part * wide))
            .zip(saved.inputs.par_chunks(per_part * l * wide))
            .zip(saved.a1.par_chunks(per_part * l * narrow).zip(saved.a2.par_chunks(per_part * l * narrow)))
            .map(|(((dx_p, g_p), ins_p), (a1_p, a2_p))| {
                let mut grads: Vec<_> = self.blocks.iter().map(|b| b.zero_grads(weight_grad)).collect();
                let mut s = Scratch::default();
                let mut g = Vec::new();
                let images = dx_p.chunks_mut(wide).zip(g_p.chunks(wide)).zip(ins_p.chunks(l * wide));
                for (((dx_b, g_b), ins), (a1, a2)) in images.zip(a1_p.chunks(l * narrow).zip(a2_p.chunks(l * narrow))) {
                    g.clear();
                    g.extend_from_slice(g_b);
                    for (i, block) in self.blocks.iter().enumerate().rev() {
                        let maps = (&ins[i * wide..][..wide], &a1[i * narrow..][..narrow], &a2[i * narrow..][..narrow]);
                        block.backward_image(maps, &mut g, &mut grads[i], weight_grad, &mut s, inner);
                    }
                    add(dx_b, &g);
                }
                grads
            })
            .collect();
        if !weight_grad {
            return Vec::new();
        }
        let mut parts = partials.into_iter();
        let mut totals = parts.next().unwrap_or_else(|| self.blocks.iter().map(|b| b.zero_grads(true)).collect());
        for part in parts {
            for (total, p) in totals.iter_mut().zip(part) {
                add(&mut total.w1, &p.w1);
                add(&mut total.w2, &p.w2);
                add(&mut total.w3, &p.w3);
                add(&mut total.b1, &p.b1);
                add(&mut total.b2, &p.b2);
                add(&mut total.b3, &p.b3);
            }
        }
        use super::reuse::transposed;
        totals
            .into_iter()
            .zip(&self.blocks)
            .map(|(t, b)| BlockGrads {
                w1: transposed(&t.w1, b.c, b.h),
                w2: transposed(&t.w2, b.rows(), b.h),
                w3: transposed(&t.w3, b.h, b.c),
                ..t
            })
            .collect()
    }
}

/// Large buffers handed from one training step to the next: a step's saved maps are tens of
/// megabytes, and a fresh zeroed allocation of them cost a `memset` per step (recycled ones are
/// overwritten whole, so they need none).
mod recycle {
    use std::any::Any;
    use std::sync::Mutex;

    /// Buffers kept at most (the oldest goes first).
    const KEEP: usize = 16;

    static POOL: Mutex<Vec<Box<dyn Any + Send>>> = Mutex::new(Vec::new());

    /// A buffer of exactly `len` values: a recycled one (holding old values) or a zeroed one.
    pub fn take<E: Clone + Default + Send + 'static>(len: usize) -> Vec<E> {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let found = pool.iter().position(|b| b.downcast_ref::<Vec<E>>().is_some_and(|v| v.len() == len));
        match found {
            Some(i) => *pool.swap_remove(i).downcast::<Vec<E>>().expect("checked type"),
            None => vec![E::default(); len],
        }
    }

    /// Keeps `v` for a later [`take`].
    pub fn give<E: Send + 'static>(v: Vec<E>) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() == KEEP {
            pool.remove(0);
        }
        pool.push(Box::new(v));
    }
}
