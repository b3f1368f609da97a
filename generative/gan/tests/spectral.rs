//! Spectral normalisation against known matrices: the power iteration's estimate converges to the
//! largest singular value, and the gradient through `W / sigma(W)` matches finite differences.

use glimpse_gan::spectral::SpectralNorm;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// A 4 x 6 matrix `U diag(s) V^T` with orthonormal columns from Householder reflections.
fn known_matrix(s: [f32; 4]) -> Vec<f32> {
    let householder = |n: usize, v: &[f64]| -> Vec<f64> {
        let vv: f64 = v.iter().map(|x| x * x).sum();
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = if i == j { 1.0 } else { 0.0 } - 2.0 * v[i] * v[j] / vv;
            }
        }
        h
    };
    let u = householder(4, &[1.0, -2.0, 0.5, 3.0]);
    let v = householder(6, &[0.3, 1.0, -1.0, 2.0, 0.7, -0.4]);
    let mut w = vec![0.0f32; 24];
    for i in 0..4 {
        for j in 0..6 {
            w[i * 6 + j] = (0..4).map(|k| u[i * 4 + k] * s[k] as f64 * v[j * 6 + k]).sum::<f64>() as f32;
        }
    }
    w
}

#[test]
fn the_estimate_converges_to_the_largest_singular_value() {
    let w = known_matrix([2.0, 5.0, 1.0, 0.5]);
    let mut sn = SpectralNorm::new(4, &mut StdRng::seed_from_u64(1));
    let mut sigma = 0.0;
    for _ in 0..60 {
        sigma = sn.power_step(&w).1;
    }
    assert!((sigma - 5.0).abs() < 1e-4, "sigma {sigma}, expected 5");
    // A normalised weight has spectral norm 1.
    let mut normalised = w.clone();
    let used = sn.normalise(&mut normalised);
    assert!((used - 5.0).abs() < 1e-4);
    let mut check = SpectralNorm::new(4, &mut StdRng::seed_from_u64(2));
    let norm = (0..80).map(|_| check.power_step(&normalised).1).last().unwrap();
    assert!((norm - 1.0).abs() < 1e-4, "normalised weight's norm {norm}");
    sn.restore(&mut normalised, None);
    assert_eq!(normalised, w, "restore puts the raw weight back");
}

#[test]
fn the_gradient_through_the_normalisation_matches_finite_differences() {
    let w = known_matrix([2.0, 5.0, 1.0, 0.5]);
    let mut rng = StdRng::seed_from_u64(3);
    let c: Vec<f32> = (0..24).map(|_| rng.gen::<f32>() - 0.5).collect();
    // L(W) = sum(C * W / sigma(W)), sigma from a converged power iteration.
    let loss = |w: &[f32]| -> f64 {
        let mut sn = SpectralNorm::new(4, &mut StdRng::seed_from_u64(4));
        let sigma = (0..200).map(|_| sn.power_step(w).1).last().unwrap() as f64;
        w.iter().zip(&c).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / sigma
    };
    let mut sn = SpectralNorm::new(4, &mut StdRng::seed_from_u64(5));
    for _ in 0..200 {
        sn.power_step(&w);
    }
    let mut values = w.clone();
    sn.normalise(&mut values);
    let mut grad = c.clone(); // dL/d(W / sigma) = C
    sn.restore(&mut values, Some(&mut grad));
    for i in 0..24 {
        let h = 1e-2f32;
        let (mut up, mut down) = (w.clone(), w.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (loss(&up) - loss(&down)) / (2.0 * h as f64);
        assert!((fd - grad[i] as f64).abs() < 2e-3, "[{i}]: finite difference {fd}, gradient {}", grad[i]);
    }
}
