"""Speed of the environment (pytest-benchmark; run with --benchmark-enable).

Sizes: the measured Aldolase test split's 2341 holes (the aldolase twin's test split, 2426
holes, where the data is absent), the whole AldolaseAu twin (5822 holes) and the 100,000-hole
synthetic card ``synthetic100k``. Each benchmark's ``extra_info`` names the grid and its
size: compare only runs on the same grids.

Targets (issue 2): a step with the full observation <= 0.2 ms at 2341 holes, a full
random-policy episode <= 0.1 s at 5822 holes, cost linear in the number of holes.
In the default test run (``--benchmark-disable``) every benchmark runs once, as a smoke test.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401
from cryobench.env import CryoEMSessionEnv
from tests.conftest import ALDOLASE_DATA

# The 100,000-hole grid takes seconds to build: slow, outside the fast loop (-m "not slow").
SIZES = ["2341", "5822", pytest.param("100000", marks=pytest.mark.slow)]


@functools.cache
def _env(size: str) -> tuple[CryoEMSessionEnv, str]:
    """The environment of one size and the name of the grid it runs on."""
    if size == "2341" and (ALDOLASE_DATA / "target_CTF_Y1_val.csv").is_file():
        env = gym.make("cryobench/CryoRL-v0", data=str(ALDOLASE_DATA), split="test").unwrapped
        return env, "measured aldolase, test split"
    if size == "2341":
        return gym.make("cryobench/Aldolase-v0", split="test").unwrapped, "aldolase twin, test split"
    if size == "5822":
        return gym.make("cryobench/AldolaseAu-v0", split="all").unwrapped, "aldolaseau twin, all"
    env = gym.make("cryobench/AldolaseAu-v0", dataset="synthetic100k", split="all").unwrapped
    return env, "synthetic100k twin, all"


def _setup(benchmark, size: str) -> CryoEMSessionEnv:
    env, grid_name = _env(size)
    benchmark.extra_info["grid"] = grid_name
    benchmark.extra_info["n_holes"] = env.world.n_holes
    return env


def _rounds(size: str, small: int, at_least: int) -> int:
    """Fewer rounds on the big grids, so each benchmark takes a few seconds, but enough that
    the minimum is a round undisturbed by other processes."""
    return max(small * 2341 // int(size), at_least)


@pytest.mark.parametrize("size", SIZES)
def test_bench_reset(benchmark, size):
    env = _setup(benchmark, size)
    seeds = iter(range(10**9))
    rounds = _rounds(size, 300, at_least=60)
    obs, _ = benchmark.pedantic(lambda: env.reset(seed=next(seeds)), rounds=rounds, warmup_rounds=1)
    assert obs["features"].shape[0] == env.world.n_holes


@pytest.mark.parametrize("size", SIZES)
def test_bench_step(benchmark, size):
    """One ``env.step`` with the full observation (features of every hole); choosing the
    random action and resetting a finished session are set-up, not timed."""
    env = _setup(benchmark, size)
    rng = np.random.default_rng(0)
    env.reset(seed=0)

    def choose_action():
        if env.state.elapsed > env.world.duration:
            env.reset(seed=int(rng.integers(1000)))
        candidates = np.flatnonzero(~env.state.visited)
        return (int(candidates[rng.integers(len(candidates))]),), {}

    rounds = _rounds(size, 3000, at_least=300)
    obs, *_ = benchmark.pedantic(env.step, setup=choose_action, rounds=rounds, warmup_rounds=10)
    assert obs["features"].shape == (env.world.n_holes, obs["features"].shape[1])


@pytest.mark.parametrize("size", SIZES)
def test_bench_random_episode(benchmark, size):
    """A full 480-minute session under a uniformly random masked policy (reset included)."""
    env = _setup(benchmark, size)
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

    state = benchmark.pedantic(episode, rounds=_rounds(size, 300, at_least=8), warmup_rounds=1)
    assert state.elapsed > env.world.duration
