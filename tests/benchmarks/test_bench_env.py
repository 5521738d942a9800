"""Speed of the simulator and environment (pytest-benchmark; run with --benchmark-enable).

Sizes: the measured Aldolase test split's 2341 holes (the aldolase twin's test split where
the data is absent), the whole AldolaseAu twin (5822 holes) and a 100,000-hole synthetic
grid. In the default test run these execute once, as smoke tests.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401
from tests.conftest import ALDOLASE_DATA


def _env(size: str):
    if size == "2341":
        if (ALDOLASE_DATA / "target_CTF_Y1_val.csv").is_file():
            return gym.make("cryobench/CryoRL-v0", data=str(ALDOLASE_DATA), split="test").unwrapped
        return gym.make("cryobench/Aldolase-v0", split="test").unwrapped
    if size == "5822":
        return gym.make("cryobench/AldolaseAu-v0", split="all").unwrapped
    return gym.make("cryobench/AldolaseAu-v0", dataset="synthetic100k", split="all").unwrapped


SIZES = ["2341", "5822", "100000"]


@pytest.mark.parametrize("size", SIZES)
def test_bench_reset(benchmark, size):
    env = _env(size)
    seeds = iter(range(10**9))
    obs, _ = benchmark(lambda: env.reset(seed=next(seeds)))
    assert obs["features"].shape[0] == env.world.n_holes


@pytest.mark.parametrize("size", SIZES)
def test_bench_step(benchmark, size):
    """One step with the full observation (features of every hole)."""
    env = _env(size)
    rng = np.random.default_rng(0)
    env.reset(seed=0)

    def step():
        if env.state.elapsed > env.world.duration:
            env.reset(seed=int(rng.integers(1000)))
        candidates = np.flatnonzero(~env.state.visited)
        return env.step(int(candidates[rng.integers(len(candidates))]))

    obs, *_ = benchmark(step)
    assert obs["features"].shape == (env.world.n_holes, obs["features"].shape[1])


@pytest.mark.parametrize("size", SIZES)
def test_bench_random_episode(benchmark, size):
    """A full 480-minute session under a uniformly random masked policy."""
    env = _env(size)
    seeds = iter(range(10**9))

    def episode():
        seed = next(seeds)
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            mask = obs["action_mask"]
            obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
            done = terminated or truncated
        return env.state

    state = benchmark(episode)
    assert state.elapsed > env.world.duration
