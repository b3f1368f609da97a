//! `mnist_score`'s command line (`examples/mnist_score.rs`): the scores of [`crate::score`] for
//! `.npy` files of generated digits, one table row each, beside the real data's ceiling, and
//! optionally as JSON.
//!
//! The features of the reference sets (the 10,000 test images, the first 10,000 training images)
//! are computed once per invocation and reused for every file. The classifier is an `mnist_cnn`
//! run directory; one that holds no checkpoint gets one trained there first (default settings,
//! seed 1), so that every later call reuses it.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use dfdx::prelude::*;
use glimpse::data::{Dataset, Mnist};
use serde::Serialize;

use crate::score::{
    classify, read_labels, Classifier, FeatureStats, Images, Samples, Score, CLASSES, DEFAULT_SPLITS, FEATURES,
};
use crate::train::Config;
use crate::EvalError;

/// The program's name.
pub const PROGRAM: &str = "mnist_score";
/// Where the classifier lives unless `--classifier` says otherwise.
pub const DEFAULT_CLASSIFIER: &str = "runs/mnist-classifier";
/// Training images whose features the test set's are compared with for the real-data ceiling:
/// as many as a usual set of samples, since the Fréchet distance of a finite set is biased
/// upwards by an amount that depends on its size.
pub const CEILING_TRAIN_IMAGES: usize = 10_000;

/// Scores `.npy` files of generated MNIST digits (Inception-style score, Fréchet distance to the
/// test set, class histogram) beside the real test set's figures.
#[derive(Parser, Debug, Clone)]
#[command(name = PROGRAM, long_about = None)]
pub struct Args {
    /// `.npy` files of images: uint8 [N, 28, 28], or float32 [N, 28, 28] with values in [0, 1].
    pub samples: Vec<PathBuf>,
    /// Run directory of the classifier (written by mnist_cnn); one holding no checkpoint gets one
    /// trained there first (mnist_cnn's defaults, seed 1).
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    pub classifier: PathBuf,
    /// Also write every figure to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Contiguous splits of the Inception-style score (its mean and std are over them).
    #[arg(long, default_value_t = DEFAULT_SPLITS)]
    pub splits: usize,
    /// Worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Directory holding the MNIST IDX files [default: $MNIST_DIR, else ../shared/data/mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The classifier the scores come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassifierInfo {
    /// Its run directory.
    pub dir: PathBuf,
    /// Epochs it was trained for.
    pub epochs: u64,
    /// Its test accuracy (from the run's summary).
    pub test_accuracy: Option<f64>,
}

/// Everything `mnist_score` measured (what `--json` writes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The classifier.
    pub classifier: ClassifierInfo,
    /// The ceiling: the real test set's Inception-style score and histogram, and the Fréchet
    /// distance between its features and those of the first [`CEILING_TRAIN_IMAGES`] training
    /// images.
    pub real: Score,
    /// One score per file, in the order given; the Fréchet distance is to the test set.
    pub samples: Vec<Score>,
}

/// Parses the process's command line (`--help` and flag errors exit, as clap does) and scores.
pub fn run_command_line() -> Result<Report, EvalError> {
    run(Args::parse())
}

/// [`run_command_line`] on `args` (the first is the program name); a flag error is returned.
pub fn run_with_args(args: &[&str]) -> Result<Report, EvalError> {
    let flags = |e: clap::Error| EvalError::Config(e.to_string().trim().to_string());
    let matches = Args::command().try_get_matches_from(args).map_err(flags)?;
    run(Args::from_arg_matches(&matches).map_err(flags)?)
}

/// Reads every file (so that a bad one fails before anything long), gets the classifier, scores
/// the real data and each file, prints the table and writes the JSON.
pub fn run(args: Args) -> Result<Report, EvalError> {
    if args.splits == 0 {
        return Err(EvalError::Config("splits must be at least 1".into()));
    }
    if let Some(threads) = args.threads {
        glimpse::limits::check_threads("threads", threads).map_err(EvalError::Config)?;
    }
    let mut files = Vec::with_capacity(args.samples.len());
    for path in &args.samples {
        let samples = Samples::read(path)?;
        let count = samples.images().len();
        if count < args.splits.max(2) {
            let message = format!(
                "holds {count} images; the Inception score over {} splits needs at least {}",
                args.splits,
                args.splits.max(2)
            );
            return Err(EvalError::Samples { path: path.clone(), message });
        }
        let labels = read_labels(path, count)?;
        files.push((path.display().to_string(), samples, labels));
    }

    let dev = Cpu::default();
    let config = Config { data_dir: args.data_dir.clone(), threads: args.threads, ..Config::default() };
    let classifier = Classifier::load_or_train(&args.classifier, &config, &dev)?;
    let mnist = Mnist::load_with(Dataset::Mnist, args.data_dir.as_deref(), false)?;
    let info = ClassifierInfo {
        dir: classifier.dir.clone(),
        epochs: classifier.epochs,
        test_accuracy: classifier.test_accuracy,
    };
    let accuracy = info.test_accuracy.map_or(String::new(), |a| format!(", test accuracy {:.2}%", 100.0 * a));
    let unfinished = if classifier.finished { "" } else { ", an unfinished run" };
    println!("classifier {}: {} epochs{accuracy}{unfinished}", info.dir.display(), info.epochs);

    let names: Vec<&str> = files.iter().map(|(name, _, _)| name.as_str()).collect();
    let table = Table::new(&names, args.splits);
    let train_images = CEILING_TRAIN_IMAGES.min(mnist.train.len());
    let ceiling_reference = format!("the first {train_images} MNIST training images");
    let test_reference = format!("the {} MNIST test images", mnist.test.len());
    glimpse::nn::keep_freed_memory();
    let pool = glimpse::nn::in_thread_pool(args.threads, || -> Result<_, EvalError> {
        let test = classifier.classify(Images::U8(mnist.test.pixels()), &dev)?;
        let test_stats = FeatureStats::of(&test.features, FEATURES)?;
        let train = classify(&classifier.model, Images::U8(mnist.train.take(train_images).pixels()), &dev)?;
        let train_stats = FeatureStats::of(&train.features, FEATURES)?;
        let real = Score::of(REAL, &test, &train_stats, &ceiling_reference, args.splits)?;
        table.header();
        table.row(&real, true);
        let mut scores = Vec::with_capacity(files.len());
        for (name, samples, labels) in &files {
            let classified = classifier.classify(samples.images(), &dev)?;
            let mut score = Score::of(name, &classified, &test_stats, &test_reference, args.splits)?;
            if let Some(labels) = labels {
                score = score.with_labels(&classified, labels)?;
            }
            table.row(&score, false);
            scores.push(score);
        }
        Ok((real, scores))
    });
    let (real, samples) = pool.map_err(|e| EvalError::Config(format!("cannot start the threads: {e}")))??;
    println!("columns 0-9: % of the set classified as each digit; max dev: the largest distance from 10%, in points");
    println!("label acc: % classified as the class drawn (from FILE-labels.npy beside the samples, when present)");
    println!(
        "FD: to the test images' features; * the real-data ceiling: the test images, their FD to {ceiling_reference}"
    );

    let report = Report { classifier: info, real, samples };
    if let Some(path) = &args.json {
        let text = serde_json::to_vec_pretty(&report).map_err(|e| EvalError::Config(e.to_string()))?;
        let io = |source| glimpse::data::DataError::Io { path: path.clone(), source };
        glimpse::checkpoint::write_atomic(path, &text).map_err(io)?;
        println!("wrote {}", path.display());
    }
    Ok(report)
}

/// The name of the real-data row.
const REAL: &str = "MNIST test (real)";

/// Column widths of the printed table.
struct Table {
    name: usize,
    splits: usize,
}

impl Table {
    fn new(names: &[&str], splits: usize) -> Self {
        let name = names.iter().map(|n| n.chars().count()).chain([REAL.len() + 1]).max().unwrap_or(0);
        Self { name, splits }
    }

    fn header(&self) {
        let is = format!("IS ({} splits)", self.splits);
        let classes: Vec<String> = (0..CLASSES).map(|c| format!("{c:>6}")).collect();
        println!(
            "{:<w$} {:>6}  {is:<16} {:>9} {:>8} {} {:>10}",
            "set",
            "N",
            "FD",
            "max dev",
            classes.join(""),
            "label acc",
            w = self.name
        );
    }

    fn row(&self, score: &Score, ceiling: bool) {
        let name = if ceiling { format!("{}*", score.name) } else { score.name.clone() };
        let is = format!("{:.3} ± {:.3}", score.inception_score.mean, score.inception_score.std);
        let classes: Vec<String> = score.histogram.fractions.iter().map(|f| format!("{:>6.1}", 100.0 * f)).collect();
        let accuracy = score.label_accuracy.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
        println!(
            "{name:<w$} {:>6}  {is:<16} {:>9.3} {:>8.2} {} {accuracy:>10}",
            score.count,
            score.frechet_distance,
            score.histogram.max_deviation_points,
            classes.join(""),
            w = self.name
        );
    }
}
