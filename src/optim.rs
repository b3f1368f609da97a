//! Adam whose state can be checkpointed, with global gradient-norm clipping, and a refusal to
//! apply non-finite gradients.
//!
//! dfdx's own `Adam` keeps its moments in private fields keyed by tensor ids, so they can be
//! neither saved nor restored. Here the two moments belong to the optimizer and are saved as
//! safetensors modules of the same type as the model, next to the weights: a resumed run
//! continues with exactly the optimizer state it stopped with.
//!
//! **How a step runs**: one pass over the gradients computes the global norm (and refuses the
//! step, changing nothing, when it is NaN or infinite); then, per tensor, the parameter is copied
//! into a scratch buffer, one vectorised pass (parallel over chunks for large tensors) updates
//! the moments and the parameter values there, and they are copied back. Blocks whose gradient
//! and moments are all `+0.0` (weights no step has reached yet, such as the unused rows of a
//! [`crate::nn::DenseUpTo`]) are skipped: their step would change no bit. The gradients are read
//! where dfdx keeps them, without a copy (which is why [`Adam::update`] borrows them mutably;
//! their values are not changed). Results do not depend on the number of threads or on the
//! CPU's vector width.

use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::OnceLock;

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName, ViewTensorRef,
};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::prelude::{Cpu, CpuError, Gradients, HasShape, Shape, Tensor, TensorFromVec};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointError};

/// Tensors with at least this many elements are updated (and their squared norms summed) in
/// parallel chunks of this size; smaller ones on the calling thread.
const CHUNK: usize = 1 << 15;

/// Adam hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// The order of the floating-point operations (the results differ in the last bits).
    #[serde(default)]
    pub order: AdamOrder,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, order: AdamOrder::Glimpse }
    }
}

/// The learning rate after `done` of `total` steps of half a cosine from `base` to 0
/// (Loshchilov and Hutter's SGDR without restarts).
///
/// ```
/// use glimpse::optim::cosine_rate;
/// assert_eq!(cosine_rate(1e-3, 0, 100), 1e-3);
/// assert!((cosine_rate(1e-3, 50, 100) - 5e-4).abs() < 1e-12);
/// assert!(cosine_rate(1e-3, 100, 100).abs() < 1e-12);
/// ```
pub fn cosine_rate(base: f64, done: u64, total: u64) -> f64 {
    let f = done as f64 / total.max(1) as f64;
    0.5 * base * (1.0 + (std::f64::consts::PI * f.min(1.0)).cos())
}

/// How one Adam step is written in floating point; both are Adam, they round differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdamOrder {
    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g g`, `p -= lr (m / c1) / (sqrt(v / c2) + eps)`
    /// (the arithmetic glimpse's agents were measured with).
    #[default]
    Glimpse,
    /// dfdx 0.13's kernel: `m = m b1 + g (1 - b1)`, `v = v b2 + g² (1 - b2)`, the bias corrections
    /// applied as products with their reciprocals: bit for bit what `dfdx::optim::Adam` computes.
    Dfdx,
}

/// [`Adam::update`] refused a step because the global gradient norm is NaN or infinite.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the gradient norm is {norm} at optimizer step {step}; no parameter was changed")]
pub struct NonFiniteGradient {
    /// The norm (NaN or infinite).
    pub norm: f32,
    /// The step that was refused (the optimizer's `t` plus one; `t` itself did not change).
    pub step: u64,
}

/// A parameter tensor holding NaN or infinite values (see [`check_finite_params`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "parameter {name} has {count} non-finite values out of {len} (the first, at index {first_index}, is {first_value})"
)]
pub struct NonFiniteParams {
    /// The tensor's name as in checkpoints (e.g. `0.weight`).
    pub name: String,
    /// How many of its values are NaN or infinite.
    pub count: usize,
    /// Its number of values.
    pub len: usize,
    /// The index of the first non-finite value.
    pub first_index: usize,
    /// That value.
    pub first_value: f32,
}

/// Returns an error naming the first tensor of `model` (in checkpoint order) that holds a NaN or
/// an infinity: a cheap check (one copy and scan of each tensor) a trainer can run after a step.
pub fn check_finite_params<M: TensorCollection<f32, Cpu>>(model: &M) -> Result<(), NonFiniteParams> {
    struct Check {
        buf: Vec<f32>,
        found: Option<NonFiniteParams>,
    }
    impl TensorVisitor<f32, Cpu> for Check {
        type Viewer = (ViewTensorRef, ViewTensorName);
        type Err = CpuError;
        type E2 = f32;
        type D2 = Cpu;
        fn visit<S: Shape>(
            &mut self,
            _: TensorOptions<S, f32, Cpu>,
            (t, name): (&Tensor<S, f32, Cpu>, String),
        ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
            if self.found.is_some() {
                return Ok(None);
            }
            self.buf.resize(t.shape().num_elements(), 0.0);
            t.copy_into(&mut self.buf);
            if let Some(first_index) = self.buf.iter().position(|v| !v.is_finite()) {
                self.found = Some(NonFiniteParams {
                    name,
                    count: self.buf.iter().filter(|v| !v.is_finite()).count(),
                    len: self.buf.len(),
                    first_index,
                    first_value: self.buf[first_index],
                });
            }
            Ok(None)
        }
    }
    let mut check = Check { buf: Vec::new(), found: None };
    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut check }).expect("cpu visit");
    check.found.map_or(Ok(()), Err)
}

/// Adam (Kingma & Ba) with bias correction; its moments are saved as modules shaped like the model.
pub struct Adam<M> {
    /// Hyperparameters (the learning rate may be changed between steps).
    pub cfg: AdamConfig,
    /// Number of updates done.
    pub t: u64,
    /// The model's structure with zeroed values: names and shapes for the moment modules.
    zeros: M,
    /// `M::clone`, taken where `M: Clone` is known, so later methods do not need the bound.
    clone: fn(&M) -> M,
    /// First and second moments of each trainable tensor, in visiting order.
    m1: Vec<Vec<f32>>,
    m2: Vec<Vec<f32>>,
    /// The values of one parameter tensor during its step, as long as the largest.
    scratch: Vec<f32>,
    /// The moments as modules, built on demand by [`Adam::moments`] and dropped by every update.
    modules: OnceLock<(M, M)>,
}

/// Zeroes every tensor of a module and records the lengths of the trainable ones.
struct Zero {
    trainable: Vec<usize>,
}
impl TensorVisitor<f32, Cpu> for Zero {
    type Viewer = ViewTensorMut;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        t: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        let n = t.shape().num_elements();
        t.copy_from(&vec![0.0; n]);
        if opts.do_gradient_update {
            self.trainable.push(n);
        }
        Ok(None)
    }
}

/// Copies the moment buffers into the trainable tensors of a module.
struct ToModule<'a> {
    bufs: &'a [Vec<f32>],
    next: usize,
}
impl TensorVisitor<f32, Cpu> for ToModule<'_> {
    type Viewer = ViewTensorMut;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        t: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        if opts.do_gradient_update {
            t.copy_from(&self.bufs[self.next]);
            self.next += 1;
        }
        Ok(None)
    }
}

/// Copies the trainable tensors of a module into the moment buffers.
struct FromModule<'a> {
    bufs: &'a mut [Vec<f32>],
    next: usize,
}
impl TensorVisitor<f32, Cpu> for FromModule<'_> {
    type Viewer = ViewTensorRef;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        t: &Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        if opts.do_gradient_update {
            t.copy_into(&mut self.bufs[self.next]);
            self.next += 1;
        }
        Ok(None)
    }
}

/// Sums the squares of all gradients (in f64).
struct SquaredNorm<'a> {
    grads: &'a mut Gradients<f32, Cpu>,
    sum: f64,
}
impl TensorVisitor<f32, Cpu> for SquaredNorm<'_> {
    type Viewer = ViewTensorRef;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        p: &Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        if opts.do_gradient_update {
            self.sum += squared_sum(self.grads.get_or_alloc_mut(p)?);
        }
        Ok(None)
    }
}

/// The sum of squares of `g` in f64: each chunk of [`CHUNK`] values summed in 32 interleaved
/// partial sums (vectorised; one running sum in order was a serial chain of f64 additions, 5% of
/// a DQN update), chunks in parallel, and the chunk sums added in order, so the result does not
/// depend on the thread count.
fn squared_sum(g: &[f32]) -> f64 {
    if g.len() < CHUNK {
        return lanes_squared_sum(g);
    }
    let partial: Vec<f64> = g.par_chunks(CHUNK).map(lanes_squared_sum).collect();
    partial.iter().sum()
}

/// Interleaved partial sums of squares, added pairwise at the end.
fn lanes_squared_sum(g: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { lanes_squared_sum_avx512(g) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { lanes_squared_sum_avx2(g) };
        }
    }
    lanes_squared_sum_portable(g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn lanes_squared_sum_avx512(g: &[f32]) -> f64 {
    lanes_squared_sum_portable(g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lanes_squared_sum_avx2(g: &[f32]) -> f64 {
    lanes_squared_sum_portable(g)
}

#[inline(always)]
fn lanes_squared_sum_portable(g: &[f32]) -> f64 {
    // 32 lanes (four AVX-512 registers of f64) keep the adds' latency hidden; with 16 the loop
    // took twice as long.
    const LANES: usize = 32;
    let mut acc = [0.0f64; LANES];
    let mut chunks = g.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] += (c[k] as f64) * (c[k] as f64);
        }
    }
    for (k, &v) in chunks.remainder().iter().enumerate() {
        acc[k] += (v as f64) * (v as f64);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            acc[k] += acc[k + width];
        }
    }
    acc[0]
}

/// The constants of one step, shared by every element.
#[derive(Clone, Copy)]
struct StepConsts {
    order: AdamOrder,
    b1: f32,
    b2: f32,
    lr: f32,
    eps: f32,
    /// The bias corrections `1 - b^t` ([`AdamOrder::Glimpse`]) or their reciprocals ([`AdamOrder::Dfdx`]).
    c1: f32,
    c2: f32,
    /// The clipping factor (exactly 1 when not clipping).
    scale: f32,
}

impl StepConsts {
    fn new(cfg: &AdamConfig, t: u64, scale: f32) -> Self {
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let (bc1, bc2) = (1.0 - cfg.beta1.powi(t), 1.0 - cfg.beta2.powi(t));
        let (c1, c2) = match cfg.order {
            AdamOrder::Glimpse => (bc1, bc2),
            AdamOrder::Dfdx => (bc1.recip(), bc2.recip()),
        };
        Self { order: cfg.order, b1: cfg.beta1, b2: cfg.beta2, lr: cfg.lr, eps: cfg.eps, c1, c2, scale }
    }
}

/// Where a chunk's steps go: subtracted from the parameter values in place (`f32`), or written
/// out for dfdx to subtract (`MaybeUninit<f32>`, so that a fresh buffer needs no zeroing).
trait StepSlot {
    /// Takes the step of a live element (what its parameter loses).
    fn take(&mut self, step: f32);
    /// An element of an [`untouched`] block, whose step is `+0.0`.
    fn skip(&mut self);
}

impl StepSlot for f32 {
    #[inline(always)]
    fn take(&mut self, step: f32) {
        *self -= step;
    }
    #[inline(always)]
    fn skip(&mut self) {}
}

impl StepSlot for MaybeUninit<f32> {
    #[inline(always)]
    fn take(&mut self, step: f32) {
        self.write(step);
    }
    #[inline(always)]
    fn skip(&mut self) {
        self.write(0.0);
    }
}

/// Updates the moments `m`, `v` of one chunk from its gradient `g` and hands every element's
/// step to its slot in `out` (the parameter values, or a buffer of steps).
fn adam_chunk<S: StepSlot>(k: &StepConsts, g: &[f32], m: &mut [f32], v: &mut [f32], out: &mut [S]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { adam_chunk_avx512(k, g, m, v, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { adam_chunk_avx2(k, g, m, v, out) };
        }
    }
    adam_chunk_portable(k, g, m, v, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn adam_chunk_avx512<S: StepSlot>(k: &StepConsts, g: &[f32], m: &mut [f32], v: &mut [f32], out: &mut [S]) {
    adam_chunk_portable(k, g, m, v, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_chunk_avx2<S: StepSlot>(k: &StepConsts, g: &[f32], m: &mut [f32], v: &mut [f32], out: &mut [S]) {
    adam_chunk_portable(k, g, m, v, out)
}

/// Elements per block of [`adam_chunk_portable`]'s test for untouched weights.
const BLOCK: usize = 64;

/// Whether the gradient and both moments of a block are all `+0.0` (all bits zero): a block
/// whose step would leave every value bit for bit as it is (both moments stay `+0.0`, and the
/// parameter loses `+0.0`), such as the rows of a `DenseUpTo` weight beyond the width in use.
#[inline(always)]
fn untouched(g: &[f32], m: &[f32], v: &[f32]) -> bool {
    let mut bits = 0u32;
    for i in 0..g.len() {
        bits |= g[i].to_bits() | m[i].to_bits() | v[i].to_bits();
    }
    bits == 0
}

/// The element-wise step, block by block; [`untouched`] blocks only [`StepSlot::skip`]. Rust
/// never fuses a product and a sum into one rounding, so the vectorised builds compute exactly
/// what the scalar one does.
#[inline(always)]
fn adam_chunk_portable<S: StepSlot>(k: &StepConsts, g: &[f32], m: &mut [f32], v: &mut [f32], out: &mut [S]) {
    let n = g.len();
    let (m, v, out) = (&mut m[..n], &mut v[..n], &mut out[..n]);
    for (((g, m), v), out) in
        g.chunks(BLOCK).zip(m.chunks_mut(BLOCK)).zip(v.chunks_mut(BLOCK)).zip(out.chunks_mut(BLOCK))
    {
        if untouched(g, m, v) {
            out.iter_mut().for_each(S::skip);
        } else {
            adam_block(k, g, m, v, out);
        }
    }
}

/// The step of every element of one block, untouched or not.
#[inline(always)]
fn adam_block<S: StepSlot>(k: &StepConsts, g: &[f32], m: &mut [f32], v: &mut [f32], out: &mut [S]) {
    let n = g.len();
    let (m, v, out) = (&mut m[..n], &mut v[..n], &mut out[..n]);
    let StepConsts { b1, b2, lr, eps, c1, c2, scale, .. } = *k;
    match (k.order, scale == 1.0) {
        (AdamOrder::Glimpse, _) => {
            for i in 0..n {
                let gi = g[i] * scale;
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                out[i].take(lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps));
            }
        }
        (AdamOrder::Dfdx, unscaled) => {
            for i in 0..n {
                let gi = if unscaled { g[i] } else { g[i] * scale };
                m[i] = m[i] * b1 + gi * (1.0 - b1);
                v[i] = v[i] * b2 + (gi * gi) * (1.0 - b2);
                out[i].take(lr * (m[i] * c1) / ((v[i] * c2).sqrt() + eps));
            }
        }
    }
}

/// One Adam step on every trainable tensor.
struct Step<'a> {
    grads: &'a mut Gradients<f32, Cpu>,
    consts: StepConsts,
    m1: &'a mut [Vec<f32>],
    m2: &'a mut [Vec<f32>],
    scratch: &'a mut Vec<f32>,
    next: usize,
    /// Whether each gradient is zeroed once its step is taken (see [`Adam::update_and_zero`]).
    zero: bool,
}
impl TensorVisitor<f32, Cpu> for Step<'_> {
    type Viewer = ViewTensorMut;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        p: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        let i = self.next;
        self.next += 1;
        let g: &mut [f32] = self.grads.get_or_alloc_mut(p)?;
        let (m, v) = (&mut self.m1[i][..], &mut self.m2[i][..]);
        let k = &self.consts;
        // dfdx gives no mutable view of a tensor's buffer. Small tensors go through the scratch
        // buffer (two memcpys); large ones get their steps computed on all threads into a new
        // buffer that dfdx subtracts in place (`p = 1 * p + (-1) * step`, exactly `p - step`):
        // 36 bytes moved per value instead of 44, and only the subtraction on one thread.
        if g.len() < CHUNK {
            let values = &mut self.scratch[..g.len()];
            p.copy_into(values);
            adam_chunk(k, g, m, v, values);
            p.copy_from(values);
            if self.zero {
                g.fill(0.0);
            }
            return Ok(None);
        }
        let mut steps = Vec::with_capacity(g.len());
        // The step is element-wise: any split gives the same bits; a finer one than the norm's
        // keeps both threads busy on tensors of one or two chunks.
        let split = CHUNK / 4;
        g.par_chunks(split)
            .zip(m.par_chunks_mut(split))
            .zip(v.par_chunks_mut(split))
            .zip(steps.spare_capacity_mut()[..g.len()].par_chunks_mut(split))
            .for_each(|(((g, m), v), d)| adam_chunk(k, g, m, v, d));
        // SAFETY: the chunks above cover the first `g.len()` values and write every one.
        unsafe { steps.set_len(g.len()) };
        let steps = p.device().try_tensor_from_vec(steps, *p.shape())?;
        // The subtraction is dfdx's, on this thread: the gradient is zeroed on another meanwhile.
        let zero = self.zero;
        let (subtracted, ()) = rayon::join(
            || p.try_axpy(1.0, &steps, -1.0),
            || {
                if zero {
                    g.fill(0.0)
                }
            },
        );
        subtracted?;
        Ok(None)
    }
}

impl<M: TensorCollection<f32, Cpu>> Adam<M> {
    /// An optimizer for `model` with zeroed moments.
    pub fn new(model: &M, cfg: AdamConfig) -> Self
    where
        M: Clone,
    {
        // `clone` shares tensor ids (and, until written, buffers) with the model; the copy is
        // never traced, and zeroing gives it its own buffers.
        let mut zeros = model.clone();
        let mut shapes = Zero { trainable: Vec::new() };
        M::iter_tensors(&mut RecursiveWalker { m: &mut zeros, f: &mut shapes }).expect("zeroing moments");
        let m1 = shapes.trainable.iter().map(|&n| vec![0.0; n]).collect();
        let m2 = shapes.trainable.iter().map(|&n| vec![0.0; n]).collect();
        let scratch = vec![0.0; shapes.trainable.iter().copied().max().unwrap_or(0)];
        Self { cfg, t: 0, zeros, clone: M::clone, m1, m2, scratch, modules: OnceLock::new() }
    }

    /// Applies the gradients, first scaling them so their global L2 norm is at most `max_norm`
    /// when given. Returns the norm before clipping.
    ///
    /// When the norm is NaN or infinite nothing changes (parameters, moments, `t`) and the step is
    /// refused with [`NonFiniteGradient`]. `grads` is borrowed mutably only to read dfdx's buffers
    /// without copying them; its values are left as they were. A trainable tensor without a
    /// gradient entry counts as a zero gradient (a zeroed entry is added for it).
    pub fn update(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<f32, Cpu>,
        max_norm: Option<f32>,
    ) -> Result<f32, NonFiniteGradient> {
        self.step(model, grads, max_norm, false)
    }

    /// [`Adam::update`], then the trainable tensors' gradients are zero, ready for the next
    /// backward pass without a `zero_grads` (large ones are zeroed on another thread while
    /// dfdx subtracts the steps). When the step is refused the gradients are left as they were.
    pub fn update_and_zero(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<f32, Cpu>,
        max_norm: Option<f32>,
    ) -> Result<f32, NonFiniteGradient> {
        self.step(model, grads, max_norm, true)
    }

    fn step(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<f32, Cpu>,
        max_norm: Option<f32>,
        zero: bool,
    ) -> Result<f32, NonFiniteGradient> {
        let mut norm = SquaredNorm { grads, sum: 0.0 };
        M::iter_tensors(&mut RecursiveWalker { m: &*model, f: &mut norm }).expect("cpu visit");
        let norm = norm.sum.sqrt() as f32;
        if !norm.is_finite() {
            return Err(NonFiniteGradient { norm, step: self.t + 1 });
        }
        let scale = match max_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.t += 1;
        self.modules.take();
        let mut step = Step {
            grads,
            consts: StepConsts::new(&self.cfg, self.t, scale),
            m1: &mut self.m1,
            m2: &mut self.m2,
            scratch: &mut self.scratch,
            next: 0,
            zero,
        };
        M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut step }).expect("cpu visit");
        Ok(norm)
    }

    /// The first and second moments as modules shaped like the model (tensors that are not
    /// trained, such as batch-norm statistics, are zero). Built on the first call after an update.
    pub fn moments(&self) -> (&M, &M) {
        let (m1, m2) = self.modules.get_or_init(|| {
            let (mut a, mut b) = ((self.clone)(&self.zeros), (self.clone)(&self.zeros));
            M::iter_tensors(&mut RecursiveWalker { m: &mut a, f: &mut ToModule { bufs: &self.m1, next: 0 } })
                .expect("cpu visit");
            M::iter_tensors(&mut RecursiveWalker { m: &mut b, f: &mut ToModule { bufs: &self.m2, next: 0 } })
                .expect("cpu visit");
            (a, b)
        });
        (m1, m2)
    }

    /// Saves the moments (`PREFIX_m1.safetensors`, `PREFIX_m2.safetensors`) and `t` with the
    /// configuration (`PREFIX.json`) in `dir`.
    pub fn save(&self, dir: &Path, prefix: &str) -> Result<(), CheckpointError>
    where
        M: SaveToSafetensors<f32, Cpu>,
    {
        let (m1, m2) = self.moments();
        checkpoint::save_weights(m1, &dir.join(format!("{prefix}_m1.safetensors")))?;
        checkpoint::save_weights(m2, &dir.join(format!("{prefix}_m2.safetensors")))?;
        checkpoint::save_json(&(self.t, self.cfg), &dir.join(format!("{prefix}.json")))
    }

    /// Restores what [`save`](Adam::save) wrote; on an error the optimizer is left unchanged.
    pub fn load(&mut self, dir: &Path, prefix: &str) -> Result<(), CheckpointError>
    where
        M: LoadFromSafetensors<f32, Cpu>,
    {
        let (mut a, mut b) = ((self.clone)(&self.zeros), (self.clone)(&self.zeros));
        checkpoint::load_weights(&mut a, &dir.join(format!("{prefix}_m1.safetensors")))?;
        checkpoint::load_weights(&mut b, &dir.join(format!("{prefix}_m2.safetensors")))?;
        let (t, cfg) = checkpoint::load_json(&dir.join(format!("{prefix}.json")))?;
        M::iter_tensors(&mut RecursiveWalker { m: &a, f: &mut FromModule { bufs: &mut self.m1, next: 0 } })
            .expect("cpu visit");
        M::iter_tensors(&mut RecursiveWalker { m: &b, f: &mut FromModule { bufs: &mut self.m2, next: 0 } })
            .expect("cpu visit");
        (self.t, self.cfg) = (t, cfg);
        self.modules = OnceLock::from((a, b));
        Ok(())
    }
}

/// Copies every tensor's values from `src` into `dst` (both own separate buffers and ids, unlike
/// `clone`): the hard target-network update.
pub fn copy_params<M: TensorCollection<f32, D>, D: dfdx::tensor_ops::Device<f32>>(dst: &mut M, src: &M) {
    polyak_update(dst, src, 1.0);
}

/// `dst = tau * src + (1 - tau) * dst` on every tensor: the soft target-network update.
pub fn polyak_update<M: TensorCollection<f32, D>, D: dfdx::tensor_ops::Device<f32>>(dst: &mut M, src: &M, tau: f32) {
    struct Mix(f32);
    impl<D: dfdx::tensor_ops::Device<f32>> TensorVisitor<f32, D> for Mix {
        type Viewer = (ViewTensorMut, ViewTensorRef);
        type Err = D::Err;
        type E2 = f32;
        type D2 = D;
        fn visit<S: Shape>(
            &mut self,
            _: TensorOptions<S, f32, D>,
            (d, s): (&mut Tensor<S, f32, D>, &Tensor<S, f32, D>),
        ) -> Result<Option<Tensor<S, f32, D>>, D::Err> {
            let sv = s.as_vec();
            if self.0 >= 1.0 {
                d.copy_from(&sv);
            } else {
                let mut dv = d.as_vec();
                for (x, y) in dv.iter_mut().zip(&sv) {
                    *x = self.0 * y + (1.0 - self.0) * *x;
                }
                d.copy_from(&dv);
            }
            Ok(None)
        }
    }
    M::iter_tensors(&mut RecursiveWalker { m: (dst, src), f: &mut Mix(tau) }).expect("cpu visit");
}
/// Adds the gradients of `model`'s trainable tensors in `from` into `into` (tensor by tensor, in
/// visiting order): how gradients of parts of a batch, computed on separate threads, become the
/// batch's.
pub fn add_gradients<M: TensorCollection<f32, Cpu>>(
    model: &M,
    into: &mut Gradients<f32, Cpu>,
    from: &mut Gradients<f32, Cpu>,
) {
    struct Add<'a>(&'a mut Gradients<f32, Cpu>, &'a mut Gradients<f32, Cpu>);
    impl TensorVisitor<f32, Cpu> for Add<'_> {
        type Viewer = ViewTensorRef;
        type Err = CpuError;
        type E2 = f32;
        type D2 = Cpu;
        fn visit<S: Shape>(
            &mut self,
            opts: TensorOptions<S, f32, Cpu>,
            p: &Tensor<S, f32, Cpu>,
        ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
            if opts.do_gradient_update {
                let src: &[f32] = self.1.get_or_alloc_mut(p)?;
                let dst: &mut [f32] = self.0.get_or_alloc_mut(p)?;
                dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
                    d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
                });
            }
            Ok(None)
        }
    }
    M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut Add(into, from) }).expect("cpu visit");
}

#[cfg(test)]
mod tests {
    use super::{check_finite_params, copy_params, polyak_update, Adam, AdamConfig as Cfg, AdamOrder, CHUNK};
    use dfdx::prelude::*;

    type Net = (Linear<3, 8>, ReLU, Linear<8, 2>);

    /// Wide enough that its first weight (200 x 300) goes through the parallel, vectorised paths.
    type Wide = (Linear<300, 200>, ReLU, Linear<200, 3>);

    /// The loop glimpse's Adam ran before it worked in place (for the bit-for-bit comparison).
    fn reference_step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Cfg, t: u64, scale: f32) {
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        for i in 0..p.len() {
            let gi = g[i] * scale;
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
            p[i] -= c.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + c.eps);
        }
    }

    fn data<const I: usize, const O: usize>(
        dev: &Cpu,
    ) -> (Tensor<Rank2<16, I>, f32, Cpu>, Tensor<Rank2<16, O>, f32, Cpu>) {
        (dev.sample_normal(), dev.sample_normal())
    }

    #[test]
    fn skipping_untouched_blocks_changes_no_bit() {
        use super::{adam_block, adam_chunk, StepConsts, BLOCK};
        // Blocks of: all +0 (skipped), -0 gradients, a -0 moment, one live value, -0 weights.
        let n = BLOCK * 7 + 5;
        let mut g = vec![0.0f32; n];
        let mut m = vec![0.0f32; n];
        let v = vec![0.0f32; n];
        let mut p: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        g[BLOCK..2 * BLOCK].fill(-0.0);
        m[2 * BLOCK + 3] = -0.0;
        g[3 * BLOCK + 7] = 0.25;
        m[5 * BLOCK + 1] = 1e-3;
        p[4 * BLOCK..5 * BLOCK].fill(-0.0);
        g[n - 1] = -2.0;
        for order in [AdamOrder::Glimpse, AdamOrder::Dfdx] {
            for scale in [1.0, 0.5] {
                let cfg = Cfg { lr: 1e-2, order, ..Default::default() };
                let k = StepConsts::new(&cfg, 3, scale);
                let (mut m1, mut v1, mut p1) = (m.clone(), v.clone(), p.clone());
                let (mut m2, mut v2, mut p2) = (m.clone(), v.clone(), p.clone());
                adam_chunk(&k, &g, &mut m1, &mut v1, &mut p1);
                adam_block(&k, &g, &mut m2, &mut v2, &mut p2);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&m1), bits(&m2));
                assert_eq!(bits(&v1), bits(&v2));
                assert_eq!(bits(&p1), bits(&p2));
                // The large tensors' path: the steps, then dfdx's `p = 1 * p + (-1) * step`.
                let (mut m3, mut v3) = (m.clone(), v.clone());
                let mut steps = vec![std::mem::MaybeUninit::new(f32::NAN); n];
                adam_chunk(&k, &g, &mut m3, &mut v3, &mut steps);
                let dev = Cpu::default();
                let mut p3 = dev.tensor_from_vec(p.clone(), (n,));
                let steps = dev.tensor_from_vec(steps.iter().map(|s| unsafe { s.assume_init() }).collect(), (n,));
                p3.axpy(1.0, &steps, -1.0);
                assert_eq!(bits(&m1), bits(&m3));
                assert_eq!(bits(&v1), bits(&v3));
                assert_eq!(bits(&p1), bits(&p3.as_vec()));
                assert_ne!(p1, p, "the live values moved");
            }
        }
    }

    #[test]
    fn the_dfdx_order_matches_dfdx_adam_bit_for_bit() {
        let dev = Cpu::seed_from_u64(3);
        let mut a = dev.build_module::<Wide, f32>();
        let mut b = dev.build_module::<Wide, f32>();
        copy_params(&mut b, &a);
        assert!(a.0.weight.shape().num_elements() >= CHUNK);
        // dfdx's defaults, converted to f32 as its kernel does, are ours.
        let defaults = dfdx::optim::AdamConfig::default();
        let ours_default = Cfg::default();
        assert_eq!(
            [defaults.lr as f32, defaults.betas[0] as f32, defaults.betas[1] as f32, defaults.eps as f32],
            [ours_default.lr, ours_default.beta1, ours_default.beta2, ours_default.eps]
        );
        let mut ours = Adam::new(&a, Cfg { lr: 1e-2, order: AdamOrder::Dfdx, ..Default::default() });
        let mut theirs = dfdx::optim::Adam::new(&b, dfdx::optim::AdamConfig { lr: 1e-2, ..Default::default() });
        let (x, y) = data::<300, 3>(&dev);
        let (mut ga, mut gb) = (a.alloc_grads(), b.alloc_grads());
        for _ in 0..6 {
            ga = mse_loss(a.forward(x.trace(ga)), y.clone()).backward();
            ours.update(&mut a, &mut ga, None).unwrap();
            a.zero_grads(&mut ga);
            gb = mse_loss(b.forward(x.trace(gb)), y.clone()).backward();
            dfdx::optim::Optimizer::update(&mut theirs, &mut b, &gb).unwrap();
            b.zero_grads(&mut gb);
        }
        assert_eq!(a.0.weight.as_vec(), b.0.weight.as_vec());
        assert_eq!(a.0.bias.as_vec(), b.0.bias.as_vec());
        assert_eq!(a.2.weight.as_vec(), b.2.weight.as_vec());
        assert_eq!(a.2.bias.as_vec(), b.2.bias.as_vec());
    }

    #[test]
    fn the_glimpse_order_computes_what_the_copying_loop_computed() {
        // Small tensors with clipping (the norm is summed in order, as before), and a wide one
        // without clipping (the parallel path; its norm only decides the clipping factor).
        for (wide, max_norm) in [(false, Some(0.05)), (false, None), (true, None)] {
            let dev = Cpu::seed_from_u64(11);
            let cfg = Cfg { lr: 3e-3, ..Default::default() };
            macro_rules! check {
                ($net:ty, $i:literal, $o:literal) => {{
                    let mut a = dev.build_module::<$net, f32>();
                    let mut opt = Adam::new(&a, cfg);
                    let mut reference: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> =
                        [a.0.weight.as_vec(), a.0.bias.as_vec(), a.2.weight.as_vec(), a.2.bias.as_vec()]
                            .into_iter()
                            .map(|p| (p.clone(), vec![0.0; p.len()], vec![0.0; p.len()]))
                            .collect();
                    let (x, y) = data::<$i, $o>(&dev);
                    let mut grads = a.alloc_grads();
                    let mut clipped = false;
                    for t in 1..=5 {
                        grads = mse_loss(a.forward(x.trace(grads)), y.clone()).backward();
                        let all = [
                            grads.get(&a.0.weight).as_vec(),
                            grads.get(&a.0.bias).as_vec(),
                            grads.get(&a.2.weight).as_vec(),
                            grads.get(&a.2.bias).as_vec(),
                        ];
                        let sum: f64 = all.iter().map(|g| g.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()).sum();
                        let norm = sum.sqrt() as f32;
                        let scale = match max_norm {
                            Some(max) if norm > max => max / (norm + 1e-6),
                            _ => 1.0,
                        };
                        clipped |= scale != 1.0;
                        for ((p, m, v), g) in reference.iter_mut().zip(&all) {
                            reference_step(p, g, m, v, cfg, t, scale);
                        }
                        let reported = opt.update(&mut a, &mut grads, max_norm).unwrap();
                        assert!((reported - norm).abs() <= 1e-6 * norm, "{reported} vs {norm}");
                        if !wide {
                            assert_eq!(reported, norm);
                        }
                        a.zero_grads(&mut grads);
                    }
                    assert_eq!(clipped, max_norm.is_some(), "the clipping case must clip");
                    let ours = [a.0.weight.as_vec(), a.0.bias.as_vec(), a.2.weight.as_vec(), a.2.bias.as_vec()];
                    let (m1, m2) = opt.moments();
                    let m1s = [m1.0.weight.as_vec(), m1.0.bias.as_vec(), m1.2.weight.as_vec(), m1.2.bias.as_vec()];
                    let m2s = [m2.0.weight.as_vec(), m2.0.bias.as_vec(), m2.2.weight.as_vec(), m2.2.bias.as_vec()];
                    for (k, (p, m, v)) in reference.iter().enumerate() {
                        assert_eq!(&ours[k], p, "parameter {k}");
                        assert_eq!(&m1s[k], m, "first moment {k}");
                        assert_eq!(&m2s[k], v, "second moment {k}");
                    }
                }};
            }
            if wide {
                check!(Wide, 300, 3);
            } else {
                check!(Net, 3, 2);
            }
        }
    }

    #[test]
    fn a_non_finite_gradient_changes_nothing() {
        let dev = Cpu::seed_from_u64(5);
        let mut m = dev.build_module::<Wide, f32>();
        let mut opt = Adam::new(&m, Cfg::default());
        let (x, y) = data::<300, 3>(&dev);
        let mut grads = mse_loss(m.forward(x.trace(m.alloc_grads())), y.clone()).backward();
        opt.update(&mut m, &mut grads, Some(1.0)).unwrap();
        let before = (m.0.weight.as_vec(), m.2.bias.as_vec());
        let moments = |o: &Adam<<Wide as BuildOnDevice<Cpu, f32>>::Built>| {
            let (a, b) = o.moments();
            (a.0.weight.as_vec(), b.2.weight.as_vec())
        };
        let moments_before = moments(&opt);
        for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
            let mut grads = mse_loss(m.forward(x.trace(m.alloc_grads())), y.clone()).backward();
            // One bad value in the last tensor visited: the norm is checked before any tensor changes.
            let mut g = grads.get(&m.2.bias).as_vec();
            g[1] = bad;
            grads.get_or_alloc_mut(&m.2.bias).unwrap().copy_from_slice(&g);
            for max_norm in [None, Some(1.0)] {
                let err = opt.update(&mut m, &mut grads, max_norm).unwrap_err();
                assert_eq!(err.step, 2);
                assert_eq!(
                    err.to_string(),
                    format!("the gradient norm is {shown} at optimizer step 2; no parameter was changed")
                );
                assert_eq!(opt.t, 1);
                assert_eq!((m.0.weight.as_vec(), m.2.bias.as_vec()), before);
                assert_eq!(moments(&opt), moments_before);
            }
        }
        check_finite_params(&m).unwrap();
    }

    #[test]
    fn update_and_zero_is_update_then_zero_grads() {
        // Wide's first weight takes the parallel path (the gradient zeroed beside dfdx's
        // subtraction), the other tensors the small one.
        let dev = Cpu::seed_from_u64(8);
        let mut a = dev.build_module::<Wide, f32>();
        let mut b = dev.build_module::<Wide, f32>();
        copy_params(&mut b, &a);
        let (mut opt_a, mut opt_b) = (Adam::new(&a, Cfg::default()), Adam::new(&b, Cfg::default()));
        let (x, y) = data::<300, 3>(&dev);
        let (mut grads_a, mut grads_b) = (a.alloc_grads(), b.alloc_grads());
        let values = |m: &<Wide as BuildOnDevice<Cpu, f32>>::Built| [m.0.weight.as_vec(), m.2.bias.as_vec()];
        for _ in 0..3 {
            a.zero_grads(&mut grads_a);
            grads_a = mse_loss(a.forward(x.trace(grads_a)), y.clone()).backward();
            grads_b = mse_loss(b.forward(x.trace(grads_b)), y.clone()).backward();
            let norm_a = opt_a.update(&mut a, &mut grads_a, Some(1.0)).unwrap();
            let norm_b = opt_b.update_and_zero(&mut b, &mut grads_b, Some(1.0)).unwrap();
            assert_eq!(norm_a, norm_b);
            assert_eq!(values(&a), values(&b));
            for g in
                [grads_b.get(&b.0.weight).as_vec(), grads_b.get(&b.0.bias).as_vec(), grads_b.get(&b.2.weight).as_vec()]
            {
                assert!(g.iter().all(|&v| v.to_bits() == 0), "gradients left at +0");
            }
        }
        // A refused step leaves the gradients as they were.
        grads_b = mse_loss(b.forward(x.trace(grads_b)), y.clone()).backward();
        let mut g = grads_b.get(&b.0.weight).as_vec();
        g[7] = f32::NAN;
        grads_b.get_or_alloc_mut(&b.0.weight).unwrap().copy_from_slice(&g);
        let bias = grads_b.get(&b.2.bias).as_vec();
        assert!(opt_b.update_and_zero(&mut b, &mut grads_b, None).is_err());
        let after = grads_b.get(&b.0.weight).as_vec();
        assert_eq!(
            after.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            g.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(grads_b.get(&b.2.bias).as_vec(), bias);
    }

    #[test]
    fn check_finite_params_names_the_first_bad_tensor() {
        let dev = Cpu::seed_from_u64(2);
        let mut m = dev.build_module::<Net, f32>();
        assert!(check_finite_params(&m).is_ok());
        let mut w = m.2.weight.as_vec();
        w[3] = f32::NEG_INFINITY;
        w[5] = f32::NAN;
        m.2.weight.copy_from(&w);
        let err = check_finite_params(&m).unwrap_err();
        assert_eq!((err.name.as_str(), err.count, err.len, err.first_index), ("2.weight", 2, 16, 3));
        assert_eq!(err.first_value, f32::NEG_INFINITY);
        assert!(err.to_string().starts_with("parameter 2.weight has 2 non-finite values out of 16"), "{err}");
    }

    #[test]
    fn state_round_trips() {
        let dev = Cpu::seed_from_u64(3);
        let mut a = dev.build_module::<Net, f32>();
        let mut ours = Adam::new(&a, Cfg { lr: 1e-2, ..Default::default() });
        let (x, y) = data::<3, 2>(&dev);
        let mut ga = a.alloc_grads();
        for _ in 0..5 {
            ga = mse_loss(a.forward(x.trace(ga)), y.clone()).backward();
            ours.update(&mut a, &mut ga, None).unwrap();
            a.zero_grads(&mut ga);
        }
        let dir = std::env::temp_dir().join(format!("glimpse-adam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ours.save(&dir, "adam").unwrap();
        let mut restored = Adam::new(&a, Cfg::default());
        restored.load(&dir, "adam").unwrap();
        assert_eq!(restored.t, 5);
        assert_eq!(restored.cfg.lr, 1e-2);
        assert_eq!(restored.moments().0 .2.weight.as_vec(), ours.moments().0 .2.weight.as_vec());
        assert_eq!(restored.moments().1 .0.bias.as_vec(), ours.moments().1 .0.bias.as_vec());
        assert!(ours.moments().1 .0.bias.as_vec().iter().any(|&v| v != 0.0));
        // The restored optimizer continues exactly as the original.
        let mut b = dev.build_module::<Net, f32>();
        copy_params(&mut b, &a);
        let mut gb = b.alloc_grads();
        ga = mse_loss(a.forward(x.trace(ga)), y.clone()).backward();
        gb = mse_loss(b.forward(x.trace(gb)), y.clone()).backward();
        ours.update(&mut a, &mut ga, None).unwrap();
        restored.update(&mut b, &mut gb, None).unwrap();
        assert_eq!(a.0.weight.as_vec(), b.0.weight.as_vec());
        // A file of the wrong shape is an error and leaves the optimizer as it was.
        let mut other = Adam::new(&dev.build_module::<(Linear<3, 4>, ReLU, Linear<4, 2>), f32>(), Cfg::default());
        assert!(other.load(&dir, "adam").is_err());
        assert_eq!(other.t, 0);
        // A configuration saved before `order` existed still loads (as the Glimpse order).
        let old: Cfg = serde_json::from_str(r#"{"lr":0.01,"beta1":0.9,"beta2":0.999,"eps":1e-8}"#).unwrap();
        assert_eq!(old.order, AdamOrder::Glimpse);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clipping_bounds_the_step_and_reports_the_norm() {
        let dev = Cpu::seed_from_u64(0);
        let mut m = dev.build_module::<Linear<2, 1>, f32>();
        let mut opt = Adam::new(&m, Cfg::default());
        let x = dev.tensor([[3.0f32, 4.0]]);
        let g = m.alloc_grads();
        let out = m.forward(x.trace(g));
        // d(sum out)/dW = x, d/db = 1: norm sqrt(9 + 16 + 1).
        let mut grads = out.sum().backward();
        let norm = opt.update(&mut m, &mut grads, Some(1.0)).unwrap();
        assert!((norm - 26f32.sqrt()).abs() < 1e-5);
        // The gradients are read, not changed.
        assert_eq!(grads.get(&m.weight).as_vec(), vec![3.0, 4.0]);
    }
    #[test]
    fn copies_are_independent_and_polyak_mixes() {
        let dev = Cpu::seed_from_u64(1);
        let a = dev.build_module::<Linear<2, 2>, f32>();
        let mut b = dev.build_module::<Linear<2, 2>, f32>();
        let b0 = b.weight.as_vec();
        polyak_update(&mut b, &a, 0.25);
        for ((x, y), z) in b.weight.as_vec().iter().zip(a.weight.as_vec()).zip(&b0) {
            assert!((x - (0.25 * y + 0.75 * z)).abs() < 1e-6);
        }
        copy_params(&mut b, &a);
        assert_eq!(b.weight.as_vec(), a.weight.as_vec());
        // The copy owns its buffers: changing the source later leaves it alone.
        let mut a = a;
        polyak_update(&mut a, &b, 0.5);
        a.weight.copy_from(&[0.0; 4]);
        assert_ne!(b.weight.as_vec(), vec![0.0; 4]);
    }
}
