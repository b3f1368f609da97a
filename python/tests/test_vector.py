"""glimpse.VectorEnv against gymnasium's SyncVectorEnv over gymnasium's own environments."""

import gymnasium as gym
import numpy as np
import pytest

import glimpse
from glimpse import AutoresetMode

IDS = sorted(glimpse.ENV_IDS)


def reference(env_id, num_envs, mode, max_episode_steps):
    """gymnasium's own env, N copies in a SyncVectorEnv."""
    make = lambda: gym.make(env_id, max_episode_steps=max_episode_steps)  # noqa: E731
    if not hasattr(gym.vector, "AutoresetMode"):
        # gymnasium 1.0: its vector envs reset on the next step only.
        if mode != AutoresetMode.NEXT_STEP:
            pytest.skip(f"gymnasium {gym.__version__} has no {mode} vector env to compare with")
        return gym.vector.SyncVectorEnv([make] * num_envs)
    return gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=mode)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("env_id", IDS)
def test_vector_env_equals_n_single_envs(env_id, mode):
    n = 6
    # Time limits short enough that every env finishes episodes, truncated or terminated.
    limit = min(glimpse.ENV_IDS[env_id], 250)
    ours = glimpse.VectorEnv(env_id, n, max_episode_steps=limit, autoreset_mode=mode)
    theirs = reference(env_id, n, mode, limit)
    assert ours.single_observation_space == theirs.single_observation_space
    assert ours.action_space == theirs.action_space
    o1, _ = ours.reset(seed=3)
    o2, _ = theirs.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    ours.action_space.seed(0)
    done_episodes = 0
    for t in range(limit + 30):
        actions = ours.action_space.sample()
        r1, r2 = ours.step(actions), theirs.step(actions)
        for k, name in enumerate(["obs", "reward", "terminated", "truncated"]):
            assert r1[k].dtype == r2[k].dtype, name
            np.testing.assert_allclose(r1[k], r2[k], rtol=0, atol=1e-12, err_msg=f"{env_id} step {t} {name}")
        done = r1[2] | r1[3]
        done_episodes += done.sum()
        if mode == AutoresetMode.SAME_STEP and done.any():
            np.testing.assert_array_equal(r1[4]["_final_obs"], r2[4]["_final_obs"])
            for i in np.flatnonzero(done):
                np.testing.assert_allclose(r1[4]["final_obs"][i], r2[4]["final_obs"][i], rtol=0, atol=1e-12)
        else:
            assert "final_obs" not in r1[4]
    assert done_episodes >= n


def test_make_vec_gives_our_vector_env():
    envs = gym.make_vec("glimpse/CartPole-v1", num_envs=4)
    assert isinstance(envs.unwrapped, glimpse.VectorEnv)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (4, 4) and obs.dtype == np.float32
    short = gym.make_vec("glimpse/CartPole-v1", num_envs=2, max_episode_steps=3)
    short.reset(seed=0)
    truncated = [short.step(np.array([0, 1]))[3].tolist() for _ in range(3)]
    assert truncated[-1] == [True, True] and truncated[0] == [False, False]


def test_episode_statistics_wrapper_works():
    envs = gym.wrappers.vector.RecordEpisodeStatistics(glimpse.VectorEnv("CartPole-v1", 8))
    envs.reset(seed=1)
    returns = []
    for _ in range(200):
        _, _, _, _, info = envs.step(envs.action_space.sample())
        if "episode" in info:
            returns += info["episode"]["r"][info["_episode"]].tolist()
    assert len(returns) > 8 and all(8 <= r <= 500 for r in returns)


def test_state_access_per_env():
    envs = glimpse.VectorEnv("CartPole-v1", 3)
    envs.reset(seed=0)
    envs.set_state(1, np.array([2.39, 5.0, 0.0, 0.0]))
    np.testing.assert_array_equal(envs.get_state(1), [2.39, 5.0, 0.0, 0.0])
    _, _, terminated, _, _ = envs.step(np.array([1, 1, 1]))
    assert terminated.tolist() == [False, True, False]


class TestErrors:
    def test_step_before_reset(self):
        with pytest.raises(glimpse.ResetNeeded):
            glimpse.VectorEnv("CartPole-v1", 2).step(np.array([0, 1]))

    def test_bad_actions_raise_and_leave_the_envs_untouched(self):
        envs = glimpse.VectorEnv("CartPole-v1", 3)
        obs, _ = envs.reset(seed=0)
        for actions, error in [
            (np.array([0, 1, 2]), glimpse.InvalidAction),
            (np.array([0, -1, 0]), glimpse.InvalidAction),
            (np.array([0.0, 1.0, 0.0]), TypeError),
            (np.array(["a", "b", "c"]), TypeError),
            (np.array([0, 1]), ValueError),
            (np.array([[0, 1, 0]]), ValueError),
        ]:
            with pytest.raises(error):
                envs.step(actions)
            np.testing.assert_array_equal(envs.get_state(0).astype(np.float32), obs[0])
        envs.step(np.array([0, 1, 0], dtype=np.int32))  # any integer dtype works

    def test_continuous_action_errors(self):
        envs = glimpse.VectorEnv("Pendulum-v1", 2)
        envs.reset(seed=0)
        with pytest.raises(glimpse.InvalidAction):
            envs.step(np.array([[0.0], [np.nan]], dtype=np.float32))
        with pytest.raises(ValueError):
            envs.step(np.zeros((2, 2), dtype=np.float32))
        with pytest.raises(TypeError):
            envs.step(np.array([["x"], ["y"]]))
        envs.step(np.zeros((2, 1)))  # float64 is converted

    def test_bad_construction(self):
        with pytest.raises(ValueError):
            glimpse.VectorEnv("CartPole-v1", 0)
        with pytest.raises(ValueError):
            glimpse.VectorEnv("CartPole-v1", 2, max_episode_steps=0)
        with pytest.raises(ValueError):
            glimpse.VectorEnv("CartPole-v1", 2, autoreset_mode=AutoresetMode.DISABLED)
        envs = glimpse.VectorEnv("CartPole-v1", 2)
        with pytest.raises(ValueError):
            envs.reset(seed=[1, 2, 3])
