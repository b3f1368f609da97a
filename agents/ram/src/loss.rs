//! The hybrid loss: the classifier's cross-entropy, REINFORCE for the locations with the learned
//! baseline subtracted, and the baseline's squared error to the reward.
//!
//! With reward `R = 1` for a correct class (else 0), advantage `A_t = R − b_t` (data) and
//! Gaussian policy `π(l | μ) = N(l; μ, σ² I)`, the REINFORCE term is
//! `−(1/B) Σ_b Σ_t A_bt log π(l_bt | μ_bt)`, whose gradient with respect to the mean is
//! `−A (l − μ) / (σ² B)`. The three terms train disjoint parameters (see [`crate::model`]), so
//! with Adam their relative weights hardly matter; they are added with weight 1.

use crate::model::{Episode, RamTape, CLASSES};
use dfdx::prelude::*;

/// The loss of one batch and the figures logged about it.
pub struct HybridLoss<T> {
    /// Cross-entropy + REINFORCE + baseline squared error, on the tape.
    pub total: Tensor<(), f32, Cpu, T>,
    /// Figures of the batch.
    pub stats: BatchStats,
}

/// Figures of one batch, summed over its images (divide by [`BatchStats::images`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// Images.
    pub images: usize,
    /// Correct classifications (the summed reward).
    pub correct: usize,
    /// Summed cross-entropy, nats.
    pub cross_entropy: f64,
    /// Summed baseline prediction (over images, averaged over the steps).
    pub baseline: f64,
    /// Summed squared error of the baseline (over images, averaged over the steps).
    pub baseline_error: f64,
    /// Sum and sum of squares over images of each image's REINFORCE term
    /// `Σ_t A_t log π(l_t)` (full log-densities), for its variance over images.
    pub reinforce_sum: f64,
    /// See [`BatchStats::reinforce_sum`].
    pub reinforce_sq: f64,
}

impl BatchStats {
    /// Adds another batch's figures.
    pub fn add(&mut self, o: &BatchStats) {
        self.images += o.images;
        self.correct += o.correct;
        self.cross_entropy += o.cross_entropy;
        self.baseline += o.baseline;
        self.baseline_error += o.baseline_error;
        self.reinforce_sum += o.reinforce_sum;
        self.reinforce_sq += o.reinforce_sq;
    }

    /// The variance over images of the per-image REINFORCE term.
    pub fn reinforce_variance(&self) -> f64 {
        let n = self.images.max(1) as f64;
        let mean = self.reinforce_sum / n;
        (self.reinforce_sq / n - mean * mean).max(0.0)
    }
}

/// The class with the largest log-probability in each row of `log_probs` (`batch × 10`).
pub fn predictions(log_probs: &[f32]) -> Vec<u8> {
    let best = |row: &[f32]| (0..CLASSES).fold(0, |b, k| if row[k] > row[b] { k } else { b }) as u8;
    log_probs.chunks_exact(CLASSES).map(best).collect()
}

/// The hybrid loss of `episode` for `labels`, with policy standard deviation `std`.
pub fn hybrid_loss<T: RamTape>(episode: Episode<T>, labels: &[u8], std: f32, dev: &Cpu) -> HybridLoss<T> {
    let batch = labels.len();
    let Episode { log_probs, means, drawn, baselines, .. } = episode;
    assert_eq!(log_probs.shape().0, batch, "one label per image");
    let lp = log_probs.as_vec();
    let reward: Vec<f32> = predictions(&lp).iter().zip(labels).map(|(p, y)| f32::from(p == y)).collect();
    let mut one_hot = vec![0.0f32; batch * CLASSES];
    for (i, &y) in labels.iter().enumerate() {
        one_hot[i * CLASSES + y as usize] = 1.0;
    }
    let ce_sum: f64 = lp.chunks_exact(CLASSES).zip(labels).map(|(row, &y)| -row[y as usize] as f64).sum();
    let one_hot = dev.tensor_from_vec(one_hot, (batch, Const::<CLASSES>));
    let mut total = (log_probs * one_hot).sum::<Rank0, _>() * (-1.0 / batch as f32);

    let mut stats = BatchStats {
        images: batch,
        correct: reward.iter().filter(|&&r| r == 1.0).count(),
        cross_entropy: ce_sum,
        ..Default::default()
    };
    let steps = means.len();
    if steps > 0 {
        let log_norm = 2.0 * (std as f64 * (2.0 * std::f64::consts::PI).sqrt()).ln();
        let mut per_image = vec![0.0f64; batch];
        for ((mean, drawn), baseline) in means.into_iter().zip(drawn).zip(baselines) {
            let b = baseline.as_vec();
            let mu = mean.as_vec();
            let advantage: Vec<f32> = reward.iter().zip(&b).map(|(r, b)| r - b).collect();
            for i in 0..batch {
                let sq = (drawn[2 * i] - mu[2 * i]).powi(2) + (drawn[2 * i + 1] - mu[2 * i + 1]).powi(2);
                let log_pi = -(sq as f64) / (2.0 * (std as f64).powi(2)) - log_norm;
                per_image[i] += advantage[i] as f64 * log_pi;
                stats.baseline += b[i] as f64 / steps as f64;
                stats.baseline_error += (b[i] as f64 - reward[i] as f64).powi(2) / steps as f64;
            }
            // −(1/B) Σ A log π = (1/(2σ²B)) Σ A |l − μ|² + const.
            let a2: Vec<f32> = advantage.iter().flat_map(|&a| [a, a]).collect();
            let a2 = dev.tensor_from_vec(a2, (batch, Const::<2>));
            let l = dev.tensor_from_vec(drawn, (batch, Const::<2>));
            let reinforce = ((mean - l).square() * a2).sum::<Rank0, _>() * (1.0 / (2.0 * std * std * batch as f32));
            let r = dev.tensor_from_vec(reward.clone(), (batch, Const::<1>));
            let mse = (baseline - r).square().sum::<Rank0, _>() * (1.0 / (batch * steps) as f32);
            total = total + reinforce + mse;
        }
        stats.reinforce_sum = per_image.iter().sum();
        stats.reinforce_sq = per_image.iter().map(|v| v * v).sum();
    }
    HybridLoss { total, stats }
}
