//! The command line of `examples/ram_mnist.rs`: the run layer's flags (`--seed`, `--run-dir`,
//! `--resume`, `--eval`, `--config`, `--stop-after`) and every [`Config`] field.

use crate::config::{Config, CoreKind};
use crate::model::{Core, LstmCore, Ram, RnnCore};
use crate::train::{test_error, test_set, train, Summary, MODEL_FILE};
use crate::RamError;
use dfdx::prelude::*;
use glimpse::data::{Dataset, Mnist};
use glimpse::run::{Eval, Launch, RunArgs};

/// The example's name: the default run directory's prefix.
pub const EXAMPLE: &str = "ram_mnist";

/// Train the Recurrent Attention Model on an MNIST task, continue a run, or evaluate one.
#[derive(clap::Parser, Debug)]
#[command(about = "Train the Recurrent Attention Model (Mnih et al. 2014) on MNIST tasks, or evaluate a trained one")]
pub struct Args {
    /// Seed, run directory, resume, eval, config file, stop-after.
    #[command(flatten)]
    pub run: RunArgs,
    /// Hyperparameters.
    #[command(flatten)]
    pub config: Config,
}

/// What a command line did: a finished run's summary, a stop, or an evaluation.
pub type Outcome = glimpse::run::Outcome<Summary, serde_json::Value>;

/// Parses the process's command line (`--help` and flag errors exit, as clap does) and runs it.
pub fn run_command_line() -> Result<Outcome, RamError> {
    let (args, matches) = glimpse::run::parse_command_line::<Args>(EXAMPLE);
    launch(&args, &matches)
}

/// [`run_command_line`] on `args` (the first is the program name); a flag error is returned.
pub fn run_with_args(args: &[&str]) -> Result<Outcome, RamError> {
    let (args, matches) = glimpse::run::parse_args::<Args>(EXAMPLE, args).map_err(RamError::Config)?;
    launch(&args, &matches)
}

/// Runs `$body` with `$c` bound to the configured core's type.
macro_rules! dispatch {
    ($config:expr, $c:ident => $body:expr) => {
        match $config.core {
            CoreKind::Rnn => {
                type $c = RnnCore<f32, Cpu>;
                $body
            }
            CoreKind::Lstm => {
                type $c = LstmCore<f32, Cpu>;
                $body
            }
        }
    };
}

/// Trains, resumes or evaluates, as `args` say.
fn launch(args: &Args, matches: &clap::ArgMatches) -> Result<Outcome, RamError> {
    match Launch::new(EXAMPLE, &args.run, &args.config, &Config::default(), matches)? {
        Launch::Train(run) => {
            let (config, done) = (run.config.clone(), run.done_at_start());
            let summary = dispatch!(config, C => in_pool(config.threads, move || train::<C>(run)))?;
            Ok(summary.map_or(Outcome::Stopped { done }, Outcome::Finished))
        }
        Launch::Eval(eval) => dispatch!(eval.config, C => in_pool(eval.config.threads, || evaluate_run::<C>(&eval))),
    }
}

/// Runs `f` on a rayon pool of `threads` threads that the calling thread joins.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> Result<R, RamError> + Send) -> Result<R, RamError> {
    glimpse::nn::in_thread_pool(Some(threads), f)
        .map_err(|e| RamError::Config(format!("cannot start {threads} threads: {e}")))?
}

/// `--eval`: the test error of the checkpoint (on `--test-images`/`--test-labels` when given),
/// its passes seeded by `--seed` (a run's own seed gives its summary's figure).
fn evaluate_run<C: Core>(eval: &Eval<Config>) -> Result<Outcome, RamError> {
    let (cfg, dev) = (&eval.config, Cpu::seed_from_u64(eval.seed));
    let retina = cfg.retina().map_err(RamError::Config)?;
    let mut model = Ram::<C>::new(&dev, &retina, &mut glimpse::generative::stream(eval.seed, 0));
    glimpse::checkpoint::load_weights(&mut model, &eval.snapshot.join(MODEL_FILE))?;
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let test = test_set(cfg, &mnist)?;
    let (error, predicted) = test_error(&model, &test, cfg, &retina, cfg.test_samples, eval.seed, &dev);
    let misclassified = predicted.iter().zip(test.labels()).filter(|(p, y)| p != y).count();
    Ok(Outcome::Evaluated(eval.report(&serde_json::json!({
        "test_error": error,
        "misclassified": misclassified,
        "test_images": test.len(),
        "test_samples": cfg.test_samples,
        "epochs": eval.done,
    }))))
}
