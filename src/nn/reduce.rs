//! [`sum_all`]: the sum of every element of a tensor, forward and backward in parallel.
//!
//! dfdx's `sum::<Rank0, _>()` walks its generic strided loops on one thread, each way: on a
//! convolution's 800k outputs that was 0.65 ms forward (on a Zen 4 core), as long as a tenth of
//! the convolution itself. Here the values are summed in fixed chunks of vector lanes, the
//! chunks' sums added in order, so the result does not depend on the thread count.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::kernels::{sum, take_contiguous, NnFloat};

/// Elements per chunk; tensors of fewer than [`MIN_CHUNKS_PER_TASK`] chunks stay on one thread.
const CHUNK: usize = 1 << 14;
const MIN_CHUNKS_PER_TASK: usize = 4;

/// The sum of every element of `x`, for any shape and tape: the value of dfdx's
/// `x.sum::<Rank0, _>()` up to rounding, with the same gradient (every element's is the output's).
///
/// ```
/// use dfdx::prelude::*;
/// use glimpse::nn::sum_all;
/// let dev = Cpu::default();
/// let x: Tensor<Rank3<4, 5, 6>, f32, Cpu> = dev.sample_normal();
/// let ours = sum_all(x.clone()).unwrap().array();
/// let dfdx = x.sum::<Rank0, _>().array();
/// assert!((ours - dfdx).abs() < 1e-4);
/// ```
pub fn sum_all<S: Shape, E: NnFloat, T: Tape<E, Cpu>>(
    x: Tensor<S, E, Cpu, T>,
) -> Result<Tensor<Rank0, E, Cpu, T>, CpuError> {
    let (x, values) = take_contiguous(x)?;
    let (x, mut tape) = x.split_tape();
    let partials: Vec<E> = values.par_chunks(CHUNK).with_min_len(MIN_CHUNKS_PER_TASK).map(sum).collect();
    drop(values);
    let total = partials.into_iter().fold(E::zero(), |a, p| a + p);
    let out = x.device().try_tensor(total)?;
    if T::OWNS_TAPE {
        let (x_g, out_g) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let g = grads.get_or_alloc_mut(&out_g)?[0];
            let dx = grads.get_or_alloc_mut(&x_g)?;
            dx.par_chunks_mut(CHUNK).with_min_len(MIN_CHUNKS_PER_TASK).for_each(|d| d.iter_mut().for_each(|v| *v += g));
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_dfdx_and_not_the_thread_count() {
        let dev = Cpu::seed_from_u64(3);
        let x: Tensor<(usize, Const<7>), f32, Cpu> = dev.sample_normal_like(&(20_000, Const));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| {
                let y = sum_all(x.leaky_trace()).unwrap();
                let v = y.array();
                let g = (y * 3.0).backward();
                (v, g.get(&x).as_vec())
            })
        };
        let (v1, g1) = run(1);
        let (v3, g3) = run(3);
        assert_eq!(v1.to_bits(), v3.to_bits());
        assert_eq!(g1, g3);
        let reference = x.clone().sum::<Rank0, _>().array();
        assert!((v1 - reference).abs() < 1e-2, "{v1} vs {reference}");
        let exact: f64 = x.as_vec().iter().map(|&v| v as f64).sum();
        assert!((v1 as f64 - exact).abs() < 1e-2, "{v1} vs {exact}");
        assert!(g1.iter().all(|&d| d == 3.0));
    }
}
