"""Each glimpse environment as a ``gymnasium.Env`` whose dynamics run in Rust."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from glimpse import _glimpse
from glimpse._spaces import to_gymnasium

#: The glimpse environment ids and the time limits ``gymnasium.make`` applies to them.
ENV_IDS: dict[str, int] = dict(_glimpse.registry())


class GlimpseEnv(gym.Env):
    """A glimpse environment behind gymnasium's API (``gym.make`` adds the time limit).

    ``state`` reads and writes the physical state like gymnasium's ``env.unwrapped.state``
    (reading returns a copy: assign a whole array to change it). Unlike gymnasium's classic
    control, stepping after the episode terminated raises :class:`glimpse.ResetNeeded`.

    ``copy.deepcopy`` and ``pickle`` copy the complete state (physics, random generator, whether
    a reset is due): the copy continues exactly as the original would. ``get_state_json`` and
    ``set_state_json`` save and restore that state explicitly.

    ``render_mode="rgb_array"``: ``render()`` returns the frame, ``uint8 [height, width, 3]``, as
    gymnasium's env lays it out (600 × 400 or 500 × 500). ``gym.make(id, render_mode="human")``
    shows each reset and step in a pygame window (gymnasium's ``HumanRendering`` over these frames).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    #: The glimpse id, set by each subclass.
    env_id: str = ""

    def __init__(self, render_mode: str | None = None):
        _check_render_mode(self.env_id, render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        self._core = _glimpse.RustEnv(self.env_id)
        self.observation_space = to_gymnasium(self._core.observation_space())
        self.action_space = to_gymnasium(self._core.action_space())
        self._continuous = isinstance(self.action_space, gym.spaces.Box)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self._core.reset(seed), {}

    def step(self, action):
        if self._continuous:
            action = _box_action(action, self.action_space.shape)
        obs, reward, terminated, truncated = self._core.step(action)
        return obs, reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        """The current state as an RGB frame, ``uint8 [height, width, 3]``, laid out as
        gymnasium's ``rgb_array``; without a ``render_mode`` it warns and returns None, as
        gymnasium's envs do."""
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                f'You can specify the render_mode at initialization, e.g. gym.make("glimpse/{self.env_id}", '
                'render_mode="rgb_array")'
            )
            return None
        return self._core.render()

    @property
    def state(self) -> np.ndarray:
        """The physical state (a copy), as gymnasium's ``env.unwrapped.state``."""
        return self._core.state

    @state.setter
    def state(self, value) -> None:
        self._core.state = value

    def get_state_json(self) -> str:
        """The complete state as a JSON string: physical state, random generator, whether a reset
        is due. Wrappers (``TimeLimit``'s step count) are not included: copy the wrapped env with
        ``copy.deepcopy`` or ``pickle`` to keep them."""
        return self._core.get_state_json()

    def set_state_json(self, state: str) -> None:
        """Restores a state from :meth:`get_state_json` of an env with the same id; the env
        continues exactly from there. Raises ``ValueError`` (env unchanged) if it does not fit."""
        self._core.set_state_json(state)


def _check_render_mode(env_id: str, render_mode: str | None, allowed: list[str]) -> None:
    """A ``ValueError`` unless ``render_mode`` is None or one of ``allowed``."""
    if render_mode is None or render_mode in allowed:
        return
    hint = ""
    if render_mode == "human":
        hint = f' (gym.make("glimpse/{env_id}", render_mode="human") shows the frames with pygame)'
    raise ValueError(f"{env_id}: render_mode {render_mode!r} is not supported; use one of {allowed} or None{hint}")


def _box_action(action, shape: tuple[int, ...]) -> np.ndarray:
    """A continuous action as a flat float32 array, or a clear error."""
    array = np.asarray(action)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"a continuous action must be numeric, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"a continuous action must have shape {shape}, got {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32).reshape(-1)


#: Each env's ``metadata["render_fps"]``, as gymnasium's (the speed of ``render_mode="human"``).
RENDER_FPS: dict[str, int] = {
    "CartPole-v1": 50,
    "Acrobot-v1": 15,
    "MountainCar-v0": 30,
    "MountainCarContinuous-v0": 30,
    "Pendulum-v1": 30,
}


def _env_class(env_id: str) -> type[GlimpseEnv]:
    name = env_id.split("-")[0] + "Env"
    metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS.get(env_id, 30)}
    attrs = {"env_id": env_id, "metadata": metadata, "__module__": __name__, "__qualname__": name}
    return type(name, (GlimpseEnv,), attrs)


#: One ``GlimpseEnv`` subclass per id, e.g. ``CartPoleEnv``.
ENV_CLASSES: dict[str, type[GlimpseEnv]] = {env_id: _env_class(env_id) for env_id in ENV_IDS}
globals().update({cls.__name__: cls for cls in ENV_CLASSES.values()})


def _make_vector(env_id: str, num_envs: int = 1, max_episode_steps: int | None = None, **kwargs):
    """``gym.make_vec``'s entry point: a :class:`glimpse.VectorEnv` of ``env_id``."""
    from glimpse.vector import VectorEnv

    return VectorEnv(env_id, num_envs, max_episode_steps=max_episode_steps, **kwargs)


def register_envs() -> None:
    """Registers ``glimpse/<id>`` for every glimpse environment (``gym.make`` and ``gym.make_vec``)."""
    for env_id, steps in ENV_IDS.items():
        full_id = f"glimpse/{env_id}"
        if full_id in gym.registry:
            continue
        gym.register(
            id=full_id,
            entry_point=f"{__name__}:{ENV_CLASSES[env_id].__name__}",
            # A module-level function (not a closure): the env's spec, and so the env, pickles.
            vector_entry_point=functools.partial(_make_vector, env_id),
            max_episode_steps=steps,
        )
