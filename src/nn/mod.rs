//! Convolution, pooling, normalisation, recurrent and dense layers and fused losses for dfdx 0.13 on stable Rust.
//!
//! dfdx's own `Conv2D`, `ConvTrans2D` and pooling modules need its `nightly` feature, which does
//! not build on stable; these are first-class dfdx modules with their own CPU kernels (im2col +
//! matrix products, parallel over the batch with rayon; the products use the `gemm` crate, or an
//! AVX-512 kernel for f32 where the CPU has it). They work in module tuples, train with dfdx
//! optimizers and save/load with safetensors. Channels, kernel, stride and padding are const
//! generics; spatial sizes are runtime dims, images are `(batch, C, height, width)`.

#[cfg(target_arch = "x86_64")]
mod avx512;
pub(crate) mod kernels;

mod activation;
mod bottleneck;
mod conv;
#[cfg(target_arch = "x86_64")]
mod conv_direct;
mod convtrans;
mod dense;
mod dense_sum;
mod dropout;
mod freeze;
mod loss;
mod norm;
mod pool;
mod reduce;
mod reshape;
mod reuse;
mod rnn;
mod runtime;

pub use activation::{tanh_f32, FastReLU, FastTanh};
pub use bottleneck::{ResidualBottleneck, ResidualStack};
pub use conv::{
    fill_fan_in_uniform, pixelcnn_mask_taps, CentreRow, Conv2D, HorizontalA, HorizontalB, MaskA, MaskB, MaskKind,
    MaskedConv2D, RowAbove, VerticalStack,
};
pub use convtrans::ConvTrans2D;
pub use dense::{Dense, DenseUpTo};
pub use dense_sum::dense_sum_relu;
pub use dropout::HashDropout;
pub use freeze::with_frozen_parameters;
pub use kernels::{avx512_available, kernel_counts, with_serial_kernels, KernelPath, NnFloat};
pub use loss::{bernoulli_nll_sum, bernoulli_nll_with_logits};
pub use norm::{BatchNorm2D, LeakyReLU};
pub use pool::{AvgPool2D, MaxPool2D};
pub use reduce::sum_all;
pub use reshape::{Flatten, FlattenTo, Unflatten};
pub use reuse::{with_weight_reuse, SharedWeights};
pub use rnn::{split_steps, stack_steps, GRUCell, LSTMCell, LstmState, MergeTapes};
pub use runtime::{cpu_model, in_thread_pool, keep_freed_memory, with_threads_awake, GLIBC_TUNABLES};

/// Device- and dtype-free layer descriptions, to use in module tuples with `dev.build_module`.
pub mod builders {
    pub use super::activation::{FastReLU, FastTanh};
    pub use super::bottleneck::builder::{ResidualBottleneck, ResidualStack};
    pub use super::conv::builder::{Conv2D, MaskedConv2D};
    pub use super::convtrans::builder::ConvTrans2D;
    pub use super::dense::builder::{Dense, DenseUpTo};
    pub use super::dropout::HashDropout;
    pub use super::norm::builder::BatchNorm2D;
    pub use super::norm::LeakyReLU;
    pub use super::pool::{AvgPool2D, MaxPool2D};
    pub use super::reshape::{Flatten, FlattenTo, Unflatten};
    pub use super::rnn::builder::{GRUCell, LSTMCell};
}
