//! `vae_mnist`'s command line, through the library function the example calls
//! (`glimpse_vae::cli::run_with_args`): a run stopped with `--stop-after` and resumed ends with
//! the uninterrupted run's summary and byte-identical checkpoint files; bad settings are refused
//! before anything is written; `--eval` repeats the summary's test loss; `--sample` writes a
//! `uint8 [N, 28, 28]` `.npy` (read back here, and by numpy when `GLIMPSE_PYTHON` is set).

use std::path::{Path, PathBuf};

use glimpse::testing::{arg as s, have_mnist, scratch_dir};

use glimpse::data::npy::{read_npy, NpyData};
use glimpse_vae::cli::{run_with_args, Outcome};

fn temp(name: &str) -> PathBuf {
    scratch_dir("vae-cli", name)
}

/// `vae_mnist` with `args`, and a small, fast setting for the flags they do not give.
fn vae(args: &[&str]) -> Result<Outcome, glimpse_vae::VaeError> {
    let mut all = vec!["vae_mnist"];
    all.extend_from_slice(args);
    for (flag, value) in [("--train-images", "1500"), ("--batch-size", "100"), ("--threads", "2")] {
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
    let common = ["--epochs", "3", "--data-view", "stochastic", "--seed", "4"];
    let run = |extra: &[&str]| vae(&common.iter().chain(extra).copied().collect::<Vec<_>>());
    let Outcome::Finished(whole) = run(&["--run-dir", s(&a)]).unwrap() else { panic!("not finished") };
    assert_eq!(run(&["--run-dir", s(&b), "--stop-after", "1"]).unwrap(), Outcome::Stopped);
    assert!(!b.join("summary.json").exists());
    let Outcome::Finished(resumed) = vae(&["--resume", s(&b)]).unwrap() else { panic!("not finished") };
    assert_eq!(untimed(&a), untimed(&b));
    assert_eq!(
        (resumed.test_loss, resumed.train_loss, resumed.epochs, resumed.seed),
        (whole.test_loss, whole.train_loss, 3, 4)
    );
    assert_eq!(resumed.epoch_seconds.len(), 3);
    let (fa, fb) = (snapshot_files(&a), snapshot_files(&b));
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    for name in ["model.safetensors", "adam_m1.safetensors", "loader.json", "noise.json", "curves.json"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{name} differs between the whole run and the resumed one");
    }
    assert_eq!(fa.len(), fb.len());
    // It learned: the untrained model scores over 200 nats.
    assert!(whole.test_loss < 200.0, "{}", whole.test_loss);

    // --eval with the run's seed repeats the summary's test loss; nothing is written.
    let before = std::fs::read_dir(&a).unwrap().count();
    let Outcome::Evaluated(e) = vae(&["--eval", s(&a), "--seed", "4"]).unwrap() else { panic!("not an eval") };
    assert_eq!(e["test_loss"].as_f64().unwrap(), whole.test_loss);
    assert_eq!(e["epochs"], 3);
    assert_eq!(std::fs::read_dir(&a).unwrap().count(), before);
    // A finished run is not resumed.
    let err = vae(&["--resume", s(&a), "--epochs", "5"]).unwrap_err().to_string();
    assert!(err.contains("is finished"), "{err}");
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let dir = temp("bad");
    let cases: [(&[&str], &str); 10] = [
        (&["--batch-size", "0"], "batch_size must be at least 1"),
        (&["--train-images", "0"], "train_images must be between 1 and 60000, got 0"),
        (&["--threads", "5000"], "threads must be between 1 and"),
        (&["--latent", "7"], "latent 7 is not built in"),
        (&["--learning-rate=-1"], "learning_rate must be a finite number > 0, got -1"),
        (&["--learning-rate", "NaN"], "--learning-rate NaN: not a finite number"),
        (&["--epochs", "0"], "epochs must be at least 1"),
        (&["--iw-images", "0"], "iw_images must be between 1 and 10000"),
        (&["--data-dir", "/nonexistent/mnist"], "is not a directory"),
        (&["--lr", "0.1"], "unexpected argument '--lr'"),
    ];
    for (args, message) in cases {
        let all: Vec<&str> = ["--run-dir", s(&dir)].iter().chain(args).copied().collect();
        let err = vae(&all).unwrap_err().to_string();
        assert!(err.contains(message), "{args:?}: {err:?} should say {message:?}");
        assert!(!err.contains("Config {") && !err.contains("Error {"), "Debug form: {err}");
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }
    // An unknown key in a --config file is refused too.
    let file = std::env::temp_dir().join(format!("glimpse-vae-cli-cfg-{}.toml", std::process::id()));
    std::fs::write(&file, "lr = 0.1\n").unwrap();
    let err = vae(&["--run-dir", s(&dir), "--config", s(&file)]).unwrap_err().to_string();
    assert!(err.contains("lr"), "{err}");
    assert!(!dir.exists());
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn sample_writes_uint8_images_numpy_reads() {
    if !have_mnist() {
        return;
    }
    let dir = temp("sample");
    let run = dir.join("run");
    let Outcome::Finished(_) = vae(&["--run-dir", s(&run), "--epochs", "2"]).unwrap() else { panic!("not finished") };
    let out = dir.join("s.npy");
    let Outcome::Sampled { npy, png } =
        vae(&["--sample", s(&run), "--num", "70", "--out", s(&out), "--seed", "9"]).unwrap()
    else {
        panic!("not sampled")
    };
    assert_eq!((npy.as_path(), png.as_path()), (out.as_path(), dir.join("s.png").as_path()));
    assert!(png.is_file());
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header =
        String::from_utf8_lossy(&bytes[10..10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize]).into_owned();
    assert!(header.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (70, 28, 28), }"), "{header}");
    let array = read_npy(&out).unwrap();
    assert_eq!(array.shape, vec![70, 28, 28]);
    let NpyData::U8(images) = &array.data else { panic!("not uint8: {:?}", array.data.len()) };
    // Digits: dark backgrounds, some bright strokes, and not all alike.
    let mean = images.iter().map(|&p| p as f64).sum::<f64>() / images.len() as f64;
    assert!((5.0..100.0).contains(&mean), "mean grey level {mean}");
    let max = images.iter().max().unwrap();
    assert!(*max > 150, "brightest pixel {max}");
    assert_ne!(images[..784], images[784..2 * 784]);
    // The same seed draws the same images, another seed others.
    let again = dir.join("again.npy");
    vae(&["--sample", s(&run), "--num", "70", "--out", s(&again), "--seed", "9"]).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
    vae(&["--sample", s(&run), "--num", "70", "--out", s(&again), "--seed", "10"]).unwrap();
    assert_ne!(std::fs::read(&again).unwrap(), bytes);
    // Bad sampling flags.
    let err = vae(&["--sample", s(&run), "--num", "0"]).unwrap_err().to_string();
    assert!(err.contains("--num must be at least 1"), "{err}");
    let err = vae(&["--sample", s(&run), "--out", s(&dir.join("x.png"))]).unwrap_err().to_string();
    assert!(err.contains("must name a .npy file"), "{err}");
    let err = vae(&["--num", "5"]).unwrap_err().to_string();
    assert!(err.contains("--sample"), "{err}");

    match std::env::var("GLIMPSE_PYTHON") {
        Ok(py) if !py.is_empty() => {
            let script = "import numpy, sys\na = numpy.load(sys.argv[1])\nprint(a.dtype, a.shape, int(a.astype(numpy.int64).sum()))";
            let result =
                std::process::Command::new(&py).args(["-c", script, s(&out)]).output().expect("run GLIMPSE_PYTHON");
            assert!(result.status.success(), "numpy: {}", String::from_utf8_lossy(&result.stderr));
            let sum: u64 = images.iter().map(|&p| p as u64).sum();
            assert_eq!(String::from_utf8_lossy(&result.stdout).trim(), format!("uint8 (70, 28, 28) {sum}"));
        }
        _ => eprintln!("numpy check skipped: set GLIMPSE_PYTHON to a Python with numpy"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
