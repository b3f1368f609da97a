//! Q-networks as typed dfdx module tuples, generic over observation size `O`, action count `A`
//! and hidden width `H`.

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use glimpse::nn::{builders, Dense};

/// The plain Q-network architecture: `O -> H -> H -> A` with ReLUs.
pub type QNetwork<const O: usize, const A: usize, const H: usize> =
    (builders::Dense<O, H>, ReLU, builders::Dense<H, H>, ReLU, builders::Dense<H, A>);

/// The dueling architecture (Wang et al. 2016): a shared body, then a value head and an advantage
/// head combined as `Q = V + A - mean(A)`.
pub type DuelingQNetwork<const O: usize, const A: usize, const H: usize> =
    ((builders::Dense<O, H>, ReLU, builders::Dense<H, H>, ReLU), (builders::Dense<H, 1>, builders::Dense<H, A>));

/// A batch of observations.
pub type Obs<const O: usize, T = NoneTape> = Tensor<(usize, Const<O>), f32, Cpu, T>;
/// Q-values for a batch, one column per action.
pub type QValues<const A: usize, T = NoneTape> = Tensor<(usize, Const<A>), f32, Cpu, T>;

/// A module that maps a batch of observations to Q-values; implemented by the built
/// [`QNetwork`] and [`DuelingQNetwork`].
pub trait QFunction<const O: usize, const A: usize>:
    TensorCollection<f32, Cpu> + Clone + Send + Sync + 'static
{
    /// Builds a freshly initialised network on `dev`.
    fn build(dev: &Cpu) -> Self;
    /// Q-values of every action for each observation of the batch.
    fn q_values<T: Tape<f32, Cpu> + Merge<T>>(&self, obs: Obs<O, T>) -> QValues<A, T>;
}

/// The built [`QNetwork`] on the CPU: what an agent holds (`<QNetwork<O, A, H> as BuildOnDevice<..>>::Built`).
pub type MlpQ<const O: usize, const A: usize, const H: usize> =
    (Dense<O, H, f32, Cpu>, ReLU, Dense<H, H, f32, Cpu>, ReLU, Dense<H, A, f32, Cpu>);

impl<const O: usize, const A: usize, const H: usize> QFunction<O, A> for MlpQ<O, A, H> {
    fn build(dev: &Cpu) -> Self {
        dev.build_module::<QNetwork<O, A, H>, f32>()
    }
    fn q_values<T: Tape<f32, Cpu> + Merge<T>>(&self, obs: Obs<O, T>) -> QValues<A, T> {
        self.forward(obs)
    }
}

/// The built [`DuelingQNetwork`] on the CPU.
pub type DuelingQ<const O: usize, const A: usize, const H: usize> =
    ((Dense<O, H, f32, Cpu>, ReLU, Dense<H, H, f32, Cpu>, ReLU), (Dense<H, 1, f32, Cpu>, Dense<H, A, f32, Cpu>));

impl<const O: usize, const A: usize, const H: usize> QFunction<O, A> for DuelingQ<O, A, H> {
    fn build(dev: &Cpu) -> Self {
        dev.build_module::<DuelingQNetwork<O, A, H>, f32>()
    }
    fn q_values<T: Tape<f32, Cpu> + Merge<T>>(&self, obs: Obs<O, T>) -> QValues<A, T> {
        let batch = obs.shape().0;
        let h = self.0.forward(obs);
        // The hidden layer feeds two heads: one branch carries the tape, the other an empty one,
        // and the final sum merges them so both heads' gradients reach the body.
        let adv = self.1 .1.forward(h.with_empty_tape());
        let value = self.1 .0.forward(h).sum::<(usize,), Axis<1>>();
        let adv_mean = adv.with_empty_tape().mean::<(usize,), Axis<1>>();
        let centered = adv - adv_mean.broadcast_like(&(batch, Const::<A>));
        value.broadcast_like(&(batch, Const::<A>)) + centered
    }
}

/// Index of the largest value in each row of a row-major `[rows * A]` slice.
pub fn argmax_rows<const A: usize>(values: &[f32]) -> Vec<usize> {
    values
        .chunks_exact(A)
        .map(|row| row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Plain = MlpQ<3, 4, 16>;
    type Duel = DuelingQ<3, 4, 16>;

    #[test]
    fn dueling_combines_value_and_centered_advantage_and_trains_every_layer() {
        let dev = Cpu::seed_from_u64(0);
        let net = <Duel as QFunction<3, 4>>::build(&dev);
        let x: Obs<3> = dev.tensor_from_vec(vec![0.1, -0.2, 0.3, 1.0, 0.5, -1.0], (2, Const::<3>));
        let q = net.q_values(x.clone()).as_vec();
        let h = net.0.forward(x.clone());
        let v = net.1 .0.forward(h.clone()).as_vec();
        let a = net.1 .1.forward(h).as_vec();
        for r in 0..2 {
            let mean: f32 = a[4 * r..4 * r + 4].iter().sum::<f32>() / 4.0;
            for c in 0..4 {
                assert!((q[4 * r + c] - (v[r] + a[4 * r + c] - mean)).abs() < 1e-5);
            }
        }
        let grads = net.alloc_grads();
        let loss = net.q_values(x.trace(grads)).square().mean();
        let g = loss.backward();
        for w in [g.get(&net.0 .0.weight).as_vec(), g.get(&net.1 .0.weight).as_vec(), g.get(&net.1 .1.weight).as_vec()]
        {
            assert!(w.iter().any(|&v| v != 0.0));
        }
        let _ = <Plain as QFunction<3, 4>>::build(&dev);
    }

    #[test]
    fn argmax_picks_the_first_largest() {
        assert_eq!(argmax_rows::<3>(&[0.0, 2.0, 1.0, 5.0, 5.0, -1.0]), vec![1, 0]);
    }
}
