//! The VAE objective: reparameterisation, the closed-form KL to the prior, and the negative ELBO.

use crate::model::{Images, Latents, VaeModel};
use dfdx::prelude::*;
use glimpse::nn::bernoulli_nll_with_logits;

/// KL(q(z|x) || N(0, I)) for each row, in closed form: -1/2 sum(1 + logvar - mu^2 - exp(logvar)).
pub fn kl_divergence<const Z: usize, T: Tape<f32, Cpu>>(
    mu: Latents<Z, T>,
    logvar: Latents<Z, T>,
) -> Tensor<(usize,), f32, Cpu, T> {
    let lv = logvar.with_empty_tape();
    ((logvar.exp() - lv) + mu.square() - 1.0).sum::<(usize,), Axis<1>>() * 0.5
}

/// z = mu + exp(logvar / 2) * eps, with eps ~ N(0, I) given, so gradients reach mu and logvar.
pub fn reparameterize<const Z: usize, T: Tape<f32, Cpu>>(
    mu: Latents<Z, T>,
    logvar: Latents<Z, T>,
    eps: Latents<Z, NoneTape>,
) -> Latents<Z, T> {
    mu + (logvar * 0.5).exp() * eps
}

/// The negative ELBO summed over the batch, as PyTorch's example computes it: BCE(decoder(z), x) summed
/// over pixels and images, plus the closed-form KL summed over images. `eps` is the N(0, I) noise.
///
/// Divide by the number of images for the per-image figure the example reports.
pub fn negative_elbo<const Z: usize, M: VaeModel<Z>, T: Tape<f32, Cpu>>(
    model: &M,
    x: Images<T>,
    eps: Latents<Z, NoneTape>,
) -> Tensor<Rank0, f32, Cpu, T> {
    let target = x.retaped::<NoneTape>();
    let (mu, logvar) = model.encode(x);
    let kl = kl_divergence(mu.with_empty_tape(), logvar.with_empty_tape());
    let z = reparameterize(mu, logvar, eps);
    bernoulli_nll_with_logits(model.decode(z), &target) + kl.sum::<Rank0, _>()
}
