//! Drawing environment frames ([`crate::env::Env::render`]): an RGB [`Canvas`] with filled
//! polygons and circles and lines of a given width, in coordinates with `y` up from the bottom
//! edge (gymnasium's classic-control renderers draw that way and flip the picture).
//!
//! A pixel is painted when its centre lies inside the shape, so shapes that share an edge never
//! overlap and the same scene gives the same bytes on every machine.
//!
//! ```
//! use glimpse::draw::Canvas;
//! let mut canvas = Canvas::new(4, 3, [255, 255, 255]);
//! canvas.polygon(&[(0.0, 0.0), (2.0, 0.0), (2.0, 1.0), (0.0, 1.0)], [0, 0, 0]);
//! let image = canvas.into_image();
//! assert_eq!(&image.data[2 * 4 * 3..2 * 4 * 3 + 3], &[0, 0, 0]); // bottom row, first pixel
//! assert_eq!(&image.data[..3], &[255, 255, 255]); // top row
//! ```

use crate::image::Image;

/// A colour: red, green, blue.
pub type Rgb = [u8; 3];

/// An RGB picture being drawn; `y` runs up from the bottom edge, one unit per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl Canvas {
    /// A `width` × `height` canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Self { width, height, data: background.repeat(width * height) }
    }

    /// Paints the pixel at column `x` and row `y` counted from the bottom, when it is on the canvas.
    fn paint(&mut self, x: usize, y_up: usize, color: Rgb) {
        if x < self.width && y_up < self.height {
            let i = ((self.height - 1 - y_up) * self.width + x) * 3;
            self.data[i..i + 3].copy_from_slice(&color);
        }
    }

    /// Fills the polygon with corners `points` (in order, either direction; the even-odd rule for
    /// self-crossing ones).
    pub fn polygon(&mut self, points: &[(f64, f64)], color: Rgb) {
        if points.len() < 3 || points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return;
        }
        let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let rows = (lo.floor().max(0.0) as usize)..(hi.ceil().min(self.height as f64).max(0.0) as usize);
        let mut crossings = Vec::new();
        for row in rows {
            let y = row as f64 + 0.5;
            crossings.clear();
            for (i, &(x0, y0)) in points.iter().enumerate() {
                let (x1, y1) = points[(i + 1) % points.len()];
                if (y0 <= y) != (y1 <= y) {
                    crossings.push(x0 + (y - y0) / (y1 - y0) * (x1 - x0));
                }
            }
            crossings.sort_by(f64::total_cmp);
            for i in (0..crossings.len() / 2).map(|i| 2 * i) {
                self.polygon_row(row, crossings[i], crossings[i + 1], color);
            }
        }
    }

    /// Fills the disc of radius `radius` around `centre`.
    pub fn circle(&mut self, centre: (f64, f64), radius: f64, color: Rgb) {
        if !(centre.0.is_finite() && centre.1.is_finite() && radius.is_finite() && radius > 0.0) {
            return;
        }
        let rows = ((centre.1 - radius).floor().max(0.0) as usize)
            ..((centre.1 + radius).ceil().min(self.height as f64).max(0.0) as usize);
        for row in rows {
            let dy = row as f64 + 0.5 - centre.1;
            let half = radius * radius - dy * dy;
            if half < 0.0 {
                continue;
            }
            let half = half.sqrt();
            self.polygon_row(row, centre.0 - half, centre.0 + half, color);
        }
    }

    /// Paints the pixels of `row` whose centres lie in `[x0, x1)`.
    fn polygon_row(&mut self, row: usize, x0: f64, x1: f64, color: Rgb) {
        let first = (x0 - 0.5).ceil().max(0.0);
        let end = (x1 - 0.5).ceil().min(self.width as f64);
        let mut x = first;
        while x < end {
            self.paint(x as usize, row, color);
            x += 1.0;
        }
    }

    /// A straight line from `a` to `b`, `width` wide (at least one pixel).
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), width: f64, color: Rgb) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let length = (dx * dx + dy * dy).sqrt();
        let half = width.max(1.0) / 2.0;
        if length.is_nan() || length <= 0.0 {
            self.circle(a, half, color);
            return;
        }
        // The unit normal, scaled to half the width.
        let (nx, ny) = (-dy / length * half, dx / length * half);
        self.polygon(&[(a.0 + nx, a.1 + ny), (b.0 + nx, b.1 + ny), (b.0 - nx, b.1 - ny), (a.0 - nx, a.1 - ny)], color);
    }

    /// Lines through `points` in order, `width` wide, with round joints.
    pub fn polyline(&mut self, points: &[(f64, f64)], width: f64, color: Rgb) {
        for pair in points.windows(2) {
            self.line(pair[0], pair[1], width, color);
        }
        for &p in points.iter().skip(1).take(points.len().saturating_sub(2)) {
            self.circle(p, width.max(1.0) / 2.0, color);
        }
    }

    /// The finished picture (RGB, rows from the top).
    pub fn into_image(self) -> Image {
        Image { width: self.width, height: self.height, channels: 3, data: self.data }
    }
}

/// `points` rotated by `angle` (radians, anticlockwise) about the origin, then moved by `offset`.
pub fn rotate_translate(points: &[(f64, f64)], angle: f64, offset: (f64, f64)) -> Vec<(f64, f64)> {
    let (sin, cos) = angle.sin_cos();
    points.iter().map(|&(x, y)| (x * cos - y * sin + offset.0, x * sin + y * cos + offset.1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn painted(image: &Image, color: Rgb) -> usize {
        image.data.chunks_exact(3).filter(|p| *p == color).count()
    }

    #[test]
    fn shapes_cover_the_pixels_whose_centres_lie_inside() {
        let mut c = Canvas::new(20, 10, [255; 3]);
        c.polygon(&[(2.0, 1.0), (7.0, 1.0), (7.0, 4.0), (2.0, 4.0)], [1, 2, 3]);
        assert_eq!(painted(&c.clone().into_image(), [1, 2, 3]), 15, "a 5×3 rectangle");
        // Its neighbour sharing the edge x = 7 does not overlap it.
        c.polygon(&[(7.0, 1.0), (9.0, 1.0), (9.0, 4.0), (7.0, 4.0)], [4, 5, 6]);
        let image = c.clone().into_image();
        assert_eq!((painted(&image, [1, 2, 3]), painted(&image, [4, 5, 6])), (15, 6));
        // Row y = 1 from the bottom is row 8 from the top.
        assert_eq!(&image.data[(8 * 20 + 2) * 3..(8 * 20 + 3) * 3], &[1, 2, 3]);
        let mut d = Canvas::new(41, 41, [0; 3]);
        d.circle((20.5, 20.5), 10.0, [9; 3]);
        let area = painted(&d.into_image(), [9; 3]) as f64;
        assert!((area - std::f64::consts::PI * 100.0).abs() < 12.0, "disc area {area}");
    }

    #[test]
    fn off_canvas_and_non_finite_shapes_paint_nothing_and_never_panic() {
        let mut c = Canvas::new(5, 5, [0; 3]);
        c.polygon(&[(-10.0, -10.0), (-5.0, -10.0), (-5.0, -5.0)], [1; 3]);
        c.polygon(&[(0.0, 0.0), (f64::NAN, 1.0), (1.0, 1.0)], [1; 3]);
        c.circle((100.0, 100.0), 3.0, [1; 3]);
        c.circle((2.0, 2.0), f64::INFINITY, [1; 3]);
        c.line((2.5, 2.5), (2.5, 2.5), 0.0, [2; 3]);
        let image = c.into_image();
        assert_eq!(painted(&image, [1; 3]), 0);
        assert_eq!(painted(&image, [2; 3]), 1, "a zero-length line is a dot");
        let mut big = Canvas::new(3, 3, [0; 3]);
        big.polygon(&[(-1e9, -1e9), (1e9, -1e9), (1e9, 1e9), (-1e9, 1e9)], [7; 3]);
        assert_eq!(painted(&big.into_image(), [7; 3]), 9, "a huge shape covers the canvas");
    }

    #[test]
    fn rotation_is_anticlockwise_about_the_origin() {
        let p = rotate_translate(&[(1.0, 0.0)], std::f64::consts::FRAC_PI_2, (10.0, 20.0));
        assert!((p[0].0 - 10.0).abs() < 1e-12 && (p[0].1 - 21.0).abs() < 1e-12);
    }
}
