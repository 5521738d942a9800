"""Decision time of the orienteering and SmartEM agents at N = 5822 holes (the AldolaseAu twin).

A whole stretch of a real session is timed decision by decision (``rounds`` consecutive
decisions, the environment stepping with each chosen hole between rounds), so the median is over
what a session asks: mostly in-patch choices and, at each patch change, a re-solve (orienteering)
or a full replan. The goal is a median <= 50 ms; ``extra_info["solves"]`` counts the re-solves
inside the timed stretch. Run with ``--benchmark-enable``; in the default test run each decides once.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

import cryobench  # noqa: F401  (registers the environments)
from cryobench.agents.registry import load_agent
from tests.benchmarks.decisions import time_decisions


@pytest.mark.parametrize("name", ["orienteering", "smartem-bma"])
def test_bench_decision_at_5822_holes(benchmark, name):
    env = gym.make("cryobench/AldolaseAu-v0", split="all", feedback="inspection")
    agent, _card = load_agent(name)
    obs, info = env.reset(seed=0)
    agent.reset(env, 0)
    solves_before = getattr(agent, "solves", 0)

    hole = time_decisions(benchmark, env, agent, {"obs": obs, "info": info}, rounds=120, warmup_rounds=0)
    benchmark.extra_info.update(
        agent=name, n_holes=int(env.action_space.n), solves=getattr(agent, "solves", 0) - solves_before
    )
    assert int(env.action_space.n) == 5822
    assert 0 <= hole < 5822
