"""Speed of the batched environment (``gym.make_vec(..., vectorization_mode="vector_entry_point")``).

On the aldolase twin's whole grid (3538 holes). One round is one batched step of B sessions
(random allowed actions, chosen outside the timed call); ``extra_info`` has B over the least
round (``steps_per_second_best``: a core undisturbed by other processes), over the median
round, and over the stepping thread's CPU time (``steps_per_cpu_second``: what a core gives
when other processes take turns with it). The full observation is compared with its floor,
a copy of the (B, N, 42) float32 matrix, timed in the same run (least rounds of both):
``extra_info["over_copy_floor"]``.

Goal (issue 15): >= 100,000 environment steps/s aggregated on 2 cores with compact
observations; full observations as close to the copy floor as possible.
"""

from __future__ import annotations

import functools
import time

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401

N_ENVS = {"compact": 256, "full": 16}


@functools.cache
def _envs(observation: str):
    return gym.make_vec(
        "cryobench/Aldolase-v0",
        num_envs=N_ENVS[observation],
        vectorization_mode="vector_entry_point",
        split="all",
        observation=observation,
    )


def _copy_floor_seconds(rounds: int, shape: tuple[int, ...]) -> float:
    """The least time of copying a float32 array of ``shape`` (the full observation's features)."""
    matrix = np.random.default_rng(0).random(shape, dtype=np.float32)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        matrix.copy()
        times.append(time.perf_counter() - start)
    return float(np.min(times))


@pytest.mark.parametrize("observation", ["compact", "full"])
def test_bench_vector_step(benchmark, observation):
    envs = _envs(observation)
    n_envs, n_holes = envs.num_envs, envs.unwrapped.world.n_holes
    benchmark.extra_info.update(grid="aldolase twin, all", n_holes=n_holes, num_envs=n_envs)
    rng = np.random.default_rng(0)
    last = {"obs": envs.reset(seed=0)[0]}

    def choose_actions():
        mask = last["obs"]["action_mask"]
        return (np.argmax(mask * rng.random(mask.shape), axis=1),), {}

    cpu_seconds = []

    def step(actions):
        start = time.thread_time()
        last["obs"], *_ = envs.step(actions)
        cpu_seconds.append(time.thread_time() - start)
        return last["obs"]

    rounds = 400 if observation == "compact" else 100
    obs = benchmark.pedantic(step, setup=choose_actions, rounds=rounds, warmup_rounds=5)
    assert obs["action_mask"].shape[0] == n_envs
    if benchmark.stats is not None:  # (None when benchmarks are disabled: the smoke run)
        stats = benchmark.stats.stats
        # the least disturbed round (what an idle core does) and the median (under this run's load)
        benchmark.extra_info["steps_per_second_best"] = round(n_envs / stats.min)
        benchmark.extra_info["steps_per_second_median"] = round(n_envs / stats.median)
        # the stepping thread's CPU time (a round preempted by other processes is not charged for it)
        benchmark.extra_info["steps_per_cpu_second"] = round(n_envs * len(cpu_seconds) / sum(cpu_seconds))
        if observation == "full":
            floor = _copy_floor_seconds(rounds, (n_envs, n_holes, obs["features"].shape[2]))
            benchmark.extra_info["over_copy_floor"] = round(stats.min / floor, 2)
