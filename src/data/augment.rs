//! Image augmentation for training classifiers.

use rand::Rng;

/// Shifts each `height x width` image of `images` (row-major, image after image) by up to
/// `max_shift` pixels in each direction, filling with zeros: the usual translation augmentation
/// for MNIST. The two offsets of each image (rows, then columns) are drawn from `rng`.
pub fn random_shift(images: &[f32], height: usize, width: usize, max_shift: usize, rng: &mut impl Rng) -> Vec<f32> {
    let size = height * width;
    assert!(
        size > 0 && images.len().is_multiple_of(size),
        "{} values are not whole {height}x{width} images",
        images.len()
    );
    let m = max_shift as isize;
    let (h, w) = (height as isize, width as isize);
    let mut out = vec![0.0; images.len()];
    for (src, dst) in images.chunks(size).zip(out.chunks_mut(size)) {
        let (dy, dx) = (rng.gen_range(-m..=m), rng.gen_range(-m..=m));
        for y in 0..h {
            let sy = y - dy;
            if !(0..h).contains(&sy) {
                continue;
            }
            for x in 0..w {
                let sx = x - dx;
                if (0..w).contains(&sx) {
                    dst[(y * w + x) as usize] = src[(sy * w + sx) as usize];
                }
            }
        }
    }
    out
}
