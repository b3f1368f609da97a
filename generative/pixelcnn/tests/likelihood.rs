//! The exact test NLL: a model whose logits are all zero gives every pixel probability 1/2, so
//! every image costs exactly 784 ln 2 nats whatever its pixels, for all three models.

use dfdx::nn::tensor_collection::{RecursiveWalker, TensorOptions, TensorVisitor, ViewTensorMut};
use dfdx::prelude::*;
use glimpse::data::ImageSet;
use glimpse_pixelcnn::gated::GatedPixelCnnNet;
use glimpse_pixelcnn::model::{PixelCnnNet, PixelModel};
use glimpse_pixelcnn::rowlstm::RowLstmNet;
use glimpse_pixelcnn::train::test_nll;

/// Sets every parameter to zero: each layer then outputs zero (the gated units tanh(0)·σ(0), the
/// LSTM's states stay 0), and so do the logits.
struct Zero;

impl TensorVisitor<f32, Cpu> for Zero {
    type Viewer = ViewTensorMut;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        t: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        t.fill_with_zeros();
        Ok(None)
    }
}

fn check<M: PixelModel>() {
    let dev = Cpu::seed_from_u64(2);
    let mut model = M::build(&dev);
    M::iter_tensors(&mut RecursiveWalker { m: &mut model, f: &mut Zero }).unwrap();
    // 250 binary images (the evaluation's batches of 100 and a partial one), a third of pixels on.
    let n = 250;
    let pixels: Vec<u8> = (0..n * 784).map(|i| if (i * 7919) % 3 == 0 { 255 } else { 0 }).collect();
    let set = ImageSet::new(28, 28, pixels, vec![0; n]).unwrap();
    let nll = test_nll(&model, &set, &dev);
    let exact = 784.0 * std::f64::consts::LN_2;
    // Each pixel's term is f32 softplus(0), ln 2 to within 5e-7 relative (the bound the loss's own
    // test checks ln_1p against): at most 784 * 3.5e-7 = 2.7e-4 nats per image; the sums are exact
    // to far less (f32 lanes over blocks of 64 terms, then f64). Before the blocks, one f32 lane
    // over a batch drifted by 0.012 nats per image here.
    assert!((nll - exact).abs() < 2.8e-4, "{}: {nll} nats per image, 784 ln 2 = {exact}", M::NAME);
}

#[test]
fn all_zero_logits_cost_784_ln_2_nats_per_image() {
    check::<PixelCnnNet<8, 4, 2>>();
    check::<GatedPixelCnnNet<4, 2, f32, Cpu>>();
    check::<RowLstmNet<4, 4, 2, f32, Cpu>>();
}
