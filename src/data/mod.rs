//! Image data sets for the generative models and classifiers: MNIST and Fashion-MNIST.
//!
//! - [`idx`]: the IDX file format (raw or gzipped), with structural checks and md5 verification.
//! - [`mnist`]: locating, downloading and loading the two data sets ([`Mnist::load`]), and
//!   [`ImageSet`], a labelled set of grey images of any one size.
//! - [`batches`]: a seeded shuffling batch iterator that yields dfdx tensors, with grey-level and
//!   binarised views ([`Loader`], [`View`]).
//! - [`augment`]: random translations ([`augment::random_shift`]).
//! - [`npy`]: NumPy's `.npy` files ([`npy::write_npy_u8`] for generated images, [`npy::read_npy`]).
//!
//! ```no_run
//! use glimpse::data::{Dataset, Loader, Mnist, View};
//! let mnist = Mnist::load(Dataset::Mnist, None).unwrap();
//! let dev: dfdx::prelude::Cpu = Default::default();
//! let mut loader = Loader::new(128, View::Grey, 0);
//! for batch in loader.epoch::<784>(&mnist.train, &dev) {
//!     let _x = batch.images; // Tensor<(usize, Const<784>), f32, Cpu>
//! }
//! ```

pub mod augment;
pub mod batches;
pub mod idx;
pub mod mnist;
pub mod npy;

pub use batches::{Batch, Loader, View};
pub use idx::{read_idx_images, read_idx_labels, IdxImages};
pub use mnist::{Dataset, ImageSet, Mnist, Split};

use std::path::PathBuf;

/// Errors from reading or locating data files; every bad input ends here rather than in a panic.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The data directory does not exist.
    #[error("data directory {path} does not exist; set {var} to a directory holding the {dataset} IDX files")]
    MissingDir { path: PathBuf, var: &'static str, dataset: &'static str },
    /// A file is absent and could not be downloaded.
    #[error("{path} not found (neither raw nor .gz) and could not be downloaded ({reason}); set {var} to a directory holding the {dataset} IDX files")]
    MissingFile { path: PathBuf, var: &'static str, dataset: &'static str, reason: String },
    /// An I/O error while reading a file.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// An I/O error while writing a file (a missing directory, a full disk, no permission).
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// A file ends before the size its header announces.
    #[error("{path} is truncated: expected {expected} bytes, found {found}")]
    Truncated { path: PathBuf, expected: usize, found: usize },
    /// A gzip stream ends early.
    #[error("{path} is truncated: its gzip stream ends after {found} uncompressed bytes")]
    TruncatedGzip { path: PathBuf, found: usize },
    /// Downloading a file failed (offline machine, mirror down, or bad content).
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },
    /// The gzip stream is corrupt.
    #[error("{path} is not a valid gzip stream: {message}")]
    BadGzip { path: PathBuf, message: String },
    /// The IDX magic number is not the one expected for this kind of file.
    #[error("{path} has magic number {found:#010x}, expected {expected:#010x} ({what})")]
    BadMagic { path: PathBuf, expected: u32, found: u32, what: &'static str },
    /// The file is longer than its header announces.
    #[error("{path} has {found} bytes or more, but its header announces {expected}")]
    TrailingBytes { path: PathBuf, expected: usize, found: usize },
    /// The md5 of the uncompressed file differs from the known one.
    #[error("{path}: md5 of the uncompressed data is {found}, expected {expected} (corrupt or wrong file)")]
    Checksum { path: PathBuf, expected: String, found: String },
    /// A `.npy` file is malformed or holds an unsupported type, or an array to write does not
    /// match its shape.
    #[error("{path}: {message}")]
    Npy { path: PathBuf, message: String },
    /// A file announces (or holds) more data than may be read: over the cap or the memory available.
    #[error("{path} is too large: {message}")]
    TooLarge { path: PathBuf, message: String },
    /// Images and labels do not match, or images have an unexpected size.
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
}
