//! The importance-weighted estimate of log p(x) (Burda, Grosse & Salakhutdinov, 2016).
//!
//! log p(x) ~ log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), with z_i ~ q(z|x). It is a lower bound that
//! tightens as k grows; with k = 5000 it is the figure papers report for binarised MNIST, in nats.

use crate::model::VaeModel;
use crate::PIXELS;
use dfdx::prelude::*;
use glimpse::data::ImageSet;
use glimpse::nn::bernoulli_nll_sum;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Rows decoded in one call: large enough for efficient matrix products, small enough for memory.
const ROWS_PER_CALL: usize = 1024;

/// Mean over the images of `set` of the k-sample importance-weighted estimate of log p(x), in nats.
///
/// Pixels are taken as 0/1 (grey level > 127), so pass a binarised set, e.g.
/// [`ImageSet::binarized_stochastic`]. `progress` is called with the number of images done.
pub fn iw_log_likelihood<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    set: &ImageSet,
    k: usize,
    seed: u64,
    dev: &Cpu,
    mut progress: impl FnMut(usize),
) -> f64 {
    assert!(k > 0, "at least one importance sample");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = 0.0;
    for i in 0..set.len() {
        let x: Vec<f32> = set.image(i).iter().map(|&p| f32::from(p > 127)).collect();
        total += image_log_likelihood(model, &x, k, &mut rng, dev);
        progress(i + 1);
    }
    total / set.len() as f64
}

/// The k-sample estimate for one binary image `x` (784 values in {0, 1}).
pub fn image_log_likelihood<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    x: &[f32],
    k: usize,
    rng: &mut StdRng,
    dev: &Cpu,
) -> f64 {
    let (mu, logvar) = model.encode(dev.tensor_from_vec(x.to_vec(), (1, Const::<PIXELS>)));
    let (mu, logvar) = (mu.as_vec(), logvar.as_vec());
    let std: Vec<f32> = logvar.iter().map(|lv| (0.5 * lv).exp()).collect();
    let half_sum_logvar: f64 = logvar.iter().map(|&lv| 0.5 * lv as f64).sum();
    let mut log_weights = Vec::with_capacity(k);
    let mut done = 0;
    while done < k {
        let rows = (k - done).min(ROWS_PER_CALL);
        let mut z = Vec::with_capacity(rows * Z);
        // log p(z) - log q(z|x) without the constants, which cancel: -|z|^2/2 + |eps|^2/2 + sum(logvar)/2.
        let mut log_prior_ratio = Vec::with_capacity(rows);
        for _ in 0..rows {
            let mut ratio = half_sum_logvar;
            for j in 0..Z {
                let eps: f32 = StandardNormal.sample(rng);
                let zj = mu[j] + std[j] * eps;
                ratio += 0.5 * (eps as f64).powi(2) - 0.5 * (zj as f64).powi(2);
                z.push(zj);
            }
            log_prior_ratio.push(ratio);
        }
        let logits = model.decode(dev.tensor_from_vec(z, (rows, Const::<Z>))).as_vec();
        let log_px: Vec<f64> = logits.par_chunks(PIXELS).map(|row| -bernoulli_nll_sum(row, x)).collect();
        log_weights.extend(log_px.iter().zip(log_prior_ratio).map(|(lp, ratio)| lp + ratio));
        done += rows;
    }
    log_mean_exp(&log_weights)
}

/// log((1/n) sum exp(v)), computed stably.
pub fn log_mean_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + (values.iter().map(|v| (v - max).exp()).sum::<f64>() / values.len() as f64).ln()
}
