//! Direct convolution for f32 on AVX-512, and the transposed convolutions of the same shapes: the
//! stride-2 layers of the GAN and of the convolutional VAE, where the im2col path spent about 40%
//! of its time building, packing and folding back im2col matrices around its products, and the
//! stride-1 layers with 32k channels (`mnist_cnn`'s second convolution: 10 ms against 12.3 on the
//! im2col path in `nn_bench`).
//!
//! A register tile holds up to 14 output positions × 32 channels: it broadcasts one input value
//! per position, read straight from the image at the stride, and multiplies it by a vector of
//! weights, for every tap and input channel, without copying or packing anything. Taps whose
//! input is padding add zeros and are skipped: whole rows of the tile, and the first or last
//! position of a row (the kernels take only the convolutions whose padding reaches at most one
//! position into each end of a row). The input gradient is the same tile run on the zero-padded
//! output gradient, one stride class of input pixels (same row and column parity) at a time;
//! the weight gradient tiles 12 input channels × 32 output channels and sums over positions,
//! from channels-last copies of the images. Tiles are written channels-last and transposed
//! into NCHW per image. Every image is computed the same way whatever the thread count; the
//! weight gradient is summed per part of the batch and the parts added in order, as on the
//! im2col path.

use super::kernels::Geometry;
use rayon::prelude::*;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Channels in a register tile (two zmm vectors).
const BLOCK: usize = 32;
/// Most output positions in a register tile.
const MAX_J: usize = 14;
/// Input channels in a weight-gradient tile.
const MAX_R: usize = 12;

/// Whether the direct kernels take a convolution: f32 on a CPU with AVX-512F, every tap of the
/// kernel, channel counts that are multiples of 32, stride 1 or 2 (stride 1 with a kernel larger
/// than 1×1: a 1×1 stride-1 convolution is a plain matrix product, which im2col does not copy),
/// and padding that reaches at most one output position into each end of a row.
pub(crate) fn applies<E: 'static>(g: &Geometry, o: usize, k: usize, taps: usize) -> bool {
    std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
        && super::avx512::available()
        && taps == k * k
        && (g.stride == 2 || (g.stride == 1 && k >= 2))
        && g.chans.is_multiple_of(BLOCK)
        && o.is_multiple_of(BLOCK)
        && g.chans > 0
        && o > 0
        && (0..k).all(|kj| {
            let (lo, hi) = valid_outputs(kj, g.stride, g.pad, g.w, g.out_w);
            lo <= 1 && hi + 1 >= g.out_w
        })
}

/// Outputs `[lo, hi)` (of `out_len`) whose input `s·v + t - pad` for tap `t` lies in `[0, len)`.
fn valid_outputs(t: usize, s: usize, pad: usize, len: usize, out_len: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(t).div_ceil(s).min(out_len);
    let hi = if len + pad > t { ((len + pad - t - 1) / s + 1).min(out_len) } else { 0 };
    (lo, hi.max(lo))
}

/// `conv(x, weight) + bias`, `weight` `O × C × K × K`: a new vector, each image's planes set to
/// the bias by the thread that computes it (not zeroed first, on one thread, by the allocator).
pub(crate) fn forward(g: &Geometry, k: usize, weight: &[f32], bias: &[f32], x: &[f32]) -> Vec<f32> {
    let len = x.len() / g.in_len().max(1) * bias.len() * g.out_hw();
    let mut out = Vec::with_capacity(len);
    forward_images(g, k, weight, Some(bias), x, &mut out.spare_capacity_mut()[..len]);
    // SAFETY: `forward_images` writes every value of `out` when given a bias.
    unsafe { out.set_len(len) };
    out
}

/// `out[b] += conv(x[b], weight)`, `weight` `O × C × K × K`.
pub(crate) fn forward_add(g: &Geometry, k: usize, weight: &[f32], x: &[f32], out: &mut [f32]) {
    // SAFETY: the values are initialised, and only initialised values are written.
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    forward_images(g, k, weight, None, x, out);
}

/// [`forward`] (`bias` given: `out` may be uninitialised, and every value is written) and
/// [`forward_add`] (no bias: `out` is initialised and added to).
fn forward_images(
    g: &Geometry,
    k: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    out: &mut [MaybeUninit<f32>],
) {
    super::kernels::count_kernel(super::kernels::KernelPath::DirectConv);
    let (c, o, n) = (g.chans, weight.len() / (g.chans * k * k), g.out_hw());
    let (s, pad, w) = (g.stride, g.pad as isize, g.w as isize);
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
    let cols: Vec<(usize, usize)> = (0..k).map(|kj| valid_outputs(kj, s, g.pad, g.w, g.out_w)).collect();
    // The kernel rows whose input row lies inside the image, as a bit mask.
    let rows_inside = |oy: usize| -> u64 {
        (0..k).filter(|&ki| (s * oy + ki).wrapping_sub(g.pad) < g.h).fold(0, |m, ki| m | 1 << ki)
    };
    // The tiles of one image and one block of output channels, the same for all of them.
    let mut plan = Plan::default();
    let mut oy = 0;
    while oy < g.out_h {
        // Rows of at most 7 outputs with the same kernel rows inside go two to a tile.
        let inside = rows_inside(oy);
        let pair = g.out_w <= MAX_J / 2 && oy + 1 < g.out_h && rows_inside(oy + 1) == inside;
        for (x0, len) in row_tiles(0, g.out_w) {
            let first = plan.taps.len();
            for ki in (0..k).filter(|ki| inside >> ki & 1 == 1) {
                for (kj, &(lo, hi)) in cols.iter().enumerate() {
                    let row = (s * oy + ki) as isize - pad;
                    plan.taps.push(Tap {
                        off: row * w + (s * x0 + kj) as isize - pad,
                        w: (ki * k + kj) * c * BLOCK,
                        skip: Skip::of(x0 < lo, x0 + len > hi),
                    });
                }
            }
            let span = Span { len, second_row: pair.then_some((s * g.w, g.out_w * o)) };
            plan.tiles.push(PlannedTile { src: 0, dst: (oy * g.out_w + x0) * o, span, taps: first..plan.taps.len() });
        }
        oy += if pair { 2 } else { 1 };
    }
    let image = |x_b: &[f32], tmp: &mut Vec<f32>, out_b: &mut [MaybeUninit<f32>]| {
        tmp.resize(n * o, 0.0);
        for ob in 0..o / BLOCK {
            let w_ob = wf[ob * k * k * c * BLOCK..].as_ptr();
            for t in &plan.tiles {
                let dst = tmp[t.dst + ob * BLOCK..].as_mut_ptr();
                // SAFETY: AVX-512F checked by `applies`; every position a tap does not skip
                // reads inside `x_b`: its row is inside the image (`rows_inside`, the same for
                // both rows of a pair), its column in `[lo, hi)`, and `applies` makes the
                // positions outside that range the tile's first or last (`Skip`); the taps'
                // weights lie inside `wf`. The tile writes `len` rows of 32 values `o` apart
                // (per row) inside `tmp`.
                unsafe { tile(t.span, s, x_b.as_ptr(), w_ob, g.h * g.w, c, &plan.taps[t.taps.clone()], dst, o) };
            }
        }
        if let Some(bias) = bias {
            out_b.chunks_mut(n).zip(bias).for_each(|(plane, &b)| plane.fill(MaybeUninit::new(b)));
        }
        // SAFETY: every value is initialised: set to the bias just above, or (without a bias)
        // on entry.
        let out_b = unsafe { &mut *(out_b as *mut [MaybeUninit<f32>] as *mut [f32]) };
        add_transposed(tmp, n, o, out_b);
    };
    out.par_chunks_mut(o * n)
        .zip(x.par_chunks(g.in_len()))
        .for_each_init(Vec::new, |tmp, (out_b, x_b)| image(x_b, tmp, out_b));
}

/// `dx[b] += conv_transpose(gout[b], weight)`: the input gradient of [`forward`], which is also
/// the forward pass of the transposed convolution with the same weights.
pub(crate) fn input_grad(g: &Geometry, k: usize, weight: &[f32], gout: &[f32], dx: &mut [f32]) {
    let lay = Layout::new(g, k);
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
    let plan = input_grad_plan(&lay, o);
    dx.par_chunks_mut(g.in_len())
        .zip(gout.par_chunks(o * n))
        .for_each_init(Scratch::default, |s, (dx_b, g_b)| image_input_grad(&lay, &plan, &wd, o, g_b, dx_b, s));
}

/// The weight and bias gradients of [`forward`] (`o` output channels) from its input `x`:
/// `(dW, db)` with `dW` laid out as the weight (`o × c × k × k`). Summed per part of the batch,
/// one part per thread, the parts added in order.
pub(crate) fn weight_grad_of(g: &Geometry, k: usize, o: usize, x: &[f32], gout: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let lay = Layout::new(g, k);
    let (c, n, in_len) = (g.chans, g.out_hw(), g.in_len());
    let len = o * c * k * k;
    let batch = gout.len() / (o * n).max(1);
    let parts = super::kernels::threads().min(batch).max(1);
    let per_part = batch.div_ceil(parts).max(1);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = x
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
                group_weight_grad(&lay, o, x_g, g_g, &mut dwt, &mut s);
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
    x_t: Vec<f32>,
    gout_t: Vec<f32>,
}

/// The tiles of the input gradient of one image and one block of input channels, the same for
/// all of them: one stride class of input pixels at a time, reading the output gradient zero
/// padded by `q + 1` on every side (`[o][hg][wg]`) and writing channels-last pixels.
fn input_grad_plan(lay: &Layout, o: usize) -> Plan {
    let (st, k, q, e) = (lay.s, lay.k, lay.q, lay.q + 1);
    let (h, w, c) = (lay.h, lay.w, lay.c);
    let wg = lay.out_w + 2 * e;
    let mut plan = Plan::default();
    for ra in 0..st {
        for rb in 0..st {
            // The taps that reach pixels with (y + pad) % s == ra and (x + pad) % s == rb;
            // tap (ra + s·m, rb + s·n) reads gradient row u - m, column t - n.
            let mut all = Vec::new();
            for m in 0..k.div_ceil(st) {
                for n_ in 0..k.div_ceil(st) {
                    let (ki, kj) = (ra + st * m, rb + st * n_);
                    if ki < k && kj < k {
                        all.push((m, n_, ((q - m) * wg + (q - n_)) as isize, (ki * k + kj) * o * BLOCK));
                    }
                }
            }
            let (u_lo, u_hi) = class_range(ra, st, lay.pad, h);
            let (t_lo, t_hi) = class_range(rb, st, lay.pad, w);
            // Taps whose gradient row u - m is padding add zeros: skipped.
            let rows_of = |u: usize| -> u64 {
                all.iter().enumerate().filter(|(_, t)| u.wrapping_sub(t.0) < lay.out_h).fold(0, |m, (i, _)| m | 1 << i)
            };
            let mut u = u_lo;
            while u < u_hi {
                let y = st * u + ra - lay.pad;
                let inside = rows_of(u);
                // Rows of at most 7 pixels with the same taps go two to a tile.
                let pair = t_hi - t_lo <= MAX_J / 2 && u + 1 < u_hi && rows_of(u + 1) == inside;
                for (t0, len) in row_tiles(t_lo, t_hi) {
                    // A tap whose first (last) gradient column alone is padding skips it.
                    let (first, last) = (t0 as isize, (t0 + len) as isize - 1);
                    let start = plan.taps.len();
                    for (i, &(_, n_, off, wt)) in all.iter().enumerate() {
                        if inside >> i & 1 == 1 {
                            let (n_, end) = (n_ as isize, lay.out_w as isize);
                            plan.taps.push(Tap { off, w: wt, skip: Skip::of(first - n_ == -1, last - n_ == end) });
                        }
                    }
                    let x0 = st * t0 + rb - lay.pad;
                    let span = Span { len, second_row: pair.then_some((wg, st * w * c)) };
                    let (src, dst) = ((u + e - q) * wg + t0 + e - q, (y * w + x0) * c);
                    plan.tiles.push(PlannedTile { src, dst, span, taps: start..plan.taps.len() });
                }
                u += if pair { 2 } else { 1 };
            }
        }
    }
    plan
}

/// `dx_b += conv_transpose(g_b)` for one image, by the tiles of `plan` ([`input_grad_plan`]).
fn image_input_grad(lay: &Layout, plan: &Plan, wd: &[f32], o: usize, g_b: &[f32], dx_b: &mut [f32], s: &mut Scratch) {
    let (st, e) = (lay.s, lay.q + 1);
    let (h, w, c) = (lay.h, lay.w, lay.c);
    // The output gradient zero padded by `e` on every side: [o][hg][wg].
    let (hg, wg) = (lay.out_h + 2 * e, lay.out_w + 2 * e);
    // The border stays zero between images: only the interior is written.
    if s.padded.len() != o * hg * wg {
        s.padded.clear();
        s.padded.resize(o * hg * wg, 0.0);
    }
    for (plane, src) in s.padded.chunks_mut(hg * wg).zip(g_b.chunks(lay.out_h * lay.out_w)) {
        for (row, src_row) in src.chunks(lay.out_w).enumerate() {
            plane[(row + e) * wg + e..][..lay.out_w].copy_from_slice(src_row);
        }
    }
    // Every value is written by exactly one tile.
    s.tmp.resize(h * w * c, 0.0);
    for cb in 0..c / BLOCK {
        let w_cb = wd[cb * lay.k * lay.k * o * BLOCK..].as_ptr();
        for t in &plan.tiles {
            let (src, dst) = (s.padded[t.src..].as_ptr(), s.tmp[t.dst + cb * BLOCK..].as_mut_ptr());
            // SAFETY: AVX-512F checked by `applies`; the padding `e` keeps every window inside
            // `padded` (rows u - m + e < hg, columns t - n + e < wg), the taps' weights lie
            // inside `wd`, and the `len` pixels written, `s` apart, lie in row `y` (and `y + s`)
            // of `tmp`.
            unsafe { tile(t.span, 1, src, w_cb, hg * wg, o, &plan.taps[t.taps.clone()], dst, st * c) };
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

/// `dwt[c][t][o] += Σ_pos x[c][in(pos, t)] · gout[o][pos]` for a group of images (at most
/// [`MAX_IMAGES`]), over the positions whose input for tap `t` lies inside the image.
fn group_weight_grad(lay: &Layout, o: usize, x_g: &[f32], g_g: &[f32], dwt: &mut [f32], s: &mut Scratch) {
    let (c, k, n, hw, st) = (lay.c, lay.k, lay.out_h * lay.out_w, lay.h * lay.w, lay.s);
    let images = g_g.len() / (n * o);
    // Each image channels last, [h][w][c], and its output gradient [pos][o].
    s.x_t.resize(x_g.len(), 0.0);
    s.gout_t.resize(g_g.len(), 0.0);
    for (src, dst) in x_g.chunks(c * hw).zip(s.x_t.chunks_mut(c * hw)) {
        transpose_into(src, c, hw, dst);
    }
    for (src, dst) in g_g.chunks(n * o).zip(s.gout_t.chunks_mut(n * o)) {
        transpose_into(src, o, n, dst);
    }
    for t in 0..k * k {
        let (ki, kj) = (t / k, t % k);
        // Positions whose input is padding add zeros: skipped (the sums are the same).
        let (r_lo, r_hi) = valid_outputs(ki, st, lay.pad, lay.h, lay.out_h);
        let (c_lo, c_hi) = valid_outputs(kj, st, lay.pad, lay.w, lay.out_w);
        if r_lo == r_hi || c_lo == c_hi {
            continue;
        }
        let x_t = ((st * r_lo + ki - lay.pad) * lay.w + st * c_lo + kj - lay.pad) * c;
        let g_t = (r_lo * lay.out_w + c_lo) * o;
        // Output channels 64 at a time where they allow it (a tile of 6 input channels then).
        let (wide, most) = if o.is_multiple_of(2 * BLOCK) { (2, MAX_R / 2) } else { (1, MAX_R) };
        for ob in (0..o / BLOCK).step_by(wide) {
            // Input channels in near-equal tiles of at most 12 (6 when 64 outputs wide; 64 = 6 x
            // 11 or 10, not 5 x 12 + 4).
            for (c0, rows) in row_tiles_of(0, c, most) {
                let mut sources = [(std::ptr::null(), std::ptr::null()); MAX_IMAGES];
                for (i, src) in sources.iter_mut().enumerate().take(images) {
                    *src = (s.x_t[i * c * hw + x_t + c0..].as_ptr(), s.gout_t[i * n * o + g_t + ob * BLOCK..].as_ptr());
                }
                let dst = dwt[(c0 * k * k + t) * o + ob * BLOCK..].as_mut_ptr();
                let strides = Strides { x: (st * lay.w * c, st * c), g: (lay.out_w * o, o) };
                // SAFETY: AVX-512F checked by `applies`; the inputs of the `(r_hi - r_lo) ×
                // (c_hi - c_lo)` positions lie inside each image (`valid_outputs`), each
                // image's `gout_t` holds `n × o` values and `dst` `rows` rows of 32 × `wide`
                // values `o` apart.
                let shape = (2 * wide, rows);
                unsafe { weight_tile(shape, &sources[..images], strides, (r_hi - r_lo, c_hi - c_lo), dst, k * k * o) };
            }
        }
    }
}

/// The geometry the input gradient and the weight gradient share, as they name it.
struct Layout {
    c: usize,
    h: usize,
    w: usize,
    s: usize,
    k: usize,
    pad: usize,
    /// `(k - 1) / s`: the farthest output row (column) a tap reaches back.
    q: usize,
    out_h: usize,
    out_w: usize,
}

impl Layout {
    fn new(g: &Geometry, k: usize) -> Self {
        let (c, h, w, s, pad, out_h, out_w) = (g.chans, g.h, g.w, g.stride, g.pad, g.out_h, g.out_w);
        Self { c, h, w, s, k, pad, q: (k - 1) / s, out_h, out_w }
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

/// A kernel tap as a tile reads it: where its window starts, `off` values from the tile's source
/// pointer (before the source when the tile's first position, skipped, would read there), where
/// its 32-lane weight vectors (one per input channel) start, `w` values from the tile's weight
/// pointer, and which end positions of the tile it skips.
#[derive(Clone, Copy)]
struct Tap {
    off: isize,
    w: usize,
    skip: Skip,
}

/// One tile of an image: its source and destination offsets (before the channel block's; the
/// forward pass's taps carry their whole offset, and its `src` is 0), positions and taps (a
/// range of [`Plan::taps`]).
struct PlannedTile {
    src: usize,
    dst: usize,
    span: Span,
    taps: std::ops::Range<usize>,
}

/// The tiles that cover one image for one block of channels, computed once per call.
#[derive(Default)]
struct Plan {
    tiles: Vec<PlannedTile>,
    taps: Vec<Tap>,
}

/// The end positions of a tile's rows that a tap leaves out, their input being padding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    First,
    Last,
    Both,
}

impl Skip {
    fn of(first: bool, last: bool) -> Self {
        match (first, last) {
            (false, false) => Skip::None,
            (true, false) => Skip::First,
            (false, true) => Skip::Last,
            (true, true) => Skip::Both,
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

/// Runs [`tile_j`] with `span.len` (1..=14) positions `stride` (1 or 2) apart in the source, or
/// [`tile_rows_j`] for two rows.
///
/// # Safety
/// As [`tile_j`] (for each row).
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    span: Span,
    stride: usize,
    src: *const f32,
    weights: *const f32,
    plane: usize,
    chans: usize,
    taps: &[Tap],
    dst: *mut f32,
    dst_stride: usize,
) {
    macro_rules! one_row {
        ($s:literal, $($j:literal)*) => {
            match span.len {
                $($j => tile_j::<$j, $s>(src, weights, plane, chans, taps, dst, dst_stride),)*
                _ => unreachable!("tiles hold 1 to {MAX_J} positions"),
            }
        };
    }
    macro_rules! two_rows {
        ($s:literal, $gaps:expr, $($j:literal)*) => {
            match span.len {
                $($j => tile_rows_j::<$j, $s>(src, weights, plane, chans, taps, dst, dst_stride, $gaps),)*
                _ => unreachable!("two-row tiles hold 1 to {} positions a row", MAX_J / 2),
            }
        };
    }
    match (stride, span.second_row) {
        (1, None) => one_row!(1, 1 2 3 4 5 6 7 8 9 10 11 12 13 14),
        (2, None) => one_row!(2, 1 2 3 4 5 6 7 8 9 10 11 12 13 14),
        (1, Some(gaps)) => two_rows!(1, gaps, 1 2 3 4 5 6 7),
        (2, Some(gaps)) => two_rows!(2, gaps, 1 2 3 4 5 6 7),
        _ => unreachable!("direct tiles read at stride 1 or 2, not {stride}"),
    }
}

/// `dst[j·dst_stride + 0..32] = Σ_taps Σ_c src[off + c·plane + j·S] · w[c·32 + 0..32]` for
/// `j < J`, over the taps' positions that they do not skip.
///
/// # Safety
/// AVX-512F; for every tap, `src + off + (chans-1)·plane + j·S` must lie inside the source for
/// each position `j` it does not skip, each `w` must cover `chans × 32` values and `dst`
/// `(J-1)·dst_stride + 32`.
#[target_feature(enable = "avx512f")]
unsafe fn tile_j<const J: usize, const S: usize>(
    src: *const f32,
    weights: *const f32,
    plane: usize,
    chans: usize,
    taps: &[Tap],
    dst: *mut f32,
    dst_stride: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; J];
    for tap in taps {
        let (s, w) = (src.wrapping_offset(tap.off), weights.add(tap.w));
        match tap.skip {
            Skip::None => tap_sums::<J, S, false, false>(&mut acc, s, plane, chans, w),
            Skip::First => tap_sums::<J, S, true, false>(&mut acc, s, plane, chans, w),
            Skip::Last => tap_sums::<J, S, false, true>(&mut acc, s, plane, chans, w),
            Skip::Both => tap_sums::<J, S, true, true>(&mut acc, s, plane, chans, w),
        }
    }
    store_tile(&acc, dst, dst_stride);
}

/// One tap of [`tile_j`]: `acc[j] += Σ_c s[c·plane + j·S] · w[c·32 + 0..32]`, without position
/// 0 when `F` and position `J - 1` when `L`.
///
/// # Safety
/// As [`tile_j`], for this tap.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tap_sums<const J: usize, const S: usize, const F: bool, const L: bool>(
    acc: &mut [[__m512; 2]; J],
    mut s: *const f32,
    plane: usize,
    chans: usize,
    mut w: *const f32,
) {
    for _ in 0..chans {
        fma_rows::<J, S, F, L>(acc, s, (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16))));
        s = s.wrapping_add(plane);
        w = w.add(BLOCK);
    }
}

/// [`tile_j`] for `J` positions of each of two rows, the second `src_gap` values after the
/// first in `src` and `dst_gap` in `dst`: each weight vector loaded serves both rows.
///
/// # Safety
/// As [`tile_j`], for both rows.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_rows_j<const J: usize, const S: usize>(
    src: *const f32,
    weights: *const f32,
    plane: usize,
    chans: usize,
    taps: &[Tap],
    dst: *mut f32,
    dst_stride: usize,
    (src_gap, dst_gap): (usize, usize),
) {
    let mut acc = ([[_mm512_setzero_ps(); 2]; J], [[_mm512_setzero_ps(); 2]; J]);
    for tap in taps {
        let (s, w) = (src.wrapping_offset(tap.off), weights.add(tap.w));
        match tap.skip {
            Skip::None => tap_sums_rows::<J, S, false, false>(&mut acc, s, src_gap, plane, chans, w),
            Skip::First => tap_sums_rows::<J, S, true, false>(&mut acc, s, src_gap, plane, chans, w),
            Skip::Last => tap_sums_rows::<J, S, false, true>(&mut acc, s, src_gap, plane, chans, w),
            Skip::Both => tap_sums_rows::<J, S, true, true>(&mut acc, s, src_gap, plane, chans, w),
        }
    }
    store_tile(&acc.0, dst, dst_stride);
    store_tile(&acc.1, dst.add(dst_gap), dst_stride);
}

/// One tap of [`tile_rows_j`], as [`tap_sums`] for both rows.
///
/// # Safety
/// As [`tile_rows_j`], for this tap.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tap_sums_rows<const J: usize, const S: usize, const F: bool, const L: bool>(
    (first, second): &mut ([[__m512; 2]; J], [[__m512; 2]; J]),
    mut s: *const f32,
    src_gap: usize,
    plane: usize,
    chans: usize,
    mut w: *const f32,
) {
    for _ in 0..chans {
        let v = (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16)));
        fma_rows::<J, S, F, L>(first, s, v);
        fma_rows::<J, S, F, L>(second, s.wrapping_add(src_gap), v);
        s = s.wrapping_add(plane);
        w = w.add(BLOCK);
    }
}

/// `acc[i] += s[i·S] × (v0, v1)` for every row `i` of a tile, but row 0 when `F` and row
/// `N - 1` when `L`.
///
/// # Safety
/// AVX-512F; `s + i·S` must be readable for every row `i` taken.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fma_rows<const N: usize, const S: usize, const F: bool, const L: bool>(
    acc: &mut [[__m512; 2]; N],
    s: *const f32,
    (v0, v1): (__m512, __m512),
) {
    for (i, a) in acc.iter_mut().enumerate() {
        if (F && i == 0) || (L && i + 1 == N) {
            continue;
        }
        let b = _mm512_set1_ps(*s.wrapping_add(i * S));
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

/// The strides of a weight-gradient tile's sources: `x = (row, column)` of the channels-last
/// image, `g = (row, column)` of the positions-major output gradient.
#[derive(Clone, Copy)]
struct Strides {
    x: (usize, usize),
    g: (usize, usize),
}

/// Runs [`weight_tile_r`] with `vectors` (2 or 4: 32 or 64 output channels) and `rows` input
/// channels (1..=12 with 2 vectors, 1..=6 with 4).
///
/// # Safety
/// As [`weight_tile_r`].
unsafe fn weight_tile(
    (vectors, rows): (usize, usize),
    sources: &[(*const f32, *const f32)],
    strides: Strides,
    positions: (usize, usize),
    dst: *mut f32,
    dst_stride: usize,
) {
    macro_rules! dispatch {
        ($v:literal, $($r:literal)*) => {
            match rows {
                $($r => weight_tile_r::<$r, $v>(sources, strides, positions, dst, dst_stride),)*
                _ => unreachable!("weight tiles of {} vectors hold 1 to {} channels", $v, 2 * MAX_R / $v),
            }
        };
    }
    match vectors {
        2 => dispatch!(2, 1 2 3 4 5 6 7 8 9 10 11 12),
        4 => dispatch!(4, 1 2 3 4 5 6),
        _ => unreachable!("weight tiles are 2 or 4 vectors wide, not {vectors}"),
    }
}

/// `dst[r·dst_stride + 0..16V] += Σ_{(x, g) in sources} Σ_{oy, ox} x[oy·xr + ox·xc + r] ·
/// g[oy·gr + ox·gc + 0..16V]` for `r < R`, over `positions = (rows, cols)` and
/// `strides = ((xr, xc), (gr, gc))`: one store of the sums for all the images in `sources`.
///
/// # Safety
/// AVX-512F; the pointers must cover the values read and written.
#[target_feature(enable = "avx512f")]
unsafe fn weight_tile_r<const R: usize, const V: usize>(
    sources: &[(*const f32, *const f32)],
    Strides { x: (xr, xc), g: (gr, gc) }: Strides,
    (rows, cols): (usize, usize),
    dst: *mut f32,
    dst_stride: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for &(x, g) in sources {
        for oy in 0..rows {
            let (mut xp, mut gp) = (x.add(oy * xr), g.add(oy * gr));
            for _ in 0..cols {
                let v: [__m512; V] = std::array::from_fn(|i| _mm512_loadu_ps(gp.add(16 * i)));
                for (r, a) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*xp.add(r));
                    for (a, v) in a.iter_mut().zip(&v) {
                        *a = _mm512_fmadd_ps(b, *v, *a);
                    }
                }
                xp = xp.add(xc);
                gp = gp.add(gc);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let d = dst.add(r * dst_stride);
        for (i, a) in a.iter().enumerate() {
            _mm512_storeu_ps(d.add(16 * i), _mm512_add_ps(_mm512_loadu_ps(d.add(16 * i)), *a));
        }
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
    fn valid_outputs_are_those_inside_the_image() {
        for (s, pad, len, k) in [(2, 1, 28, 3), (2, 1, 14, 4), (1, 1, 28, 3), (2, 0, 7, 3), (1, 2, 9, 5)] {
            let out_len = (len + 2 * pad - k) / s + 1;
            for t in 0..k {
                let (lo, hi) = valid_outputs(t, s, pad, len, out_len);
                let inside: Vec<usize> = (0..out_len).filter(|&v| (s * v + t).wrapping_sub(pad) < len).collect();
                assert_eq!((lo..hi).collect::<Vec<_>>(), inside, "s {s} pad {pad} len {len} tap {t}");
            }
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
