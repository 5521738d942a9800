"""Speed of the deep-Q network (pytest-benchmark; run with --benchmark-enable).

- one greedy decision of the shipped network on the measured Aldolase test split (2341 holes;
  the aldolase twin's test split where the data is absent), the environment step excluded;
- one training gradient step (batch 128 of compact states rebuilt into contexts, n-step double
  DQN target) on the 1,197-hole Aldolase train split (the twin's train split without the data).

In the default test run these execute once, as smoke tests.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import cryobench  # noqa: F401
from cryobench.agents.dqn import DQNAgent, DQNConfig, make_network
from cryobench.agents.dqn_train import CompactReplay, Sessions, WorldIndex, _step_and_record, gradient_step
from tests.conftest import ALDOLASE_DATA


def _env(split: str):
    if (ALDOLASE_DATA / "target_CTF_Y1_val.csv").is_file():
        return gym.make("cryobench/CryoRL-v0", data=str(ALDOLASE_DATA), split=split)
    return gym.make("cryobench/Aldolase-v0", split=split)


@pytest.mark.parametrize("candidates", [0, 4])
def test_bench_dqn_decision(benchmark, candidates):
    env = _env("test")
    agent = DQNAgent(DQNConfig(act_candidates_per_patch=candidates))
    obs, info = env.reset(seed=0)
    agent.reset(env, 0)
    for _ in range(20):  # a session under way: some holes visited, a full history
        obs, _, _, _, info = env.step(agent.act(obs, info))
    hole = benchmark(agent.act, obs, info)
    assert obs["action_mask"][hole] == 1


@pytest.mark.slow
def test_bench_dqn_gradient_step(benchmark):
    config = DQNConfig(batch_size=128, buffer_size=4000, num_envs=4)
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    indexes = [WorldIndex(_env("train").unwrapped.world)]
    online = make_network(config)
    target = copy.deepcopy(online)
    optimizer = torch.optim.Adam(online.parameters(), lr=config.learning_rate)
    sessions = Sessions(indexes, config.num_envs, config.history, rng)
    replay = CompactReplay(config.buffer_size, config.num_envs, indexes[0].n_holes)
    for _ in range(100):  # fill the replay with random sessions
        actions = np.array([rng.choice(np.flatnonzero(~s.visited)) for s in sessions.states])
        _, dones = _step_and_record(sessions, replay, actions)
        for e in np.flatnonzero(dones):
            sessions.start(e)
    loss = benchmark(gradient_step, online, target, optimizer, replay, indexes, config, rng)
    assert np.isfinite(loss)
