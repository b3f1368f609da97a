"""glimpse's Rust environments for Python.

Importing the package registers every glimpse environment with gymnasium under ``glimpse/<id>``::

    import gymnasium as gym
    import glimpse

    env = gym.make("glimpse/CartPole-v1")           # a real gymnasium.Env, stepped in Rust
    envs = glimpse.VectorEnv("CartPole-v1", num_envs=1024)  # N envs stepped in one call
    envs = gym.make_vec("glimpse/CartPole-v1", num_envs=64)  # the same, through gymnasium

    model = glimpse.DQN("CartPole-v1", seed=1)      # glimpse's agents, trained in Rust
    model.learn()
"""

from glimpse._glimpse import GlimpseEnvError, InvalidAction, ResetNeeded
from glimpse.agents import A2C, DQN, PPO, REINFORCE
from glimpse.envs import ENV_IDS, GlimpseEnv, register_envs
from glimpse.vector import AutoresetMode, VectorEnv

__all__ = [
    "A2C",
    "DQN",
    "PPO",
    "REINFORCE",
    "AutoresetMode",
    "ENV_IDS",
    "GlimpseEnv",
    "GlimpseEnvError",
    "InvalidAction",
    "ResetNeeded",
    "VectorEnv",
    "register_envs",
]

register_envs()
