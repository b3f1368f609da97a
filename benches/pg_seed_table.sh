#!/usr/bin/env bash
# Runs the policy-gradient examples for seeds 1..5 and prints one row per run
# (example, seed, solved?, env steps, wall seconds) and the median wall time per example.
#
#   benches/pg_seed_table.sh                      # all five examples, seeds 1..5
#   EXAMPLES="cartpole_ppo pendulum_ppo" SEEDS="1 2 3" benches/pg_seed_table.sh
#
# Run dirs (TensorBoard events, checkpoints, summary.json) go under $OUT
# (default runs/pg_seed_table-<UTC time>). Wall seconds are the training loop's own clock
# (evaluations included, process start-up excluded); they depend on the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${EXAMPLES:-"cartpole_ppo pendulum_ppo cartpole_a2c acrobot_ppo cartpole_reinforce"}
seeds=${SEEDS:-"1 2 3 4 5"}
out=${OUT:-runs/pg_seed_table-$(date -u +%Y%m%d-%H%M%S)}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
for e in $examples; do
    cargo build --release --quiet --example "$e"
done

field() { grep -o "\"$2\": *[^,}]*" "$1" | head -1 | sed 's/.*: *//; s/"//g'; }

# Machines differ (see the notes on CPUs): the table names the one it ran on.
cpuinfo() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo 2>/dev/null | sed 's/.*: //'; }
echo "cpu: $(cpuinfo 'model name') (family $(cpuinfo 'cpu family'), model $(cpuinfo model)), $(nproc 2>/dev/null) cores, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" | tee "$out/table.txt"
printf '%-20s %4s %7s %10s %12s\n' example seed solved env_steps wall_seconds | tee -a "$out/table.txt"
for e in $examples; do
    walls=()
    for s in $seeds; do
        dir="$out/$e-seed$s"
        if "$target/release/examples/$e" --seed "$s" --run-dir "$dir" >"$dir.log" 2>&1; then
            solved=$(field "$dir/summary.json" solved)
            steps=$(field "$dir/summary.json" env_steps)
            wall=$(field "$dir/summary.json" wall_seconds)
            walls+=("$wall")
            printf '%-20s %4s %7s %10s %12.1f\n' "$e" "$s" "$solved" "$steps" "$wall" | tee -a "$out/table.txt"
        else
            printf '%-20s %4s %7s %10s %12s\n' "$e" "$s" error - - | tee -a "$out/table.txt"
        fi
    done
    if [ ${#walls[@]} -gt 0 ]; then
        median=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
        printf '%-20s median wall seconds %.1f\n' "$e" "$median" | tee -a "$out/table.txt"
    fi
done
echo "table: $out/table.txt"
