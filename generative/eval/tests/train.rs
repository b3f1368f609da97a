//! `mnist_cnn`'s command line, through the library function the example calls
//! (`glimpse_eval::train::run_with_args`): a run stopped with `--stop-after` and resumed ends with
//! the uninterrupted run's summary and byte-identical checkpoint files; bad settings are refused
//! before anything is written; `--eval` repeats the summary's accuracy.

use std::path::{Path, PathBuf};

use glimpse::testing::{arg as s, have_mnist, scratch_dir};

use glimpse::checkpoint::current_snapshot;
use glimpse::run::RunConfig;
use glimpse_eval::train::{run_with_args, Config, Outcome};

fn temp(name: &str) -> PathBuf {
    scratch_dir("mnist-cnn", name)
}

/// `mnist_cnn` with `args`, on 1,500 training images unless they say otherwise.
fn cnn(args: &[&str]) -> Result<Outcome, glimpse_eval::EvalError> {
    let mut all = vec!["mnist_cnn"];
    all.extend_from_slice(args);
    if !args.contains(&"--train-images") {
        all.extend(["--train-images", "1500"]);
    }
    run_with_args(&all)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The summary without what measures time.
fn untimed(dir: &Path) -> serde_json::Value {
    let mut v = json(&dir.join("summary.json"));
    for key in ["wall_seconds", "seconds_per_epoch", "epoch_seconds"] {
        v.as_object_mut().unwrap().remove(key).unwrap_or_else(|| panic!("summary has no {key}"));
    }
    v
}

/// Every file of the run's current snapshot but those holding times, by name.
fn snapshot_files(run: &Path) -> Vec<(String, Vec<u8>)> {
    glimpse::run::snapshot_files(run).expect("a valid snapshot")
}

#[test]
fn stopped_and_resumed_equals_the_uninterrupted_run() {
    if !have_mnist() {
        return;
    }
    let (a, b) = (temp("whole"), temp("parts"));
    let common = ["--epochs", "3", "--seed", "2", "--lr-decay", "0.8"];
    let run = |extra: &[&str]| cnn(&common.iter().chain(extra).copied().collect::<Vec<_>>());
    let Outcome::Finished(whole) = run(&["--run-dir", s(&a)]).unwrap() else { panic!("not finished") };
    assert_eq!(run(&["--run-dir", s(&b), "--stop-after", "1"]).unwrap(), Outcome::Stopped);
    assert!(!b.join("summary.json").exists());
    let Outcome::Finished(resumed) = cnn(&["--resume", s(&b)]).unwrap() else { panic!("not finished") };
    assert_eq!(untimed(&a), untimed(&b));
    assert_eq!((resumed.test_accuracy, resumed.train_loss, resumed.epochs), (whole.test_accuracy, whole.train_loss, 3));
    let (fa, fb) = (snapshot_files(&a), snapshot_files(&b));
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    for name in ["model.safetensors", "adam_m1.safetensors", "adam.json", "loader.json", "shift.json", "curves.json"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(fa.len(), fb.len());
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{name} differs between the whole run and the resumed one");
    }
    // 70 steps on 1,500 images already classify most test digits.
    assert!(whole.test_accuracy > 0.8, "{}", whole.test_accuracy);

    let Outcome::Evaluated(e) = cnn(&["--eval", s(&a)]).unwrap() else { panic!("not an eval") };
    assert_eq!((e["test_accuracy"].as_f64().unwrap(), e["epochs"].as_u64()), (whole.test_accuracy, Some(3)));
    // Another seed trains another model.
    let c = temp("seed3");
    let Outcome::Finished(other) = cnn(&["--run-dir", s(&c), "--epochs", "1", "--seed", "3"]).unwrap() else {
        panic!("not finished")
    };
    let first = json(&current_snapshot(&b.join("checkpoint")).unwrap().join("curves.json"));
    assert_ne!(other.train_loss, first["train_loss"][0].as_f64().unwrap());
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let dir = temp("bad");
    let cases: [(&[&str], &str); 10] = [
        (&["--batch-size", "0"], "batch_size must be at least 1"),
        (&["--max-shift", "18446744073709551615"], "max_shift must be below the image side (28)"),
        (&["--max-shift", "28"], "max_shift must be below the image side (28), got 28"),
        (&["--lr-decay", "0"], "lr_decay must be in (0, 1], got 0"),
        (&["--lr-decay", "1.5"], "lr_decay must be in (0, 1]"),
        (&["--train-images", "0"], "train_images must be between 1 and 60000, got 0"),
        (&["--threads", "5000"], "threads must be between 1 and"),
        (&["--learning-rate", "0"], "learning_rate must be a finite number > 0, got 0"),
        (&["--epochs", "0"], "epochs must be at least 1"),
        (&["--lr", "0.1"], "unexpected argument '--lr'"),
    ];
    for (args, message) in cases {
        let all: Vec<&str> = ["--run-dir", s(&dir)].iter().chain(args).copied().collect();
        let err = cnn(&all).unwrap_err().to_string();
        assert!(err.contains(message), "{args:?}: {err:?} should say {message:?}");
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }
    // The flags' defaults are the default config, and it is valid.
    use clap::Parser;
    let cli = glimpse::run::Cli::<Config>::try_parse_from(["mnist_cnn"]).unwrap();
    assert_eq!((cli.config, Config::default().validate()), (Config::default(), Ok(())));
    let Err(err) = cnn(&["--run-dir", s(&dir), "--help"]) else { panic!("--help trains") };
    assert!(err.to_string().contains("[default: 0.7]"), "{err}");
    assert!(!dir.exists());
}
