//! MaxPool2D and AvgPool2D: forward against naive loops, input gradients against finite
//! differences (f64).

mod nn_util;

use dfdx::prelude::*;
use glimpse::nn::{AvgPool2D, MaxPool2D};
use nn_util::*;

/// Naive pooling of (b*c) planes of h×w; `max` selects max pooling, else average over K*K.
fn naive_pool(x: &[f64], planes: usize, (h, w): (usize, usize), k: usize, s: usize, p: usize, max: bool) -> Vec<f64> {
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    let mut out = Vec::new();
    for pl in 0..planes {
        for y in 0..oh {
            for xx in 0..ow {
                let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                for ki in 0..k {
                    for kj in 0..k {
                        let iy = (y * s + ki) as isize - p as isize;
                        let ix = (xx * s + kj) as isize - p as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x[(pl * h + iy as usize) * w + ix as usize];
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                out.push(if max { acc } else { acc / (k * k) as f64 });
            }
        }
    }
    out
}

fn check<M>(m: M, (b, c, h, w): (usize, usize, usize, usize), (k, s, p): (usize, usize, usize), max: bool)
where
    M: Module<Tensor<(usize, usize, usize, usize), f64, Cpu>, Output = Tensor<(usize, usize, usize, usize), f64, Cpu>>
        + Module<
            Tensor<(usize, usize, usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>,
            Output = Tensor<(usize, usize, usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>,
        >,
{
    let dev = Cpu::default();
    let xv = values(b * c * h * w, (k * 100 + s * 10 + p) as u64);
    let x = dev.tensor_from_vec(xv.clone(), (b, c, h, w));
    let out = m.forward(x.clone());
    let reference = naive_pool(&xv, b * c, (h, w), k, s, p, max);
    let err = max_abs_diff(&out.as_vec(), &reference);
    assert!(err <= 1e-12, "pool k{k} s{s} p{p} forward differs from naive by {err}");
    assert_eq!(out.shape().2 * out.shape().3 * b * c, reference.len());

    let r = values(reference.len(), 77);
    let out = m.forward(x.trace(Gradients::leaky()));
    let rt = dev.tensor_from_vec(r.clone(), *out.shape());
    let gx = (out * rt).sum().backward().get(&x).as_vec();
    let err = check_fd(&xv, &gx, 60, &mut |pt| {
        naive_pool(pt, b * c, (h, w), k, s, p, max).iter().zip(&r).map(|(a, b)| a * b).sum()
    });
    assert!(err <= 1e-6, "pool k{k} s{s} p{p} gradient error {err}");
}

#[test]
fn max_pool_matches_naive_and_finite_differences() {
    check(MaxPool2D::<2, 2>, (2, 3, 6, 5), (2, 2, 0), true); // odd width is floored
    check(MaxPool2D::<3, 2, 1>, (1, 2, 7, 6), (3, 2, 1), true); // padding, batch 1
    check(MaxPool2D::<3, 1>, (3, 1, 4, 5), (3, 1, 0), true); // overlapping windows
}

#[test]
fn avg_pool_matches_naive_and_finite_differences() {
    check(AvgPool2D::<2, 2>, (2, 3, 6, 5), (2, 2, 0), false);
    check(AvgPool2D::<3, 1, 1>, (1, 2, 5, 7), (3, 1, 1), false);
    check(AvgPool2D::<3, 2, 1>, (3, 2, 7, 6), (3, 2, 1), false);
}

#[test]
fn pools_keep_const_channels() {
    let dev = Cpu::default();
    let x: Tensor<(usize, Const<4>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(2, Const, 28, 28));
    let y = MaxPool2D::<2, 2>.forward(x.clone());
    assert_eq!(y.shape(), &(2, Const::<4>, 14, 14));
    let z = AvgPool2D::<2, 2>.forward(y);
    assert_eq!(z.shape(), &(2, Const::<4>, 7, 7));
}

#[test]
fn max_pool_ties_go_to_the_first_maximum_and_nan_propagates() {
    let dev = Cpu::default();
    #[rustfmt::skip]
    let xv = vec![
        1.0, 3.0, 3.0, 0.0, -2.0, -2.0,
        3.0, 2.0, f64::NAN, 5.0, -2.0, -3.0,
    ];
    let x = dev.tensor_from_vec(xv, (1usize, 1usize, 2usize, 6usize));
    let out = MaxPool2D::<2, 2>.forward(x.trace(Gradients::leaky()));
    let values = out.as_vec();
    assert_eq!(values[0], 3.0);
    assert!(values[1].is_nan(), "a NaN in the window gives NaN, got {}", values[1]);
    assert_eq!(values[2], -2.0);
    let gx = out.sum().backward().get(&x).as_vec();
    // The gradient of each window goes to exactly one input: the first maximum in row-major
    // order (index 1, not 2 or 6), the NaN (index 8), the first of the tied -2s (index 4).
    let expected = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    assert_eq!(gx, expected);
}
