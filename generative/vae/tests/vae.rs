//! The VAE's pieces against independent computations, and short real training runs on MNIST.

use dfdx::prelude::*;
use glimpse::data::{Dataset, Loader, Mnist, View};
use glimpse::run::Checkpoint;
use glimpse_vae::figures::reconstruct;
use glimpse_vae::loss::{kl_divergence, negative_elbo};
use glimpse_vae::train::evaluate;
use glimpse_vae::{iw, log_odds, Config, ConvVae, MlpVae, Trainer, Training, VaeModel};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

/// MNIST, or `None` (with a note) when its files are absent; any other data error fails the test.
fn mnist() -> Option<Mnist> {
    match Mnist::load_with(Dataset::Mnist, None, false) {
        Ok(m) => Some(m),
        Err(e @ (glimpse::data::DataError::MissingDir { .. } | glimpse::data::DataError::MissingFile { .. })) => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn closed_form_kl_equals_a_monte_carlo_estimate() {
    let dev = Cpu::seed_from_u64(0);
    let (mu, logvar) = ([0.3f32, -1.2, 0.8, 0.0], [-0.5f32, 0.4, -1.5, 0.0]);
    let kl = kl_divergence(
        dev.tensor_from_vec(mu.to_vec(), (1, Const::<4>)),
        dev.tensor_from_vec(logvar.to_vec(), (1, Const::<4>)),
    );
    let kl = kl.as_vec()[0] as f64;
    // KL = E_q[log q(z) - log p(z)], z = mu + sigma eps; the constants cancel.
    let mut rng = StdRng::seed_from_u64(1);
    let n = 400_000;
    let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
    for _ in 0..n {
        let mut term = 0.0f64;
        for j in 0..4 {
            let eps: f64 = rng.sample(StandardNormal);
            let z = mu[j] as f64 + (0.5 * logvar[j] as f64).exp() * eps;
            term += -0.5 * eps * eps - 0.5 * logvar[j] as f64 + 0.5 * z * z;
        }
        sum += term;
        sum_sq += term * term;
    }
    let mean = sum / n as f64;
    let std_err = ((sum_sq / n as f64 - mean * mean) / n as f64).sqrt();
    assert!((kl - mean).abs() < 4.0 * std_err, "closed form {kl} vs Monte Carlo {mean} ± {std_err}");
    assert!(kl > 1.0, "a KL of {kl} would make this test too weak");
}

#[test]
fn loss_falls_on_a_thousand_images_within_seconds() {
    let Some(data) = mnist() else { return };
    let (train, test) = (data.train.take(1000), data.test.take(1000));
    let dev = Cpu::seed_from_u64(0);
    let mut trainer = Trainer::<20, MlpVae<20>>::new(MlpVae::<20>::build(&dev), 1e-3, 0, &dev);
    let before = evaluate(&trainer.model, &test, 128, View::Grey, 0, &dev);
    let mut loader = Loader::new(128, View::Grey, 0);
    let mut epoch_losses = Vec::new();
    for _ in 0..10 {
        let total: f32 = loader.epoch(&train, &dev).map(|b| trainer.step(b.images).unwrap()).sum();
        epoch_losses.push(total / train.len() as f32);
    }
    let after = evaluate(&trainer.model, &test, 128, View::Grey, 0, &dev);
    eprintln!("test loss {before:.1} -> {after:.1}; epoch losses {epoch_losses:?}");
    // An untrained decoder gives ~784 ln 2 = 543 nats; 80 steps on 1,000 images reach well under 250.
    assert!(before > 500.0, "untrained loss {before}");
    assert!(
        after < 250.0 && epoch_losses[9] < 0.5 * epoch_losses[0],
        "test loss {before} -> {after}, epochs {epoch_losses:?}"
    );
}

#[test]
fn data_mean_output_bias_starts_from_the_pixel_marginals() {
    let Some(data) = mnist() else { return };
    let (train, test) = (data.train.take(5000), data.test.take(1000));
    let mean = train.mean_image(View::Grey);
    for model in [MlpVae::<20>::build(&Cpu::seed_from_u64(0)), MlpVae::<20>::build(&Cpu::seed_from_u64(1))] {
        let dev = Cpu::seed_from_u64(0);
        let before = evaluate(&model, &test, 128, View::Grey, 0, &dev);
        let mut model = model;
        model.init_output_bias(&mean);
        let bias = model.1 .2.bias.as_vec();
        assert!(bias.iter().zip(&mean).all(|(&b, &p)| b == log_odds(p)));
        assert!(bias.iter().all(|b| b.abs() <= 6.91), "clipped to [0.001, 0.999]");
        // Independent pixels with the training marginals score ~201 nats on test images; the untrained
        // decoder's outputs stay near those marginals, far below the ~543 nats of grey 0.5 everywhere.
        let after = evaluate(&model, &test, 128, View::Grey, 0, &dev);
        eprintln!("untrained test loss {before:.1} -> {after:.1}");
        assert!(before > 500.0 && after < 215.0, "untrained test loss {before} -> {after} with the data-mean bias");
    }
    let mut conv = ConvVae::<20>::build(&Cpu::seed_from_u64(0));
    conv.init_output_bias(&mean);
    let overall = mean.iter().sum::<f32>() / 784.0;
    assert_eq!(conv.1 .1 .2.bias.as_vec(), vec![log_odds(overall)]);
}

#[test]
fn training_is_reproducible_with_a_seed() {
    let Some(data) = mnist() else { return };
    let train = data.train.take(512);
    let run = |seed: u64| {
        let dev = Cpu::seed_from_u64(seed);
        let mut trainer = Trainer::<20, MlpVae<20>>::new(MlpVae::<20>::build(&dev), 1e-3, seed, &dev);
        let mut loader = Loader::new(128, View::Stochastic, seed);
        loader.epoch(&train, &dev).map(|b| trainer.step(b.images).unwrap()).collect::<Vec<f32>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

/// The noise of a step is the trainer's own: another dfdx device (with another generator) gives
/// the same losses, and saving then loading the state continues the same sequence of steps.
#[test]
fn a_saved_training_state_continues_exactly() {
    let Some(data) = mnist() else { return };
    let train = data.train.take(600);
    let config = Config { batch_size: 100, data_view: glimpse_vae::DataView::Stochastic, ..Config::default() };
    let epoch = |s: &mut Training<20, MlpVae<20>>, dev: &Cpu| -> Vec<f32> {
        let Training { trainer, loader, .. } = s;
        loader.epoch(&train, dev).map(|b| trainer.step(b.images).unwrap()).collect()
    };
    let dev = Cpu::seed_from_u64(3);
    let mut whole = Training::<20, MlpVae<20>>::new(&config, &train, 3, &dev);
    let first = epoch(&mut whole, &dev);
    let dir = std::env::temp_dir().join(format!("glimpse-vae-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    whole.save(&dir).unwrap();
    let second = epoch(&mut whole, &dev);

    // Built from another seed on a device in another state, then loaded.
    let other = Cpu::seed_from_u64(99);
    let mut resumed = Training::<20, MlpVae<20>>::new(&config, &train, 4, &other);
    let x = Loader::sequential(16, View::Grey).epoch(&data.test, &dev).next().unwrap().images;
    assert_ne!(reconstruct(&resumed.trainer.model, x.clone()), reconstruct(&whole.trainer.model, x.clone()));
    resumed.load(&dir).unwrap();
    let _: Tensor<Rank1<100>, f32, Cpu> = other.sample_normal(); // the device's own generator plays no part
    assert_eq!(epoch(&mut resumed, &other), second);
    assert_ne!(first, second);
    assert_eq!(reconstruct(&resumed.trainer.model, x.clone()), reconstruct(&whole.trainer.model, x));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn importance_weighted_bound_agrees_with_the_elbo_and_tightens_with_k() {
    let Some(data) = mnist() else { return };
    let dev = Cpu::seed_from_u64(2);
    let mut trainer = Trainer::<20, MlpVae<20>>::new(MlpVae::<20>::build(&dev), 1e-3, 0, &dev);
    let train = data.train.take(2048);
    let mut loader = Loader::new(128, View::Stochastic, 2);
    for _ in 0..2 {
        for batch in loader.epoch(&train, &dev) {
            trainer.step(batch.images).unwrap();
        }
    }
    let test = data.test.take(100).binarized_stochastic(0);
    let x = Loader::sequential(100, View::Threshold(0.5)).epoch(&test, &dev).next().unwrap().images;
    // The ELBO averaged over many noise draws, against the k = 1 estimate (an unbiased ELBO sample).
    let draws = 50;
    let elbo: f64 = (0..draws)
        .map(|_| {
            -negative_elbo(&trainer.model, x.clone(), dev.sample_normal_like(&(100, Const::<20>))).array() as f64
                / 100.0
        })
        .sum::<f64>()
        / draws as f64;
    let k1: f64 = (0..draws).map(|s| iw::iw_log_likelihood(&trainer.model, &test, 1, s, &dev, |_| {})).sum::<f64>()
        / draws as f64;
    assert!((k1 - elbo).abs() < 0.01 * elbo.abs(), "k=1 {k1} vs ELBO {elbo}");
    let k100 = iw::iw_log_likelihood(&trainer.model, &test, 100, 7, &dev, |_| {});
    eprintln!("ELBO {elbo:.2}, IW k=1 {k1:.2}, IW k=100 {k100:.2}");
    assert!(k100 > elbo + 1.0, "IW k=100 {k100} should be tighter than the ELBO {elbo}");
    assert!(k100 < 0.0);
    let _ = trainer.model.encode(x);
}

#[test]
fn conv_vae_loss_falls_on_a_thousand_images() {
    let Some(data) = mnist() else { return };
    let (train, test) = (data.train.take(1000), data.test.take(500));
    let dev = Cpu::seed_from_u64(0);
    let mut trainer = Trainer::<20, ConvVae<20>>::new(ConvVae::<20>::build(&dev), 1e-3, 0, &dev);
    let before = evaluate(&trainer.model, &test, 250, View::Grey, 0, &dev);
    let mut loader = Loader::new(128, View::Grey, 0);
    for _ in 0..4 {
        for batch in loader.epoch(&train, &dev) {
            assert!(trainer.step(batch.images).unwrap().is_finite());
        }
    }
    let after = evaluate(&trainer.model, &test, 250, View::Grey, 0, &dev);
    eprintln!("conv VAE test loss {before:.1} -> {after:.1}");
    assert!(before > 500.0 && after < 280.0, "test loss {before} -> {after}");
}
