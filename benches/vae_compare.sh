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
# PyTorch twice: as its example is (nn.Linear's init everywhere), and with glimpse's default init of the
# decoder's output bias (the log-odds of the mean training image), so that the losses compare like for like.
for init in pytorch data-mean; do
  "$python" benches/vae_torch.py --epochs "$epochs" --threads 2 --seed "$seed" --output-bias "$init" \
    --json-out "$out/torch-$init.json"
done
GLIMPSE_NO_PROGRESS=1 cargo run --release --example vae_mnist -- --epochs "$epochs" --threads 2 --seed "$seed" \
  --run-dir "$out/glimpse" --compare-torch "$out/torch-pytorch.json" --compare-torch "$out/torch-data-mean.json"
