//! Steps per second of CartPole-v1 with random actions: one env, then `VecEnv` batches.
//!
//! ```sh
//! cargo run --release --example env_throughput                      # table of medians
//! cargo run --release --example env_throughput -- --json            # the same rows as JSON
//! cargo run --release --example env_throughput -- --python .venv/bin/python   # + gymnasium and ratios
//! ```
//! With `--python`, `benches/gym_throughput.py` measures gymnasium's CartPole-v1 (one env and a
//! `SyncVectorEnv` of 8) in the same run, and each row gets its ratio to gymnasium's single env.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use glimpse::vec_env::VecEnv;
use glimpse::Env;
use glimpse_envs::cartpole_v1;

/// Command-line options.
#[derive(Parser, Debug)]
struct Args {
    /// Print the table as JSON (one object per row).
    #[arg(long)]
    json: bool,
    /// Measurements per row; the median is reported.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Minimum seconds per measurement.
    #[arg(long, default_value_t = 0.25)]
    min_seconds: f64,
    /// Python with gymnasium: also run benches/gym_throughput.py and print the ratios.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 64, 1024])]
    envs: Vec<usize>,
    /// Worker counts to measure each batch size on.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
    workers: Vec<usize>,
    /// Skip the single-env row.
    #[arg(long)]
    no_single: bool,
    /// Seed of the envs and of the action generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// One line of the table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Row {
    /// `glimpse` or `gymnasium`.
    implementation: String,
    /// `single` (one env, no VecEnv), `vec_env`, or gymnasium's `SyncVectorEnv`.
    kind: String,
    envs: usize,
    workers: usize,
    /// Median over the measurements.
    steps_per_sec: f64,
    /// Number of measurements the median is taken over.
    reps: usize,
    /// Median of steps per second of CPU time used by the whole process (all threads; Linux only).
    /// On a busy machine this shows the cost per step when `steps_per_sec` is held down by
    /// other processes; waiting threads count as busy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    steps_per_cpu_sec: Option<f64>,
    /// Median CPU time / wall time: the cores the process actually got.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    cpus_used: Option<f64>,
    /// `steps_per_sec` / gymnasium's single-env figure, when gymnasium was measured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    ratio_to_gymnasium_single: Option<f64>,
}

/// A fast seeded generator for random actions (wyrand): one 64-bit draw gives 64 binary actions,
/// so generating actions costs far less than stepping the envs.
struct WyRand(u64);

impl WyRand {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    /// Fills `actions` with uniform draws from {0, 1}.
    fn fill_binary(&mut self, actions: &mut [usize]) {
        for block in actions.chunks_mut(64) {
            let bits = self.next_u64();
            for (k, a) in block.iter_mut().enumerate() {
                *a = ((bits >> k) & 1) as usize;
            }
        }
    }
}

/// CPU time used so far by all threads of this process, from `/proc/self/task/*/schedstat` (ns).
fn process_cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Medians over several measurements.
struct Rates {
    steps_per_sec: f64,
    steps_per_cpu_sec: Option<f64>,
    cpus_used: Option<f64>,
}

/// Repeats `measure` (which returns the env steps it took) and returns the median rates.
fn median_rates(reps: usize, mut measure: impl FnMut() -> u64) -> Rates {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut wall_rates, mut cpu_rates, mut cpus) = (vec![], vec![], vec![]);
    for _ in 0..reps.max(1) {
        let (cpu0, start) = (process_cpu_time(), Instant::now());
        let steps = measure() as f64;
        let wall = start.elapsed().as_secs_f64();
        wall_rates.push(steps / wall);
        if let (Some(c0), Some(c1)) = (cpu0, process_cpu_time()) {
            let cpu = (c1 - c0).as_secs_f64();
            cpu_rates.push(steps / cpu);
            cpus.push(cpu / wall);
        }
    }
    let complete = cpu_rates.len() == wall_rates.len();
    Rates {
        steps_per_sec: median(wall_rates),
        steps_per_cpu_sec: complete.then(|| median(cpu_rates)),
        cpus_used: complete.then(|| median(cpus)),
    }
}

/// One CartPole-v1 stepped in a loop, reset when an episode ends.
fn single_env(args: &Args) -> Rates {
    let mut env = cartpole_v1();
    env.reset(Some(args.seed)).expect("reset");
    let mut rng = WyRand(args.seed);
    let min = Duration::from_secs_f64(args.min_seconds);
    median_rates(args.reps, || {
        let (mut steps, start) = (0u64, Instant::now());
        while start.elapsed() < min {
            let mut bits = 0;
            for k in 0..4096 {
                if k % 64 == 0 {
                    bits = rng.next_u64();
                }
                let step = env.step(&(((bits >> (k % 64)) & 1) as usize)).expect("step");
                if step.terminated || step.truncated {
                    env.reset(None).expect("reset");
                }
            }
            steps += 4096;
        }
        steps
    })
}

/// `n` CartPole-v1 envs in a `VecEnv` on `workers` threads.
fn vec_env(args: &Args, n: usize, workers: usize) -> Rates {
    let mut envs = VecEnv::new((0..n).map(|_| cartpole_v1()).collect(), workers).expect("VecEnv");
    envs.reset(Some(args.seed)).expect("reset");
    let mut rng = WyRand(args.seed);
    let mut actions = vec![0usize; n];
    let min = Duration::from_secs_f64(args.min_seconds);
    // Batch steps between clock reads, so that reading the clock costs nothing measurable.
    let batch = (65_536 / n).max(1);
    median_rates(args.reps, || {
        let (mut steps, start) = (0u64, Instant::now());
        while start.elapsed() < min {
            for _ in 0..batch {
                rng.fill_binary(&mut actions);
                envs.step(&actions).expect("step");
            }
            steps += (batch * n) as u64;
        }
        steps
    })
}

/// Runs the gymnasium benchmark script and reads its JSON rows.
fn gymnasium(python: &PathBuf, args: &Args) -> Result<Vec<Row>, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/gym_throughput.py");
    let out = Command::new(python)
        .arg(&script)
        .args(["--json", "--reps", &args.reps.to_string(), "--seed", &args.seed.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cannot read the script's JSON: {e}"))
}

fn main() {
    let args = Args::parse();
    let mut rows = vec![];
    let ours = |kind: &str, envs: usize, workers: usize, rates: Rates| Row {
        implementation: "glimpse".into(),
        kind: kind.into(),
        envs,
        workers,
        steps_per_sec: rates.steps_per_sec,
        reps: args.reps,
        steps_per_cpu_sec: rates.steps_per_cpu_sec,
        cpus_used: rates.cpus_used,
        ratio_to_gymnasium_single: None,
    };
    if !args.no_single {
        rows.push(ours("single", 1, 1, single_env(&args)));
    }
    for &n in &args.envs {
        for &workers in &args.workers {
            rows.push(ours("vec_env", n, workers, vec_env(&args, n, workers)));
        }
    }
    if let Some(python) = &args.python {
        match gymnasium(python, &args) {
            Ok(gym_rows) => rows.extend(gym_rows),
            Err(e) => {
                eprintln!("gymnasium benchmark failed: {e}");
                std::process::exit(1);
            }
        }
        let gym_single = rows.iter().find(|r| r.implementation == "gymnasium" && r.kind == "single");
        if let Some(base) = gym_single.map(|r| r.steps_per_sec) {
            for row in &mut rows {
                row.ratio_to_gymnasium_single = Some(row.steps_per_sec / base);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialise"));
        return;
    }
    println!("CartPole-v1, random actions, median of {} runs of >= {} s", args.reps, args.min_seconds);
    println!(
        "{:<10} {:<14} {:>5} {:>8} {:>14} {:>12} {:>16} {:>10}",
        "impl", "kind", "envs", "workers", "steps/s", "x gym single", "steps/cpu-s", "cpus used"
    );
    let or_dash = |x: Option<f64>, digits: usize| x.map_or("-".to_string(), |x| format!("{x:.digits$}"));
    for r in &rows {
        println!(
            "{:<10} {:<14} {:>5} {:>8} {:>14.0} {:>12} {:>16} {:>10}",
            r.implementation,
            r.kind,
            r.envs,
            r.workers,
            r.steps_per_sec,
            or_dash(r.ratio_to_gymnasium_single, 1),
            or_dash(r.steps_per_cpu_sec, 0),
            or_dash(r.cpus_used, 2)
        );
    }
    let find = |imp: &str, kind: &str, envs: usize, workers: usize| {
        rows.iter()
            .find(|r| r.implementation == imp && r.kind == kind && r.envs == envs && r.workers == workers)
            .map(|r| r.steps_per_sec)
    };
    if let (Some(ours), Some(theirs)) = (find("glimpse", "vec_env", 8, 1), find("gymnasium", "SyncVectorEnv", 8, 1)) {
        println!("VecEnv(8, 1 worker) / gymnasium SyncVectorEnv(8): {:.1}x", ours / theirs);
    }
}
