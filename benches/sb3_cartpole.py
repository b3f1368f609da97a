"""Stable-Baselines3's DQN and PPO on CartPole-v1 with the RL-Zoo hyperparameters, each stopped at
the first greedy evaluation whose mean return reaches the threshold (as glimpse's `cartpole_dqn` and
`cartpole_ppo` stop): one JSON line per seed with the wall time to solve and the env steps.

    python benches/sb3_cartpole.py --algo dqn --seeds 1 2 3 [--eval-every 2000 --eval-episodes 100]

Our own script (run by benches/sb3_compare.sh); it needs stable-baselines3 2.4.1 (the last release
that accepts torch 1.13) with gymnasium 1.0.
"""

import argparse
import json
import time

import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env


def linear(start):
    """RL-Zoo's `lin_<start>`: from `start` at the beginning to 0 at the end of the budget."""
    return lambda progress_remaining: progress_remaining * start


def build(algo, seed):
    """The RL-Zoo CartPole-v1 configuration of `algo` (rl-baselines3-zoo hyperparams/*.yml)."""
    if algo == "dqn":
        env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
        model = DQN(
            "MlpPolicy",
            env,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs=dict(net_arch=[256, 256]),
            seed=seed,
            device="cpu",
        )
        return model, 50_000, 1
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        seed=seed,
        device="cpu",
    )
    return model, 100_000, 8


def solve(algo, seed, eval_every, eval_episodes, threshold):
    """Trains until a greedy evaluation reaches `threshold`; the wall time includes the evaluations."""
    start = time.perf_counter()
    model, budget, n_envs = build(algo, seed)
    stop = StopTrainingOnRewardThreshold(reward_threshold=threshold, verbose=0)
    # Ten evaluation envs side by side, so that SB3 steps its policy on batches of ten (100
    # episodes one at a time took 15 s per evaluation here, most of the wall time).
    eval_env = make_vec_env("CartPole-v1", n_envs=10, seed=seed + 10_000)
    # EvalCallback counts calls, one per vector step of `n_envs` env steps.
    callback = EvalCallback(
        eval_env,
        callback_on_new_best=stop,
        eval_freq=max(eval_every // n_envs, 1),
        n_eval_episodes=eval_episodes,
        deterministic=True,
        verbose=0,
    )
    model.learn(total_timesteps=budget, callback=callback)
    wall = time.perf_counter() - start
    solved = callback.best_mean_reward >= threshold
    return {
        "algo": algo,
        "seed": seed,
        "solved": bool(solved),
        "env_steps": int(model.num_timesteps),
        "wall_seconds": wall,
        "best_mean_return": float(callback.best_mean_reward),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=["dqn", "ppo"], required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--eval-every", type=int, required=True, help="env steps between greedy evaluations")
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        print(json.dumps(solve(args.algo, seed, args.eval_every, args.eval_episodes, args.threshold)), flush=True)


if __name__ == "__main__":
    main()
