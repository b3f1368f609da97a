"""``render_mode="rgb_array"`` frames of glimpse's envs, beside gymnasium's own renders."""

import os
import warnings

# gymnasium's renders (and "human" through HumanRendering) draw with pygame: no window, no banner.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import glimpse  # noqa: E402

try:
    import pygame  # noqa: E402, F401

    HAVE_PYGAME = True
except ImportError:
    HAVE_PYGAME = False

IDS = sorted(glimpse.ENV_IDS)

#: gymnasium's rgb_array frame shapes and render_fps (classic_control's screen sizes).
GYM_SHAPES = {
    "CartPole-v1": (400, 600, 3),
    "Acrobot-v1": (500, 500, 3),
    "MountainCar-v0": (400, 600, 3),
    "MountainCarContinuous-v0": (400, 600, 3),
    "Pendulum-v1": (500, 500, 3),
}
GYM_FPS = {"CartPole-v1": 50, "Acrobot-v1": 15, "MountainCar-v0": 30, "MountainCarContinuous-v0": 30, "Pendulum-v1": 30}

#: The colour of each env's moving body in gymnasium's renders: pole, links, wheels, rod.
BODY_COLORS = {
    "CartPole-v1": (202, 152, 101),
    "Acrobot-v1": (0, 204, 204),
    "MountainCar-v0": (128, 128, 128),
    "MountainCarContinuous-v0": (128, 128, 128),
    "Pendulum-v1": (204, 77, 77),
}

#: Two physical states per env that put the bodies in clearly different places.
STATES = {
    "CartPole-v1": ([0.0, 0.0, 0.0, 0.0], [1.5, 0.0, -0.2, 0.0]),
    "Acrobot-v1": ([0.0, 0.0, 0.0, 0.0], [1.0, -0.5, 0.0, 0.0]),
    "MountainCar-v0": ([-0.5, 0.0], [0.3, 0.0]),
    "MountainCarContinuous-v0": ([-0.5, 0.0], [0.3, 0.0]),
    "Pendulum-v1": ([0.0, 0.0], [2.0, 0.0]),
}


def frame_at(env, state):
    env.unwrapped.state = np.array(state, dtype=np.float64)
    return env.render()


def centroid(frame, color):
    """Mean (column, row) of the pixels of exactly ``color``."""
    rows, cols = np.nonzero((frame == color).all(axis=-1))
    assert rows.size > 50, f"{color} is drawn"
    return cols.mean(), rows.mean()


@pytest.mark.parametrize("env_id", IDS)
def test_rgb_array_frames_have_gymnasiums_shape_and_follow_the_state(env_id):
    env = gym.make(f"glimpse/{env_id}", render_mode="rgb_array")
    assert env.metadata["render_modes"] == ["rgb_array"]
    assert env.metadata["render_fps"] == GYM_FPS[env_id]
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.shape == GYM_SHAPES[env_id]
    assert frame.flags.writeable and (frame != 255).any(), "a drawing on a white background"

    a, b = (frame_at(env, s) for s in STATES[env_id])
    assert not np.array_equal(a, b), "the frame follows the state"
    assert np.array_equal(a, frame_at(env, STATES[env_id][0])), "the same state draws the same frame"
    env.reset(seed=1)
    env.action_space.seed(1)
    before = env.render()
    for _ in range(10):  # one step may move a body by less than a pixel
        env.step(env.action_space.sample())
    assert not np.array_equal(before, env.render()), "steps move something"


@pytest.mark.skipif(not HAVE_PYGAME, reason="gymnasium's classic-control rendering needs pygame")
@pytest.mark.parametrize("env_id", IDS)
def test_frames_lay_out_as_gymnasiums_own_renders(env_id):
    ours = gym.make(f"glimpse/{env_id}", render_mode="rgb_array")
    theirs = gym.make(env_id, render_mode="rgb_array")
    ours.reset(seed=0)
    theirs.reset(seed=0)
    for state in STATES[env_id]:
        a, b = frame_at(ours, state), frame_at(theirs, state)
        assert a.shape == b.shape == GYM_SHAPES[env_id] and a.dtype == b.dtype
        # Not pixel-identical (gymnasium antialiases outlines), but the body in the same place.
        (ax, ay), (bx, by) = centroid(a, BODY_COLORS[env_id]), centroid(b, BODY_COLORS[env_id])
        assert abs(ax - bx) < 2 and abs(ay - by) < 2, f"{state}: drawn around {(ax, ay)}, gymnasium {(bx, by)}"
    theirs.close()


@pytest.mark.parametrize("env_id", IDS)
def test_bad_render_modes_are_refused(env_id):
    with pytest.raises(ValueError, match="'ansi'.*rgb_array"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium first warns that the mode is not offered
        gym.make(f"glimpse/{env_id}", render_mode="ansi")
    with pytest.raises(ValueError, match="human"):
        glimpse.envs.ENV_CLASSES[env_id](render_mode="human")
    with pytest.raises(ValueError, match="'human'.*rgb_array"):
        glimpse.VectorEnv(env_id, 2, render_mode="human")


def test_render_without_a_render_mode_warns_and_returns_none():
    env = gym.make("glimpse/CartPole-v1")
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="without specifying any render mode"):
        assert env.render() is None
    envs = glimpse.VectorEnv("CartPole-v1", 2)
    envs.reset(seed=0)
    with pytest.warns(UserWarning, match="without specifying any render mode"):
        assert envs.render() is None


def test_human_goes_through_gymnasiums_human_rendering():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "doesn't natively support it": the wrapper is applied
        env = gym.make("glimpse/CartPole-v1", render_mode="human")
    assert isinstance(env, gym.wrappers.HumanRendering) and env.unwrapped.render_mode == "rgb_array"
    if not HAVE_PYGAME:
        with pytest.raises(gym.error.DependencyNotInstalled):
            env.reset(seed=0)
        return
    env.reset(seed=0)
    env.step(0)
    assert env.render() is None
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_vector_env_renders_every_env(env_id):
    n = 3
    envs = gym.make_vec(f"glimpse/{env_id}", num_envs=n, render_mode="rgb_array")
    single = gym.make(f"glimpse/{env_id}", render_mode="rgb_array")
    assert envs.render_mode == "rgb_array" and envs.metadata["render_modes"] == ["rgb_array"]
    envs.reset(seed=5)
    frames = envs.render()
    assert isinstance(frames, tuple) and len(frames) == n
    for i, frame in enumerate(frames):
        single.reset(seed=5 + i)
        assert frame.dtype == np.uint8 and frame.shape == GYM_SHAPES[env_id]
        assert np.array_equal(frame, single.render()), f"env {i} draws as the single env with its seed"
    assert not np.array_equal(frames[0], frames[1])
