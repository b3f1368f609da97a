#!/usr/bin/env bash
# Runs benches/ram_torch.py and glimpse's ram_mnist back to back on the same task, data, batch and
# threads, then prints seconds per epoch side by side with the ratio (medians over the epochs). Run it
# on an idle machine: both use 2 threads, and other load distorts PyTorch's OpenMP threads badly.
#   bash benches/ram_compare.sh [TASK] [EPOCHS] [THREADS]    # TASK: mnist|translated|cluttered60|cluttered100
set -euo pipefail
cd "$(dirname "$0")/.."
task="${1:-mnist}"
epochs="${2:-2}"
threads="${3:-2}"
python="${TORCH_PYTHON:-/usr/bin/python3}"   # a Python with torch (Debian: python3-torch)
case "$task" in
  mnist) glimpse=(--patch 8 --scales 1 --glimpses 6 --std 0.05) ;;
  translated | cluttered60) glimpse=(--patch 12 --scales 3 --glimpses 6 --std 0.25) ;;
  cluttered100) glimpse=(--patch 12 --scales 4 --glimpses 8 --std 0.25) ;;
  *) echo "unknown task $task" >&2; exit 2 ;;
esac
out="$(mktemp -d)"
cargo build --release --example ram_mnist
"$python" benches/ram_torch.py --task "$task" "${glimpse[@]}" --epochs "$epochs" --threads "$threads" \
  --json-out "$out/torch.json"
GLIMPSE_NO_PROGRESS=1 ./target/release/examples/ram_mnist --task "$task" "${glimpse[@]}" --epochs "$epochs" \
  --learning-rate 3e-4 --lr-schedule constant \
  --threads "$threads" --figure-images 0 --run-dir "$out/glimpse" > "$out/glimpse.log"
"$python" - "$out/torch.json" "$out/glimpse/summary.json" "$task" "$threads" <<'PY'
import json, sys
torch, ours = (json.load(open(p)) for p in sys.argv[1:3])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"RAM on {sys.argv[3]}, {sys.argv[4]} threads, {cpu}")
print(f"{'':<22}{'glimpse':>12}{'pytorch':>12}")
print(f"{'seconds per epoch':<22}{ours['seconds_per_epoch']:>12.2f}{torch['seconds_per_epoch']:>12.2f}")
print(f"{'test error':<22}{ours['test_error']:>12.4f}{torch['test_error']:>12.4f}")
print(f"ratio glimpse/pytorch: {ours['seconds_per_epoch'] / torch['seconds_per_epoch']:.2f}")
PY
