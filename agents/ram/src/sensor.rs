//! The glimpse sensor ([`Retina`]): `scales` square patches around a location, the first
//! `patch`×`patch` pixels, each next one twice as wide, every one averaged down to
//! `patch`×`patch` (area resizing: each output pixel is the mean of a 2^s×2^s block), zero
//! outside the image.
//!
//! Locations are `[x, y]` in [-1, 1]²: `x` runs along the columns and `y` down the rows, `[-1, -1]`
//! is the image's top-left corner and `[1, 1]` its bottom-right one. The patch of side `S` around
//! location `[x, y]` on an `h`×`w` image starts at column `round((x + 1)/2 · w - S/2)` and row
//! `round((y + 1)/2 · h - S/2)` (halves rounded up), so `[0, 0]` centres it on the image.

use rayon::prelude::*;

/// The largest `patch` accepted: a glimpse is a small look.
pub const MAX_PATCH: usize = 64;
/// The most scales accepted (the widest patch is `patch · 2^(scales - 1)` pixels).
pub const MAX_SCALES: usize = 8;

/// A multi-resolution retina of `scales` patches of `patch`×`patch` values.
///
/// ```
/// use glimpse_ram::sensor::Retina;
/// let retina = Retina::new(2, 2).unwrap();
/// let image: Vec<f32> = (0..16).map(|v| v as f32).collect(); // 4×4
/// let mut glimpse = vec![0.0; retina.len()];
/// retina.read(&image, 4, 4, [0.0, 0.0], &mut glimpse);
/// assert_eq!(&glimpse[..4], &[5.0, 6.0, 9.0, 10.0]); // the central 2×2
/// assert_eq!(&glimpse[4..], &[2.5, 4.5, 10.5, 12.5]); // the whole image, 2×2 blocks averaged
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retina {
    patch: usize,
    scales: usize,
}

impl Retina {
    /// A retina of `scales` (1 to [`MAX_SCALES`]) patches of `patch`×`patch` (1 to [`MAX_PATCH`]).
    pub fn new(patch: usize, scales: usize) -> Result<Self, String> {
        if !(1..=MAX_PATCH).contains(&patch) {
            return Err(format!("patch must be between 1 and {MAX_PATCH} pixels, got {patch}"));
        }
        if !(1..=MAX_SCALES).contains(&scales) {
            return Err(format!("scales must be between 1 and {MAX_SCALES}, got {scales}"));
        }
        Ok(Self { patch, scales })
    }

    /// The side of the output patches.
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// The number of scales.
    pub fn scales(&self) -> usize {
        self.scales
    }

    /// Values in one glimpse: `scales · patch²`, scale by scale, each row by row.
    pub fn len(&self) -> usize {
        self.scales * self.patch * self.patch
    }

    /// Always false: a retina sees at least one value.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The side in image pixels of scale `s`'s square (from 0): `patch · 2^s`.
    pub fn side(&self, s: usize) -> usize {
        self.patch << s
    }

    /// The top-left pixel `(row, column)` of scale `s`'s square around `loc` on an `h`×`w`
    /// image (it may lie outside the image). Locations outside [-1, 1] are clamped to it and a
    /// NaN coordinate reads as 0, the centre.
    pub fn corner(&self, loc: [f32; 2], s: usize, h: usize, w: usize) -> (isize, isize) {
        let side = self.side(s) as f64;
        let start = |v: f32, n: usize| {
            let v = if v.is_nan() { 0.0 } else { f64::from(v.clamp(-1.0, 1.0)) };
            ((v + 1.0) / 2.0 * n as f64 - side / 2.0 + 0.5).floor() as isize
        };
        (start(loc[1], h), start(loc[0], w))
    }

    /// Reads the glimpse at `loc` of the `h`×`w` image `image` (row-major) into `out`
    /// ([`Retina::len`] values).
    pub fn read(&self, image: &[f32], h: usize, w: usize, loc: [f32; 2], out: &mut [f32]) {
        assert_eq!(image.len(), h * w, "image of {h}×{w} pixels");
        assert_eq!(out.len(), self.len(), "glimpse buffer");
        let g = self.patch;
        for (s, out) in out.chunks_exact_mut(g * g).enumerate() {
            let block = 1usize << s;
            let (r0, c0) = self.corner(loc, s, h, w);
            out.fill(0.0);
            if block == 1 {
                // The first scale copies the part of each row that lies inside the image.
                let (lo, hi) = (c0.clamp(0, w as isize), (c0 + g as isize).clamp(0, w as isize));
                for (i, out_row) in out.chunks_exact_mut(g).enumerate() {
                    let r = r0 + i as isize;
                    if lo < hi && (0..h as isize).contains(&r) {
                        let row = &image[r as usize * w..][..w];
                        out_row[(lo - c0) as usize..(hi - c0) as usize].copy_from_slice(&row[lo as usize..hi as usize]);
                    }
                }
                continue;
            }
            for (i, out_row) in out.chunks_exact_mut(g).enumerate() {
                for dr in 0..block {
                    let r = r0 + (i * block + dr) as isize;
                    if r < 0 || r >= h as isize {
                        continue;
                    }
                    let row = &image[r as usize * w..][..w];
                    for (j, o) in out_row.iter_mut().enumerate() {
                        let lo = (c0 + (j * block) as isize).clamp(0, w as isize) as usize;
                        let hi = (c0 + ((j + 1) * block) as isize).clamp(0, w as isize) as usize;
                        *o += row[lo..hi].iter().sum::<f32>();
                    }
                }
            }
            let scale = 1.0 / (block * block) as f32;
            out.iter_mut().for_each(|v| *v *= scale);
        }
    }

    /// Reads one glimpse per image of the batch `images` (`locs.len()` images of `h`×`w`) into
    /// `out` (`locs.len() · len()` values), on rayon's threads when the batch is large.
    pub fn read_batch(&self, images: &[f32], h: usize, w: usize, locs: &[[f32; 2]], out: &mut [f32]) {
        assert_eq!(images.len(), locs.len() * h * w, "{} images of {h}×{w} pixels", locs.len());
        assert_eq!(out.len(), locs.len() * self.len(), "glimpse buffer");
        let read = |((image, loc), out): ((&[f32], &[f32; 2]), &mut [f32])| self.read(image, h, w, *loc, out);
        if locs.len() * self.len() >= 1 << 14 {
            let jobs = images.par_chunks_exact(h * w).zip(locs.par_iter()).zip(out.par_chunks_exact_mut(self.len()));
            jobs.for_each(read);
        } else {
            images.chunks_exact(h * w).zip(locs).zip(out.chunks_exact_mut(self.len())).for_each(read);
        }
    }
}
