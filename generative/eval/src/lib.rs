//! Networks that evaluate generative models on MNIST.
//!
//! - [`classifier`]: a small convolutional classifier ([`classifier::MnistCnn`], ~99.2% test
//!   accuracy), one training epoch ([`classifier::train_epoch`]), [`classifier::accuracy`], and
//!   its 128-d penultimate layer ([`classifier::features`]), the feature space for
//!   Inception-score and FID-style metrics of generated digits.

pub mod classifier;
