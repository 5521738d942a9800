"""Tianshou's DQN on cryobench's compact observation: masked actions, a small replay buffer, scored on the test split.

    python -m cryobench.examples.tianshou_dqn --small              # under a minute, a small grid
    python -m cryobench.examples.tianshou_dqn --steps 100000

The environment is cryobench's ``observation="compact"`` form: 32 candidate holes with their
feature rows (5.7 kB a step at any grid size; the full observation is 0.6-1 MB a step, which is
what made a Tianshou replay buffer of 20,000 transitions grow to 24 GB). Tianshou masks the
actions of a discrete Q-learning policy through a ``mask`` key in the observation, so a small
wrapper renames cryobench's ``action_mask``. The Q-network scores every candidate with one MLP
shared across candidates (``cryobench.examples.networks``). Tianshou's ``DummyVectorEnv``,
``Collector``, ``VectorReplayBuffer`` and ``OffPolicyTrainer`` do the rest; the buffer keeps
no second copy of each observation (``ignore_obs_next``: the next observation is the next
row). It trains on the train split's training worlds, then plays the twin's test split
(seeds 0 .. episodes-1) with ``cryobench.evaluate`` next to snowball, and prints both.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import DQN
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OffPolicyTrainerParams
from torch import nn

from cryobench.evaluate import evaluate
from cryobench.examples.common import ENV_ID, env_kwargs, make_training_env
from cryobench.examples.networks import HoleScores

#: Chosen on training worlds (the train split).
HYPERPARAMETERS = dict(
    n_envs=4,
    buffer_size=20_000,
    batch_size=64,
    learning_rate=1e-3,
    gamma=0.99,
    target_update_freq=200,
    collect_steps=64,  # per collection step, over all environments
    updates_per_step=0.25,  # gradient steps per collected transition
    eps_start=0.5,  # epsilon-greedy exploration, decayed linearly to eps_end over the first half
    eps_end=0.02,
)


class TianshouMask(gym.ObservationWrapper):
    """Renames ``action_mask`` to ``mask``: the key Tianshou's Q-learning policies read the allowed actions from."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        spaces = dict(env.observation_space.spaces)
        spaces["mask"] = spaces.pop("action_mask")
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict) -> dict:
        observation = dict(observation)
        observation["mask"] = observation.pop("action_mask")
        return observation


class CandidateQ(nn.Module):
    """Tianshou's model interface, ``(obs, state, info) -> (Q values, state)``: one Q value per candidate slot
    from the candidate's feature row, the same weights for every slot."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.scores = HoleScores(width)

    def forward(self, obs: Batch, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        features = torch.as_tensor(obs.candidate_features, dtype=torch.float32)
        return self.scores(features), state


def make_env(small: bool) -> gym.Env:
    # training worlds only: the train split, a new training world at every reset
    return TianshouMask(make_training_env(small, observation="compact"))


def buffer_bytes(buffer: VectorReplayBuffer) -> int:
    """Bytes the buffer's arrays hold (observations, actions, rewards, flags, infos)."""
    return sum(value.nbytes for value in _arrays(buffer._meta))


def _arrays(batch: Batch):
    for value in batch.values():
        if isinstance(value, Batch):
            yield from _arrays(value)
        elif isinstance(value, np.ndarray):
            yield value


def train(small: bool, steps: int, seed: int = 0) -> tuple[DiscreteQLearningPolicy, VectorReplayBuffer, dict]:
    """DQN for ``steps`` environment steps; returns the policy, the replay buffer and the training's numbers."""
    h = HYPERPARAMETERS
    np.random.seed(seed)  # noqa: NPY002  (Tianshou's epsilon-greedy draws from numpy's global generator)
    torch.manual_seed(seed)
    envs = DummyVectorEnv([lambda: make_env(small) for _ in range(h["n_envs"])])
    envs.seed(seed)  # environment i: seed + i
    policy = DiscreteQLearningPolicy(
        model=CandidateQ(), action_space=envs.action_space[0], eps_training=h["eps_start"], eps_inference=0.0
    )
    algorithm = DQN(
        policy=policy,
        optim=AdamOptimizerFactory(lr=h["learning_rate"]),
        gamma=h["gamma"],
        target_update_freq=h["target_update_freq"],
    )
    buffer = VectorReplayBuffer(min(h["buffer_size"], steps), h["n_envs"], ignore_obs_next=True)
    collector = Collector(algorithm, envs, buffer, exploration_noise=True)
    collector.reset()

    def decay_epsilon(epoch: int, env_step: int) -> None:
        progress = min(1.0, env_step / (steps / 2))
        policy.set_eps_training(h["eps_start"] + progress * (h["eps_end"] - h["eps_start"]))

    result = algorithm.run_training(
        OffPolicyTrainerParams(
            training_collector=collector,
            max_epochs=1,
            epoch_num_steps=steps,
            collection_step_num_env_steps=h["collect_steps"],
            update_step_num_gradient_steps_per_sample=h["updates_per_step"],
            batch_size=h["batch_size"],
            training_fn=decay_epsilon,
            test_in_training=False,
            verbose=False,
            show_progress=False,
        )
    )
    envs.close()
    return policy, buffer, {"steps": int(result.train_step), "gradient_steps": int(result.update_step)}


def as_cryobench_policy(policy: DiscreteQLearningPolicy):
    """The trained policy as the function ``(obs, info) -> slot`` that ``cryobench.evaluate`` plays (greedy)."""
    policy.eval()

    def act(obs: dict, info: dict) -> int:
        renamed = {key: value[None] for key, value in obs.items() if key != "action_mask"}
        renamed["mask"] = obs["action_mask"][None]
        with torch.no_grad():
            return int(policy(Batch(obs=Batch(renamed), info=Batch())).act[0])

    return act


def compare(policy: DiscreteQLearningPolicy, small: bool, episodes: int) -> dict:
    """Mean good exposures of the trained policy and of snowball on the twin's test split, seeds 0 .. episodes-1."""
    kwargs = {**env_kwargs(small), "split": "test"}
    ours = evaluate(
        env=ENV_ID,
        env_kwargs={**kwargs, "observation": "compact"},
        policy=as_cryobench_policy(policy),
        episodes=episodes,
        progress=False,
    )
    snowball = evaluate("snowball", ENV_ID, kwargs, episodes=episodes, progress=False)
    return {
        "tianshou_dqn": ours["summary"]["good_exposures"]["mean"],
        "snowball": snowball["summary"]["good_exposures"]["mean"],
        "seeds": [0, episodes - 1],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a 600-hole twin, 120-minute sessions (tests)")
    parser.add_argument("--steps", type=int, default=None, help="environment steps (default 2,048 --small, else 1e5)")
    parser.add_argument("--episodes", type=int, default=20, help="test-split episodes to score (seeds 0..)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.episodes < 1 or (args.steps is not None and args.steps < HYPERPARAMETERS["collect_steps"]):
        parser.error(f"--episodes must be positive and --steps at least {HYPERPARAMETERS['collect_steps']}")
    steps = args.steps or (2048 if args.small else 100_000)
    torch.set_num_threads(1)
    start, cpu_start = time.perf_counter(), time.process_time()
    policy, buffer, scores = train(args.small, steps, args.seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    scores["buffer_bytes_per_transition"] = buffer_bytes(buffer) / buffer.maxsize
    # (the CPU seconds include Tianshou's numba compilation at its first buffer and policy: several seconds)
    print(
        f"{scores['steps']} steps in {seconds:.0f} s ({cpu_seconds:.0f} CPU s); replay buffer "
        f"{buffer.maxsize} transitions, {scores['buffer_bytes_per_transition'] / 1e3:.1f} kB each"
    )
    scores["test_split"] = compare(policy, args.small, args.episodes)
    pair = scores["test_split"]
    print(
        f"test split, seeds {pair['seeds'][0]}..{pair['seeds'][1]}: Tianshou DQN {pair['tianshou_dqn']:.1f} "
        f"good exposures, snowball {pair['snowball']:.1f}"
    )
    return scores


if __name__ == "__main__":
    main()
