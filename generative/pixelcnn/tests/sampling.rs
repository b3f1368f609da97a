//! The samplers against the training network: per-position logits equal the batch forward pass,
//! the naive and fast samplers draw bit-identical images, the split over threads changes nothing,
//! and completion keeps the given pixels.

use dfdx::prelude::*;
use glimpse_pixelcnn::gated::GatedPixelCnnNet;
use glimpse_pixelcnn::model::{PixelCnnNet, PixelModel, Planes};
use glimpse_pixelcnn::rowlstm::RowLstmNet;
use glimpse_pixelcnn::sample::{complete, sample, Autoregressive, Method};

type Small = PixelCnnNet<8, 4, 2>;
type SmallGated = GatedPixelCnnNet<4, 2, f32, Cpu>;
type SmallRow = RowLstmNet<4, 4, 2, f32, Cpu>;

/// Runs `$check::<M>()` for every model kind.
macro_rules! for_every_model {
    ($check:ident) => {
        $check::<Small>();
        $check::<SmallGated>();
        $check::<SmallRow>();
    };
}

fn binary_images(n: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * 784).map(|_| f32::from(rng.gen::<f32>() < 0.3)).collect()
}

#[test]
fn per_position_logits_equal_the_forward_pass() {
    for_every_model!(positions_match);
}

fn positions_match<M: PixelModel>() {
    let dev = Cpu::seed_from_u64(3);
    let net = M::build(&dev);
    let n = 3;
    let images = binary_images(n, 7);
    let x: Planes = dev.tensor_from_vec(images.clone(), (n, Const::<1>, 28, 28));
    let expected = net.logits(x).as_vec();
    let positions = net.positions((28, 28));
    let mut state = positions.state(n);
    let mut worst = 0.0f32;
    for p in 0..784 {
        let logits = positions.position(&mut state, p).to_vec();
        for i in 0..n {
            worst = worst.max((logits[i] - expected[i * 784 + p]).abs());
        }
        let values: Vec<f32> = (0..n).map(|i| images[i * 784 + p]).collect();
        positions.set_pixel(&mut state, p, &values);
    }
    assert!(worst < 1e-4, "{}: largest logit difference {worst}", M::NAME);
}

#[test]
fn naive_and_fast_samplers_draw_the_same_bits() {
    for_every_model!(same_bits);
}

fn same_bits<M: PixelModel>() {
    let dev = Cpu::seed_from_u64(5);
    let positions = M::build(&dev).positions((28, 28));
    let fast = sample(&positions, Method::Fast, 3, 11, 3);
    let naive = sample(&positions, Method::Naive, 3, 11, 3);
    assert_eq!(fast, naive);
    let ones = fast.iter().filter(|&&v| v == 1.0).count();
    assert!(ones > 100 && ones < 3 * 784 - 100, "an untrained model draws mixed pixels, got {ones} ones");
    assert_ne!(fast, sample(&positions, Method::Fast, 3, 12, 3), "another seed draws other images");
}

#[test]
fn the_split_over_threads_changes_nothing() {
    for_every_model!(split_changes_nothing);
}

fn split_changes_nothing<M: PixelModel>() {
    let dev = Cpu::seed_from_u64(5);
    let positions = M::build(&dev).positions((28, 28));
    let whole = sample(&positions, Method::Fast, 5, 2, 5);
    assert_eq!(whole, sample(&positions, Method::Fast, 5, 2, 2));
    assert_eq!(&whole[..2 * 784], &sample(&positions, Method::Fast, 2, 2, 1)[..]);
}

#[test]
fn completion_keeps_the_given_pixels_and_draws_the_rest() {
    for_every_model!(completes);
}

fn completes<M: PixelModel>() {
    let dev = Cpu::seed_from_u64(5);
    let positions = M::build(&dev).positions((28, 28));
    let given = binary_images(2, 9);
    let known = 14 * 28;
    let out = complete(&positions, Method::Fast, Some(&given), known, 2, 4, 2);
    for i in 0..2 {
        assert_eq!(&out[i * 784..i * 784 + known], &given[i * 784..i * 784 + known]);
    }
    assert_ne!(&out[known..784], &given[known..784]);
    assert_eq!(out, complete(&positions, Method::Naive, Some(&given), known, 2, 4, 1));
}
