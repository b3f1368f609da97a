//! MNIST and Fashion-MNIST: where the files are, what their checksums are, and loading them.
//!
//! The directory is, in order: the one passed explicitly (an example's `--data-dir`), the data set's
//! environment variable (`MNIST_DIR` or `FASHION_MNIST_DIR`), or `<workspace root>/../shared/data/<name>`.
//! Missing files are downloaded from the public mirrors when allowed, the machine is online and
//! glimpse is built with its `download` feature (on by default).

use super::idx::{read_idx_images, read_idx_labels, IdxImages};
use super::DataError;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// Side of an MNIST image in pixels.
pub const SIDE: usize = 28;
/// Pixels in one MNIST image (28 * 28).
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes an [`ImageSet`] label may name (labels are 0 to 9).
pub const CLASSES: usize = 10;

/// Which of the two MNIST-format data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// Handwritten digits (LeCun, Cortes, Burges).
    Mnist,
    /// Zalando's clothing images in the same format.
    FashionMnist,
}

/// Training or test part of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}

/// One of the four files of a data set: its name and the md5 of its uncompressed bytes.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// File name without `.gz`.
    pub name: &'static str,
    /// md5 of the uncompressed file.
    pub md5: &'static str,
}

impl Dataset {
    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST",
            Dataset::FashionMnist => "Fashion-MNIST",
        }
    }

    /// Environment variable naming the directory that holds the files.
    pub fn env_var(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST_DIR",
            Dataset::FashionMnist => "FASHION_MNIST_DIR",
        }
    }

    /// `<workspace root>/../shared/data/<mnist|fashion-mnist>`, the development and CI location.
    pub fn default_dir(self) -> PathBuf {
        let folder = match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join("data").join(folder)
    }

    /// The explicit directory if given, else the environment variable, else [`Dataset::default_dir`].
    pub fn resolve_dir(self, explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(dir) => dir.to_path_buf(),
            None => std::env::var_os(self.env_var()).map(PathBuf::from).unwrap_or_else(|| self.default_dir()),
        }
    }

    /// Public mirrors serving the gzipped files (file name + `.gz` appended).
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            Dataset::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            Dataset::FashionMnist => &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        }
    }

    /// The (images, labels) files of a split.
    pub fn files(self, split: Split) -> (FileSpec, FileSpec) {
        let f = |name, md5| FileSpec { name, md5 };
        match (self, split) {
            (Dataset::Mnist, Split::Train) => (
                f("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
                f("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
            ),
            (Dataset::Mnist, Split::Test) => (
                f("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
                f("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
            ),
            (Dataset::FashionMnist, Split::Train) => (
                f("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
                f("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
            ),
            (Dataset::FashionMnist, Split::Test) => (
                f("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
                f("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
            ),
        }
    }
}

/// A set of grey images of one size (`height x width`, 28x28 for MNIST) with their class
/// labels, kept as bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    height: usize,
    width: usize,
}

impl ImageSet {
    /// Builds a set of `height x width` images from `n * height * width` grey levels (row-major,
    /// image after image) and `n` labels, each below [`CLASSES`].
    pub fn new(height: usize, width: usize, pixels: Vec<u8>, labels: Vec<u8>) -> Result<Self, DataError> {
        if height == 0 || width == 0 {
            return Err(DataError::Inconsistent(format!("images of {height}x{width} pixels")));
        }
        let expected = labels.len().checked_mul(height).and_then(|n| n.checked_mul(width));
        if expected != Some(pixels.len()) {
            let expected = expected.map_or("more than usize::MAX".to_string(), |n| n.to_string());
            return Err(DataError::Inconsistent(format!(
                "{} pixels for {} labels of {height}x{width} images (expected {expected} pixels)",
                pixels.len(),
                labels.len(),
            )));
        }
        if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| usize::from(l) >= CLASSES) {
            return Err(DataError::Inconsistent(format!(
                "label {label} of image {i} is not a class (expected 0 to {})",
                CLASSES - 1
            )));
        }
        Ok(Self { pixels, labels, height, width })
    }

    /// Builds a set from images read from an IDX file (any size) and their labels.
    pub fn from_idx(images: IdxImages, labels: Vec<u8>) -> Result<Self, DataError> {
        if images.count != labels.len() {
            return Err(DataError::Inconsistent(format!("{} images for {} labels", images.count, labels.len())));
        }
        Self::new(images.rows, images.cols, images.pixels, labels)
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Pixels in one image (`height * width`).
    pub fn image_len(&self) -> usize {
        self.height * self.width
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set has no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The grey levels of image `i`, row-major (`height * width` of them).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The label of image `i`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// All grey levels, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The first `n` images (all of them when `n` exceeds the length).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet { pixels: self.pixels[..n * self.image_len()].to_vec(), labels: self.labels[..n].to_vec(), ..*self }
    }

    /// A copy binarised once with a seeded draw: each pixel becomes 255 with probability grey/255, else 0.
    ///
    /// This is the usual fixed "stochastically binarised MNIST" test set for log-likelihood figures.
    pub fn binarized_stochastic(&self, seed: u64) -> ImageSet {
        let mut rng = StdRng::seed_from_u64(seed);
        let pixels = self.pixels.iter().map(|&p| if rng.gen::<f32>() < p as f32 / 255.0 { 255 } else { 0 }).collect();
        ImageSet { pixels, labels: self.labels.clone(), ..*self }
    }
}

/// The training and test sets of MNIST or Fashion-MNIST.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The 60,000 training images.
    pub train: ImageSet,
    /// The 10,000 test images.
    pub test: ImageSet,
    /// The directory the files were read from.
    pub dir: PathBuf,
}

impl Mnist {
    /// Loads both splits, downloading missing files when online (see the module doc for the directory).
    pub fn load(dataset: Dataset, dir: Option<&Path>) -> Result<Self, DataError> {
        Self::load_with(dataset, dir, true)
    }

    /// Loads both splits; `download` allows fetching missing files from the mirrors (with the
    /// `download` feature; without it a missing file is an error saying the feature is off).
    pub fn load_with(dataset: Dataset, dir: Option<&Path>, download: bool) -> Result<Self, DataError> {
        let dir = dataset.resolve_dir(dir);
        let train = load_split(dataset, &dir, Split::Train, download)?;
        let test = load_split(dataset, &dir, Split::Test, download)?;
        Ok(Self { train, test, dir })
    }
}

/// Loads one split from `dir`, verifying checksums; `download` allows fetching missing files.
pub fn load_split(dataset: Dataset, dir: &Path, split: Split, download: bool) -> Result<ImageSet, DataError> {
    if !dir.is_dir() && !download {
        return Err(DataError::MissingDir { path: dir.to_path_buf(), var: dataset.env_var(), dataset: dataset.name() });
    }
    let (images_spec, labels_spec) = dataset.files(split);
    let images_path = locate(dataset, dir, images_spec, download)?;
    let labels_path = locate(dataset, dir, labels_spec, download)?;
    let images = read_idx_images(&images_path, Some(images_spec.md5))?;
    let labels = read_idx_labels(&labels_path, Some(labels_spec.md5))?;
    if images.rows != SIDE || images.cols != SIDE || images.count != labels.len() {
        return Err(DataError::Inconsistent(format!(
            "{} holds {} images of {}x{}, {} holds {} labels (expected 28x28 and equal counts)",
            images_path.display(),
            images.count,
            images.rows,
            images.cols,
            labels_path.display(),
            labels.len()
        )));
    }
    ImageSet::from_idx(images, labels)
}

/// Finds `spec` in `dir` as a raw or `.gz` file, downloading it when absent and allowed.
fn locate(dataset: Dataset, dir: &Path, spec: FileSpec, download: bool) -> Result<PathBuf, DataError> {
    let raw = dir.join(spec.name);
    let gz = dir.join(format!("{}.gz", spec.name));
    if raw.is_file() {
        return Ok(raw);
    }
    if gz.is_file() {
        return Ok(gz);
    }
    if !download {
        return Err(missing_file(dataset, dir, spec, "downloads disabled".into()));
    }
    download_from_mirrors(dataset, dir, spec, &gz)
}

/// The error for a file that is neither in `dir` nor could be fetched, and why.
fn missing_file(dataset: Dataset, dir: &Path, spec: FileSpec, reason: String) -> DataError {
    DataError::MissingFile { path: dir.join(spec.name), var: dataset.env_var(), dataset: dataset.name(), reason }
}

/// Without the `download` feature nothing is fetched: the error says so.
#[cfg(not(feature = "download"))]
fn download_from_mirrors(dataset: Dataset, dir: &Path, spec: FileSpec, _gz: &Path) -> Result<PathBuf, DataError> {
    let reason = "glimpse was built without its `download` feature, so it cannot fetch the file".into();
    Err(missing_file(dataset, dir, spec, reason))
}

/// Fetches `spec` into `gz` from the first mirror that serves it with the right checksum.
#[cfg(feature = "download")]
fn download_from_mirrors(dataset: Dataset, dir: &Path, spec: FileSpec, gz: &Path) -> Result<PathBuf, DataError> {
    let mut failures = Vec::new();
    for mirror in dataset.mirrors() {
        let url = format!("{mirror}{}.gz", spec.name);
        match fetch_verified(&url, gz, spec.md5) {
            Ok(bytes) => {
                std::fs::create_dir_all(dir)
                    .and_then(|_| write_atomic(gz, &bytes))
                    .map_err(|source| DataError::Io { path: gz.to_path_buf(), source })?;
                return Ok(gz.to_path_buf());
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(missing_file(dataset, dir, spec, failures.join("; ")))
}

/// Downloads a gzipped IDX file and checks the md5 of its uncompressed content; returns the gzip bytes.
#[cfg(feature = "download")]
fn fetch_verified(url: &str, target: &Path, md5: &str) -> Result<Vec<u8>, DataError> {
    const MAX_BYTES: u64 = 64 << 20;
    use std::io::Read;
    let download_err = |message: String| DataError::Download { url: url.to_string(), message };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(300))
        .build();
    let response = agent.get(url).call().map_err(|e| download_err(e.to_string()))?;
    let mut bytes = Vec::new();
    response.into_reader().take(MAX_BYTES).read_to_end(&mut bytes).map_err(|e| download_err(e.to_string()))?;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut raw)
        .map_err(|e| download_err(format!("not a valid gzip file: {e}")))?;
    let found = super::idx::md5_hex(&raw);
    if found != md5 {
        return Err(DataError::Checksum { path: target.to_path_buf(), expected: md5.to_string(), found });
    }
    Ok(bytes)
}

/// Writes a file through a temporary file and a rename, so readers never see half of it.
#[cfg(feature = "download")]
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_that_is_not_a_class_is_refused() {
        let err = ImageSet::new(2, 2, vec![0; 12], vec![3, 12, 1]).unwrap_err();
        assert_eq!(err.to_string(), "inconsistent data: label 12 of image 1 is not a class (expected 0 to 9)");
        assert!(ImageSet::new(2, 2, vec![0; 12], vec![3, 9, 0]).is_ok());
        // A pixel count whose product overflows is an error, not a panic.
        let err = ImageSet::new(usize::MAX, 2, vec![], vec![0]).unwrap_err();
        assert!(err.to_string().contains("more than usize::MAX"), "{err}");
    }

    #[test]
    fn one_hot_does_not_panic_on_a_hand_made_label() {
        use crate::data::{Loader, View};
        let dev: dfdx::prelude::Cpu = Default::default();
        let set = ImageSet::new(1, 1, vec![0, 255], vec![9, 0]).unwrap();
        let mut batch = Loader::sequential(2, View::Grey).epoch::<1>(&set, &dev).next().unwrap();
        assert_eq!(batch.try_one_hot(&dev).unwrap().as_vec()[9], 1.0);
        batch.labels[1] = 12;
        assert!(batch.one_hot(&dev).as_vec()[10..].iter().all(|&v| v == 0.0));
        let err = batch.try_one_hot(&dev).unwrap_err();
        assert!(err.to_string().contains("label 12 of batch row 1"), "{err}");
    }
}
