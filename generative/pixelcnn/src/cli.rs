//! The command line of `examples/pixelcnn_mnist.rs`: the run layer's flags (`--seed`, `--run-dir`,
//! `--resume`, `--eval`, `--config`, `--stop-after`), every [`Config`] field, and `--sample RUN`
//! (new images from a checkpoint, `--sampler fast|naive`).

use crate::config::{Config, ModelKind};
use crate::figures::{chunk_for, completion_grid};
use crate::gated::GatedPixelCnn;
use crate::model::{PixelCnn, PixelModel};
use crate::rowlstm::RowLstm;
use crate::sample::{sample, Method};
use crate::train::{test_binarization, test_nll, test_set, train, Summary, Training};
use crate::PixelError;
use dfdx::prelude::*;
use glimpse::data::{Dataset, Mnist};
use glimpse::run::{Eval, Launch, RunArgs};
use std::path::Path;
use std::time::Instant;

/// The example's name: the default run directory's prefix.
pub const EXAMPLE: &str = "pixelcnn_mnist";

/// Train a PixelCNN on dynamically binarised MNIST, continue or evaluate a run.
#[derive(clap::Parser, Debug)]
#[command(about = "Train a PixelCNN on binarised MNIST (exact test NLL in nats), or evaluate a trained one")]
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
    /// The sampler of --sample: `fast` (cached activations, one position per pixel) or `naive`
    /// (a full forward pass per pixel; the same images, much slower) [default: fast].
    #[arg(long, value_enum, requires = "sample")]
    pub sampler: Option<Sampler>,
}

/// The sampler of `--sample`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    /// Cached activations: one position per new pixel.
    Fast,
    /// A full forward pass per pixel.
    Naive,
}

/// What a command line did.
pub type Outcome = glimpse::generative::Outcome<Summary>;

/// Parses the process's command line (`--help` and flag errors exit, as clap does) and runs it.
pub fn run_command_line() -> Result<Outcome, PixelError> {
    let (args, matches) = glimpse::run::parse_command_line::<Args>(EXAMPLE);
    launch(&args, &matches)
}

/// [`run_command_line`] on `args` (the first is the program name); a flag error is returned.
pub fn run_with_args(args: &[&str]) -> Result<Outcome, PixelError> {
    let (args, matches) = glimpse::run::parse_args::<Args>(EXAMPLE, args).map_err(PixelError::Config)?;
    launch(&args, &matches)
}

/// Runs `$body` with `$m` bound to the configured model type.
macro_rules! dispatch {
    ($config:expr, $m:ident => $body:expr) => {
        match $config.model {
            ModelKind::Pixelcnn => {
                type $m = PixelCnn;
                $body
            }
            ModelKind::Gated => {
                type $m = GatedPixelCnn;
                $body
            }
            ModelKind::Rowlstm => {
                type $m = RowLstm;
                $body
            }
        }
    };
}

/// Trains, resumes or evaluates, as `args` say.
fn launch(args: &Args, matches: &clap::ArgMatches) -> Result<Outcome, PixelError> {
    let defaults = Config::default();
    args.samples.check().map_err(PixelError::Config)?;
    if args.sampler.is_some() && args.samples.sample.is_none() {
        return Err(PixelError::Config("--sampler needs --sample RUN".into()));
    }
    if let Some(dir) = &args.samples.sample {
        // A checkpoint read as --eval reads it (its saved config, checked); nothing else is written.
        let run_args = RunArgs { eval: Some(dir.clone()), ..args.run.clone() };
        let Launch::Eval(eval) = Launch::new(EXAMPLE, &run_args, &args.config, &defaults, matches)? else {
            return Err(PixelError::Config("--sample reads a run directory".into()));
        };
        let (num, out) = (args.samples.count(), args.samples.out.clone());
        let out = glimpse::generative::sample_path(num, out, &eval.dir, eval.seed, 784).map_err(PixelError::Config)?;
        let method = match args.sampler {
            Some(Sampler::Naive) => Method::Naive,
            Some(Sampler::Fast) | None => Method::Fast,
        };
        return dispatch!(eval.config, M => in_pool(eval.config.threads, || write_samples::<M>(&eval, num, method, &out)));
    }
    match Launch::new(EXAMPLE, &args.run, &args.config, &defaults, matches)? {
        Launch::Train(run) => {
            let config = run.config.clone();
            let summary = dispatch!(config, M => in_pool(config.threads, move || train::<M>(run)))?;
            Ok(summary.map_or(Outcome::Stopped, Outcome::Finished))
        }
        Launch::Eval(eval) => dispatch!(eval.config, M => in_pool(eval.config.threads, || evaluate_run::<M>(&eval))),
    }
}

/// Runs `f` on a rayon pool of `threads` threads that the calling thread joins.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> Result<R, PixelError> + Send) -> Result<R, PixelError> {
    glimpse::nn::in_thread_pool(Some(threads), f)
        .map_err(|e| PixelError::Config(format!("cannot start {threads} threads: {e}")))?
}

/// The checkpoint of `eval`.
fn load<M: PixelModel>(eval: &Eval<Config>, dev: &Cpu) -> Result<Training<M>, PixelError> {
    let mut training = Training::<M>::new(&eval.config, eval.seed, dev);
    eval.restore(&mut training)?;
    Ok(training)
}

/// `--sample`: `num` images drawn with `method` from the streams of `--seed`, as `uint8 [num, 28,
/// 28]` (0 or 255) in `out`, a grid of the first 64 beside it and completions of test digits.
fn write_samples<M: PixelModel>(
    eval: &Eval<Config>,
    num: usize,
    method: Method,
    out: &Path,
) -> Result<Outcome, PixelError> {
    let dev = Cpu::seed_from_u64(eval.seed);
    let s = load::<M>(eval, &dev)?;
    let clock = Instant::now();
    let positions = s.trainer.model.positions((28, 28));
    let images = sample(&positions, method, num, eval.seed, chunk_for(num));
    let seconds = clock.elapsed().as_secs_f64();
    let png = glimpse::generative::write_samples(out, &images, 28)?;
    println!("drew {num} images in {seconds:.2} s ({method:?} sampler, {} threads)", rayon::current_num_threads());
    println!("wrote {} and {}", out.display(), png.display());
    let mnist = Mnist::load(Dataset::Mnist, eval.config.data_dir.as_deref())?;
    let completions =
        out.with_file_name(format!("{}-completions.png", out.file_stem().unwrap_or_default().to_string_lossy()));
    completion_grid(&s.trainer.model, &test_set(&mnist.test, &eval.config), eval.seed)?.save_png(&completions)?;
    println!("wrote {}", completions.display());
    Ok(Outcome::Sampled { npy: out.to_path_buf(), png })
}

/// `--eval`: the exact test NLL of the checkpoint, nats.
fn evaluate_run<M: PixelModel>(eval: &Eval<Config>) -> Result<Outcome, PixelError> {
    let (cfg, dev) = (&eval.config, Cpu::seed_from_u64(eval.seed));
    let s = load::<M>(eval, &dev)?;
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let nll = test_nll(&s.trainer.model, &test_set(&mnist.test, cfg), &dev);
    Ok(Outcome::Evaluated(eval.report(&serde_json::json!({
        "test_nll_nats": nll,
        "test_binarization": test_binarization(cfg),
        "epochs": eval.done,
    }))))
}
