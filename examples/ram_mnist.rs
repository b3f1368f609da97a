//! The Recurrent Attention Model (Mnih et al. 2014) on MNIST tasks, on glimpse's run layer: a
//! few multi-resolution glimpses per image, a ReLU RNN (or LSTM) core, the locations learned by
//! REINFORCE with a learned baseline, the class from the last state.
//!
//! ```sh
//! cargo run --release --example ram_mnist                          # 28×28, 6 glimpses of 8×8
//! cargo run --release --example ram_mnist -- --task translated     # 60×60, 6 glimpses of 12×12 at 3 scales
//! cargo run --release --example ram_mnist -- --task cluttered60    # 60×60 with 4 distractors
//! cargo run --release --example ram_mnist -- --task cluttered60 --locations random   # the ablation
//! cargo run --release --example ram_mnist -- --run-dir /tmp/r --stop-after 3   # checkpoint, exit
//! cargo run --release --example ram_mnist -- --resume /tmp/r       # continues exactly
//! cargo run --release --example ram_mnist -- --eval /tmp/r --test-samples 10   # test error, 10 paths averaged
//! ```

fn main() {
    glimpse::run::exit_on_error(glimpse_ram::cli::run_command_line());
}
