//! The PPO loss gradient (clipped surrogate, clipped value loss, entropy) matches central finite
//! differences on tiny networks, for a categorical and a Gaussian policy, with some ratios clipped.

use dfdx::prelude::*;
use glimpse::rollout::Minibatch;
use glimpse_actor_critic::policy::ActorCritic;
use glimpse_actor_critic::ppo::loss;
use glimpse_actor_critic::{DiscretePolicy, GaussianPolicy, PpoConfig, SeparateDiscrete, SeparateGaussian};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Picks one parameter's gradient, flattened.
type GradOf<P> = dyn Fn(&P, &Gradients<f32, Cpu>) -> Vec<f32>;

fn cfg() -> PpoConfig {
    PpoConfig { clip_coef: Some(0.2), clip_vloss: true, ent_coef: 0.05, vf_coef: 0.5, ..PpoConfig::default() }
}

/// Loss and the flattened gradient of one parameter, chosen by `grad_of`.
fn loss_and_grad<const O: usize, P: ActorCritic<O>>(p: &P, mb: &Minibatch, grad_of: &GradOf<P>) -> (f64, Vec<f32>) {
    let dev = Cpu::default();
    let obs = dev.tensor_from_vec(mb.obs.clone(), (mb.len(), Const::<O>)).traced(p.net().alloc_grads());
    let (l, _) = loss(p.evaluate(obs, &mb.actions), mb, &mb.advantages, &cfg(), &dev);
    let v = l.array() as f64;
    (v, grad_of(p, &l.backward()))
}

/// Compares every entry of one parameter's gradient with a central difference.
fn check<const O: usize, P: ActorCritic<O>, S: Shape>(
    p: &mut P,
    mb: &Minibatch,
    param: &dyn Fn(&mut P) -> &mut Tensor<S, f32, Cpu>,
    grad_of: &GradOf<P>,
    what: &str,
) {
    let (_, analytic) = loss_and_grad::<O, P>(p, mb, grad_of);
    let eps = 1e-2f32;
    let mut checked = 0;
    for k in 0..analytic.len() {
        let base = param(p).as_vec();
        let mut v = base.clone();
        v[k] += eps;
        param(p).copy_from(&v);
        let up = loss_and_grad::<O, P>(p, mb, grad_of).0;
        v[k] -= 2.0 * eps;
        param(p).copy_from(&v);
        let down = loss_and_grad::<O, P>(p, mb, grad_of).0;
        param(p).copy_from(&base);
        let fd = (up - down) / (2.0 * eps as f64);
        let a = analytic[k] as f64;
        assert!((fd - a).abs() < 2e-3 + 2e-2 * fd.abs(), "{what}[{k}]: finite difference {fd}, backward {a}");
        checked += (a.abs() > 1e-4) as usize;
    }
    assert!(checked > 0, "{what}: every gradient entry is ~0, the check is vacuous");
}

/// A minibatch of the policy's own actions with old log-probs/values shifted so that some ratios
/// and value updates fall outside the clip range.
fn minibatch<const O: usize, P: ActorCritic<O>>(p: &P, obs: Vec<f32>) -> Minibatch {
    let out = p.act(&obs, false, &mut StdRng::seed_from_u64(5));
    let n = out.log_probs.len();
    let shifts = [0.0f32, 0.5, -0.5, 0.05, 0.3, -0.1];
    Minibatch {
        obs,
        actions: out.actions,
        log_probs: out.log_probs.iter().enumerate().map(|(i, l)| l + shifts[i % 6]).collect(),
        values: out.values.iter().enumerate().map(|(i, v)| v + shifts[(i + 2) % 6]).collect(),
        advantages: (0..n).map(|i| [1.2f32, -0.8, 0.5, -1.5, 0.9, 0.3][i % 6]).collect(),
        returns: (0..n).map(|i| 0.3 * i as f32 - 0.5).collect(),
    }
}

#[test]
fn categorical_ppo_loss_gradient_matches_finite_differences() {
    let dev = Cpu::seed_from_u64(11);
    let mut p = DiscretePolicy::<_, 3>::new(dev.build_module::<SeparateDiscrete<2, 3, 8>, f32>(), dev.clone());
    let obs = vec![0.5, -1.0, 1.5, 0.2, -0.3, 0.8, 1.0, 1.0, -1.2, 0.4, 0.0, -0.6];
    let mb = minibatch::<2, _>(&p, obs);
    check::<2, _, _>(
        &mut p,
        &mb,
        &|p| &mut p.net.0 .0 .0 .0.weight,
        &|p, g| g.get(&p.net.0 .0 .0 .0.weight).as_vec(),
        "actor W1",
    );
    check::<2, _, _>(
        &mut p,
        &mb,
        &|p| &mut p.net.0 .0 .1.bias,
        &|p, g| g.get(&p.net.0 .0 .1.bias).as_vec(),
        "actor b_out",
    );
    check::<2, _, _>(
        &mut p,
        &mb,
        &|p| &mut p.net.0 .1 .1.weight,
        &|p, g| g.get(&p.net.0 .1 .1.weight).as_vec(),
        "critic W_out",
    );
}

#[test]
fn gaussian_ppo_loss_gradient_matches_finite_differences() {
    let dev = Cpu::seed_from_u64(12);
    let net = dev.build_module::<SeparateGaussian<2, 2, 8>, f32>();
    let mut p = GaussianPolicy::new(net, dev.clone(), [-2.0; 2], [2.0; 2]);
    p.net.0 .0 .1.log_std.copy_from(&[-0.3, 0.4]);
    let obs = vec![0.5, -1.0, 1.5, 0.2, -0.3, 0.8, 1.0, 1.0, -1.2, 0.4, 0.0, -0.6];
    let mb = minibatch::<2, _>(&p, obs);
    check::<2, _, _>(
        &mut p,
        &mb,
        &|p| &mut p.net.0 .0 .1.log_std,
        &|p, g| g.get(&p.net.0 .0 .1.log_std).as_vec(),
        "log_std",
    );
    check::<2, _, _>(
        &mut p,
        &mb,
        &|p| &mut p.net.0 .0 .1.mean.weight,
        &|p, g| g.get(&p.net.0 .0 .1.mean.weight).as_vec(),
        "mean W",
    );
    check::<2, _, _>(
        &mut p,
        &mb,
        &|p| &mut p.net.0 .0 .0 .0.bias,
        &|p, g| g.get(&p.net.0 .0 .0 .0.bias).as_vec(),
        "actor b1",
    );
}
