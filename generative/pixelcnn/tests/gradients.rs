//! Every parameter of every model gets its gradient (no branch of the tape is dropped), and the
//! gradients match central finite differences of the loss.

use dfdx::nn::tensor_collection::{RecursiveWalker, TensorOptions, TensorVisitor, ViewTensorMut};
use dfdx::prelude::*;
use glimpse::nn::bernoulli_nll_with_logits;
use glimpse_pixelcnn::gated::GatedPixelCnnNet;
use glimpse_pixelcnn::model::{PixelCnnNet, PixelModel, Planes};
use glimpse_pixelcnn::rowlstm::RowLstmNet;

const SIDE: usize = 8;

/// Visits every tensor: records `(name, gradient)` and, if asked, adds `delta` to element `at`
/// of tensor number `target`.
struct Probe<'a> {
    grads: Option<&'a Gradients<f32, Cpu>>,
    seen: Vec<(String, Vec<f32>)>,
    nudge: Option<(usize, usize, f32)>,
    index: usize,
}

impl TensorVisitor<f32, Cpu> for Probe<'_> {
    type Viewer = ViewTensorMut;
    type Err = CpuError;
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        t: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, CpuError> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        if let Some(g) = self.grads {
            self.seen.push((format!("tensor {}", self.index), g.get(t).as_vec()));
        }
        if let Some((target, at, delta)) = self.nudge {
            if target == self.index {
                let mut v = t.as_vec();
                v[at] += delta;
                t.copy_from(&v);
            }
        }
        self.index += 1;
        Ok(None)
    }
}

fn walk<M: PixelModel>(
    model: &mut M,
    grads: Option<&Gradients<f32, Cpu>>,
    nudge: Option<(usize, usize, f32)>,
) -> Vec<(String, Vec<f32>)> {
    let mut probe = Probe { grads, seen: Vec::new(), nudge, index: 0 };
    M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut probe }).unwrap();
    probe.seen
}

fn data(dev: &Cpu) -> Planes {
    dev.tensor_from_vec(
        (0..2 * SIDE * SIDE).map(|i| f32::from((i * 5 + 1) % 7 < 3)).collect(),
        (2, Const::<1>, SIDE, SIDE),
    )
}

fn loss<M: PixelModel>(model: &M, x: &Planes) -> f64 {
    glimpse::nn::bernoulli_nll_sum(&model.logits(x.clone()).as_vec(), &x.as_vec())
}

fn check<M: PixelModel>() {
    let dev = Cpu::seed_from_u64(23);
    let mut model = M::build(&dev);
    let x = data(&dev);
    let grads = bernoulli_nll_with_logits(model.logits_traced(x.clone().traced(model.alloc_grads())), &x).backward();
    let seen = walk(&mut model, Some(&grads), None);
    for (name, g) in &seen {
        assert!(g.iter().any(|&v| v != 0.0), "{}: {name} gets no gradient", M::NAME);
    }
    // Finite differences at the largest-gradient element of each tensor (f32: a loose tolerance).
    for (t, (name, g)) in seen.iter().enumerate() {
        let (at, &analytic) = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap();
        let h = 1e-2;
        walk(&mut model, None, Some((t, at, h)));
        let up = loss(&model, &x);
        walk(&mut model, None, Some((t, at, -2.0 * h)));
        let down = loss(&model, &x);
        walk(&mut model, None, Some((t, at, h)));
        let numeric = (up - down) / (2.0 * h as f64);
        let err = (numeric - analytic as f64).abs() / (analytic.abs() as f64).max(1.0);
        assert!(err < 3e-2, "{}: {name}[{at}] analytic {analytic} numeric {numeric}", M::NAME);
    }
}

#[test]
fn every_parameter_gets_the_gradient_finite_differences_give() {
    check::<PixelCnnNet<4, 2, 2>>();
    check::<GatedPixelCnnNet<3, 2, f32, Cpu>>();
    check::<RowLstmNet<3, 3, 2, f32, Cpu>>();
}
