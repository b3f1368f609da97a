#!/usr/bin/env bash
# Runs an example for several seeds and prints a table: seed, solved?, env steps, wall seconds.
# Usage: examples/dqn_seeds.sh [EXAMPLE] [FIRST_SEED] [LAST_SEED] [extra flags...]
#   examples/dqn_seeds.sh cartpole_dqn 1 10
set -euo pipefail
cd "$(dirname "$0")/.."
example="${1:-cartpole_dqn}"; first="${2:-1}"; last="${3:-10}"; shift $(( $# < 3 ? $# : 3 )) || true
cargo build --release --quiet --example "$example"
bin="${CARGO_TARGET_DIR:-target}/release/examples/$example"
out="runs/${example}-seeds-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
printf "%-5s %-7s %-10s %-10s %-12s %s\n" seed solved env_steps wall_s solved_at eval_mean
for seed in $(seq "$first" "$last"); do
  "$bin" --seed "$seed" --run-dir "$out/seed-$seed" "$@" >/dev/null 2>"$out/seed-$seed.log" || { echo "seed $seed failed: $(tail -1 "$out/seed-$seed.log")"; continue; }
  python3 - "$out/seed-$seed/summary.json" "$seed" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
solved = s["solved_at_step"] is not None
print(f'{sys.argv[2]:<5} {"yes" if solved else "no":<7} {s["env_steps"]:<10} {s["wall_seconds"]:<10.2f} {str(s["solved_at_step"]):<12} {s["eval_mean_return"]:.1f}')
PY
done | tee "$out/table.txt"
python3 - "$out/table.txt" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and l.split()[0].isdigit()]
solved = [r for r in rows if r[1] == "yes"]
print(f"solved {len(solved)}/{len(rows)}; median wall seconds (solved runs) "
      f"{statistics.median(float(r[3]) for r in solved) if solved else float('nan'):.2f}; "
      f"median env steps to solve {statistics.median(int(r[2]) for r in solved) if solved else 'n/a'}")
PY
