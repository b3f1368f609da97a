//! Policy distributions on dfdx tensors: [`Categorical`] (from logits) and [`DiagGaussian`]
//! (mean + log-std), with sampling, differentiable log-probabilities and entropies, plus
//! [`GaussianHead`], a layer that outputs a mean and a learned state-independent log-std.
//!
//! Batches have a runtime batch dimension `B` and a compile-time action dimension `A`. The tape
//! `T` is `NoneTape` when acting and `OwnedTape` when computing a loss.
//!
//! Tape rule: a distribution owns one tape (that of the network output). Methods that return two
//! tensors (`log_prob_and_entropy`) put the tape on the first and an empty tape on the second,
//! so combine both into the loss or the network's gradient is lost.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// ln(2π).
const LN_2PI: f32 = 1.837_877_1;

/// A pair of per-row tensors `(B,)`: log-probabilities and entropies.
pub type LogProbEntropy<B, T> = (Tensor<(B,), f32, Cpu, T>, Tensor<(B,), f32, Cpu, T>);

/// A batch of categorical distributions over `A` actions, stored as normalised log-probabilities.
#[derive(Debug, Clone)]
pub struct Categorical<B: Dim, const A: usize, T> {
    /// Normalised log-probabilities, `(B, A)`.
    pub log_probs: Tensor<(B, Const<A>), f32, Cpu, T>,
}

impl<B: Dim, const A: usize, T: Tape<f32, Cpu> + Merge<T>> Categorical<B, A, T> {
    /// Builds the distribution from unnormalised logits (log-softmax over the last axis).
    pub fn from_logits(logits: Tensor<(B, Const<A>), f32, Cpu, T>) -> Self {
        Self { log_probs: logits.log_softmax::<Axis<1>>() }
    }

    /// Probabilities as rows of a flat vector `[B * A]` (untraced copy).
    pub fn probs(&self) -> Vec<f32> {
        self.log_probs.as_vec().into_iter().map(f32::exp).collect()
    }

    /// Draws one action per row with `rng` (inverse-CDF sampling, so seeded runs repeat).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<usize> {
        self.probs()
            .chunks(A)
            .map(|p| {
                let u: f32 = rng.gen();
                let mut acc = 0.0;
                for (a, &pa) in p.iter().enumerate() {
                    acc += pa;
                    if u < acc {
                        return a;
                    }
                }
                // Rounding left the total just under 1: take the last action with mass.
                p.iter().rposition(|&pa| pa > 0.0).unwrap_or(A - 1)
            })
            .collect()
    }

    /// The most probable action per row.
    pub fn mode(&self) -> Vec<usize> {
        self.log_probs
            .as_vec()
            .chunks(A)
            .map(|row| row.iter().enumerate().fold(0, |best, (a, &v)| if v > row[best] { a } else { best }))
            .collect()
    }

    /// Log-probabilities of `actions` (one per row), `(B,)`, carrying this distribution's tape.
    ///
    /// # Panics
    /// When `actions.len()` differs from the batch size or an action is `>= A`.
    pub fn log_prob(self, actions: &[usize]) -> Tensor<(B,), f32, Cpu, T> {
        let batch = self.log_probs.shape().0;
        assert_eq!(actions.len(), batch.size(), "one action per row");
        assert!(actions.iter().all(|&a| a < A), "action out of range");
        let idx = self.log_probs.device().tensor_from_vec(actions.to_vec(), (batch,));
        self.log_probs.select(idx)
    }

    /// Entropy `−Σ p log p` per row, `(B,)`, carrying this distribution's tape.
    pub fn entropy(self) -> Tensor<(B,), f32, Cpu, T> {
        let p = self.log_probs.with_empty_tape().exp();
        (self.log_probs * p).sum::<(B,), Axis<1>>().negate()
    }

    /// Both [`log_prob`](Self::log_prob) (with the tape) and [`entropy`](Self::entropy) (empty tape).
    pub fn log_prob_and_entropy(self, actions: &[usize]) -> LogProbEntropy<B, T> {
        let copy = Self { log_probs: self.log_probs.with_empty_tape() };
        (self.log_prob(actions), copy.entropy())
    }
}

/// A batch of diagonal Gaussians: per-row mean and log standard deviation, both `(B, A)`.
#[derive(Debug, Clone)]
pub struct DiagGaussian<B: Dim, const A: usize, T> {
    /// Means, `(B, A)`.
    pub mean: Tensor<(B, Const<A>), f32, Cpu, T>,
    /// Log standard deviations, `(B, A)`.
    pub log_std: Tensor<(B, Const<A>), f32, Cpu, T>,
}

impl<B: Dim, const A: usize, T: Tape<f32, Cpu> + Merge<T>> DiagGaussian<B, A, T> {
    /// A Gaussian from per-row means and log-stds.
    pub fn new(mean: Tensor<(B, Const<A>), f32, Cpu, T>, log_std: Tensor<(B, Const<A>), f32, Cpu, T>) -> Self {
        Self { mean, log_std }
    }

    /// Draws one action vector per row, flat `[B * A]`, with `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f32> {
        let mean = self.mean.as_vec();
        let log_std = self.log_std.as_vec();
        mean.iter()
            .zip(&log_std)
            .map(|(&m, &ls)| {
                let eps: f32 = StandardNormal.sample(rng);
                m + ls.exp() * eps
            })
            .collect()
    }

    /// The mean, flat `[B * A]` (the greedy action).
    pub fn mode(&self) -> Vec<f32> {
        self.mean.as_vec()
    }

    /// `Σ_j [−½((a_j − μ_j)/σ_j)² − log σ_j − ½ log 2π]` per row, `(B,)`, with this
    /// distribution's tape. `actions` is flat `[B * A]`.
    ///
    /// # Panics
    /// When `actions.len()` is not `B * A`.
    pub fn log_prob(self, actions: &[f32]) -> Tensor<(B,), f32, Cpu, T> {
        let shape = *self.mean.shape();
        assert_eq!(actions.len(), shape.num_elements(), "actions must be [B * A]");
        let a = self.mean.device().tensor_from_vec(actions.to_vec(), shape);
        let z = (self.mean - a) / self.log_std.with_empty_tape().exp();
        let per_dim = (z.square() * -0.5) - self.log_std - 0.5 * LN_2PI;
        per_dim.sum::<(B,), Axis<1>>()
    }

    /// Entropy `Σ_j (½ + ½ log 2π + log σ_j)` per row, `(B,)`, with this distribution's tape.
    pub fn entropy(self) -> Tensor<(B,), f32, Cpu, T> {
        (self.log_std + 0.5 * (1.0 + LN_2PI)).sum::<(B,), Axis<1>>()
    }

    /// Both [`log_prob`](Self::log_prob) (with the tape) and [`entropy`](Self::entropy) (empty tape).
    pub fn log_prob_and_entropy(self, actions: &[f32]) -> LogProbEntropy<B, T> {
        let copy = Self { mean: self.mean.with_empty_tape(), log_std: self.log_std.with_empty_tape() };
        (self.log_prob(actions), copy.entropy())
    }
}

/// Builder for [`GaussianHead`]: `I` inputs, `A` action dimensions.
pub mod builder {
    /// A linear mean layer plus a learned state-independent log-std (initialised to 0).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct GaussianHead<const I: usize, const A: usize>;
}

impl<const I: usize, const A: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::GaussianHead<I, A>
where
    GaussianHead<I, A, E, D>: BuildModule<D, E>,
{
    type Built = GaussianHead<I, A, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Outputs `(mean, log_std)` for a diagonal Gaussian policy: `mean = Linear(x)`, `log_std` a
/// learned vector broadcast over the batch.
#[derive(Debug, Clone)]
pub struct GaussianHead<const I: usize, const A: usize, E: Dtype, D: Device<E>> {
    /// The mean layer.
    pub mean: modules::Linear<I, A, E, D>,
    /// The log standard deviation, one per action dimension.
    pub log_std: Tensor<Rank1<A>, E, D>,
}

impl<const I: usize, const A: usize, D: Device<f32>> TensorCollection<f32, D> for GaussianHead<I, A, f32, D> {
    type To<E2: Dtype, D2: Device<E2>> = GaussianHead<I, A, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, f32, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("mean", |s| &s.mean, |s| &mut s.mean),
                Self::tensor("log_std", |s| &s.log_std, |s| &mut s.log_std, TensorOptions::reset_to_zeros()),
            ),
            |(mean, log_std)| GaussianHead { mean, log_std },
        )
    }
}

impl<B: Dim, const I: usize, const A: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, Const<I>), E, D, T>> for GaussianHead<I, A, E, D>
where
    modules::Linear<I, A, E, D>:
        Module<Tensor<(B, Const<I>), E, D, T>, Output = Tensor<(B, Const<A>), E, D, T>, Error = D::Err>,
{
    type Output = (Tensor<(B, Const<A>), E, D, T>, Tensor<(B, Const<A>), E, D, T>);
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        let mean = self.mean.try_forward(x)?;
        let shape = *mean.shape();
        let log_std = self.log_std.retaped::<T>().try_broadcast_like(&shape)?;
        Ok((mean, log_std))
    }
}

impl<const I: usize, const A: usize, E: Dtype, D: Device<E>> NonMutableModule for GaussianHead<I, A, E, D> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn categorical_matches_closed_form() {
        let dev = Cpu::default();
        let logits = [[1.0f32, 2.0, 0.5], [0.0, 0.0, 0.0]];
        let t: Tensor<(usize, Const<3>), f32, Cpu> = dev.tensor_from_vec(logits.concat(), (2, Const));
        let d = Categorical::from_logits(t);
        let (lp, ent) = d.clone().log_prob_and_entropy(&[1, 2]);
        let (lp, ent) = (lp.as_vec(), ent.as_vec());
        let mut expect_lp = vec![];
        let mut expect_ent = vec![];
        for (row, a) in logits.iter().zip([1, 2]) {
            let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            let p: Vec<f64> = row.iter().map(|&v| (v as f64).exp() / z).collect();
            expect_lp.push(p[a].ln());
            expect_ent.push(-p.iter().map(|q| q * q.ln()).sum::<f64>());
        }
        for i in 0..2 {
            assert!((lp[i] as f64 - expect_lp[i]).abs() < 1e-5, "{lp:?} {expect_lp:?}");
            assert!((ent[i] as f64 - expect_ent[i]).abs() < 1e-5, "{ent:?} {expect_ent:?}");
        }
        assert!((ent[1] as f64 - 3f64.ln()).abs() < 1e-6);
        assert_eq!(d.mode(), vec![1, 0]);
        // Sampling frequencies follow the probabilities.
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[d.sample(&mut rng)[0]] += 1;
        }
        let p1 = (2.0f64).exp() / (1f64.exp() + 2f64.exp() + 0.5f64.exp());
        assert!((counts[1] as f64 / 3000.0 - p1).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn gaussian_matches_closed_form() {
        let dev = Cpu::default();
        let mean: Tensor<(usize, Const<2>), f32, Cpu> = dev.tensor_from_vec(vec![0.5, -1.0, 2.0, 0.0], (2, Const));
        let log_std: Tensor<(usize, Const<2>), f32, Cpu> = dev.tensor_from_vec(vec![0.0, -0.5, 0.3, 1.0], (2, Const));
        let actions = [1.0f32, -1.2, 1.5, 3.0];
        let d = DiagGaussian::new(mean, log_std);
        let (lp, ent) = d.clone().log_prob_and_entropy(&actions);
        let (m, s) = ([0.5f64, -1.0, 2.0, 0.0], [0.0f64, -0.5, 0.3, 1.0]);
        for row in 0..2 {
            let mut elp = 0.0;
            let mut eent = 0.0;
            for j in 0..2 {
                let k = row * 2 + j;
                let sigma = s[k].exp();
                let x = actions[k] as f64;
                elp += -(x - m[k]).powi(2) / (2.0 * sigma * sigma) - (sigma * (2.0 * std::f64::consts::PI).sqrt()).ln();
                eent += 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * sigma * sigma).ln();
            }
            assert!((lp.as_vec()[row] as f64 - elp).abs() < 1e-5);
            assert!((ent.as_vec()[row] as f64 - eent).abs() < 1e-5);
        }
        // Sample mean and spread match.
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let xs: Vec<f32> = (0..4000).map(|_| d.sample(&mut rng)[3]).collect();
        let mu = xs.iter().sum::<f32>() / 4000.0;
        let sd = (xs.iter().map(|x| (x - mu).powi(2)).sum::<f32>() / 4000.0).sqrt();
        assert!(mu.abs() < 0.15 && (sd - 1f32.exp()).abs() < 0.1, "{mu} {sd}");
    }

    #[test]
    fn gaussian_head_gradients_reach_mean_and_log_std() {
        let dev = Cpu::default();
        let head = dev.build_module::<builder::GaussianHead<3, 2>, f32>();
        assert_eq!(head.log_std.array(), [0.0, 0.0]);
        let grads = head.alloc_grads();
        let x: Tensor<(usize, Const<3>), f32, Cpu> =
            dev.tensor_from_vec(vec![1.0, 2.0, 3.0, -1.0, 0.0, 1.0], (2, Const));
        let (mean, log_std) = head.forward(x.traced(grads));
        let (lp, ent) = DiagGaussian::new(mean, log_std).log_prob_and_entropy(&[0.0; 4]);
        let loss = (lp + ent).sum();
        let g = loss.backward();
        // d/dlog_std_j of Σ_rows (logp + entropy) = Σ_rows (z² − 1 + 1) = Σ_rows z², nonzero here.
        assert!(g.get(&head.log_std).array().iter().all(|v| v.abs() > 0.0));
        assert!(g.get(&head.mean.weight).as_vec().iter().any(|v| v.abs() > 0.0));
    }
}
