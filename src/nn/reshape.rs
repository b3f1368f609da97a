//! Moving between image tensors `(batch, C, H, W)` and feature tensors `(batch, N)`.

use dfdx::nn::{Module, NonMutableModule, ZeroSizedModule};
use dfdx::prelude::*;

/// Flattens `(batch, C, H, W)` into `(batch, C*H*W)` with a runtime feature size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

/// Flattens `(batch, C, H, W)` into `(batch, N)`, a compile-time size that `Linear<N, _>` takes.
///
/// Panics with a clear message when `C*H*W != N` (dfdx module errors cannot carry shapes).
#[derive(Debug, Clone, Copy, Default)]
pub struct FlattenTo<const N: usize>;

/// Reshapes `(batch, C*H*W)` features into `(batch, C, H, W)` images, e.g. after a decoder's
/// `Linear`; panics with a clear message when the feature size is not `C*H*W`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unflatten<const C: usize, const H: usize, const W: usize>;

impl ZeroSizedModule for Flatten {}
impl NonMutableModule for Flatten {}
impl<const N: usize> ZeroSizedModule for FlattenTo<N> {}
impl<const N: usize> NonMutableModule for FlattenTo<N> {}
impl<const C: usize, const H: usize, const W: usize> ZeroSizedModule for Unflatten<C, H, W> {}
impl<const C: usize, const H: usize, const W: usize> NonMutableModule for Unflatten<C, H, W> {}

impl<B: Dim, C: Dim, H: Dim, W: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>> Module<Tensor<(B, C, H, W), E, D, T>>
    for Flatten
{
    type Output = Tensor<(B, usize), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, C, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        let (b, c, h, w) = *x.shape();
        x.try_reshape_like(&(b, c.size() * h.size() * w.size()))
    }
}

impl<const N: usize, B: Dim, C: Dim, H: Dim, W: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, C, H, W), E, D, T>> for FlattenTo<N>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, C, H, W), E, D, T>) -> Result<Self::Output, D::Err> {
        let (b, c, h, w) = *x.shape();
        let features = c.size() * h.size() * w.size();
        assert_eq!(
            features,
            N,
            "FlattenTo<{N}>: input has {}x{}x{} = {features} features",
            c.size(),
            h.size(),
            w.size()
        );
        x.try_reshape_like(&(b, Const::<N>))
    }
}

impl<const C: usize, const H: usize, const W: usize, B: Dim, F: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, F), E, D, T>> for Unflatten<C, H, W>
{
    type Output = Tensor<(B, Const<C>, usize, usize), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, F), E, D, T>) -> Result<Self::Output, D::Err> {
        let (b, f) = *x.shape();
        assert_eq!(
            f.size(),
            C * H * W,
            "Unflatten<{C},{H},{W}>: input has {} features, expected {}",
            f.size(),
            C * H * W
        );
        x.try_reshape_like(&(b, Const::<C>, H, W))
    }
}
