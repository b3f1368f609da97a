"""glimpse's environments behind gymnasium's API, checked against gymnasium's own environments."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import glimpse

IDS = sorted(glimpse.ENV_IDS)

# Ranges to draw random physical states from, per id (some beyond the termination limits).
STATE_RANGES = {
    "CartPole-v1": [(-3.0, 3.0), (-3.0, 3.0), (-0.3, 0.3), (-3.0, 3.0)],
    "Acrobot-v1": [(-np.pi, np.pi), (-np.pi, np.pi), (-4 * np.pi, 4 * np.pi), (-9 * np.pi, 9 * np.pi)],
    "MountainCar-v0": [(-1.2, 0.6), (-0.07, 0.07)],
    "MountainCarContinuous-v0": [(-1.2, 0.6), (-0.07, 0.07)],
    "Pendulum-v1": [(-2 * np.pi, 2 * np.pi), (-8.0, 8.0)],
}
TOL = 1e-12


def random_action(space: gym.Space, rng: np.random.Generator):
    """An action from ``space``; for a box, also outside the bounds (the envs clip)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.uniform(2 * space.low, 2 * space.high).astype(np.float32)


def assert_close(ours, theirs, what):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, what
    assert np.all(np.abs(ours - theirs) <= TOL), f"{what}: {ours} vs {theirs}"


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id):
    env = gym.make(f"glimpse/{env_id}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice about infinite bounds and action ranges
        check_env(env.unwrapped)
    assert env.spec.max_episode_steps == gym.spec(env_id).max_episode_steps


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_equal_gymnasiums(env_id):
    ours, theirs = gym.make(f"glimpse/{env_id}"), gym.make(env_id)
    assert ours.observation_space == theirs.observation_space
    assert ours.action_space == theirs.action_space


@pytest.mark.parametrize("env_id", IDS)
def test_steps_match_gymnasium_from_random_states(env_id):
    ours = gym.make(f"glimpse/{env_id}").unwrapped
    theirs = gym.make(env_id).unwrapped
    rng = np.random.default_rng(7)
    low, high = np.array(STATE_RANGES[env_id]).T
    for i in range(1500):
        state = rng.uniform(low, high)
        action = random_action(theirs.action_space, rng)
        theirs.reset(seed=i)  # clears gymnasium's per-episode flags (e.g. CartPole's terminated count)
        theirs.state = state.copy()
        ours.state = state.copy()
        assert_close(ours.state, state, "state written")
        o1, r1, term1, trunc1, _ = ours.step(action)
        o2, r2, term2, trunc2, _ = theirs.step(action)
        what = f"{env_id} pair {i}: state {state.tolist()}, action {action}"
        assert o1.dtype == np.float32 and o1.shape == o2.shape, what
        assert_close(o1, o2, what)
        assert_close(r1, r2, what)
        assert (term1, trunc1) == (bool(term2), bool(trunc2)), what
        assert_close(ours.state, np.asarray(theirs.state), what)


def test_float32_state_is_kept_like_gymnasium():
    # gymnasium's MountainCarContinuous holds its state as float32 after a step; the next step's
    # rounding depends on it.
    ours = gym.make("glimpse/MountainCarContinuous-v0").unwrapped
    theirs = gym.make("MountainCarContinuous-v0").unwrapped
    ours.reset(seed=0)
    theirs.reset(seed=0)
    state = np.array([-0.5234567, 0.0123456], dtype=np.float32)
    ours.state, theirs.state = state.copy(), state.copy()
    assert ours.state.dtype == np.float32
    for _ in range(50):
        a = np.array([0.3], dtype=np.float32)
        assert_close(ours.step(a)[0], theirs.step(a)[0], "obs")
        assert ours.state.dtype == np.asarray(theirs.state).dtype
        assert_close(ours.state, theirs.state, "state")


@pytest.mark.parametrize("env_id", IDS)
def test_whole_seeded_episodes_match_gymnasium(env_id):
    ours, theirs = gym.make(f"glimpse/{env_id}"), gym.make(env_id)
    for episode in range(6):
        # Seeded resets, and unseeded ones that continue the seeded stream, give the same starts.
        seed = 100 + episode if episode % 2 == 0 else None
        o1, _ = ours.reset(seed=seed)
        o2, _ = theirs.reset(seed=seed)
        assert_close(o1, o2, f"{env_id} reset(seed={seed})")
        ours.action_space.seed(episode)
        steps = 0
        while True:
            action = ours.action_space.sample()
            s1, s2 = ours.step(action), theirs.step(action)
            what = f"{env_id} episode {episode} step {steps}"
            assert_close(s1[0], s2[0], what)
            assert_close(s1[1], s2[1], what)
            assert (s1[2], s1[3]) == (s2[2], s2[3]), what
            steps += 1
            if s1[2] or s1[3]:
                break
        assert steps <= ours.spec.max_episode_steps


def test_reset_seed_determinism():
    env = gym.make("glimpse/CartPole-v1")
    first = [env.reset(seed=5)[0]] + [env.reset()[0] for _ in range(3)]
    again = [env.reset(seed=5)[0]] + [env.reset()[0] for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], env.reset(seed=6)[0])


def test_state_is_readable_and_writable():
    env = gym.make("glimpse/CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.1, 0.2, 0.03, 0.4])
    np.testing.assert_array_equal(env.unwrapped.state, [0.1, 0.2, 0.03, 0.4])
    assert env.unwrapped.state.dtype == np.float64
    obs, *_ = env.step(1)
    assert obs[0] == np.float32(0.1 + 0.02 * 0.2)


class TestErrors:
    def test_step_before_reset(self):
        env = gym.make("glimpse/CartPole-v1")
        with pytest.raises(glimpse.ResetNeeded):
            env.unwrapped.step(0)
        with pytest.raises(gym.error.ResetNeeded):  # gymnasium's OrderEnforcing, in front
            env.step(0)

    def test_step_after_termination(self):
        env = gym.make("glimpse/CartPole-v1").unwrapped
        env.reset(seed=0)
        env.state = np.array([2.39, 5.0, 0.0, 0.0])
        assert env.step(1)[2]
        with pytest.raises(glimpse.ResetNeeded):
            env.step(1)
        env.reset()
        env.step(1)

    @pytest.mark.parametrize("action", [2, -1, 10**6])
    def test_discrete_action_out_of_range(self, action):
        env = gym.make("glimpse/CartPole-v1").unwrapped
        env.reset(seed=0)
        with pytest.raises(glimpse.InvalidAction):
            env.step(action)
        assert issubclass(glimpse.InvalidAction, ValueError)
        env.step(1)  # the env is still usable

    @pytest.mark.parametrize("action", [1.0, "1", None, np.array([1, 0]), np.float64(1.0)])
    def test_discrete_action_of_wrong_type(self, action):
        env = gym.make("glimpse/Acrobot-v1").unwrapped
        env.reset(seed=0)
        with pytest.raises(TypeError):
            env.step(action)

    def test_discrete_action_numpy_integers_work(self):
        env = gym.make("glimpse/Acrobot-v1").unwrapped
        env.reset(seed=0)
        for a in [np.int64(2), np.int32(0), np.array(1), True]:
            env.step(a)

    @pytest.mark.parametrize(
        "action, error",
        [
            (np.array([0.5, 0.5], dtype=np.float32), ValueError),
            (np.float32(0.5), ValueError),
            (np.array(["a"]), TypeError),
            (np.array([np.nan], dtype=np.float32), glimpse.InvalidAction),
            (np.array([np.inf]), glimpse.InvalidAction),
        ],
    )
    def test_continuous_action_errors(self, action, error):
        env = gym.make("glimpse/Pendulum-v1").unwrapped
        env.reset(seed=0)
        with pytest.raises(error):
            env.step(action)
        env.step(np.array([0.5]))  # float64 and lists are converted to float32
        env.step([0.5])

    def test_bad_state(self):
        env = gym.make("glimpse/CartPole-v1").unwrapped
        with pytest.raises(ValueError):
            env.state = np.zeros(3)
        with pytest.raises(TypeError):
            env.state = np.array(["a", "b", "c", "d"])

    def test_unknown_ids_and_render_modes(self):
        with pytest.raises(gym.error.Error):
            gym.make("glimpse/NoSuchEnv-v0")
        with pytest.raises(gym.error.Error):
            glimpse.VectorEnv("NoSuchEnv-v0", 2)
        with pytest.raises(ValueError), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium warns first that "ansi" is not offered
            gym.make("glimpse/CartPole-v1", render_mode="ansi")
