//! `glimpse::nn::dense_sum_relu` against the same sum written as two `Dense` layers, an add and a
//! relu: values and every gradient (both weights, both biases, both inputs), also when both
//! inputs are one tensor, inside a weight-reuse scope, and with finite differences.

use dfdx::nn::{BuildModule, Module};
use dfdx::prelude::*;
use glimpse::nn::{dense_sum_relu, with_weight_reuse, Dense};

type Rows<const N: usize, T = NoneTape> = Tensor<(usize, Const<N>), f32, Cpu, T>;

struct Pair {
    a: Dense<24, 40, f32, Cpu>,
    b: Dense<16, 40, f32, Cpu>,
}

fn close(x: &[f32], y: &[f32], what: &str) {
    assert_eq!(x.len(), y.len(), "{what}");
    for (i, (p, q)) in x.iter().zip(y).enumerate() {
        assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{what}[{i}]: {p} vs {q}");
    }
}

/// `sum(relu(a(x) + b(y)) · target)` backward, fused or not: the output and the gradients of
/// a's and b's weights and biases and of x and y.
fn run(pair: &Pair, x: &Rows<24>, y: &Rows<16>, target: &Rows<40>, fused: bool) -> Vec<Vec<f32>> {
    let (xt, yt) = (x.clone().traced(Gradients::leaky()), y.clone().traced(Gradients::leaky()));
    let out = if fused {
        dense_sum_relu(&pair.a, xt, &pair.b, yt).unwrap()
    } else {
        (pair.a.forward(xt) + pair.b.forward(yt)).relu()
    };
    let values = out.retaped::<NoneTape>().as_vec();
    let grads = (out * target.clone()).sum().backward();
    vec![
        values,
        grads.get(&pair.a.weight).as_vec(),
        grads.get(&pair.a.bias).as_vec(),
        grads.get(&pair.b.weight).as_vec(),
        grads.get(&pair.b.bias).as_vec(),
        grads.get(x).as_vec(),
        grads.get(y).as_vec(),
    ]
}

#[test]
fn fused_sum_matches_two_layers_an_add_and_a_relu() {
    let dev = Cpu::seed_from_u64(3);
    let pair = Pair { a: BuildModule::build(&dev), b: BuildModule::build(&dev) };
    for batch in [1, 5, 64] {
        let x: Rows<24> = dev.sample_normal_like(&(batch, Const));
        let y: Rows<16> = dev.sample_normal_like(&(batch, Const));
        let target: Rows<40> = dev.sample_normal_like(&(batch, Const));
        let plain = run(&pair, &x, &y, &target, false);
        let fused = run(&pair, &x, &y, &target, true);
        let names = ["output", "a.weight", "a.bias", "b.weight", "b.bias", "x", "y"];
        for ((p, f), name) in plain.iter().zip(&fused).zip(names) {
            close(f, p, &format!("batch {batch}: {name}"));
        }
        assert!(plain[0].contains(&0.0) && plain[0].iter().any(|v| *v > 0.0), "the relu cuts some units");
        let reused = with_weight_reuse(&pair, |p| run(p, &x, &y, &target, true));
        assert_eq!(fused, reused, "batch {batch}: the same, bit for bit, with the weights reused");
    }
}

#[test]
fn a_zero_second_input_still_gives_every_gradient() {
    let dev = Cpu::seed_from_u64(5);
    let pair = Pair { a: BuildModule::build(&dev), b: BuildModule::build(&dev) };
    let x: Rows<24> = dev.sample_normal_like(&(9, Const));
    let zero: Rows<16> = dev.zeros_like(&(9, Const));
    let target: Rows<40> = dev.sample_normal_like(&(9, Const));
    let plain = run(&pair, &x, &zero, &target, false);
    let fused = run(&pair, &x, &zero, &target, true);
    for (i, (p, f)) in plain.iter().zip(&fused).enumerate() {
        close(f, p, &format!("value {i}"));
    }
    assert!(
        fused[3].iter().all(|&g| g == 0.0) && fused[4].iter().any(|&g| g != 0.0),
        "b's weight: zero; its bias: not"
    );
    assert!(fused[6].iter().any(|&g| g != 0.0), "the zero input still gets its gradient");
}

#[test]
fn one_tensor_as_both_inputs_gets_both_gradients() {
    let dev = Cpu::seed_from_u64(4);
    let (a, b): (Dense<8, 6, f32, Cpu>, Dense<8, 6, f32, Cpu>) = (BuildModule::build(&dev), BuildModule::build(&dev));
    let x: Rows<8> = dev.sample_normal_like(&(7, Const));
    let g = dense_sum_relu(&a, x.leaky_trace(), &b, x.leaky_trace()).unwrap().sum().backward();
    let plain = (a.forward(x.leaky_trace()) + b.forward(x.leaky_trace())).relu().sum().backward();
    close(&g.get(&x).as_vec(), &plain.get(&x).as_vec(), "x");
    // The same layer twice: its weight's gradient is the sum of both uses.
    let twice = dense_sum_relu(&a, x.leaky_trace(), &a, x.leaky_trace()).unwrap().sum().backward();
    let plain = (a.forward(x.leaky_trace()) + a.forward(x.leaky_trace())).relu().sum().backward();
    close(&twice.get(&a.weight).as_vec(), &plain.get(&a.weight).as_vec(), "a.weight");
}

#[test]
fn gradient_matches_finite_differences() {
    let dev = Cpu::seed_from_u64(6);
    let mut a: Dense<5, 4, f64, Cpu> = BuildModule::build(&dev);
    let b: Dense<3, 4, f64, Cpu> = BuildModule::build(&dev);
    let x: Tensor<(usize, Const<5>), f64, Cpu> = dev.sample_normal_like(&(6, Const));
    let y: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(6, Const));
    let loss = |a: &Dense<5, 4, f64, Cpu>| -> f64 {
        dense_sum_relu(a, x.clone(), &b, y.clone()).unwrap().square().sum::<Rank0, _>().array()
    };
    let grads = dense_sum_relu(&a, x.clone(), &b, y.leaky_trace()).unwrap().square().sum::<Rank0, _>().backward();
    let analytic = grads.get(&a.weight).as_vec();
    let w = a.weight.as_vec();
    let eps = 1e-6;
    for i in 0..w.len() {
        let mut moved = w.clone();
        moved[i] += eps;
        a.weight.copy_from(&moved);
        let up = loss(&a);
        moved[i] -= 2.0 * eps;
        a.weight.copy_from(&moved);
        let down = loss(&a);
        let numeric: f64 = (up - down) / (2.0 * eps);
        assert!((numeric - analytic[i]).abs() < 1e-6 * (1.0 + numeric.abs()), "w[{i}]: {numeric} vs {}", analytic[i]);
    }
    a.weight.copy_from(&w);
}
