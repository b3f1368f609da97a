//! `ram_mnist`'s command line, through the library function the example calls
//! (`glimpse_ram::cli::run_with_args`): a run stopped with `--stop-after` and resumed ends with
//! the uninterrupted run's summary and byte-identical checkpoint files; `--eval` repeats the
//! summary's test error, also on an external `.npy` test set; bad settings are refused before
//! anything is written.

use std::path::{Path, PathBuf};

use glimpse::testing::{arg as s, have_mnist, scratch_dir};

use glimpse_ram::cli::{run_with_args, Outcome};

fn temp(name: &str) -> PathBuf {
    scratch_dir("ram-cli", name)
}

/// `ram_mnist` with `args`, and a small, fast setting for the flags they do not give.
fn ram(args: &[&str]) -> Result<Outcome, glimpse_ram::RamError> {
    let mut all = vec!["ram_mnist"];
    all.extend_from_slice(args);
    for (flag, value) in
        [("--train-images", "2000"), ("--batch-size", "64"), ("--figure-images", "4"), ("--test-samples", "2")]
    {
        if !args.contains(&flag) {
            all.extend([flag, value]);
        }
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

#[test]
fn stopped_and_resumed_equals_the_uninterrupted_run_and_eval_repeats_it() {
    if !have_mnist() {
        return;
    }
    let (a, b) = (temp("whole"), temp("parts"));
    let common = ["--epochs", "3", "--task", "cluttered60", "--glimpses", "3", "--seed", "4"];
    let run = |extra: &[&str]| ram(&common.iter().chain(extra).copied().collect::<Vec<_>>());
    let Outcome::Finished(whole) = run(&["--run-dir", s(&a)]).unwrap() else { panic!("not finished") };
    assert_eq!(run(&["--run-dir", s(&b), "--stop-after", "1"]).unwrap(), Outcome::Stopped { done: 0 });
    assert!(!b.join("summary.json").exists());
    let Outcome::Finished(resumed) = ram(&["--resume", s(&b)]).unwrap() else { panic!("not finished") };
    assert_eq!(untimed(&a), untimed(&b));
    assert_eq!((resumed.test_error, resumed.epochs, resumed.seed), (whole.test_error, 3, 4));
    assert_eq!(resumed.test_images, 10_000);
    let (fa, fb) = (glimpse::run::snapshot_files(&a).unwrap(), glimpse::run::snapshot_files(&b).unwrap());
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    for name in ["model.safetensors", "adam_m1.safetensors", "streams.json", "curves.json"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(fa, fb, "the snapshots differ");
    assert!(a.join("glimpses.png").is_file());
    let gif = std::fs::read(a.join("glimpses.gif")).unwrap();
    assert!(gif.starts_with(b"GIF89a"), "glimpses.gif is not a GIF");

    // --eval with the run's seed repeats the summary's test error; nothing is written.
    let before = std::fs::read_dir(&a).unwrap().count();
    let Outcome::Evaluated(e) = ram(&["--eval", s(&a), "--seed", "4"]).unwrap() else { panic!("not an eval") };
    assert_eq!(e["test_error"].as_f64().unwrap(), whole.test_error);
    assert_eq!(e["epochs"], 3);
    assert_eq!(std::fs::read_dir(&a).unwrap().count(), before);

    // An external test set: the task's own test canvases written as .npy give the same error.
    let mnist = glimpse::data::Mnist::load(glimpse::data::Dataset::Mnist, None).unwrap();
    let test = glimpse_ram::Task::Cluttered60.generate(&mnist.test, 0);
    let (images, labels) = (a.with_extension("images.npy"), a.with_extension("labels.npy"));
    std::fs::write(&images, glimpse::data::npy::encode_npy("|u1", &[10_000, 60, 60], test.pixels())).unwrap();
    std::fs::write(&labels, glimpse::data::npy::encode_npy("|u1", &[10_000], test.labels())).unwrap();
    let flags = ["--eval", s(&a), "--seed", "4", "--test-images", s(&images), "--test-labels", s(&labels)];
    let Outcome::Evaluated(e) = ram(&flags).unwrap() else { panic!("not an eval") };
    assert_eq!(e["test_error"].as_f64().unwrap(), whole.test_error);
    // One of another size is refused by name.
    let small = mnist.test.take(10);
    std::fs::write(&images, glimpse::data::npy::encode_npy("|u1", &[10, 28, 28], small.pixels())).unwrap();
    std::fs::write(&labels, glimpse::data::npy::encode_npy("|u1", &[10], small.labels())).unwrap();
    let err = ram(&flags).unwrap_err().to_string();
    assert!(err.contains("28×28") && err.contains("60×60"), "{err}");

    // A finished run is not resumed.
    let err = ram(&["--resume", s(&a), "--epochs", "5"]).unwrap_err().to_string();
    assert!(err.contains("is finished"), "{err}");
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
    for f in [images, labels] {
        std::fs::remove_file(f).unwrap();
    }
}

#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let dir = temp("bad");
    for (flags, word) in [
        (vec!["--patch", "16", "--scales", "5"], "1024"),
        (vec!["--std=-1"], "std"),
        (vec!["--glimpses", "0"], "glimpses"),
        (vec!["--test-images", "/nonexistent.npy", "--test-labels", "/nonexistent.npy"], "not a file"),
    ] {
        let mut args = vec!["--run-dir", s(&dir)];
        args.extend(flags.iter().copied());
        let err = ram(&args).unwrap_err().to_string();
        assert!(err.contains(word), "{flags:?}: {err}");
        assert!(!dir.exists(), "{flags:?} wrote {}", dir.display());
    }
    let err = ram(&["--test-images", "x.npy"]).unwrap_err().to_string();
    assert!(err.contains("--test-labels"), "{err}");
}
