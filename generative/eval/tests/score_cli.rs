//! `mnist_score`'s command line, through the library function the example calls
//! (`glimpse_eval::cli::run_with_args`): bad files are one-line errors before any classifier is
//! trained; a classifier directory without a checkpoint gets one trained, a stopped one is
//! continued; and with a classifier trained one short epoch the real test digits written to
//! `.npy` score as the real-data row does (IS > 8, every class within 3 points of 10%), the same
//! as `uint8` and as `float32`.

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use glimpse::data::npy::write_npy_u8;
use glimpse::data::{Dataset, Mnist};
use glimpse_eval::cli::{run_with_args, Report};
use glimpse_eval::score::Classifier;
use glimpse_eval::train::Config;

fn temp(name: &str) -> PathBuf {
    let dir = glimpse::testing::scratch_dir("mnist-score", name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes a version 1.0 `.npy` file of `descr` values (`data`, already in bytes) and `shape`.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    std::fs::write(path, glimpse::data::npy::encode_npy(descr, shape, data)).unwrap();
}

fn write_f32(path: &Path, shape: &[usize], values: &[f32]) {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(path, "<f4", shape, &data);
}

fn score(args: &[&str]) -> Result<Report, glimpse_eval::EvalError> {
    let mut all = vec!["mnist_score"];
    all.extend_from_slice(args);
    run_with_args(&all)
}

#[test]
fn bad_files_are_one_line_errors_before_any_training() {
    let dir = temp("bad");
    let classifier = dir.join("classifier");
    let file = |name: &str| dir.join(name);
    write_npy_u8(&file("flat.npy"), &[20, 784], &vec![0; 20 * 784]).unwrap();
    write_npy_u8(&file("few.npy"), &[5, 28, 28], &vec![0; 5 * 784]).unwrap();
    write_npy_u8(&file("none.npy"), &[0, 28, 28], &[]).unwrap();
    write_npy(&file("i16.npy"), "<i2", &[10, 28, 28], &vec![0; 2 * 10 * 784]);
    let mut floats = vec![0.5f32; 12 * 784];
    floats[3 * 784 + 17] = f32::NAN;
    write_f32(&file("nan.npy"), &[12, 28, 28], &floats);
    floats[3 * 784 + 17] = -1.0;
    write_f32(&file("tanh.npy"), &[12, 28, 28], &floats);
    write_f32(&file("f32-4d.npy"), &[12, 1, 28, 28], &vec![0.0; 12 * 784]);
    std::fs::write(file("text.npy"), "not numpy").unwrap();
    // Good images with bad labels files beside them.
    for name in ["short", "class10", "float"] {
        write_npy_u8(&file(&format!("{name}.npy")), &[12, 28, 28], &vec![0; 12 * 784]).unwrap();
    }
    write_npy_u8(&file("short-labels.npy"), &[11], &[0; 11]).unwrap();
    let mut labels = [3u8; 12];
    labels[7] = 10;
    write_npy_u8(&file("class10-labels.npy"), &[12], &labels).unwrap();
    write_f32(&file("float-labels.npy"), &[12], &[1.0; 12]);
    let cases: [(&str, &[&str]); 13] = [
        ("missing.npy", &["cannot read", "missing.npy"]),
        ("flat.npy", &["flat.npy: holds uint8 of shape [20, 784]; expected [N, 28, 28] images"]),
        ("few.npy", &["few.npy: holds 5 images; the Inception score over 10 splits needs at least 10"]),
        ("none.npy", &["none.npy: holds no images"]),
        ("i16.npy", &["i16.npy: holds integer (not uint8) values; expected uint8 (0 to 255) or float32 (0 to 1)"]),
        ("nan.npy", &["nan.npy: pixel 17 of image 3 is NaN"]),
        ("tanh.npy", &["tanh.npy: pixel 17 of image 3 is -1: float images must hold values in [0, 1]"]),
        ("f32-4d.npy", &["holds float32 of shape [12, 1, 28, 28]"]),
        ("text.npy", &["text.npy: not a .npy file"]),
        ("short.npy", &["short-labels.npy: holds shape [11]; expected one label per image, [12]"]),
        ("class10.npy", &["class10-labels.npy: label 7 is 10, not a class 0 to 9"]),
        ("float.npy", &["float-labels.npy: holds float32 values; expected integer class labels"]),
        ("", &[]),
    ];
    for (name, messages) in cases.iter().filter(|(n, _)| !n.is_empty()) {
        let path = file(name);
        let err = score(&["--classifier", s(&classifier), s(&path)]).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{name}: not one line: {err}");
        for m in *messages {
            assert!(err.contains(m), "{name}: {err:?} should say {m:?}");
        }
        assert!(!classifier.exists(), "{name}: a classifier was trained before the files were checked");
    }
    let err = score(&["--splits", "0"]).unwrap_err().to_string();
    assert!(err.contains("splits must be at least 1"), "{err}");
    let err = score(&["--classifer", "x"]).unwrap_err().to_string();
    assert!(err.contains("unexpected argument '--classifer'"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn real_test_digits_score_as_the_real_data_row() {
    let mnist = match Mnist::load_with(Dataset::Mnist, None, false) {
        Ok(m) => m,
        Err(e) => return eprintln!("skipping: {e}"),
    };
    let dir = temp("real");
    let classifier = dir.join("classifier");
    // One epoch on 12,000 images without augmentation: about 96% test accuracy in a few seconds.
    let config = Config { epochs: 1, train_images: 12_000, learning_rate: 2e-3, max_shift: 0, ..Config::default() };
    let dev = Cpu::default();
    let trained = Classifier::load_or_train(&classifier, &config, &dev).unwrap();
    assert!(trained.finished && trained.epochs == 1);
    let accuracy = trained.test_accuracy.unwrap();
    assert!(accuracy > 0.9, "test accuracy {accuracy}");

    let (all, u8_part, f32_part, json) =
        (dir.join("test.npy"), dir.join("part-u8.npy"), dir.join("part-f32.npy"), dir.join("scores.json"));
    let part = 1000;
    write_npy_u8(&all, &[10_000, 28, 28], mnist.test.pixels()).unwrap();
    write_npy_u8(&u8_part, &[part, 28, 28], &mnist.test.pixels()[..part * 784]).unwrap();
    let floats: Vec<f32> = mnist.test.pixels()[..part * 784].iter().map(|&p| p as f32 / 255.0).collect();
    write_f32(&f32_part, &[part, 28, 28], &floats);
    // Labels beside two of the files: the true ones for the whole set, wrong ones (each the next
    // class) for the uint8 part.
    let labels = mnist.test.labels();
    glimpse::generative::write_labels(&all, &labels.iter().map(|&l| l as usize).collect::<Vec<_>>()).unwrap();
    let wrong: Vec<usize> = labels[..part].iter().map(|&l| (l as usize + 1) % 10).collect();
    glimpse::generative::write_labels(&u8_part, &wrong).unwrap();
    let snapshots = glimpse::run::snapshot_files(&classifier).unwrap();
    let report =
        score(&["--classifier", s(&classifier), s(&all), s(&u8_part), s(&f32_part), "--json", s(&json)]).unwrap();
    assert_eq!(
        glimpse::run::snapshot_files(&classifier).unwrap(),
        snapshots,
        "the classifier is reused, not retrained"
    );
    assert_eq!((report.classifier.epochs, report.classifier.test_accuracy), (1, Some(accuracy)));

    let real = &report.real;
    assert_eq!(real.count, 10_000);
    assert!(real.inception_score.mean > 8.0, "IS of real digits {:?}", real.inception_score);
    assert!(real.histogram.max_deviation_points < 3.0, "{:?}", real.histogram);
    assert!(real.frechet_distance > 0.0 && real.frechet_distance.is_finite());
    assert!(real.fd_reference.contains("first 10000 MNIST training images"), "{}", real.fd_reference);
    // The whole test set as a file of samples: the real row's figures, and FD 0 to itself.
    let [whole, u8s, f32s] = &report.samples[..] else { panic!("{} rows", report.samples.len()) };
    assert_eq!(
        (whole.count, &whole.inception_score, &whole.histogram),
        (10_000, &real.inception_score, &real.histogram)
    );
    assert!(whole.frechet_distance.abs() < 1e-6, "FD of the test set to itself: {}", whole.frechet_distance);
    assert!(whole.fd_reference.contains("10000 MNIST test images"));
    // Classified as their true labels: the classifier's test accuracy; as the wrong ones: rarely.
    assert_eq!(whole.label_accuracy, Some(accuracy));
    assert!(u8s.label_accuracy.unwrap() < 0.05, "{:?}", u8s.label_accuracy);
    assert_eq!(f32s.label_accuracy, None);
    // A part of it, as uint8 and as float32: identical figures; still real digits.
    assert_eq!(
        (u8s.count, u8s.inception_score, u8s.frechet_distance),
        (part, f32s.inception_score, f32s.frechet_distance)
    );
    assert_eq!(u8s.histogram, f32s.histogram);
    // (100 images a split: the score is biased low, the histogram noisier.)
    assert!(u8s.inception_score.mean > 7.0 && u8s.histogram.max_deviation_points < 5.0, "{u8s:?}");
    assert!(u8s.frechet_distance > whole.frechet_distance);

    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(saved["real"]["inception_score"]["mean"].as_f64(), Some(real.inception_score.mean));
    assert_eq!(saved["samples"][1]["name"].as_str(), Some(s(&u8_part)));
    assert_eq!(saved["samples"][2]["histogram"]["counts"].as_array().unwrap().len(), 10);
    assert_eq!(saved["classifier"]["epochs"].as_u64(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stopped_classifier_run_is_continued() {
    if Mnist::load_with(Dataset::Mnist, None, false).is_err() {
        return eprintln!("skipping: no MNIST");
    }
    let dir = temp("stopped");
    let run = dir.join("classifier");
    let args = ["mnist_cnn", "--run-dir", s(&run), "--epochs", "2", "--stop-after", "1", "--train-images", "1000"];
    glimpse_eval::train::run_with_args(&args).unwrap();
    let dev = Cpu::default();
    let stopped = Classifier::load(&run, &dev).unwrap();
    assert_eq!((stopped.epochs, stopped.finished, stopped.test_accuracy), (1, false, None));
    // The config given here is for a new run; the stopped one keeps its own (2 epochs).
    let done = Classifier::load_or_train(&run, &Config::default(), &dev).unwrap();
    assert_eq!((done.epochs, done.finished), (2, true));
    assert!(done.test_accuracy.is_some());
    // Something that is not an mnist_cnn run is refused, naming it.
    let other = dir.join("other");
    std::fs::create_dir_all(other.join("checkpoint")).unwrap();
    std::fs::write(other.join("checkpoint").join("junk"), "x").unwrap();
    let err = Classifier::load_or_train(&other, &Config::default(), &dev).unwrap_err().to_string();
    assert!(err.contains("classifier") && err.contains("other"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
