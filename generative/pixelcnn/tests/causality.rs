//! Causality of the whole network, from gradients: the logit of pixel `p` depends on no pixel at
//! or after `p` in raster order, and on earlier ones; the Gated PixelCNN has no blind spot where
//! the PixelCNN has one.

use dfdx::prelude::*;
use glimpse_pixelcnn::gated::GatedPixelCnnNet;
use glimpse_pixelcnn::model::{PixelCnnNet, PixelModel, Planes};
use glimpse_pixelcnn::rowlstm::RowLstmNet;

type Small = PixelCnnNet<8, 4, 3>;
type SmallGated = GatedPixelCnnNet<4, 3, f32, Cpu>;
type SmallRow = RowLstmNet<4, 4, 2, f32, Cpu>;

const SIDE: usize = 12;

/// Which input pixels the logit of pixel `(r, c)` has a nonzero gradient from, for a random
/// binary image (the biases nonzero, so that ReLUs pass).
fn dependence<M: PixelModel>((r, c): (usize, usize)) -> Vec<bool> {
    let dev = Cpu::seed_from_u64(17);
    let net = M::build(&dev);
    let x: Planes = dev.tensor_from_vec(
        (0..SIDE * SIDE).map(|i| f32::from((i * 7 + 3) % 5 < 2)).collect(),
        (1, Const::<1>, SIDE, SIDE),
    );
    let mut pick = vec![0.0f32; SIDE * SIDE];
    pick[r * SIDE + c] = 1.0;
    let pick: Planes = dev.tensor_from_vec(pick, (1, Const::<1>, SIDE, SIDE));
    let logits = net.logits_traced(x.trace(Gradients::leaky()));
    let grads = (logits * pick).sum().backward();
    grads.get(&x).as_vec().iter().map(|&g| g != 0.0).collect()
}

fn check_causal<M: PixelModel>() {
    for at in [(0, 0), (0, 5), (3, 0), (5, 6), (11, 11), (6, 11)] {
        let seen = dependence::<M>(at);
        let p = at.0 * SIDE + at.1;
        let later: Vec<usize> = (p..SIDE * SIDE).filter(|&q| seen[q]).collect();
        assert!(later.is_empty(), "{}: logit {at:?} depends on pixels at or after it: {later:?}", M::NAME);
        if p > 0 {
            assert!(seen[..p].iter().any(|&s| s), "{}: logit {at:?} depends on no earlier pixel", M::NAME);
            let left_or_above = if at.1 > 0 { p - 1 } else { p - SIDE };
            assert!(seen[left_or_above], "{}: logit {at:?} ignores its neighbour {left_or_above}", M::NAME);
        }
    }
}

#[test]
fn no_logit_depends_on_its_own_pixel_or_later_ones() {
    check_causal::<Small>();
    check_causal::<SmallGated>();
    check_causal::<SmallRow>();
}

#[test]
fn the_gated_stacks_have_no_blind_spot() {
    // (r - 1, c + 4): allowed, but out of the PixelCNN's reach (its 3x3 mask B only grows right
    // through the row above); the gated vertical stack sees every column of the rows above.
    let (at, spot) = ((6, 3), 5 * SIDE + 7);
    assert!(!dependence::<Small>(at)[spot], "the PixelCNN's blind spot");
    let gated = dependence::<SmallGated>(at);
    assert!(gated[spot], "the Gated PixelCNN sees the pixel up and to the right");
    // Its receptive field: 3 rows up and 3 columns each way from the 7x7 first layer, one more
    // column each way per 3x3 layer; every allowed pixel in it counts.
    let within = |q: usize| q / SIDE >= 3 && (q % SIDE).abs_diff(at.1) <= 3 + 3;
    let missed: Vec<usize> = (0..6 * SIDE + 3).filter(|&q| within(q) && !gated[q]).collect();
    assert!(missed.is_empty(), "the gated net misses allowed pixels of its receptive field: {missed:?}");
}
