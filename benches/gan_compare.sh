#!/usr/bin/env bash
# glimpse's gan_mnist beside benches/gan_torch.py (the same DCGAN, data, batch, init and optimizer) on
# this machine, 2 threads each. Run it on an idle machine: other load distorts PyTorch's OpenMP threads.
#
#   bash benches/gan_compare.sh time [REPEATS]        # 100 training steps each, alternating, REPEATS times
#                                                     # (default 3): medians, ratio, seconds per epoch
#   bash benches/gan_compare.sh train EPOCHS [SEED]   # both train EPOCHS epochs and write 10,000 samples;
#                                                     # mnist_score scores both beside the real data
#
# TORCH_PYTHON names a Python with torch (default /usr/bin/python3, Debian's python3-torch); GAN_THREADS
# sets both sides' threads (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-time}"
python="${TORCH_PYTHON:-/usr/bin/python3}"
threads="${GAN_THREADS:-2}"
out="${GAN_COMPARE_DIR:-$(mktemp -d)}"
mkdir -p "$out"
export GLIMPSE_NO_PROGRESS=1
cargo build --release --example gan_mnist --example mnist_score
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
case "$mode" in
time)
  repeats="${2:-3}"
  : > "$out/glimpse.txt"
  : > "$out/torch.txt"
  for i in $(seq "$repeats"); do
    rm -rf "$out/g$i"
    ./target/release/examples/gan_mnist --run-dir "$out/g$i" --epochs 1 --train-images 12800 \
      --final-samples 0 --threads "$threads" --seed "$i" > /dev/null
    python3 -c "import json; print(json.load(open('$out/g$i/summary.json'))['epoch_seconds'][0])" >> "$out/glimpse.txt"
    "$python" benches/gan_torch.py --epochs 1 --steps 100 --threads "$threads" --seed "$i" --num-samples 0 \
      --out "$out/t$i.npy" --json-out "$out/t$i.json" > /dev/null
    python3 -c "import json; print(json.load(open('$out/t$i.json'))['seconds_per_epoch'])" >> "$out/torch.txt"
  done
  g=$(median < "$out/glimpse.txt")
  t=$(median < "$out/torch.txt")
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
  echo "seconds per 100 steps (batch 128, $threads threads), medians of $repeats alternating runs:"
  echo "  glimpse $(paste -sd' ' "$out/glimpse.txt") -> $g"
  echo "  pytorch $(paste -sd' ' "$out/torch.txt") -> $t"
  awk -v g="$g" -v t="$t" 'BEGIN {printf "  ratio glimpse/pytorch %.2f; per epoch (468 steps): glimpse %.1f s, pytorch %.1f s\n", g/t, g*4.68, t*4.68}'
  ;;
train)
  epochs="${2:?epochs}"
  seed="${3:-1}"
  rm -rf "$out/glimpse"
  ./target/release/examples/gan_mnist --run-dir "$out/glimpse" --epochs "$epochs" --seed "$seed" --threads "$threads"
  "$python" benches/gan_torch.py --epochs "$epochs" --seed "$seed" --threads "$threads" --out "$out/torch/samples.npy" \
    --json-out "$out/torch/result.json"
  ./target/release/examples/mnist_score "$out/glimpse/samples.npy" "$out/torch/samples.npy" --json "$out/scores.json"
  ;;
*)
  echo "usage: $0 time [REPEATS] | train EPOCHS [SEED]" >&2
  exit 2
  ;;
esac
