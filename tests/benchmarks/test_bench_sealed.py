"""What sealing costs: an episode played sealed (agent in a worker process) against the same
episode played open, interleaved in one process so the machine's load hits both alike.

Goal (issue 13): a sealed run within 1.5x of an open one. The ratio of the medians goes into
``extra_info["sealed_over_open"]`` (a speed goal is a benchmark, not an assert); ``benchmark``
itself times the sealed episode; ``worker_start_seconds`` is the per-run cost of starting the
worker (a fork of the fork server, after the first). Both plays must give the same session:
sealing may cost time, never change a trajectory. Measured with the default feedback
(``inspection``) for fast, mid and slow agents, and without feedback (``none``). Agents that read
the revealed CTFs (ucb, dqn, genetic-replan) make one round trip between the processes per step;
the fixed plans (predict-rank, greedy: ``reads_feedback = False``) and every agent without
feedback stream their actions.
"""

from __future__ import annotations

import statistics
import time

import gymnasium as gym
import pytest

import cryobench  # noqa: F401
from cryobench.agents.registry import load_agent
from cryobench.evaluate import play_episode
from cryobench.sealed import SealedAgent

pytestmark = pytest.mark.slow  # each case starts a worker interpreter (as tests/test_sealed.py)


@pytest.mark.parametrize(
    ("agent_name", "feedback"),
    [
        ("predict-rank", "inspection"),
        ("greedy", "inspection"),
        ("ucb", "inspection"),  # a fast agent that reads the feedback: one round trip a step
        ("thompson", "inspection"),
        ("hierarchical-bayes", "inspection"),
        ("smartem-bma", "inspection"),
        ("bayes-lookahead", "inspection"),
        ("dqn", "inspection"),
        ("genetic-replan", "inspection"),  # a slow agent: 0.4 s an episode open
        ("predict-rank", "none"),
    ],
)
def test_bench_sealed_episode_against_open(benchmark, agent_name, feedback):
    env = gym.make("cryobench/Aldolase-v0", split="test", feedback=feedback)
    agent, _ = load_agent(agent_name)
    times: dict[str, list[float]] = {"open": [], "sealed": []}
    start = time.perf_counter()
    with SealedAgent(agent_name) as sealed:
        worker_start = time.perf_counter() - start
        play_episode(env, sealed, 0)  # first-touch costs, not timed
        for seed in range(5 if benchmark.enabled else 1):
            for name, player in (("open", agent), ("sealed", sealed)):
                start = time.perf_counter()
                result = play_episode(env, player, seed)
                times[name].append(time.perf_counter() - start)
                if name == "open":
                    expected = result
            assert result == expected  # the same session, move for move
        benchmark.pedantic(play_episode, args=(env, sealed, 0), rounds=3 if benchmark.enabled else 1)
    ratio = statistics.median(times["sealed"]) / statistics.median(times["open"])
    benchmark.extra_info["sealed_over_open"] = round(ratio, 2)
    benchmark.extra_info["open_seconds_median"] = round(statistics.median(times["open"]), 4)
    benchmark.extra_info["worker_start_seconds"] = round(worker_start, 3)
