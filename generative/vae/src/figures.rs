//! What a trained VAE shows: reconstructions, prior samples (as PNG grids, or `uint8` images for
//! a `.npy` file) and, for a 2-D latent space, the decoder's manifold.

use crate::model::{Images, VaeModel};
use crate::train::{stream, Stream};
use crate::{VaeError, PIXELS};
use dfdx::prelude::*;
use glimpse::data::ImageSet;
use glimpse::generative::standard_normal;
use glimpse::image::Image;
use glimpse::log::SummaryWriter;
use std::path::Path;

/// Latent vectors decoded in one call when sampling many images.
const ROWS_PER_CALL: usize = 1024;

/// Bernoulli means of the reconstructions of `x` (decoding the posterior mean), `(n, 784)` row-major.
pub fn reconstruct<const Z: usize, M: VaeModel<Z>>(model: &M, x: Images<NoneTape>) -> Vec<f32> {
    let (mu, _) = model.encode(x);
    model.decode(mu).sigmoid().as_vec()
}

/// Bernoulli means of `n` images decoded from prior samples z ~ N(0, I), drawn from
/// [`Stream::Samples`] of `seed` (the same seed gives the same images), `(n, 784)` row-major.
pub fn sample<const Z: usize, M: VaeModel<Z>>(model: &M, n: usize, seed: u64, dev: &Cpu) -> Vec<f32> {
    let mut rng = stream(seed, Stream::Samples);
    let mut out = Vec::with_capacity(n * PIXELS);
    while out.len() < n * PIXELS {
        let rows = (n - out.len() / PIXELS).min(ROWS_PER_CALL);
        out.extend(model.decode(standard_normal::<Z>(&mut rng, rows, dev)).sigmoid().as_vec());
    }
    out
}

/// For a 2-D latent space (None otherwise): the decoder's images over a `side x side` grid of z in
/// [-2.5, 2.5]^2, z0 growing to the right and z1 growing upwards, as in Kingma & Welling's figure.
pub fn latent_manifold<const Z: usize, M: VaeModel<Z>>(model: &M, side: usize, dev: &Cpu) -> Option<Vec<f32>> {
    if Z != 2 || side < 2 {
        return None;
    }
    let at = |i: usize| -2.5 + 5.0 * i as f32 / (side - 1) as f32;
    let z: Vec<f32> = (0..side * side).flat_map(|k| [at(k % side), at(side - 1 - k / side)]).collect();
    Some(model.decode(dev.tensor_from_vec(z, (side * side, Const::<Z>))).sigmoid().as_vec())
}

/// The manifold of a 2-D latent space as a 20 x 20 grid image (None for other latent sizes).
pub fn manifold_grid<const Z: usize, M: VaeModel<Z>>(model: &M, dev: &Cpu) -> Result<Option<Image>, VaeError> {
    match latent_manifold(model, 20, dev) {
        Some(images) => Ok(Some(Image::grid(&images, 400, 1, 28, 28, 20)?)),
        None => Ok(None),
    }
}

/// Test images beside their reconstructions: rows alternate originals and reconstructions, 8 pairs a row pair.
pub fn reconstruction_grid<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    test: &ImageSet,
    pairs: usize,
    dev: &Cpu,
) -> Result<Image, VaeError> {
    let (cols, n) = (8, pairs.min(test.len()));
    let originals: Vec<f32> = test.pixels()[..n * PIXELS].iter().map(|&p| p as f32 / 255.0).collect();
    let recon = reconstruct(model, dev.tensor_from_vec(originals.clone(), (n, Const::<PIXELS>)));
    let mut tiles = Vec::with_capacity(2 * n * PIXELS);
    for start in (0..n).step_by(cols) {
        let end = (start + cols).min(n);
        tiles.extend_from_slice(&originals[start * PIXELS..end * PIXELS]);
        tiles.extend(std::iter::repeat_n(0.0, (cols - (end - start)) * PIXELS));
        tiles.extend_from_slice(&recon[start * PIXELS..end * PIXELS]);
        tiles.extend(std::iter::repeat_n(0.0, (cols - (end - start)) * PIXELS));
    }
    Ok(Image::grid(&tiles, tiles.len() / PIXELS, 1, 28, 28, cols)?)
}

/// Writes the PNG grids (reconstructions, 64 samples of `seed`, and the manifold for a 2-D
/// latent) into `dir` and to TensorBoard at `step`.
pub fn write_figures<const Z: usize, M: VaeModel<Z>>(
    model: &M,
    test: &ImageSet,
    seed: u64,
    dev: &Cpu,
    dir: &Path,
    writer: &mut SummaryWriter,
    step: u64,
) -> Result<(), VaeError> {
    let recon = reconstruction_grid(model, test, 32, dev)?;
    let samples = Image::grid(&sample(model, 64, seed, dev), 64, 1, 28, 28, 8)?;
    recon.save_png(&dir.join("reconstructions.png"))?;
    samples.save_png(&dir.join("samples.png"))?;
    let manifold = manifold_grid(model, dev)?;
    if let Some(m) = &manifold {
        m.save_png(&dir.join("manifold.png"))?;
    }
    writer.image("reconstructions", &recon, step)?;
    writer.image("samples", &samples, step)?;
    if let Some(m) = &manifold {
        writer.image("manifold", m, step)?;
    }
    Ok(())
}
