"""The cost of running a sweep on Ray: a 2 x 3 sweep (2 settings x 3 seeds) of PPO on CartPole-v1
with a fixed budget, run by python/examples/ray_sweep.py on a local Ray, against the same six
trials one after another in this process.

    python python/bench_sweep.py [--timesteps 40960]

Prints both wall times, the trials' own training time, and Ray's overhead per trial: the Ray
wall time times the CPUs it used, less the trials' training time, over the trials (ray.init and
the driver's writing included).
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "examples" / "ray_sweep.py"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--timesteps", type=int, default=40960)
    p.add_argument("--cpus", type=int, default=os.cpu_count())
    args = p.parse_args()
    spec = importlib.util.spec_from_file_location("ray_sweep", SCRIPT)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)

    grid = ["learning_rate=3e-4,1e-3"]
    seeds = [1, 2, 3]
    fixed = {"total_timesteps": args.timesteps, "solve_threshold": None}
    configs = [{**fixed, **c} for c in sweep.parse_grid(grid)]
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        serial = [
            sweep.run_trial("ppo", "CartPole-v1", c, s, f"{tmp}/serial/{sweep.config_name(c)}/seed-{s}")
            for c in configs
            for s in seeds
        ]
        serial_wall = time.perf_counter() - clock

        cmd = [sys.executable, str(SCRIPT), "--agent", "ppo", "--env", "CartPole-v1", "--grid", grid[0]]
        cmd += ["--seeds", *map(str, seeds), "--out", f"{tmp}/ray"]
        cmd += [x for k, v in fixed.items() for x in ("--set", f"{k}={json.dumps(v)}")]
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        clock = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ray_wall = time.perf_counter() - clock
        on_ray = json.loads(Path(f"{tmp}/ray/results.json").read_text())

    train_serial = sum(r["summary"]["wall_seconds"] for r in serial)
    train_ray = sum(r["summary"]["wall_seconds"] for r in on_ray)
    same = all(a["summary"]["eval_mean_return"] == b["summary"]["eval_mean_return"] for a, b in zip(serial, on_ray))
    cpus = min(args.cpus, len(on_ray))
    print(f"2 x 3 sweep, PPO CartPole-v1, {args.timesteps} steps per trial, {os.cpu_count()} CPUs")
    print(f"one after another: {serial_wall:7.1f} s wall ({train_serial:.1f} s training)")
    print(f"on a local Ray:    {ray_wall:7.1f} s wall ({train_ray:.1f} s training), {serial_wall / ray_wall:.2f}x faster")
    print(f"Ray's overhead per trial: {(ray_wall * cpus - train_ray) / len(on_ray):.2f} s (ray.init and the driver included)")
    print(f"same results on Ray as one after another: {same}")


if __name__ == "__main__":
    main()
