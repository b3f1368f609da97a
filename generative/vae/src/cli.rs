//! The command line of `examples/vae_mnist.rs`: the run layer's flags (`--seed`, `--run-dir`,
//! `--resume`, `--eval`, `--config`, `--stop-after`), every [`Config`] field, and `--sample RUN`
//! (new images from a checkpoint) and `--compare-torch` (a table beside PyTorch's figures).

use crate::config::{Arch, Config};
use crate::figures::{manifold_grid, sample};
use crate::train::{evaluate, importance_weighted, train, Summary, MODEL_FILE};
use crate::{ConvVae, MlpVae, VaeError, VaeModel, PIXELS};
use dfdx::prelude::*;
use glimpse::data::{Dataset, Mnist};
use glimpse::run::{Eval, Launch, RunArgs};
use std::path::{Path, PathBuf};

/// The example's name: the default run directory's prefix.
pub const EXAMPLE: &str = "vae_mnist";

/// Train a VAE on MNIST (PyTorch's examples/vae), continue or evaluate a run, or sample from one.
#[derive(clap::Parser, Debug)]
#[command(about = "Train a VAE on MNIST (PyTorch's examples/vae), or evaluate or sample from a trained one")]
pub struct Args {
    /// Seed, run directory, resume, eval, config file, stop-after.
    #[command(flatten)]
    pub run: RunArgs,
    /// Hyperparameters.
    #[command(flatten)]
    pub config: Config,
    /// --sample RUN, --num, --out.
    #[command(flatten)]
    pub samples: glimpse::generative::SampleArgs,
    /// JSON results of `benches/vae_torch.py --json-out` (repeat for several), printed beside ours with the
    /// ratio of seconds per epoch.
    #[arg(long, conflicts_with_all = ["sample", "eval"])]
    pub compare_torch: Vec<PathBuf>,
}

/// What a command line did.
pub type Outcome = glimpse::generative::Outcome<Summary>;

/// Parses the process's command line (`--help` and flag errors exit, as clap does) and runs it.
pub fn run_command_line() -> Result<Outcome, VaeError> {
    let (args, matches) = glimpse::run::parse_command_line::<Args>(EXAMPLE);
    launch(&args, &matches)
}

/// [`run_command_line`] on `args` (the first is the program name); a flag error is returned.
pub fn run_with_args(args: &[&str]) -> Result<Outcome, VaeError> {
    let (args, matches) = glimpse::run::parse_args::<Args>(EXAMPLE, args).map_err(VaeError::Config)?;
    launch(&args, &matches)
}

/// Runs `$body` with `$z` bound to the configured latent size and `$m` to the model type.
macro_rules! dispatch {
    ($config:expr, $z:ident, $m:ident => $body:expr) => {
        match ($config.arch, $config.latent) {
            (Arch::Mlp, 2) => {
                const $z: usize = 2;
                type $m = MlpVae<2>;
                $body
            }
            (Arch::Mlp, 20) => {
                const $z: usize = 20;
                type $m = MlpVae<20>;
                $body
            }
            (Arch::Mlp, 50) => {
                const $z: usize = 50;
                type $m = MlpVae<50>;
                $body
            }
            (Arch::Conv, 2) => {
                const $z: usize = 2;
                type $m = ConvVae<2>;
                $body
            }
            (Arch::Conv, 20) => {
                const $z: usize = 20;
                type $m = ConvVae<20>;
                $body
            }
            (arch, latent) => Err(VaeError::Config(format!("latent {latent} is not built in for arch {arch:?}"))),
        }
    };
}

/// Trains, resumes, evaluates or samples, as `args` say.
fn launch(args: &Args, matches: &clap::ArgMatches) -> Result<Outcome, VaeError> {
    let defaults = Config::default();
    args.samples.check().map_err(VaeError::Config)?;
    if let Some(dir) = &args.samples.sample {
        // A checkpoint read as --eval reads it (its saved config, checked); nothing else is written.
        let run_args = RunArgs { eval: Some(dir.clone()), ..args.run.clone() };
        let Launch::Eval(eval) = Launch::new(EXAMPLE, &run_args, &args.config, &defaults, matches)? else {
            return Err(VaeError::Config("--sample reads a run directory".into()));
        };
        let out = check_sample_args(args.samples.count(), args.samples.out.clone(), &eval)?;
        return dispatch!(eval.config, Z, M => in_pool(eval.config.threads, || write_samples::<Z, M>(&eval, args.samples.count(), &out)));
    }
    // Read before training, so that a wrong path does not wait for the end of the run.
    let torch: Vec<serde_json::Value> =
        args.compare_torch.iter().map(|p| glimpse::checkpoint::load_json(p)).collect::<Result<_, _>>()?;
    match Launch::new(EXAMPLE, &args.run, &args.config, &defaults, matches)? {
        Launch::Train(run) => {
            let config = run.config.clone();
            let summary = dispatch!(config, Z, M => in_pool(config.threads, move || train::<Z, M>(run)))?;
            let Some(summary) = summary else { return Ok(Outcome::Stopped) };
            if !torch.is_empty() {
                compare_with_torch(&summary, &torch);
            }
            Ok(Outcome::Finished(summary))
        }
        Launch::Eval(eval) => {
            dispatch!(eval.config, Z, M => in_pool(eval.config.threads, || evaluate_run::<Z, M>(&eval)))
        }
    }
}

/// Runs `f` on a rayon pool of `threads` threads that the calling thread joins: 25% faster per
/// epoch than driving the global pool from outside.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> Result<R, VaeError> + Send) -> Result<R, VaeError> {
    glimpse::nn::in_thread_pool(Some(threads), f)
        .map_err(|e| VaeError::Config(format!("cannot start {threads} threads: {e}")))?
}

/// The model of `eval`'s checkpoint.
fn load_model<const Z: usize, M: VaeModel<Z>>(eval: &Eval<Config>, dev: &Cpu) -> Result<M, VaeError> {
    let mut model = M::build(dev);
    glimpse::checkpoint::load_weights(&mut model, &eval.snapshot.join(MODEL_FILE))?;
    Ok(model)
}

/// `--eval`: the test loss (noise seeded by `--seed`: a run's own seed gives its summary's
/// figure) and, with `--iw-samples K`, the importance-weighted log-likelihood.
fn evaluate_run<const Z: usize, M: VaeModel<Z>>(eval: &Eval<Config>) -> Result<Outcome, VaeError> {
    let (cfg, dev) = (&eval.config, Cpu::seed_from_u64(eval.seed));
    let model = load_model::<Z, M>(eval, &dev)?;
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let test_loss = evaluate(&model, &mnist.test, cfg.batch_size, cfg.data_view.view(), eval.seed, &dev);
    let iw = (cfg.iw_samples > 0).then(|| importance_weighted(&model, &mnist.test, cfg, eval.seed, &dev, |_| {}));
    Ok(Outcome::Evaluated(eval.report(&serde_json::json!({
        "test_loss": test_loss,
        "iw_log_likelihood": iw,
        "iw_samples": cfg.iw_samples,
        "epochs": eval.done,
    }))))
}

/// Checks `--num` and `--out` before anything is drawn; returns the .npy path.
fn check_sample_args(num: usize, out: Option<PathBuf>, eval: &Eval<Config>) -> Result<PathBuf, VaeError> {
    glimpse::generative::sample_path(num, out, &eval.dir, eval.seed, PIXELS).map_err(VaeError::Config)
}

/// `--sample`: `num` images decoded from prior samples of `--seed`, as `uint8 [num, 28, 28]` in
/// `out`, a grid of the first 64 beside it (and the manifold, for a 2-D latent space).
fn write_samples<const Z: usize, M: VaeModel<Z>>(
    eval: &Eval<Config>,
    num: usize,
    out: &Path,
) -> Result<Outcome, VaeError> {
    let dev = Cpu::seed_from_u64(eval.seed);
    let model = load_model::<Z, M>(eval, &dev)?;
    let means = sample(&model, num, eval.seed, &dev);
    let png = glimpse::generative::write_samples(out, &means, 28)?;
    println!("wrote {} ({num} images) and {}", out.display(), png.display());
    if let Some(grid) = manifold_grid(&model, &dev)? {
        let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let path = out.with_file_name(format!("{stem}-manifold.png"));
        grid.save_png(&path)?;
        println!("wrote {}", path.display());
    }
    Ok(Outcome::Sampled { npy: out.to_path_buf(), png })
}

/// Prints our figures beside PyTorch's runs (one column each, headed by its output-bias init), with the
/// ratio of our seconds per epoch to theirs.
fn compare_with_torch(ours: &Summary, runs: &[serde_json::Value]) {
    let get = |run: &serde_json::Value, k: &str| run[k].as_f64().unwrap_or(f64::NAN);
    let mut header = format!("{:<22} {:>12}", "", "glimpse");
    let (mut seconds, mut ratio, mut loss) = (
        format!("{:<22} {:>12.3}", "seconds per epoch", ours.seconds_per_epoch),
        format!("{:<22} {:>12}", "ratio glimpse/pytorch", ""),
        format!("{:<22} {:>12.4}", format!("test loss ({} ep)", ours.epochs), ours.test_loss),
    );
    for run in runs {
        let init = run["output_bias"].as_str().unwrap_or("pytorch");
        header += &format!(" {:>20}", format!("pytorch ({init})"));
        seconds += &format!(" {:>20.3}", get(run, "seconds_per_epoch"));
        ratio += &format!(" {:>20.2}", ours.seconds_per_epoch / get(run, "seconds_per_epoch"));
        loss += &format!(" {:>20.4}", get(run, "test_loss"));
    }
    println!("{header}\n{seconds}\n{ratio}\n{loss}");
}
