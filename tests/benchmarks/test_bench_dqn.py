"""Speed of the deep-Q network (pytest-benchmark; run with --benchmark-enable).

- one greedy decision of the shipped network on the measured Aldolase test split (2341 holes;
  the aldolase twin's test split where the data is absent), the environment step excluded;
- one whole session on the measured Aldolase test split (every decision and environment step, the
  issue-14 goal's unit: 50 of them plus start-up within 10 s), as version 3 (every hole's argmax, the
  calibrated trust test) and version 4 (the card: 4 candidates per patch, the raw test);
- one training gradient step, the training loop's own ``update`` phase (batch 128 of compact
  states rebuilt into contexts, n-step double DQN target, optimiser step, target sync) on the
  1,197-hole Aldolase train split (the twin's train split without the data).

In the default test run these execute once, as smoke tests.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401
from cryobench.agents.dqn import DQNAgent, DQNConfig
from cryobench.agents.dqn_train import collect, start_run, update
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


VERSION_SETTINGS = {
    "version3": {"act_candidates_per_patch": 0, "trust_test": "calibrated"},
    "version4": {},  # the card's
}


@pytest.mark.parametrize("version", list(VERSION_SETTINGS))
def test_bench_dqn_session(benchmark, version):
    env = _env("test")
    agent = DQNAgent(DQNConfig(**VERSION_SETTINGS[version]))
    agent.fit(env)

    def session(seed=[0]):  # noqa: B006 - a new start hole each round, as the 50 episodes of a run
        obs, info = env.reset(seed=seed[0])
        agent.reset(env, seed[0])
        seed[0] += 1
        over, steps = False, 0
        while not over:
            obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
            over, steps = terminated or truncated, steps + 1
        return steps

    steps = benchmark(session)
    assert steps == env.unwrapped.state.n_exposures + env.unwrapped.state.invalid_moves


@pytest.mark.slow
def test_bench_dqn_gradient_step(benchmark):
    """The training loop's own update phase: batch 128 of own transitions, no demonstrations."""
    config = DQNConfig(
        batch_size=128, buffer_size=4000, num_envs=4, learning_starts=0, demonstrator="", validation_twin=""
    )
    run = start_run(config, [_env("train").unwrapped.world], seed=0)
    for _ in range(100):  # 100 recorded steps per session, as many as the benchmark has always sampled from
        collect(run)
    loss = benchmark(update, run)
    assert run.losses[-1] == loss and np.isfinite(loss)
