//! 2d max and average pooling with dedicated forward and backward loops.

use dfdx::nn::{Module, NonMutableModule, ZeroSizedModule};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::kernels::{raw_grad, take_contiguous, Geometry, NnFloat};

/// Max pooling over `K×K` windows with stride `S` and padding `P` (padding never wins), like
/// `torch.nn.MaxPool2d(K, S, P)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxPool2D<const K: usize, const S: usize, const P: usize = 0>;

/// Average pooling over `K×K` windows with stride `S` and zero padding `P`, dividing by `K*K`
/// like `torch.nn.AvgPool2d(K, S, P)` (which counts padding by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AvgPool2D<const K: usize, const S: usize, const P: usize = 0>;

impl<const K: usize, const S: usize, const P: usize> ZeroSizedModule for MaxPool2D<K, S, P> {}
impl<const K: usize, const S: usize, const P: usize> NonMutableModule for MaxPool2D<K, S, P> {}
impl<const K: usize, const S: usize, const P: usize> ZeroSizedModule for AvgPool2D<K, S, P> {}
impl<const K: usize, const S: usize, const P: usize> NonMutableModule for AvgPool2D<K, S, P> {}

/// Planes per rayon task, so that small planes are not scheduled one by one.
const MIN_PLANES_PER_TASK: usize = 16;

/// Pooling geometry of one plane; panics with a clear message on invalid sizes.
fn plane_geometry((h, w): (usize, usize), k: usize, s: usize, p: usize) -> Geometry {
    assert!(s > 0 && k > 0, "pooling: kernel and stride must be positive");
    assert!(p <= k / 2, "pooling: padding {p} must be at most half the kernel {k}");
    Geometry::conv(1, (h, w), k, s, p)
}

/// Input index range `[lo, hi)` of a window starting at `start - pad` along a dimension of size `n`.
fn window(o: usize, g: &Geometry, k: usize, n: usize) -> (usize, usize) {
    let start = o * g.stride;
    (start.saturating_sub(g.pad), (start + k).saturating_sub(g.pad).min(n))
}

/// Max pooling of one plane: the maxima into `out` and their input indices into `argmax`.
///
/// The first maximum of a window in row-major order wins, and a NaN wins over numbers (the last
/// NaN if several). Each window tap is applied to a whole output row at once with a conditional
/// move instead of a branch: on real data a compare-and-branch mispredicts about every other time.
fn max_pool_plane<E: NnFloat>(g: &Geometry, k: usize, xp: &[E], out: &mut [E], argmax: &mut [u32]) {
    let first_cols: Vec<usize> = (0..g.out_w).map(|ow| window(ow, g, k, g.w).0).collect();
    let tap_cols: Vec<(usize, usize)> = (0..k).map(|kj| g.valid_cols(kj)).collect();
    for oh in 0..g.out_h {
        let (r0, r1) = window(oh, g, k, g.h);
        let best_at = &mut argmax[oh * g.out_w..][..g.out_w];
        for (b, &c0) in best_at.iter_mut().zip(&first_cols) {
            *b = (r0 * g.w + c0) as u32;
        }
        for r in r0..r1 {
            for (kj, &(lo, hi)) in tap_cols.iter().enumerate() {
                for ow in lo..hi {
                    let at = (r * g.w + ow * g.stride + kj - g.pad) as u32;
                    let v = xp[at as usize];
                    // The window's first element is compared with itself first, which keeps it
                    // unless it is NaN (then it is taken again: the same index).
                    let take = (v > xp[best_at[ow] as usize]) | v.is_nan();
                    best_at[ow] = std::hint::select_unpredictable(take, at, best_at[ow]);
                }
            }
        }
        for (o, &at) in out[oh * g.out_w..][..g.out_w].iter_mut().zip(best_at.iter()) {
            *o = xp[at as usize];
        }
    }
}

/// [`max_pool_plane`], or for 2x2 windows with stride 2 and no padding on f32 where the CPU has
/// AVX-512, [`max_pool_2x2_avx512`]: the same maxima and indices, 16 windows at a time.
fn max_pool_plane_fastest<E: NnFloat>(
    g: &Geometry,
    (k, s, p): (usize, usize, usize),
    xp: &[E],
    out: &mut [E],
    argmax: &mut [u32],
) {
    #[cfg(target_arch = "x86_64")]
    if (k, s, p) == (2, 2, 0)
        && std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
        && super::avx512::available()
    {
        // SAFETY: E is f32 (checked just above), so the slices are f32 slices of the same lengths.
        let (xp, out) = unsafe {
            (
                std::slice::from_raw_parts(xp.as_ptr() as *const f32, xp.len()),
                std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, out.len()),
            )
        };
        assert!(xp.len() >= g.h * g.w && out.len() >= g.out_hw() && argmax.len() >= g.out_hw());
        // SAFETY: AVX-512F is present; the slices cover a plane and its output (asserted).
        return unsafe { max_pool_2x2_avx512(g, xp, out, argmax) };
    }
    max_pool_plane(g, k, xp, out, argmax)
}

/// 2x2 max pooling with stride 2 and no padding, 16 output columns at a time: each pair of input
/// rows is loaded 32 values at a time and split into even and odd columns, and the four
/// candidates are compared in the window's row-major order with [`max_pool_plane`]'s rule (a
/// larger value or a NaN replaces the best so far).
///
/// # Safety
/// AVX-512F must be present; `xp` must hold `g.h * g.w` values, `out` and `argmax` `g.out_hw()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_pool_2x2_avx512(g: &Geometry, xp: &[f32], out: &mut [f32], argmax: &mut [u32]) {
    use std::arch::x86_64::*;
    let mask = |lanes: usize| ((1u32 << lanes.min(16)) - 1) as __mmask16;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let w = g.w;
    for oh in 0..g.out_h {
        let (r0, r1) = (2 * oh * w, (2 * oh + 1) * w);
        for ow0 in (0..g.out_w).step_by(16) {
            let count = (g.out_w - ow0).min(16);
            let (lo, hi, m_out) = (mask(2 * count), mask((2 * count).saturating_sub(16)), mask(count));
            let load = |row: usize| {
                let at = xp.as_ptr().add(row + 2 * ow0);
                (_mm512_maskz_loadu_ps(lo, at), _mm512_maskz_loadu_ps(hi, at.add(16)))
            };
            let ((a0, a1), (b0, b1)) = (load(r0), load(r1));
            let first = _mm512_add_epi32(_mm512_set1_epi32((r0 + 2 * ow0) as i32), even);
            let (mut best, mut at) = (_mm512_permutex2var_ps(a0, even, a1), first);
            for (cand, offset) in [
                (_mm512_permutex2var_ps(a0, odd, a1), 1),
                (_mm512_permutex2var_ps(b0, even, b1), w),
                (_mm512_permutex2var_ps(b0, odd, b1), w + 1),
            ] {
                let take =
                    _mm512_cmp_ps_mask::<_CMP_GT_OQ>(cand, best) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(cand, cand);
                best = _mm512_mask_blend_ps(take, best, cand);
                at = _mm512_mask_blend_epi32(take, at, _mm512_add_epi32(first, _mm512_set1_epi32(offset as i32)));
            }
            let o = oh * g.out_w + ow0;
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(o), m_out, best);
            _mm512_mask_storeu_epi32(argmax.as_mut_ptr().add(o) as *mut i32, m_out, at);
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod fast_path_tests {
    use super::*;

    #[test]
    fn the_2x2_kernel_gives_the_generic_maxima_and_indices() {
        if !crate::nn::avx512_available() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        for (h, w) in [(28, 28), (14, 14), (7, 7), (5, 9), (2, 2), (3, 70), (64, 33)] {
            let g = plane_geometry((h, w), 2, 2, 0);
            // Ties (few distinct values), NaNs and negative zeros among ordinary numbers.
            let xp: Vec<f32> = (0..h * w)
                .map(|i| match (i * 7919) % 23 {
                    0 => f32::NAN,
                    1 => -0.0,
                    r => (r % 5) as f32 - 2.0,
                })
                .collect();
            let n = g.out_hw();
            let (mut out, mut at) = (vec![0.0f32; n], vec![0u32; n]);
            let (mut want, mut want_at) = (vec![0.0f32; n], vec![0u32; n]);
            max_pool_plane_fastest(&g, (2, 2, 0), &xp, &mut out, &mut at);
            max_pool_plane(&g, 2, &xp, &mut want, &mut want_at);
            assert_eq!(at, want_at, "{h}x{w}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out), bits(&want), "{h}x{w}");
        }
    }
}

impl<const K: usize, const S: usize, const P: usize, E, B, C, H, W, T> Module<Tensor<(B, C, H, W), E, Cpu, T>>
    for MaxPool2D<K, S, P>
where
    E: NnFloat,
    B: Dim,
    C: Dim,
    H: Dim,
    W: Dim,
    T: Tape<E, Cpu>,
{
    type Output = Tensor<(B, C, usize, usize), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, C, H, W), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        let (b, c, h, w) = *x.shape();
        let g = plane_geometry((h.size(), w.size()), K, S, P);
        let (x, xs) = take_contiguous(x)?;
        let (x, mut tape) = x.split_tape();
        let (plane, out_plane) = (g.h * g.w, g.out_hw());
        let planes = b.size() * c.size();
        let mut out = vec![E::zero(); planes * out_plane];
        let mut argmax = vec![0u32; planes * out_plane];
        out.par_chunks_mut(out_plane)
            .zip(argmax.par_chunks_mut(out_plane))
            .zip(xs.par_chunks(plane))
            .with_min_len(MIN_PLANES_PER_TASK)
            .for_each(|((o, a), xp)| max_pool_plane_fastest(&g, (K, S, P), xp, o, a));
        let out = x.device().try_tensor_from_vec(out, (b, c, g.out_h, g.out_w))?;
        if T::OWNS_TAPE {
            let (x_g, out_g) = (x.ghost(), out.ghost());
            tape.add_backward_op(move |grads| {
                let (gout, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
                // SAFETY: distinct tensor ids; `grads` outlives this closure body.
                let (gout, dx) = unsafe { (gout.slice(), dx.slice()) };
                dx.par_chunks_mut(plane)
                    .zip(gout.par_chunks(out_plane))
                    .zip(argmax.par_chunks(out_plane))
                    .with_min_len(MIN_PLANES_PER_TASK)
                    .for_each(|((d, go), a)| {
                        for (v, &i) in go.iter().zip(a) {
                            d[i as usize] += *v;
                        }
                    });
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

impl<const K: usize, const S: usize, const P: usize, E, B, C, H, W, T> Module<Tensor<(B, C, H, W), E, Cpu, T>>
    for AvgPool2D<K, S, P>
where
    E: NnFloat,
    B: Dim,
    C: Dim,
    H: Dim,
    W: Dim,
    T: Tape<E, Cpu>,
{
    type Output = Tensor<(B, C, usize, usize), E, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<(B, C, H, W), E, Cpu, T>) -> Result<Self::Output, CpuError> {
        let (b, c, h, w) = *x.shape();
        let g = plane_geometry((h.size(), w.size()), K, S, P);
        let (x, xs) = take_contiguous(x)?;
        let (x, mut tape) = x.split_tape();
        let (plane, out_plane) = (g.h * g.w, g.out_hw());
        let scale = E::one() / E::from(K * K).unwrap();
        let mut out = vec![E::zero(); b.size() * c.size() * out_plane];
        out.par_chunks_mut(out_plane).zip(xs.par_chunks(plane)).with_min_len(MIN_PLANES_PER_TASK).for_each(
            |(o, xp)| {
                for oh in 0..g.out_h {
                    let (r0, r1) = window(oh, &g, K, g.h);
                    for ow in 0..g.out_w {
                        let (c0, c1) = window(ow, &g, K, g.w);
                        let mut sum = E::zero();
                        for r in r0..r1 {
                            sum = xp[r * g.w + c0..r * g.w + c1].iter().fold(sum, |a, &v| a + v);
                        }
                        o[oh * g.out_w + ow] = sum * scale;
                    }
                }
            },
        );
        let out = x.device().try_tensor_from_vec(out, (b, c, g.out_h, g.out_w))?;
        if T::OWNS_TAPE {
            let (x_g, out_g) = (x.ghost(), out.ghost());
            tape.add_backward_op(move |grads| {
                let (gout, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
                // SAFETY: distinct tensor ids; `grads` outlives this closure body.
                let (gout, dx) = unsafe { (gout.slice(), dx.slice()) };
                dx.par_chunks_mut(plane).zip(gout.par_chunks(out_plane)).with_min_len(MIN_PLANES_PER_TASK).for_each(
                    |(d, go)| {
                        for oh in 0..g.out_h {
                            let (r0, r1) = window(oh, &g, K, g.h);
                            for ow in 0..g.out_w {
                                let (c0, c1) = window(ow, &g, K, g.w);
                                let v = go[oh * g.out_w + ow] * scale;
                                for r in r0..r1 {
                                    d[r * g.w + c0..r * g.w + c1].iter_mut().for_each(|x| *x += v);
                                }
                            }
                        }
                    },
                );
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}
