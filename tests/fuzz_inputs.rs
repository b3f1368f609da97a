//! Fuzz-style tests of every parser of outside bytes, on stable Rust: the IDX loader (raw and gzip),
//! checkpoint snapshots (`current_snapshot` with its manifest, safetensors weights, JSON states,
//! `replay.bin`), config files (TOML and JSON) and the classic-control envs' saved states.
//!
//! Each target starts from valid inputs built here and the files under `tests/fuzz_corpus/<target>/`
//! (seeds and the inputs of every crash found, kept as regressions), mutates them with a seeded
//! generator and checks that the parser returns (`Ok` or `Err`) without panicking, each case run
//! under `catch_unwind`. The process's address space is capped, so an unbounded allocation aborts
//! the test instead of passing. By default each target runs a few hundred cases (well under a second);
//! `GLIMPSE_FUZZ_SECONDS=120 cargo test --release --test fuzz_inputs` runs each for that long, and
//! `GLIMPSE_FUZZ_SEED` picks another seed. A crashing input is written to
//! `target/fuzz-crashes/<target>/` to be added to the corpus; `GLIMPSE_FUZZ_WRITE_SEEDS=1` writes
//! the seeds built here into the corpus as `seed-<i>`.

use dfdx::prelude::*;
use glimpse::checkpoint::{
    current_snapshot, load_json, load_weights, save_json, save_snapshot, save_weights, CheckpointError,
};
use glimpse::data::idx::{parse_images, parse_labels, read_idx_images, read_idx_labels};
use glimpse::env::Env;
use glimpse::replay::{NStep, NStepState, ReplayBuffer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Cases per target when `GLIMPSE_FUZZ_SECONDS` is not set.
const DEFAULT_CASES: usize = 300;
/// Seconds after which one case counts as a hang.
const HANG_SECONDS: u64 = 10;
/// Address-space cap of the test process: a parser that allocates what a header announces aborts.
const ADDRESS_SPACE_CAP: u64 = 16 << 30;

type Net = (Linear<3, 4>, ReLU, Linear<4, 2>);

fn cap_address_space() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let limit = libc::rlimit { rlim_cur: ADDRESS_SPACE_CAP, rlim_max: libc::RLIM_INFINITY };
        // Keep the hard limit; lowering only the soft one is always allowed.
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        unsafe {
            libc::getrlimit(libc::RLIMIT_AS, &mut old);
            let limit = libc::rlimit { rlim_max: old.rlim_max, ..limit };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
        }
    });
}

fn temp_dir(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glimpse-fuzz-{target}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The committed corpus of a target: seed inputs and regressions, sorted by name.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fuzz_corpus").join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Numbers and tokens that tend to break parsers of text.
const TOKENS: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "1e999",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "9223372036854775808",
    "-9223372036854775809",
    "NaN",
    "inf",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "[",
    "{",
    "\"",
    ",",
    ":",
    "=",
    "\n",
    "\\u0000",
    "0.5",
    "1e-320",
    "[[[[[[[[[[[[[[[[",
];

/// One random mutation of `input`.
fn mutate_once(rng: &mut ChaCha8Rng, input: &mut Vec<u8>) {
    let len = input.len();
    match rng.gen_range(0..10) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] = [0, 0xff, 0x7f, 0x80, 0x01, b'9', b'-', b'.'][rng.gen_range(0..8)];
        }
        2 => {
            let i = rng.gen_range(0..=len);
            let n = rng.gen_range(1..16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            input.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.gen_range(0..len);
            let j = rng.gen_range(i..=len.min(i + 64));
            input.drain(i..j);
        }
        4 => input.truncate(rng.gen_range(0..=len)),
        5 if len > 0 => {
            let i = rng.gen_range(0..len);
            let j = rng.gen_range(i..=len.min(i + 64));
            let copy = input[i..j].to_vec();
            let k = rng.gen_range(0..=len);
            input.splice(k..k, copy);
        }
        6 if len >= 4 => {
            // A big-endian or little-endian word set to an extreme value (sizes in binary headers).
            let i = rng.gen_range(0..=len - 4);
            let v: u32 = [0, 1, u32::MAX, 0x8000_0000, 0x7fff_ffff, 1 << 20, rng.gen()][rng.gen_range(0..7)];
            let bytes = if rng.gen() { v.to_be_bytes() } else { v.to_le_bytes() };
            input[i..i + 4].copy_from_slice(&bytes);
        }
        7 if len >= 8 => {
            let i = rng.gen_range(0..=len - 8);
            let v: u64 = [0, 1, u64::MAX, 1 << 63, 1 << 40, rng.gen()][rng.gen_range(0..6)];
            input[i..i + 8].copy_from_slice(&v.to_le_bytes());
        }
        8 => {
            // Replace a run of digits (a number in text) with an interesting token, or insert one.
            let token = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
            let digits: Vec<usize> = (0..len).filter(|&i| input[i].is_ascii_digit()).collect();
            if digits.is_empty() || rng.gen_bool(0.2) {
                let i = rng.gen_range(0..=len);
                input.splice(i..i, token.iter().copied());
            } else {
                let start = digits[rng.gen_range(0..digits.len())];
                let mut end = start;
                while end < len && (input[end].is_ascii_digit() || b".eE+-".contains(&input[end])) {
                    end += 1;
                }
                input.splice(start..end, token.iter().copied());
            }
        }
        _ => {
            let n = rng.gen_range(0..64);
            *input = (0..n).map(|_| rng.gen()).collect();
        }
    }
}

/// Values that tend to break what reads a parsed JSON document.
fn odd_value(rng: &mut ChaCha8Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.gen_range(0..16) {
        0 => json!(u64::MAX),
        1 => json!(-1),
        2 => json!(0),
        3 => json!(1e308),
        4 => json!(-1e308),
        5 => json!(i64::MIN),
        6 => json!(0.5),
        7 => json!(true),
        8 => json!(null),
        9 => json!("x"),
        10 => json!([]),
        11 => json!({}),
        12 => json!(vec![0; rng.gen_range(0..40)]),
        13 => json!(1u64 << 53),
        14 => json!(f64::MIN_POSITIVE),
        _ => json!(rng.gen::<u32>()),
    }
}

/// Replaces a random node of `value` (a leaf more often than not) with an odd value.
fn mutate_value(rng: &mut ChaCha8Rng, value: &mut serde_json::Value) {
    let children = match value {
        serde_json::Value::Array(items) => items.len(),
        serde_json::Value::Object(map) => map.len(),
        _ => 0,
    };
    if children == 0 || rng.gen_bool(0.1) {
        *value = odd_value(rng);
        return;
    }
    let k = rng.gen_range(0..children);
    match value {
        serde_json::Value::Array(items) => mutate_value(rng, &mut items[k]),
        serde_json::Value::Object(map) => {
            if rng.gen_bool(0.05) {
                let key = map.keys().nth(k).cloned().unwrap();
                map.remove(&key);
            } else {
                mutate_value(rng, map.values_mut().nth(k).unwrap())
            }
        }
        _ => unreachable!(),
    }
}

/// A mutated copy of one of `seeds`: for a JSON seed, half the time one to three nodes replaced by
/// odd values (so that cases get past the parser); otherwise 1 to 4 byte mutations stacked.
fn mutated(rng: &mut ChaCha8Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
    if rng.gen() {
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&input) {
            for _ in 0..rng.gen_range(1..=3) {
                mutate_value(rng, &mut value);
            }
            return serde_json::to_vec(&value).unwrap();
        }
    }
    for _ in 0..rng.gen_range(1..=4) {
        mutate_once(rng, &mut input);
    }
    input
}

/// Runs `check` on every seed, then on mutated inputs (for `GLIMPSE_FUZZ_SECONDS` or
/// [`DEFAULT_CASES`]); fails listing every input that panicked, saved under `target/fuzz-crashes`.
fn fuzz(target: &str, mut seeds: Vec<Vec<u8>>, mut check: impl FnMut(&[u8])) {
    cap_address_space();
    if std::env::var_os("GLIMPSE_FUZZ_WRITE_SEEDS").is_some() {
        // Refreshes the committed seeds from the inputs built here (regressions are kept).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fuzz_corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
    seeds.extend(corpus(target));
    assert!(!seeds.is_empty());
    let seed: u64 = std::env::var("GLIMPSE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ target.bytes().fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
    let deadline = std::env::var("GLIMPSE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut crashes = Vec::new();
    let mut cases = 0usize;
    // A watchdog: a case that runs for HANG_SECONDS is a hang; its input is saved and the process
    // ends (a hang cannot be unwound).
    let current = std::sync::Arc::new(std::sync::Mutex::new((Instant::now(), Vec::new(), false)));
    let watched = current.clone();
    let owned_target = target.to_string();
    let watchdog = std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(200));
        let (started, input, finished) = &*watched.lock().unwrap();
        if *finished {
            return;
        }
        if started.elapsed() > Duration::from_secs(HANG_SECONDS) {
            let path = save_crash(&owned_target, "hang", input);
            eprintln!("fuzz {owned_target}: a case ran for {HANG_SECONDS} s; its input is {}", path.display());
            std::process::exit(101);
        }
    });
    let mut run = |input: &[u8], crashes: &mut Vec<PathBuf>| {
        *current.lock().unwrap() = (Instant::now(), input.to_vec(), false);
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            crashes.push(save_crash(target, "crash", input));
        }
    };
    for input in seeds.clone() {
        run(&input, &mut crashes);
    }
    while deadline.map_or(cases < DEFAULT_CASES, |d| Instant::now() < d) {
        let input = mutated(&mut rng, &seeds);
        run(&input, &mut crashes);
        cases += 1;
    }
    current.lock().unwrap().2 = true;
    watchdog.join().unwrap();
    if deadline.is_some() {
        eprintln!("fuzz {target}: {cases} mutated cases, {} crashes", crashes.len());
    }
    assert!(crashes.is_empty(), "{target}: {} inputs panicked: {crashes:?}", crashes.len());
}

/// Writes a failing input to `target/fuzz-crashes/<target>/<kind>-<hash>`; returns the path.
fn save_crash(target: &str, kind: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("fuzz-crashes").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let path = dir.join(format!("{kind}-{hash:016x}"));
    std::fs::write(&path, input).unwrap();
    path
}

fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = [0x803, count, rows, cols].iter().flat_map(|w| w.to_be_bytes()).collect();
    bytes.extend((0..count * rows * cols).map(|i| (i * 37 % 256) as u8));
    bytes
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes: Vec<u8> = [0x801, labels.len() as u32].iter().flat_map(|w| w.to_be_bytes()).collect();
    bytes.extend(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn read_both_ways(path: &Path) {
    let _ = read_idx_images(path, None);
    let _ = read_idx_labels(path, Some("00000000000000000000000000000000"));
    let _ = glimpse::data::idx::read_bytes(path);
}

#[test]
fn fuzz_idx_raw() {
    let dir = temp_dir("idx_raw");
    let path = dir.join("input");
    fuzz("idx_raw", vec![idx_images(3, 4, 5), idx_labels(&[0, 1, 9, 3])], |input| {
        let _ = parse_images(Path::new("input"), input);
        let _ = parse_labels(Path::new("input"), input);
        std::fs::write(&path, input).unwrap();
        read_both_ways(&path);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fuzz_idx_gz() {
    let dir = temp_dir("idx_gz");
    let path = dir.join("input.gz");
    let seeds = vec![gzip(&idx_images(3, 4, 5)), gzip(&idx_labels(&[0, 1, 9, 3]))];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let raw_seeds = vec![idx_images(2, 3, 3), idx_labels(&[4, 5])];
    fuzz("idx_gz", seeds, |input| {
        // Half the cases mutate the compressed bytes, half compress mutated IDX bytes.
        let bytes = if rng.gen() { input.to_vec() } else { gzip(&mutated(&mut rng, &raw_seeds)) };
        std::fs::write(&path, bytes).unwrap();
        read_both_ways(&path);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A snapshot like a trainer's: weights, a JSON state and a replay buffer.
fn write_snapshot(dir: &Path) -> PathBuf {
    let dev: Cpu = Default::default();
    let net = dev.build_module::<Net, f32>();
    let mut nstep = NStep::new(2, 3, 0.9, 3, 1);
    let mut buffer = ReplayBuffer::new(8, 3, 1);
    for t in 0..5 {
        nstep.push(t % 2, &[t as f32; 3], &[1.0], 0.5, &[0.0; 3], false, false, |o, a, r, n, d, g| {
            buffer.push(o, a, r, n, d, g);
        });
    }
    save_snapshot::<CheckpointError>(dir, |snap| {
        save_weights(&net, &snap.join("q.safetensors"))?;
        save_json(&nstep.save_state(), &snap.join("nstep.json"))?;
        buffer.save(&snap.join("replay.bin"))
    })
    .unwrap()
}

/// Loads every part of the snapshot in `dir` the way a trainer resumes.
fn load_snapshot(snap: &Path) {
    let dev: Cpu = Default::default();
    let mut net = dev.build_module::<Net, f32>();
    let _ = load_weights(&mut net, &snap.join("q.safetensors"));
    if let Ok(state) = load_json::<NStepState>(&snap.join("nstep.json")) {
        let _ = NStep::new(2, 3, 0.9, 3, 1).restore(&state);
    }
    let _ = ReplayBuffer::new(8, 3, 1).load(&snap.join("replay.bin"));
}

#[test]
fn fuzz_checkpoint_snapshot() {
    // One target per file of a snapshot: the file is mutated, then the snapshot is checked with
    // `current_snapshot` (which must refuse it: the manifest's CRC no longer matches) and its
    // parts are loaded directly as well, so that the parsers behind the CRC are exercised too.
    for file in ["MANIFEST.json", "q.safetensors", "nstep.json", "replay.bin", "LATEST"] {
        let dir = temp_dir(&format!("snapshot-{file}"));
        let snap = write_snapshot(&dir);
        let target = if file == "LATEST" { dir.join(file) } else { snap.join(file) };
        let original = std::fs::read(&target).unwrap();
        let corpus_name = format!("snapshot_{}", file.replace('.', "_").to_lowercase());
        fuzz(&corpus_name, vec![original.clone()], |input| {
            std::fs::write(&target, input).unwrap();
            let checked = current_snapshot(&dir);
            // A changed file must fail its CRC; a manifest that is not JSON must be refused (one
            // that still parses may legitimately pass: it is not covered by a CRC itself).
            let must_fail = match file {
                "LATEST" => false,
                "MANIFEST.json" => serde_json::from_slice::<serde_json::Value>(input).is_err(),
                _ => input != original,
            };
            if must_fail {
                assert!(checked.is_err(), "a mutated {file} passed the manifest check");
            }
            load_snapshot(&snap);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn fuzz_config_files() {
    let dir = temp_dir("config");
    let defaults = glimpse_dqn::Config::default();
    let json = serde_json::to_vec_pretty(&defaults).unwrap();
    let toml_text = toml::to_string(&defaults).unwrap().into_bytes();
    let short = b"learning_rate = 0.001\nbuffer_size = 1000\ndouble = true\nn_step = 3\n".to_vec();
    fuzz("config", vec![json, toml_text, short], |input| {
        for name in ["c.json", "c.toml"] {
            let path = dir.join(name);
            std::fs::write(&path, input).unwrap();
            if let Ok(config) = glimpse::run::load_config::<glimpse_dqn::Config>(&path) {
                let _ = glimpse::run::RunConfig::validate(&config);
            }
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A saved state of `env` after a few steps, as JSON bytes.
fn env_seed<E: Env>(mut env: E, action: &E::Act, steps: usize) -> Vec<u8> {
    env.reset(Some(3)).unwrap();
    for _ in 0..steps {
        let step = env.step(action).unwrap();
        if step.terminated || step.truncated {
            env.reset(None).unwrap();
        }
    }
    serde_json::to_vec(&env.save_state().unwrap()).unwrap()
}

/// Restores mutated states into a fresh env; a state that is accepted must then step and reset
/// without panicking.
fn fuzz_env<E: Env>(target: &str, make: fn() -> E, actions: &[E::Act]) {
    let seeds =
        vec![env_seed(make(), &actions[0], 0), env_seed(make(), &actions[0], 7), env_seed(make(), &actions[1], 30)];
    fuzz(target, seeds, |input| {
        let Ok(state) = serde_json::from_slice::<serde_json::Value>(input) else { return };
        let mut env = make();
        if env.restore_state(&state).is_err() {
            return;
        }
        for action in actions.iter().chain(actions) {
            match env.step(action) {
                Ok(step) if step.terminated || step.truncated => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = env.reset(None);
    });
}

#[test]
fn fuzz_env_states() {
    use glimpse_envs::{Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum};
    fuzz_env("env_cartpole", CartPole::new, &[0, 1, 7]);
    fuzz_env("env_acrobot", Acrobot::new, &[0, 2, 1]);
    fuzz_env("env_mountain_car", MountainCar::new, &[2, 0, 1]);
    fuzz_env("env_pendulum", Pendulum::new, &[[1.5], [-2.0], [f32::NAN]]);
    fuzz_env("env_mountain_car_continuous", MountainCarContinuous::new, &[[1.0], [-0.3], [f32::INFINITY]]);
}

/// Found by `fuzz_env_states`: an Acrobot restored with an angle of 1e308 never finished its
/// step (gymnasium's `wrap` subtracts one turn at a time, which does not change 1e308).
#[test]
fn an_acrobot_restored_with_a_huge_angle_steps_in_bounded_time() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut env = glimpse_envs::Acrobot::new();
        let mut results = Vec::new();
        for angle in [1e308, -1e308, 1e20, f64::INFINITY, f64::NAN, 40.0] {
            env.set_state([angle, -angle, 0.0, 0.0]);
            let _ = env.step(&1);
            results.push(env.state[0]);
        }
        done.send(results).unwrap();
    });
    let results = finished.recv_timeout(Duration::from_secs(20)).expect("Acrobot steps from huge angles end");
    // Finite angles come back wrapped into [-pi, pi]; an infinite or NaN one stays non-finite.
    for (i, theta1) in results.iter().enumerate() {
        if [0, 1, 2, 5].contains(&i) {
            assert!(theta1.abs() <= std::f64::consts::PI, "{i}: {theta1}");
        } else {
            assert!(!theta1.is_finite(), "{i}: {theta1}");
        }
    }
}

/// A manifest naming a file outside its snapshot (`/dev/zero` would be read forever) is refused
/// before anything is read.
#[test]
fn a_manifest_naming_a_file_outside_the_snapshot_is_refused() {
    let dir = temp_dir("manifest-outside");
    let snap = write_snapshot(&dir);
    for name in ["/dev/zero", "../LATEST", "..", "a/b"] {
        let manifest = serde_json::json!([{ "name": name, "bytes": 460, "crc32c": 0 }]);
        std::fs::write(snap.join("MANIFEST.json"), manifest.to_string()).unwrap();
        let err = current_snapshot(&dir).unwrap_err();
        assert!(err.to_string().contains("not a file name inside the snapshot"), "{name}: {err}");
    }
    // A listed file whose size differs is refused from its size alone.
    let manifest = serde_json::json!([{ "name": "replay.bin", "bytes": 1, "crc32c": 0 }]);
    std::fs::write(snap.join("MANIFEST.json"), manifest.to_string()).unwrap();
    assert!(current_snapshot(&dir).unwrap_err().to_string().contains("the manifest says 1"));
    std::fs::remove_dir_all(&dir).unwrap();
}
