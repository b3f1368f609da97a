//! The GAN's gradients against central finite differences: the discriminator's loss (real and
//! generated batches, training-mode batch norm) with respect to every parameter tensor of the
//! discriminator, and the generator's loss through the discriminator with respect to every
//! parameter tensor of the generator, for both objectives, unconditional and class-conditional
//! (the generator's one-hot input, the projection discriminator's embedding).

use dfdx::prelude::*;
use glimpse_gan::model::{Images, Latents, LATENT, PIXELS};
use glimpse_gan::train::{d_loss, g_loss};
use glimpse_gan::{
    ConditionalDiscriminator, ConditionalGenerator, Discriminator, DiscriminatorNet, Generator, GeneratorNet,
    Objective, SnConditionalDiscriminator, SnDiscriminator,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

const BATCH: usize = 6;

/// The labels of the real images and of the generated ones (classes 0 and 6 in neither).
const REAL_LABELS: [usize; BATCH] = [3, 1, 4, 1, 5, 9];
const FAKE_LABELS: [usize; BATCH] = [2, 7, 1, 8, 2, 8];

fn nets<G: GeneratorNet, D: DiscriminatorNet>(dev: &Cpu) -> (G, D) {
    let mut rng = StdRng::seed_from_u64(5);
    let mut g = dev.build_module::<G::Builder, f32>();
    g.dcgan_init(&mut rng);
    let mut d = dev.build_module::<D::Builder, f32>();
    d.dcgan_init(&mut rng);
    (g, d)
}

/// Larger first-layer weights than the N(0, 0.02) init, so that every gradient is well above f32 noise.
fn scale<S: Shape>(w: &mut Tensor<S, f32, Cpu>) {
    let v: Vec<f32> = w.as_vec().iter().map(|x| x * 10.0).collect();
    w.copy_from(&v);
}

fn data(dev: &Cpu) -> (Images, Latents) {
    let mut rng = StdRng::seed_from_u64(9);
    let real: Vec<f32> = (0..BATCH * PIXELS).map(|_| rng.gen::<f32>()).collect();
    let z: Vec<f32> = (0..BATCH * LATENT).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect();
    (dev.tensor_from_vec(real, (BATCH, Const::<PIXELS>)), dev.tensor_from_vec(z, (BATCH, Const::<LATENT>)))
}

/// The discriminator's loss, real and generated terms summed, with `tape` on the real images'
/// pass and then on the generated ones' (as `Gan::step` does); returns the loss and gradients.
fn discriminator_loss<D: DiscriminatorNet>(
    d: &mut D,
    real: &Images,
    fake: &Images,
    objective: Objective,
) -> (f32, Gradients<f32, Cpu>) {
    let grads = d.alloc_grads();
    let loss_real = d_loss(objective, d.forward_train(real.clone().traced(grads), &REAL_LABELS), true);
    let value = loss_real.array();
    let grads = loss_real.backward();
    let loss_fake = d_loss(objective, d.forward_train(fake.clone().traced(grads), &FAKE_LABELS), false);
    (value + loss_fake.array(), loss_fake.backward())
}

fn generator_loss<G: GeneratorNet, D: DiscriminatorNet>(
    g: &mut G,
    d: &mut D,
    z: &Latents,
    objective: Objective,
) -> (f32, Gradients<f32, Cpu>) {
    let grads = g.alloc_grads();
    let fake = g.forward_train(z.clone(), &FAKE_LABELS, grads);
    let loss = g_loss(objective, d.forward_train(fake, &FAKE_LABELS));
    (loss.array(), loss.backward())
}

/// Generated images of the unconditional generator (inputs of the discriminators' checks).
fn fake_images(z: &Latents, dev: &Cpu) -> Images {
    let (mut g, _) = nets::<Generator, Discriminator>(dev);
    g.forward_train(z.clone(), &[], g.alloc_grads()).retaped()
}

/// Compares the gradient of `loss` at the 4 coordinates of the tensor `get` picks with the
/// largest analytic gradient, and 2 more, against central differences.
fn check<N, S: Shape>(
    net: &mut N,
    name: &str,
    get: fn(&mut N) -> &mut Tensor<S, f32, Cpu>,
    grads: &Gradients<f32, Cpu>,
    loss: &mut dyn FnMut(&mut N) -> f32,
) {
    let analytic = grads.get(&*get(net)).as_vec();
    let base = get(net).as_vec();
    let mut order: Vec<usize> = (0..base.len()).collect();
    order.sort_by(|&a, &b| analytic[b].abs().total_cmp(&analytic[a].abs()));
    let mut picks: Vec<usize> = order.iter().copied().take(4).collect();
    picks.extend([order[order.len() / 3], order[order.len() / 7]]);
    assert!(analytic[picks[0]].abs() > 1e-3, "{name}: the largest gradient is only {}", analytic[picks[0]]);
    for i in picks {
        let h = 1e-3f32.max(base[i].abs() * 1e-2);
        let mut v = base.clone();
        v[i] = base[i] + h;
        get(net).copy_from(&v);
        let up = loss(net);
        v[i] = base[i] - h;
        get(net).copy_from(&v);
        let down = loss(net);
        get(net).copy_from(&base);
        let fd = (up - down) / (2.0 * h);
        // f32, and LeakyReLU/ReLU kinks crossed by the step (exact without them: measured 0.1%):
        // 10% catches a wrong term, sign or factor; the layers alone are checked in f64 elsewhere.
        let tol = 0.1 * analytic[i].abs() + 1e-3;
        assert!((fd - analytic[i]).abs() <= tol, "{name}[{i}]: finite difference {fd}, gradient {}", analytic[i]);
    }
}

/// The batch-norm discriminator under the non-saturating loss, and the spectral-norm one's
/// network (without the normalisation, checked in `spectral.rs`) under the hinge loss.
#[test]
fn discriminator_gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(0);
    let (real, z) = data(&dev);
    let fake = fake_images(&z, &dev);
    let (_, mut d) = nets::<Generator, Discriminator>(&dev);
    scale(&mut d.0 .1.weight);
    let (_, grads) = discriminator_loss(&mut d, &real, &fake, Objective::Ns);
    let mut loss = |d: &mut Discriminator| discriminator_loss(d, &real, &fake, Objective::Ns).0;
    check(&mut d, "conv1.weight", |d| &mut d.0 .1.weight, &grads, &mut loss);
    check(&mut d, "conv1.bias", |d| &mut d.0 .1.bias, &grads, &mut loss);
    check(&mut d, "conv2.weight", |d| &mut d.1 .0.weight, &grads, &mut loss);
    check(&mut d, "bn.scale", |d| &mut d.1 .1.scale, &grads, &mut loss);
    check(&mut d, "bn.bias", |d| &mut d.1 .1.bias, &grads, &mut loss);
    check(&mut d, "dense.weight", |d| &mut d.2 .1.weight, &grads, &mut loss);

    let (_, mut d) = nets::<Generator, SnDiscriminator>(&dev);
    scale(&mut d.0 .1.weight);
    scale(&mut d.1 .0.weight);
    let (_, grads) = discriminator_loss(&mut d, &real, &fake, Objective::Hinge);
    let mut loss = |d: &mut SnDiscriminator| discriminator_loss(d, &real, &fake, Objective::Hinge).0;
    check(&mut d, "sn conv1.weight", |d| &mut d.0 .1.weight, &grads, &mut loss);
    check(&mut d, "sn conv2.weight", |d| &mut d.1 .0.weight, &grads, &mut loss);
    check(&mut d, "sn conv2.bias", |d| &mut d.1 .0.bias, &grads, &mut loss);
    check(&mut d, "sn dense.weight", |d| &mut d.2 .1.weight, &grads, &mut loss);
}

/// The projection discriminators: the features, the head and the class embedding.
#[test]
fn conditional_discriminator_gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(0);
    let (real, z) = data(&dev);
    let fake = fake_images(&z, &dev);
    let (_, mut d) = nets::<Generator, ConditionalDiscriminator>(&dev);
    scale(&mut d.features.0 .1.weight);
    scale(&mut d.embed);
    let (_, grads) = discriminator_loss(&mut d, &real, &fake, Objective::Ns);
    let mut loss = |d: &mut ConditionalDiscriminator| discriminator_loss(d, &real, &fake, Objective::Ns).0;
    check(&mut d, "conv1.weight", |d| &mut d.features.0 .1.weight, &grads, &mut loss);
    check(&mut d, "conv2.weight", |d| &mut d.features.1 .0.weight, &grads, &mut loss);
    check(&mut d, "bn.scale", |d| &mut d.features.1 .1.scale, &grads, &mut loss);
    check(&mut d, "head.weight", |d| &mut d.head.weight, &grads, &mut loss);
    check(&mut d, "head.bias", |d| &mut d.head.bias, &grads, &mut loss);
    check(&mut d, "embed", |d| &mut d.embed, &grads, &mut loss);
    // A class no image has gets no gradient.
    let unused = &grads.get(&d.embed).as_vec()[6 * 6272..7 * 6272];
    assert!(unused.iter().all(|&g| g == 0.0), "class 6 is in no batch");

    let (_, mut d) = nets::<Generator, SnConditionalDiscriminator>(&dev);
    scale(&mut d.features.0 .1.weight);
    scale(&mut d.embed);
    let (_, grads) = discriminator_loss(&mut d, &real, &fake, Objective::Hinge);
    let mut loss = |d: &mut SnConditionalDiscriminator| discriminator_loss(d, &real, &fake, Objective::Hinge).0;
    check(&mut d, "sn conv1.weight", |d| &mut d.features.0 .1.weight, &grads, &mut loss);
    check(&mut d, "sn head.weight", |d| &mut d.head.weight, &grads, &mut loss);
    check(&mut d, "sn embed", |d| &mut d.embed, &grads, &mut loss);
}

/// The conditional generator through the projection discriminator: the dense layer's weights
/// include the one-hot inputs' columns.
#[test]
fn conditional_generator_gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(0);
    for objective in [Objective::Ns, Objective::Hinge] {
        let (mut g, mut d) = nets::<ConditionalGenerator, ConditionalDiscriminator>(&dev);
        scale(&mut d.features.0 .1.weight);
        scale(&mut d.embed);
        let (_, z) = data(&dev);
        let (_, grads) = generator_loss(&mut g, &mut d, &z, objective);
        // The one-hot columns (100..110) of the dense weight, row-major (6272, 110).
        let dense = grads.get(&g.0 .0.weight).as_vec();
        assert!(dense.chunks(110).any(|row| row[100..].iter().any(|&w| w != 0.0)), "the labels' columns learn");
        let mut loss = |g: &mut ConditionalGenerator| generator_loss(g, &mut d, &z, objective).0;
        check(&mut g, "dense.weight", |g| &mut g.0 .0.weight, &grads, &mut loss);
        check(&mut g, "bn1.scale", |g| &mut g.0 .2.scale, &grads, &mut loss);
        check(&mut g, "up1.weight", |g| &mut g.1 .0.weight, &grads, &mut loss);
        check(&mut g, "up2.bias", |g| &mut g.2 .0.bias, &grads, &mut loss);
    }
}

#[test]
fn generator_gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(0);
    for objective in [Objective::Ns, Objective::Hinge] {
        let (mut g, mut d) = nets::<Generator, Discriminator>(&dev);
        scale(&mut d.0 .1.weight);
        let (_, z) = data(&dev);
        let (_, grads) = generator_loss(&mut g, &mut d, &z, objective);
        let mut loss = |g: &mut Generator| generator_loss(g, &mut d, &z, objective).0;
        check(&mut g, "dense.weight", |g| &mut g.0 .0.weight, &grads, &mut loss);
        check(&mut g, "bn1.scale", |g| &mut g.0 .2.scale, &grads, &mut loss);
        check(&mut g, "bn1.bias", |g| &mut g.0 .2.bias, &grads, &mut loss);
        check(&mut g, "up1.weight", |g| &mut g.1 .0.weight, &grads, &mut loss);
        check(&mut g, "bn2.scale", |g| &mut g.1 .1.scale, &grads, &mut loss);
        check(&mut g, "up2.weight", |g| &mut g.2 .0.weight, &grads, &mut loss);
        check(&mut g, "up2.bias", |g| &mut g.2 .0.bias, &grads, &mut loss);
    }
}
