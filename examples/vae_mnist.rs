//! A variational autoencoder on MNIST, as PyTorch's `examples/vae` (784-400-20, batch 128, Adam 1e-3),
//! on glimpse's run layer. The decoder's output bias starts at the data's log-odds
//! (`--output-bias pytorch` for the example's init).
//!
//! ```sh
//! cargo run --release --example vae_mnist                       # 10 epochs, PNGs + summary.json in runs/
//! cargo run --release --example vae_mnist -- --latent 2         # also the 2-D latent manifold
//! cargo run --release --example vae_mnist -- --data-view stochastic --iw-samples 5000   # log p(x) in nats
//! cargo run --release --example vae_mnist -- --run-dir /tmp/v --stop-after 4   # checkpoint, exit
//! cargo run --release --example vae_mnist -- --resume /tmp/v    # continues exactly
//! cargo run --release --example vae_mnist -- --eval /tmp/v      # test loss of the checkpoint
//! cargo run --release --example vae_mnist -- --sample /tmp/v --num 1000 --out /tmp/s.npy   # uint8 [1000, 28, 28]
//! bash benches/vae_compare.sh 10 1                                # beside PyTorch
//! ```

fn main() {
    glimpse::run::exit_on_error(glimpse_vae::cli::run_command_line());
}
