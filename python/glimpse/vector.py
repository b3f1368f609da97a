"""``VectorEnv``: N glimpse environments stepped in Rust in one call, with gymnasium's API."""

from __future__ import annotations

from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np

try:
    from gymnasium.vector import AutoresetMode
except ImportError:  # gymnasium 1.0: vector envs reset on the next step, and the enum is not there yet

    class AutoresetMode(Enum):
        """gymnasium >= 1.1's ``gymnasium.vector.AutoresetMode``, with the same values."""

        NEXT_STEP = "NextStep"
        SAME_STEP = "SameStep"
        DISABLED = "Disabled"

from gymnasium.vector.utils import batch_space

from glimpse import _glimpse
from glimpse._spaces import to_gymnasium
from glimpse.envs import ENV_IDS, RENDER_FPS, _check_render_mode


class VectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of a glimpse environment (each with its time limit), stepped together.

    Behaves like ``gymnasium.vector.SyncVectorEnv`` over ``gym.make("glimpse/<id>")`` envs:
    ``reset(seed=s)`` seeds env i with ``s + i``; observations come as one float32 array
    ``[num_envs, obs_dim]``, rewards float64, terminations and truncations bool. Episodes that end
    are reset automatically, on the next step (``AutoresetMode.NEXT_STEP``, the default: that
    step ignores the env's action and gives reward 0) or in the same step
    (``AutoresetMode.SAME_STEP``: the last observation is in ``info["final_obs"]``).

    ``copy.deepcopy`` and ``pickle`` copy the complete state of every env (physics, random
    generators, step counts, pending autoresets); ``get_state_json``/``set_state_json`` save and
    restore it explicitly. ``render_mode="rgb_array"``: ``render()`` returns every env's frame.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
    ):
        env_id = env_id.removeprefix("glimpse/")
        if env_id not in ENV_IDS:
            raise gym.error.Error(f"unknown glimpse env {env_id!r}; known: {sorted(ENV_IDS)}")
        _check_render_mode(env_id, render_mode, ["rgb_array"])
        autoreset_mode = AutoresetMode(autoreset_mode)
        if autoreset_mode == AutoresetMode.DISABLED:
            raise ValueError("glimpse.VectorEnv resets episodes itself: use NEXT_STEP or SAME_STEP")
        steps = ENV_IDS[env_id] if max_episode_steps is None else max_episode_steps
        self._core = _glimpse.RustVecEnv(env_id, num_envs, steps, autoreset_mode == AutoresetMode.SAME_STEP)
        self.env_id = env_id
        self.num_envs = num_envs
        self.metadata = {
            "autoreset_mode": autoreset_mode,
            "render_modes": ["rgb_array"],
            "render_fps": RENDER_FPS.get(env_id, 30),
        }
        self.render_mode = render_mode
        self.single_observation_space = to_gymnasium(self._core.observation_space())
        self.single_action_space = to_gymnasium(self._core.action_space())
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        super().reset(seed=seed if isinstance(seed, (int, np.integer)) else None)
        return self._core.reset(seeds), {}

    def step(self, actions):
        actions = np.asarray(actions)
        if self._discrete:
            if actions.dtype.kind not in "iu":
                raise TypeError(f"discrete actions must be integers, got dtype {actions.dtype}")
            if actions.shape != (self.num_envs,):
                raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
            actions = np.ascontiguousarray(actions, dtype=np.int64)
        else:
            if actions.dtype.kind not in "biuf":
                raise TypeError(f"continuous actions must be numeric, got dtype {actions.dtype}")
            if actions.shape != self.action_space.shape:
                raise ValueError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
            actions = np.ascontiguousarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        obs, rewards, terminated, truncated, final_obs = self._core.step(actions)
        infos: dict[str, Any] = {}
        if final_obs is not None:
            done = terminated | truncated
            boxed = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                boxed[i] = final_obs[i]
            infos = {"final_obs": boxed, "_final_obs": done, "final_info": {}, "_final_info": done.copy()}
        return obs, rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Every env's frame (``render_mode="rgb_array"``), as ``SyncVectorEnv.render`` returns
        them: a tuple of ``uint8 [height, width, 3]`` arrays. Without a ``render_mode`` it warns and
        returns None, as gymnasium's vector envs do."""
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                f'You can specify the render_mode at initialization, e.g. gym.make_vec("glimpse/{self.env_id}", '
                'render_mode="rgb_array")'
            )
            return None
        return tuple(self._core.render(i) for i in range(self.num_envs))

    def get_state(self, index: int) -> np.ndarray:
        """The physical state of env ``index`` (a copy), as ``env.unwrapped.state``."""
        return self._core.get_state(index)

    def set_state(self, index: int, value) -> None:
        """Sets the physical state of env ``index``."""
        self._core.set_state(index, value)

    def get_state_json(self) -> str:
        """The complete state of every env (physics, random generators, time limit counters,
        pending autoresets) as a JSON string."""
        return self._core.get_state_json()

    def set_state_json(self, state: str) -> None:
        """Restores a state from :meth:`get_state_json` of a vector env built with the same id,
        ``num_envs``, ``max_episode_steps`` and autoreset mode; it continues exactly from there.
        Raises ``ValueError`` (vector env unchanged) if it does not fit."""
        self._core.set_state_json(state)
