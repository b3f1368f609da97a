//! The retina against a naive reference: every output value is the mean of its block of image
//! pixels, counting pixels outside the image as 0, at the centre, the corners, outside the
//! image and at every scale.

use glimpse_ram::sensor::Retina;
use rand::{Rng, SeedableRng};

/// The naive reading: per output value, the mean over its block with bounds checked per pixel.
fn naive(retina: &Retina, image: &[f32], h: usize, w: usize, loc: [f32; 2]) -> Vec<f32> {
    let g = retina.patch();
    let pixel = |r: isize, c: isize| {
        if r < 0 || c < 0 || r >= h as isize || c >= w as isize {
            0.0
        } else {
            image[r as usize * w + c as usize]
        }
    };
    let mut out = Vec::new();
    for s in 0..retina.scales() {
        let block = 1isize << s;
        let side = retina.side(s) as f64;
        // The corner as the module documents it, computed independently.
        let start = |v: f32, n: usize| {
            ((f64::from(v.clamp(-1.0, 1.0)) + 1.0) / 2.0 * n as f64 - side / 2.0 + 0.5).floor() as isize
        };
        let (r0, c0) = (start(loc[1], h), start(loc[0], w));
        for i in 0..g as isize {
            for j in 0..g as isize {
                let mut sum = 0.0f64;
                for dr in 0..block {
                    for dc in 0..block {
                        sum += f64::from(pixel(r0 + i * block + dr, c0 + j * block + dc));
                    }
                }
                out.push((sum / (block * block) as f64) as f32);
            }
        }
    }
    out
}

fn random_image(h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..h * w).map(|_| rng.gen::<f32>()).collect()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}: value {i} is {x}, the reference {y}");
    }
}

#[test]
fn the_retina_matches_the_naive_reference_everywhere() {
    let places: [([f32; 2], &str); 9] = [
        ([0.0, 0.0], "centre"),
        ([-1.0, -1.0], "top-left corner"),
        ([1.0, -1.0], "top-right corner"),
        ([-1.0, 1.0], "bottom-left corner"),
        ([1.0, 1.0], "bottom-right corner"),
        ([0.3, -0.7], "off centre"),
        ([2.5, -3.0], "outside, clamped"),
        ([-0.999, 0.001], "near the edge"),
        ([0.5, 0.5], "quarter"),
    ];
    for (patch, scales, h, w) in [(8, 1, 28, 28), (12, 3, 60, 60), (12, 4, 100, 100), (5, 3, 17, 23), (3, 2, 4, 4)] {
        let retina = Retina::new(patch, scales).unwrap();
        let image = random_image(h, w, (patch * 100 + h) as u64);
        for (loc, what) in places {
            let mut out = vec![f32::NAN; retina.len()];
            retina.read(&image, h, w, loc, &mut out);
            let what = format!("{what}, patch {patch}, {scales} scales, {h}×{w}");
            assert_close(&out, &naive(&retina, &image, h, w, loc), &what);
        }
    }
}

#[test]
fn a_patch_outside_the_image_reads_zeros_and_a_nan_location_reads_the_centre() {
    let retina = Retina::new(4, 1).unwrap();
    let image = vec![1.0; 8 * 8];
    let mut out = vec![0.0; retina.len()];
    // At the top-left corner the 4×4 patch spans rows and columns -2..2: a quarter is inside.
    retina.read(&image, 8, 8, [-1.0, -1.0], &mut out);
    assert_eq!(out.iter().sum::<f32>(), 4.0);
    assert_eq!(&out[..4], &[0.0, 0.0, 0.0, 0.0]);
    assert_eq!(out[15], 1.0);
    let (mut nan, mut centre) = (vec![0.0; 16], vec![0.0; 16]);
    let ramp: Vec<f32> = (0..64).map(|v| v as f32).collect();
    retina.read(&ramp, 8, 8, [f32::NAN, f32::NAN], &mut nan);
    retina.read(&ramp, 8, 8, [0.0, 0.0], &mut centre);
    assert_eq!(nan, centre);
    assert_eq!(retina.corner([0.0, 0.0], 0, 8, 8), (2, 2));
}

#[test]
fn a_batch_reads_what_each_image_reads_alone_on_any_number_of_threads() {
    let retina = Retina::new(12, 3).unwrap();
    let (h, w, n) = (60, 60, 64);
    let images = random_image(h * n, w, 7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let locs: Vec<[f32; 2]> = (0..n).map(|_| [rng.gen_range(-1.2..1.2), rng.gen_range(-1.2..1.2)]).collect();
    let mut alone = vec![0.0; n * retina.len()];
    for (i, out) in alone.chunks_exact_mut(retina.len()).enumerate() {
        retina.read(&images[i * h * w..][..h * w], h, w, locs[i], out);
    }
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut batch = vec![0.0; n * retina.len()];
        pool.install(|| retina.read_batch(&images, h, w, &locs, &mut batch));
        assert_eq!(batch, alone, "{threads} threads");
    }
}

#[test]
fn bad_sizes_are_refused_with_their_names() {
    assert_eq!(Retina::new(0, 1).unwrap_err(), "patch must be between 1 and 64 pixels, got 0");
    assert_eq!(Retina::new(8, 0).unwrap_err(), "scales must be between 1 and 8, got 0");
    assert_eq!(Retina::new(8, 9).unwrap_err(), "scales must be between 1 and 8, got 9");
    assert_eq!(Retina::new(65, 1).unwrap_err(), "patch must be between 1 and 64 pixels, got 65");
    assert_eq!(Retina::new(12, 3).unwrap().len(), 432);
}
