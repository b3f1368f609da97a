//! The scores of `glimpse_eval::score` against values known in closed form or computed another
//! way: the Fréchet distance of a set with itself, of two Gaussians, of small sets with
//! non-commuting covariances (against a 2x2 closed form and a Denman-Beavers square root); the
//! Jacobi eigen-decomposition; the Inception-style score of one-hot and identical predictions;
//! the class histogram; and the errors.

use dfdx::prelude::*;
use glimpse_eval::classifier::MnistCnn;
use glimpse_eval::score::{
    class_histogram, classify, frechet_distance, inception_score, predicted_classes, symmetric_eigen, FeatureStats,
    Images,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let (u, v): (f64, f64) = (1.0 - rng.gen::<f64>(), rng.gen());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// `n` rows of `d` correlated, ReLU-like features (some dimensions always 0).
fn features(rng: &mut impl Rng, n: usize, d: usize) -> Vec<f32> {
    let mix: Vec<f64> = (0..d * d).map(|_| normal(rng) / (d as f64).sqrt()).collect();
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let z: Vec<f64> = (0..d).map(|_| normal(rng)).collect();
        for i in 0..d {
            let v: f64 = (0..d).map(|k| mix[i * d + k] * z[k]).sum::<f64>() + 0.3;
            out.push(if i % 16 == 5 { 0.0 } else { v.max(0.0) as f32 });
        }
    }
    out
}

fn stats(rows: &[f64], dim: usize) -> FeatureStats {
    FeatureStats::of(rows, dim).unwrap()
}

#[test]
fn frechet_distance_of_a_set_with_itself_is_zero() {
    let mut rng = StdRng::seed_from_u64(1);
    // 128-d as the classifier's features: full rank, then fewer rows than dimensions (singular).
    for n in [1000, 60] {
        let f = features(&mut rng, n, 128);
        let s = FeatureStats::of(&f, 128).unwrap();
        let fd = frechet_distance(&s, &s).unwrap();
        let trace: f64 = (0..128).map(|i| s.cov[i * 128 + i]).sum();
        assert!(fd.abs() < 1e-6, "n = {n}: FD {fd} (trace {trace})");
        assert!(trace > 1.0, "a real test: trace {trace}");
    }
}

#[test]
fn frechet_distance_of_two_sampled_gaussians_matches_the_closed_form() {
    let mut rng = StdRng::seed_from_u64(2);
    let (m1, s1) = ([0.0, 1.0, 2.0, 3.0], [1.0, 4.0, 0.25, 2.0]);
    let (m2, s2) = ([0.5, 1.0, 1.0, 3.0], [4.0, 1.0, 0.25, 0.5]);
    let n = 200_000;
    let mut draw = |m: [f64; 4], s: [f64; 4]| -> Vec<f64> {
        (0..n).flat_map(|_| (0..4).map(|i| m[i] + s[i].sqrt() * normal(&mut rng)).collect::<Vec<_>>()).collect()
    };
    let (a, b) = (draw(m1, s1), draw(m2, s2));
    let closed: f64 = (0..4).map(|i| (m1[i] - m2[i]).powi(2) + s1[i] + s2[i] - 2.0 * (s1[i] * s2[i]).sqrt()).sum();
    assert_eq!(closed, 3.75);
    let fd = frechet_distance(&stats(&a, 4), &stats(&b, 4)).unwrap();
    assert!((fd - closed).abs() < 0.03, "FD {fd}, closed form {closed}");
    // The same samples turned by one rotation (not axis-aligned any more): the same distance.
    let angle: f64 = 0.7;
    let turn = |x: &[f64]| -> Vec<f64> {
        let (c, s) = (angle.cos(), angle.sin());
        x.chunks(4).flat_map(|r| [c * r[0] - s * r[1], s * r[0] + c * r[1], r[2], r[3]]).collect()
    };
    let turned = frechet_distance(&stats(&turn(&a), 4), &stats(&turn(&b), 4)).unwrap();
    assert!((turned - fd).abs() < 1e-9, "{turned} vs {fd}");
}

#[test]
fn frechet_distance_of_small_sets_computed_by_hand() {
    // A: centred on 0; cov (n - 1 = 3) diag(2/3, 8/3). B: centred on (3, 4);
    // cov [[4/3, 2/3], [2/3, 2/3]]. They do not commute.
    let a = stats(&[1.0, 0.0, -1.0, 0.0, 0.0, 2.0, 0.0, -2.0], 2);
    let b = stats(&[4.0, 5.0, 2.0, 3.0, 4.0, 4.0, 2.0, 4.0], 2);
    let close = |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-12);
    assert!(close(&a.mean, &[0.0, 0.0]) && close(&b.mean, &[3.0, 4.0]));
    assert!(close(&a.cov, &[2.0 / 3.0, 0.0, 0.0, 8.0 / 3.0]), "{:?}", a.cov);
    assert!(close(&b.cov, &[4.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]), "{:?}", b.cov);
    // For 2x2 M with eigenvalues l1, l2 >= 0: Tr M^½ = sqrt(l1) + sqrt(l2) = sqrt(Tr M + 2 sqrt(det M)).
    // Tr(AB) = 8/9 + 16/9 = 8/3, det A det B = 16/9 * 4/9, so Tr (AB)^½ = sqrt(8/3 + 16/9) = sqrt(40)/3.
    let expected = 25.0 + 10.0 / 3.0 + 2.0 - 2.0 * 40f64.sqrt() / 3.0;
    let fd = frechet_distance(&a, &b).unwrap();
    assert!((fd - expected).abs() < 1e-12, "FD {fd}, by hand {expected}");
    // Symmetric in its arguments.
    assert!((frechet_distance(&b, &a).unwrap() - expected).abs() < 1e-12);
    // What a wrong square root would give instead: Tr(A^½ B^½) (right only for commuting covariances).
    // B^½ = (B + sqrt(det B) I) / sqrt(Tr B + 2 sqrt(det B)), sqrt(det B) = 2/3; A^½ is diagonal.
    let scale = (2.0 + 4.0 / 3.0f64).sqrt();
    let (b00, b11) = ((4.0 / 3.0 + 2.0 / 3.0) / scale, (2.0 / 3.0 + 2.0 / 3.0) / scale);
    let sqrt_a_sqrt_b = (2f64 / 3.0).sqrt() * b00 + (8f64 / 3.0).sqrt() * b11;
    assert!((25.0 + 10.0 / 3.0 + 2.0 - 2.0 * sqrt_a_sqrt_b - fd).abs() > 0.04);
}

/// `a b` of `d x d` row-major matrices.
fn mul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    (0..d * d).map(|ij| (0..d).map(|k| a[ij / d * d + k] * b[k * d + ij % d]).sum()).collect()
}

/// The inverse by Gauss-Jordan elimination with partial pivoting.
fn inverse(a: &[f64], d: usize) -> Vec<f64> {
    let mut m: Vec<f64> = a.to_vec();
    let mut inv: Vec<f64> = (0..d * d).map(|i| f64::from(i / d == i % d)).collect();
    for col in 0..d {
        let pivot = (col..d).max_by(|&i, &j| m[i * d + col].abs().total_cmp(&m[j * d + col].abs())).unwrap();
        for k in 0..d {
            m.swap(col * d + k, pivot * d + k);
            inv.swap(col * d + k, pivot * d + k);
        }
        let p = m[col * d + col];
        for k in 0..d {
            m[col * d + k] /= p;
            inv[col * d + k] /= p;
        }
        for row in (0..d).filter(|&r| r != col) {
            let f = m[row * d + col];
            for k in 0..d {
                m[row * d + k] -= f * m[col * d + k];
                inv[row * d + k] -= f * inv[col * d + k];
            }
        }
    }
    inv
}

/// The principal square root of a matrix with positive eigenvalues (not symmetric in general) by
/// the Denman-Beavers iteration: Y -> (Y + Z⁻¹)/2, Z -> (Z + Y⁻¹)/2 from Y = M, Z = I.
fn sqrtm_denman_beavers(m: &[f64], d: usize) -> Vec<f64> {
    let (mut y, mut z): (Vec<f64>, Vec<f64>) = (m.to_vec(), (0..d * d).map(|i| f64::from(i / d == i % d)).collect());
    for _ in 0..60 {
        let (yi, zi) = (inverse(&y, d), inverse(&z, d));
        y = y.iter().zip(&zi).map(|(a, b)| 0.5 * (a + b)).collect();
        z = z.iter().zip(&yi).map(|(a, b)| 0.5 * (a + b)).collect();
    }
    y
}

#[test]
fn frechet_distance_matches_an_independent_square_root() {
    let mut rng = StdRng::seed_from_u64(3);
    let d = 5;
    for (n1, n2) in [(9, 12), (40, 7)] {
        let a: Vec<f64> = (0..n1 * d).map(|i| normal(&mut rng) * (1.0 + (i % d) as f64)).collect();
        let b: Vec<f64> = (0..n2 * d).map(|i| 0.5 + normal(&mut rng) + 0.4 * (i % d) as f64).collect();
        let (sa, sb) = (stats(&a, d), stats(&b, d));
        // The covariances directly from their definition.
        let cov = |x: &[f64], n: usize, mean: &[f64]| -> Vec<f64> {
            (0..d * d)
                .map(|ij| {
                    (0..n).map(|r| (x[r * d + ij / d] - mean[ij / d]) * (x[r * d + ij % d] - mean[ij % d])).sum::<f64>()
                })
                .map(|s| s / (n - 1) as f64)
                .collect()
        };
        let (ca, cb) = (cov(&a, n1, &sa.mean), cov(&b, n2, &sb.mean));
        assert!(ca.iter().zip(&sa.cov).all(|(x, y)| (x - y).abs() < 1e-12));
        assert!(cb.iter().zip(&sb.cov).all(|(x, y)| (x - y).abs() < 1e-12));
        let product = mul(&ca, &cb, d);
        assert!(product.iter().zip(&mul(&cb, &ca, d)).any(|(x, y)| (x - y).abs() > 0.1), "they commute");
        let root = sqrtm_denman_beavers(&product, d);
        let back = mul(&root, &root, d);
        assert!(back.iter().zip(&product).all(|(x, y)| (x - y).abs() < 1e-9), "the reference root is a root");
        let tr = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
        let mean_term: f64 = sa.mean.iter().zip(&sb.mean).map(|(x, y)| (x - y).powi(2)).sum();
        let expected = mean_term + tr(&ca) + tr(&cb) - 2.0 * tr(&root);
        let fd = frechet_distance(&sa, &sb).unwrap();
        assert!((fd - expected).abs() < 1e-9 * expected, "n {n1}, {n2}: FD {fd}, Denman-Beavers {expected}");
    }
}

/// A random orthogonal matrix (Gram-Schmidt of Gaussian columns), row-major.
fn orthogonal(rng: &mut impl Rng, n: usize) -> Vec<f64> {
    let mut cols: Vec<Vec<f64>> = Vec::new();
    while cols.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
        for c in &cols {
            let dot: f64 = v.iter().zip(c).map(|(x, y)| x * y).sum();
            v.iter_mut().zip(c).for_each(|(x, y)| *x -= dot * y);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        cols.push(v.iter().map(|x| x / norm).collect());
    }
    (0..n * n).map(|ij| cols[ij % n][ij / n]).collect()
}

#[test]
fn jacobi_reconstructs_symmetric_matrices() {
    let mut rng = StdRng::seed_from_u64(4);
    for n in [1, 2, 7, 50, 128] {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in i..n {
                let v = normal(&mut rng);
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        let e = symmetric_eigen(&a, n).unwrap();
        assert!(e.values.windows(2).all(|w| w[0] <= w[1]), "ascending");
        let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let v = &e.vectors;
        let rebuilt: Vec<f64> =
            (0..n * n).map(|ij| (0..n).map(|k| v[ij / n * n + k] * e.values[k] * v[ij % n * n + k]).sum()).collect();
        let err = rebuilt.iter().zip(&a).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
        assert!(err <= 1e-12 * norm.max(1.0) * n as f64, "n = {n}: |V D Vᵀ - A| = {err:e} of {norm}");
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                assert!((dot - f64::from(i == j)).abs() < 1e-12, "n = {n}: VᵀV ({i}, {j}) = {dot}");
            }
        }
        assert!(e.sweeps <= 15, "n = {n}: {} sweeps", e.sweeps);
    }
    // Known eigenvalues, repeated and zero, in a random basis.
    let n = 20;
    let known: Vec<f64> = (0..n).map(|i| [0.0, 0.0, 1.0, 1.0, 1.0, 3.5][i % 6] + (i / 6) as f64 * 10.0).collect();
    let q = orthogonal(&mut rng, n);
    let a: Vec<f64> =
        (0..n * n).map(|ij| (0..n).map(|k| q[ij / n * n + k] * known[k] * q[ij % n * n + k]).sum()).collect();
    let a: Vec<f64> = (0..n * n).map(|ij| 0.5 * (a[ij] + a[ij % n * n + ij / n])).collect();
    let mut sorted = known.clone();
    sorted.sort_by(f64::total_cmp);
    let e = symmetric_eigen(&a, n).unwrap();
    for (x, y) in e.values.iter().zip(&sorted) {
        assert!((x - y).abs() < 1e-11, "{:?} vs {sorted:?}", e.values);
    }
    // The zero matrix and a diagonal one need no sweep.
    assert_eq!(symmetric_eigen(&[0.0; 9], 3).unwrap().values, vec![0.0; 3]);
    let diag = symmetric_eigen(&[3.0, 0.0, 0.0, -1.0], 2).unwrap();
    assert_eq!((diag.values, diag.sweeps, diag.vectors), (vec![-1.0, 3.0], 0, vec![0.0, 1.0, 1.0, 0.0]));
    // Errors.
    let err = |a: &[f64], n: usize| symmetric_eigen(a, n).unwrap_err().to_string();
    assert!(err(&[1.0, 2.0, 3.0], 2).contains("needs 4 values, got 3"));
    assert!(err(&[1.0, 2.0, 2.5, 1.0], 2).contains("not symmetric"));
    assert!(err(&[1.0, f64::NAN, f64::NAN, 1.0], 2).contains("NaN"));
}

/// `n` one-hot rows cycling through classes 0..k.
fn one_hot(n: usize, k: usize) -> Vec<[f32; 10]> {
    (0..n).map(|i| std::array::from_fn(|c| f32::from(c == i % k))).collect()
}

#[test]
fn inception_score_of_known_predictions() {
    for k in [1, 3, 10] {
        let s = inception_score(&one_hot(10 * k * 7, k), 10).unwrap();
        assert!((s.mean - k as f64).abs() < 1e-9 && s.std < 1e-9, "k = {k}: {s:?}");
        assert_eq!(s.splits, 10);
    }
    // Identical predictions, confident or not: 1.
    for row in [[0.1f32; 10], std::array::from_fn(|c| if c == 3 { 0.91 } else { 0.01 })] {
        let s = inception_score(&vec![row; 50], 10).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-6 && s.std < 1e-6, "{s:?}");
    }
    // Contiguous splits, population std: the first half spreads over 2 classes, the second over 4.
    let mut probs = one_hot(40, 2);
    probs.extend(one_hot(40, 4));
    let s = inception_score(&probs, 2).unwrap();
    assert!((s.mean - 3.0).abs() < 1e-9 && (s.std - 1.0).abs() < 1e-9, "{s:?}");
    // One split of everything: p(y) = (3/8, 3/8, 1/8, 1/8), exp(E KL) = exp(entropy of p(y)).
    let whole = inception_score(&probs, 1).unwrap();
    let entropy: f64 = [0.375f64, 0.375, 0.125, 0.125].iter().map(|p| -p * p.ln()).sum();
    assert!((whole.mean - entropy.exp()).abs() < 1e-9 && whole.std == 0.0, "{whole:?}");
    // Splits of unequal length when 10 does not divide N: every row counts.
    let s = inception_score(&one_hot(25, 5), 10).unwrap();
    assert!(s.mean > 1.0 && s.mean < 5.0, "{s:?}");
    // A soft but informative row: exp(KL) of one split of two mirrored rows.
    let (p, q) = ([0.8f32, 0.2], [0.2f32, 0.8]);
    let kl = 0.8f64 * (0.8f64 / 0.5).ln() + 0.2 * (0.2f64 / 0.5).ln();
    let s = inception_score(&[p, q], 1).unwrap();
    assert!((s.mean - kl.exp()).abs() < 1e-6, "{s:?} vs {}", kl.exp());
}

#[test]
fn inception_score_errors() {
    let err = |probs: &[[f32; 10]], splits: usize| inception_score(probs, splits).unwrap_err().to_string();
    assert!(err(&[], 10).contains("no predictions"));
    assert!(err(&one_hot(9, 3), 10).contains("9 rows of predictions are fewer than the 10 splits"));
    assert!(err(&one_hot(9, 3), 0).contains("at least 1 split"));
    let mut nan = one_hot(20, 2);
    nan[13][4] = f32::NAN;
    assert!(err(&nan, 10).contains("row 13 of the predictions holds NaN"));
    let mut negative = one_hot(20, 2);
    negative[2] = std::array::from_fn(|c| {
        if c == 0 {
            1.5
        } else if c == 1 {
            -0.5
        } else {
            0.0
        }
    });
    assert!(err(&negative, 10).contains("row 2 of the predictions holds -0.5"));
    let logits = vec![[2.0f32; 10]; 20];
    assert!(err(&logits, 10).contains("sums to 20, not 1"));
}

#[test]
fn feature_stats_errors() {
    let err = |r: Result<_, glimpse_eval::EvalError>| r.map(|_: FeatureStats| ()).unwrap_err().to_string();
    assert!(err(FeatureStats::of(&[1.0f32, 2.0], 2)).contains("at least 2 rows of features, got 1"));
    assert!(err(FeatureStats::of(&[1.0f32, 2.0, 3.0], 2)).contains("3 feature values are not rows of 2"));
    assert!(err(FeatureStats::of(&[1.0f32, 2.0], 0)).contains("at least one dimension"));
    assert!(err(FeatureStats::of(&[1.0f32, 2.0, f32::INFINITY, 0.0], 2)).contains("feature 0 of row 1 is inf"));
    let (two, three) = (stats(&[0.0, 1.0, 2.0, 3.0], 2), stats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 3));
    assert!(frechet_distance(&two, &three).unwrap_err().to_string().contains("have 2 and 3 dimensions"));
    let mut broken = two.clone();
    broken.cov.pop();
    assert!(frechet_distance(&broken, &two).unwrap_err().to_string().contains("inconsistent"));
    let mut not_a_cov = two.clone();
    not_a_cov.cov = vec![1.0, 0.0, 0.0, -1.0];
    assert!(frechet_distance(&not_a_cov, &two).unwrap_err().to_string().contains("not positive semi-definite"));
}

#[test]
fn class_histogram_of_known_labels() {
    // 4 zeros, 2 of each of 1..=8, no 9: 20%, 10% x 8, 0%.
    let mut labels = vec![0, 0, 0, 0];
    labels.extend((1..=8).flat_map(|c| [c, c]));
    let h = class_histogram(&labels, 10).unwrap();
    assert_eq!(h.counts, vec![4, 2, 2, 2, 2, 2, 2, 2, 2, 0]);
    assert!((h.fractions[0] - 0.2).abs() < 1e-12 && h.fractions[9] == 0.0);
    assert!((h.max_deviation_points - 10.0).abs() < 1e-9, "{h:?}");
    let even = class_histogram(&(0..1000).map(|i| i % 10).collect::<Vec<_>>(), 10).unwrap();
    assert!(even.max_deviation_points < 1e-9 && even.fractions.iter().all(|&f| (f - 0.1).abs() < 1e-12));
    // From probabilities: the most probable class, the first of ties.
    let probs = [[0.1f32, 0.7, 0.2], [0.5, 0.25, 0.25], [0.2, 0.4, 0.4]];
    assert_eq!(predicted_classes(&probs), vec![1, 0, 1]);
    let h = class_histogram(&predicted_classes(&probs), 3).unwrap();
    assert_eq!(h.counts, vec![1, 2, 0]);
    assert!((h.max_deviation_points - 100.0 / 3.0).abs() < 1e-9);
    assert!(class_histogram(&[1, 10], 10).unwrap_err().to_string().contains("label 1 is 10, not below 10"));
    assert!(class_histogram(&[], 10).is_err());
}

#[test]
fn classify_gives_the_whole_models_probabilities_and_the_features() {
    let dev = Cpu::seed_from_u64(0);
    let model = dev.build_module::<MnistCnn, f32>();
    let mut rng = StdRng::seed_from_u64(5);
    // 1,234 images: two full batches of 500 and a last one of 234.
    let n = 1234;
    let pixels: Vec<u8> = (0..n * 784).map(|_| rng.gen()).collect();
    let out = classify(&model, Images::U8(&pixels), &dev).unwrap();
    assert_eq!((out.probs.len(), out.features.len()), (n, n * 128));
    let floats: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    assert_eq!(classify(&model, Images::F32(&floats), &dev).unwrap(), out, "uint8 and [0, 1] floats agree");
    // Against the whole model (features + dropout + last layer) on a few images at once.
    let some = 7;
    let x = dev.tensor_from_vec(floats[..some * 784].to_vec(), (some, Const::<784>));
    let logits = model.forward(x.clone()).as_vec();
    let f = model.0.forward(x).as_vec();
    for i in 0..some {
        let row = &logits[i * 10..(i + 1) * 10];
        let max = row.iter().fold(f32::MIN, |m, &v| m.max(v));
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        for (c, &logit) in row.iter().enumerate() {
            let p = (logit - max).exp() / sum;
            assert!((out.probs[i][c] - p).abs() < 1e-5, "image {i} class {c}: {} vs {p}", out.probs[i][c]);
        }
        for k in 0..128 {
            assert!((out.features[i * 128 + k] - f[i * 128 + k]).abs() < 1e-4 * (1.0 + f[i * 128 + k].abs()));
        }
    }
    let bad = |images: Images| classify(&model, images, &dev).unwrap_err().to_string();
    assert!(bad(Images::U8(&pixels[..1000])).contains("1000 pixel values are not whole 28x28 images"));
    let mut nan = floats[..2 * 784].to_vec();
    nan[784 + 3] = f32::NAN;
    assert!(bad(Images::F32(&nan)).contains("pixel 3 of image 1 is NaN"));
    nan[784 + 3] = 1.5;
    assert!(bad(Images::F32(&nan)).contains("is 1.5: float images must hold values in [0, 1]"));
}
