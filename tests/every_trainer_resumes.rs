//! The same test for every trainer, through its example binary as a user runs it: a run stopped
//! with `--stop-after N` and continued with `--resume DIR` ends with the uninterrupted run's
//! `summary.json` (timings aside) and byte-identical checkpoint files (weights, optimizer moments,
//! loop state); a finished run is not resumed, and a new run into its directory is refused.
//!
//! `cargo test` builds the examples before it runs the tests; the binaries are found next to this
//! test's own (`target/<profile>/examples/`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/<name>`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    profile_dir.join("examples").join(name)
}

fn temp(name: &str) -> PathBuf {
    glimpse::testing::scratch_dir("every-trainer", name)
}

/// Runs example `name` with `args`; returns its status and what it printed.
fn run(name: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(example(name))
        .args(args)
        .env("GLIMPSE_NO_PROGRESS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{name} could not start ({e}); cargo test builds the examples first"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn ok(name: &str, args: &[&str]) -> String {
    let (success, text) = run(name, args);
    assert!(success, "{name} {args:?} failed:\n{text}");
    text
}

/// `summary.json` without the keys that measure time.
fn summary(dir: &Path) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).expect("summary.json")).expect("JSON");
    if let Some(map) = value.as_object_mut() {
        map.retain(|key, _| !key.contains("seconds"));
    }
    value
}

/// The run's current snapshot as the run layer compares snapshots (timings and wall time out).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    glimpse::run::snapshot_files(dir).expect("a valid snapshot")
}

/// Trains `name` with `args` once straight through and once stopped at `stop` and resumed; both
/// must end alike.
fn stopped_and_resumed_equals_uninterrupted(name: &str, args: &[&str], stop: &str) {
    // Directories named after the arguments too: two tests of one example run in parallel.
    let tag = format!("{name}-{:x}", args.join(" ").bytes().fold(0u32, |h, b| h.wrapping_mul(31) ^ u32::from(b)));
    let (whole, parts) = (temp(&format!("{tag}-whole")), temp(&format!("{tag}-parts")));
    let with_dir = |dir: &Path, extra: &[&str]| -> Vec<String> {
        let dir = dir.display().to_string();
        args.iter().copied().chain(["--run-dir", dir.as_str()]).chain(extra.iter().copied()).map(String::from).collect()
    };
    let call = |v: Vec<String>| ok(name, &v.iter().map(String::as_str).collect::<Vec<_>>());
    call(with_dir(&whole, &[]));
    let printed = call(with_dir(&parts, &["--stop-after", stop]));
    assert!(printed.contains("--resume"), "{name} did not stop at {stop}:\n{printed}");
    assert!(!parts.join("summary.json").exists(), "{name}: a stopped run has no summary");
    let parts_arg = parts.display().to_string();
    ok(name, &["--resume", &parts_arg]);
    assert_eq!(summary(&whole), summary(&parts), "{name}: the summaries differ");
    let (sa, sb) = (snapshot(&whole), snapshot(&parts));
    assert_eq!(sa.iter().map(|f| &f.0).collect::<Vec<_>>(), sb.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((file, x), (_, y)) in sa.iter().zip(&sb) {
        assert!(x == y, "{name}: {file} differs after stop and resume");
    }
    // The run is finished: --resume is refused, and so is a new run into its directory.
    let (resumed, text) = run(name, &["--resume", &parts_arg]);
    assert!(!resumed && text.contains("finished"), "{name}: resuming a finished run:\n{text}");
    assert!(text.lines().any(|l| l.starts_with("error: ")), "{name}: errors print as one line:\n{text}");
    let (fresh, text) = run(name, &["--run-dir", &parts_arg]);
    assert!(!fresh && text.contains("already holds a checkpoint"), "{name}: a new run over a checkpoint:\n{text}");
    for d in [whole, parts] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn cartpole_dqn() {
    let args = ["--seed", "3", "--total-timesteps", "3000", "--learning-starts", "500", "--eval-frequency", "1000"];
    stopped_and_resumed_equals_uninterrupted("cartpole_dqn", &args, "1701");
}

#[test]
fn acrobot_dqn() {
    let args = ["--seed", "2", "--total-timesteps", "2000", "--learning-starts", "500", "--eval-episodes", "5"];
    stopped_and_resumed_equals_uninterrupted("acrobot_dqn", &args, "1100");
}

#[test]
fn cartpole_ppo() {
    stopped_and_resumed_equals_uninterrupted("cartpole_ppo", &["--seed", "3", "--total-timesteps", "3072"], "1024");
}

#[test]
fn acrobot_ppo() {
    let args = ["--seed", "2", "--total-timesteps", "8192", "--eval-episodes", "5", "--eval-frequency", "4096"];
    stopped_and_resumed_equals_uninterrupted("acrobot_ppo", &args, "4096");
}

#[test]
fn pendulum_ppo() {
    let args = ["--seed", "2", "--total-timesteps", "8192", "--eval-episodes", "5", "--num-minibatches", "8"];
    stopped_and_resumed_equals_uninterrupted("pendulum_ppo", &args, "4096");
}

#[test]
fn cartpole_a2c() {
    stopped_and_resumed_equals_uninterrupted("cartpole_a2c", &["--seed", "2", "--total-timesteps", "4000"], "2001");
}

#[test]
fn cartpole_reinforce() {
    stopped_and_resumed_equals_uninterrupted(
        "cartpole_reinforce",
        &["--seed", "2", "--total-timesteps", "8000"],
        "3001",
    );
}

/// Whether the MNIST files are where the examples look (`MNIST_DIR`, else `../shared/data/mnist`).
fn mnist_present() -> bool {
    let dir = std::env::var_os("MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    let present = dir.is_dir();
    if !present {
        eprintln!("skipped: no MNIST at {} (set MNIST_DIR)", dir.display());
    }
    present
}

#[test]
fn vae_mnist() {
    if mnist_present() {
        let args = ["--seed", "2", "--epochs", "3", "--train-images", "1500", "--batch-size", "100"];
        stopped_and_resumed_equals_uninterrupted("vae_mnist", &args, "1");
    }
}

#[test]
fn mnist_cnn() {
    if mnist_present() {
        let args = ["--seed", "2", "--epochs", "2", "--train-images", "1000"];
        stopped_and_resumed_equals_uninterrupted("mnist_cnn", &args, "1");
    }
}

/// The default, class-conditional GAN (its checkpoint holds the generated labels' generator too).
#[test]
fn gan_mnist() {
    if mnist_present() {
        let args =
            ["--seed", "2", "--epochs", "2", "--train-images", "512", "--batch-size", "64", "--final-samples", "50"];
        stopped_and_resumed_equals_uninterrupted("gan_mnist", &args, "1");
    }
}

/// The hinge objective's discriminator carries spectral-norm state (the power iteration's `u`);
/// this one is the unconditional GAN.
#[test]
fn gan_mnist_hinge() {
    if mnist_present() {
        let args = [
            "--seed",
            "3",
            "--epochs",
            "2",
            "--train-images",
            "512",
            "--batch-size",
            "64",
            "--final-samples",
            "50",
            "--objective",
            "hinge",
            "--conditional",
            "false",
        ];
        stopped_and_resumed_equals_uninterrupted("gan_mnist", &args, "1");
    }
}

/// The three autoregressive models (each checkpoint holds the model, Adam and the binarising loader).
#[test]
fn pixelcnn_mnist() {
    if mnist_present() {
        for model in ["pixelcnn", "gated", "rowlstm"] {
            let args =
                ["--seed", "2", "--epochs", "2", "--train-images", "96", "--test-images", "40", "--model", model];
            stopped_and_resumed_equals_uninterrupted("pixelcnn_mnist", &args, "1");
        }
    }
}
