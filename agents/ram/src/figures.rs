//! The picture of where the model looks: test canvases with the squares of their glimpses drawn
//! over them, the first glimpse red, the later ones going through yellow to green and cyan, a
//! dot at each centre; the outer scales of the last glimpse in white. As a PNG of the whole
//! path and as an animated GIF, one frame per glimpse.

use crate::config::Config;
use crate::model::{Core, Ram};
use crate::sensor::Retina;
use crate::train::{test_looking, test_streams, Canvases};
use crate::RamError;
use dfdx::prelude::*;
use glimpse::data::ImageSet;
use glimpse::image::Image;

/// The colour of glimpse `t` of `n`: red, then through yellow and green to cyan.
fn colour(t: usize, n: usize) -> [f32; 3] {
    let f = if n > 1 { t as f32 / (n - 1) as f32 } else { 0.0 };
    if f < 0.5 {
        [1.0, 2.0 * f, 0.0]
    } else {
        [2.0 - 2.0 * f, 1.0, 2.0 * f - 1.0]
    }
}

/// An RGB canvas (channels first), `zoom` pixels per canvas pixel.
struct Picture {
    rgb: Vec<f32>,
    side: usize,
}

impl Picture {
    fn new(grey: &[f32], side: usize, zoom: usize) -> Self {
        let big = side * zoom;
        let mut rgb = vec![0.0; 3 * big * big];
        for y in 0..big {
            for x in 0..big {
                let v = grey[(y / zoom) * side + x / zoom];
                (0..3).for_each(|c| rgb[c * big * big + y * big + x] = v);
            }
        }
        Self { rgb, side: big }
    }

    fn set(&mut self, x: isize, y: isize, colour: [f32; 3]) {
        let n = self.side as isize;
        if (0..n).contains(&x) && (0..n).contains(&y) {
            let plane = self.side * self.side;
            let at = y as usize * self.side + x as usize;
            (0..3).for_each(|c| self.rgb[c * plane + at] = colour[c]);
        }
    }

    /// The outline of the square from `(x0, y0)` of side `s`.
    fn square(&mut self, x0: isize, y0: isize, s: isize, colour: [f32; 3]) {
        for k in 0..s {
            self.set(x0 + k, y0, colour);
            self.set(x0 + k, y0 + s - 1, colour);
            self.set(x0, y0 + k, colour);
            self.set(x0 + s - 1, y0 + k, colour);
        }
    }
}

/// The first `cfg.figure_images` images of `test` with the glimpses the model takes on them (one
/// pass where the policy's mean says, with the first chunk's generator of [`test_streams`] of `seed`), in a grid of 8
/// columns: one picture per glimpse, the `t`-th showing the first `t + 1` glimpses.
pub fn glimpse_frames<C: Core>(
    model: &Ram<C>,
    test: &ImageSet,
    cfg: &Config,
    retina: &Retina,
    seed: u64,
    dev: &Cpu,
) -> Result<Vec<Image>, RamError> {
    let count = cfg.figure_images.min(test.len());
    let index: Vec<usize> = (0..count).collect();
    let batch = Canvases::of(test, &index);
    let (h, w) = (test.height(), test.width());
    let looking = test_looking(cfg, 0).0;
    let mut rng = test_streams(seed, 1).remove(0);
    let glimpses = cfg.glimpse_count();
    let ep = model.episode::<NoneTape>(&batch.images, (h, w), retina, glimpses, looking, &mut rng, dev);
    let zoom = (128 / h.max(w)).max(1);
    let frame = |upto: usize| -> Result<Image, RamError> {
        let mut tiles = Vec::with_capacity(count * 3 * (h * zoom) * (w * zoom));
        for i in 0..count {
            let mut pic = Picture::new(&batch.images[i * h * w..(i + 1) * h * w], h, zoom);
            for (t, locs) in ep.looked_at.iter().enumerate().take(upto + 1) {
                let scales = if t == upto { retina.scales() } else { 1 };
                for s in (0..scales).rev() {
                    let (row, col) = retina.corner(locs[i], s, h, w);
                    let z = zoom as isize;
                    let c = if s == 0 { colour(t, glimpses) } else { [1.0; 3] };
                    pic.square(col * z, row * z, (retina.side(s) * zoom) as isize, c);
                }
                let centre = |v: f32, n: usize| ((v + 1.0) / 2.0 * (n * zoom) as f32) as isize;
                let (cx, cy) = (centre(locs[i][0], w), centre(locs[i][1], h));
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1)] {
                    pic.set(cx + dx, cy + dy, colour(t, glimpses));
                }
            }
            tiles.extend(pic.rgb);
        }
        let side = h * zoom;
        Ok(Image::grid(&tiles, count, 3, side, side, 8.min(count.max(1)))?)
    };
    (0..ep.looked_at.len()).map(frame).collect()
}

/// The last of [`glimpse_frames`]: every glimpse of the path.
pub fn glimpse_paths<C: Core>(
    model: &Ram<C>,
    test: &ImageSet,
    cfg: &Config,
    retina: &Retina,
    seed: u64,
    dev: &Cpu,
) -> Result<Image, RamError> {
    let mut frames = glimpse_frames(model, test, cfg, retina, seed, dev)?;
    Ok(frames.pop().expect("at least one glimpse"))
}
