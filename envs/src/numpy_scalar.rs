//! Scalar functions that reproduce numpy's results bit for bit where they differ from the
//! obvious Rust expression.

use std::hint::black_box;

/// `np.float64(x) ** 2`: numpy calls the C library's `pow`, which is not always the correctly
/// rounded `x * x`. The opaque exponent stops LLVM from rewriting the call into `x * x`.
#[inline]
pub fn pow2(x: f64) -> f64 {
    x.powf(black_box(2.0))
}

/// `np.float32(x) ** 2`: the C library's `powf`.
#[inline]
pub fn pow2_f32(x: f32) -> f32 {
    x.powf(black_box(2.0))
}

/// `np.cos` of a float32 (see [`sin`]).
#[inline]
pub fn cos(x: f32) -> f32 {
    (x as f64).cos() as f32
}

/// `np.sin` of a float32. numpy's own float32 routines are accurate to about one ulp and depend
/// on the CPU's SIMD path; this is the correctly rounded value, which agrees with numpy almost
/// always and otherwise differs by one float32 ulp.
#[inline]
pub fn sin(x: f32) -> f32 {
    (x as f64).sin() as f32
}
