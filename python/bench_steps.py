"""Steps per second from Python: gymnasium's CartPole vs glimpse's, single and vectorised.

    python python/bench_steps.py [--seconds 1.0] [--repeats 5] [--json]

Each row steps CartPole-v1 with random actions drawn beforehand, resetting finished episodes as a
training loop would, for about ``--seconds`` per repeat; the median of ``--repeats`` is printed
with its ratio to gymnasium's single env (all rows measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np

import glimpse


def single_env_rate(env: gym.Env, seconds: float) -> float:
    """Steps per second of one env behind the gymnasium API (``gym.make`` with its wrappers)."""
    actions = np.random.default_rng(0).integers(0, 2, size=100_000).tolist()
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while True:
        for a in actions[:1000]:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps / elapsed


def vector_env_rate(envs: gym.vector.VectorEnv, seconds: float) -> float:
    """Env steps per second of a vector env (num_envs per call; autoreset inside)."""
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 2, size=envs.num_envs) for _ in range(64)]
    envs.reset(seed=0)
    calls, start = 0, time.perf_counter()
    while True:
        for actions in batches:
            envs.step(actions)
        calls += len(batches)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * envs.num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of one repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per row (median reported)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    rows = [
        ("gymnasium CartPole-v1 (gym.make)", lambda: single_env_rate(gym.make("CartPole-v1"), args.seconds)),
        ("glimpse/CartPole-v1 (gym.make)", lambda: single_env_rate(gym.make("glimpse/CartPole-v1"), args.seconds)),
        ("glimpse.VectorEnv, 64 envs", lambda: vector_env_rate(glimpse.VectorEnv("CartPole-v1", 64), args.seconds)),
        ("glimpse.VectorEnv, 1024 envs", lambda: vector_env_rate(glimpse.VectorEnv("CartPole-v1", 1024), args.seconds)),
    ]
    results = []
    for name, measure in rows:
        rates = [measure() for _ in range(args.repeats)]
        results.append({"name": name, "steps_per_s": statistics.median(rates), "all": rates})
    base = results[0]["steps_per_s"]
    for r in results:
        r["vs_gymnasium"] = r["steps_per_s"] / base
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'what':<36} {'steps/s (median)':>18} {'x gymnasium':>12}")
    for r in results:
        print(f"{r['name']:<36} {r['steps_per_s']:>18,.0f} {r['vs_gymnasium']:>12.1f}")


if __name__ == "__main__":
    main()
