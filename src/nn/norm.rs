//! [`BatchNorm2D`]: batch normalisation over `(batch, C, H, W)` images with one fused forward and
//! one fused backward op on the tape (dfdx's own is a chain of broadcast ops, several times
//! slower), and [`LeakyReLU`], likewise fused.
//!
//! The parameters, their names and the running statistics are those of dfdx's `BatchNorm2D` (and
//! PyTorch's `BatchNorm2d`): `scale` (1), `bias` (0), `running_mean` (0), `running_var` (1),
//! momentum 0.1, epsilon 1e-5; the running variance takes the unbiased batch variance. So
//! checkpoints are interchangeable with dfdx's layer.

use dfdx::nn::{
    BuildOnDevice, Module, ModuleMut, ModuleVisitor, NonMutableModule, ScalarOptions, TensorCollection, TensorOptions,
    ZeroSizedModule,
};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::kernels::{raw_grad, take_contiguous, tensor_vec};

/// Per-channel totals of `f(plane index, plane)` over the `hw`-sized planes of `values`: the
/// planes in parallel, each total added in plane order, so the result does not depend on the
/// thread count.
fn channel_sums<const C: usize>(values: &[f32], hw: usize, f: impl Fn(usize, &[f32]) -> f64 + Sync) -> Vec<f64> {
    let pairs = channel_sum_pairs::<C>(values, hw, |k, p| (f(k, p), 0.0));
    pairs.into_iter().map(|(a, _)| a).collect()
}

/// [`channel_sums`] of two totals at once (one pass over the planes for both).
fn channel_sum_pairs<const C: usize>(
    values: &[f32],
    hw: usize,
    f: impl Fn(usize, &[f32]) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    let planes: Vec<(f64, f64)> =
        values.par_chunks(hw).with_min_len(MIN_PLANES_PER_TASK).enumerate().map(|(k, p)| f(k, p)).collect();
    let mut sums = vec![(0.0f64, 0.0f64); C];
    for (k, (a, b)) in planes.iter().enumerate() {
        sums[k % C].0 += a;
        sums[k % C].1 += b;
    }
    sums
}

/// Planes per rayon task (7x7 planes are 49 values: one task each cost more than the work).
const MIN_PLANES_PER_TASK: usize = 64;

/// `Σ term(a[i], b[i])` in f64, in eight interleaved partial sums (vectorised; one running f64
/// sum is a chain of dependent adds, which made batch norm slower than PyTorch's), compiled for
/// AVX-512 where the CPU has it (the same operations, so the same bits): [`lane_sum_pair`]'s
/// first total.
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f64) -> f64 {
    lane_sum_pair(a, b, term, |_, _| 0.0).0
}

/// `(Σ first(a[i], b[i]), Σ second(a[i], b[i]))` in one pass, each in eight interleaved partial
/// sums added pairwise at the end.
fn lane_sum_pair(
    a: &[f32],
    b: &[f32],
    first: impl Fn(f32, f32) -> f64,
    second: impl Fn(f32, f32) -> f64,
) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { lane_sum_pair_avx512(a, b, first, second) };
    }
    lane_sum_pair_portable(a, b, first, second)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sum_pair_avx512(
    a: &[f32],
    b: &[f32],
    first: impl Fn(f32, f32) -> f64,
    second: impl Fn(f32, f32) -> f64,
) -> (f64, f64) {
    lane_sum_pair_portable(a, b, first, second)
}

#[inline(always)]
fn lane_sum_pair_portable(
    a: &[f32],
    b: &[f32],
    first: impl Fn(f32, f32) -> f64,
    second: impl Fn(f32, f32) -> f64,
) -> (f64, f64) {
    let (mut acc, mut acc2) = ([0.0f64; 8], [0.0f64; 8]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += first(x[l], y[l]);
            acc2[l] += second(x[l], y[l]);
        }
    }
    for (l, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += first(x, y);
        acc2[l] += second(x, y);
    }
    let total = |acc: [f64; 8]| ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    (total(acc), total(acc2))
}

/// `f(a[i], b[i], &mut out[i])` for every `i`, compiled for AVX-512 where the CPU has it.
fn zip_apply(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32, &mut f32)) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { zip_apply_avx512(a, b, out, f) };
    }
    zip_apply_portable(a, b, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn zip_apply_avx512(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32, &mut f32)) {
    zip_apply_portable(a, b, out, f)
}

/// `f(&mut a[i], &mut b[i])` for every `i`, compiled for AVX-512 where the CPU has it.
fn pair_apply(a: &mut [f32], b: &mut [f32], f: impl Fn(&mut f32, &mut f32)) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { pair_apply_avx512(a, b, f) };
    }
    a.iter_mut().zip(b).for_each(|(x, y)| f(x, y))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pair_apply_avx512(a: &mut [f32], b: &mut [f32], f: impl Fn(&mut f32, &mut f32)) {
    a.iter_mut().zip(b).for_each(|(x, y)| f(x, y))
}

/// `f(&mut v[i])` for every `i`, compiled for AVX-512 where the CPU has it.
fn map_in_place(v: &mut [f32], f: impl Fn(&mut f32)) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { map_in_place_avx512(v, f) };
    }
    v.iter_mut().for_each(f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_in_place_avx512(v: &mut [f32], f: impl Fn(&mut f32)) {
    v.iter_mut().for_each(f)
}

#[inline(always)]
fn zip_apply_portable(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32, &mut f32)) {
    for ((&x, &y), o) in a.iter().zip(b).zip(out) {
        f(x, y, o);
    }
}

/// Device-free description of [`BatchNorm2D`], for module tuples built with `dev.build_module`.
pub mod builder {
    /// Batch normalisation of `C` channels.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct BatchNorm2D<const C: usize>;
}

impl<const C: usize> BuildOnDevice<Cpu, f32> for builder::BatchNorm2D<C> {
    type Built = BatchNorm2D<C, f32, Cpu>;
    fn try_build_on_device(device: &Cpu) -> Result<Self::Built, CpuError> {
        Self::Built::try_build(device)
    }
}

/// Batch normalisation of `C` channels, as `torch.nn.BatchNorm2d`: `forward_mut` normalises with
/// the batch's statistics and updates the running ones; `forward` (inference) uses the running
/// statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm2D<const C: usize, E: Dtype, D: Storage<E>> {
    /// Per-channel scale (gamma).
    pub scale: Tensor<Rank1<C>, E, D>,
    /// Per-channel shift (beta).
    pub bias: Tensor<Rank1<C>, E, D>,
    /// Running mean of each channel.
    pub running_mean: Tensor<Rank1<C>, E, D>,
    /// Running (unbiased) variance of each channel.
    pub running_var: Tensor<Rank1<C>, E, D>,
    /// Added to the variance before the square root.
    pub epsilon: f64,
    /// Weight of the new batch in the running statistics.
    pub momentum: f64,
}

impl<const C: usize> TensorCollection<f32, Cpu> for BatchNorm2D<C, f32, Cpu> {
    type To<E2: Dtype, D2: Device<E2>> = BatchNorm2D<C, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, f32, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("scale", |s| &s.scale, |s| &mut s.scale, TensorOptions::reset_to_ones()),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
                Self::tensor(
                    "running_mean",
                    |s| &s.running_mean,
                    |s| &mut s.running_mean,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
                Self::tensor(
                    "running_var",
                    |s| &s.running_var,
                    |s| &mut s.running_var,
                    TensorOptions::detached(|t| t.try_fill_with_ones()),
                ),
                Self::scalar("epsilon", |s| &s.epsilon, |s| &mut s.epsilon, ScalarOptions::from_default(1e-5)),
                Self::scalar("momentum", |s| &s.momentum, |s| &mut s.momentum, ScalarOptions::from_default(0.1)),
            ),
            |(scale, bias, running_mean, running_var, epsilon, momentum)| BatchNorm2D {
                scale,
                bias,
                running_mean,
                running_var,
                epsilon,
                momentum,
            },
        )
    }
}

/// Inference: the running statistics.
impl<const C: usize, B: Dim, H: Dim, W: Dim> Module<Tensor<(B, Const<C>, H, W), f32, Cpu>>
    for BatchNorm2D<C, f32, Cpu>
{
    type Output = Tensor<(B, Const<C>, H, W), f32, Cpu>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, Const<C>, H, W), f32, Cpu>) -> Result<Self::Output, CpuError> {
        let (mean, var) = (tensor_vec(&self.running_mean)?, tensor_vec(&self.running_var)?);
        let (scale, bias) = (tensor_vec(&self.scale)?, tensor_vec(&self.bias)?);
        let (x, mut values) = take_contiguous(x)?;
        let hw = x.shape().2.size() * x.shape().3.size();
        for (k, plane) in values.chunks_mut(hw.max(1)).enumerate() {
            let c = k % C;
            let a = scale[c] / (var[c] + self.epsilon as f32).sqrt();
            let shift = bias[c] - mean[c] * a;
            plane.iter_mut().for_each(|v| *v = *v * a + shift);
        }
        x.device().try_tensor_from_vec(values, *x.shape())
    }
}

/// Training: the batch's statistics (biased variance for normalising, unbiased for the running
/// variance), updating the running statistics.
impl<const C: usize, B: Dim, H: Dim, W: Dim, T: Tape<f32, Cpu>> ModuleMut<Tensor<(B, Const<C>, H, W), f32, Cpu, T>>
    for BatchNorm2D<C, f32, Cpu>
{
    type Output = Tensor<(B, Const<C>, H, W), f32, Cpu, T>;
    type Error = CpuError;

    fn try_forward_mut(&mut self, x: Tensor<(B, Const<C>, H, W), f32, Cpu, T>) -> Result<Self::Output, CpuError> {
        let shape = *x.shape();
        let (b, hw) = (shape.0.size(), shape.2.size() * shape.3.size());
        let n = b * hw;
        assert!(n > 1, "BatchNorm2D in training needs more than one value per channel, got {n}");
        let (x, mut values) = take_contiguous(x)?;
        let (x, mut tape) = x.split_tape();
        // Per-channel mean, then the sum of squared deviations (two passes, f64 sums).
        let sums = channel_sums::<C>(&values, hw, |_, p| lane_sum(p, p, |x, _| x as f64));
        let mean: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
        let squares = channel_sums::<C>(&values, hw, |k, p| {
            let m = mean[k % C];
            lane_sum(p, p, |x, _| (x as f64 - m) * (x as f64 - m))
        });
        let var: Vec<f64> = squares.iter().map(|s| s / n as f64).collect();
        let inv_std: Vec<f32> = var.iter().map(|v| (1.0 / (v + self.epsilon).sqrt()) as f32).collect();
        let (scale, bias) = (tensor_vec(&self.scale)?, tensor_vec(&self.bias)?);
        // values become x-hat; the output is x-hat * scale + bias.
        let mut out = vec![0.0f32; values.len()];
        let planes = values.par_chunks_mut(hw).zip(out.par_chunks_mut(hw)).with_min_len(MIN_PLANES_PER_TASK);
        planes.enumerate().for_each(|(k, (plane, o))| {
            let (c, m) = (k % C, mean[k % C] as f32);
            let (inv, sc, bi) = (inv_std[c], scale[c], bias[c]);
            pair_apply(plane, o, |v, o| {
                *v = (*v - m) * inv;
                *o = *v * sc + bi;
            });
        });
        let mom = self.momentum;
        let running = |old: Vec<f32>, new: &[f64]| -> Vec<f32> {
            old.iter().zip(new).map(|(&o, &v)| ((1.0 - mom) * o as f64 + mom * v) as f32).collect()
        };
        let unbiased: Vec<f64> = var.iter().map(|v| v * n as f64 / (n - 1) as f64).collect();
        let new_mean = running(tensor_vec(&self.running_mean)?, &mean);
        let new_var = running(tensor_vec(&self.running_var)?, &unbiased);
        self.running_mean.copy_from(&new_mean);
        self.running_var.copy_from(&new_var);
        let out = x.device().try_tensor_from_vec(out, shape)?;
        if T::OWNS_TAPE {
            let (x_g, s_g, b_g, out_g) = (x.ghost(), self.scale.ghost(), self.bias.ghost(), out.ghost());
            let xhat = values;
            let weight_grad = !super::freeze::parameters_frozen();
            tape.add_backward_op(move |grads| {
                let (dy, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
                // SAFETY: distinct tensor ids; `grads` outlives this closure body.
                let (dy, dx) = unsafe { (dy.slice(), dx.slice()) };
                let sums = channel_sum_pairs::<C>(dy, hw, |k, g| {
                    lane_sum_pair(g, &xhat[k * hw..][..hw], |g, _| g as f64, |g, x| (g * x) as f64)
                });
                let (sum_dy, sum_dy_xhat): (Vec<f64>, Vec<f64>) = sums.into_iter().unzip();
                if weight_grad {
                    let (ds, db) = (raw_grad!(grads, &s_g), raw_grad!(grads, &b_g));
                    // SAFETY: as above.
                    let (ds, db) = unsafe { (ds.slice(), db.slice()) };
                    for c in 0..C {
                        db[c] += sum_dy[c] as f32;
                        ds[c] += sum_dy_xhat[c] as f32;
                    }
                }
                // dx = scale * inv_std * (dy - mean(dy) - x-hat * mean(dy * x-hat)).
                let planes = dy.par_chunks(hw).zip(xhat.par_chunks(hw)).zip(dx.par_chunks_mut(hw));
                let planes = planes.with_min_len(MIN_PLANES_PER_TASK);
                planes.enumerate().for_each(|(k, ((g, xh), dx))| {
                    let c = k % C;
                    let (mean_dy, mean_dyx) = ((sum_dy[c] / n as f64) as f32, (sum_dy_xhat[c] / n as f64) as f32);
                    let a = scale[c] * inv_std[c];
                    zip_apply(g, xh, dx, |g, x, d| *d += a * (g - mean_dy - x * mean_dyx));
                });
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

/// `max(x, 0) + slope * min(x, 0)` with `slope = PERCENT / 100` (DCGAN's discriminator: `LeakyReLU<20>`),
/// one fused op forward and backward.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeakyReLU<const PERCENT: u32>;
impl<const PERCENT: u32> ZeroSizedModule for LeakyReLU<PERCENT> {}
impl<const PERCENT: u32> NonMutableModule for LeakyReLU<PERCENT> {}

impl<const PERCENT: u32, S: Shape, T: Tape<f32, Cpu>> Module<Tensor<S, f32, Cpu, T>> for LeakyReLU<PERCENT> {
    type Output = Tensor<S, f32, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, f32, Cpu, T>) -> Result<Self::Output, CpuError> {
        let slope = PERCENT as f32 / 100.0;
        let (x, mut values) = take_contiguous(x)?;
        let (x, mut tape) = x.split_tape();
        map_in_place(&mut values, |v| *v = if *v > 0.0 { *v } else { *v * slope });
        // The backward pass needs the outputs' signs: a plain copy (dfdx's `as_vec` walks the
        // tensor element by element, 3% of a GAN step).
        let signs = if T::OWNS_TAPE { values.clone() } else { Vec::new() };
        let out = x.device().try_tensor_from_vec(values, *x.shape())?;
        if T::OWNS_TAPE {
            let (x_g, out_g) = (x.ghost(), out.ghost());
            tape.add_backward_op(move |grads| {
                let (dy, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
                // SAFETY: two distinct tensor ids; `grads` outlives this closure body.
                let (dy, dx) = unsafe { (dy.slice(), dx.slice()) };
                zip_apply(dy, &signs, dx, |g, y, d| *d += if y > 0.0 { g } else { g * slope });
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::nn::builders as dfdx_builders;

    fn input(dev: &Cpu) -> Tensor<(usize, Const<3>, usize, usize), f32, Cpu> {
        let values: Vec<f32> = (0..4 * 3 * 5 * 2).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3).collect();
        dev.tensor_from_vec(values, (4, Const::<3>, 5, 2))
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{i}: {x} vs {y}");
        }
    }

    /// Ours and dfdx's layer, with the same non-trivial scale and bias, agree on outputs,
    /// gradients (input, scale, bias) and running statistics, in training and inference.
    #[test]
    fn batch_norm_matches_dfdx_forward_backward_and_running_statistics() {
        let dev = Cpu::seed_from_u64(0);
        let mut ours = dev.build_module::<builder::BatchNorm2D<3>, f32>();
        let mut theirs = dev.build_module::<dfdx_builders::BatchNorm2D<3>, f32>();
        for bn_scale in [&mut ours.scale, &mut theirs.scale] {
            bn_scale.copy_from(&[0.5, 1.5, -2.0]);
        }
        ours.bias.copy_from(&[0.1, -0.2, 0.3]);
        theirs.bias.copy_from(&[0.1, -0.2, 0.3]);
        let weights: Vec<f32> = (0..120).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.25).collect();
        let w = dev.tensor_from_vec(weights, (4, Const::<3>, 5, 2));
        let mut grads_o = Gradients::leaky();
        let x = input(&dev);
        let y = ours.forward_mut(x.clone().traced(grads_o));
        let y_values = y.as_vec();
        grads_o = (y * w.clone()).sum().backward();
        let mut grads_t = Gradients::leaky();
        let x2 = input(&dev);
        let y2 = theirs.forward_mut(x2.clone().traced(grads_t));
        close(&y_values, &y2.as_vec(), 1e-5);
        grads_t = (y2 * w).sum().backward();
        close(&grads_o.get(&x).as_vec(), &grads_t.get(&x2).as_vec(), 1e-4);
        close(&grads_o.get(&ours.scale).as_vec(), &grads_t.get(&theirs.scale).as_vec(), 1e-4);
        close(&grads_o.get(&ours.bias).as_vec(), &grads_t.get(&theirs.bias).as_vec(), 1e-4);
        close(&ours.running_mean.as_vec(), &theirs.running_mean.as_vec(), 1e-5);
        close(&ours.running_var.as_vec(), &theirs.running_var.as_vec(), 1e-5);
        close(&ours.forward(input(&dev)).as_vec(), &theirs.forward(input(&dev)).as_vec(), 1e-5);
    }

    /// Away from 0 (where PyTorch's gradient is the slope, as ours, and dfdx's is 1).
    #[test]
    fn leaky_relu_matches_dfdx_prelu_forward_and_backward() {
        let dev = Cpu::seed_from_u64(0);
        let x = input(&dev) + 0.05;
        let y = LeakyReLU::<20>.forward(x.leaky_trace());
        let expected = x.clone().prelu(0.2).as_vec();
        close(&y.as_vec(), &expected, 0.0);
        let g = y.sum().backward();
        let g2 = x.leaky_trace().prelu(0.2).sum().backward();
        close(&g.get(&x).as_vec(), &g2.get(&x).as_vec(), 0.0);
    }
}
