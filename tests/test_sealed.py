"""Sealed evaluation: the agent runs in a worker that never receives the ground truth."""

from __future__ import annotations

import os

import pytest

from cryobench.agents.registry import load_agent
from cryobench.errors import InputError
from cryobench.evaluate import make_env, play_episode
from cryobench.sealed import SealedAgent

pytestmark = pytest.mark.slow  # each test starts a worker interpreter


@pytest.fixture(scope="module")
def env():
    environment = make_env("aldolase", {"duration": 60.0})
    yield environment
    environment.close()


@pytest.mark.parametrize("name", ["predict-rank", "greedy", "oracle-planner", "oracle-informed"])
def test_a_sealed_run_plays_exactly_as_an_open_one(env, name):
    agent, _ = load_agent(name)
    open_rows = [play_episode(env, agent, seed) for seed in (0, 1)]
    with SealedAgent(name) as sealed:
        assert sealed.worker_pid != os.getpid()
        assert sealed.uses_ground_truth == name.startswith("oracle")
        sealed.fit(env, 0)
        sealed_rows = [play_episode(env, sealed, seed) for seed in (0, 1)]
    assert sealed_rows == open_rows
    assert sealed_rows[0]["good_exposures"] > 0  # a real session, not an empty one


@pytest.mark.parametrize(
    ("cheat", "reason"),
    [
        ("ReadsTheWorld", "AttributeError: 'SealedEnv' object has no attribute 'world'"),
        ("WritesTheLayout", "ValueError: assignment destination is read-only"),
        ("AsksForTheTruth", "PermissionError: sealed evaluation: the ground truth is given only to upper bounds"),
        ("AsksForTheLatent", "PermissionError: sealed evaluation: the latent patch quality is given only to"),
        ("InformedAsksForTheTruth", "PermissionError: sealed evaluation: the ground truth is given only to upper"),
    ],
)
def test_an_agent_reaching_for_the_truth_fails_with_a_clear_error(env, cheat, reason):
    before = env.unwrapped.layout.tile.copy()
    with SealedAgent(f"tests.sealed_agents:{cheat}") as sealed, pytest.raises(InputError) as caught:
        play_episode(env, sealed, 0)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)
    assert (env.unwrapped.layout.tile == before).all()  # the parent's layout is untouched


def test_nothing_in_the_worker_holds_the_world(env):
    with SealedAgent("tests.sealed_agents:SearchesMemory") as sealed:
        row = play_episode(env, sealed, 0)
    assert row["exposures"] >= 1


def test_observations_handed_over_are_the_agents_own(env):
    with SealedAgent("tests.sealed_agents:KeepsLastObservation") as sealed:
        row = play_episode(env, sealed, 3)
    assert row["exposures"] >= 10


def test_an_unknown_agent_is_refused_in_one_line():
    with pytest.raises(InputError, match="no-such-agent") as caught:
        SealedAgent("no-such-agent")
    assert "\n" not in str(caught.value)


def test_the_worker_ends_with_the_run(env):
    sealed = SealedAgent("random")
    pid = sealed.worker_pid
    sealed.close()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
