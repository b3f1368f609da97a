//! MNIST loading against the real files: known checksums, clear errors on damaged copies, and the
//! batch iterator's determinism and coverage.

use glimpse::data::idx::{md5_hex, read_bytes};
use glimpse::data::mnist::load_split;
use glimpse::data::{read_idx_images, read_idx_labels, DataError, Dataset, ImageSet, Loader, Mnist, Split, View};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn mnist_dir() -> PathBuf {
    Dataset::Mnist.resolve_dir(None)
}

/// A fresh, empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glimpse-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The uncompressed bytes of one of the real MNIST files (raw or gzipped in the data directory).
fn real_bytes(name: &str) -> Vec<u8> {
    let raw = mnist_dir().join(name);
    let path = if raw.is_file() { raw } else { mnist_dir().join(format!("{name}.gz")) };
    read_bytes(&path).expect("the MNIST files (set MNIST_DIR)")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn real_mnist_files_match_known_checksums() {
    for split in [Split::Train, Split::Test] {
        let (images, labels) = Dataset::Mnist.files(split);
        assert_eq!(md5_hex(&real_bytes(images.name)), images.md5);
        assert_eq!(md5_hex(&real_bytes(labels.name)), labels.md5);
    }
    let mnist = Mnist::load_with(Dataset::Mnist, None, false).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
    // The first training digits of MNIST are 5, 0, 4, 1, 9; the first test digits 7, 2, 1, 0, 4.
    assert_eq!(&mnist.train.labels()[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&mnist.test.labels()[..5], &[7, 2, 1, 0, 4]);
    let mut counts = [0usize; 10];
    mnist.train.labels().iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
}

#[test]
fn real_fashion_mnist_test_split_loads() {
    let dir = Dataset::FashionMnist.resolve_dir(None);
    let test = load_split(Dataset::FashionMnist, &dir, Split::Test, false).unwrap();
    assert_eq!(test.len(), 10_000);
    assert!(test.labels().iter().all(|&l| l < 10));
}

#[test]
fn missing_directory_is_a_clear_error_naming_the_variable() {
    let missing = std::env::temp_dir().join("glimpse-no-such-mnist-dir");
    let err = Mnist::load_with(Dataset::Mnist, Some(&missing), false).unwrap_err();
    assert!(matches!(err, DataError::MissingDir { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("MNIST_DIR") && message.contains("glimpse-no-such-mnist-dir"), "{message}");
}

#[test]
fn missing_file_without_download_names_the_variable() {
    let dir = temp_dir("missing-file");
    let err = load_split(Dataset::Mnist, &dir, Split::Test, false).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("MNIST_DIR"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    let dir = temp_dir("truncated");
    let labels = real_bytes("t10k-labels-idx1-ubyte");
    let path = write(&dir, "t10k-labels-idx1-ubyte", &labels[..labels.len() - 100]);
    let err = read_idx_labels(&path, Some("27ae3e4e09519cfbb04c329615203637")).unwrap_err();
    assert!(matches!(err, DataError::Truncated { expected: 10008, found: 9908, .. }), "{err:?}");

    // Only part of the header.
    let path = write(&dir, "header-only", &labels[..6]);
    assert!(matches!(read_idx_labels(&path, None), Err(DataError::Truncated { .. })));

    // A gzip file cut in the middle.
    let gz = std::fs::read(mnist_dir().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let path = write(&dir, "t10k-images-idx3-ubyte.gz", &gz[..gz.len() / 2]);
    let err = read_idx_images(&path, None).unwrap_err();
    assert!(matches!(err, DataError::TruncatedGzip { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"));

    // Through the loader: a truncated labels file next to good images.
    write(&dir, "t10k-images-idx3-ubyte", &real_bytes("t10k-images-idx3-ubyte"));
    write(&dir, "t10k-labels-idx1-ubyte", &labels[..labels.len() - 1]);
    let err = load_split(Dataset::Mnist, &dir, Split::Test, false).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_magic_number_is_reported() {
    let dir = temp_dir("magic");
    let mut labels = real_bytes("t10k-labels-idx1-ubyte");
    // An images file read as labels, and a labels file with a corrupted magic byte.
    let images = real_bytes("t10k-images-idx3-ubyte");
    let path = write(&dir, "images-as-labels", &images);
    let err = read_idx_labels(&path, None).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { expected: 0x801, found: 0x803, .. }), "{err:?}");
    labels[3] = 0x08;
    let path = write(&dir, "bad-magic", &labels);
    let err = read_idx_labels(&path, None).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("magic"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checksum_mismatch_is_reported() {
    let dir = temp_dir("checksum");
    let mut labels = real_bytes("t10k-labels-idx1-ubyte");
    labels[500] = (labels[500] + 1) % 10; // still a valid label file, but not the real one
    let path = write(&dir, "t10k-labels-idx1-ubyte", &labels);
    assert_eq!(read_idx_labels(&path, None).unwrap().len(), 10_000);
    let err = read_idx_labels(&path, Some("27ae3e4e09519cfbb04c329615203637")).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err:?}");

    // Through the loader, also when the damaged file is gzipped.
    write(&dir, "t10k-images-idx3-ubyte", &real_bytes("t10k-images-idx3-ubyte"));
    std::fs::remove_file(&path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &labels).unwrap();
    write(&dir, "t10k-labels-idx1-ubyte.gz", &encoder.finish().unwrap());
    let err = load_split(Dataset::Mnist, &dir, Split::Test, false).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn small_set(n: usize) -> ImageSet {
    let pixels = (0..n * 784).map(|i| ((i * 37) % 256) as u8).collect();
    ImageSet::new(28, 28, pixels, (0..n).map(|i| (i % 10) as u8).collect()).unwrap()
}

#[test]
fn loader_is_deterministic_and_covers_every_image_once() {
    let dev: dfdx::prelude::Cpu = Default::default();
    let set = small_set(1000);
    let epochs = |seed: u64, view: View| {
        let mut loader = Loader::new(128, view, seed);
        (0..3)
            .map(|_| {
                loader.epoch::<784>(&set, &dev).map(|b| (b.indices.clone(), b.images.as_vec())).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let a = epochs(7, View::Stochastic);
    assert_eq!(a, epochs(7, View::Stochastic));
    assert_ne!(a, epochs(8, View::Stochastic));
    assert_ne!(a[0], a[1], "each epoch is reshuffled");
    for epoch in &a {
        assert_eq!(epoch.len(), 8); // 7 full batches + 104
        assert_eq!(epoch.last().unwrap().0.len(), 1000 - 7 * 128);
        let seen: HashSet<usize> = epoch.iter().flat_map(|(idx, _)| idx.iter().copied()).collect();
        assert_eq!(seen.len(), 1000);
    }

    let mut loader = Loader::new(128, View::Grey, 0).drop_last(true);
    let batches: Vec<_> = loader.epoch::<784>(&set, &dev).collect();
    assert_eq!(batches.len(), 7);
    assert!(batches.iter().all(|b| b.len() == 128));
}

#[test]
fn views_map_grey_levels_as_documented() {
    let dev: dfdx::prelude::Cpu = Default::default();
    let set = small_set(300);
    let grey_of = |i: usize, j: usize| set.image(i)[j] as f32 / 255.0;
    let mut grey = Loader::sequential(300, View::Grey);
    let batch = grey.epoch::<784>(&set, &dev).next().unwrap();
    assert_eq!(batch.indices, (0..300).collect::<Vec<_>>());
    let values = batch.images.as_vec();
    assert!(values.iter().enumerate().all(|(k, &v)| v == grey_of(k / 784, k % 784)));
    assert_eq!(batch.one_hot(&dev).as_vec()[..10], [1.0, 0., 0., 0., 0., 0., 0., 0., 0., 0.]);

    let mut threshold = Loader::sequential(300, View::Threshold(0.5));
    let values = threshold.epoch::<784>(&set, &dev).next().unwrap().images.as_vec();
    assert!(values.iter().enumerate().all(|(k, &v)| v == f32::from(grey_of(k / 784, k % 784) > 0.5)));

    // Stochastic binarisation: only 0/1, with mean close to the grey mean (300*784 draws).
    let mut stochastic = Loader::new(300, View::Stochastic, 3);
    let values = stochastic.epoch::<784>(&set, &dev).next().unwrap().images.as_vec();
    assert!(values.iter().all(|&v| v == 0.0 || v == 1.0));
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    let grey_mean = set.pixels().iter().map(|&p| p as f32 / 255.0).sum::<f32>() / values.len() as f32;
    assert!((mean - grey_mean).abs() < 0.005, "{mean} vs {grey_mean}");

    let fixed = set.binarized_stochastic(1);
    assert_eq!(fixed, set.binarized_stochastic(1));
    assert!(fixed.pixels().iter().all(|&p| p == 0 || p == 255));
}

#[test]
fn mean_image_averages_each_pixel_in_the_view() {
    // Two images: pixel j is j % 256 in the first and 255 in the second.
    let mut pixels: Vec<u8> = (0..784).map(|j| (j % 256) as u8).collect();
    pixels.extend(std::iter::repeat_n(255u8, 784));
    let set = ImageSet::new(28, 28, pixels, vec![0, 1]).unwrap();
    let grey = set.mean_image(View::Grey);
    assert_eq!(grey.len(), 784);
    for (j, &m) in grey.iter().enumerate() {
        let expected = ((j % 256) as f64 / 255.0 + 1.0) / 2.0;
        assert!((m as f64 - expected).abs() < 1e-6, "pixel {j}: {m} vs {expected}");
    }
    assert_eq!(set.mean_image(View::Stochastic), grey);
    let threshold = set.mean_image(View::Threshold(0.5));
    assert_eq!(threshold[0], 0.5); // 0 -> 0, 255 -> 1
    assert_eq!(threshold[200], 1.0); // 200/255 > 0.5 in both
    assert!(ImageSet::new(28, 28, vec![], vec![]).unwrap().mean_image(View::Grey).iter().all(|&m| m == 0.0));
}

#[test]
fn image_sets_of_other_sizes_batch_with_their_own_shape() {
    let dev: dfdx::prelude::Cpu = Default::default();
    // Twelve 60x60 images: image i is filled with grey level i, and its pixel (y, x) = (1, 2) is 200.
    let (h, w) = (60, 60);
    let mut pixels = Vec::new();
    for i in 0..12u8 {
        let mut image = vec![i; h * w];
        image[w + 2] = 200;
        pixels.extend(image);
    }
    let set = ImageSet::new(h, w, pixels, (0..12).map(|i| i % 10).collect()).unwrap();
    assert_eq!((set.height(), set.width(), set.image_len(), set.len()), (60, 60, 3600, 12));
    assert_eq!(set.take(5).height(), 60);
    assert_eq!(set.binarized_stochastic(0).width(), 60);
    assert_eq!(set.mean_image(View::Grey).len(), 3600);
    let mut loader = Loader::new(5, View::Grey, 1);
    let batches: Vec<_> = loader.epoch::<3600>(&set, &dev).collect();
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), [5, 5, 2]);
    for b in &batches {
        assert_eq!((b.height, b.width), (60, 60));
        let values = b.images.as_vec();
        for (row, &i) in values.chunks(3600).zip(&b.indices) {
            assert_eq!(row[0], i as f32 / 255.0);
            assert_eq!(row[w + 2], 200.0 / 255.0);
        }
        let planes = b.image_planes();
        assert_eq!(dfdx::prelude::HasShape::shape(&planes), &(b.len(), dfdx::prelude::Const::<1>, 60, 60));
        assert_eq!(planes[[0, 0, 1, 2]], 200.0 / 255.0);
    }
    // 32x32 too, and asking for the wrong image size is an error before anything is drawn.
    let small = ImageSet::new(32, 32, vec![7; 3 * 1024], vec![0, 1, 2]).unwrap();
    assert_eq!(Loader::sequential(2, View::Grey).epoch::<1024>(&small, &dev).count(), 2);
    let err = Loader::sequential(2, View::Grey).try_epoch::<784>(&small, &dev).err().expect("wrong size");
    assert!(err.to_string().contains("32x32 images (1024 pixels), batches of 784"), "{err}");
    assert!(ImageSet::new(32, 31, vec![0; 1024], vec![0]).is_err());
    assert!(ImageSet::new(0, 32, vec![], vec![]).is_err());
}

#[test]
fn idx_files_of_any_image_size_load() {
    let dir = temp_dir("idx-size");
    // Two 3x5 images in an IDX file.
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5];
    bytes.extend((0..30).map(|v| v as u8));
    let path = write(&dir, "images", &bytes);
    let set = ImageSet::from_idx(read_idx_images(&path, None).unwrap(), vec![4, 9]).unwrap();
    assert_eq!((set.height(), set.width(), set.len()), (3, 5, 2));
    assert_eq!(set.image(1), &(15..30).map(|v| v as u8).collect::<Vec<_>>()[..]);
    assert!(ImageSet::from_idx(read_idx_images(&path, None).unwrap(), vec![4]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn random_shift_moves_images_without_changing_them() {
    use glimpse::data::augment::random_shift;
    use rand::{rngs::StdRng, SeedableRng};
    // A 4x4 block in the middle of two 28x28 images.
    let mut images = vec![0.0f32; 2 * 784];
    for img in 0..2 {
        for y in 12..16 {
            for x in 12..16 {
                images[img * 784 + y * 28 + x] = (img + 1) as f32;
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(0);
    assert_eq!(random_shift(&images, 28, 28, 0, &mut rng), images);
    let mut moved = false;
    for _ in 0..10 {
        let out = random_shift(&images, 28, 28, 2, &mut rng);
        for img in 0..2 {
            let sum: f32 = out[img * 784..(img + 1) * 784].iter().sum();
            assert_eq!(sum, 16.0 * (img + 1) as f32, "the block must move, not be cut");
        }
        moved |= out != images;
    }
    assert!(moved, "no image was shifted in ten tries");
    let first = random_shift(&images, 28, 28, 2, &mut StdRng::seed_from_u64(5));
    assert_eq!(first, random_shift(&images, 28, 28, 2, &mut StdRng::seed_from_u64(5)), "same seed, same shift");
}

#[test]
fn random_shift_of_a_non_square_image_moves_rows_and_columns() {
    use glimpse::data::augment::random_shift;
    use rand::{rngs::StdRng, SeedableRng};
    // One 3x5 image with a single lit pixel at (1, 2): after a shift of at most 1 it is still
    // there once, at most one row and one column away, or cut off never (it is inside the margin).
    let (h, w) = (3, 5);
    let mut image = vec![0.0f32; h * w];
    image[w + 2] = 1.0;
    let mut rng = StdRng::seed_from_u64(3);
    let mut positions = HashSet::new();
    for _ in 0..200 {
        let out = random_shift(&image, h, w, 1, &mut rng);
        assert_eq!(out.iter().sum::<f32>(), 1.0);
        let at = out.iter().position(|&v| v == 1.0).unwrap();
        let (y, x) = (at / w, at % w);
        assert!(y.abs_diff(1) <= 1 && x.abs_diff(2) <= 1, "moved to ({y}, {x})");
        positions.insert((y, x));
    }
    assert_eq!(positions.len(), 9, "all nine offsets occur");
}
