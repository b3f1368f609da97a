//! Low-level CPU kernels shared by the layers: the float trait, a row-major gemm wrapper,
//! im2col/col2im, and raw access to dfdx tensors and gradients.

use dfdx::prelude::*;
use rand_distr::uniform::SampleUniform;

/// Floating-point types the layers support on the CPU (`f32` and `f64`).
pub trait NnFloat: Dtype + num_traits::Float + SampleUniform + Send + Sync + 'static {}
impl NnFloat for f32 {}
impl NnFloat for f64 {}

/// A matrix view: pointer, row stride and column stride (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat<E> {
    pub ptr: *const E,
    pub rs: usize,
    pub cs: usize,
}

impl<E> Mat<E> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &[E], cols: usize) -> Self {
        Self { ptr: data.as_ptr(), rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &[E], cols: usize) -> Self {
        Self { ptr: data.as_ptr(), rs: 1, cs: cols }
    }
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]` with `dst` row-major with `n` columns.
///
/// `threads > 1` splits the product over rayon's pool.
pub(crate) fn matmul<E: NnFloat>(
    (m, k, n): (usize, usize, usize),
    a: Mat<E>,
    b: Mat<E>,
    dst: &mut [E],
    accumulate: bool,
    threads: usize,
) {
    assert!(dst.len() >= m * n, "matmul destination too small");
    gemm_strided((m, k, n), a, b, dst, n, accumulate, threads);
}

/// `dst (+)= a[m×k] · b[k×n]` accumulating into a row-major block of a wider matrix whose rows
/// are `dst_rs` elements apart.
pub(crate) fn matmul_into_strided<E: NnFloat>(
    (m, k, n): (usize, usize, usize),
    a: Mat<E>,
    b: Mat<E>,
    dst: &mut [E],
    dst_rs: usize,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= dst_rs && dst.len() >= (m - 1) * dst_rs + n, "matmul destination too small");
    gemm_strided((m, k, n), a, b, dst, dst_rs, true, threads);
}

/// Whether the AVX-512 f32 kernel should take a product of this shape.
fn use_avx512<E: 'static>((m, k, n): (usize, usize, usize)) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
            && n >= 16
            && m * k * n >= 1 << 15
            && super::avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, k, n);
        false
    }
}

/// The shared body of [`matmul`] and [`matmul_into_strided`]; `dst` is checked by the callers.
fn gemm_strided<E: NnFloat>(
    (m, k, n): (usize, usize, usize),
    a: Mat<E>,
    b: Mat<E>,
    dst: &mut [E],
    dst_rs: usize,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_rs).take(m).for_each(|row| row[..n].iter_mut().for_each(|v| *v = E::zero()));
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if use_avx512::<E>((m, k, n)) {
        use super::avx512::{sgemm, View};
        // Split the rows of the product over the threads; each part packs its own blocks.
        let parts = threads.clamp(1, m.div_ceil(32));
        let rows = m.div_ceil(parts);
        let (a_ptr, b_ptr) = (a.ptr as usize, b.ptr as usize);
        let run = |row0: usize, c: &mut [E]| {
            let mr = rows.min(m - row0);
            let av = View { ptr: (a_ptr as *const f32).wrapping_add(row0 * a.rs), rs: a.rs, cs: a.cs };
            let bv = View { ptr: b_ptr as *const f32, rs: b.rs, cs: b.cs };
            // SAFETY: E is f32 (checked by use_avx512, which also checked AVX-512F); the views
            // cover the rows given (the callers' shapes) and `c` covers `mr` rows of `dst_rs`.
            unsafe { sgemm((mr, k, n), av, bv, c.as_mut_ptr() as *mut f32, dst_rs, accumulate) };
        };
        let dst = &mut dst[..(m - 1) * dst_rs + n];
        if parts == 1 {
            run(0, dst);
        } else {
            use rayon::prelude::*;
            dst.par_chunks_mut(rows * dst_rs).enumerate().for_each(|(i, c)| run(i * rows, c));
        }
        return;
    }
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the caller's views cover m×k and k×n elements (checked by the kernels' shapes) and
    // dst covers (m-1)*dst_rs + n elements (asserted by the callers); gemm reads dst only when
    // accumulating.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.ptr,
            a.cs as isize,
            a.rs as isize,
            b.ptr,
            b.cs as isize,
            b.rs as isize,
            E::one(),
            E::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Number of rayon threads available to the kernels.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Geometry of a 2d convolution over one image: `chans × h × w` input, `out_h × out_w` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub chans: usize,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
    pub pad: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Geometry {
    /// Output size of a convolution with kernel `k`; panics with a clear message when the
    /// padded input is smaller than the kernel.
    pub fn conv(chans: usize, (h, w): (usize, usize), k: usize, stride: usize, pad: usize) -> Self {
        assert!(
            h + 2 * pad >= k && w + 2 * pad >= k,
            "convolution: padded input {}x{} (padding {pad}) is smaller than the {k}x{k} kernel",
            h + 2 * pad,
            w + 2 * pad
        );
        Self { chans, h, w, stride, pad, out_h: (h + 2 * pad - k) / stride + 1, out_w: (w + 2 * pad - k) / stride + 1 }
    }

    /// Input plane size.
    pub fn in_len(&self) -> usize {
        self.chans * self.h * self.w
    }

    /// Output positions per channel.
    pub fn out_hw(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Output columns `[lo, hi)` whose input column `ow*stride + kj - pad` lies inside the image.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if kj >= p { 0 } else { (p - kj).div_ceil(s) };
        let hi = if self.w + p > kj { ((self.w + p - kj - 1) / s + 1).min(self.out_w) } else { 0 };
        (lo.min(hi), hi)
    }

    /// Input row for output row `oh` and kernel row `ki`, if inside the image.
    fn in_row(&self, oh: usize, ki: usize) -> Option<usize> {
        (oh * self.stride + ki).checked_sub(self.pad).filter(|&r| r < self.h)
    }
}

/// Kernel taps `(ki, kj)` of a `k×k` kernel, row-major; `keep` selects which are used.
pub(crate) fn taps(k: usize, keep: impl Fn(usize, usize) -> bool) -> Vec<(usize, usize)> {
    (0..k).flat_map(|i| (0..k).map(move |j| (i, j))).filter(|&(i, j)| keep(i, j)).collect()
}

/// Unfolds one image into `col[(c*T + t) × (out_h*out_w)]` for the taps `t` (zeros outside).
pub(crate) fn im2col<E: NnFloat>(g: &Geometry, taps: &[(usize, usize)], x: &[E], col: &mut [E]) {
    im2col_rows(g, taps, x, 0..g.chans * taps.len(), col);
}

/// [`im2col`] restricted to the rows `rows` of the full matrix; `col` holds just those rows.
pub(crate) fn im2col_rows<E: NnFloat>(
    g: &Geometry,
    taps: &[(usize, usize)],
    x: &[E],
    rows: std::ops::Range<usize>,
    col: &mut [E],
) {
    let n = g.out_hw();
    let padded = g.pad > 0 || (g.out_h - 1) * g.stride >= g.h || (g.out_w - 1) * g.stride >= g.w;
    for (r, row) in rows.zip(col.chunks_mut(n)) {
        let (c, (ki, kj)) = (r / taps.len(), taps[r % taps.len()]);
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        let (lo, hi) = g.valid_cols(kj);
        if padded {
            // One memset per row instead of two tiny ones per output row.
            row.fill(E::zero());
        }
        if lo >= hi {
            continue;
        }
        let first = lo * g.stride + kj - g.pad;
        for oh in 0..g.out_h {
            let Some(ih) = g.in_row(oh, ki) else { continue };
            let src = &plane[ih * g.w + first..];
            let out = &mut row[oh * g.out_w + lo..oh * g.out_w + hi];
            if g.stride == 1 {
                out.copy_from_slice(&src[..hi - lo]);
            } else {
                let last = (out.len() - 1) * g.stride;
                assert!(last < src.len());
                for (j, o) in out.iter_mut().enumerate() {
                    // SAFETY: j*stride <= last < src.len() (asserted above).
                    *o = unsafe { *src.get_unchecked(j * g.stride) };
                }
            }
        }
    }
}

/// Folds `col` (as produced by [`im2col`]) back into one image, adding into `x`.
pub(crate) fn col2im_add<E: NnFloat>(g: &Geometry, taps: &[(usize, usize)], col: &[E], x: &mut [E]) {
    col2im_rows_add(g, taps, 0..g.chans * taps.len(), col, x);
}

/// [`col2im_add`] for the rows `rows` of the full matrix; `col` holds just those rows.
pub(crate) fn col2im_rows_add<E: NnFloat>(
    g: &Geometry,
    taps: &[(usize, usize)],
    rows: std::ops::Range<usize>,
    col: &[E],
    x: &mut [E],
) {
    let n = g.out_hw();
    for (r, row) in rows.zip(col.chunks(n)) {
        let (c, (ki, kj)) = (r / taps.len(), taps[r % taps.len()]);
        let plane = &mut x[c * g.h * g.w..(c + 1) * g.h * g.w];
        let (lo, hi) = g.valid_cols(kj);
        if lo >= hi {
            continue;
        }
        for oh in 0..g.out_h {
            let Some(ih) = g.in_row(oh, ki) else { continue };
            let src = &row[oh * g.out_w + lo..oh * g.out_w + hi];
            let dst = &mut plane[ih * g.w..(ih + 1) * g.w];
            let first = lo * g.stride + kj - g.pad;
            if g.stride == 1 {
                for (d, v) in dst[first..first + hi - lo].iter_mut().zip(src) {
                    *d += *v;
                }
            } else {
                let last = first + (src.len() - 1) * g.stride;
                assert!(last < dst.len());
                for (j, v) in src.iter().enumerate() {
                    // SAFETY: first + j*stride <= last < dst.len() (asserted above).
                    unsafe { *dst.get_unchecked_mut(first + j * g.stride) += *v };
                }
            }
        }
    }
}

/// Rows of an im2col matrix with `n` columns processed at once, so that a block stays in cache.
pub(crate) fn col_block_rows(n: usize, total_rows: usize) -> usize {
    const BLOCK_ELEMS: usize = 64 * 1024;
    (BLOCK_ELEMS / n.max(1)).max(8).min(total_rows.max(1))
}

/// Copies a tensor's values into a row-major `Vec` (a plain copy when it is contiguous).
pub(crate) fn tensor_vec<S: Shape, E: NnFloat, T: Tape<E, Cpu>>(t: &Tensor<S, E, Cpu, T>) -> Result<Vec<E>, CpuError> {
    let contiguous = t.retaped::<NoneTape>().try_contiguous()?;
    let mut buf = vec![E::zero(); contiguous.shape().num_elements()];
    contiguous.copy_into(&mut buf);
    Ok(buf)
}

/// Makes `t` contiguous (recording the copy on its tape when needed) and returns its values.
#[allow(clippy::type_complexity)]
pub(crate) fn take_contiguous<S: Shape, E: NnFloat, T: Tape<E, Cpu>>(
    t: Tensor<S, E, Cpu, T>,
) -> Result<(Tensor<S, E, Cpu, T>, Vec<E>), CpuError> {
    let t = t.try_contiguous()?;
    let mut buf = vec![E::zero(); t.shape().num_elements()];
    t.copy_into(&mut buf);
    Ok((t, buf))
}

/// A gradient buffer taken out of [`Gradients`] as a raw slice, so that several distinct
/// tensors' gradients can be written at once.
pub(crate) struct RawGrad<E> {
    ptr: *mut E,
    len: usize,
}

impl<E> RawGrad<E> {
    /// Wraps the gradient vector returned by `Gradients::get_or_alloc_mut`.
    pub fn new(v: &mut Vec<E>) -> Self {
        Self { ptr: v.as_mut_ptr(), len: v.len() }
    }

    /// The buffer as a slice.
    ///
    /// # Safety
    /// The `Gradients` it came from must outlive the slice and not drop that entry, and no two
    /// live slices may come from the same tensor id. Gradient vectors never reallocate, and
    /// BTreeMap insertions move only the vector headers, not their heap buffers.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice<'a>(&self) -> &'a mut [E] {
        std::slice::from_raw_parts_mut(self.ptr, self.len)
    }
}

/// Fetches (allocating if needed) the gradient of a tensor-like value as a [`RawGrad`].
macro_rules! raw_grad {
    ($grads:expr, $t:expr) => {{
        let v: &mut Vec<_> = $grads.get_or_alloc_mut($t)?;
        $crate::nn::kernels::RawGrad::new(v)
    }};
}
pub(crate) use raw_grad;
