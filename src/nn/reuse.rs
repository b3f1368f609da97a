//! [`with_weight_reuse`]: layers that a loop calls many times (a recurrent model's steps) copy
//! their weights out of dfdx once instead of on every call.
//!
//! dfdx 0.13 keeps a tensor's values private, so each layer call copies its weights (and a
//! forward product with `W^T` packs them transposed) before the matrix products. Inside the
//! scope, the layers' weights that lie inside the borrowed model are copied (and transposed)
//! once and the copies are shared by every later call on this thread.
//!
//! This is sound without trusting the caller: the model is borrowed immutably for the whole
//! scope, so no tensor stored inside its bytes can change; tensors elsewhere (temporaries, or
//! layers the model keeps on the heap) are never cached and are copied as usual.

use dfdx::prelude::*;
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::kernels::{tensor_vec, NnFloat};

/// Copies of a model's weights, keyed by the tensor's address and whether the copy is transposed.
type Copies = Arc<Mutex<HashMap<(usize, bool), Arc<dyn Any + Send + Sync>>>>;

/// The active scope on this thread: the model's address range and the copies made so far.
struct Scope {
    start: usize,
    end: usize,
    copies: Copies,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f(model)` with the weights of `model`'s layers copied once and reused by every layer
/// call inside `f` on this thread (see the module docs); the copies are dropped afterwards.
/// Results are the same as without the scope, bit for bit. Inside a scope that already covers
/// `model` (a [`SharedWeights::scope`], say) it keeps that scope's copies.
///
/// ```
/// use dfdx::prelude::*;
/// use glimpse::nn::{builders::Dense, with_weight_reuse};
/// let dev = Cpu::default();
/// let layer = dev.build_module::<Dense<4, 4>, f32>();
/// let x: Tensor<Rank2<2, 4>, f32, Cpu> = dev.sample_normal();
/// let unrolled = with_weight_reuse(&layer, |l| {
///     (0..3).fold(x.clone(), |h, _| l.forward(h).tanh())
/// });
/// let plain = (0..3).fold(x.clone(), |h, _| layer.forward(h).tanh());
/// assert_eq!(unrolled.array(), plain.array());
/// ```
pub fn with_weight_reuse<M, R>(model: &M, f: impl FnOnce(&M) -> R) -> R {
    let (start, end) = span(model);
    if SCOPE.with_borrow(|s| s.as_ref().is_some_and(|s| s.start <= start && end <= s.end)) {
        return f(model);
    }
    in_scope(Scope { start, end, copies: Copies::default() }, || f(model))
}

/// Weight copies of one model shared by several threads: each thread that runs
/// [`SharedWeights::scope`] reuses the copies any of them made, so work split over threads
/// (parts of a batch) copies and transposes the weights once, not once per thread. The model
/// stays borrowed while this lives, so the copies cannot go stale.
///
/// ```
/// use dfdx::prelude::*;
/// use glimpse::nn::{builders::Dense, SharedWeights};
/// let dev = Cpu::default();
/// let layer = dev.build_module::<Dense<4, 4>, f32>();
/// let x: Tensor<Rank2<2, 4>, f32, Cpu> = dev.sample_normal();
/// let shared = SharedWeights::new(&layer);
/// let (a, b) = rayon::join(|| shared.scope(|l| l.forward(x.clone())), || shared.scope(|l| l.forward(x.clone())));
/// assert_eq!(a.array(), b.array());
/// ```
pub struct SharedWeights<'m, M> {
    model: &'m M,
    copies: Copies,
}

impl<'m, M> SharedWeights<'m, M> {
    /// No copies yet of `model`'s weights.
    pub fn new(model: &'m M) -> Self {
        Self { model, copies: Copies::default() }
    }

    /// Runs `f(model)` on this thread with the shared copies (made as layers first need them).
    pub fn scope<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        let (start, end) = span(self.model);
        in_scope(Scope { start, end, copies: self.copies.clone() }, || f(self.model))
    }
}

/// The address range of `model`'s bytes.
fn span<M>(model: &M) -> (usize, usize) {
    let start = model as *const M as usize;
    (start, start + std::mem::size_of::<M>())
}

/// Runs `f` with `scope` active on this thread, then puts the enclosing one back (also when `f`
/// panics).
fn in_scope<R>(scope: Scope, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            SCOPE.with_borrow_mut(|s| *s = outer);
        }
    }
    let _restore = Restore(SCOPE.with_borrow_mut(|s| s.replace(scope)));
    f()
}

/// Whether a [`with_weight_reuse`] scope is active on this thread.
pub(crate) fn reusing() -> bool {
    SCOPE.with_borrow(|s| s.is_some())
}

/// The values of weight `t`, row-major; with `transpose: Some((rows, cols))` (the tensor seen
/// as a `rows × cols` matrix) its transpose, `cols × rows`. Copied once per
/// [`with_weight_reuse`] scope when `t` lies inside the scope's model, else on every call.
pub(crate) fn weight_values<S: Shape, E: NnFloat>(
    t: &Tensor<S, E, Cpu>,
    transpose: Option<(usize, usize)>,
) -> Result<Arc<Vec<E>>, CpuError> {
    let copy = || -> Result<Arc<Vec<E>>, CpuError> {
        Ok(match transpose {
            None => recycled_copy(t)?,
            Some((rows, cols)) => Arc::new(transposed(&tensor_vec(t)?, rows, cols)),
        })
    };
    let at = t as *const Tensor<S, E, Cpu> as usize;
    let copies = SCOPE.with_borrow(|s| {
        s.as_ref()
            .filter(|s| at >= s.start && at + std::mem::size_of::<Tensor<S, E, Cpu>>() <= s.end)
            .map(|s| s.copies.clone())
    });
    let Some(copies) = copies else {
        return copy();
    };
    // The lock is held while a copy is made: a thread that needs the same weight waits for it
    // instead of copying it again.
    let mut copies = copies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (at, transpose.is_some());
    if let Some(found) = copies.get(&key).cloned().and_then(|c| c.downcast::<Vec<E>>().ok()) {
        return Ok(found);
    }
    let values = copy()?;
    copies.insert(key, values.clone() as Arc<dyn Any + Send + Sync>);
    Ok(values)
}

thread_local! {
    /// Buffers of earlier weight copies on this thread, reused by [`recycled_copy`] once nothing
    /// else holds them.
    static RECYCLED: RefCell<Vec<Arc<dyn Any + Send + Sync>>> = const { RefCell::new(Vec::new()) };
}

/// Most values [`RECYCLED`] keeps per thread (32 MiB of f32).
const RECYCLED_VALUES: usize = 8 << 20;

/// A copy of `t`'s values, written into the buffer of an earlier copy of the same length when
/// nothing else holds that any more (a layer's weights from the previous step) instead of into
/// a freshly zeroed vector. The values are always copied anew, so the result is the same.
pub(crate) fn recycled_copy<S: Shape, E: NnFloat>(t: &Tensor<S, E, Cpu>) -> Result<Arc<Vec<E>>, CpuError> {
    let len = t.shape().num_elements();
    let contiguous = t.retaped::<NoneTape>().try_contiguous()?;
    RECYCLED.with_borrow_mut(|pool| {
        let free = pool.iter().position(|b| {
            Arc::strong_count(b) == 1
                && Arc::weak_count(b) == 0
                && b.downcast_ref::<Vec<E>>().is_some_and(|v| v.len() == len)
        });
        let mut values = match free.map(|i| pool.swap_remove(i).downcast::<Vec<E>>()) {
            Some(Ok(buffer)) => buffer,
            _ => Arc::new(vec![E::zero(); len]),
        };
        match Arc::get_mut(&mut values) {
            Some(v) => contiguous.copy_into(v),
            // Not reached: the buffer is new or was free (its one holder was the pool).
            None => values = Arc::new(tensor_vec(t)?),
        }
        if len <= RECYCLED_VALUES {
            pool.push(values.clone() as Arc<dyn Any + Send + Sync>);
            // The oldest buffers go first when over the budget.
            let mut total: usize = pool.iter().map(|b| any_len(b.as_ref())).sum();
            while total > RECYCLED_VALUES {
                total -= any_len(pool.remove(0).as_ref());
            }
        }
        Ok(values)
    })
}

/// Values in a pooled buffer (an f32 or f64 vector).
fn any_len(b: &(dyn Any + Send + Sync)) -> usize {
    b.downcast_ref::<Vec<f32>>().map(Vec::len).or_else(|| b.downcast_ref::<Vec<f64>>().map(Vec::len)).unwrap_or(0)
}

/// A weight seen as a `rows × cols` matrix, row-major, and (inside a [`with_weight_reuse`]
/// scope) its transpose too, for products with `W^T` that then read it in place.
#[allow(clippy::type_complexity)]
pub(crate) fn weight_and_transpose<S: Shape, E: NnFloat>(
    t: &Tensor<S, E, Cpu>,
    (rows, cols): (usize, usize),
) -> Result<(Arc<Vec<E>>, Option<Arc<Vec<E>>>), CpuError> {
    let transpose = if reusing() { Some(weight_values(t, Some((rows, cols)))?) } else { None };
    Ok((weight_values(t, None)?, transpose))
}

/// [`weight_and_transpose`] of a recurrent cell's two weights (`(rows, cols)` each); outside a
/// [`with_weight_reuse`] scope, large ones are copied out of dfdx on two threads at once (a
/// single LSTM step copied 2 MB of weights on one thread while the other waited).
#[allow(clippy::type_complexity)]
pub(crate) fn two_weights_and_transposes<S1: Shape, S2: Shape, E: NnFloat>(
    (a, a_dims): (&Tensor<S1, E, Cpu>, (usize, usize)),
    (b, b_dims): (&Tensor<S2, E, Cpu>, (usize, usize)),
) -> Result<[(Arc<Vec<E>>, Option<Arc<Vec<E>>>); 2], CpuError> {
    let large = a_dims.0 * a_dims.1 + b_dims.0 * b_dims.1 >= super::kernels::PARALLEL_COPIES;
    if reusing() || !large {
        return Ok([weight_and_transpose(a, a_dims)?, weight_and_transpose(b, b_dims)?]);
    }
    // No scope is open, so neither copy reads this thread's scope: either may run elsewhere.
    let (first, second) = rayon::join(|| weight_and_transpose(a, a_dims), || weight_and_transpose(b, b_dims));
    Ok([first?, second?])
}

/// `W^T` for a product `(m × cols) · W^T`: the row-major transpose when there is one and the
/// product takes glimpse's packed AVX-512 kernel, else `W`'s values read transposed (`w` is
/// `rows × cols` row-major; the unpacked kernel of small products copies them row-major). The
/// gemm crate (f64, or CPUs without AVX-512) may round the two layouts differently, so it always
/// gets `W` itself: the results are the same, bit for bit, with or without a
/// [`with_weight_reuse`] scope.
pub(crate) fn transposed_view<E: NnFloat>(
    (w, wt): (&[E], Option<&[E]>),
    (rows, cols): (usize, usize),
    m: usize,
) -> super::kernels::Mat<E> {
    match wt {
        Some(wt) if super::kernels::use_avx512::<E>((m, cols, rows)) => super::kernels::Mat::rows(wt, rows),
        _ => super::kernels::Mat::rows_t(w, cols),
    }
}

/// The transpose of a row-major `rows × cols` matrix, in 16 × 16 tiles.
pub(crate) fn transposed<E: NnFloat>(values: &[E], rows: usize, cols: usize) -> Vec<E> {
    const TILE: usize = 16;
    let mut out = vec![E::zero(); rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_swaps_rows_and_columns() {
        let v: Vec<f32> = (0..6).map(|i| i as f32).collect();
        assert_eq!(transposed(&v, 2, 3), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let big: Vec<f32> = (0..37 * 21).map(|i| i as f32).collect();
        let t = transposed(&big, 37, 21);
        assert!((0..37).all(|r| (0..21).all(|c| t[c * 37 + r] == big[r * 21 + c])));
    }

    #[test]
    fn recycled_copies_hold_the_current_values() {
        let dev = Cpu::default();
        let mut t: Tensor<Rank1<3>, f32, Cpu> = dev.tensor([1.0, 2.0, 3.0]);
        let first = weight_values(&t, None).unwrap();
        let held = first.as_ptr();
        t.copy_from(&[4.0, 5.0, 6.0]);
        let second = weight_values(&t, None).unwrap();
        assert_eq!((first.as_slice(), second.as_slice()), ([1.0, 2.0, 3.0].as_slice(), [4.0, 5.0, 6.0].as_slice()));
        assert_ne!(second.as_ptr(), held, "a copy still held is not overwritten");
        let second_at = second.as_ptr();
        drop((first, second));
        t.copy_from(&[7.0, 8.0, 9.0]);
        let third = weight_values(&t, None).unwrap();
        assert_eq!(*third, vec![7.0, 8.0, 9.0]);
        assert!(third.as_ptr() == held || third.as_ptr() == second_at, "a free buffer is reused");
        let other: Tensor<Rank1<2>, f64, Cpu> = dev.tensor([1.5, 2.5]);
        assert_eq!(*weight_values(&other, None).unwrap(), vec![1.5, 2.5], "other lengths and types get their own");
    }

    #[test]
    fn only_tensors_inside_the_model_are_cached() {
        let dev = Cpu::default();
        let model: (Tensor<Rank1<3>, f32, Cpu>, Tensor<Rank1<3>, f32, Cpu>) =
            (dev.tensor([1.0, 2.0, 3.0]), dev.tensor([4.0, 5.0, 6.0]));
        with_weight_reuse(&model, |m| {
            let a = weight_values(&m.0, None).unwrap();
            assert!(Arc::ptr_eq(&a, &weight_values(&m.0, None).unwrap()), "a second call reuses the copy");
            assert_eq!(*weight_values(&m.1, None).unwrap(), vec![4.0, 5.0, 6.0]);
            let mut outside: Tensor<Rank1<3>, f32, Cpu> = dev.tensor([7.0, 8.0, 9.0]);
            assert_eq!(*weight_values(&outside, None).unwrap(), vec![7.0, 8.0, 9.0]);
            outside.copy_from(&[0.0, 0.0, 1.0]);
            assert_eq!(*weight_values(&outside, None).unwrap(), vec![0.0, 0.0, 1.0], "temporaries are not cached");
        });
        assert!(!reusing());
    }

    #[test]
    fn a_nested_scope_and_other_threads_share_the_copies() {
        let dev = Cpu::default();
        let model: (Tensor<Rank1<3>, f32, Cpu>, Tensor<Rank1<3>, f32, Cpu>) =
            (dev.tensor([1.0, 2.0, 3.0]), dev.tensor([4.0, 5.0, 6.0]));
        with_weight_reuse(&model, |m| {
            let outer = weight_values(&m.0, None).unwrap();
            let inner = with_weight_reuse(&m.0, |t| weight_values(t, None).unwrap());
            assert!(Arc::ptr_eq(&outer, &inner), "the inner scope keeps the outer copies");
        });
        let shared = SharedWeights::new(&model);
        let here = shared.scope(|m| weight_values(&m.1, Some((1, 3))).unwrap());
        let there =
            std::thread::scope(|s| s.spawn(|| shared.scope(|m| weight_values(&m.1, Some((1, 3))).unwrap())).join());
        assert!(Arc::ptr_eq(&here, &there.unwrap()), "another thread reuses the copy");
        assert!(!reusing());
    }
}
