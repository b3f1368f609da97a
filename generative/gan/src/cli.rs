//! The command line of `examples/gan_mnist.rs`: the run layer's flags (`--seed`, `--run-dir`,
//! `--resume`, `--eval`, `--config`, `--stop-after`), every [`Config`] field, and `--sample RUN`
//! (new images from a checkpoint).

use crate::config::{Config, Objective};
use crate::model::{
    ConditionalDiscriminator, ConditionalGenerator, Discriminator, DiscriminatorNet, Generator, GeneratorNet,
    SnConditionalDiscriminator, SnDiscriminator, PIXELS,
};
use crate::train::{generate, sample_label, stream, train, Stream, Summary, Training};
use crate::GanError;
use dfdx::prelude::*;
use glimpse::data::{Dataset, Loader, Mnist, View};
use glimpse::run::{Eval, Launch, RunArgs};
use std::path::Path;

/// The example's name: the default run directory's prefix.
pub const EXAMPLE: &str = "gan_mnist";

/// Train a DCGAN on MNIST, continue or evaluate a run, or sample from one.
#[derive(clap::Parser, Debug)]
#[command(about = "Train a DCGAN on MNIST, or evaluate or sample from a trained one")]
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
}

/// What a command line did.
pub type Outcome = glimpse::generative::Outcome<Summary>;

/// Parses the process's command line (`--help` and flag errors exit, as clap does) and runs it.
pub fn run_command_line() -> Result<Outcome, GanError> {
    let (args, matches) = glimpse::run::parse_command_line::<Args>(EXAMPLE);
    launch(&args, &matches)
}

/// [`run_command_line`] on `args` (the first is the program name); a flag error is returned.
pub fn run_with_args(args: &[&str]) -> Result<Outcome, GanError> {
    let (args, matches) = glimpse::run::parse_args::<Args>(EXAMPLE, args).map_err(GanError::Config)?;
    launch(&args, &matches)
}

/// Trains, resumes, evaluates or samples, as `args` say.
fn launch(args: &Args, matches: &clap::ArgMatches) -> Result<Outcome, GanError> {
    let defaults = Config::default();
    args.samples.check().map_err(GanError::Config)?;
    if let Some(dir) = &args.samples.sample {
        // A checkpoint read as --eval reads it (its saved config, checked); nothing else is written.
        let run_args = RunArgs { eval: Some(dir.clone()), ..args.run.clone() };
        let Launch::Eval(eval) = Launch::new(EXAMPLE, &run_args, &args.config, &defaults, matches)? else {
            return Err(GanError::Config("--sample reads a run directory".into()));
        };
        let out = glimpse::generative::sample_path(
            args.samples.count(),
            args.samples.out.clone(),
            &eval.dir,
            eval.seed,
            PIXELS,
        )
        .map_err(GanError::Config)?;
        return dispatch!(eval.config, G, D => in_pool(eval.config.threads, || write_samples::<G, D>(&eval, args.samples.count(), &out)));
    }
    match Launch::new(EXAMPLE, &args.run, &args.config, &defaults, matches)? {
        Launch::Train(run) => {
            let config = run.config.clone();
            let summary = dispatch!(config, G, D => in_pool(config.threads, move || train::<G, D>(run)))?;
            Ok(summary.map_or(Outcome::Stopped, Outcome::Finished))
        }
        Launch::Eval(eval) => {
            dispatch!(eval.config, G, D => in_pool(eval.config.threads, || evaluate_run::<G, D>(&eval)))
        }
    }
}

/// Runs `$body` with `$g` and `$d` bound to the generator and discriminator types of the
/// configuration (conditional or not, the objective's discriminator).
macro_rules! dispatch {
    ($config:expr, $g:ident, $d:ident => $body:expr) => {
        match ($config.conditional, $config.objective) {
            (false, Objective::Ns) => {
                type $g = Generator;
                type $d = Discriminator;
                $body
            }
            (false, Objective::Hinge) => {
                type $g = Generator;
                type $d = SnDiscriminator;
                $body
            }
            (true, Objective::Ns) => {
                type $g = ConditionalGenerator;
                type $d = ConditionalDiscriminator;
                $body
            }
            (true, Objective::Hinge) => {
                type $g = ConditionalGenerator;
                type $d = SnConditionalDiscriminator;
                $body
            }
        }
    };
}
use dispatch;

/// Runs `f` on a rayon pool of `threads` threads that the calling thread joins.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> Result<R, GanError> + Send) -> Result<R, GanError> {
    glimpse::nn::in_thread_pool(Some(threads), f)
        .map_err(|e| GanError::Config(format!("cannot start {threads} threads: {e}")))?
}

/// The checkpoint of `eval` (both networks, their optimizers and states).
fn load<G: GeneratorNet, D: DiscriminatorNet>(eval: &Eval<Config>, dev: &Cpu) -> Result<Training<G, D>, GanError> {
    let mut training = Training::<G, D>::new(&eval.config, eval.seed, dev);
    eval.restore(&mut training)?;
    Ok(training)
}

/// `--eval`: the discriminator's mean D(x) on the test images and mean D(G(z)) on as many
/// generated ones (latents of `--seed`, labels [`sample_label`]), both networks in inference mode.
fn evaluate_run<G: GeneratorNet, D: DiscriminatorNet>(eval: &Eval<Config>) -> Result<Outcome, GanError> {
    let (cfg, dev) = (&eval.config, Cpu::seed_from_u64(eval.seed));
    let mut s = load::<G, D>(eval, &dev)?;
    let mnist = Mnist::load(Dataset::Mnist, cfg.data_dir.as_deref())?;
    let sum_d = |s: &mut Training<G, D>, images: Vec<f32>, labels: &[usize]| {
        let n = images.len() / PIXELS;
        let p = s.gan.discriminate(dev.tensor_from_vec(images, (n, Const::<PIXELS>)), labels);
        p.iter().map(|&p| p as f64).sum::<f64>()
    };
    let (mut real, mut count) = (0.0, 0);
    for batch in Loader::sequential(500, View::Grey).epoch::<PIXELS>(&mnist.test, &dev) {
        real += sum_d(&mut s, batch.images.as_vec(), &batch.labels);
        count += batch.len();
    }
    let images = generate(&s.gan.generator, count, &mut stream(eval.seed, Stream::Samples), &dev);
    let labels: Vec<usize> = (0..count).map(sample_label).collect();
    let fake = sum_d(&mut s, images, &labels) / count.max(1) as f64;
    Ok(Outcome::Evaluated(eval.report(&serde_json::json!({
        "d_real_test": real / count.max(1) as f64,
        "d_fake": fake,
        "epochs": eval.done,
    }))))
}

/// `--sample`: `num` images from latents of `--seed` (labels [`sample_label`]), as
/// `uint8 [num, 28, 28]` in `out`, a grid of the first 100 beside it and, when conditional, the
/// labels in `OUT-labels.npy`.
fn write_samples<G: GeneratorNet, D: DiscriminatorNet>(
    eval: &Eval<Config>,
    num: usize,
    out: &Path,
) -> Result<Outcome, GanError> {
    let dev = Cpu::seed_from_u64(eval.seed);
    let s = load::<G, D>(eval, &dev)?;
    let png = crate::train::write_samples(&s.gan.generator, num, eval.seed, out, &dev)?;
    Ok(Outcome::Sampled { npy: out.to_path_buf(), png })
}
