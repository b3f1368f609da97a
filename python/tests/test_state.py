"""Saving and copying env state: ``copy.deepcopy``, ``pickle`` and ``get_state_json`` give an env
that continues bit-identically to the original (observations, rewards, flags, seedless resets)."""

import copy
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest

import glimpse
from glimpse import AutoresetMode, _glimpse
from glimpse.envs import ENV_CLASSES

IDS = sorted(glimpse.ENV_IDS)
COPIERS = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda env: pickle.loads(pickle.dumps(env)),
}


def random_action(space: gym.Space, rng: np.random.Generator):
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.uniform(space.low, space.high).astype(np.float32)


def rollout(env, steps: int, action_seed: int):
    """Steps with random actions, resetting WITHOUT a seed after every episode end; returns the
    transitions and the number of episode ends."""
    rng = np.random.default_rng(action_seed)
    out, ends = [], 0
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(random_action(env.action_space, rng))
        out.append((obs.copy(), reward, terminated, truncated))
        if terminated or truncated:
            ends += 1
            obs, _ = env.reset()
            out.append((obs.copy(), None, None, None))
    return out, ends


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for i, ((o1, r1, te1, tr1), (o2, r2, te2, tr2)) in enumerate(zip(ours, theirs)):
        assert o1.dtype == o2.dtype and np.array_equal(o1, o2), f"transition {i}: {o1} vs {o2}"
        assert (r1, te1, tr1) == (r2, te2, tr2), f"transition {i}"


@pytest.mark.parametrize("how", COPIERS)
@pytest.mark.parametrize("env_id", IDS)
def test_copy_of_gymnasium_env_continues_identically(env_id, how):
    # gym.make wraps ours in TimeLimit, OrderEnforcing and PassiveEnvChecker: all are copied too.
    env = gym.make(f"glimpse/{env_id}")
    env.reset(seed=3)
    rollout(env, 137, action_seed=1)  # somewhere inside an episode (CartPole: after some resets)
    clone = COPIERS[how](env)
    assert clone.unwrapped is not env.unwrapped
    # Long enough that every env crosses an episode end (truncation at 500/200/999 steps at most).
    ours, ends = rollout(env, 1100, action_seed=2)
    theirs, _ = rollout(clone, 1100, action_seed=2)
    assert ends >= 1
    assert_same(ours, theirs)
    # The random generators still agree: the next seedless reset gives the same start.
    np.testing.assert_array_equal(env.reset()[0], clone.reset()[0])


@pytest.mark.parametrize("how", COPIERS)
@pytest.mark.parametrize("env_id", IDS)
def test_copies_are_independent(env_id, how):
    env = gym.make(f"glimpse/{env_id}")
    env.reset(seed=5)
    clone = COPIERS[how](env)
    first, _ = rollout(clone, 50, action_seed=9)  # steps only the copy
    again, _ = rollout(env, 50, action_seed=9)  # the original has not moved
    assert_same(first, again)
    # Different actions from here on: the copy's physics must not follow the original's.
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.step(random_action(env.action_space, rng))
        env.reset()
    assert not np.array_equal(env.unwrapped.state, clone.unwrapped.state)


@pytest.mark.parametrize("how", COPIERS)
def test_copy_keeps_a_pending_reset(how):
    env = gym.make("glimpse/CartPole-v1").unwrapped
    env.reset(seed=0)
    while not env.step(0)[2]:
        pass
    clone = COPIERS[how](env)
    with pytest.raises(glimpse.ResetNeeded):
        clone.step(0)
    np.testing.assert_array_equal(env.reset()[0], clone.reset()[0])


@pytest.mark.parametrize("env_id", IDS)
def test_state_json_round_trip_into_a_fresh_env(env_id):
    env = ENV_CLASSES[env_id]()
    env.reset(seed=11)
    rollout(env, 40, action_seed=4)
    saved = env.get_state_json()
    json.loads(saved)  # plain JSON
    fresh = ENV_CLASSES[env_id]()
    fresh.set_state_json(saved)
    np.testing.assert_array_equal(fresh.state, env.state)
    assert_same(rollout(env, 300, action_seed=6)[0], rollout(fresh, 300, action_seed=6)[0])
    # Restoring rewinds: the env replays the same future from the saved point.
    env.set_state_json(saved)
    fresh.set_state_json(saved)
    assert_same(rollout(env, 100, action_seed=8)[0], rollout(fresh, 100, action_seed=8)[0])


def test_state_json_keeps_the_built_in_time_limit():
    env = _glimpse.RustEnv("Pendulum-v1", 30)
    env.reset(7)
    for _ in range(20):
        env.step(np.zeros(1, np.float32))
    clone = copy.deepcopy(env)
    flags = [env.step(np.zeros(1, np.float32))[3] for _ in range(10)]
    assert flags == [False] * 9 + [True]
    assert [clone.step(np.zeros(1, np.float32))[3] for _ in range(10)] == flags


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("how", COPIERS)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_vector_env_copy_continues_identically(env_id, how, mode):
    envs = glimpse.VectorEnv(env_id, 6, max_episode_steps=40, autoreset_mode=mode)
    envs.reset(seed=21)
    rng = np.random.default_rng(3)
    for _ in range(57):
        envs.step(envs.action_space.sample())
    clone = COPIERS[how](envs)
    ends = 0
    for _ in range(200):
        actions = np.stack([random_action(envs.single_action_space, rng) for _ in range(6)])
        a, b = envs.step(actions), clone.step(actions)
        for x, y in zip(a[:4], b[:4]):
            assert x.dtype == y.dtype and np.array_equal(x, y)
        assert a[4].keys() == b[4].keys()
        if "final_obs" in a[4]:
            for x, y in zip(a[4]["final_obs"], b[4]["final_obs"]):
                assert (x is None and y is None) or np.array_equal(x, y)
        ends += int((a[2] | a[3]).sum())
    assert ends >= 6
    np.testing.assert_array_equal(envs.reset()[0], clone.reset()[0])


def test_vector_env_from_make_vec_pickles():
    envs = gym.make_vec("glimpse/Acrobot-v1", num_envs=3)
    envs.reset(seed=1)
    clone = pickle.loads(pickle.dumps(envs))
    actions = np.array([0, 1, 2])
    for _ in range(30):
        for x, y in zip(envs.step(actions)[:4], clone.step(actions)[:4]):
            np.testing.assert_array_equal(x, y)


def test_vector_env_state_json_round_trip():
    envs = glimpse.VectorEnv("MountainCar-v0", 4)
    envs.reset(seed=2)
    saved = envs.get_state_json()
    first = [envs.step(np.array([0, 1, 2, 1]))[0] for _ in range(10)]
    envs.set_state_json(saved)
    again = [envs.step(np.array([0, 1, 2, 1]))[0] for _ in range(10)]
    np.testing.assert_array_equal(np.array(first), np.array(again))


# ---- states that do not fit: ValueError, and the env is unchanged ----


def cartpole_state() -> str:
    env = ENV_CLASSES["CartPole-v1"]()
    env.reset(seed=0)
    return env.get_state_json()


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "kind"),
        ('{"kind": "glimpse.Env"}', "bad glimpse.Env state"),
        (cartpole_state().replace('"kind":"glimpse.Env"', '"kind":"glimpse.VectorEnv"'), "VectorEnv"),
    ],
)
def test_malformed_state_raises_value_error(bad, message):
    env = ENV_CLASSES["CartPole-v1"]()
    with pytest.raises(ValueError, match=message):
        env.set_state_json(bad)


def test_state_of_another_env_kind_raises_value_error():
    env = ENV_CLASSES["Acrobot-v1"]()
    env.reset(seed=4)
    before = env.get_state_json()
    with pytest.raises(ValueError, match="id"):
        env.set_state_json(cartpole_state())
    # A CartPole state relabelled as Acrobot fails in the Rust env's own check.
    relabelled = json.loads(cartpole_state())
    relabelled["id"] = "Acrobot-v1"
    with pytest.raises(ValueError):
        env.set_state_json(json.dumps(relabelled))
    assert env.get_state_json() == before


def test_state_for_another_time_limit_raises_value_error():
    env = _glimpse.RustEnv("CartPole-v1", 500)
    env.reset(0)
    with pytest.raises(ValueError, match="max_episode_steps"):
        _glimpse.RustEnv("CartPole-v1", 100).set_state_json(env.get_state_json())
    with pytest.raises(ValueError, match="max_episode_steps"):
        _glimpse.RustEnv("CartPole-v1").set_state_json(env.get_state_json())
    # Edited inside (the Rust TimeLimit's own record): still a ValueError.
    inner = json.loads(env.get_state_json())
    inner["env"]["max_steps"] = 100
    with pytest.raises(ValueError, match="max_steps"):
        env.set_state_json(json.dumps(inner))


def test_corrupt_env_fields_raise_value_error_and_leave_the_env_unchanged():
    env = ENV_CLASSES["Pendulum-v1"]()
    env.reset(seed=1)
    before = env.get_state_json()
    for edit in [lambda s: s.update(env="oops"), lambda s: s.update(done=3), lambda s: s["env"].clear()]:
        saved = json.loads(before)
        edit(saved)
        with pytest.raises(ValueError):
            env.set_state_json(json.dumps(saved))
        assert env.get_state_json() == before


def test_vector_env_state_that_does_not_fit_raises_value_error():
    envs = glimpse.VectorEnv("CartPole-v1", 4)
    envs.reset(seed=0)
    saved = envs.get_state_json()
    for other, message in [
        (glimpse.VectorEnv("CartPole-v1", 3), "num_envs"),
        (glimpse.VectorEnv("CartPole-v1", 4, max_episode_steps=10), "max_episode_steps"),
        (glimpse.VectorEnv("CartPole-v1", 4, autoreset_mode=AutoresetMode.SAME_STEP), "same_step"),
        (glimpse.VectorEnv("Acrobot-v1", 4), "id"),
    ]:
        with pytest.raises(ValueError, match=message):
            other.set_state_json(saved)
    with pytest.raises(ValueError, match="glimpse.Env"):
        envs.set_state_json(cartpole_state())
    with pytest.raises(ValueError, match="not valid JSON"):
        envs.set_state_json(saved[:-5])
    broken = json.loads(saved)
    broken["batch"]["envs"][2]["env"]["state"] = "x"
    with pytest.raises(ValueError, match="env 2"):
        envs.set_state_json(json.dumps(broken))
    assert envs.get_state_json() == saved


def test_non_finite_state_cannot_be_saved():
    env = ENV_CLASSES["CartPole-v1"]()
    env.reset(seed=0)
    env.state = np.array([np.nan, 0.0, 0.0, 0.0])
    for save in [env.get_state_json, lambda: copy.deepcopy(env), lambda: pickle.dumps(env)]:
        with pytest.raises(ValueError, match="NaN or infinity"):
            save()
    envs = glimpse.VectorEnv("CartPole-v1", 2)
    envs.reset(seed=0)
    envs.set_state(1, np.array([0.0, np.inf, 0.0, 0.0]))
    with pytest.raises(ValueError, match="env 1"):
        envs.get_state_json()
