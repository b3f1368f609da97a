//! [`FastTanh`]: dfdx's `Tanh` computed without libm, so that the loop vectorizes; [`FastReLU`]:
//! dfdx's `ReLU` in one pass each way.
//!
//! libm's `tanhf` costs about 20 ns a value: 40% of a PPO run on CartPole went there. Here
//! `tanh(x) = 1 - 2 / (e^{2|x|} + 1)` (sign restored) with a branch-free `e^x` (a degree-7
//! polynomial after range reduction), and an odd Taylor polynomial for `|x| < 0.3`, where the
//! first form loses bits to cancellation. The error is below 4e-7 relative and 1e-7 absolute
//! (tested against f64 over the whole range); the gradient is `1 - y²`, as dfdx's.

use dfdx::nn::{Module, NonMutableModule, ZeroSizedModule};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::kernels::{raw_grad, take_contiguous, NnFloat};

/// `tanh`, element by element, for any shape and tape: dfdx's `Tanh` layer, several times
/// faster (see the module docs). Use it in module tuples in place of `Tanh`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastTanh;

impl ZeroSizedModule for FastTanh {}

impl<S: Shape, E: NnFloat, T: Tape<E, Cpu>> Module<Tensor<S, E, Cpu, T>> for FastTanh {
    type Output = Tensor<S, E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, E, Cpu, T>) -> Result<Self::Output, CpuError> {
        from_output_op(x, tanh_in_place, |y| E::one() - y * y)
    }
}

/// `max(x, 0)`, element by element, for any shape and tape: dfdx's `ReLU` layer with the same
/// values and gradients, bit for bit, in one vectorized pass each way. dfdx's keeps its input
/// for the backward pass, so it copies it before working in place, and walks both passes
/// through its generic strided loops: on `mnist_cnn`'s first feature maps that was a fifth of an
/// epoch. Here the derivative is read off the output (`y > 0` exactly where `x > 0`).
#[derive(Debug, Clone, Copy, Default)]
pub struct FastReLU;

impl ZeroSizedModule for FastReLU {}
impl NonMutableModule for FastReLU {}

impl<S: Shape, E: NnFloat, T: Tape<E, Cpu>> Module<Tensor<S, E, Cpu, T>> for FastReLU {
    type Output = Tensor<S, E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, E, Cpu, T>) -> Result<Self::Output, CpuError> {
        let relu = |v: &mut [E]| {
            v.par_chunks_mut(CHUNK)
                .with_min_len(MIN_CHUNKS_PER_TASK)
                .for_each(|c| c.iter_mut().for_each(|x| *x = x.max(E::zero())))
        };
        from_output_op(x, relu, |y| if y > E::zero() { E::one() } else { E::zero() })
    }
}

/// An element-wise op whose derivative is a function of its output: `apply` computes the
/// output in place on a copy of `x`, and the backward pass adds `g * derivative(y)` into the
/// input's gradient.
fn from_output_op<S: Shape, E: NnFloat, T: Tape<E, Cpu>>(
    x: Tensor<S, E, Cpu, T>,
    apply: impl FnOnce(&mut [E]),
    derivative: impl Fn(E) -> E + Send + Sync + 'static,
) -> Result<Tensor<S, E, Cpu, T>, CpuError> {
    let (x, mut values) = take_contiguous(x)?;
    let (x, mut tape) = x.split_tape();
    apply(&mut values);
    if !T::OWNS_TAPE {
        return Ok(x.device().try_tensor_from_vec(values, *x.shape())?.put_tape(tape));
    }
    let out = x.device().try_tensor_from_vec(values.clone(), *x.shape())?;
    let (x_g, out_g) = (x.ghost(), out.ghost());
    tape.add_backward_op(move |grads| {
        let (gout, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
        // SAFETY: distinct tensor ids; `grads` outlives this closure body.
        let (gout, dx) = unsafe { (gout.slice(), dx.slice()) };
        let chunks = dx.par_chunks_mut(CHUNK).zip(gout.par_chunks(CHUNK)).zip(values.par_chunks(CHUNK));
        chunks.with_min_len(MIN_CHUNKS_PER_TASK).for_each(|((d, g), y)| {
            for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
                *d += g * derivative(y);
            }
        });
        Ok(())
    });
    Ok(out.put_tape(tape))
}

/// Elements per chunk of the element-wise loops.
const CHUNK: usize = 1 << 12;
/// Chunks per rayon task: tensors under 64k elements stay on the calling thread.
const MIN_CHUNKS_PER_TASK: usize = 16;

/// Replaces every value by its `tanh` ([`tanh_f32`] for `f32`, the standard library's for `f64`).
pub(crate) fn tanh_in_place<E: NnFloat>(v: &mut [E]) {
    if let Some(v) = as_f32(v) {
        v.par_chunks_mut(CHUNK).with_min_len(MIN_CHUNKS_PER_TASK).for_each(tanh_f32_slice);
    } else {
        v.iter_mut().for_each(|x| *x = x.tanh());
    }
}

fn as_f32<E: NnFloat>(v: &mut [E]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>())
        // SAFETY: E is f32, checked just above.
        .then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len()) })
}

fn tanh_f32_slice(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { tanh_f32_avx512(v) };
    }
    v.iter_mut().for_each(|x| *x = tanh_f32(*x));
}

/// The same loop compiled for AVX-512: the same operations (no fused multiply-adds), so the
/// same bits as the portable loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tanh_f32_avx512(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = tanh_f32(*x));
}

/// `tanh(x)` for `f32`, branch-free (see the module docs); NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let e = exp_f32(a + a);
    let far = 1.0 - 2.0 / (e + 1.0);
    // Odd Taylor series of tanh up to x^9; its first left-out term is below 2e-8 at 0.3.
    let x2 = x * x;
    let near = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))));
    if a < 0.3 {
        near
    } else {
        far.copysign(x)
    }
}

/// `e^x` for `f32`, branch-free: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its Taylor
/// polynomial to degree 7 (relative error under 6e-9), `2^n` put in the exponent bits. Inputs
/// are clamped to [-87, 88], where the result is a normal float.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to the nearest integer, with plain additions.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // n as an integer, read off t's low bits (a float-to-int cast would not vectorize: it saturates).
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_f32_matches_f64_everywhere() {
        let (mut max_rel, mut max_abs) = (0.0f64, 0.0f64);
        let mut x = -20.0f32;
        while x <= 20.0 {
            let got = tanh_f32(x) as f64;
            let want = (x as f64).tanh();
            max_abs = max_abs.max((got - want).abs());
            if want != 0.0 {
                max_rel = max_rel.max(((got - want) / want).abs());
            }
            x += 1.0e-4;
        }
        for x in [1e-30f32, 1e-10, 1e-5, -1e-5, 0.299_999, 0.3, 0.300_001] {
            let (got, want) = (tanh_f32(x) as f64, (x as f64).tanh());
            max_rel = max_rel.max(((got - want) / want).abs());
        }
        assert!(max_rel < 4e-7, "relative error {max_rel:e}");
        assert!(max_abs < 1e-7, "absolute error {max_abs:e}");
        assert_eq!(tanh_f32(0.0), 0.0);
        assert_eq!((tanh_f32(f32::INFINITY), tanh_f32(f32::NEG_INFINITY)), (1.0, -1.0));
        assert_eq!((tanh_f32(100.0), tanh_f32(-100.0)), (1.0, -1.0));
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    #[test]
    fn vector_and_portable_loops_give_the_same_bits() {
        let xs: Vec<f32> = (0..10_000).map(|i| (i as f32 - 5000.0) * 1.3e-3).collect();
        let mut v = xs.clone();
        tanh_f32_slice(&mut v);
        for (x, y) in xs.iter().zip(&v) {
            assert_eq!(tanh_f32(*x).to_bits(), y.to_bits(), "x = {x}");
        }
    }

    #[test]
    fn forward_and_gradient_match_dfdx_tanh() {
        let dev = Cpu::default();
        let x: Tensor<Rank2<3, 70_000>, f32, Cpu> = dev.sample_normal();
        let w: Tensor<Rank2<3, 70_000>, f32, Cpu> = dev.sample_normal();
        let ours = FastTanh.forward(x.leaky_trace());
        let theirs = x.leaky_trace().tanh();
        for (a, b) in ours.as_vec().iter().zip(theirs.as_vec()) {
            assert!((a - b).abs() <= 2e-7, "{a} vs {b}");
        }
        let g_ours = (ours * w.clone()).sum().backward();
        let g_theirs = (theirs * w).sum().backward();
        for (a, b) in g_ours.get(&x).as_vec().iter().zip(g_theirs.get(&x).as_vec()) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn relu_matches_dfdx_relu_bit_for_bit() {
        let dev = Cpu::default();
        let mut x: Tensor<Rank2<3, 70_000>, f32, Cpu> = dev.sample_normal();
        let mut xv = x.as_vec();
        xv[..6].copy_from_slice(&[0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1e-45]);
        x.copy_from(&xv);
        let w: Tensor<Rank2<3, 70_000>, f32, Cpu> = dev.sample_normal();
        let ours = FastReLU.forward(x.leaky_trace());
        let theirs = x.leaky_trace().relu();
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(ours.as_vec()), bits(theirs.as_vec()));
        let g_ours = (ours * w.clone()).sum().backward();
        let g_theirs = (theirs * w).sum().backward();
        assert_eq!(bits(g_ours.get(&x).as_vec()), bits(g_theirs.get(&x).as_vec()));
        // Untraced, and in f64.
        assert_eq!(bits(FastReLU.forward(x.clone()).as_vec()), bits(x.clone().relu().as_vec()));
        let x64: Tensor<Rank1<4>, f64, Cpu> = dev.tensor([-2.0, 0.0, 0.5, 3.0]);
        assert_eq!(FastReLU.forward(x64).array(), [0.0, 0.0, 0.5, 3.0]);
    }

    #[test]
    fn f64_uses_the_standard_tanh() {
        let dev = Cpu::default();
        let x: Tensor<Rank1<5>, f64, Cpu> = dev.tensor([-3.0, -0.1, 0.0, 0.2, 4.0]);
        let y = FastTanh.forward(x.clone());
        assert_eq!(y.array(), x.array().map(f64::tanh));
    }
}
