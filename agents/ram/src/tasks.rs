//! The tasks of the paper, generated on the fly from MNIST digits with a seeded generator:
//! [`Task::Mnist`] (the 28×28 digits), [`Task::Translated`] (the digit at a uniform position on a
//! 60×60 black canvas), [`Task::Cluttered60`] and [`Task::Cluttered100`] (4 or 8 distractors,
//! each a random 8×8 crop of another digit of the same set at a uniform position, added and
//! clipped, then the digit added and clipped, as DeepMind's generator does). A fixed test set is
//! [`Task::generate`]d from a seed; an external one is read by [`load_test_set`].

use glimpse::data::npy::{read_npy, NpyData};
use glimpse::data::{DataError, ImageSet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::path::Path;

/// The side of an MNIST digit.
pub const DIGIT: usize = 28;
/// The side of a distractor crop.
pub const CROP: usize = 8;

/// A classification task on MNIST digits.
#[derive(clap::ValueEnum, serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// The 28×28 digits as they are.
    Mnist,
    /// The digit at a uniform position on a 60×60 canvas.
    Translated,
    /// 60×60 with 4 distractors.
    Cluttered60,
    /// 100×100 with 8 distractors.
    Cluttered100,
}

impl Task {
    /// The side of the task's square canvas.
    pub fn side(self) -> usize {
        match self {
            Task::Mnist => DIGIT,
            Task::Translated | Task::Cluttered60 => 60,
            Task::Cluttered100 => 100,
        }
    }

    /// The number of distractors on a canvas.
    pub fn distractors(self) -> usize {
        match self {
            Task::Mnist | Task::Translated => 0,
            Task::Cluttered60 => 4,
            Task::Cluttered100 => 8,
        }
    }

    /// Draws the canvas of digit `index` of `source` (28×28 images) into `out` (`side²` bytes),
    /// its placement and distractors drawn from `rng`. [`Task::Mnist`] copies the digit and
    /// draws nothing.
    pub fn compose(self, source: &ImageSet, index: usize, rng: &mut impl Rng, out: &mut [u8]) {
        assert_eq!((source.height(), source.width()), (DIGIT, DIGIT), "28×28 source digits");
        let side = self.side();
        assert_eq!(out.len(), side * side, "a {side}×{side} canvas");
        if self == Task::Mnist {
            out.copy_from_slice(source.image(index));
            return;
        }
        out.fill(0);
        for _ in 0..self.distractors() {
            let other = source.image(rng.gen_range(0..source.len()));
            let (cr, cc) = (rng.gen_range(0..=DIGIT - CROP), rng.gen_range(0..=DIGIT - CROP));
            let (r, c) = (rng.gen_range(0..=side - CROP), rng.gen_range(0..=side - CROP));
            add_clipped(out, side, (r, c), other, DIGIT, (cr, cc), CROP);
        }
        let (r, c) = (rng.gen_range(0..=side - DIGIT), rng.gen_range(0..=side - DIGIT));
        add_clipped(out, side, (r, c), source.image(index), DIGIT, (0, 0), DIGIT);
    }

    /// The canvases of every digit of `source`, in order, from one ChaCha12 stream seeded with
    /// `seed`: the same set for the same seed, on every machine.
    pub fn generate(self, source: &ImageSet, seed: u64) -> ImageSet {
        let side = self.side();
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let mut pixels = vec![0u8; source.len() * side * side];
        for (i, canvas) in pixels.chunks_exact_mut(side * side).enumerate() {
            self.compose(source, i, &mut rng, canvas);
        }
        ImageSet::new(side, side, pixels, source.labels().to_vec()).expect("labels of a valid set")
    }
}

/// Adds the `size`×`size` square at `from` of the `src_side`-wide image `src` onto the
/// `side`-wide canvas at `at`, clipping each sum at 255.
fn add_clipped(
    canvas: &mut [u8],
    side: usize,
    at: (usize, usize),
    src: &[u8],
    src_side: usize,
    from: (usize, usize),
    size: usize,
) {
    for i in 0..size {
        let dst = &mut canvas[(at.0 + i) * side + at.1..][..size];
        let row = &src[(from.0 + i) * src_side + from.1..][..size];
        dst.iter_mut().zip(row).for_each(|(d, &s)| *d = d.saturating_add(s));
    }
}

/// Reads an external test set: images from `images` (`.npy`, `uint8` 0 to 255 or `float32` 0 to
/// 1, shape `[N, H, W]`; floats are rounded to the nearest of 256 levels) and labels from
/// `labels` (`.npy`, any integer type, shape `[N]`, classes 0 to 9).
pub fn load_test_set(images: &Path, labels: &Path) -> Result<ImageSet, DataError> {
    let bad = |path: &Path, message: String| DataError::Npy { path: path.to_path_buf(), message };
    let array = read_npy(images)?;
    let &[n, h, w] = array.shape.as_slice() else {
        return Err(bad(images, format!("expected images of shape [N, H, W], found {:?}", array.shape)));
    };
    let pixels = match array.data {
        NpyData::U8(v) => v,
        NpyData::F32(v) => {
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !(0.0..=1.0).contains(*x)) {
                return Err(bad(images, format!("float32 pixel {i} is {x}, expected a value from 0 to 1")));
            }
            v.iter().map(|&x| (x * 255.0).round() as u8).collect()
        }
        NpyData::Int(_) => {
            return Err(bad(images, "images must be uint8 or float32, found another integer type".into()))
        }
    };
    let array = read_npy(labels)?;
    if array.shape != [n] {
        return Err(bad(labels, format!("expected {n} labels (shape [{n}]), found shape {:?}", array.shape)));
    }
    let values: Vec<i64> = match array.data {
        NpyData::Int(v) => v,
        NpyData::U8(v) => v.into_iter().map(i64::from).collect(),
        NpyData::F32(_) => return Err(bad(labels, "labels must be integers, found float32".into())),
    };
    if let Some((i, l)) = values.iter().enumerate().find(|(_, l)| !(0..10).contains(*l)) {
        return Err(bad(labels, format!("label {i} is {l}, expected a class from 0 to 9")));
    }
    if h == 0 || w == 0 {
        return Err(bad(images, format!("images of {h}×{w} pixels")));
    }
    ImageSet::new(h, w, pixels, values.into_iter().map(|l| l as u8).collect())
}
