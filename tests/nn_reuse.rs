//! `glimpse::nn::with_weight_reuse`: a recurrent loop of `Dense`, `LSTMCell` and `GRUCell` steps
//! gives the same values and gradients, bit for bit, with its weights copied once as without.

use dfdx::nn::{BuildModule, Module};
use dfdx::prelude::*;
use glimpse::nn::{with_weight_reuse, Dense, GRUCell, LSTMCell, LstmState};

type Rows<const N: usize, T = NoneTape> = Tensor<(usize, Const<N>), f32, Cpu, T>;

struct Net {
    input: Dense<48, 64, f32, Cpu>,
    lstm: LSTMCell<64, 64, f32, Cpu>,
    gru: GRUCell<64, 64, f32, Cpu>,
    out: Dense<64, 40, f32, Cpu>,
}

/// Five steps: the input layer and the LSTM on fresh data each step, the GRU on the LSTM's
/// output (as data), the output layer on the last GRU state; then `sum(out · target) + sum(h)`
/// backward. Returns the gradients of the weights, in a fixed order.
fn unroll(net: &Net, xs: &[Rows<48>], target: &Rows<40>, dev: &Cpu) -> Vec<Vec<f32>> {
    type Tp = OwnedTape<f32, Cpu>;
    let batch = target.shape().0;
    let zero = LstmState::<usize, 64, f32>::zeros(dev, batch);
    let mut lstm: LstmState<usize, 64, f32, Tp> = LstmState { h: zero.h.retaped(), c: zero.c };
    let mut h: Rows<64, Tp> = dev.zeros_like(&(batch, Const)).retaped();
    for x in xs {
        let f = net.input.forward_data(x.clone(), Tp::default()).tanh();
        lstm = net.lstm.try_step(f, lstm).unwrap();
        h = net.gru.try_step(lstm.h.retaped::<NoneTape>(), h).unwrap();
    }
    let loss = (net.out.forward(h) * target.clone()).sum() + lstm.h.sum();
    let grads = loss.backward();
    vec![
        grads.get(&net.input.weight).as_vec(),
        grads.get(&net.lstm.weight_ih).as_vec(),
        grads.get(&net.lstm.weight_hh).as_vec(),
        grads.get(&net.gru.weight_ih).as_vec(),
        grads.get(&net.gru.weight_hh).as_vec(),
        grads.get(&net.out.weight).as_vec(),
        grads.get(&net.out.bias).as_vec(),
    ]
}

#[test]
fn reused_weights_give_the_same_values_and_gradients() {
    let dev = Cpu::seed_from_u64(5);
    let net = Net {
        input: BuildModule::build(&dev),
        lstm: BuildModule::build(&dev),
        gru: BuildModule::build(&dev),
        out: BuildModule::build(&dev),
    };
    for batch in [1, 3, 64] {
        let xs: Vec<Rows<48>> = (0..5).map(|_| dev.sample_normal_like(&(batch, Const))).collect();
        let target: Rows<40> = dev.sample_normal_like(&(batch, Const));
        let plain = unroll(&net, &xs, &target, &dev);
        let reused = with_weight_reuse(&net, |n| unroll(n, &xs, &target, &dev));
        assert_eq!(plain, reused, "batch {batch}");
        assert!(plain.iter().all(|g| g.iter().any(|v| *v != 0.0)), "every layer got a gradient");
    }
}
