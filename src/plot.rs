//! Learning-curve plots as PNG files: one line per series with a shaded band, axes with tick
//! labels and a legend. Drawn with `plotters`' bitmap backend; text uses the public-domain 8×8
//! bitmap font of `font8x8`, so no system font is needed.

use std::path::Path;

use font8x8::UnicodeFonts;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One curve: `y` (and its band `lo..hi`) against `x`.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Line colour (r, g, b).
    pub color: (u8, u8, u8),
    /// X values, increasing.
    pub x: Vec<f64>,
    /// Centre line.
    pub y: Vec<f64>,
    /// Lower edge of the band.
    pub lo: Vec<f64>,
    /// Upper edge of the band.
    pub hi: Vec<f64>,
}

/// Axis labels and title of a plot.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Title above the plot.
    pub title: String,
    /// X-axis label.
    pub x: String,
    /// Y-axis label.
    pub y: String,
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` pixels wide.
fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    (x, y): (i32, i32),
    scale: i32,
    color: &RGBColor,
) {
    for (i, ch) in text.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (i as i32 * 8 + col) * scale + dx;
                            let py = y + row as i32 * scale + dy;
                            let _ = area.draw_pixel((px, py), color);
                        }
                    }
                }
            }
        }
    }
}

fn text_width(text: &str, scale: i32) -> i32 {
    text.chars().count() as i32 * 8 * scale
}

/// A short label for a tick value.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e6).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 1e3 {
        format!("{}k", (v / 1e3 * 10.0).round() / 10.0)
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes a `width × height` PNG of the series to `path`.
pub fn plot_series(path: &Path, series: &[Series], labels: &Labels, (width, height): (u32, u32)) -> Result<(), String> {
    let ok = |v: f64| v.is_finite();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for s in series {
        for i in 0..s.x.len() {
            for v in [s.lo[i], s.hi[i], s.y[i]] {
                if ok(v) && ok(s.x[i]) {
                    x0 = x0.min(s.x[i]);
                    x1 = x1.max(s.x[i]);
                    y0 = y0.min(v);
                    y1 = y1.max(v);
                }
            }
        }
    }
    if x0 >= x1 || y0 > y1 {
        return Err("nothing to plot: the series have fewer than two finite points".into());
    }
    if y0 == y1 {
        (y0, y1) = (y0 - 1.0, y1 + 1.0);
    }
    let pad = (y1 - y0) * 0.05;
    (y0, y1) = (y0 - pad, y1 + pad);

    let err = |e: DrawingAreaErrorKind<_>| format!("{}: {e:?}", path.display());
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right, top, bottom) = (80, 20, 50, 50);
    let inner = root.margin(top, bottom, left, right);
    let (px, py) = inner.get_pixel_range();
    let chart = inner.apply_coord_spec(Cartesian2d::<RangedCoordf64, RangedCoordf64>::new(
        x0..x1,
        y0..y1,
        (px.clone(), py.end..py.start),
    ));
    let grey = RGBColor(225, 225, 225);
    let black = RGBColor(0, 0, 0);

    // Grid, ticks and tick labels.
    for k in 0..=5 {
        let xv = x0 + (x1 - x0) * k as f64 / 5.0;
        let yv = y0 + (y1 - y0) * k as f64 / 5.0;
        chart.draw(&PathElement::new(vec![(xv, y0), (xv, y1)], grey)).map_err(err)?;
        chart.draw(&PathElement::new(vec![(x0, yv), (x1, yv)], grey)).map_err(err)?;
        let (sx, _) = chart.map_coordinate(&(xv, y0));
        let (_, sy) = chart.map_coordinate(&(x0, yv));
        let xl = tick_label(xv);
        draw_text(&root, &xl, (sx - text_width(&xl, 1) / 2, py.end + 6), 1, &black);
        let yl = tick_label(yv);
        draw_text(&root, &yl, (px.start - 6 - text_width(&yl, 1), sy - 4), 1, &black);
    }
    chart.draw(&PathElement::new(vec![(x0, y1), (x0, y0), (x1, y0)], black.stroke_width(1))).map_err(err)?;

    // Bands first, then lines on top.
    for s in series {
        let c = RGBColor(s.color.0, s.color.1, s.color.2);
        let idx: Vec<usize> = (0..s.x.len()).filter(|&i| ok(s.lo[i]) && ok(s.hi[i])).collect();
        let mut band: Vec<(f64, f64)> = idx.iter().map(|&i| (s.x[i], s.hi[i])).collect();
        band.extend(idx.iter().rev().map(|&i| (s.x[i], s.lo[i])));
        if band.len() >= 3 {
            chart.draw(&Polygon::new(band, c.mix(0.18).filled())).map_err(err)?;
        }
    }
    for s in series {
        let c = RGBColor(s.color.0, s.color.1, s.color.2);
        let line: Vec<(f64, f64)> = (0..s.x.len()).filter(|&i| ok(s.y[i])).map(|i| (s.x[i], s.y[i])).collect();
        chart.draw(&PathElement::new(line, c.stroke_width(2))).map_err(err)?;
    }

    // Title, axis labels, legend.
    draw_text(&root, &labels.title, ((width as i32 - text_width(&labels.title, 2)) / 2, 10), 2, &black);
    draw_text(&root, &labels.x, ((px.start + px.end - text_width(&labels.x, 1)) / 2, py.end + 24), 1, &black);
    draw_text(&root, &labels.y, (4, top - 16), 1, &black);
    for (k, s) in series.iter().enumerate() {
        let c = RGBColor(s.color.0, s.color.1, s.color.2);
        let (lx, ly) = (px.start + 10, py.start + 10 + 14 * k as i32);
        root.draw(&Rectangle::new([(lx, ly), (lx + 16, ly + 8)], c.filled())).map_err(err)?;
        draw_text(&root, &s.label, (lx + 22, ly), 1, &black);
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Mean and spread of step-function curves on a common grid: at each grid point `x`, each curve
/// contributes its last value at or before `x`. Returns `(mean, mean − std, mean + std)`;
/// grid points before a curve's first point are skipped for that curve.
pub fn aggregate(curves: &[Vec<(u64, f64)>], grid: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut mean, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
    for &x in grid {
        let vals: Vec<f64> =
            curves.iter().filter_map(|c| c.iter().take_while(|(s, _)| *s as f64 <= x).last().map(|p| p.1)).collect();
        if vals.is_empty() {
            mean.push(f64::NAN);
            lo.push(f64::NAN);
            hi.push(f64::NAN);
            continue;
        }
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let sd = (vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        mean.push(m);
        lo.push(m - sd);
        hi.push(m + sd);
    }
    (mean, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::{aggregate, plot_series, Labels, Series};

    #[test]
    fn aggregate_takes_each_curves_last_value_at_or_before_the_grid_point() {
        let curves = vec![vec![(0, 1.0), (10, 3.0)], vec![(5, 5.0)]];
        let (mean, lo, hi) = aggregate(&curves, &[0.0, 5.0, 10.0]);
        assert_eq!(mean, [1.0, 3.0, 4.0]); // [1], [1, 5], [3, 5]
        assert_eq!((lo[0], hi[0]), (1.0, 1.0));
        assert_eq!((lo[1], hi[1]), (1.0, 5.0)); // std of {1, 5} is 2
        let (mean, _, _) = aggregate(&curves, &[-1.0]);
        assert!(mean[0].is_nan(), "no curve has a point yet");
    }

    #[test]
    fn plot_series_writes_a_png_of_the_asked_size() {
        let dir = std::env::temp_dir().join(format!("glimpse-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("curves.png");
        let x: Vec<f64> = (0..20).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| v * v).collect();
        let series = Series {
            label: "squares".into(),
            color: (200, 30, 30),
            lo: y.iter().map(|v| v - 5.0).collect(),
            hi: y.iter().map(|v| v + 5.0).collect(),
            x,
            y,
        };
        let labels = Labels { title: "t".into(), x: "step".into(), y: "value".into() };
        plot_series(&path, std::slice::from_ref(&series), &labels, (320, 200)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // The IHDR chunk: width and height, big-endian, after its length and name.
        assert_eq!(&bytes[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 320);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 200);
        let empty = Series { x: vec![1.0], y: vec![1.0], lo: vec![1.0], hi: vec![1.0], ..series };
        assert!(plot_series(&path, &[empty], &labels, (320, 200)).is_err(), "one point is nothing to plot");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
