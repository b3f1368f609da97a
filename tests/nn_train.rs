//! Conv layers as first-class dfdx modules: trained by a dfdx optimizer inside module tuples
//! (with dfdx's BatchNorm2D), and saved/loaded with safetensors.

use dfdx::optim::Adam;
use dfdx::prelude::*;
use glimpse::nn::builders::*;

type Classifier = (
    (Conv2D<1, 8, 3, 1, 1>, dfdx::nn::builders::BatchNorm2D<8>, ReLU),
    (Conv2D<8, 8, 3, 2, 1>, ReLU),
    FlattenTo<128>,
    Linear<128, 2>,
);

/// 8x8 images: class 1 has a bright vertical bar, class 0 a horizontal one, plus noise.
#[allow(clippy::type_complexity)]
fn batch(dev: &Cpu, n: usize, seed: u64) -> (Tensor<(usize, Const<1>, usize, usize), f32, Cpu>, Vec<usize>) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let mut data = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let label = (next() < 0.5) as usize;
        let pos = (next() * 8.0) as usize % 8;
        for i in 0..8 {
            for j in 0..8 {
                let on = if label == 1 { j == pos } else { i == pos };
                data.push(if on { 1.0 } else { 0.0 } + 0.3 * (next() - 0.5));
            }
        }
        labels.push(label);
    }
    (dev.tensor_from_vec(data, (n, Const::<1>, 8, 8)), labels)
}

fn accuracy(logits: &[f32], labels: &[usize]) -> f32 {
    let correct = labels.iter().enumerate().filter(|(i, &l)| (logits[2 * i + 1] > logits[2 * i]) as usize == l).count();
    correct as f32 / labels.len() as f32
}

#[test]
fn conv_net_trains_with_adam_and_round_trips_safetensors() {
    let dev = Cpu::seed_from_u64(0);
    let mut model = dev.build_module::<Classifier, f32>();
    let mut grads = model.alloc_grads();
    let mut opt = Adam::new(&model, AdamConfig { lr: 3e-3, ..Default::default() });
    for step in 0..60 {
        let (x, labels) = batch(&dev, 32, step);
        let targets: Vec<f32> = labels.iter().flat_map(|&l| [(l == 0) as u8 as f32, (l == 1) as u8 as f32]).collect();
        let y = dev.tensor_from_vec(targets, (32, Const::<2>));
        let logits = model.forward_mut(x.traced(grads));
        let loss = cross_entropy_with_logits_loss(logits, y);
        grads = loss.backward();
        opt.update(&mut model, &grads).expect("update");
        model.zero_grads(&mut grads);
    }
    let (x, labels) = batch(&dev, 200, 999);
    let logits = model.forward(x.clone()).as_vec();
    let acc = accuracy(&logits, &labels);
    assert!(acc >= 0.95, "conv classifier reached only {acc} accuracy");

    let path = std::env::temp_dir().join(format!("glimpse-nn-{}.safetensors", std::process::id()));
    model.save_safetensors(&path).expect("save");
    let mut loaded = dev.build_module::<Classifier, f32>();
    assert_ne!(loaded.forward(x.clone()).as_vec(), logits);
    loaded.load_safetensors(&path).expect("load");
    assert_eq!(loaded.forward(x.clone()).as_vec(), logits, "reloaded model differs");

    // Loading into a different architecture is an error, not a panic.
    let mut other = dev.build_module::<(Conv2D<1, 4, 3, 1, 1>, Flatten), f32>();
    assert!(other.load_safetensors(&path).is_err());
    std::fs::remove_file(&path).ok();
}

#[test]
fn unflatten_feeds_a_decoder() {
    let dev = Cpu::default();
    type Decoder = (Linear<4, 128>, Unflatten<8, 4, 4>, ConvTrans2D<8, 1, 4, 2, 1>, Sigmoid);
    let m = dev.build_module::<Decoder, f32>();
    let z: Tensor<(usize, Const<4>), f32, Cpu> = dev.sample_normal_like(&(5, Const));
    let y = m.forward(z.leaky_trace());
    assert_eq!(y.shape(), &(5, Const::<1>, 8, 8));
    let g = y.sum().backward();
    assert!(g.get(&m.2.weight).as_vec().iter().any(|v| *v != 0.0));
}

#[test]
fn vae_style_encoder_and_decoder_shapes() {
    let dev = Cpu::default();
    type Encoder = ((Conv2D<1, 32, 4, 2, 1>, ReLU), (Conv2D<32, 64, 4, 2, 1>, ReLU), FlattenTo<3136>, Linear<3136, 20>);
    type Decoder =
        (Linear<20, 3136>, Unflatten<64, 7, 7>, (ConvTrans2D<64, 32, 4, 2, 1>, ReLU), ConvTrans2D<32, 1, 4, 2, 1>);
    let enc = dev.build_module::<Encoder, f32>();
    let dec = dev.build_module::<Decoder, f32>();
    let x: Tensor<(usize, Const<1>, usize, usize), f32, Cpu> = dev.sample_uniform_like(&(3, Const, 28, 28));
    let z = enc.forward(x.leaky_trace());
    assert_eq!(z.shape(), &(3, Const::<20>));
    let y = dec.forward(z);
    assert_eq!(y.shape(), &(3, Const::<1>, 28, 28));
    let g = y.square().mean().backward();
    assert!(g.get(&enc.0 .0.weight).as_vec().iter().any(|v| *v != 0.0), "no gradient reached the encoder");
}
