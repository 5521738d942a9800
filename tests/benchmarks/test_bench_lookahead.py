"""Speed of the Bayesian lookahead agent's decisions at N = 5822 holes (the AldolaseAu twin, whole grid).

Goal (issue 14): the median decision <= 50 ms. ``test_bench_lookahead_decision`` times real
decisions of a real session, as ``test_bench_agents`` does (the environment steps with each
chosen hole between rounds); most are the fast in-patch update, the rest full decisions.
``test_bench_lookahead_full_decision`` times the slowest kind alone: the refit of calibration,
variances and the posterior over every hole, the planner, and the rollouts of staying
(``stay_value``). The median goes in
``extra_info``; a speed goal is a benchmark, not an assert.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import cryobench  # noqa: F401  (registers the environments)
from cryobench.agents.registry import load_agent
from tests.benchmarks.decisions import time_decisions


def _session(seed: int = 0):
    env = gym.make("cryobench/AldolaseAu-v0", split="all")
    agent, _ = load_agent("bayes-lookahead")
    obs, info = env.reset(seed=seed)
    agent.reset(env, seed)
    for _ in range(20):  # mid-session: revealed holes for the posterior to fit
        obs, _, _, _, info = env.step(agent.act(obs, info))
    return env, agent, {"obs": obs, "info": info}


@pytest.mark.slow
def test_bench_lookahead_decision(benchmark):
    env, agent, state = _session()
    assert env.action_space.n == 5822

    hole = time_decisions(benchmark, env, agent, state, rounds=200, warmup_rounds=1)
    benchmark.extra_info.update(n_holes=5822, lookaheads=agent.lookaheads, stays=agent.stays)
    if benchmark.stats is not None:
        benchmark.extra_info["median_ms"] = round(1000 * benchmark.stats.stats.median, 3)
    assert state["obs"]["action_mask"][hole] == 0  # the chosen hole was exposed


@pytest.mark.slow
def test_bench_lookahead_full_decision(benchmark):
    env, agent, state = _session()
    obs = state["obs"]
    current = int(obs["current_hole"])

    def full_decision():
        agent.refit_beliefs(obs)
        agent.planner.next_hole(agent.p_good, obs["action_mask"].astype(bool), current, float(obs["time_left"][0]))
        return agent.stay_value(obs, current, float(agent.planner.last_price))

    value = benchmark.pedantic(full_decision, rounds=30, warmup_rounds=1)
    benchmark.extra_info.update(n_holes=5822, stay_value=value)
    if benchmark.stats is not None:
        benchmark.extra_info["median_ms"] = round(1000 * benchmark.stats.stats.median, 3)
    assert np.isfinite(value)
