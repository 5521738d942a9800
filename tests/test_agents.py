"""The built-in agents of the zoo: API, legality, determinism, feedback rules, reference levels."""

from __future__ import annotations

import dataclasses

import pytest

from cryobench.agents.registry import agent_class, load_agent, load_card
from cryobench.env import CryoEMSessionEnv
from cryobench.errors import InputError
from tests.conftest import make_world

AGENTS_ALL = [
    "random",
    "snowball",
    "predict-rank",
    "greedy",
    "ucb",
    "thompson",
    "epsilon-greedy",
    "hierarchical-bayes",
    "oracle-predict-rank",
    "oracle-planner",
]
FEEDBACK_AGENTS = []
ORACLES = ["oracle-predict-rank", "oracle-planner"]
AGENTS = ["random", "snowball", "predict-rank"] + ORACLES


def small_env(feedback: str = "inspection", duration: float = 480.0, seed: int = 0) -> CryoEMSessionEnv:
    world = make_world(seed, feedback=feedback, duration=duration, tiles=3, squares_per_tile=2, holes_per_patch=8)
    return CryoEMSessionEnv.from_world(world)


def rollout(agent, env, seed: int) -> list[int]:
    """Play one episode, checking every action is an unvisited hole; returns the actions."""
    obs, info = env.reset(seed=seed)
    agent.reset(env, seed)
    actions, done = [], False
    while not done:
        hole = agent.act(obs, info)
        assert isinstance(hole, int)
        assert obs["action_mask"][hole] == 1, f"{agent.name} chose visited hole {hole}"
        actions.append(hole)
        obs, _, done, _, info = env.step(hole)
        assert not info["invalid_action"]
    return actions


@pytest.mark.parametrize("name", AGENTS)
def test_agent_plays_legal_deterministic_episodes(name):
    agent, _ = load_agent(name)
    env = small_env(duration=60.0)
    first = rollout(agent, env, seed=3)
    assert len(first) > 10
    assert len(set(first)) == len(first)
    assert first == rollout(agent, env, seed=3)
    # The whole grid, until every hole is visited, without an illegal move.
    everything = rollout(agent, small_env(duration=10_000.0), seed=1)
    assert len(everything) + 1 == env.unwrapped.world.n_holes


@pytest.mark.parametrize("name", AGENTS)
def test_flags_and_card(name):
    cls = agent_class(name)
    assert cls.uses_ground_truth == (name in ORACLES)
    assert cls.needs_feedback == (name in FEEDBACK_AGENTS)
    card = load_card(name)
    assert card["name"] == name
    assert card["upper_bound"] == cls.uses_ground_truth
    assert card["needs_feedback"] == cls.needs_feedback
    fields = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    assert card["hyperparameters"] == fields


@pytest.mark.parametrize("name", FEEDBACK_AGENTS)
def test_feedback_agents_refuse_feedback_none(name):
    agent, _ = load_agent(name)
    env = small_env(feedback="none")
    env.reset(seed=0)
    with pytest.raises(InputError, match="feedback"):
        agent.reset(env, 0)
