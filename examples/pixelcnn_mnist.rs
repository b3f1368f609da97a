//! PixelCNN (van den Oord et al. 2016) on dynamically binarised MNIST, on glimpse's run layer:
//! the exact test negative log-likelihood in nats after every epoch.
//!
//! ```sh
//! cargo run --release --example pixelcnn_mnist                        # 60 epochs, summary.json in runs/
//! cargo run --release --example pixelcnn_mnist -- --run-dir /tmp/p --stop-after 2   # checkpoint, exit
//! cargo run --release --example pixelcnn_mnist -- --resume /tmp/p     # continues exactly
//! cargo run --release --example pixelcnn_mnist -- --eval /tmp/p       # test NLL of the checkpoint
//! ```

fn main() {
    glimpse::run::exit_on_error(glimpse_pixelcnn::cli::run_command_line());
}
