//! `pixelcnn_mnist`'s command line, through the library function the example calls: `--eval`
//! repeats the summary's test NLL; `--sample` writes a `uint8 [N, 28, 28]` `.npy` of 0s and 255s
//! with its PNG grid and completions, the same for the same seed; bad settings are refused with
//! their names.

use std::path::{Path, PathBuf};

use glimpse::testing::{arg as s, have_mnist, scratch_dir};

use glimpse::data::npy::{read_npy, NpyData};
use glimpse_pixelcnn::cli::{run_with_args, Outcome};

fn temp(name: &str) -> PathBuf {
    scratch_dir("pixelcnn-cli", name)
}

fn pixelcnn(args: &[&str]) -> Result<Outcome, glimpse_pixelcnn::PixelError> {
    let mut all = vec!["pixelcnn_mnist"];
    all.extend_from_slice(args);
    run_with_args(&all)
}

#[test]
fn a_trained_run_is_evaluated_and_sampled() {
    if !have_mnist() {
        return;
    }
    let dir = temp("run");
    let train = ["--epochs", "1", "--train-images", "256", "--test-images", "50", "--seed", "3", "--run-dir", s(&dir)];
    let Outcome::Finished(summary) = pixelcnn(&train).unwrap() else { panic!("not finished") };
    assert!(
        summary.test_nll_nats < 500.0,
        "an epoch of training beats the untrained ~540 nats: {}",
        summary.test_nll_nats
    );
    assert!(summary.test_binarization.contains("seed 0"), "{}", summary.test_binarization);
    for file in ["samples.png", "completions.png", "summary.json"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }

    let Outcome::Evaluated(e) = pixelcnn(&["--eval", s(&dir)]).unwrap() else { panic!("not an eval") };
    assert_eq!(e["test_nll_nats"].as_f64().unwrap(), summary.test_nll_nats);

    // (The naive sampler's 784 full passes take minutes at this size: tests/sampling.rs checks its
    // bits on a small network.)
    let fast = dir.join("fast.npy");
    let sample = |out: &Path| pixelcnn(&["--sample", s(&dir), "--num", "2", "--out", s(out)]);
    assert!(matches!(sample(&fast).unwrap(), Outcome::Sampled { .. }));
    let array = read_npy(&fast).unwrap();
    assert_eq!(array.shape, [2, 28, 28]);
    let NpyData::U8(values) = &array.data else { panic!("not uint8") };
    assert!(values.iter().all(|&v| v == 0 || v == 255));
    assert!(dir.join("fast.png").is_file() && dir.join("fast-completions.png").is_file());
    let again = dir.join("again.npy");
    sample(&again).unwrap();
    assert_eq!(std::fs::read(&fast).unwrap(), std::fs::read(&again).unwrap(), "the same seed draws the same images");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_settings_are_refused_with_their_names() {
    let dir = temp("bad");
    let cases: [(&[&str], &str); 8] = [
        (&["--lr-decay", "0"], "lr_decay must be in (0, 1], got 0"),
        (&["--test-images", "0"], "test_images must be between 1 and 10000, got 0"),
        (&["--batch-size", "0"], "batch_size must be at least 1"),
        (&["--model", "diagonal"], "invalid value 'diagonal' for '--model"),
        (&["--sample", "/nonexistent/run"], "/nonexistent/run"),
        (&["--sample", "/nonexistent/run", "--num", "0"], "/nonexistent/run"),
        (&["--sampler", "naive"], "--sample"),
        (&["--num", "5"], "--sample"),
    ];
    for (args, message) in cases {
        let mut all = args.to_vec();
        if !args.contains(&"--sample") {
            all.extend(["--run-dir", s(&dir)]);
        }
        let err = pixelcnn(&all).unwrap_err().to_string();
        assert!(err.contains(message), "{args:?}: {err:?} should contain {message:?}");
    }
    assert!(!dir.exists(), "a refused run writes nothing");
}
