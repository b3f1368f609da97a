//! `with_frozen_parameters`: the input gradient is the unfrozen one, and the parameters get no
//! gradient, for Dense, Conv2D (strided, several image groups) and BatchNorm2D in one network.

use dfdx::prelude::*;
use glimpse::nn::{builders, with_frozen_parameters};

type Net =
    (builders::Conv2D<2, 4, 4, 2, 1>, builders::BatchNorm2D<4>, builders::FlattenTo<196>, builders::Dense<196, 3>);

#[test]
fn frozen_layers_pass_the_input_gradient_and_record_none_for_their_parameters() {
    let dev = Cpu::seed_from_u64(3);
    let mut net = dev.build_module::<Net, f32>();
    let values: Vec<f32> = (0..40 * 2 * 14 * 14).map(|i| ((i * 7919 % 103) as f32 - 51.0) / 37.0).collect();
    let x = dev.tensor_from_vec(values, (40, Const::<2>, 14, 14));
    let unfrozen = net.forward_mut(x.trace(Gradients::leaky())).square().sum().backward();
    let frozen = with_frozen_parameters(|| net.forward_mut(x.trace(Gradients::leaky()))).square().sum().backward();
    assert_eq!(frozen.get(&x).as_vec(), unfrozen.get(&x).as_vec(), "the input gradient");
    assert!(unfrozen.get(&net.0.weight).as_vec().iter().any(|&g| g != 0.0));
    // No gradient entry (a fresh one is zeros; one written by a frozen op would not be).
    let mut frozen = frozen;
    macro_rules! no_gradient {
        ($($name:literal: $t:expr),*) => {$(
            assert!(frozen.get_or_alloc_mut(&$t).unwrap().iter().all(|&g| g == 0.0), "{} got a gradient", $name);
        )*};
    }
    no_gradient!("conv weight": net.0.weight, "conv bias": net.0.bias, "bn scale": net.1.scale,
        "dense weight": net.3.weight, "dense bias": net.3.bias);
    // Outside the closure the layers record weight gradients again.
    let again = net.forward_mut(x.trace(Gradients::leaky())).square().sum().backward();
    assert!(again.get(&net.3.weight).as_vec().iter().any(|&g| g != 0.0));
}
