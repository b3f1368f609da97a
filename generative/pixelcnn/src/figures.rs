//! The pictures of a run: samples drawn from the model and completions of test digits' bottom
//! halves, as PNG grids in the run directory and TensorBoard images.

use crate::model::PixelModel;
use crate::sample::{complete, sample, Method};
use crate::PixelError;
use glimpse::data::ImageSet;
use glimpse::image::Image;
use glimpse::log::SummaryWriter;
use std::path::Path;

/// Image side: MNIST is 28×28.
const SIDE: usize = 28;

/// Chunk of images per rayon task so that `n` images keep every thread busy.
pub fn chunk_for(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// `n` images drawn with the fast sampler from `seed`, values 0 or 1.
pub fn draw<M: PixelModel>(model: &M, n: usize, seed: u64) -> Vec<f32> {
    sample(&model.positions((SIDE, SIDE)), Method::Fast, n, seed, chunk_for(n))
}

/// A grid of 64 samples of `seed`, 8 per row.
pub fn samples_grid<M: PixelModel>(model: &M, seed: u64) -> Result<Image, PixelError> {
    Ok(Image::grid(&draw(model, 64, seed), 64, 1, SIDE, SIDE, 8)?)
}

/// For the first 12 images of the binary `test` set, one column each: the original, its top half
/// (the bottom grey), and three completions of the bottom half drawn from `seed`.
pub fn completion_grid<M: PixelModel>(model: &M, test: &ImageSet, seed: u64) -> Result<Image, PixelError> {
    let (cols, tries, pixels) = (12.min(test.len()), 3, SIDE * SIDE);
    let known = SIDE / 2 * SIDE;
    let originals: Vec<f32> = test.pixels()[..cols * pixels].iter().map(|&p| f32::from(p > 127)).collect();
    let given: Vec<f32> = (0..tries).flat_map(|_| originals.iter().copied()).collect();
    let positions = model.positions((SIDE, SIDE));
    let n = cols * tries;
    let completions = complete(&positions, Method::Fast, Some(&given), known, n, seed, chunk_for(n));
    let mut tiles = originals.clone();
    tiles.extend(
        originals
            .chunks(pixels)
            .flat_map(|o| o[..known].iter().copied().chain(std::iter::repeat_n(0.5, pixels - known))),
    );
    tiles.extend(completions);
    Ok(Image::grid(&tiles, tiles.len() / pixels, 1, SIDE, SIDE, cols)?)
}

/// Writes `samples.png` and `completions.png` into `dir` and both to TensorBoard at `step`.
pub fn write_figures<M: PixelModel>(
    model: &M,
    test: &ImageSet,
    seed: u64,
    dir: &Path,
    writer: &mut SummaryWriter,
    step: u64,
) -> Result<(), PixelError> {
    let samples = samples_grid(model, seed)?;
    let completions = completion_grid(model, test, seed)?;
    samples.save_png(&dir.join("samples.png"))?;
    completions.save_png(&dir.join("completions.png"))?;
    writer.image("samples", &samples, step)?;
    writer.image("completions", &completions, step)?;
    Ok(())
}
