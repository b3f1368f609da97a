//! What glimpse's generative models share: seeded random streams, latent noise, and the sample
//! files every model writes with `--sample RUN --num N --out FILE.npy` (`uint8 [N, H, W]`, plus a
//! PNG grid beside it), so that one evaluation scores them all.

use dfdx::prelude::{Const, Cpu, NoneTape, Tensor, TensorFromVec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::StandardNormal;
use std::path::{Path, PathBuf};

/// The ChaCha12 generator of stream `stream` for `seed`: each random part of a run (training
/// noise, evaluation noise, samples) draws from its own stream, so adding draws to one never
/// shifts another.
///
/// ```
/// use rand::Rng;
/// let (mut a, mut b) = (glimpse::generative::stream(7, 1), glimpse::generative::stream(7, 2));
/// assert_ne!(a.gen::<u64>(), b.gen::<u64>());
/// ```
pub fn stream(seed: u64, stream: u64) -> ChaCha12Rng {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `rows` x `Z` standard normal values drawn from `rng`, as a batch of latent vectors.
pub fn standard_normal<const Z: usize>(
    rng: &mut impl Rng,
    rows: usize,
    dev: &Cpu,
) -> Tensor<(usize, Const<Z>), f32, Cpu, NoneTape> {
    let values: Vec<f32> = (0..rows * Z).map(|_| rng.sample(StandardNormal)).collect();
    dev.tensor_from_vec(values, (rows, Const::<Z>))
}

/// Values in [0, 1] as grey levels 0..=255 (rounded; NaN becomes 0).
pub fn grey_levels(values: &[f32]) -> Vec<u8> {
    values.iter().map(|&v| if v.is_nan() { 0 } else { (v.clamp(0.0, 1.0) * 255.0).round() as u8 }).collect()
}

/// The median of `values` (NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `--sample RUN --num N --out FILE.npy` flags every generative model's command line has
/// (flattened into its clap arguments).
#[derive(clap::Args, Debug, Clone)]
pub struct SampleArgs {
    /// Draw --num new images (seeded by --seed) from the checkpoint in this run directory, write
    /// them to --out (uint8 [N, 28, 28] .npy) with a PNG grid of the first 100 beside it, then exit.
    #[arg(long, conflicts_with_all = ["run_dir", "resume", "eval", "stop_after"])]
    pub sample: Option<PathBuf>,
    /// Images to draw with --sample [default: 64].
    #[arg(long, requires = "sample")]
    pub num: Option<usize>,
    /// The .npy file --sample writes (the PNG grid goes beside it, same name, .png)
    /// [default: RUN/samples-seed{SEED}.npy].
    #[arg(long, requires = "sample")]
    pub out: Option<PathBuf>,
}

impl SampleArgs {
    /// The images `--sample` draws: `--num`, 64 by default.
    pub fn count(&self) -> usize {
        self.num.unwrap_or(64)
    }

    /// Refuses `--num` or `--out` without `--sample` (clap lets them through beside `--run-dir`,
    /// which `--sample` conflicts with).
    pub fn check(&self) -> Result<(), String> {
        match (&self.sample, self.num, &self.out) {
            (None, Some(_), _) => Err("--num needs --sample RUN".into()),
            (None, _, Some(_)) => Err("--out needs --sample RUN".into()),
            _ => Ok(()),
        }
    }
}

/// Checks `--num` and `--out` of a `--sample` command before anything is drawn, for images of
/// `pixels` values (each kept as an f32 and a grey level while writing); returns the `.npy` path,
/// by default `RUN/samples-seed{seed}.npy`.
pub fn sample_path(
    num: usize,
    out: Option<PathBuf>,
    run_dir: &Path,
    seed: u64,
    pixels: usize,
) -> Result<PathBuf, String> {
    if num == 0 {
        return Err("--num must be at least 1".into());
    }
    crate::limits::check_memory("--num", num as u128, (pixels * 5) as u128)?;
    let out = out.unwrap_or_else(|| run_dir.join(format!("samples-seed{seed}.npy")));
    if out.extension().is_none_or(|e| e != "npy") {
        return Err(format!("--out {} must name a .npy file", out.display()));
    }
    Ok(out)
}

/// Writes `images` (`n` images of `side` x `side` values in [0, 1], one after another) to `out`
/// as `uint8 [n, side, side]`, and a 10×10 grid of the first 100 beside it (same name, `.png`;
/// one digit per column for a class-conditional model drawing the classes in turn); returns the
/// PNG's path.
#[cfg(feature = "png")]
pub fn write_samples(out: &Path, images: &[f32], side: usize) -> Result<PathBuf, SampleError> {
    let n = images.len() / (side * side).max(1);
    crate::data::npy::write_npy_u8(out, &[n, side, side], &grey_levels(images))?;
    let png = out.with_extension("png");
    let shown = n.min(100);
    crate::image::Image::grid(&images[..shown * side * side], shown, 1, side, side, 10)?.save_png(&png)?;
    Ok(png)
}

/// The labels file of the samples file `samples` (`X.npy` gives `X-labels.npy`): the class each
/// image was drawn for, `uint8 [N]`, which a class-conditional model writes beside its samples and
/// `mnist_score` reads to report how many images show the class asked for.
pub fn labels_path(samples: &Path) -> PathBuf {
    let stem = samples.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    samples.with_file_name(format!("{stem}-labels.npy"))
}

/// Writes `labels` (each below 256) as `uint8 [N]` to [`labels_path`] of `samples`; returns that
/// path.
pub fn write_labels(samples: &Path, labels: &[usize]) -> Result<PathBuf, SampleError> {
    let path = labels_path(samples);
    let bytes: Vec<u8> = labels.iter().map(|&l| u8::try_from(l).expect("a class below 256")).collect();
    crate::data::npy::write_npy_u8(&path, &[labels.len()], &bytes)?;
    Ok(path)
}

/// How one launch of a generative model's command line ended: `S` is its summary.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S> {
    /// The run ended with this summary.
    Finished(S),
    /// `--stop-after` stopped it; `--resume` continues it.
    Stopped,
    /// `--eval` printed this evaluation.
    Evaluated(serde_json::Value),
    /// `--sample` wrote these files.
    Sampled {
        /// The images, `uint8 [N, H, W]`.
        npy: PathBuf,
        /// The grid of the first 100.
        png: PathBuf,
    },
}

/// Writing sample files failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The `.npy` file.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The PNG grid.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_levels_round_and_clamp() {
        assert_eq!(grey_levels(&[0.0, 0.5, 1.0, -1.0, 2.0, f32::NAN, 0.002]), [0, 128, 255, 0, 255, 0, 1]);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn sample_flags_need_sample() {
        let args = |sample: Option<&str>, num, out: Option<&str>| SampleArgs {
            sample: sample.map(PathBuf::from),
            num,
            out: out.map(PathBuf::from),
        };
        assert_eq!(args(None, Some(5), None).check().unwrap_err(), "--num needs --sample RUN");
        assert_eq!(args(None, None, Some("a.npy")).check().unwrap_err(), "--out needs --sample RUN");
        assert_eq!(args(Some("run"), Some(5), Some("a.npy")).check(), Ok(()));
        assert_eq!(args(None, None, None).check(), Ok(()));
        assert_eq!(args(None, None, None).count(), 64);
    }

    #[test]
    fn sample_paths_are_checked() {
        let dir = Path::new("/tmp/run");
        assert_eq!(sample_path(5, None, dir, 3, 784).unwrap(), dir.join("samples-seed3.npy"));
        assert_eq!(sample_path(0, None, dir, 3, 784).unwrap_err(), "--num must be at least 1");
        assert!(sample_path(5, Some("a.png".into()), dir, 3, 784).unwrap_err().contains("must name a .npy"));
        assert!(sample_path(usize::MAX / 2, None, dir, 3, 784).unwrap_err().contains("--num"));
    }
}
