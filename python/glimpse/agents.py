"""glimpse's agents for Python, with Stable-Baselines3's habits::

    import glimpse

    model = glimpse.DQN("CartPole-v1", seed=1)
    summary = model.learn()                 # the Rust agent, GIL released; summary.json as a dict
    actions, _ = model.predict(obs, deterministic=True)
    model.evaluate(n_episodes=100)          # {"mean_return": ..., "std_return": ..., ...}
    model.save("dqn-cartpole")
    model = glimpse.DQN.load("dqn-cartpole")

Each agent trains on a glimpse env id with the settings of the matching Rust example
(``cartpole_dqn``, ``acrobot_ppo``, ...) unless keyword arguments replace them; the same seed gives
the same run as ``cargo run --example ...`` with that seed. A run writes the Rust run directory
(TensorBoard events, ``config.json``, checkpoints, ``summary.json``) into ``run_dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from glimpse import _glimpse

__all__ = ["A2C", "DQN", "PPO", "REINFORCE"]

# Written beside a run's files by `save`, so that `load` knows the agent and the env.
MODEL_FILE = "glimpse_model.json"


def _env_id(env: str) -> str:
    if not isinstance(env, str):
        raise TypeError(f"env must be a glimpse env id such as 'CartPole-v1', got {type(env).__name__}")
    return env.removeprefix("glimpse/")


def _default_run_dir(kind: str, env_id: str) -> Path:
    """``runs/<agent>-<env>-<time>``, with a suffix when that directory exists already."""
    base = Path("runs") / f"{kind}-{env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class _Agent:
    """A glimpse agent on one env (see the module docs); subclasses name the agent."""

    _kind = ""

    def __init__(self, env: str = "CartPole-v1", *, seed: int = 1, run_dir: str | os.PathLike | None = None, **settings: Any):
        self.env_id = _env_id(env)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.summary: dict | None = None
        self._settings = dict(settings)
        self._rust = _glimpse.RustAgent(self._kind, self.env_id, json.dumps(self._settings), self.seed)

    @property
    def config(self) -> dict:
        """Every setting of the agent, as its run's ``config.json`` will hold them."""
        return json.loads(self._rust.settings_json())

    def learn(self, total_timesteps: int | None = None) -> dict:
        """Trains a new run (to ``total_timesteps`` env steps, else the config's budget; the
        examples' settings stop earlier once a greedy evaluation reaches the env's threshold).
        Returns the run's ``summary.json``. A model learns once; make a new one to train again."""
        if self.summary is not None:
            raise RuntimeError(f"this model has learned already (run in {self.run_dir}); make a new one to train again")
        if total_timesteps is not None:
            settings = {**self._settings, "total_timesteps": total_timesteps}
            self._rust = _glimpse.RustAgent(self._kind, self.env_id, json.dumps(settings), self.seed)
            self._settings = settings
        run_dir = self.run_dir if self.run_dir is not None else _default_run_dir(self._kind, self.env_id)
        self.summary = json.loads(self._rust.learn(self.seed, str(run_dir)))
        self.run_dir = run_dir
        return self.summary

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """The actions for one observation or a batch ``[N, obs_size]``, as Stable-Baselines3's
        ``predict``: returns ``(actions, None)``. Actions are ``int64`` (discrete) or ``float32``
        ``[..., A]``. ``deterministic=False`` samples (DQN: ε-greedy with its final ε)."""
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        if obs.ndim not in (1, 2):
            raise ValueError(f"observation must be [obs_size] or [N, obs_size], got shape {obs.shape}")
        batch = np.ascontiguousarray(obs.reshape(1, -1) if single else obs)
        actions = self._rust.predict(batch, bool(deterministic))
        return (actions[0] if single else actions), None

    def evaluate(self, n_episodes: int = 100, seed: int = 0) -> dict:
        """Greedy evaluation of the run's last checkpoint: episode i reset with ``seed + i``."""
        returns, lengths = self._rust.evaluate(str(self._saved_dir()), int(n_episodes), int(seed))
        r = np.asarray(returns)
        return {"mean_return": float(r.mean()), "std_return": float(r.std()), "returns": returns, "lengths": lengths}

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the run directory (its config, last checkpoint, summary and TensorBoard events)
        to directory ``path``, replacing what was there only once the copy is complete."""
        source, path = self._saved_dir(), Path(path)
        if path.resolve() == source.resolve():
            self._write_model_file(path)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
            self._write_model_file(staging)
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                path.rename(old)
            staging.rename(path)
            if old is not None:
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, env: str | None = None, seed: int | None = None):
        """The model saved in ``path`` by ``save``, or any run directory of this agent (a Rust
        example's too: then name its ``env``)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a glimpse run directory (no config.json)")
        meta = json.loads((path / MODEL_FILE).read_text()) if (path / MODEL_FILE).is_file() else {}
        if meta and meta.get("agent") != cls._kind:
            raise ValueError(f"{path} holds a {meta.get('agent')} model, not {cls._kind}")
        env_id = _env_id(env) if env is not None else meta.get("env_id")
        if env_id is None:
            raise ValueError(f"{path} does not say its env (a run of a Rust example?): pass env='CartPole-v1' or the like")
        settings = json.loads((path / "config.json").read_text())
        model = cls(env_id, seed=meta.get("seed", 1) if seed is None else seed, run_dir=path, **settings)
        model._rust.load(str(path))
        summary = path / "summary.json"
        model.summary = json.loads(summary.read_text()) if summary.is_file() else None
        return model

    def _saved_dir(self) -> Path:
        if self.run_dir is None or self.summary is None and not (self.run_dir / "checkpoint").exists():
            raise RuntimeError("no run yet: call learn() or load() first")
        return self.run_dir

    def _write_model_file(self, directory: Path) -> None:
        meta = {"agent": self._kind, "env_id": self.env_id, "seed": self.seed}
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r}, seed={self.seed}, run_dir={str(self.run_dir) if self.run_dir else None!r})"


class DQN(_Agent):
    """Deep Q-learning (double DQN, Huber loss, target network; dueling, n-step and prioritized
    replay as settings), on envs with discrete actions."""

    _kind = "dqn"


class PPO(_Agent):
    """Proximal Policy Optimization (clipped objective, GAE), discrete or continuous actions."""

    _kind = "ppo"


class A2C(_Agent):
    """Advantage actor-critic (synchronous, n-step returns), discrete or continuous actions."""

    _kind = "a2c"


class REINFORCE(_Agent):
    """REINFORCE with a learned value baseline, on envs with discrete actions."""

    _kind = "reinforce"
