"""A sweep of glimpse agents on Ray: a grid of settings × seeds, one Ray task per trial.

    python python/examples/ray_sweep.py --agent ppo --env CartPole-v1 \\
        --grid learning_rate=3e-4,1e-3 --grid ent_coef=0.0,0.01 --seeds 1 2 3

Each trial is one ``learn()`` of ``glimpse.<AGENT>`` with ``num_cpus=1`` (the agents run one
thread each), writing its own run directory ``OUT/<config>/seed-<seed>`` on the node that runs it.
The trial returns its summary and learning curve (the greedy evaluations ``eval/mean_return``
read back from the run's TensorBoard events) through Ray, so the driver needs no shared disk; it
writes ``OUT/results.csv`` (one row per trial) and ``OUT/curves.png`` (mean ± std over seeds of
the greedy return against env steps, one line per configuration).

Without ``--address`` the script starts a local Ray (``ray.init()``); ``--address auto`` joins
the cluster of the machine it runs on, ``--address ray://HEAD:10001`` a remote one (see
docs/python.md). Needs the package's ``ray`` extra: ``pip install "ray[default]" matplotlib tensorboard``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import socket
import time
from pathlib import Path

AGENTS = {"dqn": "DQN", "ppo": "PPO", "a2c": "A2C", "reinforce": "REINFORCE"}
CURVE_TAG = "eval/mean_return"


def parse_grid(items: list[str]) -> list[dict]:
    """``["lr=1e-3,3e-4", "gamma=0.99"]`` -> every combination, values read as JSON
    (numbers, ``true``/``false``, ``null``; anything else is a string)."""
    axes = []
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--grid {item!r}: expected NAME=V1,V2,...")
        axes.append([(name, _value(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_name(settings: dict) -> str:
    """A directory name for one configuration: ``learning_rate=0.001,ent_coef=0.01``."""
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


def read_curve(run_dir: Path, tag: str = CURVE_TAG) -> list[tuple[int, float]]:
    """``(env step, value)`` of a scalar in a run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return []
    return [(int(e.step), float(e.value)) for e in events.Scalars(tag)]


def run_trial(agent: str, env: str, settings: dict, seed: int, run_dir: str) -> dict:
    """One trial: trains, then returns its summary and curve (runs inside a Ray task)."""
    import glimpse

    model = getattr(glimpse, AGENTS[agent])(env, seed=seed, run_dir=run_dir, **settings)
    summary = model.learn()
    return {
        "settings": settings,
        "seed": seed,
        "run_dir": run_dir,
        "node": socket.gethostname(),
        "summary": summary,
        "curve": read_curve(Path(run_dir)),
    }


def mean_std_curve(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float]]:
    """The mean and std over seeds at every step any seed evaluated at. A run that stopped
    early (solved) keeps its last value from then on; before a run's first evaluation it has no
    value and is left out."""
    steps = sorted({s for c in curves for s, _ in c})
    means, stds = [], []
    for step in steps:
        values = []
        for c in curves:
            seen = [v for s, v in c if s <= step]
            if seen:
                values.append(seen[-1])
        mean = sum(values) / len(values)
        means.append(mean)
        stds.append(math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)))
    return steps, means, stds


def write_csv(results: list[dict], path: Path) -> None:
    names = sorted({k for r in results for k in r["settings"]})
    fields = ["config", *names, "seed", "solved", "solved_at_step", "eval_mean_return", "env_steps", "wall_seconds", "node", "run_dir"]
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=fields)
        out.writeheader()
        for r in results:
            s = r["summary"]
            row = {"config": config_name(r["settings"]), **r["settings"], "seed": r["seed"], "node": r["node"], "run_dir": r["run_dir"]}
            row.update({k: s.get(k) for k in ["solved", "solved_at_step", "eval_mean_return", "env_steps", "wall_seconds"]})
            out.writerow(row)


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys(config_name(r["settings"]) for r in results):
        curves = [r["curve"] for r in results if config_name(r["settings"]) == name and r["curve"]]
        if not curves:
            continue
        steps, mean, std = mean_std_curve(curves)
        ax.plot(steps, mean, label=f"{name} ({len(curves)} seeds)")
        ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy mean return")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agent", choices=sorted(AGENTS), default="ppo")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2", help="a setting and its values (repeat)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=V", help="a setting for every trial (repeat)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--out", type=Path, default=None, help="default runs/sweep-<agent>-<env>-<time>")
    p.add_argument("--address", default=None, help="Ray cluster to join (auto, ray://HEAD:10001); default: start a local Ray")
    args = p.parse_args(argv)

    import ray

    fixed = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set {item!r}: expected NAME=VALUE")
        fixed[name] = _value(value)
    configs = [{**fixed, **c} for c in parse_grid(args.grid)]
    out = args.out or Path("runs") / f"sweep-{args.agent}-{args.env}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    # Settings are checked here, before any task starts: a typo fails in a second, not on the cluster.
    import glimpse

    for c in configs:
        getattr(glimpse, AGENTS[args.agent])(args.env, **c)

    ray.init(address=args.address)
    # One CPU per trial, and one thread: glimpse's parallel parts (rayon) would otherwise start a
    # thread per core in every trial and contend with the other trials.
    trial = ray.remote(num_cpus=1, runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}})(run_trial)
    pending = [
        trial.remote(args.agent, args.env, c, seed, str(out / config_name(c) / f"seed-{seed}"))
        for c in configs
        for seed in args.seeds
    ]
    print(f"{len(pending)} trials ({len(configs)} configurations x {len(args.seeds)} seeds) on {ray.cluster_resources().get('CPU', 0):.0f} CPUs")
    results = []
    while pending:
        done, pending = ray.wait(pending)
        for r in ray.get(done):
            s = r["summary"]
            print(f"{config_name(r['settings'])} seed {r['seed']}: solved={s['solved']} at {s['solved_at_step']}, greedy {s['eval_mean_return']}, {s['wall_seconds']:.1f} s on {r['node']}")
            results.append(r)
    results.sort(key=lambda r: (configs.index(r["settings"]), r["seed"]))
    write_csv(results, out / "results.csv")
    plot(results, out / "curves.png", f"{AGENTS[args.agent]} on {args.env}")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'results.csv'}, {out / 'curves.png'}")
    return results


if __name__ == "__main__":
    main()
