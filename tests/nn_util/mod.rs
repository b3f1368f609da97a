//! Shared helpers for the `nn_*` tests: naive reference layers and finite differences.
#![allow(dead_code)]

use dfdx::prelude::*;

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Largest absolute difference between two slices of equal length.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Naive 2d convolution: x (b,c,h,w), w (o,c,k,k), only taps where `keep(ki,kj)`.
#[allow(clippy::too_many_arguments)]
pub fn naive_conv(
    x: &[f64],
    (b, c, h, w): (usize, usize, usize, usize),
    wt: &[f64],
    (o, k): (usize, usize),
    bias: &[f64],
    s: usize,
    p: usize,
    keep: &dyn Fn(usize, usize) -> bool,
) -> (Vec<f64>, usize, usize) {
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    let mut out = vec![0.0; b * o * oh * ow];
    for bi in 0..b {
        for oc in 0..o {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = bias[oc];
                    for ic in 0..c {
                        for ki in 0..k {
                            for kj in 0..k {
                                if !keep(ki, kj) {
                                    continue;
                                }
                                let iy = (y * s + ki) as isize - p as isize;
                                let ix = (xx * s + kj) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                acc += x[((bi * c + ic) * h + iy as usize) * w + ix as usize]
                                    * wt[((oc * c + ic) * k + ki) * k + kj];
                            }
                        }
                    }
                    out[((bi * o + oc) * oh + y) * ow + xx] = acc;
                }
            }
        }
    }
    (out, oh, ow)
}

/// Naive transposed convolution: x (b,i,h,w), w (i,o,k,k).
#[allow(clippy::too_many_arguments)]
pub fn naive_conv_trans(
    x: &[f64],
    (b, i, h, w): (usize, usize, usize, usize),
    wt: &[f64],
    (o, k): (usize, usize),
    bias: &[f64],
    s: usize,
    p: usize,
    op: usize,
) -> (Vec<f64>, usize, usize) {
    let oh = (h - 1) * s + k + op - 2 * p;
    let ow = (w - 1) * s + k + op - 2 * p;
    let mut out = vec![0.0; b * o * oh * ow];
    for bi in 0..b {
        for oc in 0..o {
            for v in out[(bi * o + oc) * oh * ow..][..oh * ow].iter_mut() {
                *v = bias[oc];
            }
        }
        for ic in 0..i {
            for y in 0..h {
                for xx in 0..w {
                    let xv = x[((bi * i + ic) * h + y) * w + xx];
                    for oc in 0..o {
                        for ki in 0..k {
                            for kj in 0..k {
                                let oy = (y * s + ki) as isize - p as isize;
                                let ox = (xx * s + kj) as isize - p as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                out[((bi * o + oc) * oh + oy as usize) * ow + ox as usize] +=
                                    xv * wt[((ic * o + oc) * k + ki) * k + kj];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, oh, ow)
}

/// Checks `analytic` against central finite differences of `f` at up to `samples` indices of
/// `point`; returns the largest relative error (|a-n| / max(1, |a|, |n|)).
pub fn check_fd(point: &[f64], analytic: &[f64], samples: usize, f: &mut dyn FnMut(&[f64]) -> f64) -> f64 {
    assert_eq!(point.len(), analytic.len());
    let eps = 1e-6;
    let step = (point.len() / samples.max(1)).max(1);
    let mut worst: f64 = 0.0;
    let mut p = point.to_vec();
    for idx in (0..point.len()).step_by(step).chain(std::iter::once(point.len() - 1)) {
        let orig = p[idx];
        p[idx] = orig + eps;
        let up = f(&p);
        p[idx] = orig - eps;
        let down = f(&p);
        p[idx] = orig;
        let numeric = (up - down) / (2.0 * eps);
        let err = (numeric - analytic[idx]).abs() / 1f64.max(numeric.abs()).max(analytic[idx].abs());
        worst = worst.max(err);
    }
    worst
}

/// `sum(out * r)` of an untraced tensor, the scalar loss used by the gradient checks.
pub fn weighted_sum<S: Shape>(out: &Tensor<S, f64, Cpu>, r: &[f64]) -> f64 {
    out.as_vec().iter().zip(r).map(|(a, b)| a * b).sum()
}
