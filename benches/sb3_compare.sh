#!/usr/bin/env bash
# Time to solve CartPole-v1, glimpse beside Stable-Baselines3, in one run: `cartpole_dqn` and SB3's
# DQN over seeds 1..10, `cartpole_ppo` and SB3's PPO over seeds 1..3, seed by seed alternately, both
# with the RL-Zoo hyperparameters and stopped at the first greedy evaluation (100 episodes, every
# 2,000 env steps for DQN and 1,280 for PPO) whose mean return is at least 475. Prints a table per
# algorithm, the medians over the solved seeds and the ratio glimpse / SB3.
#   bash benches/sb3_compare.sh [DQN_SEEDS] [PPO_SEEDS]      # defaults: 10 3
# SB3 2.4.1 (the last release that accepts torch 1.13) goes into its own venv ($SB3_VENV, default
# ~/venvs/sb3) over Debian's python3-torch, with gymnasium 1.0 (SB3 2.4.1 needs gymnasium < 1.1).
set -euo pipefail
cd "$(dirname "$0")/.."
dqn_seeds="${1:-10}"
ppo_seeds="${2:-3}"
venv="${SB3_VENV:-$HOME/venvs/sb3}"
if ! "$venv/bin/python" -c "import stable_baselines3" 2>/dev/null; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --no-deps stable-baselines3==2.4.1 gymnasium==1.0.0 cloudpickle \
    farama-notifications typing-extensions
  "$venv/bin/pip" install -q "numpy==$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')" pandas matplotlib
fi
cargo build --release --quiet --example cartpole_dqn --example cartpole_ppo
out="$(mktemp -d)"
export GLIMPSE_NO_PROGRESS=1
for algo in dqn ppo; do
  case "$algo" in
    dqn) seeds="$dqn_seeds"; every=2000 ;;
    ppo) seeds="$ppo_seeds"; every=1280 ;;
  esac
  for seed in $(seq 1 "$seeds"); do
    ./target/release/examples/cartpole_$algo --seed "$seed" --run-dir "$out/$algo-$seed" > /dev/null
    "$venv/bin/python" benches/sb3_cartpole.py --algo "$algo" --seeds "$seed" --eval-every "$every" \
      --eval-episodes 100 >> "$out/sb3-$algo.jsonl"
  done
done
"$venv/bin/python" - "$out" "$dqn_seeds" "$ppo_seeds" <<'PY'
import json, statistics, sys
out, counts = sys.argv[1], {"dqn": int(sys.argv[2]), "ppo": int(sys.argv[3])}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"CartPole-v1, time to solve (greedy mean >= 475 over 100 episodes), {cpu}")
for algo, n in counts.items():
    sb3 = {r["seed"]: r for r in map(json.loads, open(f"{out}/sb3-{algo}.jsonl"))}
    ours = {s: json.load(open(f"{out}/{algo}-{s}/summary.json")) for s in range(1, n + 1)}
    print(f"\n{algo.upper():<5}{'glimpse s':>11}{'steps':>9}{'SB3 s':>10}{'steps':>9}{'ratio':>8}")
    for s in range(1, n + 1):
        g, b = ours[s], sb3[s]
        gs = f"{g['wall_seconds']:.2f}" if g["solved"] else "unsolved"
        bs = f"{b['wall_seconds']:.2f}" if b["solved"] else "unsolved"
        ratio = f"{g['wall_seconds'] / b['wall_seconds']:.3f}" if g["solved"] and b["solved"] else "-"
        print(f"{s:<5}{gs:>11}{g['env_steps']:>9}{bs:>10}{b['env_steps']:>9}{ratio:>8}")
    g_ok = [g["wall_seconds"] for g in ours.values() if g["solved"]]
    b_ok = [b["wall_seconds"] for b in sb3.values() if b["solved"]]
    gm = statistics.median(g_ok) if g_ok else float("nan")
    bm = statistics.median(b_ok) if b_ok else float("nan")
    print(f"solved: glimpse {len(g_ok)}/{n}, SB3 {len(b_ok)}/{n}; median seconds: glimpse {gm:.2f}, "
          f"SB3 {bm:.2f}; ratio of medians {gm / bm:.3f}")
PY
