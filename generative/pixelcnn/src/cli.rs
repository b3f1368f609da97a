//! The command line of `examples/pixelcnn_mnist.rs`: the run layer's flags (`--seed`, `--run-dir`,
//! `--resume`, `--eval`, `--config`, `--stop-after`) and every [`Config`] field.

use crate::config::{Config, ModelKind};
use crate::model::{PixelCnn, PixelModel};
use crate::train::{test_binarization, test_nll, test_set, train, Summary, Training};
use crate::PixelError;
use dfdx::prelude::*;
use glimpse::data::{Dataset, Mnist};
use glimpse::run::{Eval, Launch, RunArgs};

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
        }
    };
}

/// Trains, resumes or evaluates, as `args` say.
fn launch(args: &Args, matches: &clap::ArgMatches) -> Result<Outcome, PixelError> {
    let defaults = Config::default();
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
