//! Low-level CPU kernels shared by the layers: the float trait, a row-major gemm wrapper,
//! im2col/col2im, and raw access to dfdx tensors and gradients.

use dfdx::prelude::*;
use rand_distr::uniform::SampleUniform;
use std::sync::atomic::{AtomicU64, Ordering};

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
    let threads = if m * k * n < MIN_PARALLEL_MACS { 1 } else { threads };
    gemm_strided((m, k, n), a, b, dst, n, accumulate, threads);
}

/// Multiply-adds below which a product stays on the calling thread: handing half of it to
/// another thread (a wake-up, often a context switch on these shared machines) costs more than
/// the tens of microseconds it would save. The products of the RL examples' networks (batch
/// 64-256, width 64: at most 1M) stay below it.
const MIN_PARALLEL_MACS: usize = 1 << 21;

/// Which code computes a matrix product of the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// glimpse's packed AVX-512 f32 kernel (8 x 32 register tile), where the CPU has AVX-512F.
    Avx512 = 0,
    /// The `gemm` crate (its AVX2/FMA kernels on stable Rust), for f64 or CPUs without AVX-512.
    GemmCrate = 1,
    /// glimpse's unpacked AVX-512 f32 kernel for small products (RL networks, recurrent cells):
    /// the packed kernel's sums, without its packing.
    Avx512Small = 2,
    /// glimpse's direct AVX-512 f32 convolution for strided layers (no im2col, no packing): one
    /// count per forward or backward pass.
    DirectConv = 3,
}

static KERNEL_COUNTS: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Matrix products computed so far by each [`KernelPath`] (whole process), as
/// `[(path, count)]`: a benchmark reads them before and after a case to say which path it took.
pub fn kernel_counts() -> [(KernelPath, u64); 4] {
    [
        (KernelPath::Avx512, KERNEL_COUNTS[0].load(Ordering::Relaxed)),
        (KernelPath::GemmCrate, KERNEL_COUNTS[1].load(Ordering::Relaxed)),
        (KernelPath::Avx512Small, KERNEL_COUNTS[2].load(Ordering::Relaxed)),
        (KernelPath::DirectConv, KERNEL_COUNTS[3].load(Ordering::Relaxed)),
    ]
}

/// Counts one use of `path` in [`kernel_counts`].
pub(crate) fn count_kernel(path: KernelPath) {
    KERNEL_COUNTS[path as usize].fetch_add(1, Ordering::Relaxed);
}

/// Whether this CPU can run the AVX-512 kernel ([`KernelPath::Avx512`]).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Multiply-adds below which an f32 product takes the unpacked AVX-512 kernel
/// ([`KernelPath::Avx512Small`]): packing costs more than it saves there.
const SMALL_MACS: usize = 1 << 19;

/// Whether the packed AVX-512 f32 kernel should take a product of this shape.
pub(crate) fn use_avx512<E: 'static>((m, k, n): (usize, usize, usize)) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
            && m * k * n >= SMALL_MACS
            && super::avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, k, n);
        false
    }
}

/// The body of [`matmul`], writing rows `dst_rs` apart; `dst` is checked by the caller.
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
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
        && m * k * n < SMALL_MACS
        && super::avx512::available()
    {
        use super::avx512::{sgemm_small, View};
        count_kernel(KernelPath::Avx512Small);
        let (av, bv) = (
            View { ptr: a.ptr as *const f32, rs: a.rs, cs: a.cs },
            View { ptr: b.ptr as *const f32, rs: b.rs, cs: b.cs },
        );
        // SAFETY: E is f32 and the CPU has AVX-512F (checked just above); the views and `dst`
        // cover the shapes given, as for the packed kernel below.
        unsafe { sgemm_small((m, k, n), av, bv, dst.as_mut_ptr() as *mut f32, dst_rs, accumulate) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if use_avx512::<E>((m, k, n)) {
        use super::avx512::{sgemm, View};
        count_kernel(KernelPath::Avx512);
        // Split the product over the threads by rows or by columns (16-wide half panels, so
        // that 400 columns split 208 + 192, not 224 + 176);
        // each part packs its own blocks of `A` and `B`, so a row split packs `B` once per part
        // and a column split `A`: take the split that packs less (a row-major `B` is read in
        // place), or the one that has enough rows or columns for every thread. Every element
        // gets the same sums either way.
        let dst = &mut dst[..(m - 1) * dst_rs + n];
        let (a_ptr, b_ptr, c_ptr) = (a.ptr as usize, b.ptr as usize, dst.as_mut_ptr() as usize);
        let packed_b = if b.cs == 1 { 0 } else { k * n };
        let (row_parts, col_parts) = (threads.min(m.div_ceil(32)), threads.min(n.div_ceil(32)));
        let by_rows = row_parts > col_parts || (row_parts == col_parts && packed_b <= m * k);
        let (rows, cols) = match by_rows {
            true => (m.div_ceil(row_parts.max(1)), n),
            false => (m, n.div_ceil(col_parts.max(1)).div_ceil(16) * 16),
        };
        // Parts of whole blocks; the last may be smaller.
        let parts = if by_rows { m.div_ceil(rows) } else { n.div_ceil(cols) };
        let run = |part: usize| {
            let (row0, col0) = if by_rows { (part * rows, 0) } else { (0, part * cols) };
            let (mr, nc) = (rows.min(m - row0), cols.min(n - col0));
            let av = View { ptr: (a_ptr as *const f32).wrapping_add(row0 * a.rs), rs: a.rs, cs: a.cs };
            let bv = View { ptr: (b_ptr as *const f32).wrapping_add(col0 * b.cs), rs: b.rs, cs: b.cs };
            let c = (c_ptr as *mut f32).wrapping_add(row0 * dst_rs + col0);
            // SAFETY: E is f32 (checked by use_avx512, which also checked AVX-512F); the views
            // cover the part's rows and columns (inside the callers' shapes), `dst` covers
            // `(m-1)*dst_rs + n` elements (sliced just above), and the parts write
            // disjoint blocks of it.
            unsafe { sgemm((mr, k, nc), av, bv, c, dst_rs, accumulate) };
        };
        if parts == 1 {
            run(0);
        } else {
            use rayon::prelude::*;
            (0..parts).into_par_iter().for_each(run);
        }
        return;
    }
    count_kernel(KernelPath::GemmCrate);
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

/// Sum of `v` with eight independent partial sums, which the compiler turns into vector adds
/// (a plain fold is one serial chain of scalar adds).
pub(crate) fn sum<E: NnFloat>(v: &[E]) -> E {
    let mut acc = [E::zero(); 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let tail = chunks.remainder().iter().fold(E::zero(), |a, &x| a + x);
    acc.iter().fold(tail, |a, &x| a + x)
}

std::thread_local! {
    /// Set while [`with_serial_kernels`] runs on this thread.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every layer's products on the calling thread only: for work that is already
/// parallel at a coarser grain (independent parts of a batch on different threads), where
/// splitting each small product again would only add hand-offs. Results are the same either way.
pub fn with_serial_kernels<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// Number of rayon threads available to the kernels (1 inside [`with_serial_kernels`]).
pub(crate) fn threads() -> usize {
    if SERIAL.with(|s| s.get()) {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
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
    #[inline]
    pub(crate) fn valid_cols(&self, kj: usize) -> (usize, usize) {
        valid_range(kj, self.stride, self.pad, self.w, self.out_w)
    }

    /// Output rows `[lo, hi)` whose input row `oh*stride + ki - pad` lies inside the image.
    #[inline]
    pub(crate) fn valid_rows(&self, ki: usize) -> (usize, usize) {
        valid_range(ki, self.stride, self.pad, self.h, self.out_h)
    }
}

/// Outputs `[lo, hi)` (of `out_len`) whose input `o*s + k - p` lies in `[0, in_len)`.
#[inline]
fn valid_range(k: usize, s: usize, p: usize, in_len: usize, out_len: usize) -> (usize, usize) {
    let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
    let hi = if in_len + p > k { ((in_len + p - k - 1) / s + 1).min(out_len) } else { 0 };
    (lo.min(hi), hi)
}

/// Kernel taps `(ki, kj)` of a `k×k` kernel, row-major; `keep` selects which are used.
pub(crate) fn taps(k: usize, keep: impl Fn(usize, usize) -> bool) -> Vec<(usize, usize)> {
    (0..k).flat_map(|i| (0..k).map(move |j| (i, j))).filter(|&(i, j)| keep(i, j)).collect()
}

/// Unfolds one image into `col[(c*T + t) × (out_h*out_w)]` for the taps `t` (zeros outside).
pub(crate) fn im2col<E: NnFloat>(g: &Geometry, taps: &[(usize, usize)], x: &[E], col: &mut [E]) {
    let (rows, sources) = (0..g.chans * taps.len(), tap_sources(g, taps));
    let mut phases = Vec::new();
    im2col_rows(g, &sources, phase_source(g, x, &mut phases), rows, col, g.out_hw());
}

impl Geometry {
    /// Rows and columns of one stride phase of a plane (see [`split_phases`]).
    pub(crate) fn phase_dims(&self) -> (usize, usize) {
        (self.h.div_ceil(self.stride), self.w.div_ceil(self.stride))
    }

    /// Length of an image split into stride phases.
    pub(crate) fn phases_len(&self) -> usize {
        let (hp, wp) = self.phase_dims();
        self.chans * self.stride * self.stride * hp * wp
    }
}

/// Splits each plane of an image into its `stride × stride` phases: phase `(pi, pj)` of channel
/// `c` (at `((c*S + pi)*S + pj) * hp*wp`) holds `x[c][a*S + pi][b*S + pj]` at `(a, b)`.
///
/// With stride `S`, the inputs that one kernel tap reads along an output row are `S` apart in
/// the image but consecutive in one phase, so im2col and col2im copy and add whole slices
/// instead of every `S`-th element. Stride 1 needs no split: the image is its only phase.
pub(crate) fn split_phases<E: NnFloat>(g: &Geometry, x: &[E], phases: &mut [E]) {
    let (s, (hp, wp)) = (g.stride, g.phase_dims());
    for (c, plane) in x.chunks(g.h * g.w).enumerate().take(g.chans) {
        for (ih, row) in plane.chunks(g.w).enumerate() {
            let (pi, a) = (ih % s, ih / s);
            let first = ((c * s + pi) * s * hp + a) * wp;
            if s == 2 {
                // Even and odd columns in one pass (the common case, which vectorizes).
                let half = g.w / 2;
                let (even, odd) = phases[first..].split_at_mut(hp * wp);
                let (even, odd, pairs) = (&mut even[..half], &mut odd[..half], &row[..2 * half]);
                for j in 0..half {
                    even[j] = pairs[2 * j];
                    odd[j] = pairs[2 * j + 1];
                }
                if g.w % 2 == 1 {
                    phases[first + half] = row[g.w - 1];
                }
            } else {
                for (iw, &v) in row.iter().enumerate() {
                    phases[first + (iw % s) * hp * wp + iw / s] = v;
                }
            }
        }
    }
}

/// Adds an image split into phases (see [`split_phases`]) back into `x`.
pub(crate) fn merge_phases_add<E: NnFloat>(g: &Geometry, phases: &[E], x: &mut [E]) {
    let (s, (hp, wp)) = (g.stride, g.phase_dims());
    for (c, plane) in x.chunks_mut(g.h * g.w).enumerate().take(g.chans) {
        for (ih, row) in plane.chunks_mut(g.w).enumerate() {
            let (pi, a) = (ih % s, ih / s);
            let first = ((c * s + pi) * s * hp + a) * wp;
            if s == 2 {
                let half = g.w / 2;
                let (even, odd) = phases[first..].split_at(hp * wp);
                if g.w % 2 == 1 {
                    row[g.w - 1] += even[half];
                }
                let (even, odd, pairs) = (&even[..half], &odd[..half], &mut row[..2 * half]);
                for j in 0..half {
                    pairs[2 * j] += even[j];
                    pairs[2 * j + 1] += odd[j];
                }
            } else {
                for (iw, v) in row.iter_mut().enumerate() {
                    *v += phases[first + (iw % s) * hp * wp + iw / s];
                }
            }
        }
    }
}

/// The image `x` as [`im2col_rows`] reads it: `x` itself for stride 1, else its phases, split
/// into `buf`.
pub(crate) fn phase_source<'a, E: NnFloat>(g: &Geometry, x: &'a [E], buf: &'a mut Vec<E>) -> &'a [E] {
    if g.stride == 1 {
        return x;
    }
    buf.resize(g.phases_len(), E::zero());
    split_phases(g, x, buf);
    buf
}

/// Where one row of the im2col matrix reads its inputs (see [`tap_sources`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TapSource {
    /// Offset of the first valid output's input in the phase-split image.
    start: usize,
    /// Output rows `[top, bottom)` whose input is inside the image.
    rows: (usize, usize),
    /// Output columns `[lo, hi)` whose input is inside the image.
    cols: (usize, usize),
}

/// The [`TapSource`] of every im2col row (channel-major, then taps), `None` for a tap that
/// reads only padding; computed once per layer call rather than per image.
pub(crate) fn tap_sources(g: &Geometry, taps: &[(usize, usize)]) -> Vec<Option<TapSource>> {
    let (s, (hp, wp)) = (g.stride, g.phase_dims());
    (0..g.chans * taps.len())
        .map(|r| {
            let (c, (ki, kj)) = (r / taps.len(), taps[r % taps.len()]);
            let (cols, rows) = (g.valid_cols(kj), g.valid_rows(ki));
            if cols.0 >= cols.1 || rows.0 >= rows.1 {
                return None;
            }
            // Input row and column of the first valid output, and the phase they fall in.
            let (first_row, first_col) = (rows.0 * s + ki - g.pad, cols.0 * s + kj - g.pad);
            let phase = ((c * s + first_row % s) * s + first_col % s) * hp * wp;
            Some(TapSource { start: phase + (first_row / s) * wp + first_col / s, rows, cols })
        })
        .collect()
}

/// [`im2col`] restricted to the rows `rows` of the full matrix (`sources` from [`tap_sources`]),
/// reading an image split into phases by [`split_phases`] (the image itself for stride 1);
/// `col` holds just those rows, `ld` apart (`ld >= out_h*out_w`, so that several images'
/// unfoldings can sit side by side in one matrix).
pub(crate) fn im2col_rows<E: NnFloat>(
    g: &Geometry,
    sources: &[Option<TapSource>],
    phases: &[E],
    rows: std::ops::Range<usize>,
    col: &mut [E],
    ld: usize,
) {
    let (n, wp, ow) = (g.out_hw(), g.phase_dims().1, g.out_w);
    for (k, source) in sources[rows].iter().enumerate() {
        let row = &mut col[k * ld..][..n];
        let Some(TapSource { start, rows: (top, bottom), cols: (lo, hi) }) = *source else {
            row.fill(E::zero());
            continue;
        };
        // Zeros where the tap reads padding, copies elsewhere: each element is written once.
        row[..top * ow].fill(E::zero());
        row[bottom * ow..].fill(E::zero());
        if lo == 0 && hi == ow && wp == ow {
            // Whole rows on both sides: one copy.
            row[top * ow..bottom * ow].copy_from_slice(&phases[start..][..(bottom - top) * ow]);
            continue;
        }
        for (i, out) in row[top * ow..bottom * ow].chunks_exact_mut(ow).enumerate() {
            out[..lo].iter_mut().for_each(|v| *v = E::zero());
            copy_short(&mut out[lo..hi], &phases[start + i * wp..][..hi - lo]);
            out[hi..].iter_mut().for_each(|v| *v = E::zero());
        }
    }
}

/// `dst.copy_from_slice(src)`, without a call to `memcpy` for the short rows of small images
/// (7 values for a 7x7 output: the call cost more than the copy).
#[inline(always)]
fn copy_short<E: NnFloat>(dst: &mut [E], src: &[E]) {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() && dst.len() <= 16 && super::avx512::available() {
        // SAFETY: E is f32; AVX-512F is present; the masks cover exactly `len <= 16` elements of
        // both slices, which have that length (asserted by the slice indexing of the caller).
        unsafe {
            super::avx512::copy_masked(
                dst.as_mut_ptr() as *mut f32,
                src.as_ptr() as *const f32,
                src.len().min(dst.len()),
            )
        };
        return;
    }
    dst.copy_from_slice(src);
}

/// Folds `col` (as produced by [`im2col`]) back into one image, adding into `x`.
pub(crate) fn col2im_add<E: NnFloat>(g: &Geometry, taps: &[(usize, usize)], col: &[E], x: &mut [E]) {
    let (rows, sources) = (0..g.chans * taps.len(), tap_sources(g, taps));
    if g.stride == 1 {
        col2im_rows_add(g, &sources, rows, col, g.out_hw(), x);
    } else {
        let mut phases = vec![E::zero(); g.phases_len()];
        col2im_rows_add(g, &sources, rows, col, g.out_hw(), &mut phases);
        merge_phases_add(g, &phases, x);
    }
}

/// [`col2im_add`] for the rows `rows` of the full matrix (`sources` from [`tap_sources`]),
/// adding into an image split into phases (see [`split_phases`]; the image itself for stride 1);
/// `col` holds just those rows, `ld` apart (see [`im2col_rows`]).
pub(crate) fn col2im_rows_add<E: NnFloat>(
    g: &Geometry,
    sources: &[Option<TapSource>],
    rows: std::ops::Range<usize>,
    col: &[E],
    ld: usize,
    phases: &mut [E],
) {
    let (n, wp) = (g.out_hw(), g.phase_dims().1);
    for (k, source) in sources[rows].iter().enumerate() {
        let row = &col[k * ld..][..n];
        let Some(TapSource { start, rows: (top, bottom), cols: (lo, hi) }) = *source else { continue };
        if lo == 0 && hi == g.out_w && wp == g.out_w {
            // Whole rows on both sides: one pass.
            let dst = &mut phases[start..][..(bottom - top) * g.out_w];
            dst.iter_mut().zip(&row[top * g.out_w..bottom * g.out_w]).for_each(|(d, v)| *d += *v);
            continue;
        }
        for (i, oh) in (top..bottom).enumerate() {
            let dst = &mut phases[start + i * wp..][..hi - lo];
            dst.iter_mut().zip(&row[oh * g.out_w + lo..oh * g.out_w + hi]).for_each(|(d, v)| *d += *v);
        }
    }
}

/// Images unfolded side by side into one im2col matrix of at least this many columns: alone, a
/// 7x7 output (49 columns) leaves the 32-column register tile of the product a quarter empty,
/// repacks the weights for every image and gives the weight gradient's products a depth of 49.
const MIN_GROUP_COLS: usize = 512;

/// Images of `n` output positions each to unfold together (see [`MIN_GROUP_COLS`]), at most `batch`.
pub(crate) fn group_images(n: usize, batch: usize) -> usize {
    MIN_GROUP_COLS.div_ceil(n.max(1)).clamp(1, batch.max(1))
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

/// Values copied out of dfdx from which a layer makes two such copies on two threads at once
/// (below it, waking a second thread costs more than the copy).
pub(crate) const PARALLEL_COPIES: usize = 1 << 18;

/// Makes `t` contiguous (recording the copy on its tape when needed) and returns its values.
#[allow(clippy::type_complexity)]
///
/// Every layer's forward pass goes through here, so this is also where the layers apply
/// [`super::keep_freed_memory`] once per process.
pub(crate) fn take_contiguous<S: Shape, E: NnFloat, T: Tape<E, Cpu>>(
    t: Tensor<S, E, Cpu, T>,
) -> Result<(Tensor<S, E, Cpu, T>, Vec<E>), CpuError> {
    static ALLOCATOR: std::sync::Once = std::sync::Once::new();
    ALLOCATOR.call_once(super::keep_freed_memory);
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

    /// Where the buffer starts: two `RawGrad`s of the same tensor have the same address.
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }
}

/// Multiply-adds from which a backward pass runs two independent sets of large products side by
/// side, one thread each (the same sums as on more threads), rather than one after the other on
/// all threads.
pub(crate) const SIDE_BY_SIDE_MACS: usize = 1 << 22;

/// Fetches (allocating if needed) the gradient of a tensor-like value as a [`RawGrad`].
macro_rules! raw_grad {
    ($grads:expr, $t:expr) => {{
        let v: &mut Vec<_> = $grads.get_or_alloc_mut($t)?;
        $crate::nn::kernels::RawGrad::new(v)
    }};
}
pub(crate) use raw_grad;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_products_give_the_serial_bits() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
        // Column splits (few rows), row splits, and widths that are not whole panels.
        for &(m, k, n) in &[(32, 256, 1024), (20, 300, 700), (8, 1000, 333), (200, 100, 150), (1024, 32, 256)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5).collect();
            let views = |i: usize| {
                let a = if i & 1 == 0 { Mat::rows(&a, k) } else { Mat::rows_t(&a, m) };
                (a, if i & 2 == 0 { Mat::rows(&b, n) } else { Mat::rows_t(&b, k) })
            };
            for layout in 0..4 {
                let mut serial = vec![0.5f32; m * n];
                let (av, bv) = views(layout);
                matmul((m, k, n), av, bv, &mut serial, true, 1);
                for threads in [2, 3] {
                    let mut split = vec![0.5f32; m * n];
                    pool.install(|| {
                        let (av, bv) = views(layout);
                        matmul((m, k, n), av, bv, &mut split, true, threads)
                    });
                    assert!(
                        serial.iter().zip(&split).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "({m},{k},{n}) layout {layout} on {threads} threads"
                    );
                }
            }
        }
    }
}
