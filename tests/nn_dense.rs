//! `glimpse::nn::Dense` against dfdx's `Linear` and finite differences, and the fused Bernoulli
//! negative log-likelihood against dfdx's `bce_with_logits`.

mod nn_util;

use dfdx::prelude::*;
use glimpse::nn::builders::Dense;
use glimpse::nn::{bernoulli_nll_sum, bernoulli_nll_with_logits};
use nn_util::{max_abs_diff, values};

/// Forward values and input, weight and bias gradients of `sum(out * target)` for both layers.
fn compare<const I: usize, const O: usize>(batch: usize, tol: f32) {
    let dev = Cpu::seed_from_u64(3);
    let linear = dev.build_module::<dfdx::nn::builders::Linear<I, O>, f32>();
    let mut dense = dev.build_module::<Dense<I, O>, f32>();
    dense.weight = linear.weight.clone();
    dense.bias = linear.bias.clone();
    let x: Tensor<(usize, Const<I>), f32, Cpu> = dev.sample_normal_like(&(batch, Const::<I>));
    let target: Tensor<(usize, Const<O>), f32, Cpu> = dev.sample_normal_like(&(batch, Const::<O>));
    let run = |out: Tensor<(usize, Const<O>), f32, Cpu, OwnedTape<f32, Cpu>>| {
        (out.as_vec(), (out * target.clone()).sum().backward())
    };
    let (y1, g1) = run(linear.forward(x.leaky_trace()));
    let (y2, g2) = run(dense.forward(x.leaky_trace()));
    let close = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).all(|(a, b)| (a - b).abs() <= tol * (1.0 + a.abs()))
    };
    assert!(close(&y1, &y2), "forward");
    assert!(close(&g1.get(&linear.weight).as_vec(), &g2.get(&dense.weight).as_vec()), "weight gradient");
    assert!(close(&g1.get(&linear.bias).as_vec(), &g2.get(&dense.bias).as_vec()), "bias gradient");
    assert!(close(&g1.get(&x).as_vec(), &g2.get(&x).as_vec()), "input gradient");
}

#[test]
fn dense_matches_dfdx_linear_forward_and_gradients() {
    compare::<7, 5>(6, 1e-5);
    // Shapes of the VAE (the AVX-512 kernel, where the CPU has it, with a ragged last tile).
    compare::<784, 400>(128, 1e-4);
    compare::<400, 20>(37, 1e-4);
    compare::<20, 400>(1, 1e-4);
}

/// A large layer's backward pass runs its two products side by side on two threads (one each),
/// and one after the other on one: the same bits either way.
#[test]
fn dense_gradients_do_not_depend_on_the_thread_count() {
    let dev = Cpu::seed_from_u64(8);
    let dense = dev.build_module::<Dense<784, 400>, f32>();
    let x: Tensor<(usize, Const<784>), f32, Cpu> = dev.sample_normal_like(&(128, Const::<784>));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        pool.install(|| {
            let g = (dense.forward(x.leaky_trace()).square()).sum().backward();
            [g.get(&dense.weight).as_vec(), g.get(&dense.bias).as_vec(), g.get(&x).as_vec()]
        })
    };
    let (one, two) = (run(1), run(2));
    for (a, b) in one.iter().zip(&two) {
        assert!(a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn dense_forward_data_has_parameter_gradients_only() {
    let dev = Cpu::seed_from_u64(5);
    let dense = dev.build_module::<Dense<9, 4>, f32>();
    let x: Tensor<(usize, Const<9>), f32, Cpu> = dev.sample_normal_like(&(3, Const::<9>));
    let grads = dense.forward_data(x.clone(), OwnedTape::default()).sum().backward();
    assert!(grads.get(&dense.weight).as_vec().iter().any(|&g| g != 0.0));
    assert_eq!(grads.get(&dense.bias).as_vec(), vec![3.0; 4]);
    assert_eq!(dense.forward_data(x.clone(), NoneTape).as_vec(), dense.forward(x).as_vec());
}

#[test]
fn dense_gradients_match_finite_differences_in_f64() {
    const I: usize = 6;
    const O: usize = 3;
    let dev = Cpu::seed_from_u64(0);
    let mut dense = dev.build_module::<Dense<I, O>, f64>();
    dense.weight.copy_from(&values(O * I, 1));
    dense.bias.copy_from(&values(O, 2));
    let b = 4;
    let xv = values(b * I, 3);
    let weights = values(b * O, 4);
    let loss = |d: &glimpse::nn::Dense<I, O, f64, Cpu>, xv: &[f64]| -> f64 {
        let y = d.forward(dev.tensor_from_vec(xv.to_vec(), (b, Const::<I>))).as_vec();
        y.iter().zip(&weights).map(|(y, w)| y * w).sum()
    };
    let x = dev.tensor_from_vec(xv.clone(), (b, Const::<I>));
    let w = dev.tensor_from_vec(weights.clone(), (b, Const::<O>));
    let grads = (dense.forward(x.leaky_trace()) * w).sum().backward();
    let h = 1e-6;
    let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
    let dx: Vec<f64> = (0..b * I)
        .map(|i| {
            fd(&|e| {
                let mut xe = xv.clone();
                xe[i] += e;
                loss(&dense, &xe)
            })
        })
        .collect();
    let w0 = dense.weight.as_vec();
    let dw: Vec<f64> = (0..O * I)
        .map(|i| {
            fd(&|e| {
                let mut d = dense.clone();
                let mut we = w0.clone();
                we[i] += e;
                d.weight.copy_from(&we);
                loss(&d, &xv)
            })
        })
        .collect();
    assert!(max_abs_diff(&grads.get(&x).as_vec(), &dx) < 1e-7);
    assert!(max_abs_diff(&grads.get(&dense.weight).as_vec(), &dw) < 1e-7);
    let db: Vec<f64> = (0..O).map(|o| (0..b).map(|r| weights[r * O + o]).sum()).collect();
    assert!(max_abs_diff(&grads.get(&dense.bias).as_vec(), &db) < 1e-12);
}

#[test]
fn dense_checkpoints_load_into_linear() {
    let dev = Cpu::seed_from_u64(7);
    let dense = dev.build_module::<Dense<5, 3>, f32>();
    let path = std::env::temp_dir().join(format!("glimpse-dense-{}.safetensors", std::process::id()));
    dense.save_safetensors(&path).unwrap();
    let mut linear = dev.build_module::<dfdx::nn::builders::Linear<5, 3>, f32>();
    linear.load_safetensors(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(linear.weight.as_vec(), dense.weight.as_vec());
    assert_eq!(linear.bias.as_vec(), dense.bias.as_vec());
}

#[test]
fn fused_bernoulli_nll_matches_dfdx_bce_and_its_gradient() {
    let dev = Cpu::seed_from_u64(4);
    let logits: Tensor<(usize, Const<784>), f32, Cpu> = dev.sample_normal_like(&(3, Const::<784>)) * 4.0;
    let x: Tensor<(usize, Const<784>), f32, Cpu> = dev.sample_uniform_like(&(3, Const::<784>));
    let reference = logits.leaky_trace().bce_with_logits(x.clone()).sum::<Rank0, _>();
    let ours = bernoulli_nll_with_logits(logits.leaky_trace(), &x);
    let (r, o) = (reference.array(), ours.array());
    assert!((r - o).abs() < 1e-4 * r.abs(), "{r} vs {o}");
    let (gr, go) = (reference.backward().get(&logits).as_vec(), ours.backward().get(&logits).as_vec());
    assert!(gr.iter().zip(&go).all(|(a, b)| (a - b).abs() < 1e-5));
    // Without a tape, and on plain slices, it computes the same value.
    assert!((bernoulli_nll_with_logits(logits.clone(), &x).array() - o).abs() < 1e-3);
    let per_row: f64 =
        logits.as_vec().chunks(784).zip(x.as_vec().chunks(784)).map(|(l, t)| bernoulli_nll_sum(l, t)).sum();
    assert!((per_row as f32 - o).abs() < 1e-3, "{per_row} vs {o}");
}

/// The largest absolute difference of two f32 slices of one length.
fn diff32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `DenseUpTo` of width `w` against a `Dense<w, O>` holding the same weights (transposed).
fn compare_up_to<const W: usize, const MAX: usize, const O: usize>(batch: usize) {
    use rand::SeedableRng;
    let dev = Cpu::seed_from_u64(11);
    let mut wide = dev.build_module::<glimpse::nn::builders::DenseUpTo<MAX, O>, f32>();
    wide.init_width(W, &mut rand::rngs::StdRng::seed_from_u64(2));
    let w = wide.weight.as_vec();
    assert!(w[W * O..].iter().all(|&v| v == 0.0), "rows past the width start at zero");
    let bound = 1.0 / (W as f32).sqrt();
    assert!(w[..W * O].iter().chain(&wide.bias.as_vec()).all(|v| v.abs() <= bound), "torch's init");
    let mut dense = dev.build_module::<Dense<W, O>, f32>();
    let transposed: Vec<f32> = (0..O * W).map(|k| w[(k % W) * O + k / W]).collect();
    dense.weight.copy_from(&transposed);
    dense.bias = wide.bias.clone();
    let x: Tensor<(usize, Const<W>), f32, Cpu> = dev.sample_normal_like(&(batch, Const::<W>));
    let target: Tensor<(usize, Const<O>), f32, Cpu> = dev.sample_normal_like(&(batch, Const::<O>));
    let y1 = dense.forward_data(x.clone(), OwnedTape::default());
    let y2 = wide.forward_data(x.clone().realize::<(usize, usize)>(), OwnedTape::default());
    assert!(diff32(&y1.as_vec(), &y2.as_vec()) < 1e-5, "forward");
    let g1 = (y1 * target.clone()).sum().backward();
    let g2 = (y2 * target).sum().backward();
    let dw1 = g1.get(&dense.weight).as_vec();
    let dw2 = g2.get(&wide.weight).as_vec();
    let dw1_t: Vec<f32> = (0..W * O).map(|k| dw1[(k % O) * W + k / O]).collect();
    assert!(diff32(&dw1_t, &dw2[..W * O]) < 1e-4, "weight gradient");
    assert!(dw2[W * O..].iter().all(|&g| g == 0.0), "no gradient past the width");
    assert!(diff32(&g1.get(&dense.bias).as_vec(), &g2.get(&wide.bias).as_vec()) < 1e-4, "bias gradient");
}

#[test]
fn dense_up_to_equals_dense_of_its_width() {
    compare_up_to::<5, 9, 3>(4);
    // The RAM's image branch: 12×12 patches at 3 scales, room for 1024 inputs.
    compare_up_to::<432, 1024, 128>(128);
    compare_up_to::<64, 64, 128>(33);
}

#[test]
#[should_panic(expected = "more than the layer's")]
fn dense_up_to_refuses_a_wider_input() {
    let dev = Cpu::default();
    let wide = dev.build_module::<glimpse::nn::builders::DenseUpTo<4, 2>, f32>();
    let x: Tensor<(usize, usize), f32, Cpu> = dev.zeros_like(&(1, 5));
    let _ = wide.forward_data(x, NoneTape);
}
