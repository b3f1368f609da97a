//! Dropout with a counter-based (hashed) random mask, drawn in parallel (`HashDropout`).

use dfdx::nn::{Module, ModuleMut, ZeroSizedModule};
use dfdx::prelude::*;
use rayon::prelude::*;

use super::kernels::{raw_grad, take_contiguous, NnFloat};

/// Zeroes each element with probability `1/N` while training (`forward_mut` on a traced tensor)
/// and scales the others by `N/(N-1)`; does nothing in `forward`. The same layer as dfdx's
/// `DropoutOneIn<N>`, with another random stream.
///
/// dfdx draws its mask with a ChaCha generator one element at a time, twice (forward and
/// backward), on one thread: 2 ms of every MNIST CNN step. Here element `i` is dropped when a
/// hash of `(seed, i)` (SplitMix64) falls in the lowest `1/N` of its range, so the mask is drawn
/// in parallel and recomputed by the backward pass without being stored. The seed comes from the
/// device's generator, so runs are reproducible.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashDropout<const N: usize>;

impl<const N: usize> ZeroSizedModule for HashDropout<N> {}

impl<const N: usize, S: Shape, E: Dtype, D: Device<E>> Module<Tensor<S, E, D, NoneTape>> for HashDropout<N> {
    type Output = Tensor<S, E, D, NoneTape>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<S, E, D, NoneTape>) -> Result<Self::Output, D::Err> {
        Ok(x)
    }
}

impl<const N: usize, S: Shape, E: NnFloat> ModuleMut<Tensor<S, E, Cpu, OwnedTape<E, Cpu>>> for HashDropout<N> {
    type Output = Tensor<S, E, Cpu, OwnedTape<E, Cpu>>;
    type Error = CpuError;

    fn try_forward_mut(&mut self, x: Tensor<S, E, Cpu, OwnedTape<E, Cpu>>) -> Result<Self::Output, CpuError> {
        assert!(N >= 2, "HashDropout<N> needs N >= 2 (N = 1 would drop everything)");
        let seed = x.device().random_u64();
        let (x, mut values) = take_contiguous(x)?;
        let (x, mut tape) = x.split_tape();
        apply_mask::<E, N>(seed, &mut values);
        let out = x.device().try_tensor_from_vec(values, *x.shape())?;
        let (x_g, out_g) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let (gout, dx) = (raw_grad!(grads, &out_g), raw_grad!(grads, &x_g));
            // SAFETY: distinct tensor ids; `grads` outlives this closure body.
            let (gout, dx) = unsafe { (gout.slice(), dx.slice()) };
            let scales = [E::zero(), E::from(N).unwrap() / E::from(N - 1).unwrap()];
            dx.par_chunks_mut(CHUNK).zip(gout.par_chunks(CHUNK)).enumerate().for_each(|(c, (d, g))| {
                for (i, (d, g)) in d.iter_mut().zip(g).enumerate() {
                    *d += *g * scales[!dropped::<N>(seed, (c * CHUNK + i) as u64) as usize];
                }
            });
            Ok(())
        });
        Ok(out.put_tape(tape))
    }
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Multiplies `v[i]` by 0 where element `i` is dropped (see [`dropped`]) and by `N/(N-1)` elsewhere.
fn apply_mask<E: NnFloat, const N: usize>(seed: u64, v: &mut [E]) {
    // Indexing instead of a branch, which would mispredict on every other dropped element.
    let scales = [E::zero(), E::from(N).unwrap() / E::from(N - 1).unwrap()];
    v.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        for (i, x) in chunk.iter_mut().enumerate() {
            *x *= scales[!dropped::<N>(seed, (c * CHUNK + i) as u64) as usize];
        }
    });
}

/// Whether element `i` is dropped: the top 32 bits of SplitMix64's output for `seed + i` fall
/// below `2^32 / N` (probability `1/N` within `2^-32`).
#[inline]
fn dropped<const N: usize>(seed: u64, i: u64) -> bool {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 32) < (1u64 << 32) / N as u64
}
