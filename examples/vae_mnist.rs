//! A variational autoencoder on MNIST, as PyTorch's `examples/vae` (784-400-20, batch 128, Adam 1e-3).
//! The decoder's output bias starts at the data's log-odds (`--output-bias pytorch` for the example's init).
//!
//! ```sh
//! cargo run --release --example vae_mnist                       # 10 epochs, PNGs + summary.json in runs/
//! cargo run --release --example vae_mnist -- --latent 2         # also the 2-D latent manifold
//! cargo run --release --example vae_mnist -- --data-view stochastic --iw-samples 5000   # log p(x) in nats
//! cargo run --release --example vae_mnist -- --sample runs/vae_mnist-...                # new samples
//! bash benches/vae_compare.sh 10 1                                                   # beside PyTorch
//! ```

use clap::{CommandFactory, FromArgMatches, Parser};
use glimpse::run::{resolve_config, summary_line, RunArgs, RunDir};
use glimpse_vae::train::{self, Arch, Config, Summary};
use glimpse_vae::{ConvVae, MlpVae, VaeError, VaeModel};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(about = "Train a VAE on MNIST (PyTorch's examples/vae), or sample from a trained one")]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    config: Config,
    /// Draw new samples (seeded by --seed) from the checkpoint in this run directory, then exit.
    #[arg(long)]
    sample: Option<PathBuf>,
    /// JSON results of `benches/vae_torch.py --json-out` (repeat for several), printed beside ours with the
    /// ratio of seconds per epoch.
    #[arg(long)]
    compare_torch: Vec<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), VaeError> {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if args.run.resume.is_some() {
        return Err(VaeError::Config(
            "--resume is not supported by vae_mnist (a 10-epoch run takes under a minute); start a new run".into(),
        ));
    }
    if let Some(dir) = args.sample.as_deref().or(args.run.eval.as_deref()) {
        let config: Config = glimpse::checkpoint::load_json(&dir.join("config.json"))?;
        let sample_only = args.sample.is_some();
        return dispatch!(config, Z, M => from_checkpoint::<Z, M>(&config, dir, args.run.seed, sample_only));
    }
    let config = resolve_config(&args.config, &args.config, args.run.config.as_deref(), &matches)?;
    check_built_in(&config)?; // before creating the run directory
    let mut run = RunDir::create("vae_mnist", args.run.run_dir.clone())?;
    run.write_config(&config)?;
    println!("run directory: {}", run.path().display());
    let summary = dispatch!(config, Z, M => train::train::<Z, M>(&config, args.run.seed, &mut run, !args.no_progress))?;
    println!("{}", summary_line(&serde_json::to_value(&summary).expect("summary serializes")));
    if !args.compare_torch.is_empty() {
        compare_with_torch(&summary, &args.compare_torch)?;
    }
    Ok(())
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
            (_, latent) => Err(VaeError::Config(format!(
                "--latent {latent} is not built in for --arch {:?}; use 2, 20 or 50 (mlp), 2 or 20 (conv)",
                $config.arch
            ))),
        }
    };
}
use dispatch;

/// Errors unless the architecture and latent size are among the compiled-in ones.
#[allow(dead_code)] // the macro's Z and M are not needed here
fn check_built_in(config: &Config) -> Result<(), VaeError> {
    dispatch!(config, Z, M => Ok(()))
}

/// Loads the checkpoint of run `dir` and either writes new samples or evaluates it on the test set.
fn from_checkpoint<const Z: usize, M>(config: &Config, dir: &Path, seed: u64, sample_only: bool) -> Result<(), VaeError>
where
    M: VaeModel<Z>
        + dfdx::nn::BuildModule<dfdx::prelude::Cpu, f32>
        + dfdx::nn::LoadFromSafetensors<f32, dfdx::prelude::Cpu>,
{
    use dfdx::prelude::*;
    let dev = Cpu::seed_from_u64(seed);
    let mut model = M::build(&dev);
    glimpse::checkpoint::load_weights(&mut model, &dir.join("checkpoint").join("model.safetensors"))?;
    if sample_only {
        let image = glimpse::image::Image::grid(&train::sample(&model, 64, &dev), 64, 1, 28, 28, 8)?;
        let path = dir.join(format!("samples-seed{seed}.png"));
        image.save_png(&path)?;
        println!("wrote {}", path.display());
        if let Some(images) = train::latent_manifold(&model, 20, &dev) {
            let path = dir.join("manifold.png");
            glimpse::image::Image::grid(&images, 400, 1, 28, 28, 20)?.save_png(&path)?;
            println!("wrote {}", path.display());
        }
    } else {
        let mnist = glimpse::data::Mnist::load(glimpse::data::Dataset::Mnist, config.data_dir.as_deref())?;
        let loss = train::evaluate(&model, &mnist.test, config.batch_size, config.data_view.view(), &dev);
        println!("test_loss={loss:.4}");
    }
    Ok(())
}

/// Prints our figures beside PyTorch's runs (one column each, headed by its output-bias init), with the
/// ratio of our seconds per epoch to theirs.
fn compare_with_torch(ours: &Summary, paths: &[PathBuf]) -> Result<(), VaeError> {
    let runs: Vec<serde_json::Value> =
        paths.iter().map(|p| glimpse::checkpoint::load_json(p)).collect::<Result<_, _>>()?;
    let get = |run: &serde_json::Value, k: &str| run[k].as_f64().unwrap_or(f64::NAN);
    let mut header = format!("{:<22} {:>12}", "", "glimpse");
    let (mut seconds, mut ratio, mut loss) = (
        format!("{:<22} {:>12.3}", "seconds per epoch", ours.seconds_per_epoch),
        format!("{:<22} {:>12}", "ratio glimpse/pytorch", ""),
        format!("{:<22} {:>12.4}", format!("test loss ({} ep)", ours.epochs), ours.test_loss),
    );
    for run in &runs {
        let init = run["output_bias"].as_str().unwrap_or("pytorch");
        header += &format!(" {:>20}", format!("pytorch ({init})"));
        seconds += &format!(" {:>20.3}", get(run, "seconds_per_epoch"));
        ratio += &format!(" {:>20.2}", ours.seconds_per_epoch / get(run, "seconds_per_epoch"));
        loss += &format!(" {:>20.4}", get(run, "test_loss"));
    }
    println!("{header}\n{seconds}\n{ratio}\n{loss}");
    Ok(())
}
