//! A DCGAN on MNIST (Radford et al.'s recipe: Adam 2e-4 with beta1 0.5, batch norm, LeakyReLU
//! 0.2, N(0, 0.02) init) on glimpse's run layer: a grid of fixed-latent samples after every
//! epoch (`RUN/grids/`, TensorBoard), 10,000 samples in `RUN/samples.npy` at the end.
//!
//! ```sh
//! cargo run --release --example gan_mnist                        # 10 epochs, samples + summary.json in runs/
//! cargo run --release --example gan_mnist -- --run-dir /tmp/g --stop-after 3   # checkpoint, exit
//! cargo run --release --example gan_mnist -- --resume /tmp/g     # continues exactly
//! cargo run --release --example gan_mnist -- --eval /tmp/g       # D(x), D(G(z)) of the checkpoint
//! cargo run --release --example gan_mnist -- --sample /tmp/g --num 10000 --out /tmp/s.npy   # uint8 [N, 28, 28]
//! ```

fn main() {
    glimpse::run::exit_on_error(glimpse_gan::cli::run_command_line());
}
