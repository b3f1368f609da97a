//! Scores of a set of MNIST images (generated or real) through the classifier of
//! [`crate::classifier`]: the Inception-style score of its class probabilities, the Fréchet
//! distance between its 128-d penultimate features and those of a reference set (the real test
//! set), and the histogram of its predicted classes.
//!
//! Every figure is computed in f64 from the classifier's f32 outputs. The matrix square root of
//! the Fréchet distance goes through a symmetric eigen-decomposition of our own (cyclic Jacobi,
//! [`symmetric_eigen`]): `Tr((S1 S2)^½)` is the sum of the square roots of the eigenvalues of the
//! symmetric positive semi-definite `S1^½ S2 S1^½`, which has the same eigenvalues as `S1 S2`.
//!
//! ```
//! use glimpse_eval::score::{frechet_distance, inception_score, FeatureStats};
//! // Ten confident predictions, one per class: the score is the number of classes.
//! let probs: Vec<[f32; 10]> = (0..10).map(|c| std::array::from_fn(|k| f32::from(k == c))).collect();
//! assert!((inception_score(&probs, 1).unwrap().mean - 10.0).abs() < 1e-9);
//! // Shifting every feature by 1 in each of 2 dimensions moves the means by sqrt(2).
//! let a = FeatureStats::of(&[0.0f32, 0.0, 1.0, 2.0, 3.0, 1.0], 2).unwrap();
//! let b = FeatureStats::of(&[1.0f32, 1.0, 2.0, 3.0, 4.0, 2.0], 2).unwrap();
//! assert!((frechet_distance(&a, &b).unwrap() - 2.0).abs() < 1e-9);
//! ```

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use glimpse::checkpoint;
use glimpse::data::npy::{read_npy, NpyData};
use glimpse::run::{holds_checkpoint, Launch, RunArgs, RunState, Setup, RUN_STATE};
use serde::Serialize;

use crate::classifier::{MnistCnn, MnistCnnModel};
use crate::train::{self, Config, MODEL_FILE};
use crate::EvalError;

/// Classes of MNIST.
pub const CLASSES: usize = 10;
/// Width of the classifier's penultimate layer, the features of the Fréchet distance.
pub const FEATURES: usize = 128;
/// Pixels of an MNIST image.
pub const PIXELS: usize = 28 * 28;
/// Splits of the Inception-style score, as in the usual implementation.
pub const DEFAULT_SPLITS: usize = 10;
/// Images per forward pass of [`classify`].
pub const BATCH: usize = 500;
/// Relative off-diagonal norm at which [`symmetric_eigen`] stops.
pub const JACOBI_TOLERANCE: f64 = 1e-12;
/// Sweeps after which [`symmetric_eigen`] gives up (it takes about 10 for d = 128).
const MAX_SWEEPS: usize = 100;

/// `Err(EvalError::Input(..))` with a formatted message.
macro_rules! bad {
    ($($arg:tt)*) => { Err(EvalError::Input(format!($($arg)*))) };
}

/// The Inception-style score over splits: the mean and the (population) standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InceptionScore {
    /// Mean over the splits of `exp(E_x[KL(p(y|x) || p(y))])`.
    pub mean: f64,
    /// Their standard deviation (denominator: the number of splits, numpy's default).
    pub std: f64,
    /// Number of splits.
    pub splits: usize,
}

/// `exp(E_x[KL(p(y|x) || p(y))])` of rows of class probabilities, computed on `splits` contiguous
/// splits (rows `i*N/splits .. (i+1)*N/splits`, so that every row counts), `p(y)` being the mean
/// of a split's rows; `0 ln 0` counts as 0. It ranges from 1 (every row the same) to the number of
/// classes (confident predictions spread evenly over them).
///
/// Errors: no rows, fewer rows than splits, zero splits, a value that is not finite or negative,
/// a row that does not sum to 1 (within 1e-3: logits instead of probabilities).
pub fn inception_score<const C: usize>(probs: &[[f32; C]], splits: usize) -> Result<InceptionScore, EvalError> {
    if probs.is_empty() {
        return bad!("no predictions to score");
    }
    if splits == 0 {
        return bad!("the Inception score needs at least 1 split");
    }
    if probs.len() < splits {
        return bad!("{} rows of predictions are fewer than the {splits} splits of the Inception score", probs.len());
    }
    for (i, row) in probs.iter().enumerate() {
        if let Some(&v) = row.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return bad!("row {i} of the predictions holds {v}, not a probability");
        }
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        if (sum - 1.0).abs() > 1e-3 {
            return bad!("row {i} of the predictions sums to {sum}, not 1 (probabilities are needed, not logits)");
        }
    }
    let n = probs.len();
    let scores: Vec<f64> = (0..splits)
        .map(|k| {
            let part = &probs[k * n / splits..(k + 1) * n / splits];
            let mut marginal = [0.0f64; C];
            for row in part {
                marginal.iter_mut().zip(row).for_each(|(m, &p)| *m += f64::from(p));
            }
            marginal.iter_mut().for_each(|m| *m /= part.len() as f64);
            let kl: f64 = part
                .iter()
                .map(|row| {
                    let terms = row.iter().zip(&marginal).filter(|(&p, _)| p > 0.0);
                    terms.map(|(&p, &m)| f64::from(p) * (f64::from(p).ln() - m.ln())).sum::<f64>()
                })
                .sum();
            (kl / part.len() as f64).exp()
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok(InceptionScore { mean, std: var.sqrt(), splits })
}

/// The mean and covariance of a set of feature rows, in f64: computed once for a reference set
/// (the real test images) and reused against every set of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Number of rows.
    pub count: usize,
    /// Features per row.
    pub dim: usize,
    /// Mean of each feature.
    pub mean: Vec<f64>,
    /// Covariance, `dim x dim`, row-major, with the `n - 1` denominator.
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of `rows` (`n x dim` values, row after row; f32 or f64).
    ///
    /// Errors: `dim` is 0, the length is not a multiple of `dim`, fewer than 2 rows, or a value
    /// that is not finite.
    pub fn of<T: Copy + Into<f64>>(rows: &[T], dim: usize) -> Result<Self, EvalError> {
        if dim == 0 {
            return bad!("features must have at least one dimension");
        }
        if !rows.len().is_multiple_of(dim) {
            return bad!("{} feature values are not rows of {dim}", rows.len());
        }
        let count = rows.len() / dim;
        if count < 2 {
            return bad!("a covariance needs at least 2 rows of features, got {count}");
        }
        if let Some(i) = rows.iter().position(|&v| !v.into().is_finite()) {
            return bad!("feature {} of row {} is {}", i % dim, i / dim, rows[i].into());
        }
        let mut mean = vec![0.0f64; dim];
        for row in rows.chunks_exact(dim) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v.into());
        }
        mean.iter_mut().for_each(|m| *m /= count as f64);
        // Two passes (centred products) for accuracy; the upper triangle, then mirrored.
        let (mut cov, mut centred) = (vec![0.0f64; dim * dim], vec![0.0f64; dim]);
        for row in rows.chunks_exact(dim) {
            centred.iter_mut().zip(row).zip(&mean).for_each(|((c, &v), m)| *c = v.into() - m);
            for (i, &ci) in centred.iter().enumerate() {
                let out = &mut cov[i * dim + i..(i + 1) * dim];
                out.iter_mut().zip(&centred[i..]).for_each(|(o, &cj)| *o += ci * cj);
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / (count - 1) as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Ok(Self { count, dim, mean, cov })
    }

    /// Checks that the fields agree with each other and hold finite values.
    fn check(&self, which: &str) -> Result<(), EvalError> {
        if self.dim == 0 || self.mean.len() != self.dim || self.cov.len() != self.dim * self.dim {
            return bad!(
                "{which} statistics are inconsistent: dim {}, {} means, {} covariance entries",
                self.dim,
                self.mean.len(),
                self.cov.len()
            );
        }
        if self.count < 2 {
            return bad!("{which} statistics come from {} rows; at least 2 are needed", self.count);
        }
        if self.mean.iter().chain(&self.cov).any(|v| !v.is_finite()) {
            return bad!("{which} statistics hold a value that is not finite");
        }
        Ok(())
    }
}

/// The Fréchet distance between Gaussians fitted to two feature sets:
/// `||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½)`.
///
/// `Tr((S1 S2)^½)` is computed as the sum of the square roots of the eigenvalues of the symmetric
/// `S1^½ S2 S1^½` (`S1^½` from the eigen-decomposition of `S1`); eigenvalues that rounding made
/// slightly negative count as 0, and so does a slightly negative total.
///
/// Errors: the two sets have different dimensions, inconsistent or non-finite statistics, or a
/// covariance with a clearly negative eigenvalue (not a covariance).
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64, EvalError> {
    a.check("the first set's")?;
    b.check("the second set's")?;
    if a.dim != b.dim {
        return bad!("the feature sets have {} and {} dimensions", a.dim, b.dim);
    }
    let d = a.dim;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();

    let e1 = symmetric_eigen(&a.cov, d)?;
    let roots = psd_roots(&e1.values, "the first set's covariance")?;
    // S1^½ = V diag(sqrt λ) Vᵀ.
    let mut root1 = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            root1[i * d + j] = (0..d).map(|k| e1.vectors[i * d + k] * roots[k] * e1.vectors[j * d + k]).sum();
        }
    }
    let mut m = matmul(&matmul(&root1, &b.cov, d), &root1, d);
    symmetrize(&mut m, d);
    let e2 = symmetric_eigen(&m, d)?;
    let trace_root: f64 = psd_roots(&e2.values, "S1^½ S2 S1^½")?.iter().sum();
    // A squared distance: below 0 only by rounding.
    Ok((mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * trace_root).max(0.0))
}

/// The square roots of eigenvalues of a positive semi-definite matrix, those that rounding made
/// negative (down to -1e-9 of the largest) taken as 0.
fn psd_roots(values: &[f64], what: &str) -> Result<Vec<f64>, EvalError> {
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if let Some(&v) = values.iter().find(|&&v| v < -1e-9 * largest) {
        return bad!("{what} has the eigenvalue {v} (largest {largest}): it is not positive semi-definite");
    }
    Ok(values.iter().map(|&v| v.max(0.0).sqrt()).collect())
}

/// `a b` of two `d x d` row-major matrices.
fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        let row = &mut out[i * d..(i + 1) * d];
        for k in 0..d {
            let aik = a[i * d + k];
            row.iter_mut().zip(&b[k * d..(k + 1) * d]).for_each(|(o, &bkj)| *o += aik * bkj);
        }
    }
    out
}

/// Replaces `m` by `(m + mᵀ) / 2`.
fn symmetrize(m: &mut [f64], d: usize) {
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = v;
            m[j * d + i] = v;
        }
    }
}

/// The eigen-decomposition `A = V diag(values) Vᵀ` of a symmetric matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetricEigen {
    /// The eigenvalues, ascending.
    pub values: Vec<f64>,
    /// `n x n`, row-major: column `k` is the unit eigenvector of `values[k]` (V is orthogonal).
    pub vectors: Vec<f64>,
    /// Jacobi sweeps it took.
    pub sweeps: usize,
}

/// Eigenvalues and eigenvectors of the symmetric `n x n` matrix `a` (row-major) by the cyclic
/// Jacobi method: sweeps of plane rotations, each zeroing one off-diagonal pair, until the
/// off-diagonal norm is at most [`JACOBI_TOLERANCE`] of the matrix's Frobenius norm. Accurate to
/// rounding for any symmetric matrix (repeated or zero eigenvalues included), O(n³) a sweep.
///
/// Errors: `a` is not `n x n`, holds a non-finite value, or is not symmetric (to 1e-10 of its
/// largest entry).
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<SymmetricEigen, EvalError> {
    if a.len() != n * n {
        return bad!("a {n} x {n} matrix needs {} values, got {}", n * n, a.len());
    }
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        return bad!("entry ({}, {}) of the matrix is {}", i / n, i % n, a[i]);
    }
    let largest = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..n {
        for j in i + 1..n {
            if (a[i * n + j] - a[j * n + i]).abs() > 1e-10 * largest {
                return bad!(
                    "the matrix is not symmetric: ({i}, {j}) is {}, ({j}, {i}) is {}",
                    a[i * n + j],
                    a[j * n + i]
                );
            }
        }
    }
    let mut m = a.to_vec();
    symmetrize(&mut m, n);
    let mut v: Vec<f64> = (0..n * n).map(|i| f64::from(i / n == i % n)).collect();
    let norm = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut sweeps = 0;
    loop {
        let off: f64 = (0..n * n).filter(|i| i / n != i % n).map(|i| m[i] * m[i]).sum::<f64>().sqrt();
        if off <= JACOBI_TOLERANCE * norm {
            break;
        }
        if sweeps == MAX_SWEEPS {
            return bad!("the Jacobi eigen-decomposition did not converge in {MAX_SWEEPS} sweeps (off-diagonal {off:e} of {norm:e})");
        }
        sweeps += 1;
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation by t = tan φ, the smaller root of t² + 2θt - 1 = 0, zeroes (p, q).
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + theta.hypot(1.0));
                let c = 1.0 / t.hypot(1.0);
                let s = t * c;
                for k in 0..n {
                    let (x, y) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * x - s * y;
                    m[k * n + q] = s * x + c * y;
                }
                for k in 0..n {
                    let (x, y) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * x - s * y;
                    m[q * n + k] = s * x + c * y;
                }
                m[p * n + q] = 0.0;
                m[q * n + p] = 0.0;
                for k in 0..n {
                    let (x, y) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * x - s * y;
                    v[k * n + q] = s * x + c * y;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[i * n + i].total_cmp(&m[j * n + j]));
    let values = order.iter().map(|&k| m[k * n + k]).collect();
    let mut vectors = vec![0.0; n * n];
    for (col, &k) in order.iter().enumerate() {
        for row in 0..n {
            vectors[row * n + col] = v[row * n + k];
        }
    }
    Ok(SymmetricEigen { values, vectors, sweeps })
}

/// How predictions spread over the classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassHistogram {
    /// Rows predicted as each class.
    pub counts: Vec<usize>,
    /// Their fractions of all rows.
    pub fractions: Vec<f64>,
    /// The largest `|fraction - 1/classes|`, in percentage points (the largest deviation from
    /// 10% for MNIST).
    pub max_deviation_points: f64,
}

/// The histogram of class `labels` over `classes` classes.
///
/// Errors: no labels, no classes, or a label not below `classes`.
pub fn class_histogram(labels: &[usize], classes: usize) -> Result<ClassHistogram, EvalError> {
    if labels.is_empty() || classes == 0 {
        return bad!("a class histogram needs labels and classes ({} labels, {classes} classes)", labels.len());
    }
    let mut counts = vec![0usize; classes];
    for (i, &label) in labels.iter().enumerate() {
        match counts.get_mut(label) {
            Some(c) => *c += 1,
            None => return bad!("label {i} is {label}, not below {classes}"),
        }
    }
    let fractions: Vec<f64> = counts.iter().map(|&c| c as f64 / labels.len() as f64).collect();
    let uniform = 1.0 / classes as f64;
    let max_deviation_points = fractions.iter().fold(0.0f64, |m, f| m.max(100.0 * (f - uniform).abs()));
    Ok(ClassHistogram { counts, fractions, max_deviation_points })
}

/// The most probable class of each row (the first of ties).
pub fn predicted_classes<const C: usize>(probs: &[[f32; C]]) -> Vec<usize> {
    probs.iter().map(|row| (0..C).fold(0, |best, c| if row[c] > row[best] { c } else { best })).collect()
}

/// 28x28 images, row after row: grey levels or values in [0, 1].
#[derive(Debug, Clone, Copy)]
pub enum Images<'a> {
    /// Grey levels (0 to 255), as MNIST's files and `uint8` samples hold them; the classifier
    /// sees `level / 255`, as in training.
    U8(&'a [u8]),
    /// Values in [0, 1].
    F32(&'a [f32]),
}

impl Images<'_> {
    /// Number of images.
    pub fn len(&self) -> usize {
        match self {
            Images::U8(p) => p.len() / PIXELS,
            Images::F32(p) => p.len() / PIXELS,
        }
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the values are whole images, and in [0, 1] when they are floats.
    fn check(&self) -> Result<(), EvalError> {
        let values = match self {
            Images::U8(p) => p.len(),
            Images::F32(p) => p.len(),
        };
        if !values.is_multiple_of(PIXELS) {
            return bad!("{values} pixel values are not whole 28x28 images");
        }
        if let Images::F32(p) = self {
            if let Some(i) = p.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return bad!(
                    "pixel {} of image {} is {}: float images must hold values in [0, 1]",
                    i % PIXELS,
                    i / PIXELS,
                    p[i]
                );
            }
        }
        Ok(())
    }

    /// Appends images `range` as classifier inputs to `out`.
    fn extend_inputs(&self, range: std::ops::Range<usize>, out: &mut Vec<f32>) {
        let pixels = range.start * PIXELS..range.end * PIXELS;
        match self {
            Images::U8(p) => out.extend(p[pixels].iter().map(|&v| v as f32 / 255.0)),
            Images::F32(p) => out.extend_from_slice(&p[pixels]),
        }
    }
}

/// The classifier's outputs for a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// Class probabilities (the softmax of the logits), one row per image.
    pub probs: Vec<[f32; CLASSES]>,
    /// The 128-d penultimate features, `n x 128` row after row.
    pub features: Vec<f32>,
}

/// The class probabilities and penultimate features of `images`, in batches of [`BATCH`]: the
/// convolutions run once, the features then go through the last layer (dropout does nothing
/// outside training), so the probabilities are those of the whole model. Call it on the rayon
/// pool that should do the work.
///
/// Errors: values that are not whole images, or floats outside [0, 1] (NaN included).
pub fn classify(model: &MnistCnnModel, images: Images<'_>, dev: &Cpu) -> Result<Classified, EvalError> {
    images.check()?;
    let n = images.len();
    let (mut probs, mut features) = (Vec::with_capacity(n), Vec::with_capacity(n * FEATURES));
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut inputs = Vec::with_capacity((end - start) * PIXELS);
        images.extend_inputs(start..end, &mut inputs);
        let x = dev.tensor_from_vec(inputs, (end - start, Const::<PIXELS>));
        let f = model.0.forward(x);
        features.extend_from_slice(&f.as_vec());
        let logits = model.2.forward(f).as_vec();
        probs.extend(logits.chunks_exact(CLASSES).map(softmax));
    }
    Ok(Classified { probs, features })
}

/// The softmax of one row of logits, in f64.
fn softmax(logits: &[f32]) -> [f32; CLASSES] {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let exps: [f64; CLASSES] = std::array::from_fn(|c| f64::from(logits[c] - max).exp());
    let sum: f64 = exps.iter().sum();
    std::array::from_fn(|c| (exps[c] / sum) as f32)
}

/// The figures of one set of images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// What was scored (a file name, or a real set).
    pub name: String,
    /// Number of images.
    pub count: usize,
    /// Inception-style score of the predictions.
    pub inception_score: InceptionScore,
    /// Fréchet distance of the features to the reference set's.
    pub frechet_distance: f64,
    /// The reference set of the Fréchet distance.
    pub fd_reference: String,
    /// The predicted classes.
    pub histogram: ClassHistogram,
    /// The fraction of the images classified as the class they were drawn for, when the samples
    /// come with a labels file (see [`read_labels`]).
    pub label_accuracy: Option<f64>,
}

impl Score {
    /// Scores `classified` against the `reference` features (named `reference_name`), the
    /// Inception-style score on `splits` splits.
    pub fn of(
        name: &str,
        classified: &Classified,
        reference: &FeatureStats,
        reference_name: &str,
        splits: usize,
    ) -> Result<Self, EvalError> {
        let count = classified.probs.len();
        if count < splits.max(2) {
            return bad!("{name} holds {count} images; scoring needs at least {} (one per split)", splits.max(2));
        }
        Ok(Self {
            name: name.to_string(),
            count,
            inception_score: inception_score(&classified.probs, splits)?,
            frechet_distance: frechet_distance(&FeatureStats::of(&classified.features, FEATURES)?, reference)?,
            fd_reference: reference_name.to_string(),
            histogram: class_histogram(&predicted_classes(&classified.probs), CLASSES)?,
            label_accuracy: None,
        })
    }

    /// The score with [`Score::label_accuracy`] for `labels`, the class each image of
    /// `classified` was drawn for (one per image).
    pub fn with_labels(mut self, classified: &Classified, labels: &[usize]) -> Result<Self, EvalError> {
        if labels.len() != classified.probs.len() {
            return bad!("{} labels for {} images", labels.len(), classified.probs.len());
        }
        let hits = predicted_classes(&classified.probs).iter().zip(labels).filter(|(p, l)| p == l).count();
        self.label_accuracy = Some(hits as f64 / labels.len().max(1) as f64);
        Ok(self)
    }
}

/// The labels file beside the samples file `samples` ([`glimpse::generative::labels_path`]:
/// `X-labels.npy`, written by class-conditional models), when there is one: the class each of its
/// `count` images was drawn for. Errors name the file: not a 1-d integer array of `count`
/// values, or a value that is not a class.
pub fn read_labels(samples: &Path, count: usize) -> Result<Option<Vec<usize>>, EvalError> {
    let path = glimpse::generative::labels_path(samples);
    if !path.exists() {
        return Ok(None);
    }
    let array = read_npy(&path)?;
    let bad = |message: String| EvalError::Samples { path: path.clone(), message };
    if array.shape != [count] {
        return Err(bad(format!("holds shape {:?}; expected one label per image, [{count}]", array.shape)));
    }
    let labels: Vec<i64> = match array.data {
        NpyData::U8(v) => v.into_iter().map(i64::from).collect(),
        NpyData::Int(v) => v,
        NpyData::F32(_) => return Err(bad("holds float32 values; expected integer class labels".into())),
    };
    match labels.iter().position(|&l| !(0..CLASSES as i64).contains(&l)) {
        Some(i) => Err(bad(format!("label {i} is {}, not a class 0 to {}", labels[i], CLASSES - 1))),
        None => Ok(Some(labels.into_iter().map(|l| l as usize).collect())),
    }
}

/// A set of images read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// `uint8 [N, 28, 28]`: grey levels.
    U8(Vec<u8>),
    /// `float32 [N, 28, 28]`: values in [0, 1].
    F32(Vec<f32>),
}

impl Samples {
    /// Reads `uint8 [N, 28, 28]` or `float32 [N, 28, 28]` (values in [0, 1]) images from a
    /// `.npy` file; any other shape or type, NaN, values outside [0, 1] or no image is an error
    /// naming the file.
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let array = read_npy(path)?;
        let bad = |message: String| EvalError::Samples { path: path.to_path_buf(), message };
        let kind = match &array.data {
            NpyData::U8(_) => "uint8",
            NpyData::F32(_) => "float32",
            NpyData::Int(_) => "integer (not uint8)",
        };
        let &[count, 28, 28] = array.shape.as_slice() else {
            return Err(bad(format!("holds {kind} of shape {:?}; expected [N, 28, 28] images", array.shape)));
        };
        if count == 0 {
            return Err(bad("holds no images (shape [0, 28, 28])".into()));
        }
        let samples = match array.data {
            NpyData::U8(v) => Samples::U8(v),
            NpyData::F32(v) => Samples::F32(v),
            NpyData::Int(_) => {
                return Err(bad(format!("holds {kind} values; expected uint8 (0 to 255) or float32 (0 to 1)")))
            }
        };
        samples.images().check().map_err(|e| bad(e.to_string()))?;
        Ok(samples)
    }

    /// The images.
    pub fn images(&self) -> Images<'_> {
        match self {
            Samples::U8(v) => Images::U8(v),
            Samples::F32(v) => Images::F32(v),
        }
    }
}

/// A trained classifier loaded from an `mnist_cnn` run directory.
pub struct Classifier {
    /// The network.
    pub model: MnistCnnModel,
    /// The run directory.
    pub dir: PathBuf,
    /// Epochs it was trained for.
    pub epochs: u64,
    /// Whether its run finished (else `--stop-after` stopped it).
    pub finished: bool,
    /// Its test accuracy, from the run's `summary.json` (`None` without one).
    pub test_accuracy: Option<f64>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("dir", &self.dir)
            .field("epochs", &self.epochs)
            .field("finished", &self.finished)
            .field("test_accuracy", &self.test_accuracy)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// Loads the last checkpoint of run directory `dir` (written by `mnist_cnn`, finished or
    /// not), as `mnist_cnn --eval` does; reads nothing else but its summary and writes nothing.
    pub fn load(dir: &Path, dev: &Cpu) -> Result<Self, EvalError> {
        let context = |e: EvalError| EvalError::Classifier { path: dir.to_path_buf(), message: e.to_string() };
        let eval = Setup::new(train::EXAMPLE, Config::default()).open(dir).map_err(|e| context(e.into()))?;
        let mut model = dev.build_module::<MnistCnn, f32>();
        checkpoint::load_weights(&mut model, &eval.snapshot.join(MODEL_FILE)).map_err(|e| context(e.into()))?;
        let state: RunState = checkpoint::load_json(&eval.snapshot.join(RUN_STATE)).map_err(|e| context(e.into()))?;
        let summary: Option<serde_json::Value> = checkpoint::load_json(&dir.join("summary.json")).ok();
        let test_accuracy = summary.and_then(|s| s["test_accuracy"].as_f64());
        Ok(Self { model, dir: dir.to_path_buf(), epochs: eval.done, finished: state.finished, test_accuracy })
    }

    /// [`load`](Classifier::load), training the classifier first when `dir` holds none: a new run
    /// of `config` with seed 1 when there is no checkpoint, else the stopped run continued (its
    /// saved config). Says what it does on stdout. Call it outside any rayon pool (training
    /// runs on its own, of `config.threads`).
    pub fn load_or_train(dir: &Path, config: &Config, dev: &Cpu) -> Result<Self, EvalError> {
        let setup = Setup::new(train::EXAMPLE, config.clone());
        let args = if !holds_checkpoint(dir) {
            println!(
                "no classifier in {}: training one there (mnist_cnn, seed 1; the same as `cargo run --release --example mnist_cnn -- --run-dir {}`)",
                dir.display(),
                dir.display()
            );
            RunArgs { seed: 1, run_dir: Some(dir.to_path_buf()), ..RunArgs::default() }
        } else {
            let classifier = Self::load(dir, dev)?;
            if classifier.finished {
                return Ok(classifier);
            }
            println!(
                "the classifier in {} is not fully trained ({} epochs): continuing its run",
                dir.display(),
                classifier.epochs
            );
            RunArgs { resume: Some(dir.to_path_buf()), ..RunArgs::default() }
        };
        match setup.launch(&args)? {
            Launch::Train(run) => {
                glimpse::nn::keep_freed_memory();
                let threads = run.config.threads;
                glimpse::nn::in_thread_pool(threads, move || train::train(run))
                    .map_err(|e| EvalError::Config(format!("cannot start the threads: {e}")))??;
            }
            Launch::Eval(_) => unreachable!("training arguments launch training"),
        }
        Self::load(dir, dev)
    }

    /// [`classify`] with this classifier.
    pub fn classify(&self, images: Images<'_>, dev: &Cpu) -> Result<Classified, EvalError> {
        classify(&self.model, images, dev)
    }
}
