//! numpy's float32 `cos` and `sin`, which gymnasium's Acrobot applies to its float32 reset state.

/// `np.cos` of a float32.
#[inline]
pub fn cos(x: f32) -> f32 {
    (x as f64).cos() as f32
}

/// `np.sin` of a float32.
#[inline]
pub fn sin(x: f32) -> f32 {
    (x as f64).sin() as f32
}
