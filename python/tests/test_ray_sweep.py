"""python/examples/ray_sweep.py: its grid and aggregation, and a small sweep on a local Ray."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import glimpse

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ray_sweep.py"
spec = importlib.util.spec_from_file_location("ray_sweep", SCRIPT)
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def test_the_grid_is_every_combination_with_json_values():
    grid = sweep.parse_grid(["learning_rate=1e-3,3e-4", "dueling=true,false", "loss=huber"])
    assert len(grid) == 4
    assert grid[0] == {"learning_rate": 1e-3, "dueling": True, "loss": "huber"}
    assert grid[3] == {"learning_rate": 3e-4, "dueling": False, "loss": "huber"}
    assert sweep.parse_grid([]) == [{}]
    assert sweep.parse_grid(["solve_threshold=null"]) == [{"solve_threshold": None}]
    with pytest.raises(ValueError, match="NAME=V1"):
        sweep.parse_grid(["learning_rate"])


def test_curves_average_over_seeds_holding_a_stopped_runs_last_value():
    steps, mean, std = sweep.mean_std_curve([[(100, 10.0), (200, 30.0)], [(100, 20.0)]])
    assert steps == [100, 200]
    assert mean == [15.0, 25.0]  # the second run stopped at 100 with 20
    assert std == [5.0, 5.0]
    steps, mean, _ = sweep.mean_std_curve([[(200, 4.0)], [(100, 2.0)]])
    assert (steps, mean) == ([100, 200], [2.0, 3.0])  # no value before a run's first evaluation


def test_a_trial_reads_its_learning_curve_back(tmp_path):
    pytest.importorskip("tensorboard")
    result = sweep.run_trial("ppo", "CartPole-v1", {"total_timesteps": 2048, "solve_threshold": None}, 1, str(tmp_path / "t"))
    assert [s for s, _ in result["curve"]] == sorted(s for s, _ in result["curve"]) and result["curve"]
    assert result["curve"][-1][1] == pytest.approx(result["summary"]["eval_mean_return"])
    sweep.write_csv([result], tmp_path / "results.csv")
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert rows[0]["seed"] == "1" and rows[0]["env_steps"] == "2048"


def test_a_sweep_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    out = tmp_path / "sweep"
    args = ["--agent", "ppo", "--env", "CartPole-v1", "--grid", "learning_rate=3e-4,1e-3", "--seeds", "1", "2"]
    args += ["--set", "total_timesteps=2048", "--set", "solve_threshold=null", "--out", str(out)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, env=env, timeout=600)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["learning_rate"], r["seed"]) for r in rows] == [("0.0003", "1"), ("0.0003", "2"), ("0.001", "1"), ("0.001", "2")]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    for r in results:
        assert json.loads((Path(r["run_dir"]) / "summary.json").read_text()) == r["summary"]
        assert r["curve"]
    # A trial on Ray is the same run as the same learn() here.
    direct = glimpse.PPO("CartPole-v1", seed=2, run_dir=tmp_path / "direct", learning_rate=1e-3, total_timesteps=2048, solve_threshold=None)
    direct.learn()
    on_ray = Path(results[3]["run_dir"]) / "checkpoint"
    here = tmp_path / "direct" / "checkpoint"
    name = lambda c: c / (c / "LATEST").read_text().strip()  # noqa: E731
    policy_files = sorted(p.name for p in name(here).glob("*.safetensors"))
    assert policy_files
    for f in policy_files:
        assert (name(on_ray) / f).read_bytes() == (name(here) / f).read_bytes(), f
