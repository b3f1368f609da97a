"""Stable-Baselines3 on glimpse's envs: its env checker, ``make_vec_env`` and a short PPO run.

Skipped where stable_baselines3 (and so torch) is not installed; .ci/run runs it in a venv of its
own where the system python has torch.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest

import glimpse

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

IDS = sorted(glimpse.ENV_IDS)


def checker_warnings(env, **kwargs) -> list[str]:
    """The warnings SB3's ``check_env`` gives on ``env``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True, **kwargs)
    return sorted(str(w.message) for w in caught)


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_warns_as_for_gymnasiums_own_env(env_id):
    ours = checker_warnings(gym.make(f"glimpse/{env_id}"))
    # Only advice that gymnasium's own env gets too (Pendulum's [-2, 2] torque is not [-1, 1]):
    # nothing about spaces, dtypes, reset or step.
    assert ours == checker_warnings(gym.make(env_id))
    assert all("symmetric and normalized Box action space" in message for message in ours), ours
    # SB3's render check on the render mode make_vec_env uses.
    assert checker_warnings(gym.make(f"glimpse/{env_id}", render_mode="rgb_array"), skip_render_check=False) == ours


def test_make_vec_env_makes_rgb_array_envs():
    venv = make_vec_env("glimpse/CartPole-v1", n_envs=4, seed=0)
    assert venv.num_envs == 4 and venv.render_mode == "rgb_array"
    obs = venv.reset()
    assert obs.shape == (4, 4) and obs.dtype == np.float32
    obs, rewards, dones, infos = venv.step(np.array([0, 1, 0, 1]))
    assert obs.shape == (4, 4) and rewards.tolist() == [1.0] * 4 and not dones.any()
    frames = venv.get_images()
    assert len(frames) == 4 and all(f.shape == (400, 600, 3) and f.dtype == np.uint8 for f in frames)
    venv.close()


def test_ppo_learns_for_a_few_rollouts():
    venv = make_vec_env("glimpse/CartPole-v1", n_envs=4, seed=0)
    model = sb3.PPO("MlpPolicy", venv, n_steps=256, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(2048)
    assert model.num_timesteps >= 2048
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (4,) and set(action.tolist()) <= {0, 1}
    venv.close()
