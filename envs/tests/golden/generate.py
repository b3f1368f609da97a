"""Writes the golden data that `envs/tests/golden.rs` compares glimpse's classic-control envs to.

Run from the repository root with the reference packages installed (gymnasium 1.x, numpy 2.x):

    python envs/tests/golden/generate.py [OUT_DIR]

(`OUT_DIR` defaults to this script's folder; `golden.rs` also runs it into a temporary folder
when `GLIMPSE_PYTHON` is set, to compare with the gymnasium installed there.)

For each of CartPole-v1, Acrobot-v1, MountainCar-v0, MountainCarContinuous-v0 and Pendulum-v1 it
writes `envs/tests/golden/<id>.json` with
- the gymnasium and numpy versions, the time limit, the observation and action spaces;
- `pairs`: 1000 random (state, action) pairs (float32-valued states) stepped by `env.unwrapped` from a state set directly,
  with the next `env.unwrapped.state`, the observation, the reward and `terminated`;
- `episodes`: whole episodes of `gymnasium.make(id)` from `reset(seed=s)` (or `reset()`, which
  continues the generator's stream), with every observation, reward, `terminated` and `truncated`.
`np_random.json` holds numpy's raw PCG64 outputs and `uniform` draws for a few seeds.

Encoding: float arrays are base64 of their little-endian bytes ("f8" float64 or "f4" float32),
so values round-trip exactly and the files stay small; flags are strings of '0'/'1';
space bounds are numpy's shortest float32 repr ("inf" included).
"""

import base64
import json
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
N_PAIRS = 1000


def b64(values, dtype):
    """Base64 of the array's little-endian bytes."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode()


def flags(values):
    return "".join("1" if v else "0" for v in values)


def space_json(space):
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n), "start": int(space.start), "dtype": str(space.dtype)}
    return {
        "kind": "box",
        "low": [str(np.float32(v)) for v in space.low.ravel()],
        "high": [str(np.float32(v)) for v in space.high.ravel()],
        "shape": list(space.shape),
        "dtype": str(space.dtype),
    }


def random_pairs(env_id, rng):
    """States, actions and whether the state is set as float32 (MountainCarContinuous only)."""
    n = N_PAIRS
    if env_id == "CartPole-v1":
        high = np.array([2.6, 3.0, 0.25, 3.5])
        states = rng.uniform(-high, high, size=(n, 4))
        actions = rng.integers(0, 2, size=n)
    elif env_id == "Acrobot-v1":
        high = np.array([math.pi, math.pi, 1.1 * 4 * math.pi, 1.1 * 9 * math.pi])
        states = rng.uniform(-high, high, size=(n, 4))
        actions = rng.integers(0, 3, size=n)
    elif env_id in ("MountainCar-v0", "MountainCarContinuous-v0"):
        states = rng.uniform([-1.25, -0.08], [0.65, 0.08], size=(n, 2))
        # Hit the left wall, the goal and the speed limits exactly.
        states[:8] = [[-1.2, -0.05], [-1.2, 0.0], [-1.19, -0.07], [0.5, 0.0], [0.45, 0.0], [0.6, 0.07], [0.0, 0.07], [-0.5, 0.0]]
        if env_id == "MountainCar-v0":
            actions = rng.integers(0, 3, size=n)
            actions[:8] = [0, 0, 0, 2, 2, 2, 2, 1]
        else:
            actions = rng.uniform(-1.5, 1.5, size=n).astype(np.float32)
            actions[:12] = [-1.0, 0.0, -1.0, 1.0, 1.0, 1.0, 1.0, 0.0, -1.5, 1.5, 0.5, -0.5]
    elif env_id == "Pendulum-v1":
        states = rng.uniform([-3 * math.pi, -9.0], [3 * math.pi, 9.0], size=(n, 2))
        states[:6] = [[math.pi, 0.0], [-math.pi, 1.0], [0.0, 8.0], [3 * math.pi, -8.0], [2 * math.pi, 0.5], [-1.0, 0.0]]
        actions = rng.uniform(-2.5, 2.5, size=n).astype(np.float32)
        actions[:6] = [2.0, -2.0, 0.0, 3.0, -3.0, 1.0]
    # States are float32 values (stored as such to halve the file); they are set as float64
    # arrays, except for half of MountainCarContinuous's, set as float32 arrays as gymnasium holds
    # them after a step.
    states = states.astype(np.float32)
    as_f32 = np.zeros(n, dtype=bool)
    if env_id == "MountainCarContinuous-v0":
        as_f32[n // 2 :] = True
    return states, actions, as_f32


def step_pairs(env_id, rng):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    states, actions, as_f32 = random_pairs(env_id, rng)
    next_states, observations, rewards, terminated = [], [], [], []
    for state, action, f32 in zip(states, actions, as_f32):
        env.state = np.array(state, dtype=np.float32 if f32 else np.float64)
        if env_id == "CartPole-v1":
            env.steps_beyond_terminated = None
        act = np.array([action], dtype=np.float32) if actions.dtype == np.float32 else int(action)
        obs, reward, term, trunc, _ = env.step(act)
        assert not trunc
        next_states.append(np.asarray(env.state, dtype=np.float64))
        observations.append(np.asarray(obs))
        assert observations[-1].dtype == np.float32
        rewards.append(float(reward))
        terminated.append(bool(term))
    pairs = {
        "count": len(states),
        "state": b64(states, "<f4"),
        "next_state": b64(next_states, "<f8"),
        "obs": b64(observations, "<f4"),
        "reward": b64(rewards, "<f8"),
        "terminated": flags(terminated),
    }
    if actions.dtype == np.float32:
        pairs["action"] = b64(actions, "<f4")
    else:
        pairs["action"] = "".join(str(int(a)) for a in actions)
    if env_id == "MountainCarContinuous-v0":
        pairs["state_f32"] = flags(as_f32)
    return pairs


def policy(env_id, kind, rng):
    """Returns a function obs -> action: seeded random actions, or a controller that ends the episode."""
    if env_id == "CartPole-v1":
        if kind == "random":
            return lambda obs: int(rng.integers(0, 2))
        return lambda obs: int(obs[2] + 0.5 * obs[3] > 0)  # balances: truncated at 500
    if env_id == "Acrobot-v1":
        if kind == "random":
            return lambda obs: int(rng.integers(0, 3))
        return lambda obs: 2 if obs[5] > 0 else 0  # pumps energy: terminates
    if env_id == "MountainCar-v0":
        if kind == "random":
            return lambda obs: int(rng.integers(0, 3))
        return lambda obs: 2 if obs[1] >= 0 else 0  # pumps energy: reaches the flag
    if env_id == "MountainCarContinuous-v0":
        if kind == "random":
            return lambda obs: rng.uniform(-1.5, 1.5, size=1).astype(np.float32)
        return lambda obs: np.array([1.0 if obs[1] >= 0 else -1.0], dtype=np.float32)
    if env_id == "Pendulum-v1":
        if kind == "random":
            return lambda obs: rng.uniform(-2.5, 2.5, size=1).astype(np.float32)
        return lambda obs: np.array([-2.0 * obs[1] - 0.5 * obs[2]], dtype=np.float32)
    raise ValueError(env_id)


# Each env: (seed or None to continue the stream, action kind) per episode, run in this order on one env.
EPISODES = {
    "CartPole-v1": [(0, "random"), (None, "random"), (None, "control"), (2**40 + 7, "random")],
    "Acrobot-v1": [(1, "random"), (None, "control"), (123456789, "control")],
    "MountainCar-v0": [(2, "random"), (None, "control"), (99, "control")],
    "MountainCarContinuous-v0": [(3, "random"), (None, "control"), (4, "control")],
    "Pendulum-v1": [(4, "random"), (None, "control"), (2**63, "random")],
}


def run_episodes(env_id, rng):
    env = gym.make(env_id)
    episodes = []
    for seed, kind in EPISODES[env_id]:
        act = policy(env_id, kind, rng)
        obs, _ = env.reset(seed=seed)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        while True:
            a = act(obs)
            obs, reward, term, trunc, _ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(float(reward))
            terms.append(bool(term))
            truncs.append(bool(trunc))
            if term or trunc:
                break
        continuous = isinstance(env.action_space, gym.spaces.Box)
        episodes.append(
            {
                "seed": seed,
                "steps": len(actions),
                "actions": b64([a[0] for a in actions], "<f4") if continuous else "".join(map(str, actions)),
                "obs": b64(observations, "<f4"),
                "reward": b64(rewards, "<f8"),
                "terminated": flags(terms),
                "truncated": flags(truncs),
            }
        )
    return episodes


def np_random_json():
    rows = []
    for seed in [0, 1, 42, 12345, 2**32 - 1, 2**32, 2**40 + 7, 2**63, 2**64 - 1]:
        seq = np.random.SeedSequence(seed)
        bits = np.random.PCG64(np.random.SeedSequence(seed))
        gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
        rows.append(
            {
                "seed": seed,
                "generate_state_u32": [int(v) for v in seq.generate_state(8, np.uint32)],
                "generate_state_u64": [int(v) for v in seq.generate_state(4, np.uint64)],
                "random_raw": [int(v) for v in bits.random_raw(16)],
                # Draws in this order: uniform(-0.05, 0.05, 4), uniform(-0.6, -0.4), random(3).
                "uniform": b64(np.concatenate([gen.uniform(-0.05, 0.05, size=4), [gen.uniform(-0.6, -0.4)], gen.random(3)]), "<f8"),
            }
        )
    return {"gymnasium": gym.__version__, "numpy": np.__version__, "seeds": rows}


def main():
    (OUT / "np_random.json").write_text(json.dumps(np_random_json(), separators=(",", ":")) + "\n")
    for i, env_id in enumerate(EPISODES):
        env = gym.make(env_id)
        data = {
            "id": env_id,
            "gymnasium": gym.__version__,
            "numpy": np.__version__,
            "max_episode_steps": env.spec.max_episode_steps,
            "observation_space": space_json(env.observation_space),
            "action_space": space_json(env.action_space),
            "pairs": step_pairs(env_id, np.random.default_rng(1000 + i)),
            "episodes": run_episodes(env_id, np.random.default_rng(2000 + i)),
        }
        path = OUT / f"{env_id}.json"
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        ends = [(e["steps"], e["terminated"][-1], e["truncated"][-1]) for e in data["episodes"]]
        print(f"{path.name}: {path.stat().st_size // 1024} KiB; episodes (steps, terminated, truncated): {ends}")


if __name__ == "__main__":
    main()
