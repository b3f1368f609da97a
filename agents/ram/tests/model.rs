//! The RAM's networks and loss: the hybrid loss's gradients against their closed forms; the
//! classifier's loss reaches no location or baseline parameter, and REINFORCE reaches only the
//! location network; a task that can only be solved by moving the glimpse is learned with
//! learned locations and not with random ones.

use dfdx::prelude::*;
use glimpse::optim::{Adam, AdamConfig};
use glimpse_ram::loss::predictions;
use glimpse_ram::model::{Episode, Looking, Rows, CLASSES};
use glimpse_ram::{hybrid_loss, Core, LstmCore, Ram, Retina, RnnCore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

type Traced = OwnedTape<f32, Cpu>;

/// Values of `t`'s gradient in `grads` (zeros when nothing flowed into it).
fn grad<S: Shape>(grads: &mut Gradients<f32, Cpu>, t: &Tensor<S, f32, Cpu>) -> Vec<f32> {
    grads.get_or_alloc_mut(t).unwrap().to_vec()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn hybrid_loss_gradients_match_their_closed_forms() {
    let dev = Cpu::seed_from_u64(0);
    let (batch, steps, std) = (5usize, 3usize, 0.1f32);
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    // Log-probabilities whose arg-max is known: images 0, 2 and 3 are classified correctly.
    let labels = [3u8, 7, 1, 1, 9];
    let mut lp = vec![-5.0f32; batch * CLASSES];
    for (i, &y) in labels.iter().enumerate() {
        let guess = if [0, 2, 3].contains(&i) { y } else { (y + 1) % 10 };
        lp[i * CLASSES + guess as usize] = -0.1;
    }
    let reward = [1.0f32, 0.0, 1.0, 1.0, 0.0];
    let log_probs: Rows<CLASSES> = dev.tensor_from_vec(lp, (batch, Const));
    let mut leaves = Vec::new();
    let (mut means, mut drawn, mut baselines) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..steps {
        let mu: Vec<f32> = (0..2 * batch).map(|_| rng.gen_range(-0.9..0.9)).collect();
        let l: Vec<f32> = mu.iter().map(|m| m + rng.gen_range(-0.2..0.2)).collect();
        let b: Vec<f32> = (0..batch).map(|_| rng.gen_range(0.0..1.0)).collect();
        let mean: Rows<2> = dev.tensor_from_vec(mu.clone(), (batch, Const));
        let base: Rows<1> = dev.tensor_from_vec(b.clone(), (batch, Const));
        means.push(mean.clone().leaky_traced());
        baselines.push(base.clone().leaky_traced());
        drawn.push(l.clone());
        leaves.push((mean, base, mu, l, b));
    }
    let episode: Episode<Traced> =
        Episode { log_probs: log_probs.clone().leaky_traced(), means, drawn, baselines, looked_at: Vec::new() };
    let loss = hybrid_loss(episode, &labels, std, &dev);
    assert_eq!(loss.stats.correct, 3);
    let mut grads = loss.total.backward();

    // Cross-entropy: −1/B at each label.
    let mut expected = vec![0.0f32; batch * CLASSES];
    labels.iter().enumerate().for_each(|(i, &y)| expected[i * CLASSES + y as usize] = -1.0 / batch as f32);
    assert!(close(&grad(&mut grads, &log_probs), &expected, 1e-6), "log-probabilities");
    for (mean, base, mu, l, b) in &leaves {
        // REINFORCE: d/dμ −(1/B) Σ (R − b) log N(l; μ, σ²) = −(R − b)(l − μ) / (σ² B).
        let want: Vec<f32> =
            (0..2 * batch).map(|k| -(reward[k / 2] - b[k / 2]) * (l[k] - mu[k]) / (std * std * batch as f32)).collect();
        assert!(close(&grad(&mut grads, mean), &want, 1e-4), "policy mean");
        // Baseline: d/db (1/(B T)) Σ (b − R)² = 2 (b − R) / (B T).
        let want: Vec<f32> = (0..batch).map(|i| 2.0 * (b[i] - reward[i]) / (batch * steps) as f32).collect();
        assert!(close(&grad(&mut grads, base), &want, 1e-5), "baseline");
    }
}

/// A batch of random 28×28 images and labels.
fn batch(dev: &Cpu, n: usize) -> (Vec<f32>, Vec<u8>) {
    let _ = dev;
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    ((0..n * 784).map(|_| rng.gen_range(0.0..1.0)).collect(), (0..n).map(|_| rng.gen_range(0..10)).collect())
}

fn gradient_routes<C: Core>() {
    let dev = Cpu::seed_from_u64(2);
    let retina = Retina::new(8, 2).unwrap();
    let model = Ram::<C>::new(&dev, &retina, &mut ChaCha12Rng::seed_from_u64(3));
    let (images, labels) = batch(&dev, 16);
    let episode = |seed| {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        model.episode::<Traced>(&images, (28, 28), &retina, 4, Looking::Sampled { std: 0.1 }, &mut rng, &dev)
    };
    // The classifier's loss alone.
    let ep = episode(7);
    assert_eq!((ep.means.len(), ep.baselines.len(), ep.looked_at.len()), (3, 3, 4));
    let mut one_hot = vec![0.0f32; 16 * CLASSES];
    labels.iter().enumerate().for_each(|(i, &y)| one_hot[i * CLASSES + y as usize] = 1.0);
    let one_hot = dev.tensor_from_vec(one_hot, (16, Const::<CLASSES>));
    let ce = (ep.log_probs * one_hot).sum::<Rank0, _>().negate();
    let mut g_ce = ce.backward();
    let zero = |g: &[f32]| g.iter().all(|&v| v == 0.0);
    for (name, g) in [
        ("location hidden", grad(&mut g_ce, &model.location.hidden.weight)),
        ("location mean", grad(&mut g_ce, &model.location.mean.weight)),
        ("baseline", grad(&mut g_ce, &model.baseline.weight)),
    ] {
        assert!(zero(&g), "the classifier's loss reached the {name}");
    }
    for (name, g) in [
        ("image branch", grad(&mut g_ce, &model.glimpse.image.weight)),
        ("where branch", grad(&mut g_ce, &model.glimpse.place.weight)),
        ("classifier", grad(&mut g_ce, &model.classifier.weight)),
    ] {
        assert!(!zero(&g), "the classifier's loss did not reach the {name}");
    }
    // REINFORCE and the baseline's error alone (the hybrid loss minus its cross-entropy).
    let ep = episode(7);
    let log_probs = ep.log_probs.retaped::<NoneTape>();
    let detached = Episode { log_probs: log_probs.retaped::<Traced>(), ..ep };
    let mut g_rl = hybrid_loss(detached, &labels, 0.1, &dev).total.backward();
    for (name, g) in [
        ("image branch", grad(&mut g_rl, &model.glimpse.image.weight)),
        ("where branch", grad(&mut g_rl, &model.glimpse.place.weight)),
        ("glimpse output", grad(&mut g_rl, &model.glimpse.what.weight)),
        ("classifier", grad(&mut g_rl, &model.classifier.weight)),
    ] {
        assert!(zero(&g), "REINFORCE or the baseline reached the {name}");
    }
    assert!(!zero(&grad(&mut g_rl, &model.location.mean.weight)), "REINFORCE did not reach the location network");
    assert!(!zero(&grad(&mut g_rl, &model.baseline.weight)), "the baseline is not trained");
    // The same draws give the same episode.
    assert_eq!(episode(7).looked_at, episode(7).looked_at);
    assert_ne!(episode(7).looked_at, episode(8).looked_at);
}

#[test]
fn gradients_flow_where_the_paper_says_for_both_cores() {
    gradient_routes::<RnnCore<f32, Cpu>>();
    gradient_routes::<LstmCore<f32, Cpu>>();
}

/// The corner task: a 32×32 canvas, a bar of 6×2 pixels in its top-right quarter, horizontal
/// (class 0) or vertical (class 1), nothing else. One 8×8 glimpse at a uniform location rarely
/// sees it; the second glimpse, where the model chooses, must go there.
fn corner_batch(rng: &mut ChaCha12Rng, n: usize) -> (Vec<f32>, Vec<u8>) {
    let mut images = vec![0.0f32; n * 32 * 32];
    let labels: Vec<u8> = (0..n).map(|_| rng.gen_range(0..2)).collect();
    for (img, &y) in images.chunks_exact_mut(32 * 32).zip(&labels) {
        for k in 0..6 {
            let (r, c) = if y == 0 { (7, 20 + k) } else { (5 + k, 22) };
            img[r * 32 + c] = 1.0;
            img[(r + 1) * 32 + c + usize::from(y == 1)] = 1.0;
        }
    }
    (images, labels)
}

/// Test accuracy after training on the corner task, looking as `looking` says.
fn corner_accuracy(looking: Looking) -> f64 {
    const STEPS: usize = 1500;
    let std = if let Looking::Sampled { std } = looking { std } else { 1.0 };
    let dev = Cpu::seed_from_u64(9);
    let retina = Retina::new(8, 1).unwrap();
    let mut model = Ram::<RnnCore<f32, Cpu>>::new(&dev, &retina, &mut ChaCha12Rng::seed_from_u64(9));
    let mut opt = Adam::new(&model, AdamConfig { lr: 3e-4, ..Default::default() });
    let mut rng = ChaCha12Rng::seed_from_u64(10);
    for _ in 0..STEPS {
        let (images, labels) = corner_batch(&mut rng, 64);
        let ep = model.episode::<Traced>(&images, (32, 32), &retina, 2, looking, &mut rng, &dev);
        let mut grads = hybrid_loss(ep, &labels, std, &dev).total.backward();
        opt.update(&mut model, &mut grads, None).unwrap();
    }
    let test_looking = if looking == Looking::Random { Looking::Random } else { Looking::Mean };
    let (images, labels) = corner_batch(&mut ChaCha12Rng::seed_from_u64(11), 1000);
    let ep = model.episode::<NoneTape>(&images, (32, 32), &retina, 2, test_looking, &mut rng, &dev);
    let right = predictions(&ep.log_probs.as_vec()).iter().zip(&labels).filter(|(p, y)| p == y).count();
    eprintln!("{looking:?}: the second glimpse at {:?}", ep.looked_at[1][0]);
    right as f64 / labels.len() as f64
}

#[test]
fn the_corner_task_is_learned_by_moving_the_glimpse_and_not_with_random_glimpses() {
    let learned = corner_accuracy(Looking::Sampled { std: 0.25 });
    let random = corner_accuracy(Looking::Random);
    assert!(learned >= 0.95, "learned locations: accuracy {learned}");
    assert!(random <= 0.8, "random locations: accuracy {random}");
}
