//! Crash consistency: a training process (`cartpole_dqn`, checkpointing every 250 env steps) is
//! killed with SIGKILL at seeded random moments, most of them during a checkpoint write; each
//! time the last checkpoint must pass `current_snapshot` (manifest sizes and CRCs), and `--resume`
//! must run to the end and give the uninterrupted run's `summary.json` (timings aside).
//!
//! `cargo test` builds the examples before it runs the tests; the binary is found next to this
//! test's own (`target/<profile>/examples/`).

use glimpse::checkpoint::{current_snapshot, LATEST};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills per test run.
const KILLS: usize = 8;

const ARGS: [&str; 10] = [
    "--seed",
    "4",
    "--total-timesteps",
    "12000",
    "--learning-starts",
    "500",
    "--eval-frequency",
    "4000",
    "--checkpoint-frequency",
    "250",
];

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    profile_dir.join("examples").join(name)
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(example("cartpole_dqn"));
    command.args(args).env("GLIMPSE_NO_PROGRESS", "1").stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn finish(args: &[&str]) {
    let out = command(args).output().expect("cartpole_dqn starts (cargo test builds the examples first)");
    assert!(out.status.success(), "cartpole_dqn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `summary.json` without the keys that measure time.
fn summary(dir: &Path) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).expect("summary.json")).expect("JSON");
    value.as_object_mut().expect("an object").retain(|key, _| !key.contains("seconds"));
    value
}

#[test]
fn sigkill_at_random_moments_leaves_a_checkpoint_that_resumes_to_the_same_end() {
    let base = std::env::temp_dir().join(format!("glimpse-crash-consistency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let whole = base.join("whole");
    let mut args = ARGS.to_vec();
    args.extend(["--run-dir", whole.to_str().unwrap()]);
    let started = Instant::now();
    finish(&args);
    let whole_time = started.elapsed();
    let expected = summary(&whole);

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (mut kills, mut during_write) = (0, 0);
    for kill in 0..KILLS {
        let dir = base.join(format!("killed-{kill}"));
        let d = dir.to_str().unwrap();
        let mut args = ARGS.to_vec();
        args.extend(["--run-dir", d]);
        let mut child = command(&args).spawn().expect("cartpole_dqn starts");
        // Wait for the first checkpoint, then kill somewhere in the rest of the run.
        let latest = dir.join("checkpoint").join(LATEST);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !latest.exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let delay = whole_time.mul_f64(rng.gen_range(0.0..0.8));
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        let status = child.wait().unwrap();
        let killed = status.code().is_none();
        kills += usize::from(killed);
        // A snapshot directory that is not the current one: the kill came during a checkpoint write.
        let current = std::fs::read_to_string(&latest).unwrap_or_default();
        let partial = std::fs::read_dir(dir.join("checkpoint"))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.path().is_dir() && e.file_name().to_string_lossy() != current.trim());
        during_write += usize::from(partial);
        eprintln!("kill {kill}: after {delay:?}, killed {killed}, during a checkpoint write {partial}");
        assert!(latest.exists(), "kill {kill}: no checkpoint was written ({status})");
        let snapshot = current_snapshot(&dir.join("checkpoint"));
        assert!(
            snapshot.is_ok(),
            "kill {kill} after {delay:?}: the last checkpoint is broken: {}",
            snapshot.unwrap_err()
        );
        if killed {
            assert!(!dir.join("summary.json").exists(), "kill {kill}: a summary before the end");
            finish(&["--resume", d]);
        }
        assert_eq!(summary(&dir), expected, "kill {kill} after {delay:?} (killed: {killed})");
    }
    // Most kills must land before the end of the run, or the test tests nothing.
    assert!(kills * 2 > KILLS, "only {kills} of {KILLS} kills came before the end of the run");
    eprintln!("{kills} processes killed, {during_write} during a checkpoint write");
    std::fs::remove_dir_all(&base).unwrap();
}
