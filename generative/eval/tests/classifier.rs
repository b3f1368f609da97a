//! The MNIST classifier learns from a few thousand real images, gives 128 features per image,
//! and refuses images of another size.

use dfdx::prelude::*;
use glimpse::data::{Dataset, ImageSet, Loader, Mnist, View};
use glimpse::optim::{Adam, AdamConfig};
use glimpse_eval::classifier::{accuracy, features, train_epoch, MnistCnn};
use rand::{rngs::StdRng, SeedableRng};

#[test]
fn classifier_learns_and_gives_features() {
    let mnist = Mnist::load_with(Dataset::Mnist, None, false).expect("MNIST files (set MNIST_DIR)");
    let (train, test) = (mnist.train.take(3000), mnist.test.take(1000));
    let dev = Cpu::seed_from_u64(0);
    let mut model = dev.build_module::<MnistCnn, f32>();
    let mut opt = Adam::new(&model, AdamConfig { lr: 2e-3, ..Default::default() });
    let mut loader = Loader::new(64, View::Grey, 0);
    let mut rng = StdRng::seed_from_u64(1);
    let untrained = accuracy(&model, &test, &dev, 500);
    let mut losses = Vec::new();
    for _ in 0..2 {
        let stats = train_epoch(&mut model, &mut opt, &mut loader, &train, &dev, 2, &mut rng, |_, l| losses.push(l))
            .expect("training");
        assert_eq!(stats.steps, 3000usize.div_ceil(64));
    }
    let trained = accuracy(&model, &test, &dev, 500);
    assert!(untrained < 0.3 && trained > 0.9, "accuracy {untrained} before, {trained} after");
    assert!(losses[losses.len() - 10..].iter().sum::<f32>() < losses[..10].iter().sum::<f32>() / 3.0);

    let x = Loader::sequential(7, View::Grey).epoch::<784>(&test, &dev).next().unwrap().images;
    let f = features(&model, x).as_vec();
    assert_eq!(f.len(), 7 * 128);
    assert!(f.iter().all(|&v| v >= 0.0 && v.is_finite()), "ReLU features");
    assert!(f.iter().any(|&v| v > 0.0));
}

#[test]
fn images_of_another_size_are_an_error() {
    let dev = Cpu::seed_from_u64(0);
    let mut model = dev.build_module::<MnistCnn, f32>();
    let mut opt = Adam::new(&model, AdamConfig::default());
    let set = ImageSet::new(32, 32, vec![0; 2 * 1024], vec![0, 1]).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let err = train_epoch(&mut model, &mut opt, &mut Loader::new(2, View::Grey, 0), &set, &dev, 0, &mut rng, |_, _| {})
        .unwrap_err();
    assert!(err.contains("28x28") && err.contains("32x32"), "{err}");
}
