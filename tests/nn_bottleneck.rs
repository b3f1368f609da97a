//! ResidualBottleneck and ResidualStack: the same forward values, bit for bit, and the same
//! gradients as the tuples of dfdx ops they fuse; gradients against finite differences (f64);
//! checkpoints shared with the tuples.

mod nn_util;

use dfdx::nn::builders::{ReLU, Repeated, Residual};
use dfdx::prelude::*;
use glimpse::nn::{builders, MaskB, ResidualBottleneck, ResidualStack};
use nn_util::*;

type Tuple<const C: usize, const H: usize> = Residual<(
    ReLU,
    builders::Conv2D<C, H, 1>,
    ReLU,
    builders::MaskedConv2D<H, H, 3, MaskB>,
    ReLU,
    builders::Conv2D<H, C, 1>,
)>;
type Fused<const C: usize, const H: usize> = builders::ResidualBottleneck<C, H, 3, MaskB>;

/// A fused block and a tuple with the same (non-zero) parameters.
fn pair<E: glimpse::nn::NnFloat>(
    dev: &Cpu,
) -> (ResidualBottleneck<6, 4, 3, MaskB, E, Cpu>, <Tuple<6, 4> as BuildOnDevice<Cpu, E>>::Built)
where
    Cpu: Device<E>,
{
    let fused = dev.build_module::<Fused<6, 4>, E>();
    let mut tuple = dev.build_module::<Tuple<6, 4>, E>();
    copy_into(&fused, &mut tuple);
    (fused, tuple)
}

/// Gives `tuple` the parameters of `block`.
fn copy_into<E: glimpse::nn::NnFloat>(
    block: &ResidualBottleneck<6, 4, 3, MaskB, E, Cpu>,
    tuple: &mut <Tuple<6, 4> as BuildOnDevice<Cpu, E>>::Built,
) where
    Cpu: Device<E>,
{
    let (_, c1, _, m, _, c2) = &mut tuple.0;
    (c1.weight, c1.bias) = (block.reduce.weight.clone(), block.reduce.bias.clone());
    (m.weight, m.bias) = (block.masked.weight.clone(), block.masked.bias.clone());
    (c2.weight, c2.bias) = (block.expand.weight.clone(), block.expand.bias.clone());
}

/// Asserts that two gradients agree within 1e-5 of the larger's scale.
fn assert_close(name: &str, a: Vec<f32>, b: Vec<f32>) {
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
    assert!(err < 1e-5, "{name}: fused and tuple gradients differ by {err} (relative to {scale})");
}

#[test]
fn forward_is_the_tuples_bit_for_bit_and_gradients_agree() {
    let dev = Cpu::seed_from_u64(3);
    let (fused, tuple) = pair::<f32>(&dev);
    let (b, h, w) = (5, 7, 9);
    let xv: Vec<f32> = values(b * 6 * h * w, 11).into_iter().map(|v| v as f32).collect();
    let x = dev.tensor_from_vec(xv, (b, Const::<6>, h, w));
    let r: Vec<f32> = values(b * 6 * h * w, 5).into_iter().map(|v| v as f32).collect();
    let rt = dev.tensor_from_vec(r, (b, Const::<6>, h, w));

    assert_eq!(fused.forward(x.clone()).as_vec(), tuple.forward(x.clone()).as_vec());
    let fused_out = fused.forward(x.trace(Gradients::leaky()));
    assert_eq!(fused_out.retaped::<NoneTape>().as_vec(), tuple.forward(x.clone()).as_vec());
    let gf = (fused_out * rt.clone()).sum().backward();
    let gt = (tuple.forward(x.trace(Gradients::leaky())) * rt).sum().backward();

    let (_, c1, _, m, _, c2) = &tuple.0;
    assert_close("x", gf.get(&x).as_vec(), gt.get(&x).as_vec());
    assert_close("reduce.weight", gf.get(&fused.reduce.weight).as_vec(), gt.get(&c1.weight).as_vec());
    assert_close("reduce.bias", gf.get(&fused.reduce.bias).as_vec(), gt.get(&c1.bias).as_vec());
    assert_close("masked.weight", gf.get(&fused.masked.weight).as_vec(), gt.get(&m.weight).as_vec());
    assert_close("masked.bias", gf.get(&fused.masked.bias).as_vec(), gt.get(&m.bias).as_vec());
    assert_close("expand.weight", gf.get(&fused.expand.weight).as_vec(), gt.get(&c2.weight).as_vec());
    assert_close("expand.bias", gf.get(&fused.expand.bias).as_vec(), gt.get(&c2.bias).as_vec());
}

#[test]
fn gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(9);
    let (fused, tuple) = pair::<f64>(&dev);
    let (b, h, w) = (2, 5, 4);
    let xv = values(b * 6 * h * w, 2);
    let r = values(b * 6 * h * w, 8);
    let x = dev.tensor_from_vec(xv.clone(), (b, Const::<6>, h, w));
    let rt = dev.tensor_from_vec(r.clone(), (b, Const::<6>, h, w));
    let grads = (fused.forward(x.trace(Gradients::leaky())) * rt).sum().backward();
    // The tuple (whose layers have their own finite-difference tests) as the function.
    let loss = |xv: &[f64]| weighted_sum(&tuple.forward(dev.tensor_from_vec(xv.to_vec(), (b, Const::<6>, h, w))), &r);
    let err = check_fd(&xv, &grads.get(&x).as_vec(), 60, &mut |p| loss(p));
    assert!(err <= 1e-6, "input gradient differs from finite differences by {err}");
    let wv = fused.masked.weight.as_vec();
    let loss_w = |wv: &[f64]| {
        let mut m = fused.clone();
        m.masked.weight = dev.tensor_from_vec(wv.to_vec(), (Const::<4>, Const::<4>, Const::<3>, Const::<3>));
        weighted_sum(&m.forward(x.clone()), &r)
    };
    let err = check_fd(&wv, &grads.get(&fused.masked.weight).as_vec(), 60, &mut |p| loss_w(p));
    assert!(err <= 1e-6, "masked weight gradient differs from finite differences by {err}");
}

#[test]
fn checkpoints_are_shared_with_the_tuple() {
    let dev = Cpu::seed_from_u64(4);
    let (fused, _) = pair::<f32>(&dev);
    let dir = std::env::temp_dir().join(format!("glimpse-bottleneck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("block.safetensors");
    fused.save_safetensors(&path).unwrap();
    let mut tuple = dev.build_module::<Tuple<6, 4>, f32>();
    tuple.load_safetensors(&path).expect("the tuple loads the fused block's checkpoint");
    assert_eq!(tuple.0 .3.weight.as_vec(), fused.masked.weight.as_vec());
    assert_eq!(tuple.0 .5.bias.as_vec(), fused.expand.bias.as_vec());
    tuple.save_safetensors(&path).unwrap();
    let mut back = dev.build_module::<Fused<6, 4>, f32>();
    back.load_safetensors(&path).expect("the fused block loads the tuple's checkpoint");
    assert_eq!(back.reduce.weight.as_vec(), fused.reduce.weight.as_vec());
    std::fs::remove_dir_all(&dir).ok();
}

type TupleStack = Repeated<Tuple<6, 4>, 3>;
type FusedStack = builders::ResidualStack<6, 4, 3, MaskB, 3>;

/// A fused stack of three blocks and the `Repeated` tuples with the same parameters.
fn stack_pair(
    dev: &Cpu,
) -> (ResidualStack<6, 4, 3, MaskB, 3, f32, Cpu>, <TupleStack as BuildOnDevice<Cpu, f32>>::Built) {
    let fused = dev.build_module::<FusedStack, f32>();
    let mut tuples = dev.build_module::<TupleStack, f32>();
    for (block, tuple) in fused.blocks.iter().zip(tuples.modules.iter_mut()) {
        copy_into(block, tuple);
    }
    (fused, tuples)
}

#[test]
fn stack_is_the_repeated_tuples_bit_for_bit_and_gradients_agree() {
    let dev = Cpu::seed_from_u64(6);
    let (fused, tuples) = stack_pair(&dev);
    for b in [1, 4] {
        let (h, w) = (6, 5);
        let xv: Vec<f32> = values(b * 6 * h * w, 21).into_iter().map(|v| v as f32).collect();
        let x = dev.tensor_from_vec(xv, (b, Const::<6>, h, w));
        let r: Vec<f32> = values(b * 6 * h * w, 4).into_iter().map(|v| v as f32).collect();
        let rt = dev.tensor_from_vec(r, (b, Const::<6>, h, w));
        let reference = tuples.forward(x.clone()).as_vec();
        assert_eq!(fused.forward(x.clone()).as_vec(), reference, "batch {b}, no tape");
        let out = fused.forward(x.trace(Gradients::leaky()));
        assert_eq!(out.retaped::<NoneTape>().as_vec(), reference, "batch {b}, traced");
        let gf = (out * rt.clone()).sum().backward();
        let gt = (tuples.forward(x.trace(Gradients::leaky())) * rt).sum().backward();
        assert_close("x", gf.get(&x).as_vec(), gt.get(&x).as_vec());
        for (i, (block, tuple)) in fused.blocks.iter().zip(&tuples.modules).enumerate() {
            let (_, c1, _, m, _, c2) = &tuple.0;
            assert_close(
                &format!("{i}.reduce.weight"),
                gf.get(&block.reduce.weight).as_vec(),
                gt.get(&c1.weight).as_vec(),
            );
            assert_close(
                &format!("{i}.masked.weight"),
                gf.get(&block.masked.weight).as_vec(),
                gt.get(&m.weight).as_vec(),
            );
            assert_close(&format!("{i}.masked.bias"), gf.get(&block.masked.bias).as_vec(), gt.get(&m.bias).as_vec());
            assert_close(
                &format!("{i}.expand.weight"),
                gf.get(&block.expand.weight).as_vec(),
                gt.get(&c2.weight).as_vec(),
            );
            assert_close(&format!("{i}.expand.bias"), gf.get(&block.expand.bias).as_vec(), gt.get(&c2.bias).as_vec());
        }
    }
}

#[test]
fn stack_checkpoints_are_the_repeated_tuples() {
    let dev = Cpu::seed_from_u64(8);
    let (fused, _) = stack_pair(&dev);
    let dir = std::env::temp_dir().join(format!("glimpse-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stack.safetensors");
    fused.save_safetensors(&path).unwrap();
    let mut tuples = dev.build_module::<TupleStack, f32>();
    tuples.load_safetensors(&path).expect("Repeated tuples load the stack's checkpoint");
    assert_eq!(tuples.modules[2].0 .3.weight.as_vec(), fused.blocks[2].masked.weight.as_vec());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_empty_stack_is_the_identity() {
    let dev = Cpu::seed_from_u64(1);
    let empty = dev.build_module::<builders::ResidualStack<6, 4, 3, MaskB, 0>, f32>();
    let x =
        dev.tensor_from_vec(values(2 * 6 * 4 * 4, 3).into_iter().map(|v| v as f32).collect(), (2, Const::<6>, 4, 4));
    assert_eq!(empty.forward(x.clone()).as_vec(), x.as_vec());
}
