"""Speed of each agent's decision (pytest-benchmark; run with --benchmark-enable).

One ``agent.act(obs, info)`` on the Aldolase twin's test split, mid-session: the agent has been
fitted and reset, and the environment has advanced a few steps under the agent's own choices
(set-up, not timed). Between rounds the environment steps with the chosen hole, so every timed
decision is a real one of a real session. In the default test run (``--benchmark-disable``)
each agent decides once, as a smoke test. Offline fitting (planners, DQN loading) is not timed.
"""

from __future__ import annotations

from importlib.metadata import distribution

import gymnasium as gym
import pytest

import cryobench  # noqa: F401  (registers the environments)
from cryobench.agents.registry import list_agents, load_agent
from tests.benchmarks.decisions import time_decisions

BUILT_IN = {ep.name for ep in distribution("cryobench").entry_points if ep.group == "cryobench.agents"}
AGENTS = sorted(row["name"] for row in list_agents() if row["error"] is None and row["name"] in BUILT_IN)


@pytest.mark.parametrize("name", AGENTS)
def test_bench_agent_decision(benchmark, name):
    env = gym.make("cryobench/Aldolase-v0", feedback="inspection")
    agent, _card = load_agent(name)
    agent.fit(env, seed=0)
    obs, info = env.reset(seed=0)
    agent.reset(env, 0)
    for _ in range(5):  # mid-session: some history for agents that learn from it
        obs, _, terminated, _, info = env.step(agent.act(obs, info))
        assert not terminated

    benchmark.extra_info.update(agent=name, n_holes=int(env.action_space.n))
    hole = time_decisions(benchmark, env, agent, {"obs": obs, "info": info}, rounds=30, warmup_rounds=1)
    assert 0 <= hole < env.action_space.n
