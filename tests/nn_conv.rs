//! Conv2D, ConvTrans2D and MaskedConv2D: forward against naive loops, gradients against finite
//! differences (f64), PixelCNN mask causality.

mod nn_util;

use dfdx::prelude::*;
use glimpse::nn::{
    builders, CentreRow, HorizontalA, HorizontalB, MaskA, MaskB, MaskKind, MaskedConv2D, RowAbove, VerticalStack,
};
use nn_util::*;

fn image<const C: usize>(
    dev: &Cpu,
    (b, h, w): (usize, usize, usize),
    seed: u64,
) -> Tensor<(usize, Const<C>, usize, usize), f64, Cpu> {
    dev.tensor_from_vec(values(b * C * h * w, seed), (b, Const::<C>, h, w))
}

/// Forward vs naive, then input/weight/bias gradients vs finite differences.
fn check_conv<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize>(
    b: usize,
    h: usize,
    w: usize,
) {
    let dev = Cpu::seed_from_u64(7);
    let mut m = dev.build_module::<builders::Conv2D<I, O, K, S, P>, f64>();
    // Non-zero bias so that the bias path is exercised.
    m.bias = dev.tensor_from_vec(values(O, 3), (Const::<O>,));
    let x = image::<I>(&dev, (b, h, w), 11);
    let (xv, wv, bv) = (x.as_vec(), m.weight.as_vec(), m.bias.as_vec());
    let out = m.forward(x.clone());
    let (reference, oh, ow) = naive_conv(&xv, (b, I, h, w), &wv, (O, K), &bv, S, P, &|_, _| true);
    assert_eq!(out.shape(), &(b, Const::<O>, oh, ow));
    let err = max_abs_diff(&out.as_vec(), &reference);
    assert!(err <= 1e-12, "Conv2D<{I},{O},{K},{S},{P}> forward differs from naive by {err}");

    let r = values(reference.len(), 5);
    let grads = {
        let out = m.forward(x.trace(Gradients::leaky()));
        let rt = dev.tensor_from_vec(r.clone(), *out.shape());
        (out * rt).sum().backward()
    };
    let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| {
        weighted_sum_vec(&naive_conv(xv, (b, I, h, w), wv, (O, K), bv, S, P, &|_, _| true).0, &r)
    };
    let ex = check_fd(&xv, &grads.get(&x).as_vec(), 40, &mut |p| loss(p, &wv, &bv));
    let ew = check_fd(&wv, &grads.get(&m.weight).as_vec(), 40, &mut |p| loss(&xv, p, &bv));
    let eb = check_fd(&bv, &grads.get(&m.bias).as_vec(), 40, &mut |p| loss(&xv, &wv, p));
    assert!(ex.max(ew).max(eb) <= 1e-6, "Conv2D<{I},{O},{K},{S},{P}> gradient errors x {ex} w {ew} b {eb}");
}

fn weighted_sum_vec(out: &[f64], r: &[f64]) -> f64 {
    out.iter().zip(r).map(|(a, b)| a * b).sum()
}

#[test]
fn conv2d_matches_naive_and_finite_differences() {
    check_conv::<2, 3, 3, 1, 1>(2, 5, 6);
    check_conv::<3, 4, 3, 2, 1>(3, 7, 6); // stride 2, non-square
    check_conv::<1, 2, 5, 2, 0>(1, 9, 8); // batch 1 (single-image path)
    check_conv::<2, 2, 1, 1, 0>(4, 3, 3); // 1x1 kernel
    check_conv::<2, 3, 4, 3, 2>(2, 6, 5); // even kernel, stride 3, wide padding
    check_conv::<2, 2, 3, 2, 1>(2, 6, 7); // stride 2, odd width (its last column is an even phase)
}

fn check_conv_trans<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, const OP: usize>(
    b: usize,
    h: usize,
    w: usize,
) {
    let dev = Cpu::seed_from_u64(9);
    let mut m = dev.build_module::<builders::ConvTrans2D<I, O, K, S, P, OP>, f64>();
    m.bias = dev.tensor_from_vec(values(O, 4), (Const::<O>,));
    let x = image::<I>(&dev, (b, h, w), 12);
    let (xv, wv, bv) = (x.as_vec(), m.weight.as_vec(), m.bias.as_vec());
    let out = m.forward(x.clone());
    let (reference, oh, ow) = naive_conv_trans(&xv, (b, I, h, w), &wv, (O, K), &bv, S, P, OP);
    assert_eq!(out.shape(), &(b, Const::<O>, oh, ow));
    let err = max_abs_diff(&out.as_vec(), &reference);
    assert!(err <= 1e-12, "ConvTrans2D<{I},{O},{K},{S},{P},{OP}> forward differs from naive by {err}");

    let r = values(reference.len(), 6);
    let out = m.forward(x.trace(Gradients::leaky()));
    let rt = dev.tensor_from_vec(r.clone(), *out.shape());
    let g = (out * rt).sum().backward();
    let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| {
        weighted_sum_vec(&naive_conv_trans(xv, (b, I, h, w), wv, (O, K), bv, S, P, OP).0, &r)
    };
    let ex = check_fd(&xv, &g.get(&x).as_vec(), 40, &mut |p| loss(p, &wv, &bv));
    let ew = check_fd(&wv, &g.get(&m.weight).as_vec(), 40, &mut |p| loss(&xv, p, &bv));
    let eb = check_fd(&bv, &g.get(&m.bias).as_vec(), 40, &mut |p| loss(&xv, &wv, p));
    assert!(ex.max(ew).max(eb) <= 1e-6, "ConvTrans2D gradient errors x {ex} w {ew} b {eb}");
}

#[test]
fn conv_trans2d_matches_naive_and_finite_differences() {
    check_conv_trans::<2, 3, 4, 2, 1, 0>(2, 3, 4); // doubling, non-square
    check_conv_trans::<3, 2, 3, 2, 1, 1>(3, 4, 4); // output padding
    check_conv_trans::<1, 2, 3, 1, 0, 0>(1, 5, 3); // batch 1
    check_conv_trans::<2, 2, 5, 3, 2, 2>(2, 3, 2); // stride 3, output padding 2
}

/// Which taps mask kind `M` keeps for a `k×k` kernel.
fn keep<M: MaskKind>(k: usize) -> impl Fn(usize, usize) -> bool {
    move |i, j| M::keeps(k, i, j)
}

fn check_masked<M: MaskKind, const I: usize, const O: usize, const K: usize>(b: usize, h: usize, w: usize) {
    let dev = Cpu::seed_from_u64(13);
    let mut m = dev.build_module::<builders::MaskedConv2D<I, O, K, M>, f64>();
    m.bias = dev.tensor_from_vec(values(O, 8), (Const::<O>,));
    let x = image::<I>(&dev, (b, h, w), 14);
    let (xv, wv, bv) = (x.as_vec(), m.weight.as_vec(), m.bias.as_vec());
    let out = m.forward(x.clone());
    let (reference, oh, ow) = naive_conv(&xv, (b, I, h, w), &wv, (O, K), &bv, 1, K / 2, &keep::<M>(K));
    assert_eq!((oh, ow), (h, w));
    let err = max_abs_diff(&out.as_vec(), &reference);
    assert!(err <= 1e-12, "MaskedConv2D forward differs from naive by {err}");

    let r = values(reference.len(), 7);
    let out = m.forward(x.trace(Gradients::leaky()));
    let rt = dev.tensor_from_vec(r.clone(), *out.shape());
    let g = (out * rt).sum().backward();
    let dw = g.get(&m.weight).as_vec();
    let kept = keep::<M>(K);
    for (idx, v) in dw.iter().enumerate() {
        let (ki, kj) = ((idx / K) % K, idx % K);
        if !kept(ki, kj) {
            assert_eq!(*v, 0.0, "masked tap ({ki},{kj}) got gradient {v}");
        }
    }
    let loss = |xv: &[f64], wv: &[f64]| {
        weighted_sum_vec(&naive_conv(xv, (b, I, h, w), wv, (O, K), &bv, 1, K / 2, &kept).0, &r)
    };
    let ex = check_fd(&xv, &g.get(&x).as_vec(), 40, &mut |p| loss(p, &wv));
    let ew = check_fd(&wv, &dw, 60, &mut |p| loss(&xv, p));
    assert!(ex.max(ew) <= 1e-6, "MaskedConv2D gradient errors x {ex} w {ew}");
}

#[test]
fn masked_conv_matches_naive_and_masked_taps_get_zero_gradient() {
    check_masked::<MaskA, 2, 3, 5>(2, 6, 7);
    check_masked::<MaskB, 3, 2, 3>(1, 5, 5);
    check_masked::<MaskB, 2, 2, 7>(3, 8, 6);
    check_masked::<VerticalStack, 2, 3, 3>(2, 5, 6);
    check_masked::<HorizontalA, 2, 2, 5>(1, 4, 6);
    check_masked::<HorizontalB, 3, 2, 3>(2, 5, 4);
    check_masked::<RowAbove, 2, 3, 3>(2, 4, 5);
    check_masked::<CentreRow, 2, 2, 3>(3, 1, 6);
}

#[test]
fn the_mask_kinds_keep_the_documented_taps() {
    assert_eq!(MaskA::taps(3), [(0, 0), (0, 1), (0, 2), (1, 0)]);
    assert_eq!(MaskB::taps(3), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]);
    assert_eq!(VerticalStack::taps(3), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
    assert_eq!(HorizontalA::taps(5), [(2, 0), (2, 1)]);
    assert_eq!(HorizontalB::taps(3), [(1, 0), (1, 1)]);
    assert_eq!(RowAbove::taps(3), [(0, 1)]);
    assert_eq!(CentreRow::taps(3), [(1, 0), (1, 1), (1, 2)]);
}

/// Positions of the input that output pixel `(py, px)` depends on, from the gradient of that
/// output through a stack `A -> B -> B`.
fn dependence(py: usize, px: usize, a_only: bool) -> Vec<bool> {
    let dev = Cpu::seed_from_u64(21);
    let (h, w) = (7, 6);
    let m = dev.build_module::<(
        builders::MaskedConv2D<2, 2, 5, MaskA>,
        builders::MaskedConv2D<2, 4, 3, MaskB>,
        builders::MaskedConv2D<4, 2, 3, MaskB>,
    ), f64>();
    let x = image::<2>(&dev, (1, h, w), 3);
    let out = if a_only {
        let first: &MaskedConv2D<2, 2, 5, MaskA, f64, Cpu> = &m.0;
        first.forward(x.trace(Gradients::leaky()))
    } else {
        m.forward(x.trace(Gradients::leaky()))
    };
    let (c, oh, ow) = (out.shape().1.size(), out.shape().2, out.shape().3);
    let mut onehot = vec![0.0; c * oh * ow];
    for ch in 0..c {
        onehot[(ch * oh + py) * ow + px] = 1.0;
    }
    let rt = dev.tensor_from_vec(onehot, *out.shape());
    let grads = (out * rt).sum().backward();
    let gx = grads.get(&x).as_vec();
    (0..h * w).map(|pos| gx[pos] != 0.0 || gx[h * w + pos] != 0.0).collect()
}

#[test]
fn masked_conv_stack_is_causal() {
    let w = 6;
    for &(py, px) in &[(0, 0), (3, 2), (6, 5), (4, 0)] {
        let here = py * w + px;
        for (a_only, name) in [(true, "A"), (false, "A->B->B")] {
            let dep = dependence(py, px, a_only);
            for (pos, &d) in dep.iter().enumerate() {
                if pos >= here {
                    assert!(!d, "{name}: output ({py},{px}) depends on input at or after it (position {pos})");
                }
            }
            if px > 0 {
                assert!(dep[here - 1], "{name}: output ({py},{px}) should see the pixel on its left");
            }
            if py > 0 {
                assert!(dep[here - w], "{name}: output ({py},{px}) should see the pixel above");
            }
        }
    }
    // Type B alone sees the centre pixel.
    let dev = Cpu::seed_from_u64(1);
    let m = dev.build_module::<builders::MaskedConv2D<1, 1, 3, MaskB>, f64>();
    let x = image::<1>(&dev, (1, 4, 4), 2);
    let out = m.forward(x.trace(Gradients::leaky()));
    let mut onehot = vec![0.0; 16];
    onehot[5] = 1.0;
    let rt = dev.tensor_from_vec(onehot, *out.shape());
    let gx = (out * rt).sum().backward().get(&x).as_vec();
    assert!(gx[5] != 0.0 && gx[6] == 0.0 && gx[9] == 0.0, "mask B must see the centre but nothing after it");
}

#[test]
fn conv_layers_compose_in_tuples_with_f32() {
    let dev = Cpu::default();
    type Net =
        (builders::Conv2D<1, 4, 3, 1, 1>, ReLU, builders::Conv2D<4, 8, 3, 2, 1>, builders::ConvTrans2D<8, 2, 4, 2, 1>);
    let m = dev.build_module::<Net, f32>();
    let x: Tensor<(usize, Const<1>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(3, Const, 10, 12));
    let y = m.forward(x);
    assert_eq!(y.shape(), &(3, Const::<2>, 10, 12));
}
