//! HashDropout: drop rate, scaling, gradient through the same mask, identity in `forward`,
//! reproducible from the device seed.

use dfdx::nn::{Module, ModuleMut};
use dfdx::prelude::*;
use glimpse::nn::HashDropout;

/// Output and input gradient of `HashDropout<N>` on `n` ones, traced, with upstream gradient `r`.
fn train_pass<const N: usize>(dev: &Cpu, n: usize, r: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let x = dev.tensor_from_vec(vec![1.0f64; n], (n,));
    let mut layer = HashDropout::<N>;
    let out = layer.forward_mut(x.trace(Gradients::leaky()));
    let values = out.as_vec();
    let rt = dev.tensor_from_vec(r.to_vec(), (n,));
    let gx = (out * rt).sum().backward().get(&x).as_vec();
    (values, gx)
}

#[test]
fn drops_one_in_n_scales_the_rest_and_gradients_follow_the_mask() {
    let dev = Cpu::seed_from_u64(3);
    let n = 200_000;
    let r: Vec<f64> = (0..n).map(|i| 1.0 + (i % 7) as f64).collect();
    let (out, gx) = train_pass::<4>(&dev, n, &r);
    let dropped = out.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    // Binomial standard deviation at p = 1/4 over 200k draws is ~0.001.
    assert!((dropped - 0.25).abs() < 0.005, "dropped fraction {dropped}, expected 0.25");
    for ((&o, &g), &ri) in out.iter().zip(&gx).zip(&r) {
        assert!(o == 0.0 || (o - 4.0 / 3.0).abs() < 1e-12, "kept value {o} should be scaled by 4/3");
        // d(out * r)/dx = r * (0 or 4/3): the gradient uses the forward pass's mask.
        assert!((g - ri * o).abs() < 1e-12, "gradient {g} differs from r * mask = {}", ri * o);
    }
}

#[test]
fn forward_is_identity_and_masks_are_reproducible_per_seed() {
    let dev = Cpu::seed_from_u64(0);
    let x = dev.tensor_from_vec(vec![0.5f32, -1.0, 2.0], (3,));
    assert_eq!(HashDropout::<2>.forward(x.clone()).as_vec(), x.as_vec());

    let r = vec![1.0; 1000];
    let (a, _) = train_pass::<2>(&Cpu::seed_from_u64(7), 1000, &r);
    let (b, _) = train_pass::<2>(&Cpu::seed_from_u64(7), 1000, &r);
    assert_eq!(a, b, "the same device seed gives the same mask");
    let dev = Cpu::seed_from_u64(7);
    let (first, _) = train_pass::<2>(&dev, 1000, &r);
    let (second, _) = train_pass::<2>(&dev, 1000, &r);
    assert_ne!(first, second, "successive calls draw new masks");
}
