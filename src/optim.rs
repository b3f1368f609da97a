//! Adam whose state can be checkpointed, with global gradient-norm clipping.
//!
//! dfdx's own `Adam` keeps its moments in private fields keyed by tensor ids, so they can be
//! neither saved nor restored. Here the two moments are modules of the same type as the model:
//! they are saved as safetensors next to the weights, and a resumed run continues with exactly
//! the optimizer state it stopped with.

use std::path::Path;

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorRef,
};
use dfdx::nn::{LoadFromSafetensors, SaveToSafetensors};
use dfdx::prelude::{Gradients, Shape, Tensor};
use dfdx::tensor_ops::Device;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointError};

/// Adam hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Adam (Kingma & Ba) with bias correction; its moments are modules shaped like the model.
pub struct Adam<M> {
    /// Hyperparameters (the learning rate may be changed between steps).
    pub cfg: AdamConfig,
    /// Number of updates done.
    pub t: u64,
    m1: M,
    m2: M,
}

/// Copies the values of the model's parameters into a fresh zeroed state (used for the moments).
struct Zero;
impl<D: Device<f32>> TensorVisitor<f32, D> for Zero {
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = f32;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, D>,
        t: &mut Tensor<S, f32, D>,
    ) -> Result<Option<Tensor<S, f32, D>>, D::Err> {
        let zeros = vec![0.0; t.as_vec().len()];
        t.copy_from(&zeros);
        Ok(None)
    }
}

/// Sums the squares of all gradients.
struct SquaredNorm<'a, D: Device<f32>> {
    grads: &'a Gradients<f32, D>,
    sum: f64,
}
impl<D: Device<f32>> TensorVisitor<f32, D> for SquaredNorm<'_, D> {
    type Viewer = ViewTensorRef;
    type Err = D::Err;
    type E2 = f32;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, D>,
        p: &Tensor<S, f32, D>,
    ) -> Result<Option<Tensor<S, f32, D>>, D::Err> {
        if opts.do_gradient_update {
            self.sum += self.grads.get(p).as_vec().iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>();
        }
        Ok(None)
    }
}

/// One Adam step on every trainable tensor.
struct Step<'a, D: Device<f32>> {
    grads: &'a Gradients<f32, D>,
    cfg: AdamConfig,
    t: u64,
    scale: f32,
}
impl<D: Device<f32>> TensorVisitor<f32, D> for Step<'_, D> {
    type Viewer = (ViewTensorMut, ViewTensorMut, ViewTensorMut);
    type Err = D::Err;
    type E2 = f32;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, D>,
        (p, m1, m2): (&mut Tensor<S, f32, D>, &mut Tensor<S, f32, D>, &mut Tensor<S, f32, D>),
    ) -> Result<Option<Tensor<S, f32, D>>, D::Err> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        let g = self.grads.get(p).as_vec();
        let (mut pv, mut m, mut v) = (p.as_vec(), m1.as_vec(), m2.as_vec());
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for i in 0..pv.len() {
            let gi = g[i] * self.scale;
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
            pv[i] -= c.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + c.eps);
        }
        p.copy_from(&pv);
        m1.copy_from(&m);
        m2.copy_from(&v);
        Ok(None)
    }
}

impl<M> Adam<M> {
    /// An optimizer for `model` with zeroed moments.
    pub fn new<D: Device<f32>>(model: &M, cfg: AdamConfig) -> Self
    where
        M: TensorCollection<f32, D> + Clone,
    {
        // `clone` shares tensor ids with the model, which is harmless here: the moments are never
        // traced, and `copy_from` gives each its own buffer.
        let mut m1 = model.clone();
        let mut m2 = model.clone();
        M::iter_tensors(&mut RecursiveWalker { m: &mut m1, f: &mut Zero }).expect("zeroing moments");
        M::iter_tensors(&mut RecursiveWalker { m: &mut m2, f: &mut Zero }).expect("zeroing moments");
        Self { cfg, t: 0, m1, m2 }
    }

    /// Applies the gradients, first scaling them so their global L2 norm is at most `max_norm`
    /// when given. Returns the norm before clipping.
    pub fn update<D: Device<f32>>(&mut self, model: &mut M, grads: &Gradients<f32, D>, max_norm: Option<f32>) -> f32
    where
        M: TensorCollection<f32, D>,
    {
        let mut norm = SquaredNorm { grads, sum: 0.0 };
        M::iter_tensors(&mut RecursiveWalker { m: &*model, f: &mut norm }).expect("cpu visit");
        let norm = norm.sum.sqrt() as f32;
        let scale = match max_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.t += 1;
        let mut step = Step { grads, cfg: self.cfg, t: self.t, scale };
        M::iter_tensors(&mut RecursiveWalker { m: (model, &mut self.m1, &mut self.m2), f: &mut step })
            .expect("cpu visit");
        norm
    }

    /// Saves the moments (`PREFIX_m1.safetensors`, `PREFIX_m2.safetensors`) and `t` (`PREFIX.json`) in `dir`.
    pub fn save<D: Device<f32>>(&self, dir: &Path, prefix: &str) -> Result<(), CheckpointError>
    where
        M: SaveToSafetensors<f32, D>,
    {
        checkpoint::save_weights(&self.m1, &dir.join(format!("{prefix}_m1.safetensors")))?;
        checkpoint::save_weights(&self.m2, &dir.join(format!("{prefix}_m2.safetensors")))?;
        checkpoint::save_json(&(self.t, self.cfg), &dir.join(format!("{prefix}.json")))
    }

    /// Restores what [`save`](Adam::save) wrote.
    pub fn load<D: Device<f32>>(&mut self, dir: &Path, prefix: &str) -> Result<(), CheckpointError>
    where
        M: LoadFromSafetensors<f32, D>,
    {
        checkpoint::load_weights(&mut self.m1, &dir.join(format!("{prefix}_m1.safetensors")))?;
        checkpoint::load_weights(&mut self.m2, &dir.join(format!("{prefix}_m2.safetensors")))?;
        (self.t, self.cfg) = checkpoint::load_json(&dir.join(format!("{prefix}.json")))?;
        Ok(())
    }

    /// The first and second moment modules.
    pub fn moments(&self) -> (&M, &M) {
        (&self.m1, &self.m2)
    }
}

/// Copies every tensor's values from `src` into `dst` (both own separate buffers and ids, unlike
/// `clone`): the hard target-network update.
pub fn copy_params<M: TensorCollection<f32, D>, D: Device<f32>>(dst: &mut M, src: &M) {
    polyak_update(dst, src, 1.0);
}

/// `dst = tau * src + (1 - tau) * dst` on every tensor: the soft target-network update.
pub fn polyak_update<M: TensorCollection<f32, D>, D: Device<f32>>(dst: &mut M, src: &M, tau: f32) {
    struct Mix(f32);
    impl<D: Device<f32>> TensorVisitor<f32, D> for Mix {
        type Viewer = (ViewTensorMut, ViewTensorRef);
        type Err = D::Err;
        type E2 = f32;
        type D2 = D;
        fn visit<S: Shape>(
            &mut self,
            _: TensorOptions<S, f32, D>,
            (d, s): (&mut Tensor<S, f32, D>, &Tensor<S, f32, D>),
        ) -> Result<Option<Tensor<S, f32, D>>, D::Err> {
            let sv = s.as_vec();
            if self.0 >= 1.0 {
                d.copy_from(&sv);
            } else {
                let mut dv = d.as_vec();
                for (x, y) in dv.iter_mut().zip(&sv) {
                    *x = self.0 * y + (1.0 - self.0) * *x;
                }
                d.copy_from(&dv);
            }
            Ok(None)
        }
    }
    M::iter_tensors(&mut RecursiveWalker { m: (dst, src), f: &mut Mix(tau) }).expect("cpu visit");
}

#[cfg(test)]
mod tests {
    use super::{copy_params, polyak_update, Adam, AdamConfig as Cfg};
    use dfdx::prelude::*;

    type Net = (Linear<3, 8>, ReLU, Linear<8, 2>);

    #[test]
    fn matches_dfdx_adam_and_state_round_trips() {
        let dev = Cpu::seed_from_u64(3);
        let mut a = dev.build_module::<Net, f32>();
        let mut b = dev.build_module::<Net, f32>();
        copy_params(&mut b, &a);
        let mut ours = Adam::new(&a, Cfg { lr: 1e-2, ..Default::default() });
        let mut theirs = dfdx::optim::Adam::new(&b, dfdx::optim::AdamConfig { lr: 1e-2, ..Default::default() });
        let x: Tensor<Rank2<4, 3>, f32, _> = dev.sample_normal();
        let y: Tensor<Rank2<4, 2>, f32, _> = dev.sample_normal();
        let (mut ga, mut gb) = (a.alloc_grads(), b.alloc_grads());
        for _ in 0..5 {
            let la = mse_loss(a.forward(x.trace(ga)), y.clone());
            ga = la.backward();
            ours.update(&mut a, &ga, None);
            a.zero_grads(&mut ga);
            let lb = mse_loss(b.forward(x.trace(gb)), y.clone());
            gb = lb.backward();
            dfdx::optim::Optimizer::update(&mut theirs, &mut b, &gb).unwrap();
            b.zero_grads(&mut gb);
        }
        for (p, q) in a.0.weight.as_vec().iter().zip(b.0.weight.as_vec()) {
            assert!((p - q).abs() < 1e-5, "{p} vs {q}");
        }
        let dir = std::env::temp_dir().join(format!("glimpse-adam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ours.save(&dir, "adam").unwrap();
        let mut restored = Adam::new(&a, Cfg::default());
        restored.load(&dir, "adam").unwrap();
        assert_eq!(restored.t, 5);
        assert_eq!(restored.cfg.lr, 1e-2);
        assert_eq!(restored.moments().0 .2.weight.as_vec(), ours.moments().0 .2.weight.as_vec());
        assert_eq!(restored.moments().1 .0.bias.as_vec(), ours.moments().1 .0.bias.as_vec());
        assert!(ours.moments().1 .0.bias.as_vec().iter().any(|&v| v != 0.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clipping_bounds_the_step_and_reports_the_norm() {
        let dev = Cpu::seed_from_u64(0);
        let mut m = dev.build_module::<Linear<2, 1>, f32>();
        let mut opt = Adam::new(&m, Cfg::default());
        let x = dev.tensor([[3.0f32, 4.0]]);
        let g = m.alloc_grads();
        let out = m.forward(x.trace(g));
        // d(sum out)/dW = x, d/db = 1: norm sqrt(9 + 16 + 1).
        let grads = out.sum().backward();
        let norm = opt.update(&mut m, &grads, Some(1.0));
        assert!((norm - 26f32.sqrt()).abs() < 1e-5);
    }

    #[test]
    fn copies_are_independent_and_polyak_mixes() {
        let dev = Cpu::seed_from_u64(1);
        let a = dev.build_module::<Linear<2, 2>, f32>();
        let mut b = dev.build_module::<Linear<2, 2>, f32>();
        let b0 = b.weight.as_vec();
        polyak_update(&mut b, &a, 0.25);
        for ((x, y), z) in b.weight.as_vec().iter().zip(a.weight.as_vec()).zip(&b0) {
            assert!((x - (0.25 * y + 0.75 * z)).abs() < 1e-6);
        }
        copy_params(&mut b, &a);
        assert_eq!(b.weight.as_vec(), a.weight.as_vec());
        // The copy owns its buffers: changing the source later leaves it alone.
        let mut a = a;
        polyak_update(&mut a, &b, 0.5);
        a.weight.copy_from(&[0.0; 4]);
        assert_ne!(b.weight.as_vec(), vec![0.0; 4]);
    }
}
