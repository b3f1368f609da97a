"""The training API: glimpse.DQN / PPO / A2C / REINFORCE."""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import glimpse

REPO = Path(__file__).resolve().parents[2]


def snapshot(run_dir: Path) -> Path:
    """The last checkpoint's snapshot directory of a run."""
    checkpoint = run_dir / "checkpoint"
    return checkpoint / (checkpoint / "LATEST").read_text().strip()


def test_dqn_solves_cartpole_saves_and_loads(tmp_path):
    model = glimpse.DQN("CartPole-v1", seed=1, run_dir=tmp_path / "run")
    summary = model.learn()
    assert summary["solved"] and summary["eval_mean_return"] >= 475
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    assert model.evaluate(n_episodes=20, seed=1000)["mean_return"] >= 475

    saved = model.save(tmp_path / "saved")
    again = glimpse.DQN.load(saved)
    assert again.env_id == "CartPole-v1" and again.summary == summary
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    assert np.array_equal(model.predict(obs)[0], again.predict(obs)[0])
    assert model.evaluate(5, seed=7) == again.evaluate(5, seed=7)
    # Saving again over the same path replaces it whole.
    model.save(saved)
    assert glimpse.DQN.load(saved).config == model.config


def test_the_seed_gives_the_rust_examples_weights(tmp_path):
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    example = target / "release" / "examples" / "cartpole_dqn"
    if not example.exists():
        pytest.skip(f"{example} is not built (cargo build --release --example cartpole_dqn)")
    rust_dir, py_dir = tmp_path / "rust", tmp_path / "python"
    env = {**os.environ, "GLIMPSE_NO_PROGRESS": "1"}
    subprocess.run(
        [str(example), "--seed", "3", "--total-timesteps", "3000", "--run-dir", str(rust_dir)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    glimpse.DQN("CartPole-v1", seed=3, run_dir=py_dir).learn(total_timesteps=3000)
    assert json.loads((py_dir / "config.json").read_text()) == json.loads((rust_dir / "config.json").read_text())
    for name in ["q.safetensors", "target.safetensors", "adam_m1.safetensors"]:
        assert (snapshot(py_dir) / name).read_bytes() == (snapshot(rust_dir) / name).read_bytes(), name


@pytest.mark.parametrize(
    "agent, env_id, budget, width",
    [
        (glimpse.PPO, "CartPole-v1", 1024, None),
        (glimpse.A2C, "Acrobot-v1", 500, None),
        (glimpse.REINFORCE, "MountainCar-v0", 2048, None),
        (glimpse.DQN, "MountainCar-v0", 1500, None),
        (glimpse.PPO, "Pendulum-v1", 4096, 1),
        (glimpse.A2C, "MountainCarContinuous-v0", 500, 1),
    ],
)
def test_every_agent_predicts_batches_of_its_env(tmp_path, agent, env_id, budget, width):
    model = agent(f"glimpse/{env_id}", seed=2, run_dir=tmp_path / "run", total_timesteps=budget, eval_episodes=2)
    summary = model.learn()
    assert 0 < summary["env_steps"] <= budget  # whole rollouts within the budget
    size = model._rust.obs_size
    obs = np.zeros((7, size), dtype=np.float32)
    actions, state = model.predict(obs)
    assert state is None
    if width is None:
        assert actions.dtype == np.int64 and actions.shape == (7,)
        single = model.predict(obs[0])[0]
        assert np.ndim(single) == 0 and int(single) == actions[0]
    else:
        assert actions.dtype == np.float32 and actions.shape == (7, width)
        assert model.predict(obs[0])[0].shape == (width,)
    assert model.predict(np.zeros((0, size)))[0].shape[0] == 0
    sampled = model.predict(np.zeros((256, size)), deterministic=False)[0]
    assert sampled.shape[0] == 256
    result = model.evaluate(n_episodes=2)
    assert len(result["returns"]) == 2 and np.isfinite(result["mean_return"])


def test_settings_errors_name_the_setting():
    with pytest.raises(ValueError, match="learning_rat: not a setting of DQN"):
        glimpse.DQN("CartPole-v1", learning_rat=1e-3)
    with pytest.raises(ValueError, match="learning_rate: invalid type"):
        glimpse.DQN("CartPole-v1", learning_rate="fast")
    with pytest.raises(ValueError, match="learning_rate"):
        glimpse.PPO("CartPole-v1", learning_rate=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        glimpse.DQN("CartPole-v1", batch_size=0)
    with pytest.raises(ValueError, match="unknown glimpse env"):
        glimpse.PPO("CartPole-v7")
    with pytest.raises(ValueError, match="continuous actions"):
        glimpse.DQN("Pendulum-v1")
    with pytest.raises(ValueError, match="seed"):
        glimpse.A2C("CartPole-v1", seed=-1)


def test_defaults_are_the_examples_settings():
    assert glimpse.DQN("CartPole-v1").config["solve_threshold"] == 475.0
    assert glimpse.DQN("Acrobot-v1").config["batch_size"] == 128
    assert glimpse.PPO("Pendulum-v1").config["solve_threshold"] == -200.0
    assert glimpse.DQN("CartPole-v1", gamma=0.9).config["gamma"] == pytest.approx(0.9)


def test_misuse_is_refused_clearly(tmp_path):
    model = glimpse.REINFORCE("CartPole-v1", run_dir=tmp_path / "run", total_timesteps=2048)
    with pytest.raises(RuntimeError, match="learn"):
        model.predict(np.zeros(4))
    with pytest.raises(RuntimeError, match="learn"):
        model.evaluate()
    model.learn()
    with pytest.raises(RuntimeError, match="learned already"):
        model.learn()
    with pytest.raises(ValueError, match="3 values"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        model.predict(np.full(4, np.nan))
    with pytest.raises(ValueError, match="n_episodes"):
        model.evaluate(n_episodes=0)
    with pytest.raises(FileNotFoundError):
        glimpse.DQN.load(tmp_path / "nothing")
    model.save(tmp_path / "saved")
    with pytest.raises(ValueError, match="reinforce model"):
        glimpse.DQN.load(tmp_path / "saved")
    # A second run into a directory holding a checkpoint is refused by the run layer.
    with pytest.raises(RuntimeError):
        glimpse.REINFORCE("CartPole-v1", run_dir=tmp_path / "run", total_timesteps=2048).learn()


def test_a_rust_run_directory_loads_with_its_env(tmp_path):
    model = glimpse.PPO("CartPole-v1", run_dir=tmp_path / "run", total_timesteps=512)
    model.learn()
    (tmp_path / "run" / glimpse.agents.MODEL_FILE).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="env="):
        glimpse.PPO.load(tmp_path / "run")
    loaded = glimpse.PPO.load(tmp_path / "run", env="CartPole-v1")
    obs = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs)[0], model.predict(obs)[0])


def test_learn_releases_the_gil(tmp_path):
    model = glimpse.DQN("CartPole-v1", run_dir=tmp_path / "run", total_timesteps=20_000, solve_threshold=None)
    worker = threading.Thread(target=model.learn)
    ticks = 0
    worker.start()
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline:
        ticks += 1
        time.sleep(0.001)
    worker.join()
    assert model.summary["env_steps"] == 20_000
    assert ticks > 20, "the main thread was blocked while the agent trained"
