//! Direct convolution for f32 on AVX-512, and the transposed convolutions of the same shapes: the
//! stride-2 layers of the GAN and of the convolutional VAE, where the im2col path spent about 40%
//! of its time building, packing and folding back im2col matrices around its products, and the
//! stride-1 layers with 32k channels (`mnist_cnn`'s second convolution: 10 ms against 12.3 on the
//! im2col path in `nn_bench`). Stride 1 is the case of a single phase.
//!
//! Each image is split once into its stride phases, zero padded (`x[c][phase][i][j]`, and
//! channels-last for the weight gradient), so that every kernel tap reads a stride-1 window of
//! one phase. A register tile holds up to 14 output positions × 32 channels: it broadcasts one
//! input value per position and multiplies it by a vector of weights, for every tap and input
//! channel, without packing anything. The input gradient is the same tile run on the padded
//! output gradient, one stride class of input pixels (same row and column parity) at a time;
//! the weight gradient tiles 12 input channels × 32 output channels and sums over positions.
//! Tiles are written channels-last and transposed into NCHW per image. Every image is computed
//! the same way whatever the thread count; the weight gradient is summed per part of the batch
//! and the parts added in order, as on the im2col path.

use super::kernels::Geometry;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Channels in a register tile (two zmm vectors).
const BLOCK: usize = 32;
/// Most output positions in a register tile.
const MAX_J: usize = 14;
/// Input channels in a weight-gradient tile.
const MAX_R: usize = 12;

/// Whether the direct kernels take a convolution: f32 on a CPU with AVX-512F, every tap of the
/// kernel, channel counts that are multiples of 32, and stride ≥ 2 or a kernel larger than 1×1
/// (a 1×1 stride-1 convolution is a plain matrix product, which im2col does not copy).
pub(crate) fn applies<E: 'static>(g: &Geometry, o: usize, k: usize, taps: usize) -> bool {
    std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
        && super::avx512::available()
        && taps == k * k
        && (g.stride >= 2 || k >= 2)
        && g.chans.is_multiple_of(BLOCK)
        && o.is_multiple_of(BLOCK)
        && g.chans > 0
        && o > 0
}

/// `out[b] += conv(x[b], weight)`, `weight` `O × C × K × K`; with `bias`, `out` is zero on entry
/// and each image's planes are set to the bias first, as they are used. With `keep`, returns
/// the images' stride phases (`split`'s layout, image after image) for [`weight_grad_of`], which
/// then does not split the images again; otherwise an empty vector.
pub(crate) fn forward(
    g: &Geometry,
    k: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    out: &mut [f32],
    keep: bool,
) -> Vec<f32> {
    super::kernels::count_kernel(super::kernels::KernelPath::DirectConv);
    let ph = Phases::new(g, k);
    let (c, o, n) = (g.chans, weight.len() / (g.chans * k * k), g.out_hw());
    // Weights as [o block][tap][c][32]: the vectors one tap and channel multiply.
    let mut wf = vec![0.0f32; weight.len()];
    wf.par_chunks_mut(k * k * c * BLOCK).enumerate().for_each(|(ob, block)| {
        for (t, per_tap) in block.chunks_mut(c * BLOCK).enumerate() {
            for (ci, lanes) in per_tap.chunks_mut(BLOCK).enumerate() {
                for (lane, v) in lanes.iter_mut().enumerate() {
                    *v = weight[((ob * BLOCK + lane) * c + ci) * k * k + t];
                }
            }
        }
    });
    let image = |xp: &[f32], tmp: &mut Vec<f32>, out_b: &mut [f32]| {
        tmp.resize(n * o, 0.0);
        for ob in 0..o / BLOCK {
            let w_ob = &wf[ob * k * k * c * BLOCK..];
            let all: Vec<(usize, usize, *const f32)> =
                (0..k * k).map(|t| (t / k, ph.tap_offset(t), w_ob[t * c * BLOCK..].as_ptr())).collect();
            let mut oy = 0;
            while oy < g.out_h {
                // Taps whose input row is padding add zeros: skipped (the sums are the same).
                let taps_of = |oy: usize| -> Vec<(usize, *const f32)> {
                    let inside = |ki: usize| (g.stride * oy + ki).wrapping_sub(g.pad) < g.h;
                    all.iter().filter(|t| inside(t.0)).map(|&(_, off, w)| (off, w)).collect()
                };
                let taps = taps_of(oy);
                // Rows of at most 7 outputs with the same taps go two to a tile.
                let pair = g.out_w <= MAX_J / 2 && oy + 1 < g.out_h && taps_of(oy + 1) == taps;
                let rows = if pair { 2 } else { 1 };
                for (x0, len) in row_tiles(0, g.out_w) {
                    let src = xp[oy * ph.wp + x0..].as_ptr();
                    let dst = tmp[(oy * g.out_w + x0) * o + ob * BLOCK..].as_mut_ptr();
                    let span = Span { len, second_row: (rows == 2).then_some((ph.wp, g.out_w * o)) };
                    // SAFETY: AVX-512F checked by `applies`; every tap's window of `len`
                    // positions (in each row) lies inside the phase planes (see `Phases`), and
                    // the tile writes `len` rows of 32 values `o` apart (per row) inside `tmp`.
                    unsafe { tile(span, src, ph.plane(), c, &taps, dst, o) };
                }
                oy += rows;
            }
        }
        if let Some(bias) = bias {
            out_b.chunks_mut(n).zip(bias).for_each(|(plane, &b)| plane.fill(b));
        }
        add_transposed(tmp, n, o, out_b);
    };
    let images = out.par_chunks_mut(o * n).zip(x.par_chunks(g.in_len()));
    if !keep {
        images.for_each_init(
            || (Vec::new(), Vec::new()),
            |(xp, tmp), (out_b, x_b)| {
                ph.split(x_b, xp);
                image(xp, tmp, out_b);
            },
        );
        return Vec::new();
    }
    let (len, total) = (c * ph.plane(), x.len() / g.in_len() * c * ph.plane());
    let mut kept = Vec::with_capacity(total);
    let slots = kept.spare_capacity_mut()[..total].par_chunks_mut(len);
    slots.zip(images).for_each_init(Vec::new, |tmp, (slot, (out_b, x_b))| {
        slot.fill(std::mem::MaybeUninit::new(0.0));
        // SAFETY: every value of `slot` was just written.
        let xp = unsafe { &mut *(slot as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
        ph.split_into(x_b, xp);
        image(xp, tmp, out_b);
    });
    // SAFETY: every slot, and so each of the `total` values, was written above.
    unsafe { kept.set_len(total) };
    kept
}

/// `dx[b] += conv_transpose(gout[b], weight)`: the input gradient of [`forward`], which is also
/// the forward pass of the transposed convolution with the same weights.
pub(crate) fn input_grad(g: &Geometry, k: usize, weight: &[f32], gout: &[f32], dx: &mut [f32]) {
    let ph = Phases::new(g, k);
    let (c, o, n) = (g.chans, weight.len() / (g.chans * k * k), g.out_hw());
    // Weights as [c block][tap][o][32].
    let mut wd = vec![0.0f32; weight.len()];
    wd.par_chunks_mut(k * k * o * BLOCK).enumerate().for_each(|(cb, block)| {
        for (t, per_tap) in block.chunks_mut(o * BLOCK).enumerate() {
            for (oc, lanes) in per_tap.chunks_mut(BLOCK).enumerate() {
                for (lane, v) in lanes.iter_mut().enumerate() {
                    *v = weight[(oc * c + cb * BLOCK + lane) * k * k + t];
                }
            }
        }
    });
    dx.par_chunks_mut(g.in_len())
        .zip(gout.par_chunks(o * n))
        .for_each_init(Scratch::default, |s, (dx_b, g_b)| image_input_grad(&ph, &wd, o, g_b, dx_b, s));
}

/// The weight and bias gradients of [`forward`] (`o` output channels) from the input's stride
/// `phases` that it kept: `(dW, db)` with `dW` laid out as the weight (`o × c × k × k`). Summed
/// per part of the batch, one part per thread, the parts added in order.
pub(crate) fn weight_grad_of(g: &Geometry, k: usize, o: usize, phases: &[f32], gout: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let ph = Phases::new(g, k);
    let (c, n, in_len) = (g.chans, g.out_hw(), g.chans * ph.plane());
    let len = o * c * k * k;
    let batch = gout.len() / (o * n).max(1);
    let parts = super::kernels::threads().min(batch).max(1);
    let per_part = batch.div_ceil(parts).max(1);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = phases
        .par_chunks(per_part * in_len)
        .zip(gout.par_chunks(per_part * o * n))
        .map(|(x_p, g_p)| {
            let mut s = Scratch::default();
            // The weight gradient as [c][tap][o].
            let (mut dwt, mut db) = (vec![0.0f32; len], vec![0.0f32; o]);
            let group = images_per_weight_tile(n);
            for (x_g, g_g) in x_p.chunks(group * in_len).zip(g_p.chunks(group * o * n)) {
                for g_b in g_g.chunks(o * n) {
                    g_b.chunks(n).zip(&mut db).for_each(|(row, d)| *d += super::kernels::sum(row));
                }
                group_weight_grad(&ph, o, x_g, g_g, &mut dwt, &mut s);
            }
            (dwt, db)
        })
        .collect();
    let mut parts = partials.into_iter();
    let (mut dwt, mut db) = parts.next().unwrap_or_else(|| (vec![0.0; len], vec![0.0; o]));
    for (pw, pb) in parts {
        dwt.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    let mut dw = vec![0.0f32; len];
    transpose_into(&dwt, c * k * k, o, &mut dw);
    (dw, db)
}

/// Per-thread buffers of the backward pass.
#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    tmp: Vec<f32>,
    phases_t: Vec<f32>,
    gout_t: Vec<f32>,
}

/// `dx_b += conv_transpose(g_b)` for one image, one stride class of input pixels at a time.
fn image_input_grad(ph: &Phases, wd: &[f32], o: usize, g_b: &[f32], dx_b: &mut [f32], s: &mut Scratch) {
    let (st, k, q, e) = (ph.s, ph.k, ph.q, ph.q + 1);
    let (h, w, c) = (ph.h, ph.w, ph.c);
    // The output gradient zero padded by `e` on every side: [o][hg][wg].
    let (hg, wg) = (ph.out_h + 2 * e, ph.out_w + 2 * e);
    // The border stays zero between images: only the interior is written.
    if s.padded.len() != o * hg * wg {
        s.padded.clear();
        s.padded.resize(o * hg * wg, 0.0);
    }
    for (plane, src) in s.padded.chunks_mut(hg * wg).zip(g_b.chunks(ph.out_h * ph.out_w)) {
        for (row, src_row) in src.chunks(ph.out_w).enumerate() {
            plane[(row + e) * wg + e..][..ph.out_w].copy_from_slice(src_row);
        }
    }
    // Every value is written by exactly one tile.
    s.tmp.resize(h * w * c, 0.0);
    for cb in 0..c / BLOCK {
        for ra in 0..st {
            for rb in 0..st {
                // The taps that reach pixels with (y + pad) % s == ra and (x + pad) % s == rb;
                // tap (ra + s·m, rb + s·n) reads gradient row u - m, column t - n.
                let mut all = Vec::new();
                for m in 0..k.div_ceil(st) {
                    for n_ in 0..k.div_ceil(st) {
                        let (ki, kj) = (ra + st * m, rb + st * n_);
                        if ki < k && kj < k {
                            let wt = wd[((cb * k * k + ki * k + kj) * o) * BLOCK..].as_ptr();
                            all.push((m, (q - m) * wg + (q - n_), wt));
                        }
                    }
                }
                let (u_lo, u_hi) = class_range(ra, st, ph.pad, h);
                let (t_lo, t_hi) = class_range(rb, st, ph.pad, w);
                let mut u = u_lo;
                while u < u_hi {
                    let y = st * u + ra - ph.pad;
                    // Taps whose gradient row u - m is padding add zeros: skipped.
                    let taps_of = |u: usize| -> Vec<(usize, *const f32)> {
                        all.iter().filter(|t| u.wrapping_sub(t.0) < ph.out_h).map(|&(_, off, w)| (off, w)).collect()
                    };
                    let taps = taps_of(u);
                    // Rows of at most 7 pixels with the same taps go two to a tile.
                    let pair = t_hi - t_lo <= MAX_J / 2 && u + 1 < u_hi && taps_of(u + 1) == taps;
                    let rows = if pair { 2 } else { 1 };
                    for (t0, len) in row_tiles(t_lo, t_hi) {
                        let x0 = st * t0 + rb - ph.pad;
                        let src = s.padded[(u + e - q) * wg + t0 + e - q..].as_ptr();
                        let dst = s.tmp[(y * w + x0) * c + cb * BLOCK..].as_mut_ptr();
                        let span = Span { len, second_row: (rows == 2).then_some((wg, st * w * c)) };
                        // SAFETY: AVX-512F checked by `applies`; the padding `e` keeps every
                        // window inside `padded` (rows u - m + e < hg, columns t - n + e < wg),
                        // and the `len` pixels written, `s` apart, lie in row `y` (and `y + s`)
                        // of `tmp`.
                        unsafe { tile(span, src, hg * wg, o, &taps, dst, st * c) };
                    }
                    u += rows;
                }
            }
        }
    }
    add_transposed(&s.tmp, h * w, c, dx_b);
}

/// Inputs `[lo, hi)` of the class `r`: the `v` with `0 <= s·v + r - pad < len`.
fn class_range(r: usize, s: usize, pad: usize, len: usize) -> (usize, usize) {
    let lo = if r >= pad { 0 } else { (pad - r).div_ceil(s) };
    let hi = if len + pad > r { (len - 1 + pad - r) / s + 1 } else { 0 };
    (lo, hi.max(lo))
}

/// Images whose positions one weight-gradient tile sums before it stores its sums: enough for
/// about 192 positions (a 7 × 7 output spent a sixth of its time loading and storing the tiles).
fn images_per_weight_tile(positions: usize) -> usize {
    192usize.div_ceil(positions.max(1)).min(MAX_IMAGES)
}

/// Most images in one weight-gradient tile.
const MAX_IMAGES: usize = 4;

/// `dwt[c][t][o] += Σ_pos x_phase(t)[pos][c] · gout[o][pos]` for a group of images (at most
/// [`MAX_IMAGES`]), from their phases.
fn group_weight_grad(ph: &Phases, o: usize, phases_g: &[f32], g_g: &[f32], dwt: &mut [f32], s: &mut Scratch) {
    let (c, k, n, len) = (ph.c, ph.k, ph.out_h * ph.out_w, ph.c * ph.plane());
    let images = g_g.len() / (n * o);
    // Each image's phases channels last, [phase][hp][wp][c], and its output gradient [pos][o].
    s.phases_t.resize(phases_g.len(), 0.0);
    s.gout_t.resize(g_g.len(), 0.0);
    for (src, dst) in phases_g.chunks(len).zip(s.phases_t.chunks_mut(len)) {
        transpose_into(src, c, ph.plane(), dst);
    }
    for (src, dst) in g_g.chunks(n * o).zip(s.gout_t.chunks_mut(n * o)) {
        transpose_into(src, o, n, dst);
    }
    for t in 0..k * k {
        // Output rows whose input row is padding add zeros: skipped (the sums are the same).
        let (lo, hi) = ph.valid_rows(t / k);
        let x_t = ph.tap_offset_channels_last(t) + lo * ph.wp * c;
        let g_t = lo * ph.out_w * o;
        for ob in 0..o / BLOCK {
            // Channels in near-equal tiles of at most 12 (64 = 6 x 11 or 10, not 5 x 12 + 4).
            for (c0, rows) in row_tiles_of(0, c, MAX_R) {
                let mut sources = [(std::ptr::null(), std::ptr::null()); MAX_IMAGES];
                for (i, src) in sources.iter_mut().enumerate().take(images) {
                    *src =
                        (s.phases_t[i * len + x_t + c0..].as_ptr(), s.gout_t[i * n * o + g_t + ob * BLOCK..].as_ptr());
                }
                let dst = dwt[(c0 * k * k + t) * o + ob * BLOCK..].as_mut_ptr();
                // SAFETY: AVX-512F checked by `applies`; the window of `out_h × out_w`
                // positions of tap `t` lies inside each image's phases (see `Phases`), each
                // image's `gout_t` holds `n × o` values and `dst` `rows` rows of 32 values `o`
                // apart.
                unsafe {
                    weight_tile(rows, &sources[..images], (ph.wp * c, c), o, (hi - lo, ph.out_w), dst, k * k * o)
                };
            }
        }
    }
}

/// The stride phases of one image, zero padded: phase `(a, b)` holds `x[c][s·i + a - pad][s·j +
/// b - pad]` for `i < hp`, `j < wp`, where `hp = out_h + q`, `wp = out_w + q`, `q = (k-1)/s`:
/// tap `(ki, kj)` reads phase `(ki % s, kj % s)` at `(oy + ki/s, ox + kj/s)`.
struct Phases {
    c: usize,
    h: usize,
    w: usize,
    s: usize,
    k: usize,
    pad: usize,
    q: usize,
    out_h: usize,
    out_w: usize,
    hp: usize,
    wp: usize,
    /// [`Phases::row_runs`].
    runs: Vec<(usize, usize, usize)>,
}

impl Phases {
    fn new(g: &Geometry, k: usize) -> Self {
        let q = (k - 1) / g.stride;
        let mut ph = Self {
            c: g.chans,
            h: g.h,
            w: g.w,
            s: g.stride,
            k,
            pad: g.pad,
            q,
            out_h: g.out_h,
            out_w: g.out_w,
            hp: g.out_h + q,
            wp: g.out_w + q,
            runs: Vec::new(),
        };
        ph.runs = ph.row_runs();
        ph
    }

    /// Output rows `[lo, hi)` whose input row `s·oy + ki - pad` lies inside the image.
    fn valid_rows(&self, ki: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(ki).div_ceil(self.s).min(self.out_h);
        let hi = (0..self.out_h).rev().find(|&oy| self.s * oy + ki < self.h + self.pad).map_or(lo, |oy| oy + 1);
        (lo, hi.max(lo))
    }

    /// Values of one channel's phases.
    fn plane(&self) -> usize {
        self.s * self.s * self.hp * self.wp
    }

    /// Splits `x_b` (`c × h × w`) into `dst[c][phase][hp][wp]`. `dst` must be empty or hold an
    /// earlier split of the same geometry: only the values that come from the image are
    /// written, so the zero padding is written once per buffer, not once per image.
    fn split(&self, x_b: &[f32], dst: &mut Vec<f32>) {
        if dst.len() != self.c * self.plane() {
            dst.clear();
            dst.resize(self.c * self.plane(), 0.0);
        }
        self.split_into(x_b, dst);
    }

    /// [`Phases::split`] into a slice of `c × plane` values whose padding is zero.
    fn split_into(&self, x_b: &[f32], dst: &mut [f32]) {
        assert_eq!(dst.len(), self.c * self.plane(), "split: destination of another geometry");
        // SAFETY: AVX-512F checked by `applies`.
        unsafe { self.split_avx512(x_b, dst) }
    }

    /// The body of [`Phases::split`], compiled for AVX-512 so that the row copies inline.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn split_avx512(&self, x_b: &[f32], dst: &mut [f32]) {
        if self.s == 2 {
            self.split_stride2(x_b, dst);
            return;
        }
        for (x_c, d_c) in x_b.chunks(self.h * self.w).zip(dst.chunks_mut(self.plane())) {
            for &(src, dst, len) in &self.runs {
                let src = &x_c[src..src + self.s * (len - 1) + 1];
                strided_copy(src, self.s, &mut d_c[dst..dst + len]);
            }
        }
    }

    /// [`Phases::split`] at stride 2, a source row at a time: its even columns go to one
    /// column phase and its odd columns to the other, both from the same two loads.
    ///
    /// # Safety
    /// AVX-512F; `self.s == 2`.
    #[target_feature(enable = "avx512f")]
    unsafe fn split_stride2(&self, x_b: &[f32], dst: &mut [f32]) {
        let (hp, wp, pad, w) = (self.hp, self.wp, self.pad, self.w);
        // Column 2m goes to phase b = pad % 2 at j = m + pad / 2, column 2m + 1 to the other
        // phase at j = m + (pad + 1) / 2; columns past the phase rows' width are never read.
        let fit = |j0: usize, n: usize| if j0 < wp { n.min(wp - j0) } else { 0 };
        let (b_even, j_even) = (pad % 2, pad / 2);
        let (b_odd, j_odd) = (1 - b_even, pad.div_ceil(2));
        let (n_even, n_odd) = (fit(j_even, w.div_ceil(2)), fit(j_odd, w / 2));
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
        let mask = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
        for (x_c, d_c) in x_b.chunks(self.h * self.w).zip(dst.chunks_mut(self.plane())) {
            for y in 0..self.h {
                let (a, i) = ((y + pad) % 2, (y + pad) / 2);
                if i >= hp {
                    continue;
                }
                let row = &x_c[y * w..(y + 1) * w];
                // The destination rows, bounds checked once (empty when no column fits).
                let mut dst_row = |b: usize, j0: usize, n: usize| match n {
                    0 => std::ptr::null_mut(),
                    _ => d_c[((a * 2 + b) * hp + i) * wp + j0..][..n].as_mut_ptr(),
                };
                let (d_even, d_odd) = (dst_row(b_even, j_even, n_even), dst_row(b_odd, j_odd, n_odd));
                for m in (0..w).step_by(32) {
                    let avail = w - m;
                    let lo = _mm512_maskz_loadu_ps(mask(avail), row.as_ptr().add(m));
                    let hi = _mm512_maskz_loadu_ps(mask(avail.saturating_sub(16)), row.as_ptr().add(m + 16.min(avail)));
                    let half = m / 2;
                    if half < n_even {
                        let v = _mm512_permutex2var_ps(lo, evens, hi);
                        _mm512_mask_storeu_ps(d_even.add(half), mask(n_even - half), v);
                    }
                    if half < n_odd {
                        let v = _mm512_permutex2var_ps(lo, odds, hi);
                        _mm512_mask_storeu_ps(d_odd.add(half), mask(n_odd - half), v);
                    }
                }
            }
        }
    }

    /// The row copies of one channel's split: `(source offset, destination offset, length)`,
    /// every phase row that holds image values, without its padding.
    fn row_runs(&self) -> Vec<(usize, usize, usize)> {
        let (s, hp, wp) = (self.s, self.hp, self.wp);
        let mut runs = Vec::with_capacity(s * s * hp);
        for phase in 0..s * s {
            let (a, b) = (phase / s, phase % s);
            let (j_lo, j_hi) = class_range(b, s, self.pad, self.w);
            let (j_lo, j_hi) = (j_lo.min(wp), j_hi.min(wp));
            for i in 0..hp {
                let y = (s * i + a).wrapping_sub(self.pad);
                if y < self.h && j_lo < j_hi {
                    runs.push((y * self.w + s * j_lo + b - self.pad, (phase * hp + i) * wp + j_lo, j_hi - j_lo));
                }
            }
        }
        runs
    }

    /// Where tap `t = ki·k + kj` starts in a channel's phases (`split`'s layout).
    fn tap_offset(&self, t: usize) -> usize {
        let (ki, kj, s) = (t / self.k, t % self.k, self.s);
        ((ki % s) * s + kj % s) * self.hp * self.wp + (ki / s) * self.wp + kj / s
    }

    /// Where tap `t` starts in `split_channels_last`'s layout.
    fn tap_offset_channels_last(&self, t: usize) -> usize {
        let (ki, kj, s) = (t / self.k, t % self.k, self.s);
        ((((ki % s) * s + kj % s) * self.hp + ki / s) * self.wp + kj / s) * self.c
    }
}

/// Splits `[lo, hi)` into runs of at most [`MAX_J`] positions, as even as possible.
fn row_tiles(lo: usize, hi: usize) -> impl Iterator<Item = (usize, usize)> {
    row_tiles_of(lo, hi, MAX_J)
}

/// Splits `[lo, hi)` into runs of at most `most`, as even as possible: `(start, len)`.
fn row_tiles_of(lo: usize, hi: usize, most: usize) -> impl Iterator<Item = (usize, usize)> {
    let len = hi.saturating_sub(lo);
    let tiles = len.div_ceil(most);
    (0..tiles).map(move |i| {
        let (a, b) = (lo + i * len / tiles, lo + (i + 1) * len / tiles);
        (a, b - a)
    })
}

/// `dst[i] = src[i·s]` for `i < dst.len()` (`src` holds `s·(len-1) + 1` values).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn strided_copy(src: &[f32], s: usize, dst: &mut [f32]) {
    if s == 2 {
        even_lanes(src, dst);
        return;
    }
    if s == 1 {
        for (d, v) in dst.chunks_mut(16).zip(src.chunks(16)) {
            let m = ((1u32 << d.len()) - 1) as __mmask16;
            _mm512_mask_storeu_ps(d.as_mut_ptr(), m, _mm512_maskz_loadu_ps(m, v.as_ptr()));
        }
        return;
    }
    for (i, d) in dst.iter_mut().enumerate() {
        *d = src[i * s];
    }
}

/// `dst[i] = src[2i]`, 16 at a time from two (masked) loads.
///
/// # Safety
/// AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn even_lanes(src: &[f32], dst: &mut [f32]) {
    assert!(src.len() + 1 >= 2 * dst.len(), "even_lanes: source too short");
    let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mask = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
    for i in (0..dst.len()).step_by(16) {
        let (n, avail) = ((dst.len() - i).min(16), src.len() - 2 * i);
        let lo = _mm512_maskz_loadu_ps(mask(avail), src.as_ptr().add(2 * i));
        let hi = _mm512_maskz_loadu_ps(mask(avail.saturating_sub(16)), src.as_ptr().add(2 * i + 16.min(avail)));
        _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask(n), _mm512_permutex2var_ps(lo, idx, hi));
    }
}

/// `dst[c][p] += src[p][c]` for a `rows × cols` matrix `src`.
fn add_transposed(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    transpose(src, rows, cols, dst, true);
}

/// `dst[p][r] = src[r][p]` for a `rows × cols` matrix `src`.
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    transpose(src, rows, cols, dst, false);
}

/// `dst[c·rows + r] (+)= src[r·cols + c]`: 16 × 16 blocks in registers, the edges one by one.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32], add: bool) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols, "transpose: slices too short");
    let (full_r, full_c) = (rows / 16 * 16, cols / 16 * 16);
    for r0 in (0..full_r).step_by(16) {
        for c0 in (0..full_c).step_by(16) {
            // SAFETY: AVX-512F checked by `applies`; the block lies inside both slices.
            unsafe {
                transpose16(src.as_ptr().add(r0 * cols + c0), cols, dst.as_mut_ptr().add(c0 * rows + r0), rows, add)
            };
        }
    }
    let mut edge = |r: usize, c: usize| {
        let v = src[r * cols + c];
        let d = &mut dst[c * rows + r];
        *d = if add { *d + v } else { v };
    };
    for r in 0..rows {
        for c in full_c..cols {
            edge(r, c);
        }
    }
    for r in full_r..rows {
        for c in 0..full_c {
            edge(r, c);
        }
    }
}

/// Transposes the 16 × 16 block at `src` (rows `ss` apart) into `dst` (rows `ds` apart),
/// adding to what is there when `add`.
///
/// # Safety
/// AVX-512F; both blocks must lie inside their allocations.
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(src: *const f32, ss: usize, dst: *mut f32, ds: usize, add: bool) {
    let r: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(src.add(i * ss)));
    // Pairs of rows interleaved, then groups of four within each 128-bit lane ...
    let t: [__m512; 16] = std::array::from_fn(|i| match i % 2 {
        0 => _mm512_unpacklo_ps(r[i], r[i + 1]),
        _ => _mm512_unpackhi_ps(r[i - 1], r[i]),
    });
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, k) = (i / 4 * 4, i % 4);
        let (a, b) = (t[g + k / 2], t[g + 2 + k / 2]);
        match k % 2 {
            0 => _mm512_shuffle_ps::<0x44>(a, b),
            _ => _mm512_shuffle_ps::<0xEE>(a, b),
        }
    });
    // ... so that u[4g + k] holds, in lane l, column 4l + k of rows 4g..4g+4; then the lanes.
    for k in 0..4 {
        let (v0, v1) = (_mm512_shuffle_f32x4::<0x88>(u[k], u[4 + k]), _mm512_shuffle_f32x4::<0xDD>(u[k], u[4 + k]));
        let (w0, w1) =
            (_mm512_shuffle_f32x4::<0x88>(u[8 + k], u[12 + k]), _mm512_shuffle_f32x4::<0xDD>(u[8 + k], u[12 + k]));
        let cols = [
            (k, _mm512_shuffle_f32x4::<0x88>(v0, w0)),
            (4 + k, _mm512_shuffle_f32x4::<0x88>(v1, w1)),
            (8 + k, _mm512_shuffle_f32x4::<0xDD>(v0, w0)),
            (12 + k, _mm512_shuffle_f32x4::<0xDD>(v1, w1)),
        ];
        for (c, v) in cols {
            let d = dst.add(c * ds);
            let v = if add { _mm512_add_ps(_mm512_loadu_ps(d), v) } else { v };
            _mm512_storeu_ps(d, v);
        }
    }
}

/// The output positions of one tile: `len` consecutive positions of a row, and with
/// `second_row = Some((src_gap, dst_gap))` as many of the next row, `src_gap` values further in
/// the source and `dst_gap` further in the destination (`len` at most 7 then).
#[derive(Clone, Copy)]
struct Span {
    len: usize,
    second_row: Option<(usize, usize)>,
}

/// Runs [`tile_j`] with `span.len` (1..=14) positions, or [`tile_rows_j`] for two rows.
///
/// # Safety
/// As [`tile_j`] (for each row).
unsafe fn tile(
    span: Span,
    src: *const f32,
    plane: usize,
    chans: usize,
    taps: &[(usize, *const f32)],
    dst: *mut f32,
    dst_stride: usize,
) {
    macro_rules! one_row {
        ($($j:literal)*) => {
            match span.len {
                $($j => tile_j::<$j>(src, plane, chans, taps, dst, dst_stride),)*
                _ => unreachable!("tiles hold 1 to {MAX_J} positions"),
            }
        };
    }
    macro_rules! two_rows {
        ($gaps:expr, $($j:literal)*) => {
            match span.len {
                $($j => tile_rows_j::<$j>(src, plane, chans, taps, dst, dst_stride, $gaps),)*
                _ => unreachable!("two-row tiles hold 1 to {} positions a row", MAX_J / 2),
            }
        };
    }
    match span.second_row {
        None => one_row!(1 2 3 4 5 6 7 8 9 10 11 12 13 14),
        Some(gaps) => two_rows!(gaps, 1 2 3 4 5 6 7),
    }
}

/// `dst[j·dst_stride + 0..32] = Σ_taps Σ_c src[off + c·plane + j] · w[c·32 + 0..32]` for
/// `j < J`, over `taps = [(off, w)]`.
///
/// # Safety
/// AVX-512F; `src` must cover `off + (chans-1)·plane + J` values for every tap, each `w` must
/// cover `chans × 32` values and `dst` `(J-1)·dst_stride + 32`.
#[target_feature(enable = "avx512f")]
unsafe fn tile_j<const J: usize>(
    src: *const f32,
    plane: usize,
    chans: usize,
    taps: &[(usize, *const f32)],
    dst: *mut f32,
    dst_stride: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; J];
    for &(off, w) in taps {
        let mut s = src.add(off);
        let mut w = w;
        for _ in 0..chans {
            broadcast_fma(&mut acc, s, w);
            s = s.add(plane);
            w = w.add(BLOCK);
        }
    }
    store_tile(&acc, dst, dst_stride);
}

/// [`tile_j`] for `J` positions of each of two rows, the second `src_gap` values after the
/// first in `src` and `dst_gap` in `dst`: each weight vector loaded serves both rows.
///
/// # Safety
/// As [`tile_j`], for both rows.
#[target_feature(enable = "avx512f")]
unsafe fn tile_rows_j<const J: usize>(
    src: *const f32,
    plane: usize,
    chans: usize,
    taps: &[(usize, *const f32)],
    dst: *mut f32,
    dst_stride: usize,
    (src_gap, dst_gap): (usize, usize),
) {
    let (mut first, mut second) = ([[_mm512_setzero_ps(); 2]; J], [[_mm512_setzero_ps(); 2]; J]);
    for &(off, w) in taps {
        let mut s = src.add(off);
        let mut w = w;
        for _ in 0..chans {
            let (v0, v1) = (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16)));
            fma_rows(&mut first, s, (v0, v1));
            fma_rows(&mut second, s.add(src_gap), (v0, v1));
            s = s.add(plane);
            w = w.add(BLOCK);
        }
    }
    store_tile(&first, dst, dst_stride);
    store_tile(&second, dst.add(dst_gap), dst_stride);
}

/// `acc[i] += s[i] × (v0, v1)` for every row `i` of a tile.
///
/// # Safety
/// AVX-512F; `s` must cover `N` values.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fma_rows<const N: usize>(acc: &mut [[__m512; 2]; N], s: *const f32, (v0, v1): (__m512, __m512)) {
    for (i, a) in acc.iter_mut().enumerate() {
        let b = _mm512_set1_ps(*s.add(i));
        a[0] = _mm512_fmadd_ps(b, v0, a[0]);
        a[1] = _mm512_fmadd_ps(b, v1, a[1]);
    }
}

/// Writes a tile's rows of 32 values, `dst_stride` apart.
///
/// # Safety
/// AVX-512F; `dst` must cover `(N-1)·dst_stride + 32` values.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile<const N: usize>(acc: &[[__m512; 2]; N], dst: *mut f32, dst_stride: usize) {
    for (j, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(dst.add(j * dst_stride), a[0]);
        _mm512_storeu_ps(dst.add(j * dst_stride + 16), a[1]);
    }
}

/// The step both tiles repeat: `acc[i] += s[i] × v[0..32]` for every row `i` of the tile.
///
/// # Safety
/// AVX-512F; `s` must cover `N` values and `v` 32.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn broadcast_fma<const N: usize>(acc: &mut [[__m512; 2]; N], s: *const f32, v: *const f32) {
    fma_rows(acc, s, (_mm512_loadu_ps(v), _mm512_loadu_ps(v.add(16))));
}

/// Runs [`weight_tile_r`] with `rows` (1..=12) input channels.
///
/// # Safety
/// As [`weight_tile_r`].
unsafe fn weight_tile(
    rows: usize,
    sources: &[(*const f32, *const f32)],
    x_strides: (usize, usize),
    g_stride: usize,
    positions: (usize, usize),
    dst: *mut f32,
    dst_stride: usize,
) {
    macro_rules! dispatch {
        ($($r:literal)*) => {
            match rows {
                $($r => weight_tile_r::<$r>(sources, x_strides, g_stride, positions, dst, dst_stride),)*
                _ => unreachable!("weight tiles hold 1 to {MAX_R} channels"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// `dst[r·dst_stride + 0..32] += Σ_{(x, g) in sources} Σ_{oy, ox} x[oy·rs + ox·cs + r] ·
/// g[(oy·cols + ox)·g_stride + 0..32]` for `r < R`, over `positions = (rows, cols)` and
/// `x_strides = (rs, cs)`: one store of the sums for all the images in `sources`.
///
/// # Safety
/// AVX-512F; the pointers must cover the values read and written.
#[target_feature(enable = "avx512f")]
unsafe fn weight_tile_r<const R: usize>(
    sources: &[(*const f32, *const f32)],
    (rs, cs): (usize, usize),
    g_stride: usize,
    (rows, cols): (usize, usize),
    dst: *mut f32,
    dst_stride: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for &(x, g) in sources {
        let mut gp = g;
        for oy in 0..rows {
            let mut xp = x.add(oy * rs);
            for _ in 0..cols {
                broadcast_fma(&mut acc, xp, gp);
                xp = xp.add(cs);
                gp = gp.add(g_stride);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let d = dst.add(r * dst_stride);
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), a[0]));
        _mm512_storeu_ps(d.add(16), _mm512_add_ps(_mm512_loadu_ps(d.add(16)), a[1]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_ranges_cover_every_pixel_once() {
        for (s, pad, len) in [(2, 1, 28), (2, 1, 14), (2, 0, 7), (3, 2, 10), (2, 3, 5)] {
            let mut seen = vec![0; len];
            for r in 0..s {
                let (lo, hi) = class_range(r, s, pad, len);
                for v in lo..hi {
                    let y = s * v + r - pad;
                    seen[y] += 1;
                    assert_eq!((y + pad) % s, r);
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "s {s} pad {pad} len {len}: {seen:?}");
        }
    }

    #[test]
    fn transposes_match_the_definition() {
        if !crate::nn::avx512_available() {
            return;
        }
        for (rows, cols) in [(16, 16), (49, 32), (196, 64), (7, 5), (33, 18)] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut t = vec![0.0; rows * cols];
            transpose_into(&src, rows, cols, &mut t);
            assert!((0..rows).all(|r| (0..cols).all(|c| t[c * rows + r] == src[r * cols + c])), "{rows}x{cols}");
            add_transposed(&src, rows, cols, &mut t);
            assert!((0..rows).all(|r| (0..cols).all(|c| t[c * rows + r] == 2.0 * src[r * cols + c])), "{rows}x{cols}");
        }
    }

    #[test]
    fn strided_copies_take_every_second_value() {
        if !crate::nn::avx512_available() {
            return;
        }
        for len in [1, 7, 14, 16, 17, 33] {
            let src: Vec<f32> = (0..2 * len - 1).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; len];
            // SAFETY: AVX-512F checked above.
            unsafe { strided_copy(&src, 2, &mut dst) };
            assert_eq!(dst, (0..len).map(|i| 2.0 * i as f32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn row_tiles_split_evenly() {
        let t: Vec<_> = row_tiles(1, 29).collect();
        assert_eq!(t, vec![(1, 14), (15, 14)]);
        assert_eq!(row_tiles(0, 7).collect::<Vec<_>>(), vec![(0, 7)]);
        assert_eq!(row_tiles(0, 15).map(|(_, l)| l).sum::<usize>(), 15);
        assert_eq!(row_tiles(3, 3).count(), 0);
    }
}
