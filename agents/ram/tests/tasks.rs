//! The tasks' canvases: the digit whole and unchanged where it lands, distractors that are 8×8
//! crops, clipping, one set per seed; and external `.npy` test sets read or refused clearly.

use glimpse::data::ImageSet;
use glimpse_ram::tasks::{load_test_set, Task, CROP, DIGIT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::path::Path;

/// 20 synthetic 28×28 "digits": a filled square of value 100 + i at rows/columns 4..24.
fn digits() -> ImageSet {
    let mut pixels = vec![0u8; 20 * DIGIT * DIGIT];
    for (i, image) in pixels.chunks_exact_mut(DIGIT * DIGIT).enumerate() {
        for r in 4..24 {
            image[r * DIGIT + 4..r * DIGIT + 24].fill(100 + i as u8);
        }
    }
    ImageSet::new(DIGIT, DIGIT, pixels, (0..20).map(|i| (i % 10) as u8).collect()).unwrap()
}

#[test]
fn mnist_is_the_digit_itself_and_translated_moves_it_whole() {
    let set = digits();
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let mut canvas = vec![0u8; DIGIT * DIGIT];
    Task::Mnist.compose(&set, 3, &mut rng, &mut canvas);
    assert_eq!(canvas, set.image(3));
    let side = Task::Translated.side();
    let mut canvas = vec![0u8; side * side];
    let mut corners = std::collections::HashSet::new();
    for _ in 0..50 {
        Task::Translated.compose(&set, 5, &mut rng, &mut canvas);
        let lit: Vec<usize> = (0..side * side).filter(|&p| canvas[p] != 0).collect();
        assert_eq!(lit.len(), 400, "the 20×20 square, nothing else");
        assert!(lit.iter().all(|&p| canvas[p] == 105));
        let (r, c) = (lit[0] / side, lit[0] % side);
        assert!(r >= 4 && c >= 4 && r - 4 <= side - DIGIT && c - 4 <= side - DIGIT, "the 28×28 box fits");
        corners.insert((r, c));
    }
    assert!(corners.len() > 30, "uniform positions: {} distinct in 50", corners.len());
}

#[test]
fn clutter_adds_crops_of_other_digits_and_clips_at_255() {
    let set = digits();
    for task in [Task::Cluttered60, Task::Cluttered100] {
        let side = task.side();
        let mut rng = ChaCha12Rng::seed_from_u64(2);
        let mut canvas = vec![0u8; side * side];
        let mut beyond = 0;
        for _ in 0..50 {
            task.compose(&set, 0, &mut rng, &mut canvas);
            // The digit's square (value 100) is there, possibly brightened by clutter, whole.
            let at = (0..side * side).find(|&p| canvas[p] >= 100 && is_square_corner(&canvas, side, p)).expect("digit");
            let (r, c) = (at / side, at % side);
            for i in 0..20 {
                assert!(canvas[(r + i) * side + c..][..20].iter().all(|&v| v >= 100));
            }
            // Lit pixels outside the digit's square come from at most `distractors` 8×8 crops.
            let outside = (0..side * side).filter(|&p| {
                let (pr, pc) = (p / side, p % side);
                canvas[p] != 0 && !(pr >= r && pr < r + 20 && pc >= c && pc < c + 20)
            });
            let n = outside.count();
            assert!(n <= task.distractors() * CROP * CROP, "{task:?}: {n} clutter pixels");
            beyond += n;
            assert!(canvas.iter().all(|&v| v == 0 || v >= 100), "sums clip at 255, never wrap");
        }
        assert!(beyond > 0, "{task:?} draws distractors");
    }
}

/// Whether `p` is the top-left corner of a run of bright pixels (nothing bright above or left).
fn is_square_corner(canvas: &[u8], side: usize, p: usize) -> bool {
    let (r, c) = (p / side, p % side);
    r + 20 <= side
        && c + 20 <= side
        && (0..20).all(|i| canvas[(r + i) * side + c..][..20].iter().all(|&v| v >= 100))
        && (r == 0 || canvas[(r - 1) * side + c] < 100 || canvas[(r - 1) * side + c + 19] < 100)
        && (c == 0 || canvas[r * side + c - 1] < 100 || canvas[(r + 19) * side + c - 1] < 100)
}

#[test]
fn a_seed_gives_one_test_set_and_another_seed_another() {
    let set = digits();
    let a = Task::Cluttered60.generate(&set, 4);
    let b = Task::Cluttered60.generate(&set, 4);
    let c = Task::Cluttered60.generate(&set, 5);
    assert_eq!((a.height(), a.width(), a.len()), (60, 60, 20));
    assert_eq!(a.pixels(), b.pixels());
    assert_ne!(a.pixels(), c.pixels());
    assert_eq!(a.labels(), set.labels());
}

/// Writes a version 1.0 `.npy` file of `descr` values (`data`, already in bytes) and `shape`.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    std::fs::write(path, glimpse::data::npy::encode_npy(descr, shape, data)).unwrap();
}

#[test]
fn external_test_sets_are_read_as_uint8_or_float32_with_integer_labels() {
    let dir = std::env::temp_dir().join(format!("ram-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = ChaCha12Rng::seed_from_u64(9);
    let bytes: Vec<u8> = (0..3 * 5 * 7).map(|_| rng.gen()).collect();
    let floats: Vec<u8> = bytes.iter().flat_map(|&b| (f32::from(b) / 255.0).to_le_bytes()).collect();
    let labels: Vec<u8> = [3i64, 0, 9].iter().flat_map(|l| l.to_le_bytes()).collect();
    let (u8s, f32s, ints) = (dir.join("u8.npy"), dir.join("f32.npy"), dir.join("labels.npy"));
    write_npy(&u8s, "|u1", &[3, 5, 7], &bytes);
    write_npy(&f32s, "<f4", &[3, 5, 7], &floats);
    write_npy(&ints, "<i8", &[3], &labels);
    for images in [&u8s, &f32s] {
        let set = load_test_set(images, &ints).unwrap();
        assert_eq!((set.len(), set.height(), set.width()), (3, 5, 7));
        assert_eq!(set.pixels(), &bytes[..], "{images:?}");
        assert_eq!(set.labels(), &[3, 0, 9]);
    }

    let refused = |images: &Path, labels: &Path, message: &str| {
        let err = load_test_set(images, labels).unwrap_err().to_string();
        assert!(err.contains(message), "{err:?} should contain {message:?}");
    };
    let (flat, bright, few, bad_class, float_labels) =
        (dir.join("flat.npy"), dir.join("bright.npy"), dir.join("few.npy"), dir.join("class.npy"), dir.join("fl.npy"));
    write_npy(&flat, "|u1", &[3, 35], &bytes);
    write_npy(&bright, "<f4", &[1, 1, 2], &[1.5f32.to_le_bytes(), 0.0f32.to_le_bytes()].concat());
    write_npy(&few, "<i8", &[2], &labels[..16]);
    write_npy(&bad_class, "<i8", &[3], &[3i64, 10, 1].iter().flat_map(|l| l.to_le_bytes()).collect::<Vec<_>>());
    write_npy(&float_labels, "<f4", &[3], &floats[..12]);
    refused(&flat, &ints, "expected images of shape [N, H, W], found [3, 35]");
    refused(&bright, &ints, "float32 pixel 0 is 1.5, expected a value from 0 to 1");
    refused(&u8s, &few, "expected 3 labels (shape [3]), found shape [2]");
    refused(&u8s, &bad_class, "label 1 is 10, expected a class from 0 to 9");
    refused(&u8s, &float_labels, "labels must be integers, found float32");
    refused(&dir.join("missing.npy"), &ints, "missing.npy");
    std::fs::write(dir.join("junk.npy"), b"not an array").unwrap();
    refused(&dir.join("junk.npy"), &ints, "junk.npy");
    std::fs::remove_dir_all(&dir).unwrap();
}
