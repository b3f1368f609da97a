//! Scores `.npy` files of generated MNIST digits with the MNIST classifier: the Inception-style
//! score (10 splits, mean ± std), the Fréchet distance of its 128-d penultimate features to the
//! test set's, and the class histogram; beside the same figures for the real test set (the
//! ceiling; its FD is to the first 10,000 training images). See docs/generative-eval.md.
//!
//! ```sh
//! cargo run --release --example mnist_score -- samples.npy                 # classifier in runs/mnist-classifier
//! cargo run --release --example mnist_score -- --classifier runs/c a.npy b.npy --json scores.json
//! ```
//!
//! A classifier directory that holds no checkpoint gets one trained there first (`mnist_cnn`'s
//! defaults, seed 1). Samples are `uint8 [N, 28, 28]` or `float32 [N, 28, 28]` in [0, 1].

fn main() {
    glimpse::run::exit_on_error(glimpse_eval::cli::run_command_line());
}
