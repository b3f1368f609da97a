#!/usr/bin/env bash
# Runs PyTorch's example VAE and glimpse's vae_mnist back to back on the same MNIST files with the same
# threads, then prints seconds per epoch and test loss side by side with the ratio. Run it on an idle
# machine: both use 2 threads, and other load distorts PyTorch's OpenMP threads badly.
#   bash benches/vae_compare.sh [EPOCHS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-10}"
seed="${2:-1}"
python="${TORCH_PYTHON:-/usr/bin/python3}"   # a Python with torch (Debian: python3-torch)
out="$(mktemp -d)"
cargo build --release --example vae_mnist
"$python" benches/vae_torch.py --epochs "$epochs" --threads 2 --seed "$seed" --json-out "$out/torch.json"
cargo run --release --example vae_mnist -- --epochs "$epochs" --threads 2 --seed "$seed" \
  --run-dir "$out/glimpse" --no-progress --compare-torch "$out/torch.json"
