"""Steps per second of gymnasium's CartPole-v1 with random actions, for comparison with glimpse.

Measures one env (reset when an episode ends) and a SyncVectorEnv of 8 (auto-reset), each several
times, and prints the medians; `--json` prints the rows `examples/env_throughput.rs` reads:

    python benches/gym_throughput.py [--json] [--reps 7] [--min-seconds 1.0] [--seed 0]
"""

import argparse
import json
import statistics
import time

import gymnasium as gym


def single_env(reps: int, min_seconds: float, seed: int) -> float:
    env = gym.make("CartPole-v1")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    rates = []
    for _ in range(reps):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            for _ in range(1000):
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    env.reset()
            steps += 1000
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def sync_vector_env(n: int, reps: int, min_seconds: float, seed: int) -> float:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n)])
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    rates = []
    for _ in range(reps):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            for _ in range(200):
                envs.step(envs.action_space.sample())
            steps += 200 * n
        rates.append(steps / (time.perf_counter() - start))
    envs.close()
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--reps", type=int, default=7, help="measurements per row (median reported)")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="minimum seconds per measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    def row(kind: str, envs: int, rate: float) -> dict:
        return {
            "implementation": "gymnasium",
            "kind": kind,
            "envs": envs,
            "workers": 1,
            "steps_per_sec": rate,
            "reps": args.reps,
        }

    rows = [
        row("single", 1, single_env(args.reps, args.min_seconds, args.seed)),
        row("SyncVectorEnv", 8, sync_vector_env(8, args.reps, args.min_seconds, args.seed)),
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"gymnasium {gym.__version__} CartPole-v1, random actions, median of {args.reps}")
        for r in rows:
            print(f"{r['kind']:<14} envs={r['envs']:<3} {r['steps_per_sec']:>12.0f} steps/s")


if __name__ == "__main__":
    main()
