//! The f32 paths (which use the AVX-512 matrix kernel on CPUs that have it, and the `gemm` crate
//! elsewhere) agree with the same layers in f64, whose gradients the other tests check against
//! finite differences.

use dfdx::nn::ToDtype;
use dfdx::prelude::*;
use glimpse::nn::builders::*;
use glimpse::nn::{LstmState, MaskB};

/// Largest |a - b| / (1 + |b|).
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs() / (1.0 + y.abs())).fold(0.0, f64::max)
}

/// Forward output and input gradient of `sum(out * r)` in both precisions.
macro_rules! compare_image_layer {
    ($builder:ty, $in_c:literal, ($b:expr, $h:expr, $w:expr), $weight:ident) => {{
        let dev = Cpu::seed_from_u64(1);
        let m32 = dev.build_module::<$builder, f32>();
        let m64 = m32.to_dtype::<f64>();
        let x32: Tensor<(usize, Const<$in_c>, usize, usize), f32, Cpu> = dev.sample_normal_like(&($b, Const, $h, $w));
        let x64 = x32.clone().to_dtype::<f64>();
        let y32 = m32.forward(x32.leaky_trace());
        let y64 = m64.forward(x64.leaky_trace());
        let r32: Tensor<_, f32, Cpu> = dev.sample_normal_like(y32.shape());
        let r64 = r32.clone().to_dtype::<f64>();
        let (y32v, y64v) = (y32.as_vec(), y64.as_vec());
        let g32 = (y32 * r32).sum().backward();
        let g64 = (y64 * r64).sum().backward();
        let errs = [
            rel_err(&y32v, &y64v),
            rel_err(&g32.get(&x32).as_vec(), &g64.get(&x64).as_vec()),
            rel_err(&g32.get(&m32.$weight).as_vec(), &g64.get(&m64.$weight).as_vec()),
        ];
        assert!(errs.iter().all(|e| *e < 1e-3), "{}: f32 vs f64 errors (out, dx, dw) {errs:?}", stringify!($builder));
    }};
}

#[test]
fn f32_convolutions_agree_with_f64() {
    compare_image_layer!(Conv2D<8, 16, 3, 1, 1>, 8, (3, 12, 13), weight);
    compare_image_layer!(Conv2D<16, 32, 3, 2, 1>, 16, (4, 14, 14), weight);
    compare_image_layer!(Conv2D<4, 24, 5, 1, 2>, 4, (1, 20, 17), weight); // batch 1: threads inside gemm
    compare_image_layer!(ConvTrans2D<16, 8, 4, 2, 1>, 16, (3, 7, 9), weight);
    compare_image_layer!(MaskedConv2D<8, 16, 7, MaskB>, 8, (2, 14, 14), weight);
}

/// The layers the direct AVX-512 convolution takes (channels in multiples of 32, stride 2 or a
/// kernel > 1×1 at stride 1, padding of at most one position at each end of a row), with odd
/// sizes, padding 0 and 1, and kernels smaller and larger than the stride, beside layers of the
/// same channels that it leaves to im2col (stride 3, padding 2 at stride 1); on CPUs without
/// AVX-512 they all check the im2col path.
#[test]
fn f32_direct_strided_convolutions_agree_with_f64() {
    let before = glimpse::nn::kernel_counts()[3].1;
    compare_image_layer!(Conv2D<32, 64, 3, 2, 1>, 32, (3, 14, 14), weight);
    compare_image_layer!(Conv2D<32, 32, 4, 2, 1>, 32, (2, 13, 15), weight);
    compare_image_layer!(Conv2D<64, 32, 5, 3, 2>, 64, (3, 11, 10), weight); // im2col
    compare_image_layer!(Conv2D<32, 64, 2, 2, 0>, 32, (3, 8, 9), weight);
    compare_image_layer!(Conv2D<32, 32, 3, 2, 0>, 32, (1, 9, 7), weight);
    compare_image_layer!(Conv2D<32, 32, 1, 2, 0>, 32, (2, 7, 6), weight);
    compare_image_layer!(Conv2D<32, 32, 4, 2, 1>, 32, (2, 30, 31), weight); // rows of more than one tile
    compare_image_layer!(Conv2D<32, 32, 3, 2, 1>, 32, (9, 9, 11), weight); // split buffers reused across images
                                                                           // Stride 1 (one phase): mnist_cnn's layer, a wider kernel and odd sizes, no padding.
    compare_image_layer!(Conv2D<32, 64, 3, 1, 1>, 32, (3, 14, 14), weight);
    compare_image_layer!(Conv2D<32, 32, 5, 1, 2>, 32, (2, 9, 17), weight); // im2col
    compare_image_layer!(Conv2D<32, 32, 2, 1, 0>, 32, (2, 7, 30), weight);
    // Transposed convolutions are the input gradients of these, and take the same kernels.
    compare_image_layer!(ConvTrans2D<64, 32, 4, 2, 1>, 64, (3, 7, 7), weight);
    compare_image_layer!(ConvTrans2D<32, 64, 3, 2, 1, 1>, 32, (2, 5, 6), weight);
    compare_image_layer!(ConvTrans2D<32, 32, 5, 3, 2>, 32, (2, 4, 3), weight); // im2col
    compare_image_layer!(ConvTrans2D<32, 64, 3, 1, 1>, 32, (2, 6, 5), weight);
    let used = glimpse::nn::kernel_counts()[3].1 - before;
    if glimpse::nn::avx512_available() {
        assert!(used >= 24, "the direct kernels took {used} of 24 passes");
    }
}

#[test]
fn f32_direct_strided_convolution_bias_and_frozen_weights() {
    let dev = Cpu::seed_from_u64(3);
    let m32 = dev.build_module::<Conv2D<32, 32, 4, 2, 1>, f32>();
    let m64 = m32.to_dtype::<f64>();
    let x32: Tensor<(usize, Const<32>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(3, Const, 10, 12));
    let x64 = x32.clone().to_dtype::<f64>();
    let g32 = m32.forward(x32.leaky_trace()).square().sum().backward();
    let g64 = m64.forward(x64.leaky_trace()).square().sum().backward();
    let err = rel_err(&g32.get(&m32.bias).as_vec(), &g64.get(&m64.bias).as_vec());
    assert!(err < 1e-3, "bias gradient error {err}");
    // With frozen parameters only the input gradient is computed, and it is the same.
    let frozen = glimpse::nn::with_frozen_parameters(|| m32.forward(x32.leaky_trace()).square().sum().backward());
    assert_eq!(frozen.get(&x32).as_vec(), g32.get(&x32).as_vec());
}

#[test]
fn f32_lstm_agrees_with_f64() {
    let dev = Cpu::seed_from_u64(2);
    let c32 = dev.build_module::<LSTMCell<64, 96>, f32>();
    let c64 = c32.to_dtype::<f64>();
    let x32: Tensor<(usize, Const<64>), f32, Cpu> = dev.sample_normal_like(&(40, Const));
    let x64 = x32.clone().to_dtype::<f64>();
    let s32 = c32.try_step(x32.leaky_trace(), LstmState::<usize, 96, f32>::zeros(&dev, 40)).unwrap();
    let s64 = c64.try_step(x64.leaky_trace(), LstmState::<usize, 96, f64>::zeros(&dev, 40)).unwrap();
    let (h32, h64) = (s32.h.as_vec(), s64.h.as_vec());
    let g32 = s32.h.sum().backward();
    let g64 = s64.h.sum().backward();
    let errs = [
        rel_err(&h32, &h64),
        rel_err(&g32.get(&x32).as_vec(), &g64.get(&x64).as_vec()),
        rel_err(&g32.get(&c32.weight_ih).as_vec(), &g64.get(&c64.weight_ih).as_vec()),
    ];
    assert!(errs.iter().all(|e| *e < 1e-3), "LSTM f32 vs f64 errors (h, dx, dw_ih) {errs:?}");
}

/// An empty batch goes through the direct kernels without a panic (dfdx's own reductions divide
/// by zero on empty tensors, so there is no loss to take the backward pass from).
#[test]
fn f32_direct_strided_convolution_of_an_empty_batch() {
    let dev = Cpu::seed_from_u64(4);
    let m = dev.build_module::<Conv2D<32, 32, 4, 2, 1>, f32>();
    let x: Tensor<(usize, Const<32>, usize, usize), f32, Cpu> = dev.zeros_like(&(0, Const, 10, 12));
    let y = m.forward(x);
    assert_eq!(*y.shape(), (0, Const::<32>, 5, 6));
    let t = dev.build_module::<ConvTrans2D<32, 32, 4, 2, 1>, f32>();
    assert_eq!(t.forward(y).shape().2, 10);
}
